use serde_json::json;

use crate::model::{
    Conversation, Finish, IdGen, Output, fragments, respond, synthesize, word_pieces,
};

#[test]
fn word_pieces_keep_leading_space() {
    let text = "one  two three";
    let pieces: Vec<&str> = word_pieces(text)
        .iter()
        .map(|p| &text[p.start..p.end])
        .collect();
    assert_eq!(pieces, ["one", "  two", " three"]);
    assert!(word_pieces("").is_empty());
    assert!(word_pieces("   ").is_empty());
}

#[test]
fn fragments_cover_the_text_on_char_boundaries() {
    let text = "{\"città\":\"ünïcödé sample\",\"n\":1}";
    let pieces = fragments(text);
    let joined: String = pieces.iter().map(|p| &text[p.start..p.end]).collect();
    assert_eq!(joined, text);
    assert!(pieces.len() > 2);
    assert_eq!(pieces[0].tokens, 3);
    assert!(fragments("").is_empty());
}

#[test]
fn schemas_become_sample_values() {
    let schema = json!({
        "type": "object",
        "properties": {
            "s": { "type": "string" },
            "i": { "type": "integer" },
            "b": { "type": ["boolean", "null"] },
            "e": { "enum": [3, 4] },
            "c": { "const": "fixed" },
            "o": { "anyOf": [{ "type": "null" }, { "type": "number" }] },
            "r": { "$ref": "#/definitions/thing" },
            "a": { "type": "array", "items": { "type": "object", "properties": { "x": { "type": "string" } }, "required": ["x"] } },
            "optional": { "type": "string" }
        },
        "required": ["s", "i", "b", "e", "c", "o", "r", "a", "missing"],
        "definitions": { "thing": { "type": "STRING", "enum": ["first", "second"] } }
    });
    assert_eq!(
        synthesize(&schema, false),
        json!({
            "s": "sample", "i": 1, "b": true, "e": 3, "c": "fixed", "o": 1, "r": "first",
            "a": [{ "x": "sample" }], "missing": "sample"
        })
    );
    assert_eq!(synthesize(&schema, true)["optional"], "sample");
    // Self-reference stops at the depth limit instead of recursing forever.
    let recursive = json!({ "$ref": "#" });
    assert_eq!(synthesize(&recursive, true), json!(null));
}

fn conversation(text: &str) -> Conversation {
    Conversation {
        model: "m".into(),
        last_user_text: text.into(),
        ..Conversation::default()
    }
}

#[test]
fn reply_length_stop_and_limit() {
    let out = respond(&conversation("a b c d e f g h"), 8, None, 0);
    let Output::Text { text, finish, .. } = &out else {
        panic!("text expected")
    };
    assert_eq!(text, "Simulated reply from m to: a b c");
    assert_eq!(*finish, Finish::Stop);
    assert_eq!(out.tokens(), 8);

    let mut conv = conversation("hello");
    conv.stop = vec!["m to".into(), "reply".into()];
    let Output::Text { text, finish, .. } = respond(&conv, 12, None, 0) else {
        panic!("text expected")
    };
    assert_eq!(text, "Simulated");
    assert_eq!(finish, Finish::StopSequence("reply".into()));

    let mut conv = conversation("hello");
    conv.max_output_tokens = Some(0);
    let out = respond(&conv, 12, None, 0);
    assert_eq!(out.tokens(), 0);
    let Output::Text { text, finish, .. } = out else {
        panic!("text expected")
    };
    assert_eq!((text.as_str(), finish), ("", Finish::Length));
}

#[test]
fn embeddings_are_unit_length_and_stable() {
    let a = crate::model::embedding("text", 32);
    let b = crate::model::embedding("text", 32);
    let c = crate::model::embedding("other", 32);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[test]
fn texts_with_the_same_words_embed_alike_and_sharing_most_lie_close() {
    let cosine = |x: &str, y: &str| -> f32 {
        let (a, b) = (
            crate::model::embedding(x, 256),
            crate::model::embedding(y, 256),
        );
        a.iter().zip(&b).map(|(p, q)| p * q).sum()
    };
    let same = cosine(
        "What is the capital of France?",
        "what is the capital of FRANCE",
    );
    assert!(same > 0.9999, "{same}");
    let close = cosine(
        "What is the capital of France?",
        "What is the capital city of France?",
    );
    assert!(close > 0.85 && close < 0.99, "{close}");
    let far = cosine(
        "What is the capital of France?",
        "How do I reset my router password?",
    );
    assert!(far < 0.5, "{far}");
    // No words: the whole text decides.
    assert_ne!(
        crate::model::embedding("?!", 8),
        crate::model::embedding("!?", 8)
    );
}

#[test]
fn ids_are_unique_and_shaped() {
    let ids = IdGen::default();
    let a = ids.make("toolu_01", 22);
    let b = ids.make("toolu_01", 22);
    assert_ne!(a, b);
    assert_eq!(a.len(), 30);
    assert!(a[8..].chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn scripted_replies_replace_the_text_for_matching_requests() {
    use crate::ReplyRule;
    use crate::model::scripted_reply;
    let rules = vec![
        ReplyRule::new("judge-*", "SCORE: 0.75"),
        ReplyRule::new("m", "forty-two").when_prompt_contains("answer"),
        ReplyRule::new("m", "echo: {prompt}"),
    ];
    let conv = conversation("the answer please");
    assert_eq!(scripted_reply(&rules, &conv).as_deref(), Some("forty-two"));
    let conv = conversation("say hi");
    let text = scripted_reply(&rules, &conv);
    assert_eq!(text.as_deref(), Some("echo: say hi"));
    // Not padded with filler, still cut by the output limit.
    let Output::Text { text: out, .. } = respond(&conv, 12, text.as_deref(), 0) else {
        panic!("text expected")
    };
    assert_eq!(out, "echo: say hi");
    let mut limited = conversation("say hi");
    limited.max_output_tokens = Some(2);
    let Output::Text {
        text: out, finish, ..
    } = respond(&limited, 12, text.as_deref(), 0)
    else {
        panic!("text expected")
    };
    assert_eq!((out.as_str(), finish), ("echo: say", Finish::Length));
    let mut other = conversation("x");
    other.model = "unrelated".into();
    assert_eq!(scripted_reply(&rules, &other), None);
}

/// `{documents}` lists what each wire format's document forms carried: inline data by media
/// type and decoded size, a URL as itself, an OpenAI file id by id; data that is not base64 is
/// refused as the providers refuse it.
#[test]
fn documents_are_read_from_every_wire_format() {
    use crate::ReplyRule;
    use crate::model::scripted_reply;
    // "%PDF-1.4\n": nine bytes.
    let pdf = "JVBERi0xLjQK";
    let rules = vec![ReplyRule::new("*", "{documents}")];
    let echoed = |conv: Conversation| scripted_reply(&rules, &conv).unwrap();

    let openai = |file: serde_json::Value| {
        crate::openai::parse_chat(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Summarize."}, {"type": "file", "file": file}]}]}),
            None,
        )
    };
    let conv = openai(
        json!({"filename": "a.pdf", "file_data": format!("data:application/pdf;base64,{pdf}")}),
    );
    assert_eq!(echoed(conv.unwrap()), "application/pdf:9");
    assert_eq!(
        echoed(openai(json!({"file_id": "file-1"})).unwrap()),
        "file_id:file-1"
    );
    assert_eq!(openai(json!({"file_data": pdf})).unwrap_err().status, 400);

    let anthropic = |source: serde_json::Value| {
        crate::anthropic::parse_chat(
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [
                {"type": "document", "source": source}, {"type": "text", "text": "Summarize."}]}]}),
            false,
        )
    };
    let conv = anthropic(json!({"type": "base64", "media_type": "application/pdf", "data": pdf}));
    assert_eq!(echoed(conv.unwrap()), "application/pdf:9");
    let conv = anthropic(json!({"type": "text", "media_type": "text/plain", "data": "Grass."}));
    assert_eq!(echoed(conv.unwrap()), "text/plain:6");
    let conv = anthropic(json!({"type": "url", "url": "https://x.example/a.pdf"}));
    assert_eq!(echoed(conv.unwrap()), "https://x.example/a.pdf");
    let bad = anthropic(json!({"type": "base64", "media_type": "application/pdf", "data": "%%"}));
    assert_eq!(bad.unwrap_err().status, 400);

    let gemini = |part: serde_json::Value| {
        crate::gemini::parse_chat(
            json!({"contents": [{"role": "user", "parts": [part, {"text": "Summarize."}]}]}),
            "m",
            false,
        )
    };
    let conv = gemini(json!({"inlineData": {"mimeType": "application/pdf", "data": pdf}}));
    assert_eq!(echoed(conv.unwrap()), "application/pdf:9");
    let conv = gemini(
        json!({"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.example/a.pdf"}}),
    );
    assert_eq!(echoed(conv.unwrap()), "https://x.example/a.pdf");
    // An image is an image, not a document.
    let conv = gemini(json!({"inlineData": {"mimeType": "image/png", "data": pdf}})).unwrap();
    assert_eq!(echoed(conv), "");
    let bad = gemini(json!({"inlineData": {"mimeType": "application/pdf", "data": "%%"}}));
    assert_eq!(bad.unwrap_err().status, 400);
}
