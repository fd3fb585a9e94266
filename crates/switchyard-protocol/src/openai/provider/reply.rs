//! The common `chat.completion` and `chat.completion.chunk` read by hand, in one pass over
//! their text: most of a short request's parse went into serde_json's machinery for the reply's
//! two dozen keys, most of which are skipped, and a stream's chunks that the text frame does not
//! read (its first, its first text, its finish and its usage) cost as much each. The readers
//! take what the serde decoders (`WireCompletion`'s and `WireStreamChunk`'s `Deserialize`) take,
//! into the same values, tool calls included, and give up on everything else (escaped keys, a
//! duplicate field, an integer out of range, an in-band error, any fault), which then goes to
//! that decoder: it reads every form and words every error. The tests hold each pair to the
//! same answers.

use serde::de::IgnoredAny;

use super::{
    RawJson, WireChoice, WireChoices, WireCompletion, WireCompletionDetails, WireContent,
    WireDelta, WireFunctionCall, WireMessage, WirePromptDetails, WireStreamChoice, WireStreamChunk,
    WireToolCall, WireUsage,
};
use crate::scan::{Cursor, set};

/// The reply, if it is in the common form.
pub(super) fn read(body: &[u8]) -> Option<WireCompletion<'_>> {
    let mut c = Cursor::new(crate::json::utf8(body)?);
    let mut out = WireCompletion::default();
    // As in the serde decoder, a later top-level field replaces an earlier one of its name.
    c.object(|c, key| {
        match key {
            "id" => out.id = c.string()?.into_owned(),
            "model" => out.model = c.string()?.into_owned(),
            "created" => out.created = i64::try_from(c.uint()?).ok()?,
            "choices" => out.choices = choices(c, choice)?,
            "usage" => out.usage = c.optional(usage)?,
            "object" | "system_fingerprint" => c.skip()?,
            _ => {
                let value = c.value()?;
                out.rest.insert(key.to_owned(), value);
            }
        }
        Some(())
    })?;
    c.at_end().then_some(out)
}

/// A reply's or a chunk's `choices`, each read by `choice`.
fn choices<'a, C>(
    c: &mut Cursor<'a>,
    mut choice: impl FnMut(&mut Cursor<'a>) -> Option<C>,
) -> Option<WireChoices<C>> {
    let mut out = WireChoices::default();
    c.array(|c| {
        let choice = choice(c)?;
        match out.first {
            None => out.first = Some(choice),
            Some(_) => out.rest.push(choice),
        }
        Some(())
    })?;
    Some(out)
}

fn choice<'a>(c: &mut Cursor<'a>) -> Option<WireChoice<'a>> {
    let (mut message, mut finish_reason, mut logprobs) = (None, None, None);
    let mut seen = [false; 3];
    c.object(|c, key| match key {
        "message" => set(&mut seen[0], &mut message, c.optional(self::message)?),
        "finish_reason" => set(
            &mut seen[1],
            &mut finish_reason,
            c.optional(|c| c.string())?,
        ),
        "logprobs" => set(&mut seen[2], &mut logprobs, c.optional(|c| c.value())?),
        _ => c.skip(),
    })?;
    Some(WireChoice {
        message,
        finish_reason,
        logprobs,
    })
}

fn message(c: &mut Cursor<'_>) -> Option<WireMessage> {
    let mut texts: [Option<String>; 4] = Default::default();
    let mut seen = [false; 5];
    let mut tool_calls = None;
    c.object(|c, key| {
        let i = match key {
            "content" => 0,
            "refusal" => 1,
            "reasoning_content" => 2,
            "reasoning" => 3,
            "tool_calls" => return set(&mut seen[4], &mut tool_calls, c.optional(calls)?),
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut texts[i], c.optional_string()?)
    })?;
    let [content, refusal, reasoning_content, reasoning] = texts;
    Some(WireMessage {
        content: content.map(|text| WireContent {
            text,
            thinking: None,
        }),
        refusal,
        reasoning_content,
        reasoning,
        tool_calls,
    })
}

/// A stream chunk, if it is in the common form. Unlike a whole reply's, a chunk's fields are
/// each allowed once (its serde decoder is derived).
pub(super) fn read_chunk(data: &str) -> Option<WireStreamChunk<'_>> {
    let mut c = Cursor::new(data);
    let mut out = WireStreamChunk::default();
    let mut seen = [false; 6];
    c.object(|c, key| match key {
        "id" => set(&mut seen[0], &mut out.id, c.string()?),
        "model" => set(&mut seen[1], &mut out.model, c.string()?),
        "choices" => set(&mut seen[2], &mut out.choices, choices(c, stream_choice)?),
        "usage" => set(&mut seen[3], &mut out.usage, c.optional(usage)?),
        "error" => {
            let error = c.optional(|c| c.skip().map(|()| IgnoredAny))?;
            set(&mut seen[4], &mut out.error, error)
        }
        "object" => set(&mut seen[5], &mut out.object, c.string()?),
        // Ignored as any other member is (named twice, the last is noted: the frame around it
        // holds the first as it is).
        "obfuscation" => {
            out.obfuscation = Some(RawJson(c.raw_value()?));
            Some(())
        }
        _ => c.skip(),
    })?;
    c.at_end().then_some(out)
}

fn stream_choice<'a>(c: &mut Cursor<'a>) -> Option<WireStreamChoice<'a>> {
    let (mut delta, mut finish_reason, mut logprobs) = (None, None, None);
    let mut seen = [false; 3];
    c.object(|c, key| match key {
        "delta" => set(&mut seen[0], &mut delta, c.optional(self::delta)?),
        "finish_reason" => set(
            &mut seen[1],
            &mut finish_reason,
            c.optional(|c| c.string())?,
        ),
        "logprobs" => set(
            &mut seen[2],
            &mut logprobs,
            c.optional(|c| c.raw_value().map(RawJson))?,
        ),
        _ => c.skip(),
    })?;
    Some(WireStreamChoice {
        delta,
        finish_reason,
        logprobs,
    })
}

/// A chunk's `delta`; its text is kept as the JSON string it is written as (the text frame is
/// cut around it), and any other value there is left to the serde decoder.
fn delta<'a>(c: &mut Cursor<'a>) -> Option<WireDelta<'a>> {
    let mut content = None;
    let mut texts: [Option<String>; 3] = Default::default();
    let mut seen = [false; 5];
    let mut tool_calls = None;
    c.object(|c, key| {
        let i = match key {
            "content" => {
                let raw = c.optional(|c| {
                    (c.peek()? == b'"').then_some(())?;
                    c.raw_value().map(RawJson)
                })?;
                return set(&mut seen[0], &mut content, raw);
            }
            "refusal" => 0,
            "reasoning_content" => 1,
            "reasoning" => 2,
            "tool_calls" => return set(&mut seen[4], &mut tool_calls, c.optional(calls)?),
            _ => return c.skip(),
        };
        set(&mut seen[i + 1], &mut texts[i], c.optional_string()?)
    })?;
    let [refusal, reasoning_content, reasoning] = texts;
    Some(WireDelta {
        content,
        refusal,
        reasoning_content,
        reasoning,
        tool_calls,
    })
}

/// `tool_calls`: each call's index, id and function (its `type` and anything else skipped).
fn calls(c: &mut Cursor<'_>) -> Option<Vec<WireToolCall>> {
    c.list(|c| {
        let (mut index, mut id, mut function) = (None, None, None);
        let mut seen = [false; 3];
        c.object(|c, key| match key {
            "index" => {
                let value = c.optional(|c| u32::try_from(c.uint()?).ok())?;
                set(&mut seen[0], &mut index, value)
            }
            "id" => set(&mut seen[1], &mut id, c.optional_string()?),
            "function" => set(&mut seen[2], &mut function, c.optional(self::function)?),
            _ => c.skip(),
        })?;
        Some(WireToolCall {
            index,
            id,
            function,
        })
    })
}

/// A call's `function`: its name and arguments (the arguments' JSON text, as a string).
fn function(c: &mut Cursor<'_>) -> Option<WireFunctionCall> {
    let (mut name, mut arguments) = (None, None);
    let mut seen = [false; 2];
    c.object(|c, key| match key {
        "name" => set(&mut seen[0], &mut name, c.optional_string()?),
        "arguments" => set(&mut seen[1], &mut arguments, c.optional_string()?),
        _ => c.skip(),
    })?;
    Some(WireFunctionCall { name, arguments })
}

fn usage(c: &mut Cursor<'_>) -> Option<WireUsage> {
    let mut counts: [Option<u64>; 4] = [None; 4];
    let mut seen = [false; 6];
    let (mut prompt_details, mut completion_details) = (None, None);
    c.object(|c, key| match key {
        "prompt_tokens" => set(&mut seen[0], &mut counts[0], Some(c.uint()?)),
        "completion_tokens" => set(&mut seen[1], &mut counts[1], Some(c.uint()?)),
        "prompt_cache_hit_tokens" => set(&mut seen[2], &mut counts[2], c.optional_uint()?),
        "total_tokens" => set(&mut seen[5], &mut counts[3], c.optional_uint()?),
        "prompt_tokens_details" => {
            let value = c.optional(|c| {
                Some(WirePromptDetails {
                    cached_tokens: one_count(c, "cached_tokens")?,
                })
            })?;
            set(&mut seen[3], &mut prompt_details, value)
        }
        "completion_tokens_details" => {
            let value = c.optional(|c| {
                Some(WireCompletionDetails {
                    reasoning_tokens: one_count(c, "reasoning_tokens")?,
                })
            })?;
            set(&mut seen[4], &mut completion_details, value)
        }
        _ => c.skip(),
    })?;
    Some(WireUsage {
        prompt_tokens: counts[0].unwrap_or(0),
        completion_tokens: counts[1].unwrap_or(0),
        prompt_tokens_details: prompt_details,
        completion_tokens_details: completion_details,
        prompt_cache_hit_tokens: counts[2],
        total_tokens: counts[3],
    })
}

/// The one optional count an object of details is read for; its other fields are skipped.
fn one_count(c: &mut Cursor<'_>, name: &str) -> Option<Option<u64>> {
    let (mut count, mut seen) = (None, false);
    c.object(|c, key| {
        if key == name {
            set(&mut seen, &mut count, c.optional_uint()?)
        } else {
            c.skip()
        }
    })?;
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::super::{WireCompletion, WireStreamChunk, chat_response};
    use super::{read, read_chunk};

    /// Replies in the common form, as providers write them.
    const COMMON: &[&str] = &[
        // OpenAI, compact, keys sorted (as the simulator writes it).
        r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],"content":"Simulated reply to: Hello there","refusal":null,"role":"assistant"}}],"created":1796229826,"id":"chatcmpl-DfD0p0d43N5lG1OV5VVtByXChNO1j","model":"gpt-4o-mini","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_5f3c1d2e7a","usage":{"completion_tokens":12,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":8,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":20}}"#,
        // Three choices (`n`), one a refusal, one with its log probabilities.
        r#"{"id":"chatcmpl-n","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Red."},"logprobs":null,"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":null,"refusal":"No."},"logprobs":null,"finish_reason":"stop"},{"index":2,"message":{"role":"assistant","content":"Blue","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":{"content":[],"refusal":null},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":6,"total_tokens":9}}"#,
        // Log probabilities asked for, two likeliest tokens each (OpenAI's member order).
        r#"{"id":"chatcmpl-lp","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null,"annotations":[]},"logprobs":{"content":[{"token":"Hi","logprob":-0.0312,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.0312,"bytes":[72,105]},{"token":"Hello","logprob":-3.5e0,"bytes":[72,101,108,108,111]}]},{"token":" there","logprob":-1.2,"bytes":[32,116,104,101,114,101],"top_logprobs":[]}],"refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        // OpenAI's reference example, printed with indentation.
        r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Hello! How can I assist you today?",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0}
  },
  "service_tier": "default"
}"#,
        // Azure OpenAI: content filter results on the prompt and on each choice.
        r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"finish_reason":"length","index":0,"logprobs":null,"message":{"content":"Cut sh","role":"assistant"}}],"created":1796229826,"id":"chatcmpl-2A8V","model":"gpt-4o-mini","object":"chat.completion","prompt_filter_results":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"prompt_index":0}],"system_fingerprint":null,"usage":{"completion_tokens":2,"prompt_tokens":8,"total_tokens":10}}"#,
        // A refusal in place of the text.
        r#"{"id":"chatcmpl-r","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
        // DeepSeek: reasoning text and cache hits in its own fields.
        r#"{"id":"ds-1","object":"chat.completion","created":1730000000,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"First, 2+2.","content":"4"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":20,"total_tokens":50,"prompt_cache_hit_tokens":24,"prompt_cache_miss_tokens":6,"completion_tokens_details":{"reasoning_tokens":12}},"system_fingerprint":"fp_x"}"#,
        // Escapes, non-ASCII text and `\u` escapes in the texts and in strings kept for the
        // client; `reasoning` as some servers name it.
        r#"{"id":"chatcmpl-\u0041","created":2,"model":"m","choices":[{"message":{"content":"Line 1\nLine \"2\" caf\u00e9 \u65e5\u672c \ud83d\ude00 é 日本 \/ \\ \t","reasoning":"hm"},"finish_reason":"eos"}],"service_tier":"pri\u006Frity","x_note":"q\"\\\n é","usage":null}"#,
        // Two choices, a null message and finish reason, tool calls null, fields of every kind
        // kept for the client.
        r#"{"id":"x","created":3,"model":"m","choices":[{"message":{"content":"a","tool_calls":null},"finish_reason":null},{"message":null,"finish_reason":"stop","extra":[1,-2.5e-3,true,false,null,{"k":"v"}]}],"x_meta":{"a":[1,2.5e3,{"b":null}],"c":"d\u00e9"},"n":-0,"usage":{"prompt_tokens":0,"completion_tokens":18446744073709551615,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#,
        // Tool calls as OpenAI writes them (two in parallel), and in forms other servers use.
        r#"{"id":"chatcmpl-t","object":"chat.completion","created":1741569952,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Boston, MA\"}"}},{"id":"call_def","type":"function","function":{"name":"get_time","arguments":"{}"}}],"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}}"#,
        r#"{"id":"t2","created":1,"model":"m","choices":[{"message":{"content":"Let me check.","tool_calls":[{"index":0,"id":null,"function":{"name":"f","arguments":null}},{"index":1},{"function":null}]},"finish_reason":"tool_calls"}]}"#,
        // No usage, no choices' message, empty choices: the serde decoder's answer stands.
        r#"{"id":"y","created":0,"model":"m","choices":[]}"#,
        r#"{"id":"z","created":0,"model":"m","choices":[{}]}"#,
        // A later top-level field replaces an earlier one, as in the serde decoder.
        r#"{"id":"first","id":"second","created":1,"model":"m","choices":[{"message":{"content":"t"}}],"k":1,"k":2}"#,
    ];

    /// Forms left to the serde decoder (it takes some of them, refuses others).
    const DECLINED: &[&str] = &[
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"tool_calls":[{"index":4294967296}]}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"tool_calls":[{"id":"a","id":"b"}]}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"tool_calls":[{"function":{"arguments":{"city":"Paris"}}}]}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"tool_calls":{}}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"content":"a","content":"b"}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"cont\u0065nt":"a"}}]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"logprobs":{"content":[]},"logprobs":null}]}"#,
        r#"{"id":"c","created":1.5,"model":"m","choices":[]}"#,
        r#"{"id":"c","created":-1,"model":"m","choices":[]}"#,
        r#"{"id":"c","created":9223372036854775808,"model":"m","choices":[]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":-1}}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1.0}}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[]} x"#,
        r#"{"id":null,"created":1,"model":"m","choices":[]}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[],}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"message":{"content":"a\x"}}]}"#,
        r#"[{"id":"c"}]"#,
        "",
    ];

    fn by_serde(
        body: &[u8],
    ) -> Option<Result<crate::canonical::ChatResponse, crate::canonical::UpstreamErrorInfo>> {
        crate::json::from_body::<WireCompletion>(body)
            .ok()
            .map(chat_response)
    }

    #[test]
    fn common_replies_are_read_by_hand_into_the_serde_decoders_answer() {
        crate::scan::assert_reads_common_and_declines(
            COMMON,
            DECLINED,
            |body| read(body).map(chat_response),
            by_serde,
        );
    }

    /// Every one-byte change of every common reply (a byte replaced, removed or added): what
    /// the reader takes, the serde decoder takes into the same response.
    #[test]
    fn no_changed_reply_is_read_otherwise_than_by_the_serde_decoder() {
        crate::scan::assert_every_one_byte_change(COMMON, |body| {
            let Some(wire) = read(body) else {
                return false;
            };
            let text = String::from_utf8_lossy(body);
            assert_eq!(Some(chat_response(wire)), by_serde(body), "{text}");
            true
        });
    }

    /// Stream chunks in the common form, as providers write them.
    const COMMON_CHUNKS: &[&str] = &[
        // OpenAI: the role chunk, a text, the finish and the usage chunk of `include_usage`.
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        // A text with the log probabilities of its token.
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" world"},"logprobs":{"content":[{"token":" world","logprob":-0.25,"bytes":[32,119,111,114,108,100],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}"#,
        // A tool call's start and its arguments in pieces.
        r#"{"id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\": \"Bos"}}]},"logprobs":null,"finish_reason":null}]}"#,
        // Azure OpenAI: the prompt's filter results in a chunk without choices, a choice's own.
        r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
        r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"chatcmpl-az","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_x"}"#,
        // DeepSeek's and vLLM's reasoning texts; Ollama's chunk without `logprobs` or usage.
        r#"{"id":"ds","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"First"},"finish_reason":null}]}"#,
        r#"{"id":"v","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"reasoning":"Hm"},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama3","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
        // Escapes and `\u` escapes in the text and the id, printed with indentation.
        "{ \"id\" : \"c-\\u0041\" ,\n \"model\": \"m\", \"choices\": [ { \"delta\": { \"content\" : \"Line 1\\nLine \\\"2\\\" caf\\u00e9 \\ud83d\\ude00 \u{e9} \\/\" } } ] }",
        // Two choices; an in-band error (the decoder reads it again for its details); nulls.
        r#"{"id":"x","model":"m","choices":[{"delta":{"content":"a"},"finish_reason":null},{"delta":null,"finish_reason":"length","extra":[1,-2.5e-3,true,{"k":"v"}]}],"error":null,"usage":null}"#,
        r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
        r#"{"object":"error","message":"overloaded","code":503}"#,
        r#"{}"#,
    ];

    /// Chunk forms left to the serde decoder (it takes some of them, refuses others).
    const DECLINED_CHUNKS: &[&str] = &[
        r#"{"id":"a","id":"b","choices":[]}"#,
        r#"{"id":null,"choices":[]}"#,
        r#"{"id":"c","choices":null}"#,
        r#"{"id":"c","choices":[{"delta":{"content":[{"type":"text","text":"a"}]}}]}"#,
        r#"{"id":"c","choices":[{"delta":{"content":"a","content":"b"}}]}"#,
        r#"{"id":"c","choices":[{"delta":{"cont\u0065nt":"a"}}]}"#,
        r#"{"id":"c","choices":[{"delta":{"tool_calls":[{"index":4294967296}]}}]}"#,
        r#"{"id":"c","choices":[{"delta":{},"finish_reason":"stop","finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"delta":{"content":"a"},"logprobs":null,"logprobs":{}}]}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":-1}}"#,
        r#"{"id":"c","choices":[]} x"#,
        r#"{"id":"c","choices":[],}"#,
        r#"[{"id":"c"}]"#,
        "",
    ];

    fn chunk_by_serde(data: &[u8]) -> Option<WireStreamChunk<'_>> {
        serde_json::from_str(std::str::from_utf8(data).ok()?).ok()
    }

    fn chunk_by_hand(data: &[u8]) -> Option<WireStreamChunk<'_>> {
        read_chunk(std::str::from_utf8(data).ok()?)
    }

    /// The helper compares answers that outlive the text: a chunk's derived `Debug` text says
    /// all its fields.
    #[test]
    fn common_chunks_are_read_by_hand_into_the_serde_decoders_answer() {
        crate::scan::assert_reads_common_and_declines(
            COMMON_CHUNKS,
            DECLINED_CHUNKS,
            |data| chunk_by_hand(data).map(|c| format!("{c:?}")),
            |data| chunk_by_serde(data).map(|c| format!("{c:?}")),
        );
    }

    /// Every one-byte change of every common chunk: what the reader takes, the serde decoder
    /// takes into the same chunk, its text's JSON string at the same place.
    #[test]
    fn no_changed_chunk_is_read_otherwise_than_by_the_serde_decoder() {
        crate::scan::assert_every_one_byte_change(COMMON_CHUNKS, |data| {
            let Some(chunk) = chunk_by_hand(data) else {
                return false;
            };
            let text = String::from_utf8_lossy(data);
            let by_serde = chunk_by_serde(data);
            assert_eq!(Some(&chunk), by_serde.as_ref(), "{text}");
            let place = |c: &WireStreamChunk<'_>| {
                let raw = c.choices.first.as_ref()?.delta.as_ref()?.content?.0;
                Some(raw.as_ptr() as usize - data.as_ptr() as usize)
            };
            assert_eq!(place(&chunk), by_serde.as_ref().and_then(place), "{text}");
            true
        });
    }
}
