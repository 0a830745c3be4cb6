//! The SQL safety policy: every statement a plugin sends to a SQL source is parsed for the
//! source's dialect and classified before it runs. No keyword matching: the parsed statement
//! tree is walked, so a write hidden in a CTE, an `EXPLAIN ANALYZE`, a `SELECT ... INTO` or a
//! second statement behind a comment is found where it is.
//!
//! Read-only sources accept reads only (and run them in read-only transactions as well);
//! writable sources accept reads and DML; session, transaction, administrative and file or
//! program access statements are refused everywhere. `sql::execute` runs what this accepts.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Query, Select, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlDialect {
    Postgres,
    Mysql,
    Sqlite,
    /// Trino and Presto (ANSI SQL with their extensions), reached over HTTP by a connector.
    Trino,
}

impl SqlDialect {
    fn parser_dialect(self) -> Box<dyn Dialect> {
        match self {
            Self::Postgres => Box::new(PostgreSqlDialect {}),
            Self::Mysql => Box::new(MySqlDialect {}),
            Self::Sqlite => Box::new(SQLiteDialect {}),
            Self::Trino => Box::new(GenericDialect {}),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
            Self::Trino => "trino",
        }
    }

    /// `postgres`, `mysql` (or `mariadb`), `sqlite`, `trino` (or `presto`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::Mysql),
            "sqlite" => Some(Self::Sqlite),
            "trino" | "presto" => Some(Self::Trino),
            _ => None,
        }
    }
}

/// What a statement does, once accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    Read,
    /// INSERT, UPDATE, DELETE, MERGE: only on writable sources.
    Write,
}

/// Why a statement was refused, in words for the model and the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Functions refused in every statement: they act on the server, its files or other sessions,
/// or change state from inside a SELECT.
const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL: server control, files, large objects, remote queries, sequences, settings.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_file_write",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "set_config",
    "nextval",
    "setval",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "query_to_xml",
    // MySQL / MariaDB: files and locks.
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "sys_exec",
    "sys_eval",
    // SQLite: extensions, files.
    "load_extension",
    "readfile",
    "writefile",
    "edit",
];

/// Name prefixes refused like `DENIED_FUNCTIONS`: whole families (advisory locks, which
/// outlive the transaction on a pooled connection; dblink, which writes through another
/// connection; large objects; XML exports that run arbitrary queries).
const DENIED_PREFIXES: &[&str] = &["pg_advisory", "pg_try_advisory", "dblink", "lo_"];
const DENIED_SUFFIXES: &[&str] = &["_to_xml", "_to_xmlschema", "_to_xml_and_xmlschema"];

fn is_denied_function(name: &str) -> bool {
    DENIED_FUNCTIONS.contains(&name)
        || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
        || DENIED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The last part of a (possibly qualified, quoted) function name, lower-cased.
fn function_name(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|part| {
            part.to_string()
                .trim_matches(['"', '`'])
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn refuse_function(name: &str) -> ControlFlow<Refusal> {
    ControlFlow::Break(Refusal(format!(
        "the function `{name}` is not allowed: it acts on the server, its files or other sessions"
    )))
}

/// MySQL and MariaDB run the text of `/*! ... */` and `/*M! ... */` comments, and obey
/// optimizer hints in `/*+ ... */` (which can lift the statement timeout); the parser sees
/// them differently from the server, so a statement that contains one is refused.
fn mysql_executable_comment(statement: &str) -> Option<&'static str> {
    let bytes = statement.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) => {
                if c == b'\\' && q != b'`' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' | b'`' => quote = Some(c),
                b'#' => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    match (bytes.get(i + 2), bytes.get(i + 3)) {
                        (Some(b'!'), _) => return Some("/*! ... */"),
                        (Some(b'M' | b'm'), Some(b'!')) => return Some("/*M! ... */"),
                        (Some(b'+'), _) => return Some("/*+ ... */ (optimizer hints)"),
                        _ => {}
                    }
                    // Skip an ordinary comment to its end.
                    i += 2;
                    while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                        i += 1;
                    }
                    i += 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Parse and classify one statement for a source.
pub fn check(
    dialect: SqlDialect,
    statement: &str,
    writable: bool,
) -> Result<StatementClass, Refusal> {
    if dialect == SqlDialect::Mysql
        && let Some(comment) = mysql_executable_comment(statement)
    {
        return Err(Refusal(format!(
            "{comment} comments are not allowed: MySQL and MariaDB execute or obey their contents; remove the comment"
        )));
    }
    let parsed = Parser::parse_sql(dialect.parser_dialect().as_ref(), statement).map_err(|e| {
        Refusal(format!(
            "the statement could not be parsed as {dialect:?} SQL: {e}"
        ))
    })?;
    let [statement] = parsed.as_slice() else {
        return Err(Refusal(format!(
            "send exactly one statement per call ({} found)",
            parsed.len()
        )));
    };
    let mut walker = Walker::default();
    if let ControlFlow::Break(refusal) = statement.visit(&mut walker) {
        return Err(refusal);
    }
    let class = if walker.writes.is_empty() {
        StatementClass::Read
    } else {
        StatementClass::Write
    };
    if class == StatementClass::Write && !writable {
        return Err(Refusal(format!(
            "this source is read-only and the statement writes ({}); ask the operator for a writable source",
            walker.writes.join(", ")
        )));
    }
    Ok(class)
}

#[derive(Default)]
struct Walker {
    writes: Vec<&'static str>,
}

fn refuse(what: &str) -> ControlFlow<Refusal> {
    ControlFlow::Break(Refusal(format!(
        "{what} is not allowed through the SQL capability"
    )))
}

impl Visitor for Walker {
    type Break = Refusal;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        match statement {
            Statement::Query(_)
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCreate { .. }
            | Statement::ExplainTable { .. }
            | Statement::Explain { .. } => ControlFlow::Continue(()),
            // Only reading PRAGMAs: the introspection calls (`PRAGMA table_info('t')`) and
            // settings read without a value (`PRAGMA user_version`); some value-less PRAGMAs
            // act (`optimize`, `wal_checkpoint`), so those are listed, not guessed.
            Statement::Pragma { value, is_eq, .. } => {
                if *is_eq || value.is_some() && !is_read_pragma_call(statement) {
                    refuse("a PRAGMA that sets a value")
                } else if value.is_none() && !is_read_pragma_setting(statement) {
                    refuse("this PRAGMA (it is not one of the read-only ones)")
                } else {
                    ControlFlow::Continue(())
                }
            }
            Statement::Insert(_) => {
                self.writes.push("INSERT");
                ControlFlow::Continue(())
            }
            Statement::Update { .. } => {
                self.writes.push("UPDATE");
                ControlFlow::Continue(())
            }
            Statement::Delete(_) => {
                self.writes.push("DELETE");
                ControlFlow::Continue(())
            }
            Statement::Merge { .. } => {
                self.writes.push("MERGE");
                ControlFlow::Continue(())
            }
            Statement::Copy { .. } => refuse("COPY (file and program access)"),
            Statement::LoadData { .. } => refuse("LOAD DATA (file access)"),
            Statement::Set(_) => refuse("SET (session state is managed by the host)"),
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. } => {
                refuse("transaction control (the host runs each statement in its own transaction)")
            }
            Statement::Call(_) => refuse("CALL (procedures can do anything)"),
            Statement::Vacuum(_) => refuse("VACUUM"),
            other => {
                let kind = format!("{other}");
                let first_word = kind
                    .split_whitespace()
                    .next()
                    .unwrap_or("this statement")
                    .to_uppercase();
                ControlFlow::Break(Refusal(format!(
                    "{first_word} is not allowed through the SQL capability: only queries and, on writable sources, INSERT, UPDATE, DELETE and MERGE"
                )))
            }
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if !query.locks.is_empty() {
            return refuse("SELECT ... FOR UPDATE/SHARE (row locks)");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refusal> {
        if select.into.is_some() {
            return refuse("SELECT ... INTO (it creates a table or writes a file)");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        if let Expr::Function(function) = expr {
            let name = function_name(&function.name);
            if is_denied_function(&name) {
                return refuse_function(&name);
            }
        }
        ControlFlow::Continue(())
    }

    /// Functions called in FROM (`SELECT * FROM pg_read_file(...)`) are table factors, not
    /// expressions.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        let name = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => function_name(name),
            _ => return ControlFlow::Continue(()),
        };
        if is_denied_function(&name) {
            return refuse_function(&name);
        }
        ControlFlow::Continue(())
    }
}

/// PRAGMAs that, without a value, only report a setting or list something.
fn is_read_pragma_setting(statement: &Statement) -> bool {
    let Statement::Pragma { name, .. } = statement else {
        return false;
    };
    let name = name.to_string().to_ascii_lowercase();
    let pragma = name.rsplit('.').next().unwrap_or(&name);
    matches!(
        pragma,
        "application_id"
            | "auto_vacuum"
            | "cache_size"
            | "collation_list"
            | "compile_options"
            | "data_version"
            | "database_list"
            | "encoding"
            | "foreign_keys"
            | "freelist_count"
            | "function_list"
            | "journal_mode"
            | "module_list"
            | "page_count"
            | "page_size"
            | "pragma_list"
            | "query_only"
            | "schema_version"
            | "synchronous"
            | "table_list"
            | "user_version"
    )
}

/// The introspection PRAGMAs that take an argument and only read.
fn is_read_pragma_call(statement: &Statement) -> bool {
    let Statement::Pragma { name, is_eq, .. } = statement else {
        return false;
    };
    let name = name.to_string().to_ascii_lowercase();
    let pragma = name.rsplit('.').next().unwrap_or(&name);
    !*is_eq
        && matches!(
            pragma,
            "table_info"
                | "table_xinfo"
                | "index_list"
                | "index_info"
                | "index_xinfo"
                | "foreign_key_list"
                | "table_list"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SqlDialect; 3] = [SqlDialect::Postgres, SqlDialect::Mysql, SqlDialect::Sqlite];

    fn refused(dialect: SqlDialect, sql: &str, writable: bool) -> String {
        match check(dialect, sql, writable) {
            Ok(class) => panic!("{dialect:?} accepted `{sql}` as {class:?}"),
            Err(refusal) => refusal.0,
        }
    }

    #[test]
    fn plain_reads_are_accepted_everywhere() {
        for dialect in ALL {
            for sql in [
                "SELECT 1",
                "SELECT id, name FROM users WHERE id = 5 ORDER BY name LIMIT 10",
                "WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM recent",
                "SELECT a.x FROM a JOIN b ON a.id = b.id UNION SELECT y FROM c",
                "EXPLAIN SELECT * FROM t",
                "select ';' as semicolon, '--' as dashes",
            ] {
                assert_eq!(
                    check(dialect, sql, false),
                    Ok(StatementClass::Read),
                    "{dialect:?}: {sql}"
                );
            }
        }
    }

    /// The bypass corpus: every case is refused on every dialect that can parse it, on a
    /// read-only source.
    #[test]
    fn the_bypass_corpus_is_refused() {
        let corpus: &[(&[SqlDialect], &str)] = &[
            (
                &ALL,
                "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
            ),
            (&[SqlDialect::Postgres], "EXPLAIN ANALYZE DELETE FROM users"),
            (&ALL, "EXPLAIN DELETE FROM users"),
            (&[SqlDialect::Postgres], "SELECT * INTO backup FROM users"),
            (
                &[SqlDialect::Mysql],
                "SELECT * FROM users INTO OUTFILE '/tmp/x'",
            ),
            (&ALL, "SELECT 1; DROP TABLE users"),
            (&ALL, "SELECT 1 /* it's fine; */; DELETE FROM users -- '"),
            (&ALL, "SELECT '1'';DROP TABLE users;--'; DELETE FROM t"),
            (&ALL, "COMMIT; DROP TABLE users"),
            (
                &[SqlDialect::Postgres],
                "SELECT * FROM pg_read_file('/etc/passwd')",
            ),
            (
                &[SqlDialect::Postgres],
                "SELECT * FROM pg_catalog.pg_ls_dir('.')",
            ),
            (
                &[SqlDialect::Postgres],
                "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)",
            ),
            (&[SqlDialect::Postgres], "SELECT pg_try_advisory_lock(1)"),
            (
                &[SqlDialect::Postgres],
                "SELECT * FROM pg_advisory_lock_shared(1)",
            ),
            (
                &[SqlDialect::Postgres],
                "SELECT query_to_xml_and_xmlschema('select 1', true, true, '')",
            ),
            (&[SqlDialect::Mysql], "SELECT 1 /*M!, GET_LOCK('x', 0) */"),
            (
                &[SqlDialect::Mysql],
                "SELECT 1 /*!50000 INTO OUTFILE '/tmp/x' */",
            ),
            (
                &[SqlDialect::Mysql],
                "SELECT /*+ MAX_EXECUTION_TIME(100000000) */ 1",
            ),
            (
                &[SqlDialect::Mysql],
                "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT 1",
            ),
            (&[SqlDialect::Sqlite], "PRAGMA optimize"),
            (&[SqlDialect::Sqlite], "PRAGMA wal_checkpoint"),
            (&[SqlDialect::Sqlite], "PRAGMA incremental_vacuum"),
            (&ALL, "COMMIT"),
            (&ALL, "BEGIN"),
            (
                &[SqlDialect::Postgres, SqlDialect::Mysql],
                "SET search_path = evil",
            ),
            (
                &[SqlDialect::Postgres, SqlDialect::Mysql],
                "SET SESSION sql_mode = ''",
            ),
            (&[SqlDialect::Postgres, SqlDialect::Sqlite], "VACUUM"),
            (&[SqlDialect::Sqlite], "PRAGMA writable_schema = 1"),
            (&[SqlDialect::Sqlite], "PRAGMA journal_mode = DELETE"),
            (&[SqlDialect::Postgres], "SELECT pg_terminate_backend(123)"),
            (
                &[SqlDialect::Postgres],
                "SELECT * FROM users WHERE pg_cancel_backend(1)",
            ),
            (
                &[SqlDialect::Postgres],
                "SELECT pg_read_file('/etc/passwd')",
            ),
            (&[SqlDialect::Postgres], "SELECT nextval('ids')"),
            (
                &[SqlDialect::Postgres],
                "SELECT set_config('role', 'admin', false)",
            ),
            (
                &[SqlDialect::Mysql],
                "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
            ),
            (&[SqlDialect::Mysql], "SELECT LOAD_FILE('/etc/passwd')"),
            (&[SqlDialect::Postgres, SqlDialect::Mysql], "CALL cleanup()"),
            (&[SqlDialect::Postgres], "COPY users TO PROGRAM 'curl evil'"),
            (&[SqlDialect::Postgres], "COPY users FROM '/etc/passwd'"),
            (&ALL, "DELETE FROM users"),
            (&ALL, "UPDATE users SET admin = true"),
            (&ALL, "INSERT INTO users (id) VALUES (1)"),
            (&ALL, "DROP TABLE users"),
            (&ALL, "CREATE TABLE t (x INT)"),
            (&ALL, "ALTER TABLE users ADD COLUMN x INT"),
            (
                &[SqlDialect::Postgres, SqlDialect::Mysql],
                "TRUNCATE TABLE users",
            ),
            (
                &[SqlDialect::Postgres, SqlDialect::Mysql],
                "GRANT ALL ON users TO public",
            ),
            (
                &[SqlDialect::Postgres, SqlDialect::Mysql],
                "SELECT * FROM users FOR UPDATE",
            ),
            (&[SqlDialect::Sqlite], "ATTACH DATABASE '/tmp/x.db' AS x"),
            (
                &[SqlDialect::Sqlite],
                "SELECT load_extension('/tmp/evil.so')",
            ),
            (
                &ALL,
                "SELECT * FROM (SELECT 1) AS t WHERE 1 = (SELECT 1); SELECT 2",
            ),
            (&ALL, ""),
            (&ALL, "this is not sql"),
        ];
        for (dialects, sql) in corpus {
            for dialect in *dialects {
                let reason = refused(*dialect, sql, false);
                assert!(!reason.is_empty(), "{dialect:?}: {sql}");
            }
        }
    }

    #[test]
    fn writable_sources_take_dml_but_not_ddl_or_session_changes() {
        for dialect in ALL {
            assert_eq!(
                check(dialect, "DELETE FROM t WHERE id = 1", true),
                Ok(StatementClass::Write)
            );
            assert_eq!(
                check(dialect, "INSERT INTO t (id) VALUES (1)", true),
                Ok(StatementClass::Write)
            );
            assert_eq!(
                check(
                    dialect,
                    "WITH d AS (DELETE FROM t RETURNING id) SELECT * FROM d",
                    true
                ),
                Ok(StatementClass::Write),
                "{dialect:?}"
            );
            assert!(refused(dialect, "DROP TABLE t", true).contains("DROP"));
            assert!(check(dialect, "COMMIT", true).is_err());
        }
    }

    #[test]
    fn refusals_say_why() {
        assert!(
            refused(SqlDialect::Postgres, "SELECT 1; SELECT 2", false)
                .contains("exactly one statement")
        );
        assert!(refused(SqlDialect::Postgres, "DELETE FROM t", false).contains("read-only"));
        assert!(
            refused(
                SqlDialect::Postgres,
                "SELECT pg_terminate_backend(1)",
                false
            )
            .contains("pg_terminate_backend")
        );
        assert!(refused(SqlDialect::Postgres, "SELECT * INTO x FROM t", false).contains("INTO"));
    }

    #[test]
    fn read_pragmas_are_accepted_on_sqlite() {
        for sql in [
            "PRAGMA table_info('users')",
            "PRAGMA user_version",
            "PRAGMA foreign_keys",
        ] {
            assert_eq!(
                check(SqlDialect::Sqlite, sql, false),
                Ok(StatementClass::Read),
                "{sql}"
            );
        }
    }

    #[test]
    fn comment_markers_inside_strings_and_plain_comments_are_fine_on_mysql() {
        for sql in [
            "SELECT '/*! not a comment */' AS x",
            "SELECT 1 /* an ordinary comment */",
            "SELECT `/*+` FROM t",
            "SELECT 'it''s /*M! */' -- /*! in a line comment\n",
        ] {
            assert_eq!(
                check(SqlDialect::Mysql, sql, false),
                Ok(StatementClass::Read),
                "{sql}"
            );
        }
    }
}
