//! First-party plugins compiled into the binary (built from `plugins/` by `host/build.rs`).
//!
//! The providers and `web_fetch` load whenever built-ins are on. The data plugins (connectors,
//! data tools) load only when the config has a section for them, since each needs a source,
//! an endpoint or a folder to be useful; `plugins.KEY.builtin: NAME` runs another instance of
//! built-in NAME under the name KEY (a second Spark cluster, say).

/// A plugin compiled into the binary.
pub struct Builtin {
    pub name: &'static str,
    /// Its crate in `plugins/` (a member of that workspace).
    pub crate_name: &'static str,
    pub bytes: &'static [u8],
    /// Load even without a `plugins.NAME` section.
    pub on_by_default: bool,
}

macro_rules! builtin {
    ($name:literal, $file:literal, $on:expr) => {
        Builtin {
            name: $name,
            crate_name: $file,
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/guests/", $file, ".wasm")),
            on_by_default: $on,
        }
    };
}

/// Every built-in plugin.
pub const BUILTIN_PLUGINS: &[Builtin] = &[
    builtin!("web_fetch", "web_fetch", true),
    builtin!("offline", "offline_provider", true),
    builtin!("openai", "openai_provider", true),
    builtin!("anthropic", "anthropic_provider", true),
    builtin!("sql_connector", "sql_connector", false),
    builtin!("sql", "sql_tool", false),
    builtin!("data_quality", "data_quality_tool", false),
    builtin!("filesystem", "filesystem_tool", false),
    builtin!("shell", "shell_tool", false),
    builtin!("rest", "rest_connector", false),
    builtin!("spark_connector", "spark_connector", false),
    builtin!("spark", "spark_tool", false),
    builtin!("airflow", "airflow_tool", false),
    builtin!("catalog_connector", "catalog_connector", false),
    builtin!("catalog", "catalog_tool", false),
    builtin!("kafka_connector", "kafka_connector", false),
    builtin!("kafka", "kafka_tool", false),
    builtin!("lineage", "lineage_tool", false),
    builtin!("web_search", "web_search_tool", false),
    builtin!("slack", "slack_channel", false),
    builtin!("telegram", "telegram_channel", false),
    builtin!("discord", "discord_channel", false),
    builtin!("whatsapp", "whatsapp_channel", false),
    builtin!("google_chat", "google_chat_channel", false),
];

/// The component bytes of a built-in plugin.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|builtin| builtin.name == name)
        .map(|builtin| builtin.bytes)
}

#[cfg(test)]
mod members {
    /// Every crate of the plugins workspace is compiled into the binary once, and nothing
    /// else is: the workspace's member list is the one list of first-party plugins.
    #[test]
    fn every_plugin_crate_is_built_in_exactly_once() {
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/Cargo.toml");
        let text = std::fs::read_to_string(manifest).expect("plugins/Cargo.toml");
        let (_, rest) = text.split_once("members = [").expect("a member list");
        let (list, _) = rest.split_once(']').expect("a member list");
        let mut members: Vec<&str> = list
            .split(',')
            .map(|m| m.trim().trim_matches('"'))
            .filter(|m| !m.is_empty())
            .collect();
        let mut built_in: Vec<&str> = super::BUILTIN_PLUGINS
            .iter()
            .map(|b| b.crate_name)
            .collect();
        members.sort_unstable();
        built_in.sort_unstable();
        assert_eq!(members, built_in);
    }
}
