//! Access tokens of a Google service account, minted by the host for a plugin's endpoint
//! (`auth: {type: google_service_account}`): a JWT signed (RS256) with the account's private
//! key is exchanged at the key's `token_uri` for an access token, which is cached and renewed
//! five minutes before it expires. The key and the token never enter the guest.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use serde::Deserialize;

use super::host_http::{self, HostRequest};

/// Renew this long before the token expires (at most half its lifetime).
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// After a failed renewal, requests get the failure for this long instead of each trying again.
const FAILURE_HOLD: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

/// One service account's tokens.
pub struct ServiceAccountTokens {
    email: String,
    key_id: Option<String>,
    token_uri: String,
    scopes: String,
    key: ring::signature::RsaKeyPair,
    allow_private: bool,
    /// One renewal at a time; the others wait for its result.
    current: tokio::sync::Mutex<Current>,
}

#[derive(Default)]
struct Current {
    token: Option<Minted>,
    /// The last renewal's failure and when it happened.
    failure: Option<(Instant, String)>,
}

struct Minted {
    value: http::HeaderValue,
    renew_at: Instant,
    expires_at: Instant,
}

impl ServiceAccountTokens {
    /// Read and check the key file Google issued (JSON with `client_email`, `private_key`
    /// in PEM, `token_uri`).
    pub fn from_key_file(
        path: &Path,
        scopes: &[String],
        allow_private: bool,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key file {}", path.display()))?;
        let file: KeyFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a service account key file", path.display()))?;
        let der = pem_body(&file.private_key)
            .ok_or_else(|| anyhow!("the key file's private_key is not a PEM private key"))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow!("the key file's private_key is not a PKCS#8 RSA key: {e}"))?;
        if scopes.is_empty() {
            bail!(
                "list at least one OAuth scope (Google Chat: https://www.googleapis.com/auth/chat.bot)"
            );
        }
        Ok(Self {
            email: file.client_email,
            key_id: file.private_key_id,
            token_uri: file.token_uri,
            scopes: scopes.join(" "),
            key,
            allow_private,
            current: tokio::sync::Mutex::new(Current::default()),
        })
    }

    /// `Bearer TOKEN`, minted now if there is none or it is due for renewal. While the token
    /// endpoint fails, a token that has not expired is still used, and for `FAILURE_HOLD`
    /// requests get the failure at once rather than each asking again.
    pub async fn authorization(&self) -> anyhow::Result<http::HeaderValue> {
        let mut current = self.current.lock().await;
        let now = Instant::now();
        if let Some(token) = &current.token
            && now < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let still_valid = current
            .token
            .as_ref()
            .filter(|token| now < token.expires_at)
            .map(|token| token.value.clone());
        if let Some((at, failure)) = &current.failure
            && at.elapsed() < FAILURE_HOLD
        {
            return still_valid.ok_or_else(|| anyhow!("{failure}"));
        }
        match self.mint().await {
            Ok((token, lifetime)) => {
                let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                    .context("the access token is not a valid header value")?;
                value.set_sensitive(true);
                let margin = RENEW_BEFORE.min(lifetime / 2);
                let minted = Instant::now();
                current.token = Some(Minted {
                    value: value.clone(),
                    renew_at: minted + lifetime - margin,
                    expires_at: minted + lifetime,
                });
                current.failure = None;
                Ok(value)
            }
            Err(error) => {
                let failure = format!("{error:#}");
                current.failure = Some((Instant::now(), failure.clone()));
                still_valid.ok_or_else(|| anyhow!("{failure}"))
            }
        }
    }

    async fn mint(&self) -> anyhow::Result<(String, Duration)> {
        let assertion = self.assertion()?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let response = host_http::send(HostRequest {
            method: http::Method::POST,
            url: &self.token_uri,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            body: form.into(),
            allow_private: self.allow_private,
            timeout: Duration::from_secs(15),
            max_body_bytes: 64 * 1024,
        })
        .await
        .context("asking for an access token")?;
        if !response.status.is_success() {
            bail!("the token endpoint answered HTTP {}", response.status);
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: Token = serde_json::from_slice(&response.body)
            .context("the token endpoint's answer has no access_token")?;
        Ok((
            token.access_token,
            Duration::from_secs(token.expires_in.unwrap_or(3600).clamp(60, 24 * 3600)),
        ))
    }

    /// The signed JWT the token endpoint exchanges.
    fn assertion(&self) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let encode = |value: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::json!(kid);
        }
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": self.scopes,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input = format!("{}.{}", encode(&header), encode(&claims));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow!("signing the token request failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The DER bytes of a PEM block (`-----BEGIN PRIVATE KEY-----`).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
