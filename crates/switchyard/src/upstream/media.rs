//! Images and documents a client gives by URL, fetched by the gateway for a provider that takes
//! them only inline: Bedrock's Converse takes neither by URL, OpenAI's Chat Completions no
//! document. Without this an OpenAI client's `image_url` to a Bedrock deployment is a 400,
//! although the same request works against OpenAI, Anthropic and Gemini, which fetch URLs
//! themselves.
//!
//! Fetching for a client makes the gateway reach wherever the client points it, so by default
//! only public addresses are fetched: a name that resolves to a loopback, private, link-local
//! (a cloud's metadata service) or otherwise non-public address is refused, on every
//! redirect too (`server.fetch_media.private_networks` allows them). Through an HTTP proxy
//! the proxy resolves names, and only literal addresses are checked here.
//!
//! Each URL is fetched once per request, however many attempts need it, and what the fetch
//! found (or why it failed) is kept for the request's other attempts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use parking_lot::Mutex;
use switchyard_protocol::canonical::{
    ChatRequest, ContentPart, DocumentSource, ErrorClass, ImageSource, Text, UpstreamErrorInfo,
};
use switchyard_protocol::dialect::Capabilities;

use crate::config::FetchMedia;

/// The client that fetches media for providers, built once.
pub struct MediaFetcher {
    http: reqwest::Client,
    max_bytes: usize,
    private_networks: bool,
}

/// What one request's attempts fetched so far, by URL.
#[derive(Default)]
pub struct Fetched(Mutex<HashMap<String, Arc<Result<Media, String>>>>);

#[derive(Debug, Clone, PartialEq)]
struct Media {
    media_type: String,
    bytes: Vec<u8>,
}

/// Which kind of part a URL came from: each has its own media types.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Image,
    Document,
}

impl MediaFetcher {
    pub fn new(settings: &FetchMedia) -> Result<Self, reqwest::Error> {
        let private = settings.private_networks;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                attempt.error("a redirect to a URL that is not http(s)")
            } else if !private && attempt.url().host_str().is_some_and(|h| !public_host(h)) {
                attempt.error("a redirect to a private address")
            } else {
                attempt.follow()
            }
        });
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(redirects);
        if !private {
            http = http.dns_resolver(PublicOnly);
        }
        Ok(Self {
            http: http.build()?,
            max_bytes: settings.max_bytes,
            private_networks: private,
        })
    }

    /// The request with the images and documents that `caps` says the provider cannot take by
    /// URL replaced by their fetched bytes; `None` when it has none to fetch.
    pub async fn inline(
        &self,
        request: &ChatRequest,
        caps: Capabilities,
        fetched: &Fetched,
    ) -> Result<Option<Box<ChatRequest>>, UpstreamErrorInfo> {
        let wanted = wanted(request, caps);
        if wanted.is_empty() {
            return Ok(None);
        }
        let missing: Vec<(&str, Kind)> = {
            let known = fetched.0.lock();
            let mut missing: Vec<(&str, Kind)> = Vec::new();
            for (_, kind, url) in &wanted {
                if !known.contains_key(*url) && !missing.iter().any(|(u, _)| u == url) {
                    missing.push((url, *kind));
                }
            }
            missing
        };
        let results = futures::future::join_all(
            missing
                .iter()
                .map(|(url, kind)| async move { (*url, self.fetch(url, *kind).await) }),
        )
        .await;
        let known = {
            let mut known = fetched.0.lock();
            for (url, result) in results {
                known.insert(url.to_owned(), Arc::new(result));
            }
            wanted
                .iter()
                .map(|(_, _, url)| (*url, known[*url].clone()))
                .collect::<HashMap<_, _>>()
        };
        for (path, kind, url) in &wanted {
            if let Err(why) = &*known[url] {
                let what = match kind {
                    Kind::Image => "image",
                    Kind::Document => "document",
                };
                return Err(UpstreamErrorInfo {
                    class: ErrorClass::InvalidRequest,
                    status: None,
                    message: format!(
                        "this provider takes no {what} by URL, and the gateway could not fetch \
                         {url} for it: {why} (at '{path}')"
                    ),
                    provider_code: None,
                    retry_after_secs: None,
                    param: Some(path.clone()),
                });
            }
        }
        // Boxed: it lives across the attempt's awaits, and would otherwise widen every
        // attempt's future, fetching or not.
        let mut inlined = Box::new(request.clone());
        replace_sources(
            &mut inlined,
            caps,
            &|url| match known.get(url).map(|r| &**r) {
                Some(Ok(media)) => Some(media.clone()),
                _ => None,
            },
        );
        Ok(Some(inlined))
    }

    async fn fetch(&self, url: &str, kind: Kind) -> Result<Media, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        // A literal address is never resolved, so the resolver cannot refuse it.
        if !self.private_networks && parsed.host_str().is_some_and(|h| !public_host(h)) {
            return Err(
                "its host is a private address, which this gateway does not fetch \
                        (server.fetch_media.private_networks)"
                    .into(),
            );
        }
        let mut response = self.http.get(parsed).send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("it answered HTTP {}", status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(format!("it is larger than {} bytes", self.max_bytes));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type_essence);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(format!("it is larger than {} bytes", self.max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        let media_type = media_type_of(kind, declared.as_deref(), &bytes)?;
        Ok(Media { media_type, bytes })
    }
}

fn describe(e: reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_timeout() {
        "it timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_redirect() {
        "a redirect was refused".to_owned()
    } else {
        "the fetch failed".to_owned()
    };
    // The innermost cause says why (a private address, a refused connection).
    let mut source = e.source();
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(last) = last {
        text.push_str(&format!(" ({last})"));
    }
    text
}

/// `text/plain; charset=utf-8` → `text/plain`.
fn media_type_essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or(value)
        .trim()
        .to_ascii_lowercase()
}

/// The media type a fetched part is sent with: an image's from its first bytes (a server's
/// `Content-Type` is often generic, and the provider checks the bytes against the type it is
/// told); a document's as the server declared it, or a PDF's when the bytes say so.
fn media_type_of(kind: Kind, declared: Option<&str>, bytes: &[u8]) -> Result<String, String> {
    let sniffed = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    };
    match kind {
        Kind::Image => match (sniffed, declared) {
            (Some(t), _) if t.starts_with("image/") => Ok(t.to_owned()),
            (_, Some(t)) if t.starts_with("image/") => Ok(t.to_owned()),
            (_, t) => Err(format!(
                "it is not an image ({})",
                t.unwrap_or("no Content-Type")
            )),
        },
        Kind::Document => match (sniffed, declared) {
            (Some("application/pdf"), _) => Ok("application/pdf".to_owned()),
            (_, Some(t)) if t != "application/octet-stream" && !t.is_empty() => Ok(t.to_owned()),
            _ => Err("its type is unknown (no Content-Type, and not a PDF)".to_owned()),
        },
    }
}

fn is_http(url: &str) -> bool {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// The parts with an `http(s)` URL the provider cannot take, with their place and kind.
fn wanted(request: &ChatRequest, caps: Capabilities) -> Vec<(String, Kind, &str)> {
    let mut wanted = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        for (j, part) in m.content.iter().enumerate() {
            let inner = match part {
                ContentPart::ToolResult { content, .. } => &content[..],
                _ => &[],
            };
            let all = std::iter::once((format!("messages[{i}].content[{j}]"), part)).chain(
                inner
                    .iter()
                    .enumerate()
                    .map(move |(k, p)| (format!("messages[{i}].content[{j}].content[{k}]"), p)),
            );
            for (nested, (path, p)) in all.enumerate() {
                let caps = if nested > 0 {
                    in_tool_results(caps)
                } else {
                    caps
                };
                match p {
                    ContentPart::Image {
                        source: ImageSource::Url(url),
                        ..
                    } if !caps.image_urls && is_http(url) => {
                        wanted.push((path, Kind::Image, url.as_str()));
                    }
                    ContentPart::Document {
                        source: DocumentSource::Url(url),
                        ..
                    } if !caps.document_urls && is_http(url) => {
                        wanted.push((path, Kind::Document, url.as_str()));
                    }
                    _ => {}
                }
            }
        }
    }
    wanted
}

/// What a provider takes by URL inside a tool's result.
fn in_tool_results(caps: Capabilities) -> Capabilities {
    Capabilities {
        image_urls: caps.image_urls && caps.tool_result_urls,
        document_urls: caps.document_urls && caps.tool_result_urls,
        ..caps
    }
}

/// Puts each fetched URL's bytes where its part had the URL.
fn replace_sources(
    request: &mut ChatRequest,
    caps: Capabilities,
    media_of: &dyn Fn(&str) -> Option<Media>,
) {
    let base64 = |bytes: &[u8]| Text::from(base64::engine::general_purpose::STANDARD.encode(bytes));
    let replace = |part: &mut ContentPart, caps: Capabilities| match part {
        ContentPart::Image { source, .. } => {
            if let ImageSource::Url(url) = source
                && !caps.image_urls
                && let Some(media) = media_of(url)
            {
                *source = ImageSource::Base64 {
                    data: base64(&media.bytes),
                    media_type: media.media_type,
                };
            }
        }
        ContentPart::Document { source, .. } => {
            if let DocumentSource::Url(url) = source
                && !caps.document_urls
                && let Some(media) = media_of(url)
            {
                // A text document goes as text, which every provider takes (OpenAI's as a
                // text part); any other as its bytes.
                *source = match String::from_utf8(media.bytes) {
                    Ok(text) if media.media_type.starts_with("text/") => DocumentSource::Text {
                        media_type: media.media_type,
                        data: Text::from(text),
                    },
                    Ok(text) => DocumentSource::Base64 {
                        data: base64(text.as_bytes()),
                        media_type: media.media_type,
                    },
                    Err(e) => DocumentSource::Base64 {
                        data: base64(e.as_bytes()),
                        media_type: media.media_type,
                    },
                };
            }
        }
        _ => {}
    };
    let nested = in_tool_results(caps);
    for m in &mut request.messages {
        for part in &mut m.content {
            if let ContentPart::ToolResult { content, .. } = part {
                content.iter_mut().for_each(|p| replace(p, nested));
            } else {
                replace(part, caps);
            }
        }
    }
}

/// Whether a URL's host (as the URL writes it, an IPv6 address in brackets) may be fetched
/// without `private_networks`: a name (checked once resolved), or a literal public address.
fn public_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => public_ip(ip),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    }
}

/// Whether an address is on the public internet: not loopback, private, shared (carrier
/// NAT), link-local, unspecified, multicast, broadcast or reserved for documentation.
fn public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)) // NAT64 of any address
        }
    }
}

fn public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0) // IETF protocol assignments
        || a >= 240) // reserved
}

/// Resolves names as the system does and keeps only public addresses: a name that resolves
/// only to private ones is refused before any connection is made.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| public_ip(a.ip())).collect();
            if public.is_empty() && !all.is_empty() {
                return Err(format!(
                    "{host} resolves to a private address, which this gateway does not fetch \
                     (server.fetch_media.private_networks)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!public_ip(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "151.101.1.140",
            "2606:4700::6810:84e5",
            "100.128.0.1",
        ] {
            assert!(public_ip(public.parse().unwrap()), "{public}");
        }
        assert!(!public_host("localhost"));
        assert!(!public_host("api.localhost."));
        assert!(!public_host("[::1]"));
        assert!(!public_host("127.0.0.1"));
        assert!(public_host("images.example.com"));
        assert!(public_host("[2606:4700::6810:84e5]"));
    }

    #[test]
    fn an_image_is_typed_by_its_bytes_and_a_document_by_its_server() {
        let png = b"\x89PNG\r\n\x1a\n....";
        assert_eq!(
            media_type_of(Kind::Image, Some("application/octet-stream"), png).unwrap(),
            "image/png"
        );
        assert_eq!(
            media_type_of(Kind::Image, Some("image/jpeg"), png).unwrap(),
            "image/png"
        );
        assert_eq!(
            media_type_of(Kind::Image, Some("image/avif"), b"....ftypavif").unwrap(),
            "image/avif"
        );
        assert!(
            media_type_of(Kind::Image, Some("text/html"), b"<html>")
                .unwrap_err()
                .contains("text/html")
        );
        assert_eq!(
            media_type_of(Kind::Document, None, b"%PDF-1.7").unwrap(),
            "application/pdf"
        );
        assert_eq!(
            media_type_of(Kind::Document, Some("text/csv"), b"a,b").unwrap(),
            "text/csv"
        );
        assert!(media_type_of(Kind::Document, Some("application/octet-stream"), b"??").is_err());
    }
}
