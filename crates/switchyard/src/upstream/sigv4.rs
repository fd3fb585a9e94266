//! AWS Signature Version 4 for Bedrock requests signed with AWS credentials (rather than sent
//! with a Bedrock API key). Written out here: it is a few HMACs over a canonical form of the
//! request, and the gateway already carries HMAC and SHA-256; the AWS SDK's signer would bring
//! its runtime types along. Tests hold it to signatures made by AWS's own Python SDK.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// The service Bedrock's runtime signs as.
const SERVICE: &str = "bedrock";

/// Credentials and region for signing one provider's requests.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// For temporary credentials (STS, an assumed role).
    pub session_token: Option<Secret>,
}

/// Signs `request` (whose body is `body`) at `now` (`YYYYMMDDTHHMMSSZ`): adds `x-amz-date`,
/// `x-amz-security-token` when there is a session token, and `authorization`. Signs the
/// content type, host, date and token.
pub fn sign<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    credentials: &AwsCredentials,
    now: &str,
) -> Result<(), String> {
    // As the client writes the `host` header: the port only when it is not the scheme's.
    let uri = request.uri();
    let name = uri.host().ok_or("the provider URL has no host")?;
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let host = match uri.port_u16() {
        Some(port) if port != default_port => format!("{name}:{port}"),
        _ => name.to_owned(),
    };
    let date = now.get(..8).ok_or("a signing time without a date")?;
    let mut headers: Vec<(&str, String)> = vec![("host", host), ("x-amz-date", now.to_owned())];
    if let Some(content_type) = request.headers().get(http::header::CONTENT_TYPE) {
        let value = content_type
            .to_str()
            .map_err(|_| "a content type that is not text")?;
        headers.push(("content-type", value.trim().to_owned()));
    }
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.expose().to_owned()));
    }
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload}",
        method = request.method().as_str(),
        path = canonical_path(request.uri().path()),
        query = canonical_query(request.uri().query().unwrap_or("")),
        payload = hex::encode(Sha256::digest(body)),
    );
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", credentials.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{now}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = format!("AWS4{}", credentials.secret_access_key.expose());
    let mut key = hmac(secret.as_bytes(), date.as_bytes());
    for part in [credentials.region.as_str(), SERVICE, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    let header = |value: &str| {
        http::HeaderValue::from_str(value).map_err(|_| "a credential that is not a header value")
    };
    let target = request.headers_mut();
    target.insert("x-amz-date", header(now)?);
    if let Some(token) = &credentials.session_token {
        let mut value = header(token.expose())?;
        value.set_sensitive(true);
        target.insert("x-amz-security-token", value);
    }
    let mut value = header(&authorization)?;
    value.set_sensitive(true);
    target.insert(http::header::AUTHORIZATION, value);
    Ok(())
}

/// The signing time of `at`: `YYYYMMDDTHHMMSSZ`, UTC.
pub fn amz_date(at: std::time::SystemTime) -> String {
    // `2026-12-04T11:02:11Z` without its separators.
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Services other than S3 sign the path encoded once more: each byte outside the unreserved
/// set, `%` included, is percent-encoded (a model id's `%3A` becomes `%253A`).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for b in path.bytes() {
        if b == b'/' || unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query's parameters sorted, each name and value encoded (they arrive encoded once).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (encode_component(name), encode_component(value))
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes what is not unreserved, leaving existing escapes as they are.
fn encode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if unreserved(b) {
            out.push(b as char);
        } else if b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            out.push_str(&text[i..i + 3].to_ascii_uppercase());
            i += 2;
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(region: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            region: region.into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: token.map(|t| Secret::new(t.into())),
        }
    }

    fn request(url: &str) -> http::Request<()> {
        http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/json")
            .body(())
            .unwrap()
    }

    /// Signatures made by AWS's Python SDK (botocore's `SigV4Auth`) for the same requests.
    #[test]
    fn signatures_match_the_aws_sdks() {
        let mut r = request(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
        );
        let body = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;
        sign(
            &mut r,
            body,
            &credentials("us-east-1", Some("session-token-example")),
            "20261204T110211Z",
        )
        .unwrap();
        assert_eq!(
            r.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=56104ed3c716ff090503447bb8ae92c275483140c9999b4c5d6f1b5294df4de5"
        );
        assert_eq!(r.headers()["x-amz-date"], "20261204T110211Z");
        assert_eq!(r.headers()["x-amz-security-token"], "session-token-example");

        // A host with a port, no session token.
        let mut r = request("http://127.0.0.1:8080/model/amazon.nova-lite-v1%3A0/converse-stream");
        sign(
            &mut r,
            br#"{"messages":[]}"#,
            &credentials("eu-west-3", None),
            "20261204T110218Z",
        )
        .unwrap();
        assert_eq!(
            r.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/eu-west-3/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=64669d42201785489f009baac9ddcc41c4bc92062be6017320dbc72703f56cd5"
        );
        assert!(r.headers().get("x-amz-security-token").is_none());

        // A URL naming the scheme's own port signs as the client sends it: without the port.
        let mut explicit = request(
            "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
        );
        sign(
            &mut explicit,
            br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#,
            &credentials("us-east-1", Some("session-token-example")),
            "20261204T110211Z",
        )
        .unwrap();
        assert!(
            explicit.headers()["authorization"]
                .to_str()
                .unwrap()
                .ends_with(
                    "Signature=56104ed3c716ff090503447bb8ae92c275483140c9999b4c5d6f1b5294df4de5"
                )
        );
    }

    #[test]
    fn paths_and_queries_take_their_canonical_form() {
        assert_eq!(
            canonical_path("/model/arn%3Aaws%3Abedrock%2Fx/converse"),
            "/model/arn%253Aaws%253Abedrock%252Fx/converse"
        );
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_query("b=2&a=x%2fy&c"), "a=x%2Fy&b=2&c=");
        assert_eq!(
            amz_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_847_331)),
            "20251204T112211Z"
        );
    }
}
