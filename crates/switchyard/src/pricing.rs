//! Prices and the cost of a request. Money is integer nano-dollars (10⁻⁹ USD) end to end, and no
//! floating point touches a sum. Rates are pico-dollars (10⁻¹² USD) per token, so that a price
//! with fractions of a nano-dollar per token (Gemini's $0.0375 per million is 37.5) is billed
//! exactly: a request's cost is summed in pico-dollars and rounded to a nano-dollar once.

use switchyard_protocol::canonical::{CacheTtl, Usage};

/// Pico-dollars per token for each kind of token (1 USD per million tokens is 1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    /// Writes to a prompt cache that lives five minutes (Anthropic's default; OpenAI and Gemini
    /// bill none, so their writes cost what input costs).
    pub cache_write: u64,
    /// Writes to a prompt cache that lives an hour (Anthropic's `ttl: "1h"`).
    pub cache_write_1h: u64,
}

impl Rates {
    /// In US dollars per million tokens, as a deployment's `price` block writes them.
    fn to_json(self) -> serde_json::Value {
        let usd = |picos: u64| picos as f64 / PICOS_PER_USD_PER_MTOK;
        serde_json::json!({
            "input_per_mtok": usd(self.input),
            "output_per_mtok": usd(self.output),
            "cache_read_per_mtok": usd(self.cache_read),
            "cache_write_per_mtok": usd(self.cache_write),
            "cache_write_1h_per_mtok": usd(self.cache_write_1h),
        })
    }

    /// From US dollars per million tokens (1 USD/Mtok = a million pico-dollars per token). Without
    /// specific figures, cache reads and writes cost what input costs (never invented discounts).
    pub fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            input: usd_per_mtok(input),
            output: usd_per_mtok(output),
            cache_read: usd_per_mtok(input),
            cache_write: usd_per_mtok(input),
            cache_write_1h: usd_per_mtok(input),
        }
    }

    /// These rates (a long-context tier's) moved as `from` moved to `to`, kind by kind: a
    /// deployment's own price applied to the table's tier.
    pub fn scaled(self, from: Rates, to: Rates) -> Rates {
        let kind = |this: u64, from: u64, to: u64| match from {
            0 => this,
            from => (u128::from(this) * u128::from(to) / u128::from(from)) as u64,
        };
        Rates {
            input: kind(self.input, from.input, to.input),
            output: kind(self.output, from.output, to.output),
            cache_read: kind(self.cache_read, from.cache_read, to.cache_read),
            cache_write: kind(self.cache_write, from.cache_write, to.cache_write),
            cache_write_1h: kind(self.cache_write_1h, from.cache_write_1h, to.cache_write_1h),
        }
    }

    /// The most a token of input can cost for a request that may write a prompt cache living
    /// `cache_writes`: the write rate where it is above the input rate.
    pub fn input_at_most(&self, cache_writes: Option<CacheTtl>) -> u64 {
        match cache_writes {
            None => self.input,
            Some(CacheTtl::FiveMinutes) => self.input.max(self.cache_write),
            Some(CacheTtl::Hour) => self.input.max(self.cache_write).max(self.cache_write_1h),
        }
    }

    /// Each rate the higher of the two.
    fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cache_read: self.cache_read.max(other.cache_read),
            cache_write: self.cache_write.max(other.cache_write),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
        }
    }
}

/// A provider's long-context tier: once a request's input (cached or not) passes
/// `above_input_tokens`, every token of that request is billed at `rates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// What a deployment's requests cost: rates per token, a long-context tier where the provider
/// has one, and a fee per web search the provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub rates: Rates,
    pub long_context: Option<LongContext>,
    /// Per search of a provider's own web search tool (Anthropic's), on top of the tokens its
    /// results add.
    pub web_search: u64,
}

impl Price {
    /// One rate for input and one for output, in US dollars per million tokens.
    pub fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            rates: Rates::per_mtok(input, output),
            long_context: None,
            web_search: 0,
        }
    }

    /// The rates a request with `input_tokens` of input (cache reads and writes included) is
    /// billed at: the long-context tier's once the input passes its threshold.
    pub fn rates_for(&self, input_tokens: u64) -> Rates {
        match self.long_context {
            Some(tier) if input_tokens > tier.above_input_tokens => tier.rates,
            _ => self.rates,
        }
    }

    /// The price as a deployment's `price` block writes it (the admin API shows it).
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = self.rates.to_json();
        out["web_search_per_call"] = serde_json::json!(self.web_search as f64 / 1e9);
        out["long_context"] = self.long_context.map_or(serde_json::Value::Null, |tier| {
            let mut long = tier.rates.to_json();
            long["above_input_tokens"] = tier.above_input_tokens.into();
            long
        });
        out
    }

    /// Cost of `usage`: each token counted once, at its own price, and each web search.
    /// Reasoning tokens are part of the output count and billed as output.
    pub fn cost(&self, usage: &Usage) -> i64 {
        let rates = self.rates_for(usage.input_tokens);
        let hour_writes = usage.cache_write_1h_tokens.min(usage.cache_write_tokens);
        // In u128 pico-dollars: the counts come from providers and must not overflow into a
        // panic; rounded to the nearest nano-dollar once, for the whole request.
        let picos = [
            (usage.uncached_input(), rates.input),
            (usage.cache_read_tokens, rates.cache_read),
            (usage.cache_write_tokens - hour_writes, rates.cache_write),
            (hour_writes, rates.cache_write_1h),
            (usage.output_tokens, rates.output),
            (
                usage.web_search_requests,
                self.web_search.saturating_mul(1000),
            ),
        ]
        .iter()
        .fold(0u128, |sum, &(count, price)| {
            sum.saturating_add(u128::from(count) * u128::from(price))
        });
        i64::try_from(picos.saturating_add(500) / 1000).unwrap_or(i64::MAX)
    }

    /// The highest of two prices, rate by rate and tier by tier: what a request that may reach
    /// either deployment could cost at most. The tier's threshold is the lower of the two, so
    /// that no input is priced below either deployment's rate for it.
    pub fn max(self, other: Self) -> Self {
        let long_context = match (self.long_context, other.long_context) {
            (None, None) => None,
            (a, b) => {
                let threshold =
                    |t: Option<LongContext>| t.map_or(u64::MAX, |t| t.above_input_tokens);
                let rates =
                    |price: &Self, t: Option<LongContext>| t.map_or(price.rates, |t| t.rates);
                Some(LongContext {
                    above_input_tokens: threshold(a).min(threshold(b)),
                    rates: rates(&self, a)
                        .max(rates(&other, b))
                        .max(self.rates)
                        .max(other.rates),
                })
            }
        };
        Self {
            rates: self.rates.max(other.rates),
            long_context,
            web_search: self.web_search.max(other.web_search),
        }
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
pub const TABLE_VERSION: &str = "2026-12-04";

/// A row of the table, in US dollars per million tokens.
struct Listed {
    /// The model's name; dated snapshots and provider forms of it find the row too (see
    /// [`lookup`]).
    model: &'static str,
    rates: Usd,
    /// Above this many input tokens, the whole request at the second rates.
    long_context: Option<(u64, Usd)>,
}

/// Input, output, cache read, five-minute cache write, one-hour cache write.
type Usd = [f64; 5];

/// Rates of a provider that bills no cache writes beyond input: writes at the input's rate.
const fn plain(input: f64, output: f64, cache_read: f64) -> Usd {
    [input, output, cache_read, input, input]
}

/// Anthropic's rates: cache reads a tenth of input, writes 1.25 times it for five minutes and
/// twice it for an hour.
const fn claude(input: f64, output: f64) -> Usd {
    [input, output, input / 10.0, input * 1.25, input * 2.0]
}

/// OpenAI's long-context rule for the models that have one: past 272k input tokens, input and
/// cached input at twice their rates and output at one and a half times.
const fn openai_long(input: f64, output: f64, cache_read: f64) -> Usd {
    plain(input * 2.0, output * 1.5, cache_read * 2.0)
}

const fn row(model: &'static str, rates: Usd) -> Listed {
    Listed {
        model,
        rates,
        long_context: None,
    }
}

const fn tiered(model: &'static str, rates: Usd, above: u64, long: Usd) -> Listed {
    Listed {
        model,
        rates,
        long_context: Some((above, long)),
    }
}

/// List prices from the providers' pricing pages and model pages (table version
/// [`TABLE_VERSION`]). Deployments may override with `price:`.
const TABLE: &[Listed] = &[
    // OpenAI.
    tiered(
        "gpt-6.2-sol",
        plain(2.00, 10.00, 0.10),
        272_000,
        openai_long(2.00, 10.00, 0.10),
    ),
    row("gpt-6.2-astra", plain(8.00, 40.00, 8.00)),
    row("gpt-6.1-terra", plain(1.00, 5.00, 1.00)),
    tiered(
        "gpt-6-sol",
        plain(2.00, 10.00, 0.20),
        272_000,
        openai_long(2.00, 10.00, 0.20),
    ),
    tiered(
        "gpt-6-luna",
        plain(0.10, 0.50, 0.01),
        272_000,
        openai_long(0.10, 0.50, 0.01),
    ),
    tiered(
        "gpt-5.6-luna",
        plain(0.20, 1.20, 0.02),
        272_000,
        openai_long(0.20, 1.20, 0.02),
    ),
    row("gpt-5.1", plain(1.25, 10.00, 0.125)),
    row("gpt-5-codex", plain(1.25, 10.00, 0.125)),
    row("gpt-5", plain(1.25, 10.00, 0.125)),
    row("gpt-5-mini", plain(0.25, 2.00, 0.025)),
    row("gpt-5-nano", plain(0.05, 0.40, 0.005)),
    row("gpt-4o-mini", plain(0.15, 0.60, 0.075)),
    row("gpt-4o", plain(2.50, 10.00, 1.25)),
    row("gpt-4.1-nano", plain(0.10, 0.40, 0.025)),
    row("gpt-4.1-mini", plain(0.40, 1.60, 0.10)),
    row("gpt-4.1", plain(2.00, 8.00, 0.50)),
    row("o3-mini", plain(1.10, 4.40, 0.55)),
    row("o4-mini", plain(1.10, 4.40, 0.275)),
    row("o3", plain(2.00, 8.00, 0.50)),
    row("text-embedding-3-small", plain(0.02, 0.0, 0.02)),
    row("text-embedding-3-large", plain(0.13, 0.0, 0.13)),
    // Embedding models on Bedrock (input only), by their full model ids.
    row("amazon.titan-embed-text-v2:0", plain(0.02, 0.0, 0.02)),
    row("amazon.titan-embed-text-v1", plain(0.10, 0.0, 0.10)),
    row("cohere.embed-english-v3", plain(0.10, 0.0, 0.10)),
    row("cohere.embed-multilingual-v3", plain(0.10, 0.0, 0.10)),
    // Anthropic.
    row("claude-fable-5-1", [10.00, 50.00, 0.25, 12.50, 20.00]),
    row("claude-fable-5", [10.00, 50.00, 1.00, 12.50, 20.00]),
    row("claude-opus-5-5", [4.00, 20.00, 0.20, 5.00, 8.00]),
    row("claude-opus-5", claude(5.00, 25.00)),
    row("claude-opus-4-8", claude(5.00, 25.00)),
    row("claude-opus-4-7", claude(5.00, 25.00)),
    row("claude-opus-4-6", claude(5.00, 25.00)),
    row("claude-opus-4-5", claude(5.00, 25.00)),
    row("claude-opus-4-1", claude(15.00, 75.00)),
    row("claude-opus-4", claude(15.00, 75.00)),
    row("claude-sonnet-5-5", claude(2.00, 10.00)),
    row("claude-sonnet-5", claude(2.00, 10.00)),
    row("claude-sonnet-4-6", claude(3.00, 15.00)),
    // Through the 1M-token context window (a beta on these two): past 200k input tokens the
    // whole request at $6 / $22.50, the cache rates scaled with input.
    tiered(
        "claude-sonnet-4-5",
        claude(3.00, 15.00),
        200_000,
        claude(6.00, 22.50),
    ),
    tiered(
        "claude-sonnet-4",
        claude(3.00, 15.00),
        200_000,
        claude(6.00, 22.50),
    ),
    row("claude-3-7-sonnet", claude(3.00, 15.00)),
    row("claude-3-5-sonnet", claude(3.00, 15.00)),
    // Prompts over 100k tokens at the higher band.
    tiered(
        "claude-haiku-5-5",
        claude(0.10, 0.50),
        100_000,
        claude(0.50, 2.50),
    ),
    row("claude-haiku-4-5", claude(1.00, 5.00)),
    row("claude-3-5-haiku", claude(0.80, 4.00)),
    row("claude-3-haiku", [0.25, 1.25, 0.03, 0.30, 0.50]),
    row("claude-3-opus", claude(15.00, 75.00)),
    // Google.
    tiered(
        "gemini-2.5-pro",
        plain(1.25, 10.00, 0.31),
        200_000,
        plain(2.50, 15.00, 0.625),
    ),
    row("gemini-2.5-flash-lite", plain(0.10, 0.40, 0.025)),
    row("gemini-2.5-flash", plain(0.30, 2.50, 0.075)),
    row("gemini-2.0-flash", plain(0.10, 0.40, 0.025)),
    // Mistral.
    row("mistral-large", plain(2.00, 6.00, 2.00)),
    row("mistral-small", plain(0.10, 0.30, 0.10)),
];

/// Pico-dollars per token in one US dollar per million tokens.
const PICOS_PER_USD_PER_MTOK: f64 = 1e6;

/// Pico-dollars per token in `usd` US dollars per million tokens.
pub fn usd_per_mtok(usd: f64) -> u64 {
    (usd * PICOS_PER_USD_PER_MTOK).round().max(0.0) as u64
}

/// Nano-dollars in `picos` pico-dollars, rounded up: what a reservation of a worst case holds,
/// never less than the cost it covers.
pub fn nanos_at_least(picos: u128) -> i64 {
    i64::try_from(picos.div_ceil(1000)).unwrap_or(i64::MAX)
}

fn rates_of([input, output, cache_read, cache_write, cache_write_1h]: Usd) -> Rates {
    Rates {
        input: usd_per_mtok(input),
        output: usd_per_mtok(output),
        cache_read: usd_per_mtok(cache_read),
        cache_write: usd_per_mtok(cache_write),
        cache_write_1h: usd_per_mtok(cache_write_1h),
    }
}

/// The compiled-in price of an upstream model, if the table knows it. A row matches its model
/// name alone or followed by what names a snapshot or a provider's form of the same model: a
/// date (`-2024-08-06`, `-20250929`), `-latest`, a Bedrock version (`-v1:0`) or a Vertex
/// suffix (`@20250929`). Bedrock's namespaces (`us.anthropic.`) and a Gemini `models/` prefix
/// are left out first. Another suffix is another model (`o3-pro` is not `o3`, at ten times the
/// price), so it has no price rather than a wrong one.
pub fn lookup(model: &str) -> Option<Price> {
    let name = model.rsplit('/').next().unwrap_or(model);
    let name = name
        .find("anthropic.")
        .map_or(name, |at| &name[at + "anthropic.".len()..]);
    TABLE
        .iter()
        .find(|listed| {
            name.strip_prefix(listed.model)
                .is_some_and(same_model_suffix)
        })
        .map(|listed| Price {
            rates: rates_of(listed.rates),
            long_context: listed
                .long_context
                .map(|(above_input_tokens, rates)| LongContext {
                    above_input_tokens,
                    rates: rates_of(rates),
                }),
            web_search: web_search_price(model),
        })
}

/// Whether what follows a model's name in an upstream name still names that model.
fn same_model_suffix(rest: &str) -> bool {
    let (rest, _vertex) = rest.split_once('@').unwrap_or((rest, ""));
    let mut parts = rest.split('-').peekable();
    if parts.next() != Some("") {
        // `gpt-5.1` after `gpt-5`, `o3x` after `o3`: another name.
        return rest.is_empty();
    }
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    while let Some(part) = parts.next() {
        let ok = match part {
            "latest" => true,
            p if digits(p, 8) => true,
            // `-2024-08-06`
            p if digits(p, 4) => {
                parts.next().is_some_and(|m| digits(m, 2))
                    && parts.next().is_some_and(|d| digits(d, 2))
            }
            // Bedrock's `-v1:0` / `-v2`
            p => p.strip_prefix('v').is_some_and(|v| {
                let (major, minor) = v.split_once(':').unwrap_or((v, "0"));
                !major.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && minor.bytes().all(|b| b.is_ascii_digit())
            }),
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pico-dollars in a nano-dollar: the tests' rates are written per token in nano-dollars.
    const PICO: u64 = 1000;

    #[test]
    fn fractions_of_a_nano_dollar_per_token_are_billed_exactly() {
        // $0.0375 per million input tokens is 37.5 nano-dollars a token; $0.0015 is 1.5.
        let p = Price::per_mtok(0.0375, 0.0015);
        let u = |input_tokens, output_tokens| Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u(2, 0)), 75);
        assert_eq!(p.cost(&u(1_000, 1_000)), 37_500 + 1_500);
        // Rounded once per request, to the nearest nano-dollar.
        assert_eq!(p.cost(&u(0, 3)), 5);
        assert_eq!(p.cost(&u(1, 1)), 39);
        assert_eq!(Price::per_mtok(0.0015, 0.0037).cost(&u(24, 40)), 184);
        // A reservation's worst case rounds up, so it always covers the cost.
        assert_eq!(nanos_at_least(37_500), 38);
        assert_eq!(nanos_at_least(37_000), 37);
    }

    #[test]
    fn a_row_matches_its_model_and_the_snapshots_and_provider_forms_of_it() {
        let input = |model: &str| lookup(model).map(|p| p.rates.input / PICO);
        assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(150));
        assert_eq!(input("gpt-4o-mini"), Some(150));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2_500));
        assert_eq!(input("claude-sonnet-4-5-20250929"), Some(3_000));
        assert_eq!(input("claude-sonnet-4-20250514"), Some(3_000));
        assert_eq!(input("claude-opus-4-5-20251101"), Some(5_000));
        assert_eq!(input("claude-opus-4-1-20250805"), Some(15_000));
        assert_eq!(input("claude-3-7-sonnet-latest"), Some(3_000));
        // Bedrock model ids and inference profiles, and Vertex's form.
        assert_eq!(
            input("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(3_000)
        );
        assert_eq!(
            input("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            Some(1_000)
        );
        assert_eq!(
            input(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-6-v1"
            ),
            Some(5_000)
        );
        assert_eq!(input("claude-sonnet-4-5@20250929"), Some(3_000));
        assert_eq!(input("models/gemini-2.5-flash"), Some(300));
        assert_eq!(input("amazon.titan-embed-text-v2:0"), Some(20));
        assert_eq!(input("amazon.titan-embed-text-v1"), Some(100));
        assert_eq!(input("cohere.embed-multilingual-v3"), Some(100));
        assert_eq!(
            lookup("claude-sonnet-4-5")
                .map(|p| (p.rates.cache_write / PICO, p.rates.cache_write_1h / PICO)),
            Some((3_750, 6_000))
        );
        // Another suffix is another model, priced differently or not known: no price rather
        // than a family's.
        for other in [
            "o3-pro",
            "gpt-5-pro",
            "gpt-5.4",
            "gpt-4o-audio-preview",
            "gpt-4o-deploy",
            "claude-opus-4-9",
            "llama-3-8b",
        ] {
            assert_eq!(lookup(other), None, "{other}");
        }
    }

    #[test]
    fn costs_are_exact_integers() {
        let p = Price::per_mtok(0.15, 0.6);
        assert_eq!(p.rates.input, 150 * PICO);
        assert_eq!(p.rates.output, 600 * PICO);
        let u = Usage {
            input_tokens: 1000,
            output_tokens: 200,
            cache_read_tokens: 400,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 150 + 200 * 600);
        let p = Price {
            rates: Rates {
                cache_read: 75 * PICO,
                ..p.rates
            },
            ..p
        };
        assert_eq!(p.cost(&u), 600 * 150 + 400 * 75 + 200 * 600);
    }

    #[test]
    fn hour_long_cache_writes_are_billed_at_their_own_rate() {
        // Claude Sonnet 4.5: $3 input, $3.75 five-minute writes, $6 one-hour writes, $0.30 reads.
        let p = lookup("claude-sonnet-4-5-20250929").unwrap();
        let u = Usage {
            input_tokens: 10_000,
            cache_read_tokens: 1_000,
            cache_write_tokens: 5_000,
            cache_write_1h_tokens: 2_000,
            output_tokens: 100,
            ..Usage::default()
        };
        assert_eq!(
            p.cost(&u),
            4_000 * 3_000 + 1_000 * 300 + 3_000 * 3_750 + 2_000 * 6_000 + 100 * 15_000
        );
        // A report claiming more hour-long writes than writes bills no more than the writes.
        let wrong = Usage {
            cache_write_1h_tokens: 9_000,
            ..u
        };
        assert_eq!(
            p.cost(&wrong),
            4_000 * 3_000 + 1_000 * 300 + 5_000 * 6_000 + 100 * 15_000
        );
    }

    #[test]
    fn a_long_context_tier_bills_the_whole_request_once_input_passes_it() {
        // Gemini 2.5 Pro: $1.25 / $10 up to 200k input tokens, $2.50 / $15 above.
        let p = lookup("gemini-2.5-pro").unwrap();
        let at = |input_tokens: u64| {
            p.cost(&Usage {
                input_tokens,
                output_tokens: 1_000,
                ..Usage::default()
            })
        };
        assert_eq!(at(200_000), 200_000 * 1_250 + 1_000 * 10_000);
        assert_eq!(at(200_001), 200_001 * 2_500 + 1_000 * 15_000);
        // Cached input counts toward the threshold and is billed at the tier's cache rate.
        let cached = Usage {
            input_tokens: 250_000,
            cache_read_tokens: 150_000,
            output_tokens: 10,
            ..Usage::default()
        };
        assert_eq!(
            p.cost(&cached),
            100_000 * 2_500 + 150_000 * 625 + 10 * 15_000
        );
        assert_eq!(p.rates_for(200_000), p.rates);
        assert_eq!(p.rates_for(200_001).input, 2_500 * PICO);
    }

    #[test]
    fn the_highest_of_two_prices_covers_both_at_every_input() {
        let tiered = lookup("gemini-2.5-pro").unwrap();
        let flat = Price::per_mtok(2.0, 12.0);
        let most = tiered.max(flat);
        for input_tokens in [0, 100_000, 200_000, 200_001, 1_000_000] {
            let u = Usage {
                input_tokens,
                output_tokens: 500,
                ..Usage::default()
            };
            assert!(most.cost(&u) >= tiered.cost(&u), "{input_tokens}");
            assert!(most.cost(&u) >= flat.cost(&u), "{input_tokens}");
        }
        assert_eq!(most.rates.input, 2_000 * PICO);
        assert_eq!(most.rates_for(300_000).input, 2_500 * PICO);
        assert_eq!(most.rates_for(300_000).output, 15_000 * PICO);
        assert_eq!(flat.max(flat), flat);
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
