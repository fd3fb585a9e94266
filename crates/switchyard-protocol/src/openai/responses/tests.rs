use bytes::Bytes;
use serde_json::{Value, json};

use super::ResponsesIngress;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, DocumentSource, Extras, FinishReason, ImageSource,
    ResponseFormat, Role, StreamEvent, ToolChoice, Usage,
};
use crate::dialect::{DialectId, EncodeCtx, IngressDialect};
use crate::error::{ClientError, ErrorKind};

fn decode(body: Value) -> ChatRequest {
    ResponsesIngress
        .decode_chat(&Bytes::from(body.to_string()))
        .unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

fn refused(body: Value) -> (String, Option<String>) {
    match ResponsesIngress.decode_chat(&Bytes::from(body.to_string())) {
        Ok(r) => panic!("accepted {body}: {r:?}"),
        Err(e) => (e.message, e.param),
    }
}

fn ctx(request: &ChatRequest) -> EncodeCtx {
    EncodeCtx {
        prompt_estimate: 0,
        id: "0193-abcd".into(),
        model: "alias".into(),
        created: 1_700_000_000,
        include_usage: true,
        echo: ResponsesIngress.echo(request),
        keep: None,
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 20,
        output_tokens: 7,
        cache_read_tokens: 4,
        cache_write_tokens: 2,
        reasoning_tokens: 3,
        ..Default::default()
    }
}

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let r = decode(
        json!({"model": "m", "instructions": "Be brief.", "input": "Hello",
        "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9, "user": "u1",
        "metadata": {"tag": "a"}, "reasoning": {"effort": "low", "summary": "auto"},
        "store": true, "include": ["reasoning.encrypted_content"], "service_tier": "flex"}),
    );
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.messages[0].role, Role::Developer);
    assert_eq!(r.messages[0].text(), "Be brief.");
    assert_eq!(r.messages[1].role, Role::User);
    assert_eq!(r.messages[1].text(), "Hello");
    assert_eq!(r.max_tokens, Some(50));
    assert_eq!(r.temperature, Some(0.5));
    assert_eq!(r.top_p, Some(0.9));
    assert_eq!(r.user.as_deref(), Some("u1"));
    assert_eq!(r.metadata.unwrap()["tag"], "a");
    assert_eq!(r.reasoning.unwrap().effort.as_deref(), Some("low"));
    assert!(
        r.include_usage,
        "a Responses stream always ends with its usage"
    );
    // Unknown members are kept for this dialect alone, which no provider speaks.
    assert_eq!(r.extras.dialect, Some(DialectId::OpenAiResponses));
    assert_eq!(r.extras.fields["service_tier"], "flex");
    assert!(r.extras.for_dialect(DialectId::OpenAi).is_none());
}

#[test]
fn an_assistant_turn_of_several_items_is_one_assistant_message() {
    let r = decode(json!({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [],
            "content": [{"type": "reasoning_text", "text": "think"}], "encrypted_content": "sig"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
            "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "18 degrees"},
        {"type": "function_call_output", "call_id": "call_b", "output": [
            {"type": "input_text", "text": "noon"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "redacted-data"}
    ]}));
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant
        ]
    );
    let turn = &r.messages[1].content;
    assert_eq!(
        turn[0],
        ContentPart::Reasoning {
            text: "think".into(),
            signature: Some("sig".into())
        }
    );
    assert_eq!(turn[1], ContentPart::text("Let me look."));
    assert!(
        matches!(&turn[2], ContentPart::ToolCall { id, name, arguments, .. }
        if id == "call_a" && name == "get_weather" && arguments == "{\"city\":\"Paris\"}")
    );
    assert!(matches!(&turn[3], ContentPart::ToolCall { id, .. } if id == "call_b"));
    // Each output names its call's function, which Gemini matches results by.
    assert_eq!(
        tool_result(&r.messages[3]),
        ("call_b", Some("get_time"), "noon".to_owned())
    );
    let ContentPart::ToolResult { content, .. } = &r.messages[3].content[0] else {
        panic!("{:?}", r.messages[3]);
    };
    assert!(
        matches!(&content[1], ContentPart::Image { source: ImageSource::Base64 { media_type, .. }, detail }
        if media_type == "image/png" && detail.as_deref() == Some("low"))
    );
    assert_eq!(
        r.messages[4].content,
        [ContentPart::RedactedReasoning {
            data: "redacted-data".into()
        }]
    );
}

#[test]
fn files_tools_choice_and_format_are_read() {
    let r = decode(json!({"model": "m",
        "input": [{"role": "user", "content": [
            {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
            {"type": "input_file", "file_id": "file-1"},
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}],
        "tools": [{"type": "function", "name": "f", "description": "d", "strict": true,
            "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": false,
        "text": {"format": {"type": "json_schema", "name": "reply", "strict": true,
            "schema": {"type": "object"}}, "verbosity": "low"}}));
    let parts = &r.messages[0].content;
    assert!(
        matches!(&parts[0], ContentPart::Document { source: DocumentSource::Base64 { media_type, .. }, title, .. }
        if media_type == "application/pdf" && title.as_deref() == Some("a.pdf"))
    );
    assert!(
        matches!(&parts[1], ContentPart::Document { source: DocumentSource::FileId(id), .. } if id == "file-1")
    );
    assert!(
        matches!(&parts[2], ContentPart::Document { source: DocumentSource::Url(url), .. } if url.ends_with("a.pdf"))
    );
    assert!(matches!(
        &parts[3],
        ContentPart::Image {
            source: ImageSource::Url(_),
            ..
        }
    ));
    assert_eq!(r.tools[0].name, "f");
    assert_eq!(r.tools[0].strict, Some(true));
    assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert!(matches!(
        r.response_format,
        Some(ResponseFormat::JsonSchema { ref name, strict: Some(true), .. }) if name == "reply"
    ));
}

#[test]
fn what_needs_stored_state_or_hosted_tools_is_refused_naming_the_member() {
    for (body, param) in [
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 3}), "input"),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "r"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": {"id": "c"}}),
            "conversation",
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "p"}}),
            "prompt",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "instructions": ["a"]}),
            "instructions",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search",
                "filters": {"allowed_domains": "a.com"}}]}),
            "tools[0].filters.allowed_domains",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "p",
                "format": {"type": "grammar", "syntax": "ebnf", "definition": "x"}}]}),
            "tools[0].format.syntax",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "p",
                "format": {"type": "json"}}]}),
            "tools[0].format.type",
        ),
        (
            json!({"model": "m", "input": [{"type": "custom_tool_call", "call_id": "c", "name": "p"}]}),
            "input[0].input",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice.type",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "grammar"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "i"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call_output", "call_id": "c"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "assistant", "content": [
                {"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_image", "file_id": "f", "detail": "auto"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_file", "file_id": "f", "file_url": "u"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
    ] {
        let (message, found) = refused(body.clone());
        assert_eq!(found.as_deref(), Some(param), "{body}: {message}");
    }
}

fn answer(content: Vec<ContentPart>, finish_reason: FinishReason) -> ChatResponse {
    ChatResponse {
        id: "up".into(),
        model: "upstream".into(),
        created: 0,
        content,
        finish_reason,
        usage: Some(usage()),
        extras: Extras::default(),
        more_choices: Vec::new(),
    }
}

#[test]
fn a_whole_answer_is_a_response_whose_items_come_back_as_input() {
    let request = decode(
        json!({"model": "m", "instructions": "Be brief.", "input": "Weather?",
        "tools": [{"type": "function", "name": "get_weather", "strict": false,
            "parameters": {"type": "object"}}], "temperature": 0.2}),
    );
    let response = answer(
        vec![
            ContentPart::Reasoning {
                text: "think".into(),
                signature: Some("sig".into()),
            },
            ContentPart::RedactedReasoning {
                data: "opaque".into(),
            },
            ContentPart::text("Let me "),
            ContentPart::text("look."),
            ContentPart::ToolCall {
                id: "call_a".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
                extras: Extras::default(),
            },
        ],
        FinishReason::ToolCalls,
    );
    let body: Value =
        serde_json::from_slice(&ResponsesIngress.encode_chat(&response, &ctx(&request))).unwrap();
    assert_eq!(body["id"], "resp_0193abcd");
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "alias");
    assert_eq!(body["created_at"], 1_700_000_000);
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 27})
    );
    let output = body["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["reasoning", "reasoning", "message", "function_call"]
    );
    assert_eq!(output[0]["content"][0]["text"], "think");
    assert_eq!(output[0]["encrypted_content"], "sig");
    assert_eq!(output[1]["encrypted_content"], "opaque");
    assert!(output[1].get("content").is_none());
    assert_eq!(output[2]["content"][0]["text"], "Let me look.");
    assert_eq!(output[3]["call_id"], "call_a");
    assert_eq!(output[3]["status"], "completed");

    // Sent back, the items are the assistant's turn as it was.
    let mut input = vec![json!({"role": "user", "content": "Weather?"})];
    input.extend(output.iter().cloned());
    let again = decode(json!({"model": "m", "input": input}));
    let mut expected = response.content.clone();
    expected.splice(2..4, [ContentPart::text("Let me look.")]);
    assert_eq!(again.messages[1].role, Role::Assistant);
    assert_eq!(again.messages[1].content, expected);
}

#[test]
fn a_length_stop_is_an_incomplete_response() {
    let request = decode(json!({"model": "m", "input": "x", "max_output_tokens": 30}));
    let body: Value = serde_json::from_slice(&ResponsesIngress.encode_chat(
        &answer(vec![ContentPart::text("Once")], FinishReason::Length),
        &ctx(&request),
    ))
    .unwrap();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(body["max_output_tokens"], 30);
    assert_eq!(body["output"][0]["status"], "incomplete");
}

/// The stream's events as (type, data), checked for their numbering.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let name = event.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n);
    }
    events
}

fn encode_stream(stream: &[StreamEvent], end: Option<&ClientError>) -> Vec<(String, Value)> {
    let request = decode(json!({"model": "m", "input": "x", "stream": true}));
    encode_stream_for(&request, stream, end)
}

/// The events of `stream` encoded for `request`'s client.
fn encode_stream_for(
    request: &ChatRequest,
    stream: &[StreamEvent],
    end: Option<&ClientError>,
) -> Vec<(String, Value)> {
    let mut encoder = ResponsesIngress.stream_encoder(ctx(request));
    let mut out = Vec::new();
    for event in stream {
        encoder.event(event, &mut out);
    }
    match end {
        None => encoder.finish(&mut out),
        Some(error) => encoder.error(error, &mut out),
    }
    events(&out)
}

#[test]
fn a_stream_opens_and_closes_each_item_and_ends_with_all_of_them() {
    let events = encode_stream(
        &[
            StreamEvent::Start {
                id: "up".into(),
                model: "upstream".into(),
            },
            StreamEvent::ReasoningDelta("thi".into()),
            StreamEvent::ReasoningDelta("nk".into()),
            StreamEvent::ReasoningSignature("sig".into()),
            StreamEvent::TextDelta("Let me ".into()),
            StreamEvent::TextDelta("look.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "get_time".into(),
            },
            // Interleaved arguments of parallel calls go to their own items.
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(usage()),
        ],
        None,
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[8].1["item"]["encrypted_content"], "sig");
    assert_eq!(events[8].1["item"]["content"][0]["text"], "think");
    assert_eq!(events[13].1["text"], "Let me look.");
    assert_eq!(events[19].1["output_index"], 3);
    assert_eq!(events[21].1["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(events[23].1["arguments"], "{}");
    let done = &events[25].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["usage"]["total_tokens"], 27);
    let output = done["output"].as_array().unwrap();
    assert_eq!(output.len(), 4);
    assert_eq!(output[1]["content"][0]["text"], "Let me look.");
    assert_eq!(output[2]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(output[3]["call_id"], "call_b");
}

#[test]
fn a_stream_cut_short_fails_and_never_completes() {
    let error = ClientError {
        status: 502,
        kind: ErrorKind::Upstream,
        code: "upstream_stream_interrupted",
        message: "the provider's stream ended early".into(),
        param: None,
    };
    let events = encode_stream(
        &[
            StreamEvent::Start {
                id: "up".into(),
                model: "upstream".into(),
            },
            StreamEvent::TextDelta("Once upon".into()),
        ],
        Some(&error),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"response.completed"), "{names:?}");
    assert_eq!(names[names.len() - 2], "error");
    assert_eq!(
        events[names.len() - 2].1["code"],
        "upstream_stream_interrupted"
    );
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "server_error");
    assert_eq!(data["response"]["output"][0]["status"], "incomplete");
}

#[test]
fn a_length_stop_in_a_stream_ends_incomplete() {
    let events = encode_stream(
        &[
            StreamEvent::TextDelta("Once".into()),
            StreamEvent::Finish(FinishReason::Length),
        ],
        None,
    );
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(data["response"]["output"][0]["status"], "incomplete");
}

#[test]
fn errors_use_the_openai_envelope() {
    let error = ClientError {
        status: 400,
        kind: ErrorKind::InvalidRequest,
        code: "invalid_request",
        message: "bad".into(),
        param: Some("input".into()),
    };
    let body: Value = serde_json::from_slice(&ResponsesIngress.encode_error(&error)).unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": "invalid_request"}})
    );
}

#[test]
fn a_reasoning_items_summary_is_its_text_when_it_has_no_content() {
    let r = decode(json!({"model": "m", "input": [
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "blob",
            "summary": [{"type": "summary_text", "text": "Weighed "}, {"type": "summary_text", "text": "both."}]},
        {"type": "reasoning", "id": "rs_2", "summary": [], "content": null}
    ]}));
    assert_eq!(
        r.messages[0].content,
        [
            ContentPart::Reasoning {
                text: "Weighed both.".into(),
                signature: Some("blob".into())
            },
            ContentPart::Reasoning {
                text: String::new(),
                signature: None
            }
        ]
    );
}

#[test]
fn a_gemini_calls_signature_goes_out_as_a_reasoning_item_and_comes_back_to_the_call() {
    let signed = ContentPart::ToolCall {
        id: "call_a".into(),
        name: "get_weather".into(),
        arguments: "{}".into(),
        extras: crate::gemini::signature_extras(Some("Cs0BAY89a1")),
    };
    let request = decode(json!({"model": "m", "input": "Weather?"}));
    let body: Value = serde_json::from_slice(&ResponsesIngress.encode_chat(
        &answer(vec![signed.clone()], FinishReason::ToolCalls),
        &ctx(&request),
    ))
    .unwrap();
    let output = body["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(
        output[0]["encrypted_content"],
        "gemini-thought-signature:Cs0BAY89a1"
    );
    assert_eq!(output[1]["type"], "function_call");

    // Sent back, the signature is the call's again, not a thinking block for any provider.
    let mut input = vec![json!({"role": "user", "content": "Weather?"})];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "call_a", "output": "sunny"}));
    let again = decode(json!({"model": "m", "input": input}));
    assert_eq!(again.messages[1].content, [signed]);

    // Streamed, the signature's item is added and done before the call's.
    let events = encode_stream(
        &[
            StreamEvent::ToolCallSignature {
                index: 0,
                signature: "Cs0BAY89a1".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ],
        None,
    );
    let items: Vec<(&str, &Value)> = events
        .iter()
        .filter(|(n, _)| n.starts_with("response.output_item."))
        .map(|(n, data)| (n.as_str(), &data["item"]))
        .collect();
    assert_eq!(items[0].0, "response.output_item.added");
    assert_eq!(items[1].0, "response.output_item.done");
    assert_eq!(
        items[1].1["encrypted_content"],
        "gemini-thought-signature:Cs0BAY89a1"
    );
    assert_eq!(items[2].1["type"], "function_call");
    let (_, completed) = events.last().unwrap();
    assert_eq!(
        completed["response"]["output"][0]["encrypted_content"],
        "gemini-thought-signature:Cs0BAY89a1"
    );
}

#[test]
fn text_deltas_are_byte_for_byte_what_serde_writes() {
    for text in [
        "Hello",
        " world \"quoted\"\n",
        "caf\u{e9} \u{65e5}\u{672c} \u{1f600}",
        "\u{7f}\u{1}\t<>&'",
    ] {
        for (index, sequence) in [(0, 4), (3, 12_345)] {
            let mut hand = Vec::new();
            super::encode::write_text_delta(&mut hand, "msg_0193abcd_0", index, sequence, text);
            let data = serde_json::to_vec(&json!({"item_id": "msg_0193abcd_0", "output_index": index,
                "content_index": 0, "delta": text, "logprobs": [], "type": "response.output_text.delta",
                "sequence_number": sequence}))
            .unwrap();
            let mut serde = Vec::new();
            crate::sse::write_event(&mut serde, Some("response.output_text.delta"), &data);
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}

/// A reasoning delta written by hand, as a summary's or as reasoning text, and a fragment of a
/// function call's arguments are what `emit` writes from the events' trees.
#[test]
fn reasoning_and_argument_deltas_are_byte_for_byte_what_serde_writes() {
    for text in [
        "Let me think",
        " about \"this\"\n\tstep",
        "caf\u{e9} \u{65e5}\u{672c} \u{1f600}",
        "\u{7f}\u{1}<>&'\\",
    ] {
        for (index, sequence) in [(0_usize, 0_u64), (3, 98_765)] {
            for (summary, kind, at) in [
                (
                    true,
                    "response.reasoning_summary_text.delta",
                    "summary_index",
                ),
                (false, "response.reasoning_text.delta", "content_index"),
            ] {
                let (mut hand, mut serde) = (Vec::new(), Vec::new());
                let (mut hand_next, mut serde_next) = (sequence, sequence);
                super::encode::write_reasoning_delta(
                    &mut hand,
                    &mut hand_next,
                    summary,
                    "rs_0193\"x",
                    index,
                    text,
                );
                let mut event =
                    json!({"item_id": "rs_0193\"x", "output_index": index, "delta": text});
                event[at] = json!(0);
                super::encode::emit(&mut serde_next, kind, event, &mut serde);
                super::encode::write_arguments_delta(
                    &mut hand,
                    &mut hand_next,
                    "fc_0193\"x",
                    index,
                    text,
                );
                super::encode::emit(
                    &mut serde_next,
                    "response.function_call_arguments.delta",
                    json!({"item_id": "fc_0193\"x", "output_index": index, "delta": text}),
                    &mut serde,
                );
                assert_eq!(
                    String::from_utf8(hand).unwrap(),
                    String::from_utf8(serde).unwrap()
                );
                assert_eq!(hand_next, serde_next);
            }
        }
    }
}

/// An event that holds a `response` (`response.created`, `.completed`, `.failed` …) is written
/// from the response's JSON, once for all of them, byte for byte as the event itself is
/// written with the response in it.
#[test]
fn events_holding_a_response_are_what_serde_writes() {
    let responses = [
        json!({}),
        json!({"id": "resp_1", "output": [{"type": "message", "content": [{"text": "caf\u{e9} \"q\"\n"}]}],
            "usage": null, "z": [1, 2.5, -3], "a": true}),
    ];
    for response in &responses {
        for (kind, sequence) in [("response.created", 0), ("response.completed", 987_654)] {
            let (mut hand, mut serde) = (Vec::new(), Vec::new());
            let (mut hand_next, mut serde_next) = (sequence, sequence);
            let bytes = serde_json::to_vec(response).unwrap();
            super::encode::emit_response(&mut hand_next, kind, &bytes, &mut hand);
            super::encode::emit(
                &mut serde_next,
                kind,
                json!({"response": response}),
                &mut serde,
            );
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                String::from_utf8(serde).unwrap()
            );
            assert_eq!(hand_next, serde_next);
        }
    }
}

/// Common requests, read in one pass into exactly the full decoder's request.
const COMMON: &[&str] = &[
    r#"{"model":"m","input":"Hello"}"#,
    r#"{"model":"m","input":"Hello","tools":[{"type":"web_search","user_location":{"type":"approximate","city":"Oslo"}}]}"#,
    r#"{"model":"m","input":"Hello","tools":[{"type":"web_search"},{"type":"function","name":"f"},{"type":"custom","name":"g"}],"tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"custom","name":"g"},{"type":"web_search"}]}}"#,
    r#"{"model":"m","instructions":"Be brief.","input":"Tell me \"more\"\n\u00e9 \ud83d\ude00","stream":true,"max_output_tokens":64,"temperature":0.2,"top_p":0.9,"user":"u","metadata":{"team":"a"},"parallel_tool_calls":false,"store":false,"include":[],"truncation":"auto","stream_options":{"include_obfuscation":false},"service_tier":"flex","prompt_cache_key":"k"}"#,
    r#"{
      "model": "m",
      "input": [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "input_text", "text": "Bonjour"}, {"type": "input_text", "text": "ça va ?"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Oui.", "annotations": [], "logprobs": []}]},
        {"role": "assistant", "content": "Et vous ?"},
        {"role": "user", "content": "Bien."}
      ],
      "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": false},
                {"type": "custom", "name": "apply_patch", "description": "Edit files.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: \"*** Begin Patch\""}}],
      "tool_choice": "auto",
      "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}}, "verbosity": "low"},
      "reasoning": {"effort": "low", "summary": "auto"},
      "max_output_tokens": null,
      "temperature": null
    }"#,
];

/// Forms left to the full decoder (which takes some of them and refuses others).
const DECLINED: &[&str] = &[
    r#"{"model":"m","input":[]}"#,
    r#"{"model":"m"}"#,
    r#"{"input":"x"}"#,
    r#"{"model":"m","model":"n","input":"x"}"#,
    r#"{"model":"m","input":"x","previous_response_id":"r"}"#,
    r#"{"model":"m","input":"x","previous_response_id":null}"#,
    r#"{"model":"m","input":"x","background":false}"#,
    r#"{"model":"m","input":"x","instructions":null}"#,
    r#"{"model":"m","input":"x","instructions":["a"]}"#,
    r#"{"model":"m","input":"x","temperature":3}"#,
    r#"{"model":"m","input":"x","max_output_tokens":-1}"#,
    r#"{"model":"m","input":"x","tools":[{"type":"file_search"}]}"#,
    r#"{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}"#,
    r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"x"}]}"#,
    r#"{"model":"m","input":[{"type":"reasoning","id":"r","summary":[]}]}"#,
    r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png","detail":"auto"}]}]}"#,
    r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a","extra":1}]}]}"#,
    r#"{"model":"m","input":[{"role":"tool","content":"x"}]}"#,
    r#"{"model":"m","input":[{"role":"user","content":null}]}"#,
    r#"{"model":"m","input":[{"role":"user","content":"x","name":"n"}]}"#,
    r#"{"model":"m","input":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}]}"#,
    r#"{"model":"m","input":"x"} trailing"#,
    "[1,2]",
];

#[test]
fn common_requests_are_read_in_one_pass_as_the_full_decoder_reads_them() {
    let long = format!(
        r#"{{"model":"m","instructions":"Be brief.","input":[{{"role":"user","content":[{{"type":"input_text","text":"{}"}}]}}]}}"#,
        "keep-alive connections ".repeat(10_000)
    );
    crate::one_pass::assert_reads_as_the_full_decoder(
        super::common::decode,
        super::decode::decode,
        &ResponsesIngress,
        COMMON,
        &[&long],
        DECLINED,
    );
    // A long prompt without escapes shares the body's bytes.
    let body = Bytes::from(long.clone());
    let request = super::common::decode(&body).unwrap();
    let ContentPart::Text { text, .. } = &request.messages[1].content[0] else {
        panic!("{:?}", request.messages[1]);
    };
    let at = text.as_str().as_ptr() as usize;
    let start = body.as_ptr() as usize;
    assert!(
        (start..start + body.len()).contains(&at),
        "the prompt is a slice of the body"
    );
}

const APPLY_PATCH: &str =
    "*** Begin Patch\n*** Add File: hello.txt\n+Hello \"world\"\n*** End Patch";

/// A request offering a function and a custom tool (Codex's `apply_patch`, free-form text
/// following a grammar).
fn custom_tool_request(stream: bool) -> Value {
    json!({"model": "m", "input": "Add hello.txt", "stream": stream,
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object",
                "properties": {"command": {"type": "string"}}}},
            {"type": "custom", "name": "apply_patch", "description": "Edit files.",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}
        ],
        "tool_choice": {"type": "custom", "name": "apply_patch"}})
}

/// A call of the function `name`, as a provider's answer holds it.
fn tool_call(id: &str, name: &str, arguments: &str) -> ContentPart {
    ContentPart::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        extras: Extras::default(),
    }
}

/// The output items of a `response` answering `request` with `calls`.
fn calls_output(request: &ChatRequest, calls: Vec<ContentPart>) -> Vec<Value> {
    let body = ResponsesIngress.encode_chat(&answer(calls, FinishReason::ToolCalls), &ctx(request));
    let mut response: Value = serde_json::from_slice(&body).unwrap();
    match response["output"].take() {
        Value::Array(output) => output,
        other => panic!("no output: {other}"),
    }
}

#[test]
fn a_custom_tool_is_a_function_of_one_string_that_every_provider_can_call() {
    let r = decode(custom_tool_request(false));
    assert_eq!(r.tools.len(), 2);
    let tool = &r.tools[1];
    assert_eq!(tool.name, "apply_patch");
    assert_eq!(tool.description.as_deref(), Some("Edit files."));
    assert_eq!(tool.parameters["required"], json!(["input"]));
    assert_eq!(tool.parameters["properties"]["input"]["type"], "string");
    let told = tool.parameters["properties"]["input"]["description"]
        .as_str()
        .unwrap();
    assert!(told.contains("lark grammar:\nstart: begin_patch"), "{told}");
    assert_eq!(
        r.tool_choice,
        Some(ToolChoice::Function("apply_patch".into()))
    );
    // The response repeats the tools and the choice as the client wrote them.
    let echo = ResponsesIngress.echo(&r).unwrap();
    assert_eq!(echo["tools"][0]["type"], "function");
    assert_eq!(echo["tools"][1], custom_tool_request(false)["tools"][1]);
    assert_eq!(
        echo["tool_choice"],
        json!({"type": "custom", "name": "apply_patch"})
    );
    // A free-text custom tool, without a format.
    let r = decode(json!({"model": "m", "input": "x",
        "tools": [{"type": "custom", "name": "note"}]}));
    assert_eq!(
        r.tools[0].parameters["properties"]["input"]["type"],
        "string"
    );
    assert!(r.tools[0].description.is_none());
}

#[test]
fn a_custom_tools_call_is_a_custom_tool_call_item_whose_output_comes_back() {
    let request = decode(custom_tool_request(false));
    let arguments = json!({"input": APPLY_PATCH}).to_string();
    let body = ResponsesIngress.encode_chat(
        &answer(
            vec![
                tool_call("call_1", "apply_patch", &arguments),
                tool_call("call_2", "shell", "{\"command\":\"ls\"}"),
            ],
            FinishReason::ToolCalls,
        ),
        &ctx(&request),
    );
    let response: Value = serde_json::from_slice(&body).unwrap();
    let output = response["output"].as_array().unwrap();
    assert_eq!(
        output[0],
        json!({"id": "ctc_0193abcd_0", "type": "custom_tool_call", "call_id": "call_1",
            "name": "apply_patch", "input": APPLY_PATCH})
    );
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(response["tools"][1]["type"], "custom");
    // Sent back with its output, the call is the stand-in function's again.
    let mut next = custom_tool_request(false);
    next["input"] = json!([
        {"role": "user", "content": "Add hello.txt"},
        output[0],
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done."}
    ]);
    let r = decode(next);
    assert_eq!(r.messages.len(), 3);
    let ContentPart::ToolCall {
        id,
        name,
        arguments: sent,
        ..
    } = &r.messages[1].content[0]
    else {
        panic!("{:?}", r.messages[1]);
    };
    assert_eq!((id.as_str(), name.as_str()), ("call_1", "apply_patch"));
    assert_eq!(
        serde_json::from_str::<Value>(sent).unwrap()["input"],
        APPLY_PATCH
    );
    assert_eq!(
        tool_result(&r.messages[2]),
        ("call_1", Some("apply_patch"), "Done.".to_owned())
    );
}

/// A tool message's call id, function name and text.
fn tool_result(message: &crate::canonical::Message) -> (&str, Option<&str>, String) {
    let ContentPart::ToolResult {
        tool_call_id,
        name,
        content,
        ..
    } = &message.content[0]
    else {
        panic!("{message:?}");
    };
    (
        tool_call_id,
        name.as_deref(),
        ContentPart::concat_text(content),
    )
}

#[test]
fn a_streamed_custom_tool_call_gives_its_input_once_whole() {
    let request = decode(custom_tool_request(true));
    let arguments = json!({"input": APPLY_PATCH}).to_string();
    let (head, tail) = arguments.split_at(20);
    let events = encode_stream_for(
        &request,
        &[
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "apply_patch".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: head.into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: tail.into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ],
        None,
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[2].1["item"],
        json!({"id": "ctc_0193abcd_0", "type": "custom_tool_call", "call_id": "call_1",
            "name": "apply_patch", "input": ""})
    );
    assert_eq!(events[3].1["delta"], APPLY_PATCH);
    assert_eq!(events[4].1["input"], APPLY_PATCH);
    assert_eq!(events[4].1["item_id"], "ctc_0193abcd_0");
    assert_eq!(events[5].1["item"]["input"], APPLY_PATCH);
    assert_eq!(events[6].1["response"]["output"][0]["input"], APPLY_PATCH);
}

#[test]
fn a_custom_call_whose_arguments_are_not_the_stand_ins_keeps_them_as_its_input() {
    let request = decode(custom_tool_request(false));
    let output = calls_output(
        &request,
        vec![tool_call("call_1", "apply_patch", "*** Begin Patch")],
    );
    assert_eq!(output[0]["input"], "*** Begin Patch");
}

fn search_blocks() -> Vec<ContentPart> {
    vec![
        ContentPart::text("Let me look."),
        ContentPart::ServerTool {
            block: json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                "input": {"query": "rust 2024 edition"}}),
        },
        ContentPart::ServerTool {
            block: json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
            "content": [
                {"type": "web_search_result", "url": "https://a.example/1", "title": "A",
                    "encrypted_content": "e1"},
                {"type": "web_search_result", "url": "https://b.example/2", "title": "B",
                    "encrypted_content": "e2"}
            ]}),
        },
        ContentPart::text("It shipped in Rust 1.85."),
    ]
}

#[test]
fn the_hosted_web_search_is_a_search_the_provider_runs_and_its_call_an_item() {
    let tools = json!([
        {"type": "web_search", "external_web_access": false,
            "filters": {"allowed_domains": ["doc.rust-lang.org"]},
            "user_location": {"type": "approximate", "country": "NO"}},
        {"type": "function", "name": "f", "parameters": {"type": "object"}}
    ]);
    let r = decode(json!({"model": "m", "input": "x", "tools": tools}));
    let search = r.web_search.as_ref().unwrap();
    assert_eq!(search.allowed_domains, ["doc.rust-lang.org"]);
    assert_eq!(search.user_location.as_ref().unwrap()["country"], "NO");
    assert_eq!(r.tools.len(), 1);
    assert_eq!(ResponsesIngress.echo(&r).unwrap()["tools"], tools);
    // The preview versions too.
    let r = decode(json!({"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]}));
    assert!(r.web_search.is_some() && r.tools.is_empty());

    let body = ResponsesIngress.encode_chat(&answer(search_blocks(), FinishReason::Stop), &ctx(&r));
    let response: Value = serde_json::from_slice(&body).unwrap();
    let output = response["output"].as_array().unwrap();
    let types: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message", "web_search_call", "message"]);
    assert_eq!(
        output[1],
        json!({"id": "ws_0193abcd_1", "type": "web_search_call", "status": "completed",
            "action": {"type": "search", "query": "rust 2024 edition", "sources": [
                {"type": "url", "url": "https://a.example/1"},
                {"type": "url", "url": "https://b.example/2"}]}})
    );
    assert_eq!(response["output_text"], Value::Null);
    // Sent back with the history, the search's item is taken and left out.
    let mut input = vec![json!({"role": "user", "content": "x"})];
    input.extend(output.iter().cloned());
    input.push(json!({"role": "user", "content": "And 2027?"}));
    let r = decode(json!({"model": "m", "input": input, "tools": [{"type": "web_search"}]}));
    assert_eq!(r.messages.len(), 3);
    assert_eq!(r.messages[1].text(), "Let me look.It shipped in Rust 1.85.");
}

#[test]
fn a_streamed_web_search_goes_out_whole_with_its_result() {
    let request = decode(json!({"model": "m", "input": "x", "stream": true,
        "tools": [{"type": "web_search"}]}));
    let events = encode_stream_for(
        &request,
        &[
            StreamEvent::TextDelta("Let me look.".into()),
            StreamEvent::ServerToolStart(json!({"type": "server_tool_use", "id": "srvtoolu_1",
            "name": "web_search", "input": {}})),
            StreamEvent::ServerToolInputDelta("{\"query\": \"rust ".into()),
            StreamEvent::ServerToolInputDelta("edition\"}".into()),
            StreamEvent::ServerToolStart(json!({"type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"}})),
            StreamEvent::TextDelta("I could not search.".into()),
            StreamEvent::Finish(FinishReason::Stop),
        ],
        None,
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let at = names
        .iter()
        .position(|n| *n == "response.web_search_call.in_progress")
        .unwrap();
    assert_eq!(
        names[at - 1..at + 4],
        [
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
        ]
    );
    let item = &events[at + 3].1["item"];
    assert_eq!(item["type"], "web_search_call");
    assert_eq!(item["status"], "failed");
    assert_eq!(item["action"]["query"], "rust edition");
    let output = events.last().unwrap().1["response"]["output"].clone();
    let types: Vec<&str> = output
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message", "web_search_call", "message"]);
}

#[test]
fn kept_responses_are_brought_in_as_the_conversation_they_answered() {
    use super::{Kept, bring_in, referenced_responses, refers_to_kept};
    let first_request = json!({"model": "m", "instructions": "Be brief.", "input": "Hi"});
    let first_response = json!({"id": "resp_abc", "object": "response", "output": [
        {"id": "msg_abc_0", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]},
        {"id": "fc_abc_1", "type": "function_call", "call_id": "call_1", "name": "f",
            "arguments": "{}", "status": "completed"}
    ]});
    let kept = |id: &str| {
        (id == "resp_abc").then(|| Kept {
            request: Bytes::from(first_request.to_string()),
            response: Bytes::from(first_response.to_string()),
        })
    };
    let next = json!({"model": "m", "previous_response_id": "resp_abc", "instructions": "Be kind.",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "done"}]});
    let body = next.to_string();
    assert!(refers_to_kept(body.as_bytes()));
    let whole: Value =
        serde_json::from_slice(&bring_in(body.as_bytes(), &kept).unwrap().unwrap().body).unwrap();
    assert!(whole.get("previous_response_id").is_none());
    // The earlier instructions are not carried over; its input, output and the new input are.
    assert_eq!(whole["instructions"], "Be kind.");
    let input = whole["input"].as_array().unwrap();
    assert_eq!(input[0], json!({"role": "user", "content": "Hi"}));
    assert_eq!(input[1]["id"], "msg_abc_0");
    assert_eq!(input[2]["id"], "fc_abc_1");
    assert_eq!(input[3]["type"], "function_call_output");
    let r = decode(whole);
    assert_eq!(r.messages.len(), 4, "{:?}", r.messages);
    // The output names its call, found in the history.
    assert_eq!(tool_result(&r.messages[3]).1, Some("f"));

    // An item reference becomes the item it names.
    let by_reference = json!({"model": "m", "input": [
        {"role": "user", "content": "Hi"}, {"type": "item_reference", "id": "fc_abc_1"}]});
    let whole: Value = serde_json::from_slice(
        &bring_in(by_reference.to_string().as_bytes(), &kept)
            .unwrap()
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(whole["input"][1]["call_id"], "call_1");

    // What a gateway must fetch first: each referred response once.
    assert_eq!(referenced_responses(body.as_bytes()), ["resp_abc"]);
    let both = json!({"model": "m", "previous_response_id": "resp_abc", "input": [
        {"type": "item_reference", "id": "fc_abc_1"}, {"type": "item_reference", "id": "msg_xyz_0"},
        {"type": "item_reference", "id": "not-ours"}]});
    assert_eq!(
        referenced_responses(both.to_string().as_bytes()),
        ["resp_abc", "resp_xyz"]
    );
    assert!(referenced_responses(b"[1]").is_empty());

    // What is not kept is refused, naming the member.
    for (body, param) in [
        (
            json!({"model": "m", "previous_response_id": "resp_gone", "input": "x"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "fc_abc_9"}]}),
            "input[0].id",
        ),
        (
            json!({"model": "m", "input": ["x", {"type": "item_reference"}]}),
            "input[1].id",
        ),
    ] {
        let error = bring_in(body.to_string().as_bytes(), &kept).unwrap_err();
        assert_eq!(
            error.param.as_deref(),
            Some(param),
            "{body}: {}",
            error.message
        );
    }
    // A body that only mentions the words is left as it is.
    let mention = json!({"model": "m", "input": "what is an item_reference?"}).to_string();
    assert!(refers_to_kept(mention.as_bytes()));
    assert!(bring_in(mention.as_bytes(), &kept).unwrap().is_none());
}

#[test]
fn a_client_that_asks_for_a_reasoning_summary_gets_the_reasoning_as_its_summary() {
    let request = decode(json!({"model": "m", "input": "x", "stream": true,
        "reasoning": {"effort": "low", "summary": "auto"}}));
    assert_eq!(
        ResponsesIngress.echo(&request).unwrap()["reasoning"],
        json!({"effort": "low", "summary": "auto"})
    );
    let whole = ResponsesIngress.encode_chat(
        &answer(
            vec![
                ContentPart::Reasoning {
                    text: "Think.".into(),
                    signature: Some("sig".into()),
                },
                ContentPart::text("Done."),
            ],
            FinishReason::Stop,
        ),
        &ctx(&request),
    );
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    let item = &whole["output"][0];
    assert_eq!(
        item["summary"],
        json!([{"type": "summary_text", "text": "Think."}])
    );
    assert!(item.get("content").is_none(), "{item}");
    assert_eq!(item["encrypted_content"], "sig");
    let events = encode_stream_for(
        &request,
        &[
            StreamEvent::ReasoningDelta("Thi".into()),
            StreamEvent::ReasoningDelta("nk.".into()),
            StreamEvent::ReasoningSignature("sig".into()),
            StreamEvent::TextDelta("Done.".into()),
            StreamEvent::Finish(FinishReason::Stop),
        ],
        None,
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[2..9],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    );
    assert_eq!(events[3].1["summary_index"], 0);
    assert_eq!(
        events[3].1["part"],
        json!({"type": "summary_text", "text": ""})
    );
    assert_eq!(events[4].1["delta"], "Thi");
    assert_eq!(events[6].1["text"], "Think.");
    assert_eq!(&events[8].1["item"], item);
    // Sent back, the summary is the thinking again, its signature with it.
    let back = decode(json!({"model": "m", "input": [
        {"role": "user", "content": "x"}, item, {"role": "user", "content": "y"}]}));
    assert_eq!(
        back.messages[1].content[0],
        ContentPart::Reasoning {
            text: "Think.".into(),
            signature: Some("sig".into())
        }
    );
}

/// `allowed_tools` leaves the request with the tools it names (functions, custom tools and the
/// hosted web search), to be called as the model likes or at least one; what it names wrongly
/// is refused at its path.
#[test]
fn allowed_tools_cut_the_tools_down_to_those_named() {
    let request = |choice: Value| {
        json!({"model": "m", "input": "x", "tool_choice": choice, "tools": [
            {"type": "function", "name": "get_time"}, {"type": "web_search"},
            {"type": "function", "name": "get_weather"},
            {"type": "custom", "name": "apply_patch"}]})
    };
    let allowed =
        |mode: &str, tools: Value| json!({"type": "allowed_tools", "mode": mode, "tools": tools});
    let function = |name: &str| json!({"type": "function", "name": name});
    for (choice, names, search, expected) in [
        (
            allowed(
                "required",
                json!([{"type": "custom", "name": "apply_patch"}, function("get_time")]),
            ),
            vec!["get_time", "apply_patch"],
            false,
            ToolChoice::Required,
        ),
        (
            allowed("auto", json!([{"type": "web_search"}])),
            vec![],
            true,
            ToolChoice::Auto,
        ),
        (
            allowed("required", json!([{"type": "web_search"}])),
            vec![],
            true,
            ToolChoice::Required,
        ),
        (allowed("auto", json!([])), vec![], false, ToolChoice::None),
    ] {
        let r = decode(request(choice));
        let kept: Vec<&str> = r.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            (kept, r.web_search.is_some(), r.tool_choice),
            (names, search, Some(expected))
        );
    }
    for (choice, param) in [
        (
            allowed("any", json!([function("get_time")])),
            "tool_choice.mode",
        ),
        (allowed("required", json!([])), "tool_choice.mode"),
        (
            allowed("auto", json!([function("launch")])),
            "tool_choice.tools[0].name",
        ),
        (
            allowed("auto", json!([{"type": "file_search"}])),
            "tool_choice.tools[0].type",
        ),
        (
            json!({"type": "allowed_tools", "mode": "auto"}),
            "tool_choice.tools",
        ),
        (
            json!({"type": "mcp", "server_label": "x"}),
            "tool_choice.type",
        ),
    ] {
        assert_eq!(
            refused(request(choice.clone())).1.as_deref(),
            Some(param),
            "{choice}"
        );
    }
    // Without a web search among the request's tools, one allowed is refused.
    let body = json!({"model": "m", "input": "x", "tools": [function("f")],
        "tool_choice": allowed("auto", json!([{"type": "web_search"}]))});
    assert_eq!(
        refused(body).1.as_deref(),
        Some("tool_choice.tools[0].type")
    );
}

/// A request with a namespace of tools (Codex's sub-agent tools), a function and a custom tool
/// in it, beside a plain function.
fn namespace_request(stream: bool) -> Value {
    json!({"model": "m", "input": "Start a helper", "stream": stream,
    "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object",
            "properties": {"cmd": {"type": "string"}}}},
        {"type": "namespace", "name": "multi_agent_v1",
            "description": "Tools for spawning and managing sub-agents.",
            "tools": [
                {"type": "function", "name": "spawn_agent", "description": "Start an agent.",
                    "strict": false, "defer_loading": false,
                    "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}},
                {"type": "custom", "name": "note"}
            ]}
    ]})
}

#[test]
fn a_namespaces_tools_are_functions_named_after_it_and_its_calls_name_it_again() {
    let request = decode(namespace_request(false));
    let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "exec_command",
            "multi_agent_v1__spawn_agent",
            "multi_agent_v1__note"
        ]
    );
    assert_eq!(
        request.tools[1].description.as_deref(),
        Some(
            "Start an agent.\n\n(One of the multi_agent_v1 tools: Tools for spawning and managing sub-agents.)"
        )
    );
    assert_eq!(request.tools[2].parameters["required"], json!(["input"]));
    // The response repeats the tools as written.
    let echo = ResponsesIngress.echo(&request).unwrap();
    assert_eq!(echo["tools"], namespace_request(false)["tools"]);

    let output = calls_output(
        &request,
        vec![
            tool_call("call_1", "multi_agent_v1__spawn_agent", "{\"task\":\"x\"}"),
            tool_call("call_2", "multi_agent_v1__note", "{\"input\":\"hi\"}"),
            tool_call("call_3", "exec_command", "{\"cmd\":\"ls\"}"),
        ],
    );
    assert_eq!(
        output[0],
        json!({"id": "fc_0193abcd_0", "type": "function_call", "status": "completed",
            "call_id": "call_1", "name": "spawn_agent", "namespace": "multi_agent_v1",
            "arguments": "{\"task\":\"x\"}"})
    );
    assert_eq!(
        output[1],
        json!({"id": "ctc_0193abcd_1", "type": "custom_tool_call", "call_id": "call_2",
            "name": "note", "namespace": "multi_agent_v1", "input": "hi"})
    );
    assert!(output[2].get("namespace").is_none(), "{}", output[2]);
    assert_eq!(output[2]["name"], "exec_command");

    // Sent back, each call is its function's again.
    let mut next = namespace_request(false);
    next["input"] = json!([
        {"role": "user", "content": "Start a helper"},
        output[0], output[1],
        {"type": "function_call_output", "call_id": "call_1", "output": "started"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "noted"}
    ]);
    let r = decode(next);
    let called: Vec<&str> = r.messages[1]
        .content
        .iter()
        .map(|p| match p {
            ContentPart::ToolCall { name, .. } => name.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        called,
        ["multi_agent_v1__spawn_agent", "multi_agent_v1__note"]
    );
    assert_eq!(
        tool_result(&r.messages[2]),
        (
            "call_1",
            Some("multi_agent_v1__spawn_agent"),
            "started".to_owned()
        )
    );

    // Streamed, the item names the namespace from the start.
    let request = decode(namespace_request(true));
    let events = encode_stream_for(
        &request,
        &[
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "multi_agent_v1__spawn_agent".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"task\":\"x\"}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ],
        None,
    );
    let added = events
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .unwrap();
    assert_eq!(added.1["item"]["name"], "spawn_agent");
    assert_eq!(added.1["item"]["namespace"], "multi_agent_v1");
    let done = events
        .iter()
        .find(|(n, _)| n == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done.1["name"], "spawn_agent");
    let completed = &events.last().unwrap().1["response"]["output"][0];
    assert_eq!(completed["namespace"], "multi_agent_v1");

    // A namespace holds functions and custom tools only.
    let (message, param) = refused(json!({"model": "m", "input": "x", "tools": [
        {"type": "namespace", "name": "n", "description": "d",
            "tools": [{"type": "web_search"}]}]}));
    assert!(message.contains("function and custom"), "{message}");
    assert_eq!(param.as_deref(), Some("tools[0].tools[0].type"));
}

/// The members Chat Completions shares with the Responses API reach OpenAI's own API with the
/// request; servers that may refuse members they do not know (compatible ones, Azure) get
/// none, and the Responses API's own members (`store`, `include`) reach no provider.
#[test]
fn members_chat_completions_shares_reach_openai_only() {
    use crate::dialect::{OpenAiQuirks, ProviderDialect, Target};
    use crate::openai::OpenAiProvider;
    use crate::provider_body::ProviderBody;
    let request = decode(json!({"model": "m", "input": "Hello",
        "prompt_cache_key": "session-7", "safety_identifier": "user-hash",
        "service_tier": "flex", "prompt_cache_retention": "24h",
        "store": false, "include": ["reasoning.encrypted_content"]}));
    let target = Target {
        base_url: "https://api.openai.com/v1",
        model: "gpt-5",
        api_key: Some("sk"),
        api_version: None,
    };
    let sent = |provider: OpenAiProvider| -> Value {
        let built = provider.build_chat(&request, &target).unwrap();
        serde_json::from_slice(&built.map(ProviderBody::into_vec).into_body()).unwrap()
    };
    let body = sent(OpenAiProvider::new(OpenAiQuirks::default()));
    assert_eq!(body["prompt_cache_key"], "session-7");
    assert_eq!(body["safety_identifier"], "user-hash");
    assert_eq!(body["service_tier"], "flex");
    assert_eq!(body["prompt_cache_retention"], "24h");
    assert!(
        body.get("store").is_none() && body.get("include").is_none(),
        "{body}"
    );
    for other in [
        OpenAiProvider::new(OpenAiQuirks::compatible()),
        OpenAiProvider::azure(),
    ] {
        let body = sent(other);
        assert!(body.get("prompt_cache_key").is_none(), "{body}");
        assert!(body.get("service_tier").is_none(), "{body}");
    }
}

/// Codex sends its tools for the newest models as an `additional_tools` input item: they join
/// the request's tools, and their calls come back as the client named them.
#[test]
fn tools_of_an_additional_tools_item_join_the_requests_tools() {
    let body = json!({"model": "m", "stream": false,
        "input": [
            {"type": "additional_tools", "id": "at_1", "role": "developer", "tools": [
                {"type": "namespace", "name": "functions", "description": "",
                    "tools": [{"type": "custom", "name": "exec", "description": "Run JavaScript."}]},
                {"type": "function", "name": "view_image", "parameters": {"type": "object",
                    "properties": {"path": {"type": "string"}}}}
            ]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}
        ],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]});
    let request = decode(body);
    let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["shell", "functions__exec", "view_image"]);
    assert_eq!(request.messages.len(), 1);
    assert_eq!(request.messages[0].text(), "Hello");
    let output = calls_output(
        &request,
        vec![tool_call(
            "call_1",
            "functions__exec",
            "{\"input\":\"1+1\"}",
        )],
    );
    assert_eq!(
        output[0],
        json!({"id": "ctc_0193abcd_0", "type": "custom_tool_call", "call_id": "call_1",
            "name": "exec", "namespace": "functions", "input": "1+1"})
    );
    // A bad tool there is named at its place in the input.
    let (_, param) = refused(json!({"model": "m", "input": [
        {"type": "additional_tools", "role": "developer", "tools": [{"type": "file_search"}]},
        {"role": "user", "content": "x"}]}));
    assert_eq!(param.as_deref(), Some("input[0].tools[0].type"));
}

#[test]
fn what_the_responses_api_refuses_of_its_limits_is_refused_here() {
    for (body, param) in [
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 5}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"a": 1}}),
            "metadata.a",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"a": "x".repeat(513)}}),
            "metadata.a",
        ),
    ] {
        assert_eq!(refused(body).1.as_deref(), Some(param));
    }
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        refused(json!({"model": "m", "input": "x", "metadata": many}))
            .1
            .as_deref(),
        Some("metadata")
    );
    decode(json!({"model": "m", "input": "x", "max_output_tokens": 16, "metadata": {"team": "a"}}));
}

#[test]
fn a_refusal_names_the_field_as_the_responses_api_calls_it() {
    let named = |param: &str| {
        let body = ResponsesIngress.encode_error(&ClientError {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            code: "invalid_request",
            message: "m".into(),
            param: Some(param.into()),
        });
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["param"].clone()
    };
    assert_eq!(named("reasoning_effort"), "reasoning.effort");
    assert_eq!(named("messages[1].content[1]"), "input");
    assert_eq!(named("max_completion_tokens"), "max_output_tokens");
    assert_eq!(named("temperature"), "temperature");
}
