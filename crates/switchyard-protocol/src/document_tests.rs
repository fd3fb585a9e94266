//! Documents (PDFs, text files) across dialects: decoded from an OpenAI `file` part and an
//! Anthropic `document` block, written for each provider, and refused by name where a provider
//! has no form for them.

// Tests may fail loudly; the workspace denies these lints only for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use serde_json::{Value, json};

use crate::anthropic::{AnthropicIngress, AnthropicProvider};
use crate::canonical::{ChatRequest, ContentPart, DocumentSource, Extras, Message, Role};
use crate::dialect::{DialectId, IngressDialect, OpenAiQuirks, ProviderDialect, Target};
use crate::error::DecodeError;
use crate::gemini::GeminiProvider;
use crate::openai::{OpenAiIngress, OpenAiProvider};

/// "%PDF-1.4\n" in base64.
const PDF_DATA: &str = "JVBERi0xLjQK";

fn target() -> Target<'static> {
    Target {
        base_url: "https://api.example.com/v1",
        model: "some-model",
        api_key: Some("k"),
        api_version: None,
    }
}

fn openai_body(parts: Value) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": parts}]})
}

fn anthropic_body(blocks: Value) -> Value {
    json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": blocks}]})
}

fn decode(ingress: &dyn IngressDialect, body: &Value) -> Result<ChatRequest, DecodeError> {
    ingress.decode_chat(&Bytes::from(body.to_string()))
}

/// The user message's parts of a request decoded from `body`.
fn decoded_parts(ingress: &dyn IngressDialect, body: &Value) -> Vec<ContentPart> {
    let request = decode(ingress, body).unwrap();
    request.messages.into_iter().last().unwrap().content
}

fn decode_error(ingress: &dyn IngressDialect, body: &Value) -> DecodeError {
    decode(ingress, body).expect_err("the body should be refused")
}

/// Each body is refused by `ingress` with the error's param and words in its message.
fn assert_refused_by_path<const N: usize>(
    ingress: &dyn IngressDialect,
    cases: [(Value, &str, &str); N],
) {
    for (body, param, words) in cases {
        let error = decode_error(ingress, &body);
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
        assert!(error.message.contains(words), "{body}: {}", error.message);
    }
}

fn build(provider: &dyn ProviderDialect, request: &ChatRequest) -> Result<Value, DecodeError> {
    let built = provider.build_chat(request, &target())?;
    Ok(serde_json::from_slice(&built.body().to_vec()).unwrap())
}

fn openai() -> OpenAiProvider {
    OpenAiProvider::new(OpenAiQuirks::default())
}

fn pdf(title: Option<&str>) -> ContentPart {
    document(
        DocumentSource::Base64 {
            media_type: "application/pdf".into(),
            data: PDF_DATA.into(),
        },
        title,
    )
}

fn document(source: DocumentSource, title: Option<&str>) -> ContentPart {
    ContentPart::Document {
        source,
        title: title.map(str::to_owned),
        context: None,
        extras: Extras::default(),
    }
}

/// A request whose one user message reads "Summarize." and then holds `part`.
fn request_with(part: ContentPart) -> ChatRequest {
    request_with_role(Role::User, part)
}

fn request_with_role(role: Role, part: ContentPart) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role,
            content: vec![ContentPart::text("Summarize."), part],
            name: None,
            extras: Extras::default(),
        }],
        max_tokens: Some(100),
        ..ChatRequest::default()
    }
}

#[test]
fn an_openai_file_part_decodes_to_a_document() {
    let parts = decoded_parts(
        &OpenAiIngress,
        &openai_body(json!([
            {"type": "text", "text": "Summarize."},
            {"type": "file", "file": {"filename": "report.pdf",
                "file_data": format!("data:application/pdf;base64,{PDF_DATA}")}},
            {"type": "file", "file": {"file_id": "file-abc123"}}])),
    );
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1], pdf(Some("report.pdf")));
    assert_eq!(
        parts[2],
        document(DocumentSource::FileId("file-abc123".into()), None)
    );
}

#[test]
fn a_malformed_or_misplaced_openai_file_part_is_refused_by_path() {
    let cases = [
        (
            openai_body(json!([{"type": "file", "file": {"filename": "a.pdf"}}])),
            "messages[0].content[0].file",
            "'file_data' or 'file_id'",
        ),
        (
            openai_body(json!([{"type": "file", "file": {
                "file_data": format!("data:application/pdf;base64,{PDF_DATA}"),
                "file_id": "file-1"}}])),
            "messages[0].content[0].file",
            "not both",
        ),
        (
            openai_body(json!([{"type": "file", "file": {"file_data": PDF_DATA}}])),
            "messages[0].content[0].file.file_data",
            "data URI",
        ),
        (
            openai_body(json!([{"type": "file"}])),
            "messages[0].content[0].file",
            "missing",
        ),
        (
            json!({"model": "m", "messages": [{"role": "system", "content": [
                {"type": "file", "file": {"file_id": "file-1"}}]}]}),
            "messages[0].content[0].type",
            "user messages",
        ),
        (
            json!({"model": "m", "messages": [
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": [
                    {"type": "file", "file": {"file_id": "file-1"}}]}]}),
            "messages[1].content[0].type",
            "user messages",
        ),
        (
            openai_body(json!([{"type": "input_audio", "input_audio": {}}])),
            "messages[0].content[0].input_audio.data",
            "missing required field",
        ),
        (
            openai_body(json!([{"type": "video_url", "video_url": {}}])),
            "messages[0].content[0].type",
            "file",
        ),
    ];
    assert_refused_by_path(&OpenAiIngress, cases);
}

#[test]
fn anthropic_document_blocks_decode_with_their_title_context_and_markers() {
    let request = decode(
        &AnthropicIngress,
        &anthropic_body(json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
                "title": "Report", "context": "Q3 figures", "citations": {"enabled": true},
                "cache_control": {"type": "ephemeral"}},
            {"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."}},
            {"type": "text", "text": "Summarize."}])),
    )
    .unwrap();
    let message = &request.messages[0];
    let ContentPart::Document {
        source,
        title,
        context,
        extras,
    } = &message.content[0]
    else {
        panic!("{:?}", message.content[0]);
    };
    assert_eq!(
        source,
        &DocumentSource::Base64 {
            media_type: "application/pdf".into(),
            data: PDF_DATA.into()
        }
    );
    assert_eq!(title.as_deref(), Some("Report"));
    assert_eq!(context.as_deref(), Some("Q3 figures"));
    assert_eq!(
        extras.for_dialect(DialectId::Anthropic).unwrap()["citations"],
        json!({"enabled": true})
    );
    // The marker rides in the message's extras by block index, as an image's does.
    assert_eq!(
        message.extras.for_dialect(DialectId::Anthropic).unwrap()["cache_control"],
        json!({"0": {"type": "ephemeral"}})
    );
    assert_eq!(
        message.content[1],
        document(DocumentSource::Url("https://x.example/a.pdf".into()), None)
    );
    assert_eq!(
        message.content[2],
        document(
            DocumentSource::Text {
                media_type: "text/plain".into(),
                data: "Grass is green.".into()
            },
            None
        )
    );
    assert!(request.has_documents());
}

#[test]
fn an_anthropic_document_the_gateway_cannot_carry_is_refused_by_path() {
    let cases = [
        (
            anthropic_body(
                json!([{"type": "document", "source": {"type": "file", "file_id": "file_01"}}]),
            ),
            "messages[0].content[0]",
            "`file`",
        ),
        (
            anthropic_body(
                json!([{"type": "document", "source": {"type": "content", "content": [
                {"type": "text", "text": "a"},
                {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}]}}]),
            ),
            "messages[0].content[0].source.content[1].type",
            "only hold text blocks",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "document",
                    "source": {"type": "url", "url": "https://x.example/a.pdf"}}]}]}),
            "messages[1].content[0].type",
            "user messages",
        ),
        (
            anthropic_body(
                json!([{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "tool_use", "id": "u", "name": "f", "input": {}}]}]),
            ),
            "messages[0].content[0].content[0].type",
            "text, image, document and search_result",
        ),
    ];
    assert_refused_by_path(&AnthropicIngress, cases);
}

#[test]
fn openai_providers_get_file_parts() {
    let long = "JVBERi0xLjQK".repeat(20_000);
    let client = openai_body(json!([
        {"type": "text", "text": "Summarize."},
        {"type": "file", "file": {"filename": "report.pdf",
            "file_data": format!("data:application/pdf;base64,{long}")}},
        {"type": "file", "file": {"file_id": "file-abc123"}}]));
    let request = decode(&OpenAiIngress, &client).unwrap();
    for provider in [openai(), OpenAiProvider::azure()] {
        let body = build(&provider, &request).unwrap();
        assert_eq!(body["messages"], client["messages"]);
    }
    // From an Anthropic client: a PDF without a name gets one; a text document is a text part.
    let request = decode(
        &AnthropicIngress,
        &anthropic_body(json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
                "citations": {"enabled": true}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."},
                "title": "Facts"},
            {"type": "text", "text": "Summarize."}])),
    )
    .unwrap();
    let body = build(&openai(), &request).unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "file", "file": {"filename": "document.pdf",
                "file_data": format!("data:application/pdf;base64,{PDF_DATA}")}},
            {"type": "text", "text": "Grass is green."},
            {"type": "text", "text": "Summarize."}])
    );
}

#[test]
fn anthropic_gets_document_blocks() {
    let client = anthropic_body(json!([
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
            "title": "Report", "context": "Q3 figures", "citations": {"enabled": true},
            "cache_control": {"type": "ephemeral"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."}},
        {"type": "text", "text": "Summarize."}]));
    let request = decode(&AnthropicIngress, &client).unwrap();
    let body = build(&AnthropicProvider, &request).unwrap();
    assert_eq!(body["messages"], client["messages"]);

    // From an OpenAI client: a PDF's name is its title; an inline text file is decoded into a
    // text source, the only form the Messages API has for plain text.
    let request = decode(
        &OpenAiIngress,
        &openai_body(json!([
            {"type": "file", "file": {"filename": "report.pdf",
                "file_data": format!("data:application/pdf;base64,{PDF_DATA}")}},
            // "Grass is green." in base64.
            {"type": "file", "file": {"file_data": "data:text/plain;base64,R3Jhc3MgaXMgZ3JlZW4u"}}])),
    )
    .unwrap();
    let body = build(&AnthropicProvider, &request).unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
                "title": "report.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."}}])
    );
}

#[test]
fn gemini_gets_inline_data_file_data_and_text() {
    let request = decode(
        &AnthropicIngress,
        &anthropic_body(json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA}},
            {"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."}},
            {"type": "text", "text": "Summarize."}])),
    )
    .unwrap();
    let body = build(&GeminiProvider, &request).unwrap();
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "application/pdf", "data": PDF_DATA}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.example/a.pdf"}},
            {"text": "Grass is green."},
            {"text": "Summarize."}])
    );
}

#[test]
fn a_document_a_provider_cannot_take_is_refused_naming_the_part() {
    let file_id = || document(DocumentSource::FileId("file-abc123".into()), None);
    let url = || document(DocumentSource::Url("https://x.example/a.pdf".into()), None);
    let word_file = || {
        document(
            DocumentSource::Base64 {
                media_type: "application/msword".into(),
                data: PDF_DATA.into(),
            },
            None,
        )
    };
    let not_base64_text = || {
        document(
            DocumentSource::Base64 {
                media_type: "text/plain".into(),
                data: "%%%".into(),
            },
            None,
        )
    };
    let openai = openai();
    let cases: [(&dyn ProviderDialect, ContentPart, &str); 7] = [
        (&openai, url(), "by URL"),
        (&openai, word_file(), "application/msword"),
        (&AnthropicProvider, file_id(), "file id"),
        (&AnthropicProvider, word_file(), "application/msword"),
        (&AnthropicProvider, not_base64_text(), "base64"),
        (&GeminiProvider, file_id(), "file id"),
        (&GeminiProvider, file_id(), "OpenAI"),
    ];
    for (provider, part, words) in cases {
        let error = build(provider, &request_with(part)).expect_err(words);
        assert_eq!(
            error.param.as_deref(),
            Some("messages[0].content[1]"),
            "{error:?}"
        );
        assert!(error.message.contains(words), "{}", error.message);
    }
    // A document is for the model to read: outside a user message no provider takes it.
    let providers: [&dyn ProviderDialect; 3] = [&openai, &AnthropicProvider, &GeminiProvider];
    for provider in providers {
        for role in [Role::System, Role::Assistant] {
            let error = build(provider, &request_with_role(role, pdf(None))).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("messages[0].content[1]"));
            assert!(error.message.contains("user messages"), "{}", error.message);
        }
    }
}

#[test]
fn every_provider_declares_documents() {
    let providers: [&dyn ProviderDialect; 4] = [
        &openai(),
        &OpenAiProvider::azure(),
        &AnthropicProvider,
        &GeminiProvider,
    ];
    for provider in providers {
        assert!(provider.capabilities().documents);
    }
}

/// An agent's tool that fetched a PDF: the result's document reaches each provider where its
/// API takes one (Anthropic in the tool result, OpenAI in a user message after the `tool`
/// message, Gemini in the function response's parts), and a form a provider has no place for
/// there is refused naming the part.
#[test]
fn a_tool_results_document_reaches_every_provider() {
    let body = |source: Value| {
        json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "fetch_report", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "the report"},
                {"type": "document", "source": source, "title": "report.pdf"}]}]}]})
    };
    let inline = json!({"type": "base64", "media_type": "application/pdf", "data": PDF_DATA});
    let request = decode(&AnthropicIngress, &body(inline.clone())).unwrap();
    let ContentPart::ToolResult { content, .. } = &request.messages[1].content[0] else {
        panic!("a tool result: {:?}", request.messages[1]);
    };
    assert!(
        matches!(&content[1], ContentPart::Document { .. }),
        "{content:?}"
    );
    assert!(request.has_documents());

    let sent = build(&AnthropicProvider, &request).unwrap();
    assert_eq!(
        sent["messages"][1]["content"][0]["content"][1],
        json!({"type": "document", "source": inline, "title": "report.pdf"})
    );
    let sent = build(&openai(), &request).unwrap();
    assert_eq!(sent["messages"][1]["role"], "tool");
    assert_eq!(sent["messages"][1]["content"], "the report");
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "file", "file": {"filename": "report.pdf",
            "file_data": format!("data:application/pdf;base64,{PDF_DATA}")}}]})
    );
    let sent = build(&GeminiProvider, &request).unwrap();
    let response = &sent["contents"][1]["parts"][0]["functionResponse"];
    assert_eq!(response["response"], json!({"result": "the report"}));
    assert_eq!(
        response["parts"],
        json!([{"inlineData": {"mimeType": "application/pdf", "data": PDF_DATA}}])
    );

    // A URL: Anthropic fetches it; OpenAI's file part and Gemini's function response have no
    // place for one.
    let by_url = decode(
        &AnthropicIngress,
        &body(json!({"type": "url", "url": "https://x.example/report.pdf"})),
    )
    .unwrap();
    let sent = build(&AnthropicProvider, &by_url).unwrap();
    assert_eq!(
        sent["messages"][1]["content"][0]["content"][1]["source"]["url"],
        "https://x.example/report.pdf"
    );
    for provider in [&openai() as &dyn ProviderDialect, &GeminiProvider] {
        let error = build(provider, &by_url).expect_err("a URL in a tool result");
        assert_eq!(
            error.param.as_deref(),
            Some("messages[1].content[0].content[1]"),
            "{error:?}"
        );
    }
}
