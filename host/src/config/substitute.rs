//! `${VAR}` and `${VAR:-default}` substitution inside the scalars of a YAML text; `$${` is a
//! literal `${`.
//!
//! The text is parsed first (`yaml_events`, the parser `serde_yaml` uses), with each
//! placeholder masked as one opaque word of the same length (`mask`), and variables are
//! substituted in the parsed value of each scalar, never in the raw text: comments are never
//! touched, and a value holding `: `, `#`, quotes, backslashes, brackets or line breaks cannot
//! change the structure, since each scalar that changed is written back as one scalar (a
//! double-quoted string, or plain when the value is a plain word such as `8080` or `true`,
//! so typed keys keep working). Keys are not substituted (a placeholder in a key is an error).
//!
//! `Substituted` keeps where each scalar was, so errors on the resolved text are reported
//! at the original line and column, and an error on a substituted value names its key and
//! variable instead of printing the value.

use std::fmt::Write as _;
use std::ops::Range;

use super::ConfigError;
use super::yaml_events::{Event, Events, Located, ScalarStyle};

/// A configuration text with its variables substituted.
#[derive(Debug)]
pub struct Substituted {
    /// The resolved YAML text.
    pub text: String,
    /// The text as written (without a byte order mark).
    original: String,
    /// The scalars that changed, in text order.
    replacements: Vec<Replacement>,
}

#[derive(Debug)]
struct Replacement {
    /// The scalar (with its anchor or tag) in the original text.
    original: Range<usize>,
    /// The same scalar in the resolved text.
    resolved: Range<usize>,
    /// Where the scalar itself starts in the original text.
    token_start: usize,
    /// Its key, e.g. `data.sql.x.timeout_ms`.
    path: String,
    /// The variables it holds, in order (`${NAME}`).
    variables: Vec<String>,
    /// The variables' values and the scalar's resolved value: never printed.
    values: Vec<String>,
    /// The scalar was exactly one placeholder.
    whole: bool,
}

/// One step of the path to a node.
#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
    /// A key that is not a plain scalar (a sequence or mapping used as a key).
    Complex,
}

#[derive(Debug)]
enum Frame {
    Mapping {
        flow: bool,
        expecting_key: bool,
        key: Option<String>,
    },
    Sequence {
        flow: bool,
        index: usize,
    },
}

/// Where the parser is: the open collections, each with the segment that leads to it.
#[derive(Debug, Default)]
struct Position {
    frames: Vec<(Option<Segment>, Frame)>,
}

impl Position {
    /// The segment of the node that starts now, and whether it is a mapping key.
    fn next_node(&self) -> (Option<Segment>, bool) {
        match self.frames.last() {
            None => (None, false),
            Some((_, Frame::Sequence { index, .. })) => (Some(Segment::Index(*index)), false),
            Some((
                _,
                Frame::Mapping {
                    expecting_key, key, ..
                },
            )) => {
                if *expecting_key {
                    (None, true)
                } else {
                    (
                        Some(key.clone().map_or(Segment::Complex, Segment::Key)),
                        false,
                    )
                }
            }
        }
    }

    /// A node ended; `key` is its text when it was a scalar key.
    fn node_done(&mut self, key: Option<String>) {
        match self.frames.last_mut() {
            None => {}
            Some((_, Frame::Sequence { index, .. })) => *index += 1,
            Some((
                _,
                Frame::Mapping {
                    expecting_key,
                    key: current,
                    ..
                },
            )) => {
                if *expecting_key {
                    *current = key;
                }
                *expecting_key = !*expecting_key;
            }
        }
    }

    fn in_flow(&self) -> bool {
        self.frames.iter().any(|(_, frame)| match frame {
            Frame::Mapping { flow, .. } | Frame::Sequence { flow, .. } => *flow,
        })
    }

    fn path(&self, last: Option<&Segment>) -> String {
        let mut path = String::new();
        let segments = self
            .frames
            .iter()
            .filter_map(|(segment, _)| segment.as_ref())
            .chain(last);
        for segment in segments {
            match segment {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Segment::Index(index) => {
                    let _ = write!(path, "[{index}]");
                }
                Segment::Complex => path.push_str(".?"),
            }
        }
        path
    }
}

/// A placeholder problem: which placeholder (counting `${`, not `$${`) and what is wrong.
struct PlaceholderError {
    ordinal: usize,
    message: String,
}

/// The result of substituting in one value.
struct Expanded {
    value: String,
    variables: Vec<String>,
    values: Vec<String>,
}

/// Substitute in one parsed value.
fn expand(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Expanded, PlaceholderError> {
    let mut out = Expanded {
        value: String::with_capacity(text.len()),
        variables: Vec::new(),
        values: Vec::new(),
    };
    let mut ordinal = 0;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.value.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.value.push_str("${");
            rest = escaped;
            continue;
        }
        if !after.starts_with("${") {
            out.value.push('$');
            rest = &after[1..];
            continue;
        }
        let error = |message: String| PlaceholderError { ordinal, message };
        let Some(end) = after.find('}') else {
            return Err(error("`${` without a closing `}`".to_owned()));
        };
        let inner = &after[2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(error(format!(
                "`${{{}}}` is not a valid variable name",
                inner.escape_debug()
            )));
        }
        let value = match (lookup(name), default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                return Err(error(format!(
                    "environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)"
                )));
            }
        };
        out.value.push_str(&value);
        out.variables.push(format!("${{{name}}}"));
        out.values.push(value);
        ordinal += 1;
        rest = &after[end + 1..];
    }
    out.value.push_str(rest);
    Ok(out)
}

/// The byte offset of placeholder number `ordinal` in `raw` (the scalar as written).
fn placeholder_offset(raw: &str, ordinal: usize) -> Option<usize> {
    let mut seen = 0;
    let mut offset = 0;
    while let Some(dollar) = raw[offset..].find('$') {
        let at = offset + dollar;
        let after = &raw[at..];
        if after.starts_with("$${") {
            offset = at + 3;
        } else if after.starts_with("${") {
            if seen == ordinal {
                return Some(at);
            }
            seen += 1;
            offset = at + 2;
        } else {
            offset = at + 1;
        }
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A value that reads as the same single plain scalar anywhere (block or flow, at any
/// column): letters, digits and `._+-~`, not `-` alone, not starting with `---` or `...`.
/// Such values keep YAML's typing (`8080`, `true`, `null`, `1.5`); every other value is
/// written double-quoted.
fn plain_safe(value: &str) -> bool {
    !value.is_empty()
        && value != "-"
        && !value.starts_with("---")
        && !value.starts_with("...")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-' | '~'))
}

/// `value` as a YAML double-quoted scalar on one line: every character that is not
/// printable, or that YAML treats as a line break, escaped.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' => out.push(c),
            '\u{ff00}'..='\u{fffd}' | '\u{10000}'.. => out.push(c),
            other if u32::from(other) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(other));
            }
            other => {
                let _ = write!(out, "\\u{:04x}", u32::from(other));
            }
        }
    }
    out.push('"');
    out
}

/// First code point of the marks that stand for placeholders while the text is parsed
/// (Supplementary Private Use Area-A, which a configuration has no use for).
const MARK_BASE: u32 = 0xF0000;
const MARK_LAST: u32 = 0xFFFFD;

/// The masked text and each placeholder's range in it.
type Masked = (String, Vec<Range<usize>>);

/// The text with every `${...}` (closed on its line) replaced by a mark of the same byte
/// length: one private-use character numbering it, then `x`s. A placeholder is then one plain
/// word to the YAML parser wherever it is (`{a: ${X}}` parses as it reads, although `{` and
/// `}` are flow indicators), and byte offsets are those of the original. Returns the masked
/// text and each placeholder's range.
fn mask(text: &str) -> Result<Masked, (usize, String)> {
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| (MARK_BASE..=MARK_LAST).contains(&u32::from(*c)))
    {
        return Err((
            at,
            format!(
                "character U+{:X} (private use, plane 15) is reserved by the configuration loader",
                u32::from(c)
            ),
        ));
    }
    let mut masked = String::with_capacity(text.len());
    let mut ranges = Vec::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(dollar) = text[at..].find('$') {
        let start = at + dollar;
        let after = &text[start..];
        if after.starts_with("$${") {
            at = start + 3;
            continue;
        }
        if !after.starts_with("${") {
            at = start + 1;
            continue;
        }
        let line_end = after.find('\n').unwrap_or(after.len());
        let Some(close) = after[..line_end].find('}') else {
            at = start + 2;
            continue;
        };
        let end = start + close + 1;
        if end - start < 4 {
            // `${}`: too short to mask, and an error wherever it is read.
            at = end;
            continue;
        }
        let number = u32::try_from(ranges.len())
            .ok()
            .and_then(|n| char::from_u32(MARK_BASE + n))
            .filter(|c| u32::from(*c) <= MARK_LAST)
            .ok_or_else(|| (start, "too many `${...}` placeholders".to_owned()))?;
        masked.push_str(&text[copied..start]);
        masked.push(number);
        masked.extend(std::iter::repeat_n('x', end - start - number.len_utf8()));
        ranges.push(start..end);
        copied = end;
        at = end;
    }
    masked.push_str(&text[copied..]);
    Ok((masked, ranges))
}

/// A parsed value of the masked text with each mark replaced by its placeholder as written.
fn unmask(value: &str, original: &str, placeholders: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let number = u32::from(c).wrapping_sub(MARK_BASE);
        let Some(range) = usize::try_from(number)
            .ok()
            .and_then(|n| placeholders.get(n))
        else {
            out.push(c);
            continue;
        };
        out.push_str(&original[range.clone()]);
        for _ in 0..range.len() - c.len_utf8() {
            chars.next();
        }
    }
    out
}

/// Skip the anchor and tag (and the spaces, line breaks and comments around them) at the
/// start of `raw`, the text of a scalar node: where the scalar itself starts.
fn after_properties(raw: &str) -> usize {
    let mut at = 0;
    loop {
        let rest = &raw[at..];
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        at += rest.len() - trimmed.len();
        if trimmed.starts_with('#') && at > 0 {
            at += trimmed.find('\n').unwrap_or(trimmed.len());
        } else if trimmed.starts_with(['&', '!']) {
            at += trimmed
                .find([' ', '\t', '\r', '\n'])
                .unwrap_or(trimmed.len());
        } else {
            return at;
        }
    }
}

/// Substitute every placeholder in the scalars of `text`. An unresolved variable or a
/// malformed placeholder is an error naming its line and column.
pub fn substitute_env(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Substituted, ConfigError> {
    let original = text.strip_prefix('\u{feff}').unwrap_or(text).to_owned();
    let invalid = |offset: usize, message: String| {
        let (line, column) = line_column(&original, offset);
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    };
    let (masked, placeholders) = mask(&original).map_err(|(at, message)| invalid(at, message))?;
    // Not YAML: libyaml's message, through `serde_yaml`, on the masked text (same offsets, no
    // values in it).
    let syntax_error = || match serde_yaml::from_str::<serde::de::IgnoredAny>(&masked) {
        Err(error) => {
            let at = error.location().map_or(0, |l| l.index());
            let mut message = error.to_string();
            if let Some(location) = error.location() {
                let suffix = format!(" at line {} column {}", location.line(), location.column());
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_owned();
                }
            }
            invalid(at, message)
        }
        Ok(_) => invalid(0, "not valid YAML".to_owned()),
    };
    let mut position = Position::default();
    let mut pieces: Vec<(Range<usize>, String, Replacement)> = Vec::new();
    let events = Events::new(&masked).map_err(|_| syntax_error())?;
    for located in events {
        let Located { event, start, end } = located.map_err(|_| syntax_error())?;
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => position = Position::default(),
            Event::SequenceStart { flow } | Event::MappingStart { flow } => {
                let (segment, _) = position.next_node();
                let frame = if matches!(event, Event::SequenceStart { .. }) {
                    Frame::Sequence { flow, index: 0 }
                } else {
                    Frame::Mapping {
                        flow,
                        expecting_key: true,
                        key: None,
                    }
                };
                position.frames.push((segment, frame));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                position.frames.pop();
                position.node_done(None);
            }
            Event::Alias => position.node_done(None),
            Event::Scalar {
                value,
                style,
                properties,
            } => {
                let value = unmask(&value, &original, &placeholders);
                let (segment, is_key) = position.next_node();
                let span = start.index..end.index.max(start.index);
                let raw = original.get(span.clone()).unwrap_or_default();
                let token_start = span.start + if properties { after_properties(raw) } else { 0 };
                let token = original.get(token_start..span.end).unwrap_or_default();
                if !value.contains("${") {
                    position.node_done(is_key.then_some(value));
                    continue;
                }
                let located = |ordinal: usize| {
                    token_start + placeholder_offset(token, ordinal).unwrap_or_default()
                };
                if is_key && placeholder_offset(&value, 0).is_some() {
                    return Err(invalid(
                        located(0),
                        "variables are substituted in values, not in keys (write `$${` for a literal `${`)"
                            .to_owned(),
                    ));
                }
                let expanded =
                    expand(&value, &lookup).map_err(|e| invalid(located(e.ordinal), e.message))?;
                let in_flow = position.in_flow();
                let path = if is_key {
                    position.path(None)
                } else {
                    position.path(segment.as_ref())
                };
                let scalar = if style == ScalarStyle::Plain
                    && expanded.value.is_empty()
                    && !is_key
                    && !in_flow
                {
                    // As before substitution: an empty plain value is null.
                    String::new()
                } else if style == ScalarStyle::Plain && plain_safe(&expanded.value) {
                    expanded.value.clone()
                } else {
                    double_quoted(&expanded.value)
                };
                // Keep every line break of the original, and the column of what follows.
                let mut written = original[span.start..token_start].to_owned();
                written.push_str(&scalar);
                if token.contains('\n') {
                    written.extend(std::iter::repeat_n('\n', token.matches('\n').count()));
                    written.extend(std::iter::repeat_n(' ', end.column));
                }
                // The scalar is one placeholder, `${NAME}` or `${NAME:-default}`.
                let whole = expanded.variables.len() == 1
                    && value.starts_with("${")
                    && value.find('}') == Some(value.len() - 1);
                let mut values = expanded.values;
                values.push(expanded.value.clone());
                if is_key {
                    position.node_done(Some(expanded.value.clone()));
                } else {
                    position.node_done(None);
                }
                pieces.push((
                    span.clone(),
                    written,
                    Replacement {
                        original: span,
                        resolved: 0..0,
                        token_start,
                        path,
                        variables: expanded.variables,
                        values,
                        whole,
                    },
                ));
            }
        }
    }
    let mut text = String::with_capacity(original.len());
    let mut copied = 0;
    let mut replacements = Vec::with_capacity(pieces.len());
    for (span, written, mut replacement) in pieces {
        text.push_str(&original[copied..span.start]);
        let start = text.len();
        text.push_str(&written);
        replacement.resolved = start..text.len();
        copied = span.end;
        replacements.push(replacement);
    }
    text.push_str(&original[copied..]);
    Ok(Substituted {
        text,
        original,
        replacements,
    })
}

/// What serde says was expected, in words for an operator.
fn expected_in_words(expected: &str) -> &str {
    match expected {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        other => other,
    }
}

impl Substituted {
    /// Report a `serde_yaml` error on `self.text` against the text as written. An error on a
    /// substituted scalar names its key and variables and never shows the value.
    pub fn yaml_error(&self, error: &serde_yaml::Error, origin: &str) -> ConfigError {
        let mut message = error.to_string();
        let Some(location) = error.location() else {
            return ConfigError::Invalid {
                origin: origin.to_owned(),
                line: 0,
                column: 0,
                message: self.scrub(&message),
            };
        };
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
        let index = location.index();
        let hit = self
            .replacements
            .iter()
            .find(|r| r.resolved.contains(&index) || r.resolved.start == index);
        if let Some(replacement) = hit.filter(|r| r.variables.is_empty()) {
            // Only `$${` escapes changed there: nothing to hide.
            let (line, column) = line_column(&self.original, replacement.token_start);
            return ConfigError::Invalid {
                origin: origin.to_owned(),
                line,
                column,
                message: self.scrub(&message),
            };
        }
        if let Some(replacement) = hit {
            let (line, column) = line_column(&self.original, replacement.token_start);
            let mut variables: Vec<&str> = Vec::new();
            for variable in &replacement.variables {
                if !variables.contains(&variable.as_str()) {
                    variables.push(variable);
                }
            }
            let variables = variables.join(", ");
            let key = if replacement.path.is_empty() {
                "the top level".to_owned()
            } else {
                replacement.path.clone()
            };
            let what = if replacement.whole {
                format!("the value of {variables}")
            } else {
                format!("a value made with {variables}")
            };
            let message = match message.rsplit_once(", expected ") {
                Some((_, expected)) => {
                    format!(
                        "{key}: expected {}, got {what}",
                        expected_in_words(expected)
                    )
                }
                None => format!("{key}: {what} is not accepted here"),
            };
            return ConfigError::Invalid {
                origin: origin.to_owned(),
                line,
                column,
                message: self.scrub(&message),
            };
        }
        // Outside every substituted scalar: the text since the last one before it is copied
        // as it was.
        let original_index = self
            .replacements
            .iter()
            .rev()
            .find(|r| r.resolved.end <= index)
            .map_or(index, |r| r.original.end + (index - r.resolved.end));
        let (line, column) = line_column(&self.original, original_index);
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message: self.scrub(&message),
        }
    }

    /// `message` with every substituted value taken out (for errors found after parsing,
    /// which may quote a value).
    pub fn scrub(&self, message: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .replacements
            .iter()
            .filter(|r| !r.variables.is_empty())
            .flat_map(|r| {
                let name = r.variables.first().map_or("${...}", String::as_str);
                r.values.iter().enumerate().map(move |(i, value)| {
                    (
                        value.as_str(),
                        r.variables.get(i).map_or(name, String::as_str),
                    )
                })
            })
            .filter(|(value, _)| !value.is_empty())
            .collect();
        // Longest first, so a value inside another is not replaced first.
        pairs.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let mut message = message.to_owned();
        for (value, name) in pairs {
            for form in [format!("{value:?}"), format!("`{value}`")] {
                message = message.replace(&form, &format!("`{name}`"));
            }
            if value.chars().count() >= 6 {
                message = message.replace(value, name);
            }
        }
        message
    }

    /// Scrub a semantic error (see `scrub`).
    pub fn scrub_error(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Semantic { origin, message } => ConfigError::Semantic {
                origin,
                message: self.scrub(&message),
            },
            ConfigError::Invalid {
                origin,
                line,
                column,
                message,
            } => ConfigError::Invalid {
                origin,
                line,
                column,
                message: self.scrub(&message),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, ConfigError> {
        substitute_env(text, "t", |name| (name == "A").then(|| "alpha".to_owned())).map(|s| s.text)
    }

    fn with(vars: &[(&str, &str)], text: &str) -> Result<Substituted, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        substitute_env(text, "t", move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn value_of(vars: &[(&str, &str)], text: &str) -> serde_yaml::Value {
        let substituted = with(vars, text).unwrap_or_else(|e| panic!("{text}: {e}"));
        serde_yaml::from_str(&substituted.text)
            .unwrap_or_else(|e| panic!("{text} -> {}: {e}", substituted.text))
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        assert_eq!(
            run("x: ${A}\ny: ${B:-beta}\nz: $${A} $5").unwrap(),
            "x: alpha\ny: beta\nz: \"${A} $5\""
        );
        let value = value_of(&[("A", "alpha")], "x: ${A}\ny: ${B:-beta}\nz: $${A} $5\n");
        assert_eq!(value["x"], "alpha");
        assert_eq!(value["y"], "beta");
        assert_eq!(value["z"], "${A} $5");
    }

    #[test]
    fn unresolved_variable_names_line_and_column() {
        let error = run("a: 1\nb: \"${MISSING}\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "t:2:5: environment variable `MISSING` is not set (set it, or write `${MISSING:-default}`)"
        );
        let error = run("a: 1\nb: \"x ${A} ${NOPE}\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("t:2:12: environment variable `NOPE`"),
            "{error}"
        );
        let error = run("a: &anchor\n   x${NOPE}\n").unwrap_err().to_string();
        assert!(error.starts_with("t:2:5: "), "{error}");
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            run("a: \"x#${A}\" # see ${UNSET}\n# ${UNSET}\nb: x #${UNSET}\n").unwrap(),
            "a: \"x#alpha\" # see ${UNSET}\n# ${UNSET}\nb: x #${UNSET}\n"
        );
    }

    #[test]
    fn unterminated_placeholder_is_an_error() {
        assert!(run("a: ${A").is_err());
        assert!(run("a: \"${A\"").is_err());
        assert!(run("a: ${A B}").is_err());
    }

    #[test]
    fn values_stay_scalars_whatever_they_hold() {
        for hostile in [
            "x: y",
            "x\ny: z",
            "\"quoted\"",
            "'single'",
            "back\\slash\\",
            "a\\\"b",
            "[1, 2]",
            "{a: b}",
            "- item",
            "- ",
            "-",
            "&anchor",
            "*alias",
            "!!int 5",
            "# comment",
            "x # not a comment",
            "|\n  block",
            ">",
            "---",
            "...",
            "? key",
            "%YAML 1.1",
            "@reserved",
            "`tick`",
            "tab\there",
            "nul\0byte",
            "esc\u{1b}[1m",
            "line\u{2028}sep",
            "nel\u{85}x",
            "bom\u{feff}x",
            "\r\ncrlf",
            "trailing space ",
            " leading",
            "",
            "null",
        ] {
            for template in [
                "k: ${V}\nafter: 1\n",
                "k: \"${V}\"\nafter: 1\n",
                "k: '${V}'\nafter: 1\n",
                "k: pre ${V} post\nafter: 1\n",
                "k: [${V}, \"${V}\"]\nafter: 1\n",
                "k: {a: ${V}, b: x}\nafter: 1\n",
                "k:\n  - ${V}\n  - x\nafter: 1\n",
                "k: |\n  ${V}\n  more\nafter: 1\n",
                "k: >-\n  ${V}\nafter: 1\n",
                "k: &a ${V}\nc: *a\nafter: 1\n",
                "k: !!str ${V}\nafter: 1\n",
                "k: ${V} # comment: x\nafter: 1\n",
                "k: \"multi\n  line ${V}\"\nafter: 1\n",
                "outer:\n  k: ${V}\n  after: 1\n",
            ] {
                let value = value_of(&[("V", hostile)], template);
                let root = if template.starts_with("outer") {
                    &value["outer"]
                } else {
                    &value
                };
                assert_eq!(root["after"], 1, "{template:?} with {hostile:?}");
                let mapping = root.as_mapping().unwrap();
                let keys: Vec<_> = mapping.keys().filter_map(|k| k.as_str()).collect();
                assert!(
                    keys == ["k", "after"] || keys == ["k", "c", "after"],
                    "{template:?} with {hostile:?}: {keys:?}"
                );
                if template.starts_with("outer") {
                    assert_eq!(value.as_mapping().map(|m| m.len()), Some(1));
                }
                let k = &root["k"];
                match template {
                    t if t.starts_with("k: [") => {
                        assert_eq!(k[1], hostile, "{t:?}");
                        if !plain_safe(hostile) {
                            assert_eq!(k[0], k[1], "{t:?} {hostile:?}");
                        }
                        assert_eq!(k.as_sequence().map(Vec::len), Some(2));
                    }
                    t if t.starts_with("k: {") => {
                        assert_eq!(k["b"], "x");
                        assert_eq!(k.as_mapping().map(|m| m.len()), Some(2));
                    }
                    t if t.starts_with("k:\n") => {
                        assert_eq!(k[1], "x");
                        assert_eq!(k.as_sequence().map(Vec::len), Some(2));
                    }
                    "k: \"${V}\"\nafter: 1\n" | "k: '${V}'\nafter: 1\n" => {
                        assert_eq!(k.as_str(), Some(hostile), "{template:?}");
                    }
                    "k: pre ${V} post\nafter: 1\n" => {
                        assert_eq!(k.as_str(), Some(format!("pre {hostile} post").as_str()));
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn plain_words_keep_their_yaml_type() {
        let vars = [
            ("N", "8080"),
            ("B", "true"),
            ("F", "1.5"),
            ("S", "word"),
            ("E", ""),
        ];
        let value = value_of(
            &vars,
            "n: ${N}\nb: ${B}\nf: ${F}\ns: ${S}\ne: ${E}\nq: \"${N}\"\nl: [${E}]\n",
        );
        assert_eq!(value["n"], 8080);
        assert_eq!(value["b"], true);
        assert_eq!(value["f"], 1.5);
        assert_eq!(value["s"], "word");
        assert!(value["e"].is_null());
        assert_eq!(value["q"], "8080");
        assert_eq!(value["l"][0], "");
    }

    #[test]
    fn placeholders_read_as_plain_words_in_flow_collections() {
        let value = value_of(
            &[("T", "t0k, en}"), ("N", "5")],
            "auth: {type: bearer, token: ${T}}\nlist: [${N}, ${M:-a, b}]\n",
        );
        assert_eq!(value["auth"]["token"], "t0k, en}");
        assert_eq!(value["auth"]["type"], "bearer");
        assert_eq!(value["list"][0], 5);
        assert_eq!(value["list"][1], "a, b");
        assert_eq!(value["list"].as_sequence().map(Vec::len), Some(2));
    }

    #[test]
    fn syntax_errors_are_reported_without_values() {
        let error = with(&[("V", "s3cret")], "a: ${V}\nb: [1, 2\nc: 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("t:"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        let error = run("a: \u{f0001}\n").unwrap_err().to_string();
        assert!(error.starts_with("t:1:4: character U+F0001"), "{error}");
        assert!(run("a: ${}\n").is_err());
        assert!(run("a: [${}]\n").is_err());
    }

    #[test]
    fn keys_are_not_substituted() {
        let error = run("${A}: 1\n").unwrap_err().to_string();
        assert!(
            error.starts_with("t:1:1: variables are substituted in values"),
            "{error}"
        );
        let value = value_of(&[], "$${A}: 1\n");
        assert_eq!(value["${A}"], 1);
    }

    #[test]
    fn lines_are_kept_so_later_errors_point_at_the_original() {
        let substituted = with(
            &[("V", "a\nb\nc")],
            "k: |\n  ${V}\n  x\nm: \"one\n  ${V}\"\nz: 1\n",
        )
        .unwrap();
        assert_eq!(
            substituted.text.lines().count(),
            "k: |\n  ${V}\n  x\nm: \"one\n  ${V}\"\nz: 1\n"
                .lines()
                .count()
        );
        let z_line = substituted.text.lines().position(|l| l.starts_with("z:"));
        assert_eq!(z_line, Some(5));
    }

    #[test]
    fn type_errors_name_the_key_and_variable_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code, reason = "only deserialised")]
        struct Inner {
            timeout_ms: u64,
            port: Option<u16>,
            flag: Option<bool>,
            mode: Option<Mode>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Mode {
            Fast,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code, reason = "only deserialised")]
        struct Outer {
            data: std::collections::BTreeMap<String, Inner>,
        }
        let secret = "hunter2-very-secret";
        for (text, expected) in [
            (
                "data:\n  x:\n    timeout_ms: ${SECRET}\n",
                "t:3:17: data.x.timeout_ms: expected a non-negative integer, got the value of ${SECRET}",
            ),
            (
                "data:\n  x:\n    timeout_ms: 1\n    port: \"${SECRET}\"\n",
                "t:4:11: data.x.port: expected an integer from 0 to 65535, got the value of ${SECRET}",
            ),
            (
                "data:\n  x: {timeout_ms: 1, flag: \"${SECRET}\"}\n",
                "t:2:28: data.x.flag: expected a boolean, got the value of ${SECRET}",
            ),
            (
                "data:\n  x:\n    timeout_ms: 1\n    mode: pre-${SECRET}\n",
                "t:4:11: data.x.mode: expected `fast`, got a value made with ${SECRET}",
            ),
            (
                "data:\n  x:\n    timeout_ms: 1\n    port: ${BIG}\n",
                "t:4:11: data.x.port: expected an integer from 0 to 65535, got the value of ${BIG}",
            ),
        ] {
            let substituted = with(&[("SECRET", secret), ("BIG", "99999")], text).unwrap();
            let error = serde_yaml::from_str::<Outer>(&substituted.text).unwrap_err();
            let message = substituted.yaml_error(&error, "t").to_string();
            assert_eq!(message, expected, "{text}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn errors_after_a_replacement_point_at_the_original_position() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only deserialised")]
        struct Both {
            a: String,
            b: Option<u8>,
        }
        let text = "a: \"${V}\"\nb: 1\nwrong: 2\n";
        let substituted = with(&[("V", "a much longer value than before")], text).unwrap();
        let error = serde_yaml::from_str::<Both>(&substituted.text).unwrap_err();
        let message = substituted.yaml_error(&error, "t").to_string();
        assert!(
            message.starts_with("t:3:1: unknown field `wrong`"),
            "{message}"
        );
        // On the same line as a replacement: the column of the original.
        let text = "{a: \"${V}\", b: 1, wrong: 2}\n";
        let substituted = with(&[("V", "a much longer value than before")], text).unwrap();
        let error = serde_yaml::from_str::<Both>(&substituted.text).unwrap_err();
        let message = substituted.yaml_error(&error, "t").to_string();
        assert!(
            message.starts_with("t:1:19: unknown field `wrong`"),
            "{message}"
        );
    }

    #[test]
    fn scrub_takes_out_quoted_and_long_values() {
        let substituted = with(
            &[("T", "s3cret-token"), ("P", "ab")],
            "a: \"${T}\"\nb: ${P}\n",
        )
        .unwrap();
        let scrubbed =
            substituted.scrub("bad `s3cret-token`, \"s3cret-token\" and s3cret-token; `ab` ok ab");
        assert_eq!(scrubbed, "bad `${T}`, `${T}` and ${T}; `${P}` ok ab");
    }
}
