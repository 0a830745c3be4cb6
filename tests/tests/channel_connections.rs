//! The connections the host holds for channels, against fake platforms on loopback speaking
//! the real protocols: Telegram long polling with offsets, Slack Socket Mode (hello, envelope
//! acknowledgements, `disconnect` then a new socket), the Discord Gateway (Hello, Identify,
//! heartbeats acknowledged, READY, a dropped socket resumed with the session and sequence).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use databot_e2e::chat_platforms::{
    channel_host, eventually, fake_provider, next_json, provider_config, requests_to, send_json,
    websocket_server,
};
use databot_e2e::{ScriptedResponse, serve_scripted};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_long_polling_confirms_updates_with_the_offset_and_answers_them() {
    let provider = fake_provider("pong", 1, Duration::ZERO).await;
    let (api, seen) = serve_scripted(|request, _| {
        if request.path.ends_with("/getUpdates") {
            let offset = request.json()["offset"].as_i64();
            let result = match offset {
                None => json!([
                    {"update_id": 500, "message": {"message_id": 1, "from": {"id": 42, "is_bot": false, "first_name": "A"}, "chat": {"id": 42, "type": "private"}, "text": "ping"}},
                    {"update_id": 501, "message": {"message_id": 2, "from": {"id": 42, "is_bot": false, "first_name": "A"}, "chat": {"id": 42, "type": "private"}, "text": "again"}},
                ]),
                _ => json!([]),
            };
            let mut response = ScriptedResponse::json(200, json!({"ok": true, "result": result}));
            if offset.is_some() {
                // A long poll that finds nothing.
                response.pause = Duration::from_millis(200);
            }
            return response;
        }
        ScriptedResponse::json(200, json!({"ok": true, "result": {"message_id": 9}}))
    })
    .await;
    let config = format!(
        r#"{}  telegram:
    permissions:
      http:
        allow: ["127.0.0.1:{api}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{api}", path_prefix: "/botPOLL:TOKEN" }}
    config:
      api: "http://127.0.0.1:{api}"
    channel:
      allow_users: ["42"]
      stream: false
      connection:
        telegram_polling: {{ bot_token: "POLL:TOKEN", api: "http://127.0.0.1:{api}", timeout_seconds: 1 }}
        allow_private: true
"#,
        provider_config(provider)
    );
    let (_host, _gateway) = channel_host("telegram", &config).await;
    assert!(
        eventually(Duration::from_secs(15), || requests_to(
            &seen,
            "/sendMessage"
        )
        .len()
            == 2)
        .await
    );
    let polls = requests_to(&seen, "/getUpdates");
    assert_eq!(polls[0].path, "/botPOLL:TOKEN/getUpdates");
    assert!(polls[0].json()["offset"].is_null());
    assert!(
        eventually(Duration::from_secs(5), || requests_to(&seen, "/getUpdates")
            .iter()
            .any(|p| p.json()["offset"] == 502))
        .await,
        "the next poll confirms both updates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_socket_mode_acknowledges_envelopes_and_reconnects_on_disconnect() {
    let provider = fake_provider("from the socket", 1, Duration::ZERO).await;
    let acks = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = acks.clone();
    let socket_port = websocket_server(move |mut socket, index| {
        let acks = recorded.clone();
        async move {
            send_json(&mut socket, json!({"type": "hello", "num_connections": 1})).await;
            let envelope = format!("env-{index}");
            send_json(&mut socket, json!({
                "envelope_id": envelope, "type": "events_api", "accepts_response_payload": false,
                "payload": {
                    "type": "event_callback", "team_id": "T1", "event_id": format!("EvSock{index}"),
                    "authorizations": [{"user_id": "UBOT"}],
                    "event": {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": format!("17000.{index}"), "channel": "C1"},
                },
            }))
            .await;
            if let Some(ack) = next_json(&mut socket).await {
                acks.lock().unwrap().push(ack["envelope_id"].as_str().unwrap_or_default().to_owned());
            }
            if index == 0 {
                send_json(&mut socket, json!({"type": "disconnect", "reason": "refresh_requested"})).await;
            }
            // Hold the socket open a while.
            let _ = next_json(&mut socket).await;
        }
    })
    .await;
    let (api, seen) = serve_scripted(move |request, _| {
        if request.path.ends_with("/apps.connections.open") {
            return ScriptedResponse::json(
                200,
                json!({"ok": true, "url": format!("ws://127.0.0.1:{socket_port}/link")}),
            );
        }
        ScriptedResponse::json(200, json!({"ok": true, "ts": "1.1"}))
    })
    .await;
    let config = format!(
        r#"{}  slack:
    permissions:
      http:
        allow: ["127.0.0.1:{api}"]
        allow_private: true
    config:
      api: "http://127.0.0.1:{api}/api"
    channel:
      allow_users: [U1]
      stream: false
      connection:
        slack_socket_mode: {{ app_token: "xapp-1-socket", api: "http://127.0.0.1:{api}/api" }}
        allow_private: true
"#,
        provider_config(provider)
    );
    let (_host, _gateway) = channel_host("slack", &config).await;
    assert!(
        eventually(Duration::from_secs(15), || requests_to(
            &seen,
            "/chat.postMessage"
        )
        .len()
            == 2)
        .await
    );
    let opens = requests_to(&seen, "/apps.connections.open");
    assert!(opens.len() >= 2, "no new socket after `disconnect`");
    assert_eq!(
        opens[0].header("authorization"),
        Some("Bearer xapp-1-socket")
    );
    assert!(eventually(Duration::from_secs(5), || acks.lock().unwrap().len() == 2).await);
    assert_eq!(
        *acks.lock().unwrap(),
        vec!["env-0".to_owned(), "env-1".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discord_gateway_identifies_heartbeats_and_resumes_after_a_drop() {
    let provider = fake_provider("gateway answer", 1, Duration::ZERO).await;
    let greetings = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let greeted_at = Arc::new(Mutex::new(Vec::<std::time::Instant>::new()));
    let greeting_times = greeted_at.clone();
    let heartbeats = Arc::new(Mutex::new(0usize));
    let own_port = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let (recorded, beats, resume_port) = (greetings.clone(), heartbeats.clone(), own_port.clone());
    let gateway_port = websocket_server(move |mut socket, index| {
        let (greetings, heartbeats) = (recorded.clone(), beats.clone());
        let greeting_times = greeting_times.clone();
        let resume = format!("ws://127.0.0.1:{}", resume_port.load(std::sync::atomic::Ordering::SeqCst));
        async move {
            send_json(&mut socket, json!({"op": 10, "d": {"heartbeat_interval": 150}})).await;
            let Some(greeting) = next_json(&mut socket).await else { return };
            greetings.lock().unwrap().push(greeting);
            greeting_times.lock().unwrap().push(std::time::Instant::now());
            let message = |seq: u64, id: &str| json!({"op": 0, "s": seq, "t": "MESSAGE_CREATE", "d": {
                "id": id, "type": 0, "channel_id": "CH1", "guild_id": "G1", "content": "<@BOT> status?",
                "author": {"id": "U7", "username": "ada"}, "mentions": [{"id": "BOT"}],
            }});
            if index == 0 {
                send_json(&mut socket, json!({"op": 0, "s": 1, "t": "READY", "d": {
                    "session_id": "S1", "resume_gateway_url": resume, "user": {"id": "BOT"}}})).await;
                send_json(&mut socket, message(2, "M1")).await;
                // Answer one heartbeat, then drop the connection.
                if let Some(beat) = next_json(&mut socket).await && beat["op"] == 1 {
                    *heartbeats.lock().unwrap() += 1;
                    send_json(&mut socket, json!({"op": 11})).await;
                }
                return;
            }
            send_json(&mut socket, json!({"op": 0, "s": 3, "t": "RESUMED", "d": null})).await;
            send_json(&mut socket, message(4, "M2")).await;
            while let Some(frame) = next_json(&mut socket).await {
                if frame["op"] == 1 {
                    *heartbeats.lock().unwrap() += 1;
                    send_json(&mut socket, json!({"op": 11})).await;
                }
            }
        }
    })
    .await;
    own_port.store(gateway_port, std::sync::atomic::Ordering::SeqCst);
    let (api, seen) = serve_scripted(move |request, _| {
        if request.path.ends_with("/gateway/bot") {
            // The day's session starts are used up: no Identify before the reset.
            return ScriptedResponse::json(
                200,
                json!({"url": format!("ws://127.0.0.1:{gateway_port}"), "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 0, "reset_after": 800, "max_concurrency": 1}}),
            );
        }
        ScriptedResponse::json(200, json!({"id": "R1"}))
    })
    .await;
    let config = format!(
        r#"{}  discord:
    permissions:
      http:
        allow: ["127.0.0.1:{api}"]
        allow_private: true
    config:
      api: "http://127.0.0.1:{api}/api/v10"
    channel:
      allow_users: ["U7"]
      stream: false
      connection:
        discord_gateway: {{ bot_token: "discord-gateway-token", api: "http://127.0.0.1:{api}/api/v10" }}
        allow_private: true
"#,
        provider_config(provider)
    );
    let (_host, _gateway) = channel_host("discord", &config).await;
    assert!(
        eventually(Duration::from_secs(20), || requests_to(
            &seen,
            "/channels/CH1/messages"
        )
        .len()
            == 2)
        .await,
        "both gateway messages were answered"
    );
    let posts = requests_to(&seen, "/channels/CH1/messages");
    assert_eq!(posts[0].json()["message_reference"]["message_id"], "M1");
    assert_eq!(posts[0].json()["content"], "gateway answer");
    let greetings = greetings.lock().unwrap().clone();
    assert_eq!(greetings[0]["op"], 2, "first an Identify");
    let asked = requests_to(&seen, "/gateway/bot")[0].received_at;
    let identified = greeted_at.lock().unwrap()[0];
    assert!(
        identified.duration_since(asked) >= Duration::from_millis(800),
        "identified {:?} after learning the budget was used up",
        identified.duration_since(asked)
    );
    assert_eq!(greetings[0]["d"]["token"], "discord-gateway-token");
    assert_eq!(greetings[1]["op"], 6, "then a Resume");
    assert_eq!(greetings[1]["d"]["session_id"], "S1");
    assert_eq!(greetings[1]["d"]["seq"], 2);
    assert!(*heartbeats.lock().unwrap() >= 1);
}
