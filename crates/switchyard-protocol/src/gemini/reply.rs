//! The common Gemini `GenerateContentResponse` read by hand, in one pass over its text: a whole
//! answer, and each chunk of a stream (whose serde decoder, `StreamChunk`, flattens the response
//! into itself, so serde buffered every chunk into an intermediate tree before reading it). The
//! reader takes candidates whose parts are text (answer or thought, with a thought signature),
//! the prompt feedback, the usage counts, the model version and the response id into the same
//! values as the serde decoder, and gives up on everything else (function calls and other data
//! parts, a stream's in-band error, escaped keys, a member named twice, a count that is not an
//! unsigned integer, any fault). That goes to the decoder, which reads every form and words
//! every error. The tests hold the two to the same answers.

use super::wire::{
    Candidate, Content, GenerateContentResponse, Part, PromptFeedback, StreamChunk, UsageMetadata,
};
use crate::scan::{Cursor, set};

/// A whole answer, if it is in the common form.
pub(super) fn read_response(body: &[u8]) -> Option<GenerateContentResponse> {
    read(crate::json::utf8(body)?, Mode::Response)
}

/// A stream chunk, if it is in the common form (an error chunk is not).
pub(super) fn read_chunk(data: &str) -> Option<StreamChunk> {
    read(data, Mode::Chunk).map(|response| StreamChunk {
        error: None,
        response,
    })
}

/// [`read_chunk`] for a chunk after the stream's first, without its `modelVersion` and
/// `responseId` (checked as the decoder checks them, not copied): every chunk repeats them,
/// and the stream takes them from its first.
pub(super) fn read_later_chunk(data: &str) -> Option<StreamChunk> {
    read(data, Mode::LaterChunk).map(|response| StreamChunk {
        error: None,
        response,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `error` is not a member of a whole answer: skipped, as its decoder skips it.
    Response,
    /// A chunk's `error` is read by the decoder.
    Chunk,
    /// A chunk after the first: as `Chunk`, its model version and response id left out.
    LaterChunk,
}

fn read(text: &str, mode: Mode) -> Option<GenerateContentResponse> {
    let mut c = Cursor::new(text);
    let mut out = GenerateContentResponse::default();
    let mut seen = [false; 5];
    c.object(|c, key| match key {
        "candidates" => set(&mut seen[0], &mut out.candidates, candidates(c)?),
        "promptFeedback" => set(
            &mut seen[1],
            &mut out.prompt_feedback,
            c.optional(prompt_feedback)?,
        ),
        "usageMetadata" => set(&mut seen[2], &mut out.usage_metadata, c.optional(usage)?),
        "modelVersion" | "responseId" if mode == Mode::LaterChunk => {
            c.optional(Cursor::string)?;
            set(
                &mut seen[if key == "modelVersion" { 3 } else { 4 }],
                &mut (),
                (),
            )
        }
        "modelVersion" => set(&mut seen[3], &mut out.model_version, c.optional_string()?),
        "responseId" => set(&mut seen[4], &mut out.response_id, c.optional_string()?),
        "error" if mode != Mode::Response => None,
        _ => c.skip(),
    })?;
    c.at_end().then_some(out)
}

fn candidates(c: &mut Cursor<'_>) -> Option<Vec<Candidate>> {
    c.list(|c| {
        let mut candidate = Candidate::default();
        let mut seen = [false; 3];
        c.object(|c, key| match key {
            "content" => set(&mut seen[0], &mut candidate.content, c.optional(content)?),
            "finishReason" => set(
                &mut seen[1],
                &mut candidate.finish_reason,
                c.optional_string()?,
            ),
            "index" => {
                let value = c.optional(|c| u32::try_from(c.uint()?).ok())?;

                set(&mut seen[2], &mut candidate.index, value)
            }
            _ => c.skip(),
        })?;
        Some(candidate)
    })
}

fn content(c: &mut Cursor<'_>) -> Option<Content> {
    let mut out = Content::default();
    let mut seen = [false; 2];
    c.object(|c, key| match key {
        "role" => set(&mut seen[0], &mut out.role, c.optional_string()?),
        "parts" => set(&mut seen[1], &mut out.parts, parts(c)?),
        _ => c.skip(),
    })?;
    Some(out)
}

/// Text parts only: a data part (`inlineData`, `fileData`, `functionCall`,
/// `functionResponse`) that is not null is left to the decoder.
fn parts(c: &mut Cursor<'_>) -> Option<Vec<Part>> {
    c.list(|c| {
        let mut part = Part::default();
        let mut seen = [false; 7];
        c.object(|c, key| match key {
            "text" => set(&mut seen[0], &mut part.text, c.optional_string()?),
            "thought" => set(&mut seen[1], &mut part.thought, c.optional_bool()?),
            "thoughtSignature" => set(
                &mut seen[2],
                &mut part.thought_signature,
                c.optional_string()?,
            ),
            "inlineData" | "fileData" | "functionCall" | "functionResponse" => {
                let i = match key {
                    "inlineData" => 3,
                    "fileData" => 4,
                    "functionCall" => 5,
                    _ => 6,
                };
                // Null is the field's absence; anything else is the decoder's.
                if !c.null() {
                    return None;
                }
                set(&mut seen[i], &mut (), ())
            }
            _ => c.skip(),
        })?;
        Some(part)
    })
}

fn prompt_feedback(c: &mut Cursor<'_>) -> Option<PromptFeedback> {
    let mut out = PromptFeedback::default();
    let mut seen = false;
    c.object(|c, key| match key {
        "blockReason" => set(&mut seen, &mut out.block_reason, c.optional_string()?),
        _ => c.skip(),
    })?;
    Some(out)
}

/// The six counts; the details by modality and anything else skipped.
fn usage(c: &mut Cursor<'_>) -> Option<UsageMetadata> {
    let mut counts = [0u64; 6];
    let mut seen = [false; 6];
    c.object(|c, key| {
        let i = match key {
            "promptTokenCount" => 0,
            "cachedContentTokenCount" => 1,
            "candidatesTokenCount" => 2,
            "toolUsePromptTokenCount" => 3,
            "thoughtsTokenCount" => 4,
            "totalTokenCount" => 5,
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut counts[i], c.uint()?)
    })?;
    Some(UsageMetadata {
        prompt_token_count: counts[0],
        cached_content_token_count: counts[1],
        candidates_token_count: counts[2],
        tool_use_prompt_token_count: counts[3],
        thoughts_token_count: counts[4],
        total_token_count: counts[5],
    })
}

#[cfg(test)]
mod tests {
    use super::super::wire::{GenerateContentResponse, StreamChunk};
    use super::{read_chunk, read_later_chunk, read_response};
    use crate::error::DecodeError;

    /// Answers and stream chunks in the common form, as the Gemini API writes them.
    const COMMON: &[&str] = &[
        r#"{
  "candidates": [
    {
      "content": {"parts": [{"text": "Hello! How can I help you today?"}], "role": "model"},
      "finishReason": "STOP",
      "avgLogprobs": -0.0123,
      "index": 0,
      "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}]
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 4,
    "candidatesTokenCount": 9,
    "totalTokenCount": 33,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    "thoughtsTokenCount": 20
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mlJ4aK6pMYqGz7IPi6bfuAk"
}"#,
        // A thought summary, then the answer with the reasoning's signature; cached content.
        r#"{"candidates":[{"content":{"parts":[{"text":"**Adding**\n\nTwo and two.","thought":true},{"text":"4","thoughtSignature":"CiQB0e2Kb7Q="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2048,"cachedContentTokenCount":1024,"candidatesTokenCount":1,"toolUsePromptTokenCount":0,"totalTokenCount":2049},"modelVersion":"gemini-2.5-pro","responseId":"r1"}"#,
        // A refused prompt: no candidate, the block reason.
        r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH"}]},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.5-flash"}"#,
        // Stream chunks: text only, then the last with its finish reason and usage.
        r#"{"candidates": [{"content": {"parts": [{"text": " there"}],"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "abc"}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":18446744073709551615,"totalTokenCount":5}}"#,
        // Escapes and non-ASCII text; nulls; data fields that are null; unknown members.
        r#"{"candidates":[{"content":{"parts":[{"text":"Line 1\nLine \"2\" caf\u00e9 日本 \ud83d\ude00","functionCall":null,"inlineData":null}],"role":null},"finishReason":null,"index":null,"citationMetadata":{"citationSources":[]}},{"content":null},{}],"promptFeedback":null,"usageMetadata":null,"modelVersion":null,"createTime":"2025-01-01T00:00:00Z"}"#,
        "{}",
    ];

    /// Forms left to the decoders (they take some of them, refuse others).
    const DECLINED: &[&str] = &[
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}],"role":"model"},"finishReason":"STOP"}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"a","text":"b"}]}}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":null,"functionCall":null}]}}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"thought":"yes"}]}}]}"#,
        r#"{"candidates":[{"index":-1}]}"#,
        r#"{"candidates":[{"index":4294967296}]}"#,
        r#"{"candidates":null}"#,
        r#"{"usageMetadata":{"promptTokenCount":null}}"#,
        r#"{"usageMetadata":{"promptTokenCount":1.5}}"#,
        r#"{"modelVersion":"a","modelVersion":"b"}"#,
        r#"{"model\u0056ersion":"a"}"#,
        r#"{} x"#,
        "[]",
    ];

    fn response_by_serde(body: &[u8]) -> Option<GenerateContentResponse> {
        DecodeError::parse(body).ok()
    }

    fn chunk_by_serde(body: &[u8]) -> Option<StreamChunk> {
        serde_json::from_slice(body).ok()
    }

    /// A later chunk as the decoder reads it, without what the reader leaves out.
    fn later_chunk_by_serde(body: &[u8]) -> Option<StreamChunk> {
        let mut chunk = chunk_by_serde(body)?;
        chunk.response.model_version = None;
        chunk.response.response_id = None;
        Some(chunk)
    }

    #[test]
    fn common_answers_and_chunks_are_read_by_hand_into_the_decoders_answer() {
        use crate::scan::assert_reads_common_and_declines;
        assert_reads_common_and_declines(COMMON, DECLINED, read_response, response_by_serde);
        let chunk = |body: &[u8]| read_chunk(std::str::from_utf8(body).ok()?);
        assert_reads_common_and_declines(COMMON, DECLINED, chunk, chunk_by_serde);
        let later = |body: &[u8]| read_later_chunk(std::str::from_utf8(body).ok()?);
        assert_reads_common_and_declines(COMMON, DECLINED, later, later_chunk_by_serde);
        // What it leaves out is still checked: a member the decoder refuses is not taken.
        for refused in [
            r#"{"modelVersion":5}"#,
            r#"{"responseId":{}}"#,
            r#"{"responseId":"a","responseId":"a"}"#,
            r#"{"modelVersion":"x\q"}"#,
        ] {
            assert_eq!(later_chunk_by_serde(refused.as_bytes()), None, "{refused}");
            assert_eq!(read_later_chunk(refused), None, "{refused}");
        }
        // An in-band error: a whole answer's decoder skips the member, a chunk's reads it.
        let error = r#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(read_chunk(error), None);
        assert_eq!(
            read_response(error.as_bytes()),
            response_by_serde(error.as_bytes())
        );
    }

    /// Every one-byte change of every common answer (a byte replaced, removed or added): what
    /// the reader takes, the decoders take into the same answer and chunk.
    #[test]
    fn no_changed_answer_is_read_otherwise_than_by_the_decoders() {
        crate::scan::assert_every_one_byte_change(COMMON, |body| {
            let text = String::from_utf8_lossy(body);
            if let Ok(data) = std::str::from_utf8(body)
                && let Some(chunk) = read_chunk(data)
            {
                assert_eq!(Some(chunk), chunk_by_serde(body), "{text}");
            }
            if let Ok(data) = std::str::from_utf8(body)
                && let Some(chunk) = read_later_chunk(data)
            {
                assert_eq!(Some(chunk), later_chunk_by_serde(body), "{text}");
            }
            let Some(response) = read_response(body) else {
                return false;
            };
            assert_eq!(Some(response), response_by_serde(body), "{text}");
            true
        });
    }
}
