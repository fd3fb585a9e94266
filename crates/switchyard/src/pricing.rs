//! Prices and the cost of a request. Money is integer nano-dollars (10⁻⁹ USD) end to end: one
//! token of the cheapest model is still a whole number, and no floating point touches a sum.

use switchyard_protocol::canonical::Usage;

/// Nano-dollars per token for each kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
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
        }
    }

    /// Cost of `usage`: each token counted once, at its own price. Reasoning tokens are part of
    /// the output count and billed as output.
    pub fn cost(&self, usage: &Usage) -> i64 {
        let total = usage.uncached_input() * self.input
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + usage.output_tokens * self.output;
        i64::try_from(total).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_exact_integers() {
        let p = Price::per_mtok(0.15, 0.6);
        assert_eq!(p.input, 150);
        assert_eq!(p.output, 600);
        let u = Usage { input_tokens: 1000, output_tokens: 200, cache_read_tokens: 400, ..Usage::default() };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 150 + 200 * 600);
        let p = Price { cache_read: 75, ..p };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 75 + 200 * 600);
    }
}
