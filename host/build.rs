//! Builds the first-party plugins in `plugins/` as components; the binary embeds them.

#[path = "build_guests.rs"]
mod build_guests;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace");
    build_guests::build_guest_workspace(
        &root.join("plugins/Cargo.toml"),
        &[
            "web_fetch",
            "offline_provider",
            "openai_provider",
            "anthropic_provider",
            "sql_connector",
            "sql_tool",
            "data_quality_tool",
            "filesystem_tool",
            "shell_tool",
            "rest_connector",
            "spark_connector",
            "spark_tool",
            "airflow_tool",
            "catalog_connector",
            "catalog_tool",
            "kafka_connector",
            "kafka_tool",
            "lineage_tool",
            "web_search_tool",
        ],
        &[
            &root.join("plugins"),
            &root.join("sdk/src"),
            &root.join("sdk/macros/src"),
            &root.join("wit"),
        ],
    );
}
