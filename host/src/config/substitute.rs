//! `${VAR}` and `${VAR:-default}` substitution in configuration text; `$${` is a literal `${`.

use super::ConfigError;

/// Replace every placeholder; an unresolved variable is an error naming its line and column.
pub fn substitute_env(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (line_index, full_line) in text.split_inclusive('\n').enumerate() {
        // Comments are copied as they are: a `${VAR}` in a comment is documentation.
        let (line, comment) =
            full_line.split_at(comment_start(full_line).unwrap_or(full_line.len()));
        let mut rest = line;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar..];
            if let Some(escaped) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = escaped;
                continue;
            }
            if !after.starts_with("${") {
                out.push('$');
                rest = &after[1..];
                continue;
            }
            let column = line.len() - rest.len() + dollar + 1;
            let error = |message: String| ConfigError::Invalid {
                origin: origin.to_owned(),
                line: line_index + 1,
                column,
                message,
            };
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
                    "`${{{inner}}}` is not a valid variable name"
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
            if value.contains(['\n', '\r']) {
                return Err(error(format!(
                    "environment variable `{name}` contains a line break, which cannot be substituted"
                )));
            }
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment starts: a `#` outside quotes, at the start or after whitespace.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (index, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return Some(index),
            None => {}
        }
        previous = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, ConfigError> {
        substitute_env(text, "t", |name| (name == "A").then(|| "alpha".to_owned()))
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        assert_eq!(
            run("x: ${A}\ny: ${B:-beta}\nz: $${A} $5").unwrap(),
            "x: alpha\ny: beta\nz: ${A} $5"
        );
    }

    #[test]
    fn unresolved_variable_names_line_and_column() {
        let error = run("a: 1\nb: \"${MISSING}\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "t:2:5: environment variable `MISSING` is not set (set it, or write `${MISSING:-default}`)"
        );
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            run("a: \"x#${A}\" # see ${UNSET}\n# ${UNSET}\n").unwrap(),
            "a: \"x#alpha\" # see ${UNSET}\n# ${UNSET}\n"
        );
    }

    #[test]
    fn unterminated_placeholder_is_an_error() {
        assert!(run("a: ${A").is_err());
    }
}
