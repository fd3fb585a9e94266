//! Fault specs (the `x-sim-fault` grammar), model globs and the live rule table consulted on
//! every request. The table is read-mostly: a flag short-cuts the common "no rules" case so a
//! benchmark run never touches the lock.

use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::FaultRule;

/// What a stream does instead of finishing normally; `n` counts content chunks sent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// Drop the connection after `n` content chunks, with no terminal event.
    CutAfter(u32),
    /// End the body cleanly after `n` content chunks, without the terminal event.
    PrematureEndAfter(u32),
    /// Send a `data: {not json` line after `n` content chunks, then end.
    MalformedAfter(u32),
    /// Send the dialect's in-band error event after `n` content chunks, then end.
    ErrorAfter(u32),
    /// Fall silent after `n` content chunks, the connection held open.
    StallAfter(u32),
    /// After `n` content chunks, send only the dialect's keep-alive event, every 100 ms, for
    /// as long as the client listens.
    PingAfter(u32),
    /// Send the whole stream, terminal events included, then drop the connection before the
    /// body's own end (the last chunk of a chunked body).
    CutAtEnd,
    /// Send the whole stream, terminal events included, then hold the connection open
    /// without ending the body.
    HoldOpen,
}

/// One parsed fault spec. Several faults combine (`ttft_ms=200,status=500`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FaultSpec {
    /// Answer with a provider-shaped error of this status.
    pub status: Option<u16>,
    /// Seconds for the `retry-after` header of the error.
    pub retry_after: Option<u64>,
    /// Never answer.
    pub hang: bool,
    /// Close the TCP connection with a reset, without any response.
    pub reset: bool,
    /// Delay before the response starts, replacing the configured `ttft_ms`.
    pub ttft_ms: Option<u64>,
    /// Break the stream (streaming requests only).
    pub stream: Option<StreamFault>,
    /// Answer 400 with the provider's context-length-exceeded error.
    pub context_length: bool,
    /// A whole (non-stream) answer: send its headers and the first half of its body, then fall
    /// silent with the connection held open.
    pub stall_body: bool,
    /// Answer status 200 with the dialect's error body for a 500, as some servers and proxies
    /// do.
    pub error_body: bool,
}

/// Why a fault spec did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError(String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fault spec: {}", self.0)
    }
}

impl std::error::Error for FaultSpecError {}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::default();
        let mut any = false;
        for item in s.split([',', ';']).map(str::trim).filter(|i| !i.is_empty()) {
            any = true;
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let number = |v: Option<&str>| -> Result<u64, FaultSpecError> {
                let v = v.ok_or_else(|| FaultSpecError(format!("`{key}` needs a value")))?;
                v.parse()
                    .map_err(|_| FaultSpecError(format!("`{key}={v}`: not a whole number")))
            };
            let count = |v: Option<&str>| -> Result<u32, FaultSpecError> {
                u32::try_from(number(v)?)
                    .map_err(|_| FaultSpecError(format!("`{key}` is too large")))
            };
            let flag = |v: Option<&str>| match v {
                None => Ok(true),
                Some(v) => Err(FaultSpecError(format!("`{key}` takes no value, got `{v}`"))),
            };
            match key {
                "status" => {
                    let status = number(value)?;
                    if !(400..=599).contains(&status) {
                        return Err(FaultSpecError(format!(
                            "status {status} is not an error status (400-599)"
                        )));
                    }
                    spec.status = Some(status as u16);
                }
                "retry_after" => spec.retry_after = Some(number(value)?),
                "ttft_ms" => spec.ttft_ms = Some(number(value)?),
                "hang" => spec.hang = flag(value)?,
                "reset" => spec.reset = flag(value)?,
                "context_length" => spec.context_length = flag(value)?,
                "stall_body" => spec.stall_body = flag(value)?,
                "error_body" => spec.error_body = flag(value)?,
                "cut_after" => set_stream(&mut spec, StreamFault::CutAfter(count(value)?))?,
                "premature_end_after" => {
                    set_stream(&mut spec, StreamFault::PrematureEndAfter(count(value)?))?
                }
                "malformed_after" => {
                    set_stream(&mut spec, StreamFault::MalformedAfter(count(value)?))?
                }
                "error_after" => set_stream(&mut spec, StreamFault::ErrorAfter(count(value)?))?,
                "stall_after" => set_stream(&mut spec, StreamFault::StallAfter(count(value)?))?,
                "ping_after" => set_stream(&mut spec, StreamFault::PingAfter(count(value)?))?,
                "cut_at_end" => {
                    flag(value)?;
                    set_stream(&mut spec, StreamFault::CutAtEnd)?
                }
                "hold_open" => {
                    flag(value)?;
                    set_stream(&mut spec, StreamFault::HoldOpen)?
                }
                other => return Err(FaultSpecError(format!("unknown fault `{other}`"))),
            }
        }
        if !any {
            return Err(FaultSpecError("empty".into()));
        }
        if spec.retry_after.is_some() && spec.status.is_none() {
            spec.status = Some(429);
        }
        let outcomes = [
            spec.hang,
            spec.reset,
            spec.status.is_some(),
            spec.context_length,
            spec.stall_body,
            spec.error_body,
        ];
        if outcomes.iter().filter(|o| **o).count() > 1 {
            return Err(FaultSpecError(
                "choose one of `hang`, `reset`, `status`, `context_length`, `stall_body`, \
                 `error_body`"
                    .into(),
            ));
        }
        Ok(spec)
    }
}

fn set_stream(spec: &mut FaultSpec, fault: StreamFault) -> Result<(), FaultSpecError> {
    if spec.stream.replace(fault).is_some() {
        return Err(FaultSpecError("only one stream fault per spec".into()));
    }
    Ok(())
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(ms) = self.ttft_ms {
            parts.push(format!("ttft_ms={ms}"));
        }
        if self.hang {
            parts.push("hang".into());
        }
        if self.reset {
            parts.push("reset".into());
        }
        if let Some(status) = self.status {
            parts.push(format!("status={status}"));
        }
        if let Some(secs) = self.retry_after {
            parts.push(format!("retry_after={secs}"));
        }
        if self.context_length {
            parts.push("context_length".into());
        }
        if self.stall_body {
            parts.push("stall_body".into());
        }
        if self.error_body {
            parts.push("error_body".into());
        }
        match self.stream {
            Some(StreamFault::CutAfter(n)) => parts.push(format!("cut_after={n}")),
            Some(StreamFault::PrematureEndAfter(n)) => {
                parts.push(format!("premature_end_after={n}"))
            }
            Some(StreamFault::MalformedAfter(n)) => parts.push(format!("malformed_after={n}")),
            Some(StreamFault::ErrorAfter(n)) => parts.push(format!("error_after={n}")),
            Some(StreamFault::StallAfter(n)) => parts.push(format!("stall_after={n}")),
            Some(StreamFault::PingAfter(n)) => parts.push(format!("ping_after={n}")),
            Some(StreamFault::CutAtEnd) => parts.push("cut_at_end".into()),
            Some(StreamFault::HoldOpen) => parts.push("hold_open".into()),
            None => {}
        }
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for FaultSpec {
    type Error = FaultSpecError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<FaultSpec> for String {
    fn from(spec: FaultSpec) -> String {
        spec.to_string()
    }
}

/// Matches `text` against a glob where `*` is any run of characters and `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text index it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

struct LiveRule {
    rule: FaultRule,
    remaining: Option<AtomicU64>,
}

/// The fault rules in force, first match wins.
#[derive(Default)]
pub(crate) struct FaultTable {
    rules: RwLock<Vec<LiveRule>>,
    any: AtomicBool,
}

impl FaultTable {
    pub(crate) fn add(&self, rules: impl IntoIterator<Item = FaultRule>) {
        let mut live = self.rules.write().unwrap_or_else(|e| e.into_inner());
        live.extend(rules.into_iter().map(|rule| LiveRule {
            remaining: rule.times.map(AtomicU64::new),
            rule,
        }));
        self.any.store(!live.is_empty(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut live = self.rules.write().unwrap_or_else(|e| e.into_inner());
        live.clear();
        self.any.store(false, Ordering::Release);
    }

    /// The rules with their remaining counts (expired ones included, at `times: 0`).
    pub(crate) fn list(&self) -> Vec<FaultRule> {
        let live = self.rules.read().unwrap_or_else(|e| e.into_inner());
        live.iter()
            .map(|l| FaultRule {
                times: l.remaining.as_ref().map(|r| r.load(Ordering::Acquire)),
                ..l.rule.clone()
            })
            .collect()
    }

    /// The first live rule matching `model`, consuming one of its uses.
    pub(crate) fn take(&self, model: &str) -> Option<FaultSpec> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let live = self.rules.read().unwrap_or_else(|e| e.into_inner());
        for l in live.iter() {
            if !glob_match(&l.rule.model, model) {
                continue;
            }
            match &l.remaining {
                None => return Some(l.rule.fault),
                Some(left) => {
                    let took = left
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok();
                    if took {
                        return Some(l.rule.fault);
                    }
                }
            }
        }
        None
    }
}
