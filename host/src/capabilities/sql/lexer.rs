//! The lexical pass in front of the SQL parser: the statement is split into comments, string
//! literals, quoted identifiers and code exactly as its server splits it, and rewritten into
//! a canonical text that the parser checks and the database then runs.
//!
//! The canonical text has no comments (each becomes one space) and, on PostgreSQL, no
//! Unicode-escape spellings (`U&"pg_re\0061d_file"` becomes `"pg_read_file"`), so nothing
//! the server would read differently from the parser survives into what runs. What the
//! servers could read in more than one way is refused outright: MySQL and MariaDB executable
//! and hint comments (`/*!`, `/*M!`, `/*+`) anywhere, `--` without the ASCII space or control
//! character MariaDB needs to start a comment, `:=` assignments, SQLite's Tcl-style
//! variables, unterminated comments and quotes, NUL, and any non-ASCII character outside
//! string literals and quoted identifiers (Unicode spaces, invisible characters).
//!
//! The host pins the settings this pass assumes on its connections: PostgreSQL's
//! `standard_conforming_strings` on; MySQL's `sql_mode` without `ANSI_QUOTES` and
//! `NO_BACKSLASH_ESCAPES`.

use std::ops::Range;

use super::policy::{Refusal, SqlDialect};

/// The statement as the server would read it, without comments or escape spellings.
#[cfg(test)]
pub fn canonicalize(dialect: SqlDialect, statement: &str) -> Result<String, Refusal> {
    canonicalize_with_literals(dialect, statement).map(|canonical| canonical.text)
}

/// The canonical text and where, in it, the server's literals are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub text: String,
    /// The byte range of each string literal, quoted identifier and dollar-quoted string of
    /// `text` (quotes included), in order: the only places where the server reads a quoted
    /// token. The policy checks that its parser's tokenizer ends quoted tokens exactly where
    /// these end, and its screen reads everything outside them as code.
    pub literals: Vec<Range<usize>>,
}

/// `canonicalize`, with the literals the server reads in the canonical text.
pub fn canonicalize_with_literals(
    dialect: SqlDialect,
    statement: &str,
) -> Result<Canonical, Refusal> {
    let mut lexer = Lexer {
        dialect,
        src: statement,
        pos: 0,
        out: String::with_capacity(statement.len()),
        literals: Vec::new(),
    };
    lexer.run()?;
    Ok(Canonical {
        text: lexer.out,
        literals: lexer.literals,
    })
}

struct Lexer<'a> {
    dialect: SqlDialect,
    src: &'a str,
    pos: usize,
    out: String,
    literals: Vec<Range<usize>>,
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

/// ASCII characters every dialect reads as white space between tokens.
fn is_ascii_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

impl Lexer<'_> {
    fn bytes(&self) -> &[u8] {
        self.src.as_bytes()
    }

    fn at(&self, offset: usize) -> Option<u8> {
        self.bytes().get(self.pos + offset).copied()
    }

    /// Copy `len` bytes of the source to the output unchanged.
    fn copy(&mut self, len: usize) {
        let end = (self.pos + len).min(self.src.len());
        self.out.push_str(&self.src[self.pos..end]);
        self.pos = end;
    }

    /// Copy a whole literal of `len` bytes and record where it is in the output.
    fn copy_literal(&mut self, len: usize) {
        let start = self.out.len();
        self.copy(len);
        self.literals.push(start..self.out.len());
    }

    fn run(&mut self) -> Result<(), Refusal> {
        while let Some(c) = self.at(0) {
            match c {
                0 => return refuse("the statement contains a NUL character"),
                b'\'' => self.string(self.dialect == SqlDialect::Mysql)?,
                b'"' if self.dialect == SqlDialect::Mysql => self.string(true)?,
                b'"' => self.quoted(b'"', b'"')?,
                b'`' if self.dialect != SqlDialect::Postgres => self.quoted(b'`', b'`')?,
                b'[' if self.dialect == SqlDialect::Sqlite => self.bracketed()?,
                b'-' if self.at(1) == Some(b'-') => self.dash_comment()?,
                b'#' if self.dialect == SqlDialect::Mysql => self.line_comment()?,
                b'/' if self.at(1) == Some(b'*') => self.block_comment()?,
                b'$' if self.dialect == SqlDialect::Postgres => self.dollar()?,
                b'$' | b'@' | b':' | b'#' if self.dialect == SqlDialect::Sqlite => {
                    self.sqlite_variable()?
                }
                b':' if self.dialect == SqlDialect::Mysql && self.at(1) == Some(b'=') => {
                    return refuse(
                        "`:=` assignments are not allowed: they set session variables; compute the value in the query instead",
                    );
                }
                c if is_ident_start(c) => self.word()?,
                c if c.is_ascii_digit() => self.number(),
                c if c.is_ascii() => {
                    if c.is_ascii_control() && !is_ascii_space(c) {
                        return refuse(format!(
                            "the statement contains the control character {c:#04x} outside quotes; remove it"
                        ));
                    }
                    self.copy(1);
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or_default();
                    return refuse(format!(
                        "the character {:?} (U+{:04X}) outside quotes is not accepted: servers and parsers disagree on non-ASCII spaces and symbols; quote identifiers with non-ASCII letters",
                        ch, ch as u32
                    ));
                }
            }
        }
        Ok(())
    }

    /// A keyword or unquoted identifier, and the literal prefixes that attach to one
    /// (`E'..'`, `U&'..'`, `U&".."`, `N'..'`, `X'..'`, `B'..'`, `_utf8mb4'..'`).
    fn word(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        let mut end = start;
        while self.bytes().get(end).copied().is_some_and(is_ident_part) {
            end += 1;
        }
        let word = &self.src[start..end];
        let next = self.bytes().get(end).copied();
        if self.dialect == SqlDialect::Postgres
            && word.eq_ignore_ascii_case("u")
            && next == Some(b'&')
        {
            match self.bytes().get(end + 1) {
                Some(b'\'') => {
                    self.pos = end + 1;
                    return self.unicode_escaped(b'\'');
                }
                Some(b'"') => {
                    self.pos = end + 1;
                    return self.unicode_escaped(b'"');
                }
                _ => {}
            }
        }
        if self.dialect == SqlDialect::Trino
            && word.eq_ignore_ascii_case("u")
            && next == Some(b'&')
            && self.bytes().get(end + 1) == Some(&b'"')
        {
            return refuse("Unicode-escaped identifiers (`U&\"...\"`) are not accepted");
        }
        if self.dialect == SqlDialect::Postgres
            && word.eq_ignore_ascii_case("e")
            && next == Some(b'\'')
        {
            self.copy(end - start);
            return self.string(true);
        }
        self.copy(end - start);
        Ok(())
    }

    fn number(&mut self) {
        let mut len = 0;
        while self
            .at(len)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
        {
            len += 1;
        }
        self.copy(len);
    }

    /// A string literal from its opening quote; `backslash`: a backslash escapes the next
    /// character (MySQL's strings, PostgreSQL's `E'..'`). A doubled quote is a quote.
    fn string(&mut self, backslash: bool) -> Result<(), Refusal> {
        let quote = self.bytes()[self.pos];
        let mut i = self.pos + 1;
        let bytes = self.bytes();
        loop {
            match bytes.get(i) {
                None => return refuse("a string literal is not closed; close its quote"),
                Some(b'\\') if backslash => i += 2,
                Some(&c) if c == quote => {
                    if bytes.get(i + 1) == Some(&quote) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        self.copy_literal(i - self.pos);
        Ok(())
    }

    /// A quoted identifier: `open` ... `close`, a doubled `close` standing for itself.
    fn quoted(&mut self, open: u8, close: u8) -> Result<(), Refusal> {
        debug_assert_eq!(self.at(0), Some(open));
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        loop {
            match bytes.get(i) {
                None => return refuse("a quoted identifier is not closed; close its quote"),
                Some(&c) if c == close => {
                    if bytes.get(i + 1) == Some(&close) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        self.copy_literal(i - self.pos);
        Ok(())
    }

    /// SQLite's `[identifier]`: no escapes, ends at the first `]`.
    fn bracketed(&mut self) -> Result<(), Refusal> {
        match self.src[self.pos..].find(']') {
            Some(end) => {
                self.copy_literal(end + 1);
                Ok(())
            }
            None => refuse("a [bracketed] identifier is not closed"),
        }
    }

    /// `--`: a comment to the end of the line. MySQL and MariaDB start one only when an ASCII
    /// space or control character follows; any other `--` would be read as two minus signs by
    /// the server and as a comment by the parser, so it is refused.
    fn dash_comment(&mut self) -> Result<(), Refusal> {
        if self.dialect == SqlDialect::Mysql {
            match self.at(2) {
                Some(c) if c.is_ascii_control() || c == b' ' => {}
                _ => {
                    return refuse(
                        "`--` must be followed by a space to start a comment on MySQL and MariaDB; write `- -` for two minus signs or `-- ` for a comment",
                    );
                }
            }
        }
        self.line_comment()
    }

    /// A comment to the end of the line (`\n`; `\r` too on PostgreSQL and Trino), replaced
    /// by a space.
    fn line_comment(&mut self) -> Result<(), Refusal> {
        let rest = &self.src[self.pos..];
        let cr_ends = matches!(self.dialect, SqlDialect::Postgres | SqlDialect::Trino);
        let end = rest
            .find(|c| c == '\n' || (c == '\r' && cr_ends))
            .unwrap_or(rest.len());
        self.refuse_executable_comment_in(&rest[..end])?;
        self.pos += end;
        self.out.push(' ');
        Ok(())
    }

    /// `/* ... */`, nested on PostgreSQL, not elsewhere; replaced by a space.
    fn block_comment(&mut self) -> Result<(), Refusal> {
        if self.dialect == SqlDialect::Mysql {
            match (self.at(2), self.at(3)) {
                (Some(b'!'), _) | (Some(b'M' | b'm'), Some(b'!')) => {
                    return refuse(
                        "executable comments (`/*! ... */`, `/*M! ... */`) are not allowed: MySQL and MariaDB run their contents; remove the comment",
                    );
                }
                (Some(b'+'), _) => {
                    return refuse(
                        "optimizer hints (`/*+ ... */`) are not allowed: they can lift the statement's limits; remove the comment",
                    );
                }
                _ => {}
            }
        }
        let nested = self.dialect == SqlDialect::Postgres;
        let bytes = self.bytes();
        let mut depth = 0usize;
        let mut i = self.pos;
        loop {
            if i + 1 >= bytes.len() {
                return refuse("a /* comment is not closed; close it with */");
            }
            if bytes[i] == b'/' && bytes[i + 1] == b'*' && (nested || depth == 0) {
                depth += 1;
                i += 2;
            } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    break;
                }
            } else {
                i += 1;
            }
        }
        self.refuse_executable_comment_in(self.src.get(self.pos + 2..i).unwrap_or_default())?;
        self.pos = i;
        self.out.push(' ');
        Ok(())
    }

    /// On MySQL and MariaDB, no comment may hold the start of an executable comment or hint:
    /// should the server end the comment earlier than this pass, that text would run.
    fn refuse_executable_comment_in(&self, text: &str) -> Result<(), Refusal> {
        let lower = text.to_ascii_lowercase();
        if self.dialect == SqlDialect::Mysql
            && (lower.contains("/*!") || lower.contains("/*m!") || lower.contains("/*+"))
        {
            return refuse(
                "a comment contains an executable comment or optimizer hint (`/*!`, `/*M!`, `/*+`); remove it",
            );
        }
        Ok(())
    }

    /// PostgreSQL `$`: a dollar-quoted string (`$$..$$`, `$tag$..$tag$`) or a parameter.
    fn dollar(&mut self) -> Result<(), Refusal> {
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        if bytes.get(i).is_some_and(u8::is_ascii_digit) {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            self.copy(i - self.pos);
            return Ok(());
        }
        if bytes.get(i).is_some_and(|&c| is_ident_start(c)) {
            while bytes
                .get(i)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
            {
                i += 1;
            }
        }
        if bytes.get(i) != Some(&b'$') {
            // A lone `$`: copied and left to the parser, which refuses it.
            self.copy(1);
            return Ok(());
        }
        let tag = &self.src[self.pos..=i];
        let body_start = i + 1;
        match self.src[body_start..].find(tag) {
            Some(end) => {
                self.copy_literal(body_start + end + tag.len() - self.pos);
                Ok(())
            }
            None => refuse(format!("the dollar-quoted string {tag} is not closed")),
        }
    }

    /// SQLite's `?NNN`, `:name`, `@name`, `$name`; Tcl-style forms (`$a::b`, `$a(x)`) are
    /// tokenised by SQLite in ways no parser follows, so they are refused.
    fn sqlite_variable(&mut self) -> Result<(), Refusal> {
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        while bytes.get(i).is_some_and(|&c| is_ident_part(c)) {
            i += 1;
        }
        if i == self.pos + 1 {
            self.copy(1);
            return Ok(());
        }
        if matches!(bytes.get(i), Some(b'(')) || self.src[i..].starts_with("::") {
            return refuse(
                "Tcl-style SQLite variables (`$name(...)`, `$a::b`) are not accepted; bind parameters with `?`",
            );
        }
        self.copy(i - self.pos);
        Ok(())
    }

    /// PostgreSQL `U&'...'` and `U&"..."` (at the quote) with an optional `UESCAPE 'c'`,
    /// rewritten into the plain literal or identifier they stand for.
    fn unicode_escaped(&mut self, quote: u8) -> Result<(), Refusal> {
        let what = if quote == b'"' {
            "identifier"
        } else {
            "string"
        };
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        let body_start = i;
        loop {
            match bytes.get(i) {
                None => return refuse(format!("a U& {what} is not closed")),
                Some(&c) if c == quote => {
                    if bytes.get(i + 1) == Some(&quote) {
                        i += 2;
                    } else {
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        let raw = &self.src[body_start..i];
        self.pos = i + 1;
        let escape = self.uescape()?;
        let decoded = decode_unicode_escapes(raw, escape, quote)?;
        if decoded.contains('\0') {
            return refuse(format!("a U& {what} decodes to a NUL character"));
        }
        let q = quote as char;
        let start = self.out.len();
        self.out.push(q);
        for ch in decoded.chars() {
            if ch == q {
                self.out.push(q);
            }
            self.out.push(ch);
        }
        self.out.push(q);
        self.literals.push(start..self.out.len());
        Ok(())
    }

    /// An optional `UESCAPE 'c'` after a U& literal (white space between, no comments).
    fn uescape(&mut self) -> Result<char, Refusal> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start_matches(|c: char| c.is_ascii() && is_ascii_space(c as u8));
        if trimmed.len() < 7 || !trimmed[..7].eq_ignore_ascii_case("uescape") {
            return Ok('\\');
        }
        let after =
            trimmed[7..].trim_start_matches(|c: char| c.is_ascii() && is_ascii_space(c as u8));
        let mut chars = after.chars();
        match (chars.next(), chars.next(), chars.next()) {
            (Some('\''), Some(c), Some('\''))
                if !c.is_ascii_hexdigit()
                    && !matches!(c, '+' | '\'' | '"')
                    && !c.is_whitespace()
                    && c.is_ascii() =>
            {
                let consumed = rest.len() - after.len() + 3;
                self.pos += consumed;
                Ok(c)
            }
            _ => refuse(
                "UESCAPE must be followed by one quoted character that is not a hex digit, `+`, a quote or a space",
            ),
        }
    }
}

/// Decode PostgreSQL's `\XXXX`, `\+XXXXXX` and doubled-escape spellings (`escape` standing
/// for the backslash), with doubled quotes undoubled.
fn decode_unicode_escapes(raw: &str, escape: char, quote: u8) -> Result<String, Refusal> {
    let q = quote as char;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c == q {
            // A doubled quote inside the literal.
            chars.next();
            out.push(q);
            continue;
        }
        if c != escape {
            if pending_high.is_some() {
                return refuse("a U& literal has an unpaired surrogate escape");
            }
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            out.push(escape);
            continue;
        }
        let digits = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let mut value = 0u32;
        for _ in 0..digits {
            let Some(d) = chars.next().and_then(|d| d.to_digit(16)) else {
                return refuse(format!(
                    "a U& literal has an invalid escape: `{escape}` must be followed by {digits} hex digits"
                ));
            };
            value = value * 16 + d;
        }
        match (pending_high.take(), value) {
            (None, 0xD800..=0xDBFF) => pending_high = Some(value),
            (Some(high), 0xDC00..=0xDFFF) => {
                let combined = 0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00);
                out.push(
                    char::from_u32(combined).ok_or_else(|| {
                        Refusal("a U& literal escapes an invalid code point".into())
                    })?,
                );
            }
            (Some(_), _) => return refuse("a U& literal has an unpaired surrogate escape"),
            (None, value) => out.push(char::from_u32(value).ok_or_else(|| {
                Refusal(format!(
                    "a U& literal escapes an invalid code point ({value:#x})"
                ))
            })?),
        }
    }
    if pending_high.is_some() {
        return refuse("a U& literal has an unpaired surrogate escape");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(dialect: SqlDialect, sql: &str) -> String {
        canonicalize(dialect, sql).unwrap_or_else(|r| panic!("{dialect:?} refused `{sql}`: {r}"))
    }

    fn refused(dialect: SqlDialect, sql: &str) -> String {
        match canonicalize(dialect, sql) {
            Ok(text) => panic!("{dialect:?} accepted `{sql}` as `{text}`"),
            Err(r) => r.0,
        }
    }

    #[test]
    fn comments_become_spaces_and_literals_stay() {
        assert_eq!(
            canon(
                SqlDialect::Postgres,
                "SELECT 1 -- x\n, '--' /* a /* b */ c */ FROM t"
            ),
            "SELECT 1  \n, '--'   FROM t"
        );
        assert_eq!(
            canon(SqlDialect::Mysql, "SELECT 'a\\'b', \"--\" # c\nFROM t"),
            "SELECT 'a\\'b', \"--\"  \nFROM t"
        );
        assert_eq!(
            canon(
                SqlDialect::Sqlite,
                "SELECT [a--b], `c/*d`, \"e\"\"f\" /* x */"
            ),
            "SELECT [a--b], `c/*d`, \"e\"\"f\"  "
        );
        assert_eq!(
            canon(
                SqlDialect::Postgres,
                "SELECT $$ -- not a comment $$, $a$ ' $a$, $1"
            ),
            "SELECT $$ -- not a comment $$, $a$ ' $a$, $1"
        );
        assert_eq!(
            canon(SqlDialect::Postgres, "SELECT E'it\\'s -- x', e'\\\\'"),
            "SELECT E'it\\'s -- x', e'\\\\'"
        );
    }

    #[test]
    fn postgres_unicode_escapes_are_decoded() {
        assert_eq!(
            canon(SqlDialect::Postgres, r#"SELECT U&"pg_re\0061d_file"('x')"#),
            r#"SELECT "pg_read_file"('x')"#
        );
        assert_eq!(
            canon(
                SqlDialect::Postgres,
                r#"SELECT u&"pg_re!0061d_file" UESCAPE '!' ('x')"#
            ),
            r#"SELECT "pg_read_file" ('x')"#
        );
        assert_eq!(
            canon(
                SqlDialect::Postgres,
                r#"SELECT U&'\+000041\\''""', U&"a""\0022""#
            ),
            r#"SELECT 'A\''""', "a""""""#
        );
        assert_eq!(
            canon(SqlDialect::Postgres, r#"SELECT U&'\D83D\DE00'"#),
            "SELECT '\u{1F600}'"
        );
        for bad in [
            r#"SELECT U&"\00"#,
            r#"SELECT U&"x\0000""#,
            r#"SELECT U&'\D83D'"#,
            r#"SELECT U&'\zzzz'"#,
            r#"SELECT U&"a" UESCAPE 'a'"#,
            r#"SELECT U&"a" UESCAPE '+'"#,
        ] {
            refused(SqlDialect::Postgres, bad);
        }
    }

    #[test]
    fn mysql_ambiguities_are_refused() {
        for sql in [
            "SELECT 1 --1 /*M!, LOAD_FILE('/etc/passwd') */",
            "SELECT 1 --\u{a0}x",
            "SELECT 1 --",
            "SELECT 1 /*! , 2 */",
            "SELECT 1 /*M! , 2 */",
            "SELECT 1 /*m!100000 , 2 */",
            "SELECT /*+ MAX_EXECUTION_TIME(1) */ 1",
            "SELECT 1 /* x /*! y */",
            "SELECT @v := 1",
            "SELECT 'unterminated",
            "SELECT 1 /* unterminated",
            "SELECT\u{a0}1",
            "SELECT 1\u{200b}",
            "SELECT \u{0}1",
        ] {
            refused(SqlDialect::Mysql, sql);
        }
        // A comment that needs a space, with one, and executable markers inside strings.
        assert_eq!(
            canon(SqlDialect::Mysql, "SELECT 1 -- x\n, '/*!', `/*+`"),
            "SELECT 1  \n, '/*!', `/*+`"
        );
        assert_eq!(canon(SqlDialect::Mysql, "SELECT 1 --\tx"), "SELECT 1  ");
    }

    #[test]
    fn non_ascii_is_only_accepted_inside_quotes() {
        for dialect in [
            SqlDialect::Postgres,
            SqlDialect::Mysql,
            SqlDialect::Sqlite,
            SqlDialect::Trino,
        ] {
            refused(dialect, "SELECT\u{3000}1");
            refused(dialect, "SELECT größe FROM t");
            refused(dialect, "SELECT 1\u{feff}");
            let quoted = if dialect == SqlDialect::Mysql {
                "SELECT `größe`, 'ü\u{a0}' FROM t"
            } else {
                "SELECT \"größe\", 'ü\u{a0}' FROM t"
            };
            assert_eq!(canon(dialect, quoted), quoted);
        }
    }

    #[test]
    fn sqlite_tcl_variables_are_refused() {
        refused(SqlDialect::Sqlite, "SELECT $a(')'),load_extension('x')--')");
        refused(SqlDialect::Sqlite, "SELECT $a::b");
        assert_eq!(
            canon(SqlDialect::Sqlite, "SELECT ?1, :x, @y, $z"),
            "SELECT ?1, :x, @y, $z"
        );
    }

    #[test]
    fn comments_nest_only_on_postgres() {
        // MySQL reads `, 2` as code after the first `*/`; so does this pass.
        assert_eq!(
            canon(SqlDialect::Sqlite, "SELECT 1 /* /* */, 2"),
            "SELECT 1  , 2"
        );
        refused(SqlDialect::Postgres, "SELECT 1 /* /* */, 2");
        assert_eq!(
            canon(SqlDialect::Trino, "SELECT 1 /* /* */, 2 -- */"),
            "SELECT 1  , 2  "
        );
    }
}
