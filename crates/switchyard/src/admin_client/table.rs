//! Plain-text tables for the terminal: a header row, columns padded to their widest cell,
//! numbers aligned right.

/// `text` with its control characters escaped (`\u{1b}`), line breaks and tabs too unless
/// `lines`: what a client sent (a user id, a tag, a model name) is shown, never run by the
/// operator's terminal (an escape sequence can clear it, recolour it, retitle its window).
pub fn printable(text: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    let kept = |c: char| !c.is_control() || (lines && (c == '\n' || c == '\t'));
    if text.chars().all(kept) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if kept(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    std::borrow::Cow::Owned(out)
}

pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as `(header, align right)`.
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Self::with_columns(columns.iter().map(|(h, r)| ((*h).to_owned(), *r)).collect())
    }

    /// Columns whose headers are only known at run time (e.g. scorer names).
    pub fn with_columns(columns: Vec<(String, bool)>) -> Self {
        Self {
            right: columns.iter().map(|(_, r)| *r).collect(),
            headers: columns.into_iter().map(|(h, _)| h).collect(),
            rows: Vec::new(),
        }
    }

    /// A row; its cells' control characters are written escaped (see [`printable`]).
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(
            row.into_iter()
                .map(|cell| match printable(&cell, false) {
                    std::borrow::Cow::Borrowed(_) => cell,
                    std::borrow::Cow::Owned(escaped) => escaped,
                })
                .collect(),
        );
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            let last = i + 1 == cells.len();
            if self.right.get(i).copied().unwrap_or(false) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.truncate(out.trim_end().len());
        out
    }

    /// The header line alone (for `--follow`, printed once).
    pub fn header(&self, widths: &[usize]) -> String {
        self.line(&self.headers, widths)
    }

    /// Rows only, padded to `widths` (for `--follow`, where the header came earlier).
    pub fn rows_with(&self, widths: &[usize]) -> String {
        let mut out = String::new();
        for row in &self.rows {
            out.push_str(&self.line(row, widths));
            out.push('\n');
        }
        out
    }

    /// Column widths, at least `min` each.
    pub fn widths_at_least(&self, min: &[usize]) -> Vec<usize> {
        self.widths()
            .into_iter()
            .zip(min.iter().chain(std::iter::repeat(&0)))
            .map(|(w, m)| w.max(*m))
            .collect()
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = self.header(&widths);
        out.push('\n');
        out.push_str(&self.rows_with(&widths));
        out
    }
}

/// US dollars from nano-dollars, to the micro-dollar.
pub fn usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!(
        "{sign}${}.{:06}",
        n / 1_000_000_000,
        (n % 1_000_000_000) / 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_and_numbers_aligned_right() {
        let mut t = Table::new(&[("NAME", false), ("COUNT", true), ("NOTE", false)]);
        t.push(vec!["a".into(), "5".into(), "x".into()]);
        t.push(vec!["longer".into(), "12345".into(), "y".into()]);
        assert_eq!(
            t.render(),
            "NAME    COUNT  NOTE\na           5  x\nlonger  12345  y\n"
        );
    }

    #[test]
    fn dollars_from_nanos() {
        assert_eq!(usd(0), "$0.000000");
        assert_eq!(usd(1_500), "$0.000001");
        assert_eq!(usd(12_345_678_901), "$12.345678");
        assert_eq!(usd(-2_000_000_000), "-$2.000000");
    }
}

#[cfg(test)]
mod printable_tests {
    use super::{Table, printable};

    #[test]
    fn a_clients_control_characters_reach_the_terminal_escaped() {
        let evil = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}\nnext";
        assert_eq!(
            printable(evil, false),
            "evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{a}next"
        );
        assert_eq!(
            printable(evil, true),
            "evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\nnext"
        );
        assert!(matches!(
            printable("plain ✓", false),
            std::borrow::Cow::Borrowed(_)
        ));
        let mut t = Table::new(&[("USER", false)]);
        t.push(vec![evil.to_owned()]);
        assert!(!t.render().contains('\u{1b}'));
    }
}
