//! Prices and the cost of a request. Money is integer nano-dollars (10⁻⁹ USD) end to end: one
//! token of the cheapest model is still a whole number, and no floating point touches a sum.

use switchyard_protocol::canonical::Usage;

/// Nano-dollars per token for each kind of token, and per web search the provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Per search of a provider's own web search tool (Anthropic's), on top of the tokens its
    /// results add.
    pub web_search: u64,
}

impl Price {
    /// From US dollars per million tokens (1 USD/Mtok = 1,000 nano-dollars per token).
    pub fn per_mtok(input: f64, output: f64) -> Self {
        let nanos = |usd: f64| (usd * 1_000.0).round().max(0.0) as u64;
        Self {
            input: nanos(input),
            output: nanos(output),
            // Without a specific figure, cached reads cost what input costs (never invented
            // discounts); writes likewise.
            cache_read: nanos(input),
            cache_write: nanos(input),
            web_search: 0,
        }
    }

    /// Cost of `usage`: each token counted once, at its own price, and each web search.
    /// Reasoning tokens are part of the output count and billed as output.
    pub fn cost(&self, usage: &Usage) -> i64 {
        // Saturating: the counts come from providers and must not overflow into a panic.
        let total = [
            (usage.uncached_input(), self.input),
            (usage.cache_read_tokens, self.cache_read),
            (usage.cache_write_tokens, self.cache_write),
            (usage.output_tokens, self.output),
            (usage.web_search_requests, self.web_search),
        ]
        .iter()
        .fold(0u64, |sum, (count, price)| {
            sum.saturating_add(count.saturating_mul(*price))
        });
        i64::try_from(total).unwrap_or(i64::MAX)
    }
}

/// US dollars for one search of a provider's web search tool, by model prefix: Anthropic
/// charges $10 per 1,000 searches on every model that has the tool.
const WEB_SEARCH: &[(&str, f64)] = &[("claude-", 0.01)];

/// Nano-dollars for one web search of `model`'s provider, where the table knows it.
pub fn web_search_price(model: &str) -> u64 {
    WEB_SEARCH
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map_or(0, |&(_, usd)| usd_nanos(usd))
}

/// Nano-dollars in `usd` US dollars.
pub fn usd_nanos(usd: f64) -> u64 {
    (usd * 1e9).round().max(0.0) as u64
}

/// Version of the compiled-in table; bump with every price change.
pub const TABLE_VERSION: &str = "2026-11-29";

/// List prices in US dollars per million tokens: (model prefix, input, output, cache read,
/// cache write). Looked up by the longest prefix of the upstream model name, so dated snapshots
/// (`gpt-4o-mini-2024-07-18`) find their family. Deployments may override with `price:`.
const TABLE: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.15),
    ("gpt-4o", 2.50, 10.00, 1.25, 2.50),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025, 0.10),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10, 0.40),
    ("gpt-4.1", 2.00, 8.00, 0.50, 2.00),
    ("o3-mini", 1.10, 4.40, 0.55, 1.10),
    ("o4-mini", 1.10, 4.40, 0.275, 1.10),
    ("o3", 2.00, 8.00, 0.50, 2.00),
    ("text-embedding-3-small", 0.02, 0.0, 0.02, 0.02),
    ("text-embedding-3-large", 0.13, 0.0, 0.13, 0.13),
    ("claude-opus-4", 15.00, 75.00, 1.50, 18.75),
    ("claude-sonnet-4", 3.00, 15.00, 0.30, 3.75),
    ("claude-3-7-sonnet", 3.00, 15.00, 0.30, 3.75),
    ("claude-3-5-sonnet", 3.00, 15.00, 0.30, 3.75),
    ("claude-haiku-4", 1.00, 5.00, 0.10, 1.25),
    ("claude-3-5-haiku", 0.80, 4.00, 0.08, 1.00),
    ("gemini-2.5-pro", 1.25, 10.00, 0.31, 1.25),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.025, 0.10),
    ("gemini-2.5-flash", 0.30, 2.50, 0.075, 0.30),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025, 0.10),
    ("mistral-large", 2.00, 6.00, 2.00, 2.00),
    ("mistral-small", 0.10, 0.30, 0.10, 0.10),
];

fn nanos(usd_per_mtok: f64) -> u64 {
    (usd_per_mtok * 1_000.0).round().max(0.0) as u64
}

/// The compiled-in price of an upstream model, if the table knows its family.
pub fn lookup(model: &str) -> Option<Price> {
    TABLE
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(_, i, o, r, w)| Price {
            input: nanos(i),
            output: nanos(o),
            cache_read: nanos(r),
            cache_write: nanos(w),
            web_search: web_search_price(model),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_lookup_uses_the_longest_prefix() {
        assert_eq!(
            super::lookup("gpt-4o-mini-2024-07-18").map(|p| p.input),
            Some(150)
        );
        assert_eq!(
            super::lookup("gpt-4o-2024-08-06").map(|p| p.output),
            Some(10_000)
        );
        assert_eq!(
            super::lookup("claude-sonnet-4-5").map(|p| p.cache_write),
            Some(3_750)
        );
        assert_eq!(super::lookup("llama-3-8b"), None);
    }

    use super::*;

    #[test]
    fn costs_are_exact_integers() {
        let p = Price::per_mtok(0.15, 0.6);
        assert_eq!(p.input, 150);
        assert_eq!(p.output, 600);
        let u = Usage {
            input_tokens: 1000,
            output_tokens: 200,
            cache_read_tokens: 400,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 150 + 200 * 600);
        let p = Price {
            cache_read: 75,
            ..p
        };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 75 + 200 * 600);
    }

    #[test]
    fn web_searches_are_billed_per_search_on_top_of_tokens() {
        let p = lookup("claude-sonnet-4-5").unwrap();
        assert_eq!(p.web_search, 10_000_000, "$10 per 1,000 searches");
        assert_eq!(lookup("gpt-4o").unwrap().web_search, 0);
        let u = Usage {
            input_tokens: 1_000,
            output_tokens: 100,
            web_search_requests: 3,
            web_fetch_requests: 2,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), 1_000 * 3_000 + 100 * 15_000 + 3 * 10_000_000);
        // Counts beyond any real bill saturate rather than overflow.
        let huge = Usage {
            web_search_requests: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(p.cost(&huge), i64::MAX);
    }
}
