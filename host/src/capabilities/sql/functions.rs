//! Which functions a statement may call, per dialect: an allowlist of read-only, side-effect
//! free functions (the `functions/*.txt` lists, extended by the operator under
//! `data.sql_policy.allow_functions.DIALECT`), and a hard-denied set that nothing extends.
//!
//! Names are compared after normalising them exactly as the server resolves them: PostgreSQL
//! folds unquoted names to lower case and keeps quoted ones as written; MySQL, MariaDB,
//! SQLite and Trino compare function names without regard to ASCII case. A name with any
//! non-ASCII character is never allowed, so no Unicode case folding can make two spellings
//! meet on the server but differ here.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::policy::{Refusal, SqlDialect};

/// The built-in allowlists, one name a line (`#` starts a comment).
static POSTGRES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| names(include_str!("functions/postgres.txt")));
static MYSQL: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| names(include_str!("functions/mysql.txt")));
static SQLITE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| names(include_str!("functions/sqlite.txt")));
static TRINO: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| names(include_str!("functions/trino.txt")));

/// PostgreSQL functions off the allowlist that field notation (`(x).f`, `rel.f`) can call.
static POSTGRES_FIELD_CALLS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("functions/postgres_field_calls.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|name| !name.is_empty())
        .collect()
});

/// Functions SQL syntax spells as calls on every dialect (sqlparser parses them as function
/// calls even where the server treats them as expressions).
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "current_catalog",
    "current_schema",
    "user",
    "row",
    "exists",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlserialize",
    "xmlpi",
    "xmlroot",
    "xmlexists",
    "normalize",
    "position",
    "substring",
    "trim",
    "overlay",
    "extract",
];

fn names(list: &'static str) -> HashSet<&'static str> {
    list.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|name| !name.is_empty())
        .chain(SYNTAX_FUNCTIONS.iter().copied())
        .collect()
}

fn builtin(dialect: SqlDialect) -> &'static HashSet<&'static str> {
    match dialect {
        SqlDialect::Postgres => &POSTGRES,
        SqlDialect::Mysql => &MYSQL,
        SqlDialect::Sqlite => &SQLITE,
        SqlDialect::Trino => &TRINO,
    }
}

/// Why a name is hard-denied, if it is: functions that read or write server files, act on
/// other sessions or the server, hold locks past the call, write WAL or replication state,
/// burn transaction ids, change settings, or run SQL text of their own. No configuration
/// allows these.
pub fn hard_denied(dialect: SqlDialect, name: &str) -> Option<&'static str> {
    const FILES: &str = "it reads or writes files on the database server";
    const SERVER: &str = "it acts on the server or on other sessions";
    const LOCKS: &str = "it takes locks that outlive the call";
    const NESTED: &str = "it runs SQL text of its own, which the policy cannot check";
    const STATE: &str = "it changes server, session or replication state";
    let exact: &[(&str, &str)] = match dialect {
        SqlDialect::Postgres => &[
            ("pg_read_file", FILES),
            ("pg_read_file_old", FILES),
            ("pg_read_binary_file", FILES),
            ("pg_stat_file", FILES),
            ("pg_file_write", FILES),
            ("pg_file_rename", FILES),
            ("pg_file_unlink", FILES),
            ("pg_file_sync", FILES),
            ("pg_logdir_ls", FILES),
            ("pg_current_logfile", FILES),
            ("pg_terminate_backend", SERVER),
            ("pg_cancel_backend", SERVER),
            ("pg_reload_conf", SERVER),
            ("pg_rotate_logfile", SERVER),
            ("pg_rotate_logfile_old", SERVER),
            ("pg_promote", SERVER),
            ("pg_switch_wal", SERVER),
            ("pg_create_restore_point", SERVER),
            ("pg_log_backend_memory_contexts", SERVER),
            ("pg_import_system_collations", STATE),
            ("pg_wal_replay_pause", SERVER),
            ("pg_wal_replay_resume", SERVER),
            ("pg_notify", STATE),
            ("pg_sleep", SERVER),
            ("pg_sleep_for", SERVER),
            ("pg_sleep_until", SERVER),
            ("set_config", STATE),
            ("setseed", STATE),
            ("nextval", STATE),
            ("setval", STATE),
            ("txid_current", STATE),
            ("pg_current_xact_id", STATE),
            ("pg_export_snapshot", STATE),
            ("pg_stat_clear_snapshot", STATE),
            ("pg_stat_force_next_flush", STATE),
            ("query_to_xml", NESTED),
            ("query_to_xmlschema", NESTED),
            ("query_to_xml_and_xmlschema", NESTED),
            ("cursor_to_xml", NESTED),
            ("cursor_to_xmlschema", NESTED),
            ("ts_stat", NESTED),
            ("ts_rewrite", NESTED),
            ("dblink", NESTED),
            // Extensions' functions that run SQL text or change session state: tablefunc,
            // xml2, isn, pg_trgm.
            ("connectby", NESTED),
            ("xpath_table", NESTED),
            ("isn_weak", STATE),
            ("set_limit", STATE),
            ("gin_clean_pending_list", STATE),
            ("brin_summarize_range", STATE),
            ("brin_summarize_new_values", STATE),
            ("brin_desummarize_range", STATE),
            ("system", SERVER),
        ],
        SqlDialect::Mysql => &[
            ("load_file", FILES),
            ("get_lock", LOCKS),
            ("release_lock", LOCKS),
            ("release_all_locks", LOCKS),
            ("is_free_lock", LOCKS),
            ("is_used_lock", LOCKS),
            ("sleep", SERVER),
            ("benchmark", SERVER),
            ("sys_exec", SERVER),
            ("sys_eval", SERVER),
            ("master_pos_wait", SERVER),
            ("master_gtid_wait", SERVER),
            ("source_pos_wait", SERVER),
            ("wait_for_executed_gtid_set", SERVER),
            ("last_insert_id", STATE),
            ("nextval", STATE),
            ("setval", STATE),
            ("lastval", STATE),
            ("updatexml", STATE),
        ],
        SqlDialect::Sqlite => &[
            ("load_extension", FILES),
            ("readfile", FILES),
            ("writefile", FILES),
            ("edit", SERVER),
            ("fts3_tokenizer", SERVER),
            ("sqlite_log", FILES),
            ("optimize", STATE),
            ("fsdir", FILES),
            ("zipfile", FILES),
            ("sqlar", FILES),
            ("pragma_optimize", STATE),
        ],
        SqlDialect::Trino => &[("query", NESTED), ("raw_query", NESTED)],
    };
    if let Some((_, why)) = exact.iter().find(|(denied, _)| *denied == name) {
        return Some(why);
    }
    let prefixes: &[(&str, &str)] = match dialect {
        SqlDialect::Postgres => &[
            ("pg_advisory", LOCKS),
            ("pg_try_advisory", LOCKS),
            ("pg_ls_", FILES),
            ("lo_", FILES),
            ("dblink", NESTED),
            ("crosstab", NESTED),
            ("pg_backup_", STATE),
            ("pg_start_backup", STATE),
            ("pg_stop_backup", STATE),
            ("pg_create_", STATE),
            ("pg_drop_replication", STATE),
            ("pg_copy_", STATE),
            ("pg_replication_", STATE),
            ("pg_logical_", STATE),
            ("pg_stat_reset", STATE),
            ("txid_current", STATE),
            ("pg_current_xact_id", STATE),
            ("binary_upgrade_", STATE),
            ("pg_file_", FILES),
        ],
        SqlDialect::Mysql => &[("wsrep_", SERVER)],
        SqlDialect::Sqlite => &[],
        SqlDialect::Trino => &[],
    };
    if let Some((_, why)) = prefixes.iter().find(|(p, _)| name.starts_with(p)) {
        return Some(why);
    }
    // The XML exports of whole tables, schemas and databases run queries of their own.
    if dialect == SqlDialect::Postgres && name.contains("_to_xml") {
        return Some(NESTED);
    }
    if name.ends_with("replication_slot") || name.contains("replication_slot_") {
        return Some(STATE);
    }
    None
}

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const POSTGRES_MAX_IDENTIFIER: usize = 63;

/// One part of a function name as the server resolves it, or why it cannot be checked.
pub fn normalize(dialect: SqlDialect, ident: &Ident) -> Result<String, Refusal> {
    normalize_part(dialect, &ident.value, ident.quote_style)
}

/// `normalize` for a name part given as its text (quotes removed, doubled quotes undoubled)
/// and the quote it was written in, if any.
pub fn normalize_part(
    dialect: SqlDialect,
    value: &str,
    quote_style: Option<char>,
) -> Result<String, Refusal> {
    if !value.is_ascii() {
        return Err(Refusal(format!(
            "the function name `{}` has non-ASCII characters; only ASCII function names are accepted",
            value.escape_debug()
        )));
    }
    if value.is_empty() {
        return Err(Refusal("an empty function name is not accepted".into()));
    }
    let mut name = match (dialect, quote_style) {
        // PostgreSQL keeps quoted names as written: `"LOWER"` is not `lower`.
        (SqlDialect::Postgres, Some(_)) => value.to_owned(),
        _ => value.to_ascii_lowercase(),
    };
    // PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes (ASCII here, so a char
    // boundary) before it looks the function up.
    if dialect == SqlDialect::Postgres {
        name.truncate(POSTGRES_MAX_IDENTIFIER);
    }
    Ok(name)
}

/// Every part of a (possibly qualified) function name, normalised.
pub fn normalize_name(dialect: SqlDialect, name: &ObjectName) -> Result<Vec<String>, Refusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize(dialect, ident),
            ObjectNamePart::Function(_) => Err(Refusal(format!(
                "the function name `{name}` is computed; call functions by their plain name"
            ))),
        })
        .collect()
}

/// The schema (and catalog) that holds a dialect's built-in functions, when a call may be
/// qualified with it: `pg_catalog.lower(...)`, Trino's `system.builtin.lower(...)`.
fn is_builtin_qualifier(dialect: SqlDialect, qualifier: &[String]) -> bool {
    match (dialect, qualifier) {
        (SqlDialect::Postgres, [schema]) => schema == "pg_catalog",
        (SqlDialect::Trino, [schema]) => schema == "builtin",
        (SqlDialect::Trino, [catalog, schema]) => catalog == "system" && schema == "builtin",
        _ => false,
    }
}

/// Whether PostgreSQL may read the field selection `.name` (normalised) as a call of a
/// function off the allowlist: a function of pg_catalog that takes one argument, any `pg_`
/// name (later versions and extensions add such functions), a hard-denied name, or one of
/// `source_calls`, the functions a source's search path makes callable with one argument
/// (extensions' and users' functions, read from the server when a connection opens).
pub fn postgres_field_may_call(name: &str, source_calls: &HashSet<String>) -> bool {
    POSTGRES_FIELD_CALLS.contains(name)
        || name.starts_with("pg_")
        || hard_denied(SqlDialect::Postgres, name).is_some()
        || source_calls.contains(name)
}

/// The functions statements may call on each dialect: the built-in lists plus the operator's.
#[derive(Debug, Clone, Default)]
pub struct FunctionAllowlist {
    /// Operator additions by dialect: plain names (`my_udf`) or qualified ones
    /// (`analytics.score`), normalised.
    extra: [HashSet<String>; 4],
}

fn dialect_index(dialect: SqlDialect) -> usize {
    match dialect {
        SqlDialect::Postgres => 0,
        SqlDialect::Mysql => 1,
        SqlDialect::Sqlite => 2,
        SqlDialect::Trino => 3,
    }
}

impl FunctionAllowlist {
    /// Add the operator's names for a dialect. `key` is the config path of the list, for
    /// error messages. A name must be a plain or dot-qualified SQL identifier in lower case
    /// and must not be hard-denied.
    pub fn extend(
        &mut self,
        dialect: SqlDialect,
        key: &str,
        names: &[String],
    ) -> Result<(), String> {
        for (index, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.split('.').all(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !valid {
                return Err(format!(
                    "{key}[{index}]: `{name}` is not a function name: use lower-case ASCII letters, digits and `_`, optionally qualified as `schema.name`"
                ));
            }
            let last = name.rsplit('.').next().unwrap_or(name);
            if let Some(why) = hard_denied(dialect, last) {
                return Err(format!("{key}[{index}]: `{name}` cannot be allowed: {why}"));
            }
            self.extra[dialect_index(dialect)].insert(name.clone());
        }
        Ok(())
    }

    /// Whether `name` (normalised, unqualified) is on the dialect's built-in allowlist.
    pub fn allows_builtin(&self, dialect: SqlDialect, name: &str) -> bool {
        builtin(dialect).contains(name)
    }

    /// Whether a call of the normalised `parts` may run; the refusal says why not and how to
    /// allow a function the operator trusts.
    pub fn check(&self, dialect: SqlDialect, parts: &[String]) -> Result<(), Refusal> {
        let Some((name, qualifier)) = parts.split_last() else {
            return Err(Refusal("a function call without a name".into()));
        };
        if let Some(why) = hard_denied(dialect, name) {
            return Err(Refusal(format!(
                "the function `{}` is not allowed: {why}",
                parts.join(".")
            )));
        }
        let extra = &self.extra[dialect_index(dialect)];
        let allowed = if qualifier.is_empty() || is_builtin_qualifier(dialect, qualifier) {
            builtin(dialect).contains(name.as_str()) || extra.contains(name)
        } else {
            extra.contains(&parts.join("."))
        };
        if allowed {
            return Ok(());
        }
        Err(Refusal(format!(
            "the function `{full}` is not on the {dialect} allowlist of read-only functions; if it only reads and has no side effects, the operator can add `{full}` under `data.sql_policy.allow_functions.{dialect}`",
            full = parts.join("."),
            dialect = dialect.name(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn builtin_lists_hold_no_hard_denied_name() {
        for dialect in [
            SqlDialect::Postgres,
            SqlDialect::Mysql,
            SqlDialect::Sqlite,
            SqlDialect::Trino,
        ] {
            for name in builtin(dialect) {
                assert!(
                    hard_denied(dialect, name).is_none(),
                    "{dialect:?} lists `{name}`, which is hard-denied"
                );
                assert!(
                    name.is_ascii() && *name == name.to_ascii_lowercase(),
                    "{dialect:?}: `{name}` must be lower-case ASCII"
                );
            }
        }
    }

    #[test]
    fn common_analytical_functions_are_allowed() {
        let allow = FunctionAllowlist::default();
        for (dialect, name) in [
            (SqlDialect::Postgres, "date_trunc"),
            (SqlDialect::Postgres, "count"),
            (SqlDialect::Postgres, "percentile_cont"),
            (SqlDialect::Postgres, "jsonb_agg"),
            (SqlDialect::Postgres, "lower"),
            (SqlDialect::Postgres, "now"),
            (SqlDialect::Mysql, "date_format"),
            (SqlDialect::Mysql, "group_concat"),
            (SqlDialect::Mysql, "json_extract"),
            (SqlDialect::Sqlite, "strftime"),
            (SqlDialect::Sqlite, "json_each"),
            (SqlDialect::Trino, "approx_percentile"),
            (SqlDialect::Trino, "date_diff"),
        ] {
            assert_eq!(
                allow.check(dialect, &parts(&[name])),
                Ok(()),
                "{dialect:?} {name}"
            );
        }
        assert_eq!(
            allow.check(SqlDialect::Postgres, &parts(&["pg_catalog", "lower"])),
            Ok(())
        );
        assert_eq!(
            allow.check(SqlDialect::Trino, &parts(&["system", "builtin", "lower"])),
            Ok(())
        );
    }

    #[test]
    fn unknown_and_qualified_user_functions_need_the_operator() {
        let mut allow = FunctionAllowlist::default();
        let refusal = allow
            .check(SqlDialect::Postgres, &parts(&["my_udf"]))
            .unwrap_err();
        assert!(
            refusal
                .0
                .contains("data.sql_policy.allow_functions.postgres")
        );
        // A qualified call of a listed name in another schema is a user function.
        assert!(
            allow
                .check(SqlDialect::Postgres, &parts(&["public", "lower"]))
                .is_err()
        );
        allow
            .extend(
                SqlDialect::Postgres,
                "data.sql_policy.allow_functions.postgres",
                &["my_udf".into(), "analytics.score".into()],
            )
            .unwrap();
        assert_eq!(
            allow.check(SqlDialect::Postgres, &parts(&["my_udf"])),
            Ok(())
        );
        assert_eq!(
            allow.check(SqlDialect::Postgres, &parts(&["analytics", "score"])),
            Ok(())
        );
        assert!(allow.check(SqlDialect::Mysql, &parts(&["my_udf"])).is_err());
    }

    #[test]
    fn the_operator_cannot_allow_a_hard_denied_or_malformed_name() {
        let mut allow = FunctionAllowlist::default();
        let key = "data.sql_policy.allow_functions.postgres";
        for name in [
            "pg_read_file",
            "pg_catalog.pg_ls_dir",
            "pg_advisory_lock",
            "dblink_exec",
            "pg_logical_emit_message",
            "pg_create_logical_replication_slot",
            "table_to_xml",
            "ts_stat",
        ] {
            let error = allow
                .extend(SqlDialect::Postgres, key, &[name.into()])
                .unwrap_err();
            assert!(
                error.contains(key) && error.contains("cannot be allowed"),
                "{error}"
            );
        }
        for name in ["", "Upper", "a-b", "x.", "1abc", "lo wer", "ünïcode"] {
            let error = allow
                .extend(SqlDialect::Postgres, key, &[name.into()])
                .unwrap_err();
            assert!(error.contains("not a function name"), "{name}: {error}");
        }
    }

    #[test]
    fn postgres_quoted_names_keep_their_case() {
        let quoted = Ident::with_quote('"', "LOWER");
        let plain = Ident::new("LOWER");
        assert_eq!(normalize(SqlDialect::Postgres, &quoted).unwrap(), "LOWER");
        assert_eq!(normalize(SqlDialect::Postgres, &plain).unwrap(), "lower");
        assert_eq!(normalize(SqlDialect::Mysql, &quoted).unwrap(), "lower");
        assert!(normalize(SqlDialect::Trino, &Ident::new("\u{212a}ill")).is_err());
    }
}
