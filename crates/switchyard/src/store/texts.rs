//! Long texts of request records kept once in SQLite (`record_texts`), however many records
//! carry them.
//!
//! Much of what a record keeps was in earlier records too: a system prompt, an agent's
//! instructions, every earlier turn of a conversation (a chat resends its history each turn),
//! the same answer served from the cache. Written into each record's body, such a text cost its
//! compression, its bytes in the WAL, their copy into the database at the next checkpoint and
//! their sync, again for every request: at full load the most of the record writer's work
//! (docs/PERFORMANCE.md, forty-seventh round). So each prompt message and response whose JSON
//! string is [`TEXT_FROM_BYTES`] or longer is stored as a row of its own, and a record's body
//! holds the rest of its JSON with the row's id where the text goes.
//!
//! The writer remembers the texts it stored lately ([`KnownTexts`], by their bytes, so a text
//! is only ever reused for the same bytes); a text it does not remember is stored again, as a
//! new row, which keeps the writing free of lookups in the database. It looks a text up before
//! writing it as JSON, so a remembered one is neither escaped nor copied again. A row is
//! remembered only once the batch that wrote it is committed. Rows are never deleted: no
//! record is.

use std::borrow::Cow;
use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::StoreResult;
use super::sqlite::{pack_body, unpack_body};
use crate::recent::ByLength;
use crate::telemetry::record::{RequestRecord, TextApart};
use switchyard_protocol::json;

/// Texts shorter than this (as JSON, quotes included) stay in the body: below it a row of their
/// own, and finding it again, would cost about what it saves.
pub(super) const TEXT_FROM_BYTES: usize = 512;

/// The first byte of a body with texts kept apart: then their count (two bytes), for each the
/// place in the rest of the JSON where it goes (four bytes) and its row's id (eight), all
/// little-endian; then the rest of the JSON, stored as a body without texts is
/// (`sqlite::pack_body`).
const BODY_WITH_TEXTS: u8 = 2;

/// Bytes of texts the writer remembers: the texts of a few hundred conversations.
const KNOWN_TEXT_BYTES: u64 = 4 << 20;

/// Ids per `SELECT … IN (…)` when reading texts back (SQLite takes 32,766 parameters).
const IDS_PER_READ: usize = 500;

/// The texts the writer stored lately, by their text (a row holds its JSON string), with their
/// rows' ids. A text is found only by equal bytes, so the hash decides the lookup's speed, never
/// which text is found: foldhash, seeded at random, a few times faster over long texts than
/// SipHash.
pub struct KnownTexts(parking_lot::Mutex<TextCache>);

type TextCache = quick_cache::unsync::Cache<
    Box<str>,
    i64,
    ByLength,
    foldhash::quality::RandomState,
    quick_cache::unsync::DefaultLifecycle<Box<str>, i64>,
>;

impl Default for KnownTexts {
    fn default() -> Self {
        let items = (KNOWN_TEXT_BYTES / 2048) as usize;
        Self(parking_lot::Mutex::new(TextCache::with(
            items,
            KNOWN_TEXT_BYTES,
            ByLength,
            Default::default(),
            Default::default(),
        )))
    }
}

/// Texts stored by a batch being written, with their rows' ids: met again later in the batch,
/// they are not stored twice; remembered ([`KnownTexts::remember`]) once it is committed.
pub type Pending = HashMap<Box<str>, i64>;

impl KnownTexts {
    pub(super) fn remember(&self, stored: Pending) {
        if stored.is_empty() {
            return;
        }
        let mut known = self.0.lock();
        for (text, id) in stored {
            known.insert(text, id);
        }
    }
}

/// The bodies of a chunk of records as SQLite stores them. A record whose long texts the
/// writer all remembers has its body made at once; one with a text not stored yet keeps the
/// rest of its JSON and the places of its texts, with the ids known so far, until
/// [`Bodies::store_new_texts`]. A text is borrowed from its record throughout, and its JSON
/// written only to store it.
pub(super) struct Bodies<'a>(Vec<Body<'a>>);

enum Body<'a> {
    Stored(Vec<u8>),
    Waiting {
        rest: String,
        texts: Vec<TextApart<'a>>,
        ids: Vec<Option<i64>>,
    },
}

impl<'a> Bodies<'a> {
    /// `records` written out, their texts looked up among those the writer remembers; nothing
    /// is read from the database.
    pub(super) fn of(known: &KnownTexts, records: &'a [RequestRecord]) -> Self {
        Self(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    crate::telemetry::recorder::give_way(i);
                    let (rest, texts) = r.to_json_apart(TEXT_FROM_BYTES);
                    // More texts than a body's header counts (tens of MiB kept a record): kept
                    // whole.
                    if texts.len() > usize::from(u16::MAX) {
                        return Body::Stored(pack_body(r.to_json().as_bytes()));
                    }
                    // Most records keep no text apart: no lock for them.
                    if texts.is_empty() {
                        return Body::Stored(pack_body(rest.as_bytes()));
                    }
                    let ids: Vec<Option<i64>> = {
                        let known = known.0.lock();
                        texts.iter().map(|t| known.get(t.text).copied()).collect()
                    };
                    if ids.iter().all(Option::is_some) {
                        Body::Stored(stored_body(&rest, &texts, &ids))
                    } else {
                        Body::Waiting { rest, texts, ids }
                    }
                })
                .collect(),
        )
    }

    /// Whether any text is not stored yet.
    pub(super) fn has_new_texts(&self) -> bool {
        self.0.iter().any(|b| matches!(b, Body::Waiting { .. }))
    }

    /// Stores on `conn` (in the batch's transaction) each text not stored yet, neither
    /// remembered nor in `pending` (stored earlier in the batch), noting it there.
    pub(super) async fn store_new_texts(
        &mut self,
        conn: &mut SqliteConnection,
        pending: &mut Pending,
    ) -> StoreResult<()> {
        let mut string = Vec::new();
        for body in &mut self.0 {
            let Body::Waiting { rest, texts, ids } = body else {
                continue;
            };
            for (apart, id) in texts.iter().zip(ids.iter_mut()) {
                if id.is_some() {
                    continue;
                }
                if let Some(&stored) = pending.get(apart.text) {
                    *id = Some(stored);
                    continue;
                }
                string.clear();
                json::write_str(&mut string, apart.text);
                let new: i64 =
                    sqlx::query_scalar("INSERT INTO record_texts (body) VALUES (?) RETURNING id")
                        .bind(pack_body(&string))
                        .fetch_one(&mut *conn)
                        .await?;
                pending.insert(Box::from(apart.text), new);
                *id = Some(new);
            }
            *body = Body::Stored(stored_body(rest, texts, ids));
        }
        Ok(())
    }

    /// The records' bodies as SQLite stores them, in order; a text not stored yet would be
    /// named by id 0, which no row has (`store_new_texts` comes first).
    pub(super) fn into_stored(self) -> impl Iterator<Item = Vec<u8>> {
        self.0.into_iter().map(|body| match body {
            Body::Stored(stored) => stored,
            Body::Waiting { rest, texts, ids } => stored_body(&rest, &texts, &ids),
        })
    }
}

/// [`body_with_texts`] for a record's texts as [`Bodies`] holds their ids, a text not stored yet
/// named by id 0.
fn stored_body(rest: &str, texts: &[TextApart<'_>], ids: &[Option<i64>]) -> Vec<u8> {
    body_with_texts(
        rest,
        texts
            .iter()
            .zip(ids)
            .map(|(t, id)| (t.place, id.unwrap_or_default())),
    )
}

/// A record's stored body: the rest of its JSON packed, behind the places and ids of the texts
/// left out of it, if any.
fn body_with_texts(rest: &str, places: impl ExactSizeIterator<Item = (usize, i64)>) -> Vec<u8> {
    if places.len() == 0 {
        return pack_body(rest.as_bytes());
    }
    let mut out = Vec::with_capacity(3 + 12 * places.len());
    out.push(BODY_WITH_TEXTS);
    // `Bodies::of` keeps a body with more texts than this counts whole.
    out.extend_from_slice(&(places.len() as u16).to_le_bytes());
    for (place, id) in places {
        out.extend_from_slice(&(place as u32).to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&pack_body(rest.as_bytes()));
    out
}

/// Where each of a body's texts goes in the rest of its JSON, and its row's id.
type Places = Vec<(usize, i64)>;

/// Where a body's texts go and which they are, in order, and the rest of the body as stored. A
/// body without texts apart has none; `None` when the header is damaged.
fn texts_of(stored: &[u8]) -> Option<(Places, &[u8])> {
    let Some((&BODY_WITH_TEXTS, after)) = stored.split_first() else {
        return Some((Vec::new(), stored));
    };
    let (count, mut after) = after.split_first_chunk::<2>()?;
    let count = u16::from_le_bytes(*count) as usize;
    let mut places = Vec::with_capacity(count);
    for _ in 0..count {
        let (place, rest) = after.split_first_chunk::<4>()?;
        let (id, rest) = rest.split_first_chunk::<8>()?;
        places.push((u32::from_le_bytes(*place) as usize, i64::from_le_bytes(*id)));
        after = rest;
    }
    Some((places, after))
}

/// The JSON of a stored body, its texts put back from `texts` (each row's text by id, read
/// out once for every body that names it); `None` when the body is damaged or a text it names
/// is not there.
fn join<'a>(stored: &'a [u8], texts: &HashMap<i64, Vec<u8>>) -> Option<Cow<'a, [u8]>> {
    let (places, rest) = texts_of(stored)?;
    let rest = unpack_body(rest)?;
    if places.is_empty() {
        return Some(rest);
    }
    let mut json = Vec::with_capacity(rest.len() + 4096 * places.len());
    let mut from = 0;
    for (place, id) in places {
        if place < from || place > rest.len() {
            return None;
        }
        json.extend_from_slice(&rest[from..place]);
        json.extend_from_slice(texts.get(&id)?);
        from = place;
    }
    json.extend_from_slice(&rest[from..]);
    Some(Cow::Owned(json))
}

/// The records `bodies` (as stored) hold, their texts read from `pool`; a body that cannot be
/// read (damaged, or a text it names missing) is left out.
pub(super) async fn read(
    pool: &SqlitePool,
    bodies: Vec<Vec<u8>>,
) -> StoreResult<Vec<RequestRecord>> {
    let mut ids: Vec<i64> = bodies
        .iter()
        .filter_map(|b| texts_of(b))
        .flat_map(|(places, _)| places.into_iter().map(|(_, id)| id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut texts = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_READ) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT id, body FROM record_texts WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        for row in q.build().fetch_all(pool).await? {
            let stored: Vec<u8> = row.try_get(1)?;
            // A damaged row is left out: the records naming it read as absent.
            if let Some(text) = unpack_body(&stored) {
                texts.insert(row.try_get::<i64, _>(0)?, text.into_owned());
            }
        }
    }
    Ok(bodies
        .iter()
        .filter_map(|b| serde_json::from_slice(&join(b, &texts)?).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, RecordStore, RequestFilter, Store};
    use crate::telemetry::record::PromptMessage;

    fn pool(store: &Store) -> &SqlitePool {
        match store.db() {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => unreachable!("a SQLite store"),
        }
    }

    /// A record whose prompt is `messages` and whose response is `response`.
    fn record(id: &str, messages: &[&str], response: &str) -> RequestRecord {
        let mut r: RequestRecord = serde_json::from_value(serde_json::json!({
            "id": id, "started_at_ms": 1, "duration_ms": 2.0, "ingress": "openai",
            "endpoint": "chat", "requested_model": "m", "stream": false, "status": 200,
            "outcome": "success", "caller": {}, "attempts": []
        }))
        .unwrap();
        r.prompt = Some(
            messages
                .iter()
                .enumerate()
                .map(|(i, text)| PromptMessage {
                    role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
                    content: (*text).to_owned(),
                })
                .collect(),
        );
        r.response = Some(response.to_owned());
        r
    }

    /// `len` bytes of text that differs with `seed`, with characters JSON escapes.
    fn text(seed: u32, len: usize) -> String {
        let mut state = seed.wrapping_mul(0x9e37_79b9) | 1;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match i % 97 {
                    0 => '"',
                    1 => '\n',
                    2 => 'é',
                    _ => char::from(b'a' + (state % 26) as u8),
                }
            })
            .collect()
    }

    async fn text_rows(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM record_texts")
            .fetch_one(pool(store))
            .await
            .unwrap()
    }

    async fn body(store: &Store, id: &str) -> Vec<u8> {
        sqlx::query_scalar("SELECT body FROM requests WHERE id = $1")
            .bind(id)
            .fetch_one(pool(store))
            .await
            .unwrap()
    }

    /// `r` read back by its id, byte for byte.
    async fn assert_reads_back(store: &Store, r: &RequestRecord) {
        let got = store.get(&r.id).await.unwrap();
        assert_eq!(got.map(|g| g.to_json()), Some(r.to_json()), "{}", r.id);
    }

    async fn all(store: &Store) -> Vec<RequestRecord> {
        store
            .query(&RequestFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_long_text_is_stored_once_however_many_records_carry_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let system = text(1, 3000);
        let question = text(2, 2000);
        let answer = text(3, 1500);

        // One conversation's turns: each resends the system prompt and the turns before.
        let first = record("1", &[&system, &question], &answer);
        let second = record(
            "2",
            &[&system, &question, &answer, "and then?"],
            &text(4, 900),
        );
        store.insert(std::slice::from_ref(&first)).await.unwrap();
        assert_eq!(text_rows(&store).await, 3);
        store.insert(std::slice::from_ref(&second)).await.unwrap();
        assert_eq!(text_rows(&store).await, 4, "only the new answer is stored");

        // A text new to a batch is stored once for the whole batch, across its statements.
        let shared = text(5, 5000);
        let batch: Vec<RequestRecord> = (0..40)
            .map(|i| record(&format!("3-{i:02}"), &[&shared, "short"], "ok"))
            .collect();
        store.insert(&batch).await.unwrap();
        assert_eq!(text_rows(&store).await, 5);

        for r in [&first, &second, &batch[0], &batch[39]] {
            assert_reads_back(&store, r).await;
        }
        let listed = all(&store).await;
        assert_eq!(listed.len(), 42);
        assert_eq!(listed[41].to_json(), first.to_json());
        assert_eq!(listed[40].to_json(), second.to_json());
        assert_eq!(listed[0].to_json(), batch[39].to_json());

        // A store opened again remembers nothing: the text is stored anew, and both read back.
        drop(store);
        let store = Store::open_sqlite(&path).await.unwrap();
        let later = record("4", &[&system, "again"], "ok");
        store.insert(std::slice::from_ref(&later)).await.unwrap();
        assert_eq!(text_rows(&store).await, 6);
        assert_reads_back(&store, &later).await;
        assert_reads_back(&store, &first).await;
    }

    #[tokio::test]
    async fn a_text_is_remembered_only_once_its_batch_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let long = text(6, 4000);
        // The batch fails after storing its text: the table it writes records to is away.
        sqlx::query("ALTER TABLE requests RENAME TO requests_away")
            .execute(pool(&store))
            .await
            .unwrap();
        let r = record("1", &[&long], "ok");
        assert!(store.insert(std::slice::from_ref(&r)).await.is_err());
        sqlx::query("ALTER TABLE requests_away RENAME TO requests")
            .execute(pool(&store))
            .await
            .unwrap();
        assert_eq!(text_rows(&store).await, 0, "rolled back with the batch");

        // Written again, the text is stored again rather than taken for stored.
        store.insert(std::slice::from_ref(&r)).await.unwrap();
        assert_eq!(text_rows(&store).await, 1);
        assert_reads_back(&store, &r).await;
    }

    #[tokio::test]
    async fn a_record_whose_text_is_missing_or_whose_places_are_damaged_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let kept = record("1", &[&text(7, 2000)], "ok");
        let lost = record("2", &[&text(8, 2000)], "ok");
        let damaged = record("3", &[&text(9, 2000)], "ok");
        store
            .insert(&[kept.clone(), lost.clone(), damaged.clone()])
            .await
            .unwrap();
        let (places, _) = texts_of(&body(&store, "2").await).unwrap();
        sqlx::query("DELETE FROM record_texts WHERE id = $1")
            .bind(places[0].1)
            .execute(pool(&store))
            .await
            .unwrap();
        let mut cut = body(&store, "3").await;
        cut.truncate(8);
        sqlx::query("UPDATE requests SET body = $1 WHERE id = '3'")
            .bind(cut)
            .execute(pool(&store))
            .await
            .unwrap();

        assert!(store.get("2").await.unwrap().is_none(), "text missing");
        assert!(store.get("3").await.unwrap().is_none(), "places cut short");
        let listed = all(&store).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].to_json(), kept.to_json());
    }

    #[test]
    fn texts_go_back_where_they_were_taken_from() {
        let r = record(
            "1",
            &[&text(10, 600), "short", &text(11, 700)],
            &text(12, 800),
        );
        let (rest, apart) = r.to_json_apart(TEXT_FROM_BYTES);
        assert_eq!(apart.len(), 3, "two messages and the response");
        let mut rows = HashMap::new();
        for (i, t) in apart.iter().enumerate() {
            let mut string = Vec::new();
            json::write_str(&mut string, t.text);
            rows.insert(i as i64 + 10, string);
        }
        let stored = body_with_texts(
            &rest,
            apart
                .iter()
                .enumerate()
                .map(|(i, t)| (t.place, i as i64 + 10)),
        );
        assert_eq!(
            join(&stored, &rows).as_deref(),
            Some(r.to_json().as_bytes())
        );
        // Places out of order or past the end are damage.
        let mut backwards = stored.clone();
        backwards[3..7].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(join(&backwards, &rows).is_none());
        // A body without texts apart reads as it is.
        let plain = record("2", &["short"], "ok").to_json();
        let stored = body_with_texts(&plain, std::iter::empty());
        assert_eq!(
            join(&stored, &HashMap::new()).as_deref(),
            Some(plain.as_bytes())
        );
    }

    #[test]
    fn a_text_is_left_out_exactly_when_its_json_string_reaches_the_bound() {
        // Plain text: its string is the text and two quotes.
        for len in [
            0,
            1,
            TEXT_FROM_BYTES - 3,
            TEXT_FROM_BYTES - 2,
            TEXT_FROM_BYTES,
        ] {
            let body = "a".repeat(len);
            let r = record("1", &[&body], "ok");
            let (rest, apart) = r.to_json_apart(TEXT_FROM_BYTES);
            assert_eq!(
                apart.len(),
                usize::from(len + 2 >= TEXT_FROM_BYTES),
                "{len}"
            );
            if apart.is_empty() {
                assert_eq!(rest, r.to_json());
            }
        }
        // Text short of the bound by its length that its escapes take past it; and text whose
        // escapes leave it one byte short.
        let quotes = |n: usize| "\"".repeat(n);
        let over = record("2", &[&quotes(TEXT_FROM_BYTES / 2)], "ok");
        let (rest, apart) = over.to_json_apart(TEXT_FROM_BYTES);
        assert_eq!(apart.len(), 1);
        assert_eq!(apart[0].text, quotes(TEXT_FROM_BYTES / 2));
        assert_eq!(&rest[apart[0].place - 10..apart[0].place], r#""content":"#);
        assert_eq!(
            &rest[apart[0].place..apart[0].place + 2],
            "}]",
            "nothing of it written"
        );
        let short = record(
            "3",
            &[&format!("{}a", quotes(TEXT_FROM_BYTES / 2 - 2))],
            "ok",
        );
        let (rest, apart) = short.to_json_apart(TEXT_FROM_BYTES);
        assert!(apart.is_empty(), "{} bytes as JSON", TEXT_FROM_BYTES - 1);
        assert_eq!(rest, short.to_json());
    }
}
