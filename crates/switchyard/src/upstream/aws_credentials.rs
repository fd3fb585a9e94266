//! AWS credentials for the Bedrock providers that sign their requests: given in the
//! configuration, read from a profile of AWS's shared files, or found where AWS's own tools find
//! them (the default chain). Temporary credentials are fetched again before they expire, off the
//! request path; a request signs with whatever is current.
//!
//! The chain, in order: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`); the profile named by `AWS_PROFILE` (else `default`) in the shared
//! credentials and config files (static keys only); a web identity token
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, as EKS's IAM roles for service accounts
//! set them) exchanged with STS; the container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//! on ECS, `AWS_CONTAINER_CREDENTIALS_FULL_URI` with an authorization token on EKS Pod
//! Identity); and the EC2 instance metadata service (IMDSv2).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use super::sigv4::AwsCredentials;
use crate::config::Secret;

/// The container endpoint's address for a relative URI (ECS).
const CONTAINER_HOST: &str = "http://169.254.170.2";
/// The instance metadata service's address.
const IMDS_HOST: &str = "http://169.254.169.254";
/// Temporary credentials are fetched again this long before they expire (EC2 makes new ones
/// available five minutes before).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// After a failed fetch, the next try.
const RETRY_AFTER: Duration = Duration::from_secs(15);

/// Where a provider's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsSource {
    /// In the configuration.
    Given,
    /// A named profile of the shared credentials and config files.
    Profile(String),
    /// The default chain.
    Chain,
}

/// A Bedrock provider's credentials, swapped whole when they are renewed.
pub struct AwsAuth {
    pub region: String,
    pub source: AwsSource,
    current: ArcSwapOption<AwsCredentials>,
}

impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAuth")
            .field("region", &self.region)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AwsAuth {
    pub fn given(credentials: AwsCredentials) -> Self {
        Self {
            region: credentials.region.clone(),
            source: AwsSource::Given,
            current: ArcSwapOption::from_pointee(credentials),
        }
    }

    /// Credentials still to be found (`find`) before the first request.
    pub fn to_find(region: String, source: AwsSource) -> Self {
        Self {
            region,
            source,
            current: ArcSwapOption::empty(),
        }
    }

    /// The credentials to sign with now.
    pub fn current(&self) -> Option<Arc<AwsCredentials>> {
        self.current.load_full()
    }
}

/// What the environment says, read once (tests give their own).
#[derive(Debug, Clone, Default)]
pub struct AwsEnv {
    vars: HashMap<String, String>,
}

impl AwsEnv {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_") || k == "HOME")
                .collect(),
        }
    }

    #[cfg(test)]
    fn of(pairs: &[(&str, &str)]) -> Self {
        Self {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn shared_file(&self, var: &str, name: &str) -> Option<PathBuf> {
        match self.get(var) {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(self.get("HOME")?).join(".aws").join(name)),
        }
    }
}

/// Credentials as one source gave them.
#[derive(Debug)]
pub struct Found {
    pub credentials: AwsCredentials,
    /// When temporary credentials stop working.
    pub expires: Option<SystemTime>,
    /// Which source, for the log.
    pub from: &'static str,
}

/// Finds `auth`'s credentials from its source; the error says what was tried.
pub async fn find(auth: &AwsAuth, env: &AwsEnv) -> Result<Found, String> {
    match &auth.source {
        AwsSource::Given => Err("credentials given in the configuration are not looked up".into()),
        AwsSource::Profile(name) => profile(env, name, &auth.region)?.ok_or_else(|| {
            format!("the AWS profile '{name}' has no access key in the shared files")
        }),
        AwsSource::Chain => chain(env, &auth.region).await,
    }
}

async fn chain(env: &AwsEnv, region: &str) -> Result<Found, String> {
    if let Some(found) = from_env(env, region) {
        return Ok(found);
    }
    let name = env.get("AWS_PROFILE").unwrap_or("default");
    if let Some(found) = profile(env, name, region)? {
        return Ok(found);
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    if let Some(found) = web_identity(&http, env, region).await? {
        return Ok(found);
    }
    if let Some(found) = container(&http, env, region).await? {
        return Ok(found);
    }
    match instance_metadata(&http, env, region).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(nothing_found("instance metadata is disabled")),
        Err(why) => Err(nothing_found(&why)),
    }
}

fn nothing_found(imds: &str) -> String {
    format!(
        "no AWS credentials found: not in the environment (AWS_ACCESS_KEY_ID), the shared files \
         (~/.aws/credentials), a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE) or a container \
         endpoint (AWS_CONTAINER_CREDENTIALS_*), and the instance metadata service: {imds}"
    )
}

fn credentials(region: &str, key: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        region: region.to_owned(),
        access_key_id: key.to_owned(),
        secret_access_key: Secret::new(secret.to_owned()),
        session_token: token
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.to_owned())),
    }
}

fn from_env(env: &AwsEnv, region: &str) -> Option<Found> {
    let key = env.get("AWS_ACCESS_KEY_ID")?;
    let secret = env.get("AWS_SECRET_ACCESS_KEY")?;
    Some(Found {
        credentials: credentials(region, key, secret, env.get("AWS_SESSION_TOKEN")),
        expires: None,
        from: "the environment",
    })
}

/// Static keys of profile `name`: the credentials file's `[name]` section, else the config
/// file's `[profile name]` (`[default]` for the default profile). A missing file is no error.
fn profile(env: &AwsEnv, name: &str, region: &str) -> Result<Option<Found>, String> {
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    let files = [
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "credentials",
            name.to_owned(),
        ),
        ("AWS_CONFIG_FILE", "config", config_section),
    ];
    for (var, file, section) in files {
        let Some(path) = env.shared_file(var, file) else {
            continue;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let values = ini_section(&text, &section);
        if let (Some(key), Some(secret)) = (
            values.get("aws_access_key_id"),
            values.get("aws_secret_access_key"),
        ) {
            return Ok(Some(Found {
                credentials: credentials(
                    region,
                    key,
                    secret,
                    values.get("aws_session_token").map(String::as_str),
                ),
                expires: None,
                from: "the shared files",
            }));
        }
    }
    Ok(None)
}

/// The `key = value` pairs of `[section]` in an INI text (keys lowercased, `#`/`;` comments).
fn ini_section(text: &str, section: &str) -> HashMap<String, String> {
    let mut inside = false;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    out
}

/// EKS's IAM roles for service accounts: the token file's token exchanged for the role's
/// credentials with STS's `AssumeRoleWithWebIdentity` (which needs no signature).
async fn web_identity(
    http: &reqwest::Client,
    env: &AwsEnv,
    region: &str,
) -> Result<Option<Found>, String> {
    let (Some(token_file), Some(role)) = (
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
        env.get("AWS_ROLE_ARN"),
    ) else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("cannot read the web identity token {token_file}: {e}"))?;
    let endpoint = env
        .get("AWS_ENDPOINT_URL_STS")
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let session = env
        .get("AWS_ROLE_SESSION_NAME")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("switchyard-{}", std::process::id()));
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role)
        .append_pair("RoleSessionName", &session)
        .append_pair("WebIdentityToken", token.trim())
        .finish();
    let reply = http
        .post(format!("{endpoint}/"))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form)
        .send()
        .await
        .map_err(|e| format!("STS AssumeRoleWithWebIdentity at {endpoint}: {e}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .map_err(|e| format!("STS AssumeRoleWithWebIdentity at {endpoint}: {e}"))?;
    if !status.is_success() {
        let why = xml_text(&text, "Message").unwrap_or_else(|| status.to_string());
        return Err(format!(
            "STS refused AssumeRoleWithWebIdentity for {role}: {why}"
        ));
    }
    let field = |name: &str| {
        xml_text(&text, name)
            .ok_or_else(|| format!("STS's AssumeRoleWithWebIdentity answer has no {name}"))
    };
    let expires = field("Expiration")?;
    Ok(Some(Found {
        credentials: credentials(
            region,
            &field("AccessKeyId")?,
            &field("SecretAccessKey")?,
            Some(&field("SessionToken")?),
        ),
        expires: Some(expiration(&expires)?),
        from: "a web identity token",
    }))
}

/// The text of the first `<name>` element (STS answers in XML; the few values read here are
/// keys, tokens and dates, with the five predefined entities at most).
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn expiration(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("an expiration that is not a date ({text}): {e}"))
}

/// The JSON document the container endpoint and the instance metadata service answer with.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemporaryCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
    /// IMDS: `Success` or what went wrong.
    code: Option<String>,
    message: Option<String>,
}

fn temporary(text: &str, region: &str, from: &'static str) -> Result<Found, String> {
    let doc: TemporaryCredentials =
        serde_json::from_str(text).map_err(|e| format!("{from} answered no credentials: {e}"))?;
    if let Some(code) = doc.code.as_deref().filter(|c| *c != "Success") {
        return Err(format!(
            "{from} answered {code}: {}",
            doc.message.unwrap_or_default()
        ));
    }
    Ok(Found {
        credentials: credentials(
            region,
            &doc.access_key_id,
            &doc.secret_access_key,
            doc.token.as_deref(),
        ),
        expires: doc.expiration.as_deref().map(expiration).transpose()?,
        from,
    })
}

/// ECS task roles (a relative URI on the task metadata address) and EKS Pod Identity (a full URI
/// and an authorization token, usually in a file the agent rotates).
async fn container(
    http: &reqwest::Client,
    env: &AwsEnv,
    region: &str,
) -> Result<Option<Found>, String> {
    let url = match (
        env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("{CONTAINER_HOST}{relative}"),
        (None, Some(full)) => full.to_owned(),
        (None, None) => return Ok(None),
    };
    let token = match (
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    ) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the container authorization token {file}: {e}"))?
                .trim()
                .to_owned(),
        ),
        (None, token) => token.map(str::to_owned),
    };
    let mut request = http.get(&url);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, token);
    }
    let reply = request
        .send()
        .await
        .map_err(|e| format!("the container credentials endpoint {url}: {e}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .map_err(|e| format!("the container credentials endpoint {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "the container credentials endpoint {url} answered {status}: {text}"
        ));
    }
    temporary(&text, region, "the container endpoint").map(Some)
}

/// EC2's instance role through IMDSv2: a session token, the role's name, its credentials.
/// `Ok(None)` when `AWS_EC2_METADATA_DISABLED` is true.
async fn instance_metadata(
    http: &reqwest::Client,
    env: &AwsEnv,
    region: &str,
) -> Result<Option<Found>, String> {
    if env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(None);
    }
    let base = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or(IMDS_HOST)
        .trim_end_matches('/')
        .to_owned();
    let failed = |e: &dyn std::fmt::Display| format!("{base}: {e}");
    let reply = http
        .put(format!("{base}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .map_err(|e| failed(&e))?;
    if !reply.status().is_success() {
        return Err(failed(&format!(
            "a session token was refused ({})",
            reply.status()
        )));
    }
    let token = reply.text().await.map_err(|e| failed(&e))?;
    let get = |path: String| {
        let request = http
            .get(format!(
                "{base}/latest/meta-data/iam/security-credentials/{path}"
            ))
            .header("x-aws-ec2-metadata-token", token.trim());
        async move {
            let reply = request.send().await.map_err(|e| failed(&e))?;
            let status = reply.status();
            let text = reply.text().await.map_err(|e| failed(&e))?;
            if status.is_success() {
                Ok(text)
            } else {
                Err(failed(&format!("{path:?} answered {status}: {text}")))
            }
        }
    };
    let roles = get(String::new()).await?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| failed(&"the instance has no IAM role"))?
        .to_owned();
    let text = get(role).await?;
    temporary(&text, region, "the instance metadata service").map(Some)
}

/// When to fetch credentials expiring at `expires` again: `REFRESH_AHEAD` before, or half-way
/// for short-lived ones, and not sooner than a second from now.
fn refresh_in(expires: SystemTime, now: SystemTime) -> Duration {
    let left = expires.duration_since(now).unwrap_or_default();
    let wait = if left > 2 * REFRESH_AHEAD {
        left - REFRESH_AHEAD
    } else {
        left / 2
    };
    wait.max(Duration::from_secs(1))
}

/// Finds the credentials of every provider in `auths` that has to look them up, before the
/// gateway serves, and keeps temporary ones fresh in the background for as long as the
/// provider lives. Fails with the provider's name and what was tried.
pub async fn start(auths: Vec<(String, Arc<AwsAuth>)>, env: AwsEnv) -> Result<(), String> {
    for (name, auth) in auths {
        if auth.source == AwsSource::Given {
            continue;
        }
        let found = find(&auth, &env)
            .await
            .map_err(|why| format!("provider '{name}': {why}"))?;
        tracing::info!(provider = %name, from = found.from, "AWS credentials found");
        let expires = found.expires;
        auth.current.store(Some(Arc::new(found.credentials)));
        if let Some(expires) = expires {
            tokio::spawn(keep_fresh(
                name,
                Arc::downgrade(&auth),
                env.clone(),
                expires,
            ));
        }
    }
    Ok(())
}

async fn keep_fresh(name: String, auth: Weak<AwsAuth>, env: AwsEnv, mut expires: SystemTime) {
    let mut wait = refresh_in(expires, SystemTime::now());
    loop {
        tokio::time::sleep(wait).await;
        let Some(auth) = auth.upgrade() else {
            return;
        };
        match find(&auth, &env).await {
            Ok(found) => {
                auth.current.store(Some(Arc::new(found.credentials)));
                let Some(next) = found.expires else {
                    return;
                };
                expires = next;
                wait = refresh_in(expires, SystemTime::now());
                tracing::debug!(provider = %name, from = found.from, "AWS credentials renewed");
            }
            Err(why) => {
                let left = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tracing::warn!(
                    provider = %name,
                    expires_in_secs = left.as_secs(),
                    "cannot renew the AWS credentials: {why}"
                );
                wait = RETRY_AFTER.min(left.max(Duration::from_secs(1)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_from_the_credentials_file_then_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "# keys\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key=secret-default\n\n[work]\nAWS_ACCESS_KEY_ID = AKIDWORK\naws_secret_access_key = secret-work\naws_session_token = token-work\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile  lab]\naws_access_key_id = AKIDLAB\naws_secret_access_key = secret-lab\n[lab]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let env = AwsEnv::of(&[("HOME", home)]);
        let read = |name: &str| profile(&env, name, "us-east-1").unwrap();
        let default = read("default").unwrap().credentials;
        assert_eq!(default.access_key_id, "AKIDDEFAULT");
        assert_eq!(default.secret_access_key.expose(), "secret-default");
        assert!(default.session_token.is_none());
        let work = read("work").unwrap().credentials;
        assert_eq!(work.access_key_id, "AKIDWORK");
        assert_eq!(work.session_token.unwrap().expose(), "token-work");
        // The config file names profiles `[profile NAME]`.
        assert_eq!(read("lab").unwrap().credentials.access_key_id, "AKIDLAB");
        assert!(read("nobody").is_none());
        // The files' places can be given.
        let env = AwsEnv::of(&[
            ("HOME", "/nonexistent"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.join("credentials").to_str().unwrap(),
            ),
        ]);
        assert_eq!(
            profile(&env, "work", "us-east-1")
                .unwrap()
                .unwrap()
                .credentials
                .access_key_id,
            "AKIDWORK"
        );
    }

    #[tokio::test]
    async fn the_environment_comes_first_and_a_named_profile_reads_only_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n",
        )
        .unwrap();
        let env = AwsEnv::of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", "t"),
        ]);
        let chain = AwsAuth::to_find("us-east-1".into(), AwsSource::Chain);
        let found = find(&chain, &env).await.unwrap();
        assert_eq!(found.credentials.access_key_id, "AKIDENV");
        assert_eq!(found.credentials.session_token.unwrap().expose(), "t");
        assert_eq!(found.credentials.region, "us-east-1");
        let named = AwsAuth::to_find("us-east-1".into(), AwsSource::Profile("default".into()));
        let found = find(&named, &env).await.unwrap();
        assert_eq!(found.credentials.access_key_id, "AKIDFILE");
        let missing = AwsAuth::to_find("us-east-1".into(), AwsSource::Profile("gone".into()));
        assert!(find(&missing, &env).await.unwrap_err().contains("'gone'"));
    }

    #[tokio::test]
    async fn nothing_found_says_what_was_tried() {
        let env = AwsEnv::of(&[
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let chain = AwsAuth::to_find("us-east-1".into(), AwsSource::Chain);
        let why = find(&chain, &env).await.unwrap_err();
        assert!(why.starts_with("no AWS credentials found"), "{why}");
        assert!(why.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{why}");
    }

    #[test]
    fn reads_sts_and_the_metadata_documents() {
        let sts = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>tok+en/with&amp;amp</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey>
      <Expiration>2026-12-04T15:00:00Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        assert_eq!(xml_text(sts, "AccessKeyId").as_deref(), Some("ASIAEXAMPLE"));
        assert_eq!(
            xml_text(sts, "SessionToken").as_deref(),
            Some("tok+en/with&amp")
        );
        assert_eq!(
            expiration(&xml_text(sts, "Expiration").unwrap()).unwrap(),
            humantime::parse_rfc3339("2026-12-04T15:00:00Z").unwrap()
        );
        assert_eq!(xml_text(sts, "Missing"), None);

        let imds = r#"{"Code": "Success", "LastUpdated": "2026-12-04T14:00:00Z", "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAIMDS", "SecretAccessKey": "s", "Token": "t",
            "Expiration": "2026-12-04T20:00:00Z"}"#;
        let found = temporary(imds, "eu-west-1", "imds").unwrap();
        assert_eq!(found.credentials.access_key_id, "ASIAIMDS");
        assert_eq!(found.credentials.region, "eu-west-1");
        assert!(found.expires.is_some());
        let failed = r#"{"Code": "AssumeRoleUnauthorizedAccess", "Message": "denied",
            "AccessKeyId": "", "SecretAccessKey": ""}"#;
        assert!(
            temporary(failed, "eu-west-1", "imds")
                .unwrap_err()
                .contains("AssumeRoleUnauthorizedAccess: denied")
        );
    }

    #[test]
    fn renews_five_minutes_ahead_or_half_way_for_short_lives() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_in(now + hour, now), hour - REFRESH_AHEAD);
        assert_eq!(
            refresh_in(now + Duration::from_secs(300), now),
            Duration::from_secs(150)
        );
        // Expired or about to: soon, but not in a loop.
        assert_eq!(refresh_in(now, now), Duration::from_secs(1));
        assert_eq!(refresh_in(now - hour, now), Duration::from_secs(1));
    }
}
