//! Channel settings: who a channel plugin answers (`plugins.NAME.channel`), and the keys its
//! inbound requests are verified with (`plugins.NAME.permissions.verify`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

/// How a message addresses the bot (the `addressed` of the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressed {
    /// A direct message to the bot.
    Direct,
    /// A mention of the bot, a slash command or an interaction.
    Mention,
    /// Any other message in a chat the bot is in.
    Ambient,
}

/// `plugins.NAME.channel`: what a channel answers and with which agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// Users (platform ids) the bot answers; `"*"` for everyone. Empty answers nobody: a
    /// channel is closed until the operator opens it.
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// Chats (Slack or Discord channels, Telegram chats, Google Chat spaces, WhatsApp
    /// numbers) the bot answers in; empty: any chat.
    #[serde(default)]
    pub allow_chats: Vec<String>,
    /// Workspaces (Slack teams, Discord guilds) the bot answers in; empty: any.
    #[serde(default)]
    pub allow_workspaces: Vec<String>,
    /// Which messages get an answer: direct messages and mentions by default; add `ambient`
    /// to answer every message in the allowed chats.
    #[serde(default = "default_respond_to")]
    pub respond_to: Vec<Addressed>,
    /// Answer every message of this channel with this specialist (no routing).
    #[serde(default)]
    pub specialist: Option<String>,
    /// The tools a turn from this channel may use: tool names, plugin names (every tool of
    /// the plugin) or `memory`. Unset: every tool the specialist allows.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Show the answer as it is generated (post, then edits), where the platform can edit.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a delivered event id is remembered, so a retry is dropped (hours).
    #[serde(default = "default_dedupe_hours")]
    pub dedupe_hours: u64,
    /// Shortest time between two edits of a streamed answer (milliseconds); the platform's
    /// own minimum applies when it is higher.
    #[serde(default = "default_edit_interval_ms")]
    pub edit_interval_ms: u64,
    /// A connection the host holds to the platform instead of (or besides) the webhook, for a
    /// bot behind a firewall with no public URL.
    #[serde(default)]
    pub connection: Option<ConnectionSettings>,
}

/// `plugins.NAME.channel.connection`: exactly one of the three.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Slack Socket Mode: a WebSocket opened with the app-level token (`xapp-...`).
    #[serde(default)]
    pub slack_socket_mode: Option<SlackSocketMode>,
    /// The Discord Gateway: a WebSocket identified with the bot token (plain messages).
    #[serde(default)]
    pub discord_gateway: Option<DiscordGateway>,
    /// Telegram long polling (`getUpdates`); the bot must have no webhook set.
    #[serde(default)]
    pub telegram_polling: Option<TelegramPolling>,
    /// The platform's API may be on a private address (tests, a proxy).
    #[serde(default)]
    pub allow_private: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSocketMode {
    pub app_token: Secret,
    #[serde(default = "default_slack_api")]
    pub api: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordGateway {
    pub bot_token: Secret,
    #[serde(default = "default_discord_api")]
    pub api: String,
    /// Gateway intents: guilds, guild messages, direct messages and message content by
    /// default (message content is privileged: enable it for the bot in the developer portal).
    #[serde(default = "default_discord_intents")]
    pub intents: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramPolling {
    pub bot_token: Secret,
    #[serde(default = "default_telegram_api")]
    pub api: String,
    /// How long one `getUpdates` waits for updates (seconds).
    #[serde(default = "default_poll_seconds")]
    pub timeout_seconds: u64,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}
fn default_discord_api() -> String {
    "https://discord.com/api/v10".into()
}
fn default_discord_intents() -> u64 {
    // GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
    1 | (1 << 9) | (1 << 12) | (1 << 15)
}
fn default_telegram_api() -> String {
    "https://api.telegram.org".into()
}
fn default_poll_seconds() -> u64 {
    30
}

impl ConnectionSettings {
    pub fn validate(&self) -> Result<(), String> {
        let chosen = [
            self.slack_socket_mode.is_some(),
            self.discord_gateway.is_some(),
            self.telegram_polling.is_some(),
        ]
        .iter()
        .filter(|chosen| **chosen)
        .count();
        if chosen != 1 {
            return Err("connection: give exactly one of slack_socket_mode, discord_gateway or telegram_polling".into());
        }
        if let Some(polling) = &self.telegram_polling
            && !(1..=50).contains(&polling.timeout_seconds)
        {
            return Err(
                "connection.telegram_polling.timeout_seconds must be between 1 and 50".into(),
            );
        }
        for api in [
            self.slack_socket_mode.as_ref().map(|s| &s.api),
            self.discord_gateway.as_ref().map(|d| &d.api),
            self.telegram_polling.as_ref().map(|t| &t.api),
        ]
        .into_iter()
        .flatten()
        {
            let url = url::Url::parse(api).map_err(|e| format!("connection api `{api}`: {e}"))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(format!("connection api `{api}` must be an http(s) URL"));
            }
        }
        Ok(())
    }
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            allow_users: Vec::new(),
            allow_chats: Vec::new(),
            allow_workspaces: Vec::new(),
            respond_to: default_respond_to(),
            specialist: None,
            tools: None,
            stream: true,
            max_body_bytes: default_max_body_bytes(),
            dedupe_hours: default_dedupe_hours(),
            edit_interval_ms: default_edit_interval_ms(),
            connection: None,
        }
    }
}

impl ChannelSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_body_bytes > 16 * 1024 * 1024 {
            return Err("max_body_bytes must be between 1 and 16777216".into());
        }
        if self.dedupe_hours == 0 || self.dedupe_hours > 24 * 366 {
            return Err(
                "dedupe_hours must be between 1 (platforms retry for minutes) and 8784".into(),
            );
        }
        if !(200..=60_000).contains(&self.edit_interval_ms) {
            return Err("edit_interval_ms must be between 200 and 60000".into());
        }
        if let Some(connection) = &self.connection {
            connection.validate()?;
        }
        if self.respond_to.is_empty() {
            return Err("respond_to is empty, so nothing would be answered; list direct, mention or ambient".into());
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn default_respond_to() -> Vec<Addressed> {
    vec![Addressed::Direct, Addressed::Mention]
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_dedupe_hours() -> u64 {
    24
}
fn default_edit_interval_ms() -> u64 {
    1000
}

/// One key a channel verifies inbound requests with (`plugins.NAME.permissions.verify.KEY`):
/// exactly one of the three fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeyConfig {
    /// A shared secret: an HMAC key (Slack's signing secret, WhatsApp's app secret) or a
    /// token compared as is (Telegram's secret token, WhatsApp's verify token).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// An Ed25519 public key, 64 hex digits (Discord's application public key).
    #[serde(default)]
    pub ed25519_public_key: Option<String>,
    /// A JSON Web Key Set the host fetches and caches, for RS256 JWTs (Google Chat).
    #[serde(default)]
    pub jwks: Option<JwksKey>,
}

/// A verification key, by kind.
#[derive(Debug, Clone)]
pub enum VerifyKey {
    Secret(Secret),
    Ed25519PublicKey(String),
    Jwks(JwksKey),
}

impl VerifyKeyConfig {
    /// The key this entry names, or why it names none or several.
    pub fn key(&self) -> Result<VerifyKey, String> {
        match (&self.secret, &self.ed25519_public_key, &self.jwks) {
            (Some(secret), None, None) => Ok(VerifyKey::Secret(secret.clone())),
            (None, Some(key), None) => Ok(VerifyKey::Ed25519PublicKey(key.clone())),
            (None, None, Some(jwks)) => Ok(VerifyKey::Jwks(jwks.clone())),
            _ => Err("give exactly one of `secret`, `ed25519_public_key` or `jwks`".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksKey {
    /// Where the key set is published, e.g.
    /// `https://www.googleapis.com/service_accounts/v1/jwk/chat@system.gserviceaccount.com`.
    pub url: String,
    /// Accepted `iss` values; at least one.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the endpoint URL or the project number); at least one.
    pub audiences: Vec<String>,
    /// How long fetched keys are kept before they are fetched again (seconds).
    #[serde(default = "default_jwks_refresh")]
    pub refresh_seconds: u64,
    /// The key set's host may be on a private network (tests, a local mirror).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_jwks_refresh() -> u64 {
    3600
}

impl VerifyKey {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Secret(secret) if secret.expose().is_empty() => {
                Err("the secret is empty (is its ${VARIABLE} set?)".into())
            }
            Self::Secret(_) => Ok(()),
            Self::Ed25519PublicKey(hex_key) => match hex::decode(hex_key.trim()) {
                Ok(bytes) if bytes.len() == 32 => Ok(()),
                _ => Err("ed25519_public_key must be 64 hex digits (32 bytes)".into()),
            },
            Self::Jwks(jwks) => {
                let url = url::Url::parse(&jwks.url).map_err(|e| format!("jwks.url: {e}"))?;
                if !matches!(url.scheme(), "https" | "http") {
                    return Err("jwks.url must be an http(s) URL".into());
                }
                if url.scheme() == "http" && !jwks.allow_private {
                    return Err(
                        "jwks.url must use https (or set jwks.allow_private for a local mirror)"
                            .into(),
                    );
                }
                if jwks.issuers.is_empty() || jwks.audiences.is_empty() {
                    return Err("jwks needs at least one issuer and one audience".into());
                }
                if jwks.refresh_seconds == 0 {
                    return Err("jwks.refresh_seconds must be at least 1".into());
                }
                Ok(())
            }
        }
    }
}

/// Every key of one plugin, validated, with the config key of a failure.
pub fn validate_verify_keys(
    plugin: &str,
    keys: &BTreeMap<String, VerifyKeyConfig>,
) -> Result<(), String> {
    for (name, key) in keys {
        key.key()
            .and_then(|key| key.validate())
            .map_err(|e| format!("plugins.{plugin}.permissions.verify.{name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_each_kind_parse_and_bad_ones_say_why() {
        let keys: BTreeMap<String, VerifyKeyConfig> = serde_yaml::from_str(
            "signing: {secret: abc}\npublic: {ed25519_public_key: \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}\ngoogle: {jwks: {url: \"https://example.com/k\", issuers: [a], audiences: [b]}}\n",
        )
        .unwrap();
        assert!(validate_verify_keys("p", &keys).is_ok());
        let bad: BTreeMap<String, VerifyKeyConfig> =
            serde_yaml::from_str("public: {ed25519_public_key: \"zz\"}\n").unwrap();
        let error = validate_verify_keys("p", &bad).unwrap_err();
        assert!(
            error.contains("plugins.p.permissions.verify.public"),
            "{error}"
        );
        let clear: BTreeMap<String, VerifyKeyConfig> = serde_yaml::from_str(
            "g: {jwks: {url: \"http://example.com/k\", issuers: [a], audiences: [b]}}\n",
        )
        .unwrap();
        assert!(
            validate_verify_keys("p", &clear)
                .unwrap_err()
                .contains("https")
        );
        let two: BTreeMap<String, VerifyKeyConfig> =
            serde_yaml::from_str("k: {secret: a, ed25519_public_key: b}\n").unwrap();
        assert!(
            validate_verify_keys("p", &two)
                .unwrap_err()
                .contains("exactly one")
        );
    }

    #[test]
    fn a_channel_answers_direct_messages_and_mentions_of_nobody_by_default() {
        let settings: ChannelSettings = serde_yaml::from_str("{}").unwrap();
        assert!(settings.allow_users.is_empty());
        assert_eq!(
            settings.respond_to,
            vec![Addressed::Direct, Addressed::Mention]
        );
        assert!(settings.validate().is_ok());
        let none: ChannelSettings = serde_yaml::from_str("respond_to: []").unwrap();
        assert!(none.validate().is_err());
    }
}
