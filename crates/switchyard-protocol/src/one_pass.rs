//! Pieces the dialects' one-pass readers of common requests share (`openai/common_chat.rs`,
//! `anthropic/common.rs`). Such a reader takes the request straight from the body's bytes in the
//! forms most clients send and declines everything else, which then goes through the dialect's
//! full decoder: that one reads every form and names the path of every error, so an error here
//! only ever means "not the common form" and its text is never shown.
//!
//! A body without a single control byte (compact JSON, as the SDKs send it) cannot have one raw
//! inside a string, so its texts can be read as raw strings (`RAW`): serde_json then finds a
//! string's end with a vectorised search for `"` and `\`, instead of also testing every byte for
//! a control character (most of the parse of a long prompt). Their UTF-8 is checked here.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::canonical::{ContentPart, Text};
use crate::json::Key;

/// The error that sends a request to the full decoder.
pub(crate) fn decline<E: de::Error>() -> E {
    E::custom("not the common form")
}

/// Whether a body's texts may be read as raw strings: it holds no control byte.
pub(crate) fn raw_texts(body: &[u8]) -> bool {
    !crate::json::has_control_bytes(body)
}

/// Parses a body for a one-pass reader (`seed`) whose texts are raw when `raw`. A short body is
/// checked as UTF-8 whole and then parsed as text (see `json::from_body`), so its keys and small
/// values are not checked one by one. A long body with raw texts is nearly all texts, each
/// checked as it is read: it is parsed as bytes instead, so a long prompt is not checked twice.
pub(crate) fn parse_seed<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    raw: bool,
    seed: S,
) -> Option<S::Value> {
    fn whole<'de, R: serde_json::de::Read<'de>, S: DeserializeSeed<'de>>(
        mut de: serde_json::Deserializer<R>,
        seed: S,
    ) -> Option<S::Value> {
        let value = seed.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(value)
    }
    if raw && body.len() > CHECKED_WHOLE_MAX {
        return whole(serde_json::Deserializer::from_slice(body), seed);
    }
    match crate::json::utf8(body) {
        Some(text) => whole(serde_json::Deserializer::from_str(text), seed),
        None => whole(serde_json::Deserializer::from_slice(body), seed),
    }
}

/// The longest body `parse_seed` checks whole (with raw texts): some kilobytes of keys and values are
/// checked faster one by one than a second pass over a long text.
const CHECKED_WHOLE_MAX: usize = 4096;

/// A raw string's text, if it is UTF-8 (an escaped lone surrogate is not).
pub(crate) fn utf8<E: de::Error>(v: &[u8]) -> Result<&str, E> {
    crate::json::utf8(v).ok_or_else(decline)
}

/// The body the texts are read from. A string without escapes is handed over borrowed from it,
/// and its text shares the body's bytes rather than copying them (a long prompt is most of its
/// body); a string with escapes is unescaped into a text of its own, which keeps the string as
/// the client wrote it (a slice of the body) when the reader knows where it starts.
#[derive(Clone, Copy)]
pub(crate) struct Source<'b, const RAW: bool> {
    body: &'b Bytes,
    /// Where the value being read starts in `body`, when known (see [`Source::after`]).
    value_at: Option<usize>,
}

impl<'b, const RAW: bool> Source<'b, RAW> {
    pub(crate) fn new(body: &'b Bytes) -> Self {
        Source {
            body,
            value_at: None,
        }
    }

    /// The source for the value that follows `key` in an object: where that value starts is
    /// known when the key was read borrowed from the body (it had no escape), since the value
    /// comes right after the key's closing quote, whitespace, the colon and whitespace.
    pub(crate) fn after(self, key: &Key<'_>) -> Self {
        Source {
            body: self.body,
            value_at: value_after(self.body, &key.0),
        }
    }

    /// The source for values whose start is not known (such as a list's elements).
    pub(crate) fn unplaced(self) -> Self {
        Source {
            body: self.body,
            value_at: None,
        }
    }

    /// The text of a string without escapes, borrowed from the body.
    pub(crate) fn unescaped<E: de::Error>(self, v: &[u8]) -> Result<Text, E> {
        Text::unescaped_in(self.body, v).ok_or_else(decline)
    }

    /// The text of a string the parser unescaped: a copy, which keeps the string as it was
    /// written when it starts at the known place.
    pub(crate) fn escaped(self, text: &str) -> Text {
        match self
            .value_at
            .and_then(|at| string_at(self.body, at, text.len()))
        {
            Some(written) => Text::unescaped_from(text, self.body.slice(written)),
            None => Text::from(text),
        }
    }
}

/// Where the value after `key` starts in `body`, if `key` lies within it.
fn value_after(body: &[u8], key: &str) -> Option<usize> {
    let start = body.as_ptr() as usize;
    let key_start = key.as_ptr() as usize;
    if key_start < start || key_start + key.len() > start + body.len() {
        return None;
    }
    let mut at = key_start - start + key.len();
    let skip_space = |at: &mut usize| {
        while body
            .get(*at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            *at += 1;
        }
    };
    (body.get(at) == Some(&b'"')).then_some(())?;
    at += 1;
    skip_space(&mut at);
    (body.get(at) == Some(&b':')).then_some(())?;
    at += 1;
    skip_space(&mut at);
    Some(at)
}

/// The bytes between the quotes of the JSON string that starts at `at` in `body` (the parser
/// has read it, so it is well formed), whose text is `text_len` bytes long: up to the first
/// quote that is not escaped (not after an odd run of backslashes). An escape is never shorter
/// than what it stands for, so that quote is searched for from `text_len` bytes on: a long
/// text's string is not read again, only its last escapes' worth of bytes.
fn string_at(body: &[u8], at: usize, text_len: usize) -> Option<std::ops::Range<usize>> {
    (body.get(at) == Some(&b'"')).then_some(())?;
    let start = at + 1;
    let mut from = start + text_len;
    loop {
        let quote = from + memchr::memchr(b'"', body.get(from..)?)?;
        let backslashes = body[start..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(start..quote);
        }
        from = quote + 1;
    }
}

/// `DeserializeSeed` for a seed that is its own visitor (and holds the `Source` as `.0`): read
/// with `deserializer.$read(self)`, or, when the seed's texts are raw, `$raw`.
macro_rules! seed_visits_itself {
    ($seed:ident -> $value:ty, $read:ident) => {
        $crate::one_pass::seed_visits_itself!($seed -> $value, $read, $read);
    };
    ($seed:ident -> $value:ty, $raw:ident, $read:ident) => {
        impl<'de, const RAW: bool> serde::de::DeserializeSeed<'de> for $seed<'_, RAW> {
            type Value = $value;
            fn deserialize<D: serde::de::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<$value, D::Error> {
                if RAW {
                    deserializer.$raw(self)
                } else {
                    deserializer.$read(self)
                }
            }
        }
    };
}
pub(crate) use seed_visits_itself;

/// The visitor methods that take a string as a text read from the seed's `Source` (shared when
/// it had no escape), each answering `$wrap(text)`.
macro_rules! string_visits {
    ($value:ty, $wrap:expr) => {
        fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<$value, E> {
            self.0.unescaped(v).map($wrap)
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$value, E> {
            Ok($wrap(self.0.escaped($crate::one_pass::utf8(v)?)))
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<$value, E> {
            self.0.unescaped(v.as_bytes()).map($wrap)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$value, E> {
            Ok($wrap(self.0.escaped(v)))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$value, E> {
            Ok($wrap($crate::canonical::Text::from(v)))
        }
    };
}
pub(crate) use string_visits;

/// A string's text, read from `Source`.
pub(crate) struct TextSeed<'b, const RAW: bool>(pub Source<'b, RAW>);

seed_visits_itself!(TextSeed -> Text, deserialize_bytes, deserialize_string);

impl<'de, const RAW: bool> Visitor<'de> for TextSeed<'_, RAW> {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    string_visits!(Text, |text| text);
}

/// A list whose every element is read with (a copy of) the seed.
pub(crate) struct ListSeed<S>(pub S);

impl<'de, S: DeserializeSeed<'de> + Clone> DeserializeSeed<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(element) = seq.next_element_seed(self.0.clone())? {
            out.push(element);
        }
        Ok(out)
    }
}

/// A text part or block, `{"type": "text", "text": …, "cache_control": …}`, each field at most
/// once (OpenAI's text parts and Anthropic's text blocks have the same shape).
#[derive(Clone, Copy)]
struct TextPartSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(TextPartSeed -> ContentPart, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for TextPartSeed<'_, RAW> {
    type Value = ContentPart;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a text part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
        let mut is_text = None;
        let mut text: Option<Text> = None;
        let mut cache_control: Option<Option<Value>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if is_text.is_none() => {
                    is_text = Some(map.next_value::<Key<'de>>()?.0 == "text");
                }
                "text" if text.is_none() => {
                    text = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "cache_control" if cache_control.is_none() => {
                    cache_control = Some(map.next_value()?);
                }
                _ => return Err(decline()),
            }
        }
        match (is_text, text) {
            (Some(true), Some(text)) => Ok(ContentPart::Text {
                text,
                cache_control: cache_control.flatten(),
                citations: None,
            }),
            _ => Err(decline()),
        }
    }
}

/// A list of text parts.
pub(crate) fn read_parts<'de, const RAW: bool, A: SeqAccess<'de>>(
    source: Source<'_, RAW>,
    seq: A,
) -> Result<Vec<ContentPart>, A::Error> {
    ListSeed(TextPartSeed(source.unplaced())).visit_seq(seq)
}

/// Holds a dialect's one-pass reader to its full decoder: every body of `common` and `built`
/// (each also with its line breaks made spaces, so that its texts are read as raw strings) is
/// read in one pass into exactly the full decoder's request, and every body of `declined` goes
/// to the full decoder, whose answer (errors and all) is the dialect's.
#[cfg(test)]
pub(crate) fn assert_reads_as_the_full_decoder(
    one_pass: impl Fn(&Bytes) -> Option<crate::canonical::ChatRequest>,
    full: impl Fn(&[u8]) -> Result<crate::canonical::ChatRequest, crate::error::DecodeError>,
    dialect: &dyn crate::dialect::IngressDialect,
    common: &[&str],
    built: &[&str],
    declined: &[&str],
) {
    // The fixed bodies and those a test builds (long texts, long documents) alike.
    let common: Vec<&str> = common.iter().chain(built).copied().collect();
    let flattened: Vec<String> = common
        .iter()
        .map(|body| body.replace(['\n', '\r', '\t'], " "))
        .collect();
    for body in common
        .iter()
        .copied()
        .chain(flattened.iter().map(String::as_str))
    {
        let read = one_pass(&Bytes::copy_from_slice(body.as_bytes()));
        assert!(read.is_some(), "should be read in one pass: {body}");
        assert_eq!(read.map(Ok), Some(full(body.as_bytes())), "{body}");
    }
    for body in declined {
        assert!(
            one_pass(&Bytes::copy_from_slice(body.as_bytes())).is_none(),
            "should need the full decoder: {body}"
        );
        assert_eq!(
            dialect.decode_chat(&Bytes::copy_from_slice(body.as_bytes())),
            full(body.as_bytes()),
            "{body}"
        );
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::Value;

    use crate::anthropic::AnthropicIngress;
    use crate::canonical::{ChatRequest, ContentPart, Text};
    use crate::dialect::{IngressDialect, ProviderKind, Target, provider_dialect};
    use crate::openai::OpenAiIngress;
    use crate::provider_body::ProviderBody;

    /// Every escape JSON has, a pair of surrogates among them, and a string that ends with an
    /// escaped backslash (so its closing quote follows a backslash).
    const ESCAPED: &str =
        r#"say \"hi\"\n\tthen \\ and \/ and \u00e9 and \ud83d\ude00 \b\f\r end \\"#;
    const UNESCAPED: &str = "say \"hi\"\n\tthen \\ and / and é and 😀 \u{8}\u{c}\r end \\";

    /// The common requests of both ingresses with `text` (JSON string content) in every text
    /// place the one-pass readers read (a tool's result among them), compact and spread over
    /// lines (whose line breaks make the readers take their texts as strings rather than raw),
    /// with the number of texts.
    fn bodies(text: &str) -> Vec<(&'static dyn IngressDialect, String, usize)> {
        let openai = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content" : "{text}"}},{{"role":"user","content":[{{"type":"text","text":"{text}"}}]}},{{"role":"assistant","content":[{{"type":"text","text":"plain"}}],"tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}},{{"role":"tool","tool_call_id":"c1","content":"{text}"}}],"tools":[{{"type":"function","function":{{"name":"f"}}}}]}}"#
        );
        let anthropic = format!(
            r#"{{"model":"m","max_tokens":5,"system":"{text}","messages":[{{"role":"user","content": "{text}"}},{{"role":"assistant","content":[{{"type":"text","text":"{text}"}},{{"type":"tool_use","id":"c1","name":"f","input":{{}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"c1","content":[{{"type":"text","text":"{text}"}}]}}]}}],"tools":[{{"name":"f","input_schema":{{"type":"object"}}}}]}}"#
        );
        let spread = |body: &str| body.replace(",\"", ",\n  \"").replace(":\"", ":\n\t\"");
        vec![
            (&OpenAiIngress, spread(&openai), 3),
            (&AnthropicIngress, spread(&anthropic), 4),
            (&OpenAiIngress, openai, 3),
            (&AnthropicIngress, anthropic, 4),
        ]
    }

    /// The texts of text parts and tool results, but the one written plain.
    fn texts(request: &ChatRequest) -> Vec<&Text> {
        fn of<'a>(parts: &'a [ContentPart], out: &mut Vec<&'a Text>) {
            for part in parts {
                match part {
                    ContentPart::Text { text, .. } if text.as_str() != "plain" => out.push(text),
                    ContentPart::ToolResult { content, .. } => of(content, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for message in &request.messages {
            of(&message.content, &mut out);
        }
        out
    }

    /// The request built by the OpenAI, Anthropic and Gemini providers.
    fn built_for_every_provider(
        request: &ChatRequest,
    ) -> Vec<(ProviderKind, http::Request<ProviderBody>)> {
        [
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ]
        .into_iter()
        .map(|kind| {
            let built = provider_dialect(&kind)
                .build_chat(request, &target())
                .unwrap();
            (kind, built)
        })
        .collect()
    }

    /// The pieces of a provider's request that are slices of the client's `body`.
    fn shared_with(built: &http::Request<ProviderBody>, body: &Bytes) -> Vec<Bytes> {
        let inside = |piece: &Bytes| body.as_ptr_range().contains(&piece.as_ptr());
        let pieces = built.body().clone().into_pieces();
        pieces.into_iter().filter(inside).collect()
    }

    /// Decodes `body` with `ingress`, builds it for every provider and checks that each
    /// request carries `written` once, as a slice of `body`, and holds `expected` where `place`
    /// points (`place` gives, per provider, the value's path in the request).
    fn assert_spliced_into_every_providers_request(
        ingress: &dyn IngressDialect,
        body: &Bytes,
        written: &str,
        place: impl for<'v> Fn(&ProviderKind, &'v Value) -> (&'v Value, String),
    ) {
        let request = ingress.decode_chat(body).unwrap();
        for (kind, built) in built_for_every_provider(&request) {
            let shared = shared_with(&built, body);
            assert_eq!(shared.len(), 1, "{kind:?}");
            assert_eq!(shared[0][..], *written.as_bytes(), "{kind:?}");
            let value: Value = serde_json::from_slice(&built.body().to_vec()).unwrap();
            let (found, expected) = place(&kind, &value);
            assert_eq!(found.as_str(), Some(expected.as_str()), "{kind:?}");
        }
    }

    fn target() -> Target<'static> {
        Target {
            base_url: "https://api.example.com/v1",
            model: "a-model",
            api_key: Some("key"),
            api_version: None,
        }
    }

    /// A text read from a string with escapes keeps the string as the client wrote it, and
    /// every provider's request carries it so: the same escapes, and the same text once read.
    #[test]
    fn a_text_with_escapes_keeps_the_clients_string_into_every_providers_request() {
        for (ingress, body, count) in bodies(ESCAPED) {
            let body = Bytes::from(body);
            let request = ingress.decode_chat(&body).unwrap();
            let texts = texts(&request);
            assert_eq!(texts.len(), count, "{body:?}");
            for text in texts {
                assert_eq!(text.as_str(), UNESCAPED);
                let content = text.json_content().expect("the client's string");
                assert_eq!(content, ESCAPED.as_bytes());
                assert!(body.as_ptr_range().contains(&content.as_ptr()), "shared");
            }
            for (_, built) in built_for_every_provider(&request) {
                let sent = built.body().to_vec();
                let sent_text = String::from_utf8(sent.clone()).unwrap();
                assert_eq!(sent_text.matches(ESCAPED).count(), count, "{sent_text}");
                let value: Value = serde_json::from_slice(&sent).unwrap();
                assert_eq!(value.to_string().matches(r#"\"hi\""#).count(), count);
            }
        }
    }

    /// A long text with escapes goes into a provider's request as a slice of the client's body.
    #[test]
    fn a_long_text_with_escapes_is_spliced_from_the_clients_body() {
        let long = ESCAPED.repeat(400);
        for (ingress, body, count) in bodies(&long) {
            let body = Bytes::from(body);
            let request = ingress.decode_chat(&body).unwrap();
            for (kind, built) in built_for_every_provider(&request) {
                let shared = shared_with(&built, &body);
                assert_eq!(shared.len(), count, "{kind:?}");
                assert!(shared.iter().all(|piece| piece[..] == *long.as_bytes()));
                let value: Value = serde_json::from_slice(&built.body().to_vec()).unwrap();
                assert!(
                    value
                        .to_string()
                        .contains(&serde_json::to_string(UNESCAPED).unwrap()[1..20])
                );
            }
        }
    }

    /// A long inline image's base64 text goes into every provider's request as a slice of the
    /// client's body, in each provider's form, from either ingress, and so does one whose `/`
    /// the client's encoder wrote escaped (`\/`, as PHP's does), as the client wrote it.
    #[test]
    fn a_long_inline_image_is_spliced_into_every_providers_request() {
        let data = "iVBORw0KGgoAAAANSUhEUgAA+/".repeat(2_000) + "==";
        for written in [data.clone(), data.replace('/', "\\/")] {
            image_spliced_into_every_providers_request(&data, &written);
        }
    }

    /// The body of each ingress with the base64 text `data` written as `written`.
    fn image_spliced_into_every_providers_request(data: &str, written: &str) {
        let openai = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"What is it?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{written}","detail":"high"}}}}]}}]}}"#
        );
        let anthropic = format!(
            r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":[{{"type":"text","text":"What is it?"}},{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{written}"}}}}]}}]}}"#
        );
        let ingresses: [(&dyn IngressDialect, String); 2] =
            [(&OpenAiIngress, openai), (&AnthropicIngress, anthropic)];
        for (ingress, body) in ingresses {
            let body = Bytes::from(body);
            assert_spliced_into_every_providers_request(ingress, &body, written, |kind, value| {
                match kind {
                    ProviderKind::OpenAi => (
                        &value["messages"][0]["content"][1]["image_url"]["url"],
                        format!("data:image/png;base64,{data}"),
                    ),
                    ProviderKind::Anthropic => (
                        &value["messages"][0]["content"][1]["source"]["data"],
                        data.to_owned(),
                    ),
                    _ => (
                        &value["contents"][0]["parts"][1]["inlineData"]["data"],
                        data.to_owned(),
                    ),
                }
            });
        }
    }

    /// A long inline PDF's base64 text goes into every provider's request as a slice of the
    /// client's body, as an image's does: from an OpenAI `file` part and an Anthropic
    /// `document` block, into OpenAI's `file_data`, Anthropic's source and Gemini's inline data.
    #[test]
    fn a_long_document_is_spliced_into_every_providers_request() {
        let data = "JVBERi0xLjQKJcfsj6IK+/".repeat(2_000) + "==";
        for written in [data.clone(), data.replace('/', "\\/")] {
            let openai = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"Summarise."}},{{"type":"file","file":{{"filename":"a.pdf","file_data":"data:application/pdf;base64,{written}"}}}}]}}]}}"#
            );
            let anthropic = format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":[{{"type":"text","text":"Summarise."}},{{"type":"document","source":{{"type":"base64","media_type":"application/pdf","data":"{written}"}},"title":"a.pdf"}}]}}]}}"#
            );
            let ingresses: [(&dyn IngressDialect, String); 2] =
                [(&OpenAiIngress, openai), (&AnthropicIngress, anthropic)];
            for (ingress, body) in ingresses {
                let body = Bytes::from(body);
                assert_spliced_into_every_providers_request(
                    ingress,
                    &body,
                    &written,
                    |kind, value| match kind {
                        ProviderKind::OpenAi => (
                            &value["messages"][0]["content"][1]["file"]["file_data"],
                            format!("data:application/pdf;base64,{data}"),
                        ),
                        ProviderKind::Anthropic => (
                            &value["messages"][0]["content"][1]["source"]["data"],
                            data.clone(),
                        ),
                        _ => (
                            &value["contents"][0]["parts"][1]["inlineData"]["data"],
                            data.clone(),
                        ),
                    },
                );
            }
        }
    }

    /// An agent's screenshot in an Anthropic tool result is shared with the client's body too,
    /// on its way to an Anthropic provider (in the result), an OpenAI one (in the user message
    /// after the `tool` message, which holds text only) and a Gemini one (in the function
    /// response's `parts`).
    #[test]
    fn a_tool_results_long_image_is_spliced_into_the_providers_request() {
        let data = "iVBORw0KGgoAAAANSUhEUgAA+/".repeat(2_000) + "==";
        let body = Bytes::from(format!(
            r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"screenshot","input":{{}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":[{{"type":"text","text":"the screen"}},{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{data}"}}}}]}}]}}]}}"#
        ));
        assert_spliced_into_every_providers_request(
            &AnthropicIngress,
            &body,
            &data,
            |kind, value| match kind {
                ProviderKind::OpenAi => (
                    &value["messages"][2]["content"][0]["image_url"]["url"],
                    format!("data:image/png;base64,{data}"),
                ),
                ProviderKind::Anthropic => (
                    &value["messages"][1]["content"][0]["content"][1]["source"]["data"],
                    data.clone(),
                ),
                _ => (
                    &value["contents"][1]["parts"][0]["functionResponse"]["parts"][0]["inlineData"]
                        ["data"],
                    data.clone(),
                ),
            },
        );
    }

    /// Where the string cannot be placed (its key was written with an escape), the text is
    /// read all the same and escaped again when written.
    #[test]
    fn a_text_whose_key_has_an_escape_is_escaped_again() {
        let body = Bytes::from(format!(
            r#"{{"model":"m","messages":[{{"role":"user","cont\u0065nt":"{ESCAPED}"}}]}}"#
        ));
        let request = OpenAiIngress.decode_chat(&body).unwrap();
        let texts = texts(&request);
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].as_str(), UNESCAPED);
        assert_eq!(texts[0].json_content(), None);
        let built = provider_dialect(&ProviderKind::OpenAi)
            .build_chat(&request, &target())
            .unwrap();
        let value: Value = serde_json::from_slice(&built.body().to_vec()).unwrap();
        assert_eq!(value["messages"][0]["content"], UNESCAPED);
    }
}
