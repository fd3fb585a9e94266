//! OpenAI's legacy Completions API (`POST /v1/completions`) as an ingress: a prompt in, a
//! `text_completion` out. Clients still send it (LlamaIndex's `OpenAILike` by default,
//! LangChain's `OpenAI` model, the `openai` command line), against models that only chat, so
//! the prompt reaches every provider as the one user message of a chat, and the answer's text
//! comes back as the completion's. What only a raw completion model can do is refused with a
//! 400 naming the member: several prompts in one request, prompts as token ids, `suffix`
//! (fill-in-the-middle), `best_of` above 1 and per-token `logprobs`.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::DialectId;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, Extras, Message, Role, StreamEvent, Usage,
};
use crate::dialect::{EncodeCtx, IngressDialect, StreamEncoder};
use crate::error::{ClientError, DecodeError};
use crate::json::ObjectReader;
use crate::sse::write_event;

use super::ingress::{StringOrList, error_body, usage_json};

/// The ingress of `POST /v1/completions`.
pub struct CompletionsIngress;

/// Marks the request as the Completions API's, and carries `echo`'s prompt, in its extras.
const ECHO: &str = "echo_prompt";

impl IngressDialect for CompletionsIngress {
    fn id(&self) -> DialectId {
        DialectId::OpenAiCompletions
    }

    fn decode_chat(&self, body: &Bytes) -> Result<ChatRequest, DecodeError> {
        decode(body)
    }

    fn echo(&self, request: &ChatRequest) -> Option<Value> {
        request.extras.fields.get(ECHO).cloned()
    }

    fn encode_chat(&self, response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
        let echoed = ctx
            .echo
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut choices = vec![json!({
            "text": format!("{echoed}{}", response.text()),
            "index": 0,
            "logprobs": null,
            "finish_reason": response.finish_reason.as_openai(),
        })];
        for (i, more) in response.more_choices.iter().enumerate() {
            choices.push(json!({
                "text": format!("{echoed}{}", ContentPart::concat_text(&more.content)),
                "index": i + 1,
                "logprobs": null,
                "finish_reason": more.finish_reason.as_openai(),
            }));
        }
        let mut body = json!({
            "id": completion_id(ctx),
            "object": "text_completion",
            "created": ctx.created,
            "model": ctx.model,
            "choices": choices,
        });
        if let Some(usage) = &response.usage {
            body["usage"] = usage_json(usage);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn stream_encoder(&self, ctx: EncodeCtx) -> Box<dyn StreamEncoder> {
        Box::new(CompletionsStreamEncoder {
            id: completion_id(&ctx),
            ctx,
            echoed: false,
            usage: None,
        })
    }

    fn encode_error(&self, error: &ClientError) -> Vec<u8> {
        serde_json::to_vec(&error_body(error)).unwrap_or_default()
    }
}

fn completion_id(ctx: &EncodeCtx) -> String {
    if ctx.id.starts_with("cmpl-") {
        ctx.id.clone()
    } else {
        ["cmpl-", &ctx.id].concat()
    }
}

fn refused(message: &str, param: &str) -> DecodeError {
    DecodeError::new(message, Some(param))
}

fn decode(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let mut obj = ObjectReader::from_body(body)?;
    let model: String = obj.require("model")?;
    let prompt = match obj.take_value("prompt") {
        Some(Value::String(text)) => text,
        Some(Value::Array(items)) => match <[Value; 1]>::try_from(items) {
            Ok([Value::String(text)]) => text,
            Ok(_) => {
                return Err(refused(
                    "prompts as token ids are not supported: send the prompt as text",
                    "prompt",
                ));
            }
            Err(_) => {
                return Err(refused(
                    "several prompts in one request are not supported: send one request per \
                     prompt",
                    "prompt",
                ));
            }
        },
        Some(_) => return Err(refused("'prompt' must be a string", "prompt")),
        None => return Err(refused("missing required field 'prompt'", "prompt")),
    };
    if obj.take_value("suffix").is_some_and(|v| !v.is_null()) {
        return Err(refused(
            "'suffix' (fill-in-the-middle) is not supported: the models behind this gateway \
             are served as chat models",
            "suffix",
        ));
    }
    if obj.take::<u32>("best_of")?.is_some_and(|n| n > 1) {
        return Err(refused(
            "'best_of' above 1 is not supported; ask for several answers with 'n'",
            "best_of",
        ));
    }
    if obj.take::<u32>("logprobs")?.is_some_and(|n| n > 0) {
        return Err(refused(
            "per-token 'logprobs' of the Completions API are not supported; Chat Completions \
             has them",
            "logprobs",
        ));
    }
    let echo = obj.take::<bool>("echo")?.unwrap_or(false);
    let stream = obj.take::<bool>("stream")?.unwrap_or(false);
    let include_usage = match obj.take_object("stream_options")? {
        Some(mut options) => options.take::<bool>("include_usage")?.unwrap_or(false),
        None => false,
    };
    let stop = obj
        .take::<Option<StringOrList>>("stop")?
        .flatten()
        .map(StringOrList::into_vec)
        .unwrap_or_default();
    let mut request = ChatRequest {
        model,
        max_tokens: obj.take("max_tokens")?,
        temperature: obj.take("temperature")?,
        top_p: obj.take("top_p")?,
        n: obj.take("n")?,
        seed: obj.take("seed")?,
        frequency_penalty: obj.take("frequency_penalty")?,
        presence_penalty: obj.take("presence_penalty")?,
        user: obj.take("user")?,
        stop,
        stream,
        include_usage,
        ..ChatRequest::default()
    };
    // Other members (`logit_bias` …) are not sent on: the request reaches providers as a chat.
    let mut rest = obj.into_rest();
    if echo {
        rest.insert(ECHO.to_owned(), Value::String(prompt.clone()));
    }
    request.messages = vec![Message {
        role: Role::User,
        content: vec![ContentPart::text(prompt)],
        name: None,
        extras: Extras::default(),
    }];
    request.extras = Extras::new(DialectId::OpenAiCompletions, rest);
    Ok(request)
}

/// Writes a stream as the Completions API does: `text_completion` chunks of text, the last
/// with the finish reason, a usage chunk when asked for, then `[DONE]`.
pub struct CompletionsStreamEncoder {
    ctx: EncodeCtx,
    id: String,
    echoed: bool,
    usage: Option<Usage>,
}

impl CompletionsStreamEncoder {
    fn chunk(&self, text: &str, finish: Option<&str>, out: &mut Vec<u8>) {
        let chunk = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.ctx.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        write_event(out, None, &serde_json::to_vec(&chunk).unwrap_or_default());
    }

    fn echo_once(&mut self, out: &mut Vec<u8>) {
        if !self.echoed {
            self.echoed = true;
            if let Some(prompt) = self.ctx.echo.as_ref().and_then(Value::as_str) {
                let prompt = prompt.to_owned();
                self.chunk(&prompt, None, out);
            }
        }
    }
}

impl StreamEncoder for CompletionsStreamEncoder {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) if !text.is_empty() => {
                self.echo_once(out);
                self.chunk(text, None, out);
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish(reason) => {
                self.echo_once(out);
                self.chunk("", Some(reason.as_openai()), out);
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ctx.include_usage
            && let Some(usage) = &self.usage
        {
            let chunk = json!({
                "id": self.id,
                "object": "text_completion",
                "created": self.ctx.created,
                "model": self.ctx.model,
                "choices": [],
                "usage": usage_json(usage),
            });
            write_event(out, None, &serde_json::to_vec(&chunk).unwrap_or_default());
        }
        write_event(out, None, b"[DONE]");
    }

    fn error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        write_event(
            out,
            None,
            &serde_json::to_vec(&error_body(error)).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::FinishReason;

    fn ctx(echo: Option<&str>, include_usage: bool) -> EncodeCtx {
        EncodeCtx {
            prompt_estimate: 0,
            id: "abc".into(),
            model: "gpt-4o-mini".into(),
            created: 1_700_000_000,
            include_usage,
            echo: echo.map(Value::from),
            keep: None,
        }
    }

    #[test]
    fn a_prompt_is_one_user_message_and_what_only_completion_models_do_is_refused() {
        let request = decode(
            br#"{"model": "m", "prompt": ["Say hi"], "max_tokens": 7, "stop": "\n", "echo": true,
                 "stream": true, "stream_options": {"include_usage": true}, "logit_bias": {"50256": -100}}"#,
        )
        .unwrap();
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].role, Role::User);
        assert_eq!(request.messages[0].text(), "Say hi");
        assert_eq!(request.max_tokens, Some(7));
        assert_eq!(request.stop, ["\n"]);
        assert!(request.stream && request.include_usage);
        assert_eq!(CompletionsIngress.echo(&request), Some(json!("Say hi")));
        for (body, param) in [
            (r#"{"model": "m", "prompt": ["a", "b"]}"#, "prompt"),
            (r#"{"model": "m", "prompt": [1, 2, 3]}"#, "prompt"),
            (r#"{"model": "m"}"#, "prompt"),
            (r#"{"model": "m", "prompt": "a", "suffix": "b"}"#, "suffix"),
            (r#"{"model": "m", "prompt": "a", "best_of": 3}"#, "best_of"),
            (
                r#"{"model": "m", "prompt": "a", "logprobs": 2}"#,
                "logprobs",
            ),
        ] {
            let error = decode(body.as_bytes()).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
        // The members a client sends as null or at their defaults are taken.
        decode(br#"{"model": "m", "prompt": "a", "suffix": null, "best_of": 1, "logprobs": null}"#)
            .unwrap();
    }

    #[test]
    fn an_answer_is_a_text_completion_whole_and_streamed() {
        let response = ChatResponse {
            id: "up-1".into(),
            model: "gpt-4o-mini-2024-07-18".into(),
            created: 1,
            content: vec![ContentPart::text(" there")],
            finish_reason: FinishReason::Length,
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Usage::default()
            }),
            extras: Extras::default(),
            more_choices: Vec::new(),
        };
        let body: Value = serde_json::from_slice(
            &CompletionsIngress.encode_chat(&response, &ctx(Some("Hi"), false)),
        )
        .unwrap();
        assert_eq!(body["id"], "cmpl-abc");
        assert_eq!(body["object"], "text_completion");
        assert_eq!(
            body["choices"],
            json!([{"text": "Hi there", "index": 0, "logprobs": null, "finish_reason": "length"}])
        );
        assert_eq!(body["usage"]["prompt_tokens"], 3);
        assert_eq!(body["usage"]["total_tokens"], 5);

        let mut encoder = CompletionsIngress.stream_encoder(ctx(None, true));
        let mut out = Vec::new();
        for event in [
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Usage::default()
            }),
            StreamEvent::Finish(FinishReason::Stop),
        ] {
            encoder.event(&event, &mut out);
        }
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let data: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(data.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let texts: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(texts.concat(), "Hello");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 2);
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    }
}
