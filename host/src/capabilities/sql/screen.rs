//! The SQL policy's fast path: a screen over the canonical text's tokens that proves a
//! statement is a plain read written in a small, conservative subset of SQL, or declines and
//! leaves the statement to the parse and walk in `policy`, which then accepts or refuses it.
//! The screen never refuses and never accepts a write; it only saves the parse of the
//! statements that need none.
//!
//! It reads the canonical text of `lexer` (no comments, escape spellings decoded, literals
//! where the server has them) and accepts only when all of these hold:
//! - the statement starts with `SELECT`, `WITH`, `VALUES` or `(`, and only semicolons follow
//!   its first semicolon;
//! - every unquoted word is a plain identifier, a keyword of the read vocabulary below, or a
//!   function on the dialect's allowlist; a word that is a keyword of any of the servers (their
//!   own keyword lists, kept in `keywords/`, and the parser's) but not in that vocabulary
//!   declines, and so do the words that lock, write, call or export (`INTO`, `FOR`, `LOCK`,
//!   `INSERT`, `TABLE`, `PROCEDURE`, ...) whatever else they are;
//! - every call, `name(` or `schema.name(` with the name quoted or not, is on the dialect's
//!   allowlist, normalised exactly as the walk normalises it; a call whose name follows a `.`
//!   of an expression declines;
//! - on PostgreSQL no `.name` selects a field that could be a call (field notation), and on
//!   SQLite no name is a table-valued function used as a table (`pragma_*`, `fsdir`, ...);
//! - every other token is a literal, a number, a parameter, or punctuation and operator
//!   characters of the dialect (no `@` variables on MySQL, no `:name` on SQLite, no braces).
//!
//! What the screen accepts, the walk would accept as a read with the same text: the policy's
//! tests run every statement of their corpora through both and compare.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::functions::{self, FunctionAllowlist};
use super::lexer::Canonical;
use super::policy::{MAX_STATEMENT_TOKENS, SqlDialect, is_sqlite_eponymous_table};

/// Words that shape a read and nothing else on every dialect: the clauses of a query,
/// joins, set operations, windows, predicates, literal and type names, date parts, and the
/// nouns that are keywords somewhere but name columns everywhere (`name`, `status`, ...).
const READ_VOCABULARY: &[&str] = &[
    // Clauses and joins.
    "select",
    "distinct",
    "all",
    "from",
    "where",
    "group",
    "by",
    "having",
    "order",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "limit",
    "offset",
    "fetch",
    "next",
    "rows",
    "row",
    "only",
    "with",
    "recursive",
    "as",
    "materialized",
    "not",
    "union",
    "intersect",
    "except",
    "join",
    "inner",
    "left",
    "right",
    "full",
    "outer",
    "cross",
    "natural",
    "lateral",
    "on",
    "using",
    "values",
    "window",
    "partition",
    "over",
    "range",
    "groups",
    "preceding",
    "following",
    "unbounded",
    "current",
    "exclude",
    "ties",
    "others",
    "no",
    "filter",
    "within",
    "rollup",
    "cube",
    "grouping",
    "sets",
    "ordinality",
    // Predicates and expressions.
    "and",
    "or",
    "xor",
    "in",
    "is",
    "null",
    "true",
    "false",
    "unknown",
    "like",
    "ilike",
    "similar",
    "escape",
    "between",
    "symmetric",
    "asymmetric",
    "case",
    "when",
    "then",
    "else",
    "end",
    "exists",
    "any",
    "some",
    "cast",
    "try_cast",
    "extract",
    "interval",
    "at",
    "time",
    "zone",
    "collate",
    "array",
    "div",
    "mod",
    "regexp",
    "rlike",
    "glob",
    "isnull",
    "notnull",
    "distinctrow",
    "against",
    "boolean",
    "mode",
    "language",
    // Values the server reads from the session without changing it.
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "current_role",
    "current_catalog",
    "current_schema",
    "user",
    // Date and time parts.
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "hour",
    "minute",
    "second",
    "millisecond",
    "microsecond",
    "epoch",
    "dow",
    "doy",
    "isodow",
    "isoyear",
    "century",
    "decade",
    "millennium",
    "timezone",
    "year_month",
    "day_hour",
    "day_minute",
    "day_second",
    "hour_minute",
    "hour_second",
    "minute_second",
    // Types.
    "date",
    "timestamp",
    "timestamptz",
    "int",
    "integer",
    "bigint",
    "smallint",
    "tinyint",
    "mediumint",
    "numeric",
    "decimal",
    "dec",
    "real",
    "double",
    "precision",
    "float",
    "char",
    "character",
    "varchar",
    "varying",
    "nchar",
    "text",
    "bool",
    "json",
    "jsonb",
    "uuid",
    "bytea",
    "blob",
    "binary",
    "varbinary",
    "signed",
    "unsigned",
    "bit",
    "without",
    // Nouns that name columns.
    "name",
    "value",
    "type",
    "status",
    "key",
    "level",
    "source",
    "comment",
    "data",
    "size",
    "position",
    "substring",
    "trim",
    "leading",
    "trailing",
    "both",
    "min",
    "max",
    "count",
    "sum",
    "avg",
    "rank",
    "format",
    "version",
    "role",
    "path",
    "names",
];

/// Words that may stand before `(` without being a call (the parenthesis opens a subquery,
/// a list or the arguments of a syntax form the walk does not check as a call), where the
/// dialect's server cannot have a function of that name: a word a server lets name a function
/// (PostgreSQL's `like` or `join`, MariaDB's `lateral`) is checked as a call there.
const NOT_A_CALL_BEFORE_PARENTHESIS: &[&str] = &[
    "select",
    "from",
    "where",
    "having",
    "group",
    "by",
    "on",
    "using",
    "join",
    "lateral",
    "as",
    "materialized",
    "values",
    "in",
    "exists",
    "any",
    "some",
    "all",
    "and",
    "or",
    "xor",
    "not",
    "is",
    "when",
    "then",
    "else",
    "case",
    "union",
    "intersect",
    "except",
    "distinct",
    "over",
    "filter",
    "within",
    "row",
    "array",
    "cast",
    "try_cast",
    "like",
    "ilike",
    "between",
    "rollup",
    "cube",
    "grouping",
    "sets",
    "partition",
    "limit",
    "offset",
    "with",
];

/// Words that open a clause after a call's closing parenthesis: `count(*) FILTER (WHERE ..)`,
/// `rank() OVER (..)`, `percentile_cont(0.5) WITHIN GROUP (..)`. Anywhere else they are
/// checked as calls (none of them is reserved on PostgreSQL).
const CLAUSES_AFTER_A_CALL: &[&str] = &["filter", "over", "within"];

/// Words that lock, write, call procedures, export or start another statement: whatever
/// else they may be (MySQL's `INSERT()` and `REPLACE()` are string functions), a statement
/// holding one goes to the walk.
const DECLINED_WORDS: &[&str] = &[
    "into",
    "for",
    "lock",
    "share",
    "nowait",
    "skip",
    "locked",
    "insert",
    "update",
    "delete",
    "merge",
    "replace",
    "upsert",
    "returning",
    "truncate",
    "table",
    "procedure",
    "call",
    "execute",
    "exec",
    "do",
    "copy",
    "outfile",
    "dumpfile",
    "load",
    "handler",
    "set",
    "explain",
    "analyze",
    "pragma",
    "attach",
    "detach",
    "vacuum",
    "notify",
    "listen",
    "prepare",
    "deallocate",
    "operator",
    "tablesample",
    "system",
    "create",
    "drop",
    "alter",
    "grant",
    "revoke",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "begin",
    "start",
    "kill",
    "shutdown",
    "use",
    "checkpoint",
    "discard",
    "reset",
    "declare",
    "refresh",
    "reindex",
    "cluster",
    "rename",
    "purge",
    "flush",
    "install",
    "uninstall",
    "optimize",
    "repair",
    "import",
    "export",
    "backup",
    "restore",
    "raise",
    "sleep",
    "benchmark",
];

fn word_set(words: &[&'static str]) -> HashSet<&'static str> {
    words.iter().copied().collect()
}

static READ_WORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| word_set(READ_VOCABULARY));
static PARENTHESIS_WORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| word_set(NOT_A_CALL_BEFORE_PARENTHESIS));
static DECLINED: LazyLock<HashSet<&'static str>> = LazyLock::new(|| word_set(DECLINED_WORDS));

/// The words of a keyword list (one a line, `#` comments), with the category that follows a
/// word on PostgreSQL's list.
fn keyword_lines(file: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    file.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let word = fields.next()?;
            Some((word, fields.next().unwrap_or_default()))
        })
}

const POSTGRES_KEYWORDS: &str = include_str!("keywords/postgres.txt");
const MYSQL_RESERVED: &str = include_str!("keywords/mysql.txt");
const SQLITE_RESERVED: &str = include_str!("keywords/sqlite.txt");
const TRINO_RESERVED: &str = include_str!("keywords/trino.txt");

/// The reserved words of the four servers (the words each refuses as a column alias, in
/// `keywords/`) and of the parser (the words it refuses as one), in lower case.
static RESERVED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    use sqlparser::keywords::{ALL_KEYWORDS, ALL_KEYWORDS_INDEX, RESERVED_FOR_COLUMN_ALIAS};
    let parser_reserved = ALL_KEYWORDS_INDEX
        .iter()
        .zip(ALL_KEYWORDS)
        .filter(|(keyword, _)| RESERVED_FOR_COLUMN_ALIAS.contains(keyword))
        .map(|(_, word)| word.to_ascii_lowercase());
    [
        POSTGRES_KEYWORDS,
        MYSQL_RESERVED,
        SQLITE_RESERVED,
        TRINO_RESERVED,
    ]
    .into_iter()
    .flat_map(keyword_lines)
    .map(|(word, _)| word.to_owned())
    .chain(parser_reserved)
    .collect()
});

/// Per dialect, the words its server cannot take as the name of a function called as
/// `word(...)`: PostgreSQL's reserved and column-name keywords; the other servers' reserved
/// words.
static NO_FUNCTION_NAMES: LazyLock<[HashSet<&'static str>; 4]> = LazyLock::new(|| {
    let words = |file| keyword_lines(file).map(|(word, _)| word).collect();
    [
        keyword_lines(POSTGRES_KEYWORDS)
            .filter(|(_, category)| matches!(*category, "R" | "C"))
            .map(|(word, _)| word)
            .collect(),
        words(MYSQL_RESERVED),
        words(SQLITE_RESERVED),
        words(TRINO_RESERVED),
    ]
});

fn cannot_name_a_function(dialect: SqlDialect, word: &str) -> bool {
    let index = match dialect {
        SqlDialect::Postgres => 0,
        SqlDialect::Mysql => 1,
        SqlDialect::Sqlite => 2,
        SqlDialect::Trino => 3,
    };
    NO_FUNCTION_NAMES[index].contains(word)
}

/// Whether `word` (lower case) is a reserved word of any of the servers or of the parser:
/// outside the read vocabulary and the allowlists, the screen leaves statements with one to
/// the walk.
pub fn is_reserved_word(word: &str) -> bool {
    RESERVED.contains(word)
}

/// The words the screen lets stand before `(` on `dialect` without checking a call (the
/// tests try each against the live servers).
pub fn not_calls_before_parenthesis(dialect: SqlDialect) -> Vec<&'static str> {
    NOT_A_CALL_BEFORE_PARENTHESIS
        .iter()
        .copied()
        .filter(|word| cannot_name_a_function(dialect, word))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted keyword or identifier.
    Word,
    /// A quoted identifier (`"x"`, `` `x` ``, `[x]`).
    Quoted,
    /// A string literal, a dollar-quoted string, a number or a parameter.
    Value,
    Dot,
    Open,
    Close,
    Semicolon,
    /// Commas, brackets, operators.
    Punctuation,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Whether `canonical` is a plain read the walk would accept as one. `false` says nothing
/// about the statement: the walk decides.
pub(super) fn accepts_read(
    dialect: SqlDialect,
    canonical: &Canonical,
    functions: &FunctionAllowlist,
    source_calls: &HashSet<String>,
) -> bool {
    decline_reason(dialect, canonical, functions, source_calls).is_none()
}

/// Why the screen leaves `canonical` to the walk (`None`: it accepts it).
pub(super) fn decline_reason(
    dialect: SqlDialect,
    canonical: &Canonical,
    functions: &FunctionAllowlist,
    source_calls: &HashSet<String>,
) -> Option<Declined> {
    let Some(tokens) = tokenize(dialect, canonical) else {
        return Some(Declined {
            rule: "a token outside the subset",
            at: 0,
        });
    };
    Screen {
        dialect,
        text: &canonical.text,
        tokens: &tokens,
        functions,
        source_calls,
    }
    .accepts()
    .err()
}

/// The rule that made the screen leave a statement to the walk, and the byte offset of the
/// token it met there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declined {
    pub rule: &'static str,
    pub at: usize,
}

/// Split the canonical text into tokens, or `None` for anything outside the subset.
fn tokenize(dialect: SqlDialect, canonical: &Canonical) -> Option<Vec<Token>> {
    let text = canonical.text.as_bytes();
    let mut tokens = Vec::with_capacity(text.len() / 3 + 4);
    let mut literals = canonical.literals.iter().peekable();
    let mut i = 0;
    while i < text.len() {
        // Longer statements go to the walk, which refuses them with the policy's message.
        if tokens.len() > MAX_STATEMENT_TOKENS {
            return None;
        }
        if let Some(literal) = literals.peek().filter(|literal| literal.start == i) {
            let kind = match (dialect, text[i]) {
                // SQLite takes a '...' string where it expects a name (`FROM 'pragma_x'(1)`).
                (SqlDialect::Sqlite, b'\'') => Kind::Quoted,
                (_, b'\'') | (SqlDialect::Postgres, b'$') | (SqlDialect::Mysql, b'"') => {
                    Kind::Value
                }
                (_, b'"' | b'`' | b'[') => Kind::Quoted,
                _ => return None,
            };
            tokens.push(Token {
                kind,
                start: literal.start,
                end: literal.end,
            });
            i = literal.end;
            literals.next();
            continue;
        }
        let c = text[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                // As the servers (and the lexical pass) read names: `$` continues one
                // (PostgreSQL's `audit$1` is one name, not `audit` and a parameter).
                while text
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
                {
                    i += 1;
                }
                // Trino's names have no `$`: what it would read instead is not screened.
                if dialect == SqlDialect::Trino && text[start..i].contains(&b'$') {
                    return None;
                }
                Kind::Word
            }
            c if c.is_ascii_digit() => {
                // Plain decimal numbers only: `1e5`, `0x1F` and `1.x` go to the walk.
                while text.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if text.get(i) == Some(&b'.') {
                    i += 1;
                    while text.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                }
                if text
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
                {
                    return None;
                }
                Kind::Value
            }
            b'$' if dialect == SqlDialect::Postgres => {
                i += 1;
                let digits = i;
                while text.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if i == digits || text.get(i).is_some_and(|&c| c.is_ascii_alphabetic()) {
                    return None;
                }
                Kind::Value
            }
            b'?' if dialect != SqlDialect::Postgres => {
                i += 1;
                Kind::Value
            }
            b'.' => {
                i += 1;
                Kind::Dot
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            b',' | b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<' | b'>' | b'!' | b'|' | b'&'
            | b'^' | b'~' => {
                i += 1;
                Kind::Punctuation
            }
            b'[' | b']' if matches!(dialect, SqlDialect::Postgres | SqlDialect::Trino) => {
                i += 1;
                Kind::Punctuation
            }
            b'@' | b'#' | b'?' | b':' if dialect == SqlDialect::Postgres => {
                i += 1;
                Kind::Punctuation
            }
            _ => return None,
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Some(tokens)
}

struct Screen<'a> {
    dialect: SqlDialect,
    text: &'a str,
    tokens: &'a [Token],
    functions: &'a FunctionAllowlist,
    /// The source's own one-argument functions (field notation can call them).
    source_calls: &'a HashSet<String>,
}

impl Screen<'_> {
    fn word(&self, token: &Token) -> &str {
        &self.text[token.start..token.end]
    }

    fn declined(&self, rule: &'static str, index: usize) -> Declined {
        Declined {
            rule,
            at: self.tokens.get(index).map_or(0, |t| t.start),
        }
    }

    /// `Ok(())` when every rule of the module holds.
    fn accepts(&self) -> Result<(), Declined> {
        let Some(first) = self.tokens.first() else {
            return Err(self.declined("an empty statement", 0));
        };
        let starts_a_read = match first.kind {
            Kind::Open => true,
            Kind::Word => {
                let word = self.word(first);
                ["select", "with", "values"]
                    .iter()
                    .any(|start| word.eq_ignore_ascii_case(start))
            }
            _ => false,
        };
        if !starts_a_read {
            return Err(self.declined("not a SELECT, WITH, VALUES or (", 0));
        }
        let mut lower = [0u8; 64];
        for (index, token) in self.tokens.iter().enumerate() {
            match token.kind {
                Kind::Semicolon => {
                    return if self.tokens[index..]
                        .iter()
                        .all(|t| t.kind == Kind::Semicolon)
                    {
                        Ok(())
                    } else {
                        Err(self.declined("text after a semicolon", index))
                    };
                }
                Kind::Word => {
                    let word = lowercase(self.word(token), &mut lower)
                        .ok_or_else(|| self.declined("a very long word", index))?;
                    self.word_may_stand(word).ok_or_else(|| {
                        self.declined("a keyword outside the read vocabulary", index)
                    })?;
                    self.name_part_may_stand(index, word, None)
                        .ok_or_else(|| self.declined("a name that may call", index))?;
                }
                Kind::Quoted => {
                    let (value, quote) = self.quoted(token);
                    self.name_part_may_stand(index, &value, Some(quote))
                        .ok_or_else(|| self.declined("a name that may call", index))?;
                }
                Kind::Open => self
                    .parenthesis_may_open(index)
                    .ok_or_else(|| self.declined("a call off the allowlist", index))?,
                Kind::Value | Kind::Dot | Kind::Close | Kind::Punctuation => {}
            }
        }
        Ok(())
    }

    /// An unquoted word (lower case) outside the declined words, and either in the read
    /// vocabulary, on the allowlist, or no keyword at all.
    fn word_may_stand(&self, word: &str) -> Option<()> {
        if DECLINED.contains(word) {
            return None;
        }
        if READ_WORDS.contains(word)
            || self.functions.allows_builtin(self.dialect, word)
            || !is_reserved_word(word)
        {
            return Some(());
        }
        None
    }

    /// The checks on a name part wherever it stands: field notation on PostgreSQL,
    /// table-valued functions used as tables on SQLite.
    fn name_part_may_stand(&self, index: usize, value: &str, quote: Option<char>) -> Option<()> {
        match self.dialect {
            SqlDialect::Postgres if self.kind_at(index.wrapping_sub(1)) == Some(Kind::Dot) => {
                let name = functions::normalize_part(self.dialect, value, quote).ok()?;
                (!functions::postgres_field_may_call(&name, self.source_calls)).then_some(())
            }
            SqlDialect::Sqlite if is_sqlite_eponymous_table(value) => None,
            _ => Some(()),
        }
    }

    fn kind_at(&self, index: usize) -> Option<Kind> {
        self.tokens.get(index).map(|t| t.kind)
    }

    /// A `(` after a name is a call, which the allowlist must hold; after anything else it
    /// groups, or opens a subquery or a list.
    fn parenthesis_may_open(&self, index: usize) -> Option<()> {
        let Some(name_end) = index.checked_sub(1) else {
            return Some(());
        };
        if !matches!(self.kind_at(name_end), Some(Kind::Word | Kind::Quoted)) {
            return Some(());
        }
        // The name: `part (. part)*` ending just before the parenthesis.
        let mut first = name_end;
        while first >= 2
            && self.kind_at(first - 1) == Some(Kind::Dot)
            && matches!(self.kind_at(first - 2), Some(Kind::Word | Kind::Quoted))
        {
            first -= 2;
        }
        // `(x).f(...)`, `a[1].f(...)`: not a call form the walk would check; leave it to it.
        if first >= 1 && self.kind_at(first - 1) == Some(Kind::Dot) {
            return None;
        }
        let only = &self.tokens[first];
        if first == name_end && only.kind == Kind::Word {
            let mut buffer = [0u8; 64];
            let word = lowercase(self.word(only), &mut buffer)?;
            let after_a_call = first >= 1 && self.kind_at(first - 1) == Some(Kind::Close);
            if (PARENTHESIS_WORDS.contains(word) && cannot_name_a_function(self.dialect, word))
                || (after_a_call && CLAUSES_AFTER_A_CALL.contains(&word))
            {
                return Some(());
            }
        }
        let mut parts = Vec::with_capacity((name_end - first) / 2 + 1);
        for token in self.tokens[first..=name_end].iter().step_by(2) {
            let part = match token.kind {
                Kind::Word => functions::normalize_part(self.dialect, self.word(token), None),
                _ => {
                    let (value, quote) = self.quoted(token);
                    functions::normalize_part(self.dialect, &value, Some(quote))
                }
            };
            parts.push(part.ok()?);
        }
        self.functions.check(self.dialect, &parts).ok()
    }

    /// A quoted identifier's name (quotes removed, doubled closing quotes undoubled) and its
    /// opening quote.
    fn quoted(&self, token: &Token) -> (String, char) {
        let raw = &self.text[token.start..token.end];
        let open = raw.chars().next().unwrap_or('"');
        let close = if open == '[' { ']' } else { open };
        let inner = raw
            .get(open.len_utf8()..raw.len().saturating_sub(close.len_utf8()))
            .unwrap_or_default();
        let value = if close == ']' {
            inner.to_owned()
        } else {
            let doubled = format!("{close}{close}");
            inner.replace(&doubled, &close.to_string())
        };
        (value, open)
    }
}

/// `word` in ASCII lower case, in `buffer`; `None` for words longer than any keyword or
/// function name the screen knows (they go to the walk).
fn lowercase<'b>(word: &str, buffer: &'b mut [u8; 64]) -> Option<&'b str> {
    let bytes = word.as_bytes();
    let target = buffer.get_mut(..bytes.len())?;
    for (to, from) in target.iter_mut().zip(bytes) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(target).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::sql::policy::{SqlPolicy, StatementClass};

    const ALL: [SqlDialect; 4] = [
        SqlDialect::Postgres,
        SqlDialect::Mysql,
        SqlDialect::Sqlite,
        SqlDialect::Trino,
    ];

    fn screened(dialect: SqlDialect, sql: &str) -> bool {
        SqlPolicy::default().screened(dialect, sql)
    }

    fn why(dialect: SqlDialect, sql: &str) -> String {
        let canonical = crate::capabilities::sql::lexer::canonicalize_with_literals(dialect, sql)
            .expect("the lexer accepts it");
        match decline_reason(
            dialect,
            &canonical,
            &FunctionAllowlist::default(),
            &HashSet::new(),
        ) {
            Some(declined) => format!(
                "{} at `{}`",
                declined.rule,
                canonical.text[declined.at..]
                    .chars()
                    .take(30)
                    .collect::<String>()
            ),
            None => "accepted".into(),
        }
    }

    #[test]
    fn typical_reads_take_the_fast_path() {
        let cases: &[(SqlDialect, &str)] = &[
            (
                SqlDialect::Postgres,
                "SELECT c.region, date_trunc('month', o.created) AS month, count(*) AS orders,
                        sum(o.amount) AS revenue, avg(o.amount) FILTER (WHERE o.status = 'paid')
                 FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id
                 WHERE o.created >= now() - interval '90 days' AND c.country IN ('DE', 'FR')
                 GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY revenue DESC LIMIT 100",
            ),
            (
                SqlDialect::Postgres,
                "WITH daily AS (SELECT date_trunc('day', created) AS day, sum(amount) AS total
                   FROM sales.orders WHERE status <> 'cancelled' GROUP BY 1)
                 SELECT day, total, avg(total) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING
                   AND CURRENT ROW) AS week_avg, rank() OVER (ORDER BY total DESC) AS rank
                 FROM daily ORDER BY day DESC NULLS LAST LIMIT 30;",
            ),
            (
                SqlDialect::Postgres,
                "SELECT id, payload->>'kind' AS kind, tags @> ARRAY['x'] FROM events
                 WHERE id = $1 AND created::date = CURRENT_DATE AND name ILIKE $2",
            ),
            (
                SqlDialect::Postgres,
                "SELECT \"Region\", count(DISTINCT user_id) FROM \"Sales\".\"Orders\" GROUP BY 1",
            ),
            (
                SqlDialect::Mysql,
                "SELECT c.region, DATE_FORMAT(o.created, '%Y-%m') AS month, COUNT(*) AS orders,
                        ROUND(AVG(o.amount), 2) AS avg_amount, IF(o.amount > 10, 'big', \"small\")
                 FROM `orders` o LEFT JOIN customers c ON c.id = o.customer_id
                 WHERE o.created >= NOW() - INTERVAL 90 DAY AND c.country = ?
                 GROUP BY 1, 2 ORDER BY orders DESC LIMIT 100",
            ),
            (
                SqlDialect::Sqlite,
                "SELECT c.region, strftime('%Y-%m', o.created) AS month, count(*) AS orders,
                        round(avg(o.amount), 2) FROM orders o JOIN customers c ON c.id = o.customer_id
                 WHERE o.created >= date('now', '-90 days') AND [c].country IN (?, ?)
                 GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY 3 DESC LIMIT 100",
            ),
            (
                SqlDialect::Trino,
                "SELECT c.region, date_trunc('month', o.created) AS month,
                        approx_percentile(o.amount, 0.5) AS median_amount
                 FROM hive.sales.orders o JOIN hive.sales.customers c ON c.id = o.customer_id
                 WHERE o.created >= current_date - INTERVAL '90' DAY GROUP BY 1, 2",
            ),
            (SqlDialect::Postgres, "(SELECT 1) UNION ALL (SELECT 2)"),
            (SqlDialect::Sqlite, "VALUES (1, 'a'), (2, 'b')"),
        ];
        let policy = SqlPolicy::default();
        for (dialect, sql) in cases {
            assert!(
                screened(*dialect, sql),
                "{dialect:?} did not screen ({}): {sql}",
                why(*dialect, sql)
            );
            assert_eq!(
                policy.check(*dialect, sql, false).map(|c| c.class),
                Ok(StatementClass::Read),
                "{dialect:?}: {sql}"
            );
        }
    }

    #[test]
    fn the_declined_words_go_to_the_walk_in_every_position() {
        for dialect in ALL {
            for word in DECLINED_WORDS {
                for sql in [
                    format!("SELECT a FROM t {word} b"),
                    format!("SELECT {word}(a) FROM t"),
                    format!("WITH d AS ({word} x) SELECT 1"),
                    format!("SELECT a FROM t WHERE b = 1 {word}"),
                ] {
                    assert!(!screened(dialect, &sql), "{dialect:?} screened: {sql}");
                }
                let upper = format!("SELECT a FROM t {}", word.to_ascii_uppercase());
                assert!(!screened(dialect, &upper), "{dialect:?} screened: {upper}");
            }
        }
    }

    #[test]
    fn the_vocabularies_hold_no_declined_word() {
        for word in READ_VOCABULARY.iter().chain(NOT_A_CALL_BEFORE_PARENTHESIS) {
            assert!(!DECLINED.contains(word), "`{word}` is read and declined");
            assert_eq!(*word, word.to_ascii_lowercase());
        }
        for word in NOT_A_CALL_BEFORE_PARENTHESIS
            .iter()
            .chain(CLAUSES_AFTER_A_CALL)
        {
            assert!(
                READ_WORDS.contains(word),
                "`{word}` is not in the read vocabulary"
            );
        }
    }

    #[test]
    fn calls_off_the_allowlist_go_to_the_walk_in_every_spelling() {
        let cases: &[(SqlDialect, &str)] = &[
            (SqlDialect::Postgres, "SELECT pg_read_file('/etc/passwd')"),
            (SqlDialect::Postgres, "SELECT PG_READ_FILE('/etc/passwd')"),
            (
                SqlDialect::Postgres,
                "SELECT \"pg_read_file\"('/etc/passwd')",
            ),
            (
                SqlDialect::Postgres,
                "SELECT U&\"pg_re\\0061d_file\"('/etc/passwd')",
            ),
            (
                SqlDialect::Postgres,
                "SELECT U&\"pg_re!0061d_file\" UESCAPE '!'('/etc/passwd')",
            ),
            (SqlDialect::Postgres, "SELECT pg_catalog.pg_read_file('x')"),
            (SqlDialect::Postgres, "SELECT pg_catalog . pg_ls_dir ('.')"),
            (SqlDialect::Postgres, "SELECT * FROM pg_ls_dir('.')"),
            (
                SqlDialect::Postgres,
                "SELECT count(*) FROM t WHERE pg_sleep(10) IS NULL",
            ),
            (
                SqlDialect::Postgres,
                "SELECT query_to_xml('select 1', true, true, '')",
            ),
            (SqlDialect::Postgres, "SELECT nextval('s')"),
            (SqlDialect::Postgres, "SELECT myschema.lower(a) FROM t"),
            (SqlDialect::Postgres, "SELECT \"LOWER\"(a) FROM t"),
            (SqlDialect::Mysql, "SELECT LOAD_FILE('/etc/passwd')"),
            (SqlDialect::Mysql, "SELECT `sleep`(10)"),
            (SqlDialect::Mysql, "SELECT get_lock('a', 1)"),
            (SqlDialect::Mysql, "SELECT a FROM t WHERE release_lock('a')"),
            (SqlDialect::Sqlite, "SELECT load_extension('x')"),
            (SqlDialect::Sqlite, "SELECT [load_extension]('x')"),
            (SqlDialect::Sqlite, "SELECT * FROM pragma_optimize"),
            (SqlDialect::Sqlite, "SELECT * FROM PRAGMA_table_info('t')"),
            (SqlDialect::Sqlite, "SELECT * FROM fsdir('.')"),
            (
                SqlDialect::Trino,
                "SELECT * FROM TABLE(pg.system.query(query => 'x'))",
            ),
            (
                SqlDialect::Trino,
                "SELECT * FROM x.system.query('select 1')",
            ),
            // Words that open a clause elsewhere but can name a function on that server.
            (
                SqlDialect::Postgres,
                "SELECT count(*) FROM t WHERE by(id) > 0",
            ),
            (SqlDialect::Postgres, "SELECT filter(1)"),
            (
                SqlDialect::Postgres,
                "SELECT a FROM t WHERE over(a) AND within(a)",
            ),
            (
                SqlDialect::Postgres,
                "SELECT like(1), ilike(1), is(1), join(1), xor(1)",
            ),
            (
                SqlDialect::Postgres,
                "SELECT cube(1), rollup(1), sets(1), partition(1)",
            ),
            (SqlDialect::Mysql, "SELECT lateral(1)"),
            (
                SqlDialect::Mysql,
                "SELECT a FROM t WHERE filter(a) OR sets(a) OR cube(a)",
            ),
            (
                SqlDialect::Mysql,
                "SELECT grouping(1), array(1), materialized(1)",
            ),
            // SQLite takes a string where it expects a name.
            (SqlDialect::Sqlite, "SELECT * FROM 'pragma_optimize'(65538)"),
            (
                SqlDialect::Sqlite,
                "SELECT * FROM main.'pragma_integrity_check'",
            ),
            (SqlDialect::Sqlite, "SELECT * FROM 'fsdir'"),
            // `$` continues a name.
            (SqlDialect::Postgres, "SELECT audit$1(7)"),
            (SqlDialect::Mysql, "SELECT audit$x(7)"),
            (SqlDialect::Trino, "SELECT a$b FROM t"),
        ];
        for (dialect, sql) in cases {
            assert!(!screened(*dialect, sql), "{dialect:?} screened: {sql}");
        }
    }

    #[test]
    fn field_notation_and_method_forms_go_to_the_walk() {
        for sql in [
            "SELECT (t).pg_ls_dir FROM t",
            "SELECT t.pg_sleep FROM t",
            "SELECT t.\"pg_read_file\" FROM t",
            "SELECT s.t.pg_backend_pid FROM s.t",
            "SELECT (x).f(1) FROM t",
            "SELECT a[1].lower(b) FROM t",
        ] {
            assert!(!screened(SqlDialect::Postgres, sql), "screened: {sql}");
        }
    }

    #[test]
    fn tokens_outside_the_subset_go_to_the_walk() {
        let cases: &[(SqlDialect, &str)] = &[
            (SqlDialect::Mysql, "SELECT @v"),
            (SqlDialect::Mysql, "SELECT @@global.secure_file_priv"),
            (SqlDialect::Mysql, "SELECT {fn lower('x')}"),
            (
                SqlDialect::Mysql,
                "SELECT a FROM t WHERE b = x'41' OR c = 0x41",
            ),
            (SqlDialect::Mysql, "SELECT 1e5"),
            (SqlDialect::Mysql, "SELECT a FROM t WHERE b = 1.x"),
            (SqlDialect::Mysql, "SELECT a[1] FROM t"),
            (SqlDialect::Sqlite, "SELECT :name"),
            (SqlDialect::Sqlite, "SELECT $name"),
            (SqlDialect::Sqlite, "SELECT @name"),
            (SqlDialect::Postgres, "SELECT $x"),
            (SqlDialect::Postgres, "SELECT a FROM t WHERE b = 1a"),
            (SqlDialect::Postgres, "SELECT 1; SELECT 2"),
            (SqlDialect::Postgres, "SELECT 1;; DELETE FROM t"),
            (SqlDialect::Postgres, "SELECT `a` FROM t"),
            (SqlDialect::Postgres, "SELECT a \\ b FROM t"),
            (SqlDialect::Postgres, "EXPLAIN SELECT 1"),
            (SqlDialect::Postgres, "TABLE t"),
            (SqlDialect::Postgres, "SHOW search_path"),
            (SqlDialect::Postgres, "DELETE FROM t"),
            (SqlDialect::Mysql, "SELECT a FROM t PROCEDURE ANALYSE()"),
            (SqlDialect::Mysql, "SELECT NEXT VALUE FOR s"),
            (SqlDialect::Mysql, "SELECT a FROM t LOCK IN SHARE MODE"),
            (SqlDialect::Postgres, "SELECT a FROM t FOR NO KEY UPDATE"),
            (SqlDialect::Postgres, "SELECT a INTO b FROM t"),
            (
                SqlDialect::Postgres,
                "WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM d",
            ),
            (
                SqlDialect::Postgres,
                "WITH d AS (MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE) SELECT 1",
            ),
            (
                SqlDialect::Postgres,
                "SELECT a FROM t TABLESAMPLE SYSTEM (10)",
            ),
            (SqlDialect::Postgres, "SELECT 1 OPERATOR(pg_catalog.+) 1"),
        ];
        for (dialect, sql) in cases {
            assert!(!screened(*dialect, sql), "{dialect:?} screened: {sql}");
        }
        let long_identifier = format!("SELECT {} FROM t", "a".repeat(80));
        assert!(!screened(SqlDialect::Postgres, &long_identifier));
    }

    /// Whether the linked SQLite refuses `word` as a column alias.
    fn sqlite_refuses_as_alias(word: &str) -> bool {
        use std::ffi::CString;
        use std::ptr::null_mut;
        let path = CString::new(":memory:").unwrap();
        let sql = CString::new(format!("SELECT 1 AS {word}")).unwrap();
        // SAFETY: a private in-memory database, opened, used once and closed here; the
        // statement is finalized (a null one is a no-op) before the database is closed.
        unsafe {
            let mut db = null_mut();
            assert_eq!(
                libsqlite3_sys::sqlite3_open(path.as_ptr(), &mut db),
                libsqlite3_sys::SQLITE_OK
            );
            let mut statement = null_mut();
            let prepared = libsqlite3_sys::sqlite3_prepare_v2(
                db,
                sql.as_ptr(),
                -1,
                &mut statement,
                null_mut(),
            );
            libsqlite3_sys::sqlite3_finalize(statement);
            libsqlite3_sys::sqlite3_close(db);
            prepared != libsqlite3_sys::SQLITE_OK
        }
    }

    #[test]
    fn the_reserved_words_hold_every_reserved_word_of_the_linked_sqlite() {
        use std::ffi::{c_char, c_int};
        // SAFETY: `sqlite3_keyword_name` writes a pointer to a static, not NUL-terminated
        // name and its length for indexes below `sqlite3_keyword_count()`.
        let count = unsafe { libsqlite3_sys::sqlite3_keyword_count() };
        assert!(count > 100);
        for index in 0..count {
            let mut name: *const c_char = std::ptr::null();
            let mut len: c_int = 0;
            let found = unsafe { libsqlite3_sys::sqlite3_keyword_name(index, &mut name, &mut len) };
            assert_eq!(found, libsqlite3_sys::SQLITE_OK);
            let len = usize::try_from(len).unwrap();
            let bytes = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), len) };
            let word = std::str::from_utf8(bytes).unwrap().to_ascii_lowercase();
            if sqlite_refuses_as_alias(&word) {
                assert!(
                    is_reserved_word(&word),
                    "SQLite's reserved word `{word}` is not in keywords/"
                );
            }
        }
    }

    /// A small deterministic generator of statements mixing reads, calls on and off the
    /// allowlists, field notation, locks, exports and writes.
    struct Generator(u64);

    impl Generator {
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            items[(self.0 % items.len() as u64) as usize]
        }

        fn statement(&mut self, dialect: SqlDialect) -> String {
            let head = self.pick(&[
                "SELECT",
                "SELECT DISTINCT",
                "WITH d AS (SELECT a, b FROM t) SELECT",
                "WITH d AS (DELETE FROM t RETURNING a) SELECT",
                "WITH d AS (INSERT INTO t (a) VALUES (1) RETURNING a) SELECT",
                "EXPLAIN SELECT",
            ]);
            let mut items = Vec::new();
            for _ in 0..3 {
                let item = match dialect {
                    SqlDialect::Postgres => self.pick(&[
                        "a",
                        "t.b",
                        "\"Mixed\"",
                        "count(*)",
                        "sum(a)",
                        "lower(b)",
                        "date_trunc('day', c)",
                        "pg_read_file('x')",
                        "\"pg_read_file\"('x')",
                        "pg_catalog.lower(b)",
                        "pg_catalog.pg_ls_dir('.')",
                        "(t).pg_ls_dir",
                        "t.pg_sleep",
                        "a::int",
                        "CAST(a AS int)",
                        "EXTRACT(year FROM c)",
                        "CASE WHEN a > 1 THEN 'x' ELSE 'y' END",
                        "rank() OVER (PARTITION BY a ORDER BY b)",
                        "(SELECT max(a) FROM u)",
                        "set_config('a', 'b', false)",
                        "txid_current()",
                        "coalesce(a, 0)",
                        "current_user",
                    ]),
                    SqlDialect::Mysql => self.pick(&[
                        "a",
                        "t.b",
                        "`Mixed`",
                        "COUNT(*)",
                        "IF(a > 1, 'x', 'y')",
                        "DATE_FORMAT(c, '%Y')",
                        "load_file('x')",
                        "`sleep`(1)",
                        "get_lock('a', 1)",
                        "REPLACE(b, 'x', 'y')",
                        "INSERT(b, 1, 1, 'x')",
                        "CAST(a AS SIGNED)",
                        "(SELECT MAX(a) FROM u)",
                        "\"str\"",
                        "benchmark(1000, md5('x'))",
                    ]),
                    SqlDialect::Sqlite => self.pick(&[
                        "a",
                        "t.b",
                        "[Mixed]",
                        "count(*)",
                        "strftime('%Y', c)",
                        "load_extension('x')",
                        "\"load_extension\"('y')",
                        "(SELECT max(a) FROM u)",
                        "json_extract(b, '$.x')",
                    ]),
                    SqlDialect::Trino => self.pick(&[
                        "a",
                        "t.b",
                        "\"Mixed\"",
                        "count(*)",
                        "approx_percentile(a, 0.5)",
                        "date_trunc('day', c)",
                        "(SELECT max(a) FROM u)",
                    ]),
                };
                items.push(item);
            }
            let from = match dialect {
                SqlDialect::Sqlite => self.pick(&[
                    "t",
                    "t JOIN u ON t.id = u.id",
                    "pragma_table_info('t')",
                    "pragma_optimize",
                    "json_each('[1]')",
                    "(SELECT 1 AS a) AS s",
                ]),
                SqlDialect::Trino => self.pick(&[
                    "t",
                    "c.s.t",
                    "TABLE(c.system.query(query => 'select 1'))",
                    "t CROSS JOIN UNNEST(ARRAY[1]) AS x(v)",
                ]),
                _ => self.pick(&[
                    "t",
                    "s.t AS x",
                    "t JOIN u ON t.id = u.id",
                    "(SELECT 1 AS a) AS s",
                    "t, LATERAL (SELECT 1) AS l",
                ]),
            };
            let filter = self.pick(&[
                "",
                " WHERE a > 1",
                " WHERE b IN (1, 2)",
                " WHERE EXISTS (SELECT 1 FROM u)",
                " WHERE c LIKE 'x%'",
                " WHERE a BETWEEN 1 AND 2 OR b IS NULL",
            ]);
            let tail = match dialect {
                SqlDialect::Mysql => self.pick(&[
                    "",
                    " GROUP BY a",
                    " ORDER BY a DESC LIMIT 10",
                    " FOR UPDATE",
                    " LOCK IN SHARE MODE",
                    " INTO OUTFILE '/tmp/x'",
                    "; SELECT 1",
                    ";",
                ]),
                SqlDialect::Postgres => self.pick(&[
                    "",
                    " GROUP BY a",
                    " ORDER BY a DESC NULLS LAST LIMIT 10",
                    " FOR UPDATE",
                    " FOR KEY SHARE SKIP LOCKED",
                    "; SELECT 1",
                    ";",
                ]),
                _ => self.pick(&["", " GROUP BY a", " ORDER BY a DESC LIMIT 10", "; SELECT 1"]),
            };
            format!("{head} {} FROM {from}{filter}{tail}", items.join(", "))
        }
    }

    /// The screen's guarantee: whatever it accepts, the walk accepts as the same read, or
    /// cannot parse (the server then reads it and reports its own syntax error); it never
    /// accepts what the walk refuses on policy grounds.
    #[test]
    fn generated_statements_never_pass_the_screen_and_fail_the_walk() {
        let policy = SqlPolicy::default();
        let mut generator = Generator(0x9e37_79b9_7f4a_7c15);
        let mut screened_count = 0;
        let mut declined_count = 0;
        for _ in 0..20_000 {
            let dialect = *[
                SqlDialect::Postgres,
                SqlDialect::Mysql,
                SqlDialect::Sqlite,
                SqlDialect::Trino,
            ]
            .get((generator.0 % 4) as usize)
            .unwrap();
            let sql = generator.statement(dialect);
            if !policy.screened(dialect, &sql) {
                declined_count += 1;
                continue;
            }
            screened_count += 1;
            match policy.walked(dialect, &sql, false) {
                Ok(checked) => {
                    assert_eq!(checked.class, StatementClass::Read, "{dialect:?}: {sql}");
                }
                Err(refusal) => assert!(
                    refusal.0.starts_with("the statement could not be parsed"),
                    "{dialect:?}: the screen accepted what the walk refuses ({refusal}): {sql}"
                ),
            }
        }
        assert!(
            screened_count > 1_000,
            "only {screened_count} statements screened"
        );
        assert!(
            declined_count > 1_000,
            "only {declined_count} statements declined"
        );
    }
}
