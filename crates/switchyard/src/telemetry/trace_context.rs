//! W3C Trace Context for request records: an incoming `traceparent` header puts the request's
//! spans into the caller's trace; without one (or with a malformed one, which the
//! recommendation says to ignore) the request starts a new trace. Only the header is read here;
//! exporting the spans is the OTLP exporter's business.

use serde::{Deserialize, Serialize};

/// The trace a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits, never all zero.
    pub trace_id: String,
    /// The caller's span (16 lowercase hex digits) when the request carried a `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The caller's sampling decision (`true` for a trace the gateway started).
    pub sampled: bool,
    /// The caller's `tracestate`, which the request's spans carry on (W3C Trace Context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<String>,
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn hex_id(bytes: &[u8]) -> Option<String> {
    (is_lower_hex(bytes) && bytes.iter().any(|&b| b != b'0'))
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

impl TraceContext {
    /// Reads a `traceparent` value (`version-traceid-parentid-flags`). Versions after `00` may
    /// append fields, which are ignored; version `ff`, upper-case hex and all-zero ids are
    /// invalid.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let v = value.trim().as_bytes();
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = &v[0..2];
        if !is_lower_hex(version) || version == b"ff" {
            return None;
        }
        // Version 00 has exactly four fields; later versions may add more after a dash.
        if (version == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let trace_id = hex_id(&v[3..35])?;
        let parent = hex_id(&v[36..52])?;
        let flags = &v[53..55];
        if !is_lower_hex(flags) {
            return None;
        }
        let sampled = u8::from_str_radix(&String::from_utf8_lossy(flags), 16).ok()? & 1 == 1;
        Some(Self {
            trace_id,
            parent_span_id: Some(parent),
            sampled,
            trace_state: None,
        })
    }

    /// A new trace, sampled.
    pub fn new_root() -> Self {
        // The chance of zero is 2⁻¹²⁸, but an all-zero id is invalid, so rule it out.
        let id = rand::random::<u128>().max(1);
        Self {
            trace_id: hex32(id),
            parent_span_id: None,
            sampled: true,
            trace_state: None,
        }
    }

    /// The caller's context when `traceparent` is present and valid (with its `tracestate`, at
    /// most the 512 characters W3C lets a vendor keep), else a new trace.
    pub fn from_header_or_new(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        match traceparent.and_then(Self::from_traceparent) {
            Some(mut context) => {
                context.trace_state = tracestate
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 512)
                    .map(str::to_owned);
                context
            }
            None => Self::new_root(),
        }
    }
}

/// `id` as 32 lowercase hex digits: what `format!("{id:032x}")` writes, without the formatting
/// machinery, on every request.
fn hex32(id: u128) -> String {
    crate::encoding::lower_hex(&id.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn trace_ids_are_the_formatted_hex_of_the_number() {
        for id in [
            1u128,
            0xabc,
            u128::MAX,
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
        ] {
            assert_eq!(hex32(id), format!("{id:032x}"));
        }
        let root = TraceContext::new_root();
        assert_eq!(root.trace_id.len(), 32);
        assert_ne!(root.trace_id, "0".repeat(32));
    }

    #[test]
    fn reads_a_valid_traceparent() {
        let ctx =
            TraceContext::from_traceparent(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap();
        assert_eq!(ctx.trace_id, TRACE);
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        let unsampled =
            TraceContext::from_traceparent(&format!(" 00-{TRACE}-00f067aa0ba902b7-00 ")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn later_versions_may_add_fields() {
        let ctx = TraceContext::from_traceparent(&format!("01-{TRACE}-00f067aa0ba902b7-09-extra"))
            .unwrap();
        assert!(ctx.sampled);
        assert!(
            TraceContext::from_traceparent(&format!("01-{TRACE}-00f067aa0ba902b7-01x")).is_none()
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            String::new(),
            "garbage".to_owned(),
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-zz"),
            format!("00_{TRACE}-00f067aa0ba902b7-01"),
            // Multi-byte characters where hex digits belong must not panic on slicing.
            format!("00-{}é-00f067aa0ba902b7-01", &TRACE[..30]),
        ] {
            assert!(TraceContext::from_traceparent(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn starts_a_new_trace_without_a_valid_header() {
        let a = TraceContext::from_header_or_new(None, None);
        let b = TraceContext::from_header_or_new(Some("nonsense"), None);
        assert_eq!(a.trace_id.len(), 32);
        assert!(a.parent_span_id.is_none() && a.sampled);
        assert_ne!(a.trace_id, b.trace_id);
    }
}
