//! JSON objects written with their members in the order given. A `serde_json::Value` object
//! writes its members sorted by name, but the providers' APIs write them in a fixed order of
//! their own (an Anthropic stream event's `type` first), and a client's reader may take the
//! common order faster than any other: the simulator writes what the APIs write.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// An object's members, each already written as JSON text.
pub(crate) struct Ordered(pub(crate) Vec<(&'static str, Box<RawValue>)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A member's value as JSON text. Values here are trees, strings, numbers and other `Ordered`
/// objects, none of which can fail to serialise; were one to, it is written as `null`.
pub(crate) fn member(value: &(impl Serialize + ?Sized)) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// `ordered!{"type": "ping", "index": 0, "delta": ordered!{…}}`: an [`Ordered`] object of
/// those members in that order. Each value is any serialisable expression.
macro_rules! ordered {
    ($($key:literal : $value:expr),* $(,)?) => {
        $crate::ordered::Ordered(vec![$(($key, $crate::ordered::member(&$value))),*])
    };
}
pub(crate) use ordered;

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn members_are_written_in_the_order_given_at_every_depth() {
        let inner = ordered! {"type": "text_delta", "text": "a \"quoted\" word"};
        let event = ordered! {
            "type": "content_block_delta",
            "index": 0,
            "delta": inner,
            "tree": json!({"b": 1, "a": [null, true]}),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a \"quoted\" word"},"tree":{"a":[null,true],"b":1}}"#
        );
        assert_eq!(serde_json::to_string(&ordered! {}).unwrap(), "{}");
    }
}
