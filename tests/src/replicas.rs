//! Several `databot serve` processes as replicas of the Kafka bus: the broker on loopback
//! (tansu, started by `.ci/start-tansu.sh`), the local PostgreSQL with a schema of the test's
//! own (so tests never share tables), and the mock OpenAI-compatible provider, which answers
//! `answer: CONTENT` (the content carries each message's sequence number).
//!
//! tansu answers a consumer's fetch only when its wait (`fetch.wait.max.ms`, 500 ms by
//! default) runs out, not when a message arrives as Kafka does; the replicas here wait 1 ms.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::served::ServedDatabot;

/// The broker the tests use.
pub const KAFKA: &str = "127.0.0.1:9092";

/// A set of replicas sharing one topic, group and PostgreSQL schema.
pub struct Replicas {
    pub members: Vec<ServedDatabot>,
    /// `postgres://...` with the schema on the search path.
    pub database_url: String,
    pub schema: String,
    pub topic: String,
}

impl Replicas {
    /// Start `count` replicas named `r0`, `r1`, ... (one after the other; each is ready when
    /// this returns, though the group may still be assigning partitions: messages wait in the
    /// topic meanwhile).
    pub async fn start(binary: &str, count: usize, extra_yaml: &str) -> Self {
        Self::launch(binary, count, true, extra_yaml).await
    }

    /// One process on the in-process bus with the same PostgreSQL sessions: the baseline the
    /// Kafka bus is measured against.
    pub async fn start_in_process(binary: &str) -> Self {
        Self::launch(binary, 1, false, "").await
    }

    async fn launch(binary: &str, count: usize, kafka: bool, extra_yaml: &str) -> Self {
        let provider = crate::mock_openai::serve_mock_openai().await;
        let schema = crate::unique_name("scale");
        crate::postgres_exec(&[format!("CREATE SCHEMA {schema}")]).await;
        let database_url = format!(
            "{}?options=-c%20search_path%3D{schema}",
            crate::POSTGRES_URL
        );
        let topic = crate::unique_name("databot.inbound");
        let group = crate::unique_name("databot");
        let mut members = Vec::new();
        for index in 0..count {
            let bus = if kafka {
                format!(
                    "bus:
  kind: kafka
  kafka:
    bootstrap_servers: \"{KAFKA}\"
    topic: {topic}
    group: {group}
    replica: r{index}
    partitions: 6
    replication_factor: 1
    drain_seconds: 20
    stranded_after_seconds: 5
    properties:
      session.timeout.ms: \"6000\"
      heartbeat.interval.ms: \"500\"
      max.poll.interval.ms: \"6000\"
      fetch.wait.max.ms: \"1\"
"
                )
            } else {
                String::new()
            };
            let agent = format!("  sessions_url: \"{database_url}\"\n");
            members.push(
                ServedDatabot::start_with(binary, provider, &agent, &format!("{bus}{extra_yaml}"))
                    .await,
            );
        }
        Self {
            members,
            database_url,
            schema,
            topic,
        }
    }

    /// The gateway port of member `index`.
    pub fn port(&self, index: usize) -> u16 {
        self.members[index].port
    }
}

/// `POST /api/v1/stream` with `content` in conversation `chat_id`: returns once the response
/// head says the message was accepted (so a next message sent after it is behind it in the
/// conversation), with a task that reads the events to the end and gives the body.
pub async fn stream_accepted(
    port: u16,
    chat_id: &str,
    content: &str,
    idempotency_key: Option<&str>,
) -> Result<tokio::task::JoinHandle<String>, String> {
    let idempotency = idempotency_key
        .map(|key| format!("idempotency-key: {key}\r\n"))
        .unwrap_or_default();
    let body = serde_json::json!({ "chat_id": chat_id, "content": content }).to_string();
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "POST /api/v1/stream HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{idempotency}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buffer))
            .await
            .map_err(|_| "no response head in 60 s".to_owned())?
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err(format!(
                "closed before the head: {}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buffer[..read]);
    };
    let (status, headers) = crate::parse_head(&raw[..head_end]);
    if status != 200 {
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut raw)).await;
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&raw[head_end..])
        ));
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = raw[head_end + 4..].to_vec();
    Ok(tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(300), socket.read_to_end(&mut body)).await;
        let body = if chunked { crate::dechunk(&body) } else { body };
        String::from_utf8_lossy(&body).into_owned()
    }))
}

/// The `done` events' texts of an SSE body, in order.
pub fn done_texts(body: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut event = "";
    for line in body.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim();
        } else if let Some(data) = line.strip_prefix("data:")
            && event == "done"
        {
            let value: serde_json::Value =
                serde_json::from_str(data.trim()).unwrap_or(serde_json::Value::Null);
            texts.push(value["data"].as_str().unwrap_or_default().to_owned());
        }
    }
    texts
}
