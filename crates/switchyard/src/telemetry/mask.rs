//! Masking of personal data and secrets in stored prompts and responses: e-mail addresses,
//! phone numbers, payment card numbers (Luhn-checked), IBANs (mod-97-checked), IP addresses and
//! API-key or secret-looking strings become typed placeholders such as `[EMAIL]`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use regex::{Captures, Regex, RegexSet};

use crate::recent::{self, Texts};

// Keys by their issuers' prefixes, as they write them (lower case, a separator after; AWS's
// and Google's in their own case): `Skeleton…`, `pk_users_id` and `session…` are words.
const SECRET: &str = r"\b(?:(?:sk|pk|rk|sess|ghp|gho|ghs|ghu|ghr)[-_]|xox[abpr]-|AKIA|AIza)[-_A-Za-z0-9]{12,}\b|\b(?:Bearer)\s+[A-Za-z0-9._~+/=-]{16,}|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b";
const EMAIL: &str = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b";
const IBAN: &str = r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b";
const CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";
// Four or more dotted groups; only exactly four in range are masked (so `1.2.3.4.5`, a
// version, is left alone).
// A version number written like an address ("version 1.2.3.4") is captured with its word, and
// kept.
const IPV4: &str = r"(?i)(\b(?:version|ver\.?|v)\s*)?\b\d{1,3}(?:\.\d{1,3}){3,}\b";
const IPV6: &str = r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|(?i)\b(?:[0-9a-f]{1,4}:){1,7}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?\b";
// Phone numbers as written across countries: with a country code, grouped any way
// (`+33 1 23 45 67 89`, `+49 30 12345678`, `+1 (555) 123-4567`); an area code in parentheses
// (`(555) 123-4567`); three to five groups (`555-123-4567`, `01 23 45 67 89`); or a trunk prefix
// and one long group (`030 12345678`, `030/12345678`). Only matches of 7 to 15 digits (E.164's
// most) that are not dates are masked.
const PHONE: &str = r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,8}){1,6}\b|\(\d{1,4}\)[ .-]?\d{2,4}[ .-]?\d{2,5}\b|\d{2,5}(?:[ .-]\d{2,4}){1,3}[ .-]\d{2,5}\b|\b0\d{1,4}[ ./-]\d{4,8}\b";
/// In the order they are applied; the set's indexes follow it.
const ALL: [&str; 7] = [SECRET, EMAIL, IBAN, CARD, IPV4, IPV6, PHONE];

/// A pattern as compiled: each `\b` an ASCII word boundary. With a Unicode one the regex
/// crate's lazy DFA gives up at the first non-ASCII byte and a far slower engine takes over
/// (a 16 KiB prompt with one accented letter took 100 times as long to scan). An ASCII boundary
/// also sees one between a non-ASCII letter and an address or number glued to it, which then
/// gets masked too.
fn compiled(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

thread_local! {
    /// Texts this thread found nothing to mask in lately, whole (see [`crate::recent::Texts`]):
    /// only those are kept, so a text with something to mask is always masked, and a text is
    /// found only by equal bytes. They are stored as they are anyway.
    static CLEAN: RefCell<Option<Texts>> = const { RefCell::new(None) };
}

/// Bytes of clean texts each thread keeps: the system prompts and recent turns of a few dozen
/// conversations (a record keeps at most `telemetry.content_max_bytes` of a prompt).
const CLEAN_BYTES: u64 = 2 << 20;

/// Compiled once. A pattern that failed to compile (a bug the tests catch) masks nothing.
struct Patterns {
    /// Every pattern at once: one pass tells which (if any) can match, so text without
    /// anything sensitive (most of it) is scanned once instead of seven times.
    set: Option<RegexSet>,
    secret: Option<Regex>,
    email: Option<Regex>,
    iban: Option<Regex>,
    card: Option<Regex>,
    ipv4: Option<Regex>,
    ipv6: Option<Regex>,
    phone: Option<Regex>,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(&compiled(s)).ok();
        Patterns {
            set: RegexSet::new(ALL.map(compiled)).ok(),
            secret: re(SECRET),
            email: re(EMAIL),
            iban: re(IBAN),
            card: re(CARD),
            ipv4: re(IPV4),
            ipv6: re(IPV6),
            phone: re(PHONE),
        }
    })
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        let digits = if v >= 10 { 100 } else { 10 };
        rem = (rem * digits + v) % 97;
    }
    rem == 1
}

/// A phone pattern's match that is a calendar date: three groups of digits joined by one
/// separator, as year-month-day (`2024-07-18`, the date in a model's name) or day-month-year and
/// month-day-year (`18.07.2024`, `07-18-2024`), the month and day in range. Phone numbers are
/// seldom grouped four-two-two or two-two-four; dates are, and masked they turned every dated
/// model name and date in a stored reply into `[PHONE]`.
fn is_date(text: &str) -> bool {
    let Some(separator) = text.chars().find(|c| !c.is_ascii_digit()) else {
        return false;
    };
    let mut groups = text.split(separator);
    let (Some(a), Some(b), Some(c), None) =
        (groups.next(), groups.next(), groups.next(), groups.next())
    else {
        return false;
    };
    // Digits only: `parse` would also take a sign.
    let number = |g: &str| {
        g.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| g.parse::<u32>().ok())
            .flatten()
    };
    let (Some(x), Some(y), Some(z)) = (number(a), number(b), number(c)) else {
        return false;
    };
    let year = |v: u32| (1000..=2999).contains(&v);
    let month = |m: u32| (1..=12).contains(&m);
    let day = |d: u32| (1..=31).contains(&d);
    match (a.len(), b.len(), c.len()) {
        (4, 2, 2) => year(x) && month(y) && day(z),
        (2, 2, 4) => year(z) && ((day(x) && month(y)) || (month(x) && day(y))),
        _ => false,
    }
}

/// Applies `re` when the set saw it match the original text; `f` sees each match in the text
/// around it. Placeholders match no pattern and never join their neighbours, so a replacement
/// cannot create a match the set missed.
fn apply(
    text: String,
    hit: bool,
    re: &Option<Regex>,
    f: impl Fn(&str, &Captures) -> String,
) -> String {
    match re {
        Some(re) if hit => re
            .replace_all(&text, |c: &Captures| f(&text, c))
            .into_owned(),
        _ => text,
    }
}

/// The characters just before and just after a match.
fn around(text: &str, c: &Captures) -> (Option<char>, Option<char>) {
    let whole = c.get(0).map_or(0..0, |m| m.range());
    (
        text[..whole.start].chars().next_back(),
        text[whole.end..].chars().next(),
    )
}

/// A key-looking token that holds a digit: a key's random tail has some, an identifier
/// (`sk_receive_queue`) seldom does.
fn key_like(token: &str) -> bool {
    token.starts_with("Bearer")
        || token.starts_with("eyJ")
        || token.bytes().any(|b| b.is_ascii_digit())
}

/// An IPv6 match that is an address, not a path of code (`f64::EPSILON`, `Add::add`,
/// `std::f64::consts`): it parses as one, has a digit and two groups at least, and does not run
/// on into a name.
fn ipv6_like(text: &str, c: &Captures) -> bool {
    let found = &c[0];
    let (before, after) = around(text, c);
    let word =
        |ch: Option<char>| ch.is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == ':');
    !word(before)
        && !word(after)
        && found.bytes().any(|b| b.is_ascii_digit())
        && found.split(':').filter(|g| !g.is_empty()).count() >= 2
        && found.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A phone match that is a number, not figures side by side: a `+` glued to a word (`zip+4`)
/// starts none; groups all of one length split by spaces (`21 22 23 24`, `8080 8443 9090`,
/// `100 200 300`) are a list unless the first has a trunk prefix (`01 23 45 67 89`); groups
/// following a digit (`8 045 311 447`) are a larger number's.
fn phone_like(text: &str, c: &Captures) -> bool {
    let found = &c[0];
    let (before, _) = around(text, c);
    if found.starts_with('+') && before.is_some_and(|ch| ch.is_alphanumeric()) {
        return false;
    }
    let start = c.get(0).map_or(0, |m| m.start());
    let preceding = text[..start].trim_end_matches(' ');
    if preceding.len() < start && preceding.ends_with(|ch: char| ch.is_ascii_digit()) {
        return false;
    }
    let groups: Vec<&str> = found.split(' ').collect();
    let spaced = groups.len() >= 3 && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    if spaced && !found.starts_with('0') && groups.iter().all(|g| g.len() == groups[0].len()) {
        return false;
    }
    true
}

/// Replaces sensitive substrings with typed placeholders; text with nothing to mask (most of
/// it) comes back borrowed, not copied.
pub fn mask(text: &str) -> Cow<'_, str> {
    let p = patterns();
    // Without the set (it failed to compile) every pattern runs.
    let Some(set) = &p.set else {
        return Cow::Owned(mask_with(text, &|_| true));
    };
    // A text this thread found nothing in lately (a chat's system prompt and earlier turns come
    // back with every request) is not scanned again.
    if recent::holds(&CLEAN, CLEAN_BYTES, text) {
        return Cow::Borrowed(text);
    }
    let hits = set.matches(text);
    if !hits.matched_any() {
        recent::hold(&CLEAN, CLEAN_BYTES, text);
        return Cow::Borrowed(text);
    }
    Cow::Owned(mask_with(text, &|i| hits.matched(i)))
}

/// Runs the patterns `hit` selects (by index in [`ALL`]), in order.
fn mask_with(text: &str, hit: &dyn Fn(usize) -> bool) -> String {
    let p = patterns();
    let s = apply(text.to_owned(), hit(0), &p.secret, |_, c| {
        if key_like(&c[0]) {
            "[SECRET]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = apply(s, hit(1), &p.email, |text, c| {
        // `git@github.com:owner/repo.git` is where a repository lives, not an address.
        let (_, after) = around(text, c);
        let ssh = after == Some(':')
            && text[c.get(0).map_or(0, |m| m.end()) + 1..]
                .chars()
                .next()
                .is_some_and(|ch| !ch.is_whitespace());
        if ssh {
            c[0].to_owned()
        } else {
            "[EMAIL]".to_owned()
        }
    });
    let s = apply(s, hit(2), &p.iban, |_, c| {
        if iban_valid(&c[0]) {
            "[IBAN]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = apply(s, hit(3), &p.card, |_, c| {
        let digits: Vec<u8> = c[0]
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            "[CARD]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = apply(s, hit(4), &p.ipv4, |_, c| {
        if c.get(1).is_some() {
            return c[0].to_owned();
        }
        let groups: Vec<&str> = c[0].split('.').collect();
        let valid = groups.len() == 4
            && groups
                .iter()
                .all(|g| g.parse::<u16>().is_ok_and(|n| n <= 255));
        if valid {
            "[IP]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = apply(s, hit(5), &p.ipv6, |text, c| {
        if ipv6_like(text, c) {
            "[IP]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    apply(s, hit(6), &p.phone, |text, c| {
        let digits = c[0].bytes().filter(u8::is_ascii_digit).count();
        if (7..=15).contains(&digits) && !is_date(&c[0]) && phone_like(text, c) {
            "[PHONE]".to_owned()
        } else {
            c[0].to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::mask;
    use std::borrow::Cow;

    #[test]
    fn a_text_seen_lately_is_masked_as_the_first_time() {
        // Clean, then from this thread's table: borrowed both times.
        let clean = "You are a terse assistant; answer in one line.";
        for _ in 0..2 {
            assert!(matches!(mask(clean), Cow::Borrowed(t) if t == clean));
        }
        // Only clean texts are kept: one with an address is masked every time it comes back.
        let dirty = "Mail the summary to jane.doe@example.com before noon.";
        for _ in 0..3 {
            assert_eq!(mask(dirty), "Mail the summary to [EMAIL] before noon.");
        }
        // A text of the same length as a clean one seen lately is scanned for itself.
        let same_length = "You are a terse assistant; mail a@example.org!";
        assert_eq!(same_length.len(), clean.len());
        assert_eq!(
            mask(same_length),
            "You are a terse assistant; mail [EMAIL]!"
        );
    }

    #[test]
    fn masks_each_kind() {
        let cases = [
            (
                "write to jane.doe+tag@example.co.uk today",
                "write to [EMAIL] today",
            ),
            (
                "card 4111 1111 1111 1111 exp 12/30",
                "card [CARD] exp 12/30",
            ),
            ("card 4111-1111-1111-1111.", "card [CARD]."),
            (
                "iban DE89 3704 0044 0532 0130 00 please",
                "iban [IBAN] please",
            ),
            ("iban GB82WEST12345698765432", "iban [IBAN]"),
            (
                "version 1.2.3.4 of the lib, ver. 10.0.0.1, v 2.4.0.1, host 10.0.0.1",
                "version 1.2.3.4 of the lib, ver. 10.0.0.1, v 2.4.0.1, host [IP]",
            ),
            (
                "from 192.168.10.254 and 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                "from [IP] and [IP]",
            ),
            (
                "call +44 20 7946 0958 or (555) 123-4567",
                "call [PHONE] or [PHONE]",
            ),
            ("key sk-proj-abcdefghijklmnop1234 here", "key [SECRET] here"),
            (
                "Authorization: Bearer abcdefghijklmnopqrstuvwx",
                "Authorization: [SECRET]",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn leaves_lookalikes_alone() {
        for input in [
            "order 4111 1111 1111 1112 failed", // fails Luhn
            "version 1.2.3.4.5 and 999.1.1.1",  // not IPs
            "GB82WEST12345698765431",           // fails mod 97
            "the year 2024 and 42 apples",
            "sk-short",
            "an email@ without domain",
        ] {
            let out = mask(input);
            assert!(
                !out.contains("[CARD]")
                    && !out.contains("[IBAN]")
                    && !out.contains("[EMAIL]")
                    && !out.contains("[SECRET]"),
                "{input} -> {out}"
            );
        }
        assert_eq!(
            mask("version 1.2.3.4.5 or 300.1.1.1"),
            "version 1.2.3.4.5 or 300.1.1.1"
        );
    }

    /// Code and figures a prompt holds (a coding agent's files) are not personal data: masked,
    /// they would be rewritten on their way to the model.
    #[test]
    fn code_and_figures_are_not_masked() {
        for input in [
            "let e = f64::EPSILON; std::f64::consts::PI",
            "Add::add(a, b) and a::b::c::d and A::class",
            "class SkeletonLoaderComponent; import { SkipNavigationLink }",
            "pk_users_id_primary, sessionIdentifier, ghost_text_renderer, sk_receive_queue",
            "the skills-based-learning approach",
            "temperatures 21 22 23 24 25, ports 8080 8443 9090, numbers 100 200 300 400",
            "population 8 045 311 447",
            "zip+4 12345-6789",
            "git@github.com:owner/repo.git",
        ] {
            assert_eq!(mask(input), input, "{input}");
        }
        // What is one stays masked.
        for (input, expected) in [
            ("key sk-sy-demo-0000000000000000", "key [SECRET]"),
            ("gh ghp_16C7e42F292c6912E7710c838347Ae178B4a", "gh [SECRET]"),
            ("host fe80::1ff:fe23:4567:890a up", "host [IP] up"),
            ("host 2001:db8::8a2e:370:7334.", "host [IP]."),
            ("mail git@github.com today", "mail [EMAIL] today"),
        ] {
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn dates_are_not_phone_numbers() {
        for (input, expected) in [
            (
                "Simulated reply from gpt-4o-mini-2024-07-18 to: hi",
                "Simulated reply from gpt-4o-mini-2024-07-18 to: hi",
            ),
            (
                "due 18.07.2024 or 07-18-2024",
                "due 18.07.2024 or 07-18-2024",
            ),
            ("on 2024 07 18", "on 2024 07 18"),
            // Not dates: a month or day out of range, separators that differ, other groupings.
            ("call 2024-13-18 now", "call [PHONE] now"),
            ("call 18.07-2024 now", "call [PHONE] now"),
            ("call 555-123-4567 now", "call [PHONE] now"),
            ("call 1234-56-789 now", "call [PHONE] now"),
            ("call +49 2024-07-18", "call [PHONE]"),
        ] {
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn phone_numbers_as_countries_write_them() {
        for (input, expected) in [
            (
                "appelez le 01 23 45 67 89 demain",
                "appelez le [PHONE] demain",
            ),
            ("ou le +33 1 23 45 67 89.", "ou le [PHONE]."),
            (
                "Tel. +49 30 12345678 oder 030 12345678",
                "Tel. [PHONE] oder [PHONE]",
            ),
            ("Tel. 030/12345678", "Tel. [PHONE]"),
            ("mobile +4917612345678", "mobile [PHONE]"),
            ("Tokyo +81 3-1234-5678", "Tokyo [PHONE]"),
            (
                "us +1 (555) 123-4567 or 555.123.4567",
                "us [PHONE] or [PHONE]",
            ),
            ("uk 020 7946 0958", "uk [PHONE]"),
            ("glued tel555-123-4567", "glued tel[PHONE]"),
            ("nl +31 (0)20 123 4567", "nl [PHONE]"),
            // Too few digits, or not grouped like a number: left alone.
            (
                "scores 10 20 30 and +5 10 15",
                "scores 10 20 30 and +5 10 15",
            ),
            (
                "in 2023 42 people paid 0.5 each",
                "in 2023 42 people paid 0.5 each",
            ),
            ("nginx 1.22.1, rust 1.95.0", "nginx 1.22.1, rust 1.95.0"),
        ] {
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn every_pattern_compiles() {
        let p = super::patterns();
        for re in [
            &p.secret, &p.email, &p.iban, &p.card, &p.ipv4, &p.ipv6, &p.phone,
        ] {
            assert!(re.is_some());
        }
        assert!(p.set.as_ref().is_some_and(|s| s.len() == super::ALL.len()));
    }

    #[test]
    fn the_prefilter_agrees_with_every_pattern_run_in_turn() {
        // Several kinds in one text, and texts where only some patterns match: the result must
        // equal running each pattern in turn (with the same validity checks).
        let p = super::patterns();
        for input in [
            "mail a@b.io, card 4111 1111 1111 1111, ip 10.0.0.1, key sk-abcdefghijklmnop",
            "only a phone: +44 20 7946 0958",
            "version 1.2.3.4.5 and nothing else",
            "iban DE89 3704 0044 0532 0130 00 and mail x@y.org",
            "plain words, no numbers",
        ] {
            let set = p.set.as_ref().unwrap().matches(input);
            let expected = super::mask_with(input, &|_| true);
            assert_eq!(super::mask_with(input, &|i| set.matched(i)), expected);
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn unicode_and_empty() {
        assert_eq!(mask(""), "");
        assert_eq!(mask("héllo wörld ✓ 12:30"), "héllo wörld ✓ 12:30");
        assert_eq!(mask("a@b.io, ✓ x@y.org"), "[EMAIL], ✓ [EMAIL]");
        // Glued to a non-ASCII letter, still masked (an ASCII word boundary lies between).
        assert_eq!(
            mask("écrire àjane@example.fr ou 4111 1111 1111 1111é"),
            "écrire à[EMAIL] ou [CARD]é"
        );
        assert_eq!(
            mask("Schlüssel sk-proj-abcdefghijklmnop1234 日本 192.168.0.1"),
            "Schlüssel [SECRET] 日本 [IP]"
        );
    }

    /// Every pattern runs on a lazy DFA whatever the text: one with a Unicode word boundary
    /// cannot be built as one (and in the regex crate falls back to a far slower engine on any
    /// text with a non-ASCII byte).
    #[test]
    fn every_pattern_runs_on_a_lazy_dfa() {
        let patterns = super::ALL.map(super::compiled);
        assert!(regex_automata::hybrid::regex::Regex::new_many(&patterns).is_ok());
        assert!(regex_automata::hybrid::regex::Regex::new_many(&super::ALL).is_err());
    }
}
