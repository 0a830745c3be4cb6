//! Fake chat platforms for channel tests: webhooks signed the way each platform signs them,
//! and a platform API on loopback that records every request and answers like the real one.

use std::sync::Arc;

use crate::{ScriptedResponse, SeenRequest, recorded, serve_scripted};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Slack's `X-Slack-Signature` of `body` sent at `timestamp` under `secret`:
/// `v0=` + hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}")).
pub fn slack_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(tag.as_ref()))
}

/// The headers of a Slack delivery of `body`, signed under `secret` at `timestamp`.
pub fn slack_headers(secret: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-slack-request-timestamp".into(), timestamp.to_string()),
        (
            "x-slack-signature".into(),
            slack_signature(secret, timestamp, body),
        ),
    ]
}

/// An Events API `event_callback` for an `app_mention` of the bot `UBOT` by `user`.
pub fn slack_mention(event_id: &str, user: &str, channel: &str, ts: &str, text: &str) -> String {
    serde_json::json!({
        "type": "event_callback",
        "team_id": "T1",
        "event_id": event_id,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {
            "type": "app_mention",
            "user": user,
            "text": format!("<@UBOT> {text}"),
            "ts": ts,
            "channel": channel,
            "team": "T1",
        }
    })
    .to_string()
}

/// A Slack Web API on loopback: `chat.postMessage` and `chat.startStream` answer a new `ts`
/// each time, everything else (`chat.update`, `chat.appendStream`, `auth.test`, ...) ok. `script` may replace an answer (to send a 429):
/// it gets the request and its index and returns `Some` to answer otherwise.
pub async fn fake_slack(
    script: impl Fn(&SeenRequest, usize) -> Option<ScriptedResponse> + Send + Sync + 'static,
) -> (u16, Arc<recorded::Requests>) {
    serve_scripted(move |request, index| {
        if let Some(answer) = script(request, index) {
            return answer;
        }
        let body = if request.path.ends_with("/chat.postMessage")
            || request.path.ends_with("/chat.startStream")
        {
            serde_json::json!({"ok": true, "channel": "C1", "ts": format!("1700000000.{index:06}")})
        } else {
            serde_json::json!({"ok": true})
        };
        ScriptedResponse::json(200, body)
    })
    .await
}

/// A provider on loopback speaking the chat-completions wire format that answers `text`,
/// streamed in `pieces` with `pause` between them.
pub async fn fake_provider(text: &'static str, pieces: usize, pause: std::time::Duration) -> u16 {
    let (port, _) = serve_scripted(move |_, _| {
        let size = text.len().div_ceil(pieces.max(1)).max(1);
        let mut chunks: Vec<serde_json::Value> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = size.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            chunks
                .push(serde_json::json!({"choices": [{"index": 0, "delta": {"content": piece}}]}));
            rest = tail;
        }
        chunks.push(
            serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        let mut response = ScriptedResponse::sse(&chunks);
        response.pause = pause;
        response
    })
    .await;
    port
}

/// Lines added to the blocks of the `slack` section (each indented six spaces).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlackExtra<'a> {
    pub permissions: &'a str,
    pub config: &'a str,
    pub channel: &'a str,
}

/// The `slack` section (under `plugins:`) for a fake Slack on `slack_port`: the bot token
/// `xoxb-test-token` injected by the host for that origin only, egress to any loopback port
/// (a slash command's `response_url` lives elsewhere), webhooks verified under `secret`, `U1`
/// allowed, plus `extra`.
pub fn slack_config(slack_port: u16, secret: &str, extra: SlackExtra) -> String {
    let SlackExtra {
        permissions,
        config,
        channel,
    } = extra;
    format!(
        r#"  slack:
    permissions:
{permissions}
      http:
        allow: ["127.0.0.1"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{slack_port}", header: authorization, value: "Bearer xoxb-test-token" }}
      verify:
        signing_secret: {{ secret: "{secret}" }}
    config:
      api: "http://127.0.0.1:{slack_port}/api"
{config}
    channel:
      allow_users: [U1]
{channel}
"#
    )
}

/// The config section of the `openai` provider talking to `fake_provider` on `port`.
pub fn provider_config(port: u16) -> String {
    format!(
        r#"  openai:
    permissions:
      http:
        allow: ["127.0.0.1:{port}"]
        allow_private: true
    config:
      base_url: "http://127.0.0.1:{port}/v1"
      model: gpt-test
"#
    )
}

/// A host with the built-in `openai` provider and the built-in channel `channel`, configured
/// by `plugins_yaml` (sections under `plugins:`), and its gateway's port.
pub async fn channel_host(channel: &str, plugins_yaml: &str) -> (crate::TestHost, u16) {
    let host = crate::TestHost::start(&format!("plugins:\n{plugins_yaml}"), &[])
        .await
        .expect("the host starts");
    host.load_builtin("openai").await;
    host.load_builtin(channel).await;
    let gateway = host.start_gateway("openai", "gateway: {}\n").await;
    (host, gateway)
}

/// Send `body` to `/channels/NAME{suffix}` with `headers`: (status, body).
pub async fn deliver(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (status, _, body) = crate::http_call(port, method, path, &headers, body).await;
    (status, body)
}

/// Wait until `check` holds, up to `limit`; whether it did.
pub async fn eventually(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check()
}

/// The requests `seen` got whose path ends with `suffix`.
pub fn requests_to(seen: &recorded::Requests, suffix: &str) -> Vec<SeenRequest> {
    seen.all()
        .into_iter()
        .filter(|r| r.path.ends_with(suffix))
        .collect()
}

/// Discord's headers for `body` signed at `timestamp` with the Ed25519 key from `seed`.
pub fn discord_headers(seed: &[u8; 32], timestamp: &str, body: &str) -> Vec<(String, String)> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).expect("a seed");
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body.as_bytes());
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature-timestamp".into(), timestamp.to_owned()),
        (
            "x-signature-ed25519".into(),
            hex::encode(pair.sign(&message).as_ref()),
        ),
    ]
}

/// The public key (hex) of the Ed25519 key from `seed`.
pub fn discord_public_key(seed: &[u8; 32]) -> String {
    use ring::signature::KeyPair;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).expect("a seed");
    hex::encode(pair.public_key().as_ref())
}

/// WhatsApp's `X-Hub-Signature-256` of `body` under `secret`.
pub fn whatsapp_signature(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref())
    )
}

/// A WebSocket server on loopback; `session` runs for each accepted socket with its index
/// (0 for the first connection). Returns the port.
pub async fn websocket_server<F, Fut>(session: F) -> u16
where
    F: Fn(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, usize) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let session = Arc::new(session);
    tokio::spawn(async move {
        let mut index = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            tokio::spawn(session(socket, index));
            index += 1;
        }
    });
    port
}

/// The next text frame of `socket` as JSON (`None` when it closed or 5 s passed).
pub async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Option<serde_json::Value> {
    use futures::StreamExt;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .ok()??
            .ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).ok();
        }
    }
}

/// Send `value` as a text frame.
pub async fn send_json(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    value: serde_json::Value,
) {
    use futures::SinkExt;
    let _ = socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            value.to_string(),
        ))
        .await;
}

/// A fresh 2048-bit RSA key (made by `openssl`): its PKCS#8 DER and PEM forms.
pub fn rsa_key() -> (Vec<u8>, String) {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl genpkey failed");
    let pem = String::from_utf8(output.stdout).expect("PEM is text");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    (base64_decode(&body), pem)
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An RS256 JWT of `claims` signed with the PKCS#8 key `der`, naming key id `kid`.
pub fn jwt_rs256(der: &[u8], kid: &str, claims: &serde_json::Value) -> String {
    let key = ring::signature::RsaKeyPair::from_pkcs8(der).expect("an RSA key");
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("signing");
    format!("{input}.{}", base64url(&signature))
}

/// A JWKS document with the public half of the PKCS#8 key `der` as key `kid`.
pub fn jwks(der: &[u8], kid: &str) -> serde_json::Value {
    let key = ring::signature::RsaKeyPair::from_pkcs8(der).expect("an RSA key");
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
    serde_json::json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": base64url(&public.n), "e": base64url(&public.e),
    }]})
}

/// The claims of a JWT (not verified), for checking what the host sent.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let padded = payload.replace('-', "+").replace('_', "/");
    serde_json::from_slice(&base64_decode(&padded)).expect("JSON claims")
}

/// Whether `token` (a JWT) carries a valid RS256 signature by the PKCS#8 key `der`.
pub fn jwt_signed_by(token: &str, der: &[u8]) -> bool {
    let key = ring::signature::RsaKeyPair::from_pkcs8(der).expect("an RSA key");
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
    let Some((input, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let signature = base64_decode(&signature.replace('-', "+").replace('_', "/"));
    public
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &signature,
        )
        .is_ok()
}
