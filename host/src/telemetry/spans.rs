//! Span names and attribute keys used across the host, in one place, following the
//! OpenTelemetry semantic conventions where one exists (GenAI, database, messaging, HTTP).
//!
//! Spans are `tracing` spans declared at `INFO` with every field up front (`Empty` until
//! recorded), so with export off and logs at `warn` they cost a disabled-callsite check.
//! `otel.name` renames the exported span (`chat {model}`, `execute_tool {name}`);
//! `otel.status_code = "ERROR"` marks a failed operation, `error.type` says how it failed.
//! The plugin call's span (`execute_tool {name}`, `connector NAME.OP`, ...) is the exception:
//! it has an export pipeline of its own (`telemetry::call_span`, `telemetry::call_export`).

/// The agent's turn: one user message answered.
pub const AGENT_TURN: &str = "agent.turn";
/// The router's choice of specialist.
pub const AGENT_ROUTE: &str = "agent.route";
/// A provider chat completion (exported as `chat {model}`).
pub const PROVIDER_CHAT: &str = "chat";
/// Compiling or loading a component from the cache, and linking it.
pub const PLUGIN_COMPILE: &str = "plugin.compile";
/// Loading a component: manifest, compile, instantiate, swap in (the parent of the next three).
pub const PLUGIN_LOAD: &str = "plugin.load";
/// Instantiating a new revision to describe its operations at load time.
pub const PLUGIN_INSTANTIATE: &str = "plugin.instantiate";
/// A revision replacing another under the same plugin name.
pub const PLUGIN_SWAP: &str = "plugin.swap";

/// `ok`, or the call's error kind (`timeout`, `memory_exceeded`, ...).
pub const OUTCOME_OK: &str = "ok";

/// Mark the current span failed with `kind` (`error.type`) for OpenTelemetry.
pub fn record_error(span: &tracing::Span, kind: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

/// A count as an OpenTelemetry integer attribute (`tracing-opentelemetry` exports `u64`
/// fields as strings, `i64` as integers).
pub fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// `db.system.name` for a sqlx dialect name.
pub fn db_system(dialect: &str) -> &'static str {
    match dialect {
        "postgres" | "postgresql" => "postgresql",
        "mysql" | "mariadb" => "mysql",
        "sqlite" => "sqlite",
        "trino" => "trino",
        _ => "other_sql",
    }
}

/// `db.operation.name`: the statement's first keyword (`SELECT`, `WITH`, `INSERT`, ...).
pub fn db_operation(statement: &str) -> String {
    statement
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .chars()
        .take(16)
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn db_names() {
        assert_eq!(super::db_operation("  select * from t"), "SELECT");
        assert_eq!(super::db_operation("WITH x AS (SELECT 1)"), "WITH");
        assert_eq!(super::db_operation(""), "");
        assert_eq!(super::db_system("postgres"), "postgresql");
        assert_eq!(super::db_system("mysql"), "mysql");
    }
}
