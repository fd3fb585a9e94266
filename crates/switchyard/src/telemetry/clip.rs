//! Bounds the prompt and response text a request record keeps (`telemetry.content_max_bytes`).
//! A text over the cap keeps its head and its tail, half the cap each, around a marker saying how
//! many bytes were cut. Only the kept bytes are ever copied off the request, so a 200 KB prompt
//! costs its record a few kilobytes, and masking later runs over those alone.
//!
//! Masking after a cut could miss a secret that the cut split in two, leaving half of it in the
//! record. So when the text is still to be masked, each kept side carries [`MARGIN`] more bytes
//! towards the cut and the cut is only marked (with [`CUT`]): the writer masks both sides with
//! their margins, then drops the margins and writes the marker ([`finish_masked`]). A secret
//! shorter than the margin that straddles the edge of a side is then cut away, never half kept.

use std::borrow::Cow;

/// Bytes kept beyond each side of a cut until masking is done.
pub const MARGIN: usize = 1024;

/// Marks a pending cut inside a record's text, between the two sides: `head CUT count CUT tail`.
/// A Unicode noncharacter, removed from the kept text itself so it cannot be forged.
const CUT: char = '\u{FDD0}';
/// [`CUT`]'s bytes, for searching a text's bytes for it.
const CUT_UTF8: &[u8] = &{
    let mut bytes = [0; CUT.len_utf8()];
    CUT.encode_utf8(&mut bytes);
    bytes
};

/// The text left where bytes were cut.
pub fn marker(cut_bytes: usize) -> String {
    format!("\n[... {cut_bytes} bytes cut ...]\n")
}

/// Total length of `parts` taken together.
fn total_len<S: AsRef<str>>(parts: &[S]) -> usize {
    parts.iter().map(|p| p.as_ref().len()).sum()
}

/// Appends the bytes `from..to` of the concatenation of `parts` to `out`, rounded inwards to
/// character boundaries, without the [`CUT`] character.
fn push_range<S: AsRef<str>>(parts: &[S], from: usize, to: usize, out: &mut String) {
    let mut offset = 0;
    for part in parts {
        let part = part.as_ref();
        let (start, end) = (offset, offset + part.len());
        offset = end;
        if end <= from || start >= to {
            continue;
        }
        let mut a = from.saturating_sub(start);
        let mut b = (to - start).min(part.len());
        while a < b && !part.is_char_boundary(a) {
            a += 1;
        }
        while b > a && !part.is_char_boundary(b) {
            b -= 1;
        }
        let slice = &part[a..b];
        // The vector search: `str::contains` looks for a character a word at a time.
        if memchr::memmem::find(slice.as_bytes(), CUT_UTF8).is_some() {
            out.extend(slice.chars().filter(|&c| c != CUT));
        } else {
            out.push_str(slice);
        }
    }
}

/// The text of `parts` taken together, within `cap` bytes. Over the cap: the first and last
/// `cap / 2` bytes around [`marker`]; or, when `masked_later`, each side [`MARGIN`] bytes longer
/// around a pending cut that [`finish_masked`] settles after masking.
pub fn clip<S: AsRef<str>>(parts: &[S], cap: usize, masked_later: bool) -> String {
    let total = total_len(parts);
    let margin = if masked_later { MARGIN } else { 0 };
    if total <= cap + 2 * margin {
        let mut out = super::spare::buffer(total);
        push_range(parts, 0, total, &mut out);
        return out;
    }
    let half = cap / 2;
    let cut = total - 2 * half;
    let mut out = super::spare::buffer(cap + 2 * margin + 32);
    push_range(parts, 0, half + margin, &mut out);
    if masked_later {
        out.push(CUT);
        out.push_str(&cut.to_string());
        out.push(CUT);
    } else {
        out.push_str(&marker(cut));
    }
    push_range(parts, total - half - margin, total, &mut out);
    out
}

/// Masks a text that [`clip`] may have cut with `masked_later`, in place: both sides are masked
/// with their margins, the margins dropped, and the marker written. When the mask changes
/// nothing (most texts) the margins give way to the marker where they lie, so no text is copied;
/// a buffer a masked copy replaces goes back to the spares (see [`super::spare`]).
pub fn finish_masked(text: &mut String, mask: impl Fn(&str) -> Cow<'_, str>) {
    let mut cuts = memchr::memmem::find_iter(text.as_bytes(), CUT_UTF8);
    let (Some(first), Some(second)) = (cuts.next(), cuts.next()) else {
        if let Cow::Owned(masked) = mask(text) {
            super::spare::hand_back(std::mem::replace(text, masked));
        }
        return;
    };
    // Both at a character's first byte: `CUT` is a whole character.
    let tail_at = second + CUT_UTF8.len();
    let marker = marker(text[first + CUT_UTF8.len()..second].parse().unwrap_or(0));
    let head = mask(&text[..first]);
    let tail = mask(&text[tail_at..]);
    let mut head_end = head.len().saturating_sub(MARGIN);
    while !head.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = MARGIN.min(tail.len());
    while !tail.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let masked = match (&head, &tail) {
        (Cow::Borrowed(_), Cow::Borrowed(_)) => None,
        _ => {
            let mut out = super::spare::buffer(head_end + marker.len() + tail.len() - tail_start);
            out.push_str(&head[..head_end]);
            out.push_str(&marker);
            out.push_str(&tail[tail_start..]);
            Some(out)
        }
    };
    match masked {
        // Unmasked, `head` and `tail` are the text's own bytes and their offsets the text's.
        None => text.replace_range(head_end..tail_at + tail_start, &marker),
        Some(out) => super::spare::hand_back(std::mem::replace(text, out)),
    }
}

/// Shares `cap` bytes among texts of the given lengths: short texts keep everything, and what
/// they leave is shared equally by the longer ones (so a long system prompt cannot crowd out the
/// question). Returns each text's own cap, in the order given.
pub fn share(lengths: &[usize], cap: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut caps = vec![0; lengths.len()];
    let mut left = cap;
    for (done, &i) in order.iter().enumerate() {
        let fair = left / (lengths.len() - done);
        let given = lengths[i].min(fair);
        caps[i] = given;
        left -= given;
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(clip(&["hello ", "world"], 100, false), "hello world");
        assert_eq!(clip(&["hello"], 100, true), "hello");
    }

    #[test]
    fn long_text_keeps_head_and_tail_around_a_marker() {
        let text = format!("{}{}", "a".repeat(5000), "z".repeat(5000));
        let kept = clip(&[&text], 1000, false);
        assert!(kept.starts_with(&"a".repeat(500)));
        assert!(kept.ends_with(&"z".repeat(500)));
        assert!(kept.contains("[... 9000 bytes cut ...]"));
        assert!(kept.len() < 1100);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(3000);
        let kept = clip(&[&text], 1001, false);
        assert!(kept.starts_with('é') && kept.ends_with('é'));
        let pending = clip(&[&text], 1001, true);
        let mut masked = pending.clone();
        finish_masked(&mut masked, |t| Cow::Borrowed(t));
        assert!(masked.contains("bytes cut"));
        assert!(masked.starts_with('é') && masked.ends_with('é'));
        // Finished in place, the text is what a mask that copies it gives.
        let mut copied = pending.clone();
        finish_masked(&mut copied, |t| Cow::Owned(t.to_owned()));
        assert_eq!(masked, copied);
        assert!(
            masked.len() < 1100,
            "the margins are gone: {}",
            masked.len()
        );
    }

    #[test]
    fn a_secret_split_by_the_cut_is_never_half_kept() {
        // The secret straddles the end of the head's margin: masking sees only half of it, so
        // that half must fall in the margin that is dropped.
        let secret = "SECRETSECRETSECRET";
        let cap = 1000;
        let at = cap / 2 + MARGIN - secret.len() / 2;
        let text = format!("{}{secret}{}", "x".repeat(at), "y".repeat(20_000));
        let mut masked = clip(&[&text], cap, true);
        // A mask that only recognises the whole secret.
        finish_masked(&mut masked, |t| Cow::Owned(t.replace(secret, "[SECRET]")));
        assert!(!masked.contains("SECRET"), "{masked}");
        assert!(masked.contains("bytes cut"));
        // And a secret well inside the kept head is masked, not cut.
        let text = format!("{secret}{}", "y".repeat(20_000));
        let mut masked = clip(&[&text], cap, true);
        finish_masked(&mut masked, |t| Cow::Owned(t.replace(secret, "[SECRET]")));
        assert!(masked.starts_with("[SECRET]"));
    }

    #[test]
    fn the_cut_character_cannot_be_forged() {
        let text = format!("a{CUT}5{CUT}b");
        assert_eq!(clip(&[&text], 100, true), "a5b");
    }

    #[test]
    fn the_cap_is_shared_fairly() {
        assert_eq!(share(&[10, 100_000], 1000), vec![10, 990]);
        assert_eq!(share(&[5000, 5000], 1000), vec![500, 500]);
        assert_eq!(share(&[10, 20], 1000), vec![10, 20]);
        assert_eq!(share(&[], 1000), Vec::<usize>::new());
    }
}
