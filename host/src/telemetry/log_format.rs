//! Field formatting of the stderr log: every field value and every message is written with
//! control characters escaped, so text a plugin controls (its log lines, names, tool names,
//! error messages, URLs it asked for) can never start a new log line, rewrite the current one
//! (`\r`), drive the terminal (ESC sequences) or reorder what is shown (bidirectional
//! overrides). It replaces `tracing_subscriber`'s default field formatter, so no call site
//! can forget it.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The field formatter of the log (`fmt::layer().fmt_fields(EscapedFields)`): like the
/// default one (`message` bare, other fields `name=value`, strings quoted), with everything
/// passed through `escape_into`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = FieldVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl FieldVisitor<'_> {
    fn put(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // Metadata of `log` records, already shown by the event formatter.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if !self.first {
                self.writer.write_char(' ')?;
            }
            if name != "message" {
                write!(self.writer, "{name}=")?;
            }
            write!(Escaping(&mut self.writer), "{value}")
        })();
        self.first = false;
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.put(field, format_args!("{value}"));
        } else {
            self.put(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut chain = String::new();
        let mut source = value.source();
        while let Some(error) = source {
            let _ = write!(chain, ": {error}");
            source = error.source();
        }
        self.put(field, format_args!("{value}{chain}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format_args!("{value:?}"));
    }
}

/// A writer that escapes what `escape_into` escapes on the way through.
struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape_into(text, self.0)
    }
}

/// Does `c` need escaping in a log line? Control characters (C0 with line feed, carriage
/// return and tab, DEL, C1 with NEL), the Unicode line and paragraph separators, and the
/// bidirectional formatting characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Write `text` with `\n`, `\r`, `\t` and every other character `needs_escape` names as an
/// escape (`\u{1b}`); everything else as it is.
pub fn escape_into(text: &str, out: &mut impl Write) -> fmt::Result {
    let mut rest = text;
    while let Some(index) = rest.find(needs_escape) {
        out.write_str(&rest[..index])?;
        let c = rest[index..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            other => write!(out, "\\u{{{:x}}}", u32::from(other))?,
        }
        rest = &rest[index + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `text` as one safe log line (see `escape_into`).
pub fn escape_log_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = escape_into(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .fmt_fields(EscapedFields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn escapes_control_and_bidi_characters() {
        assert_eq!(escape_log_text("plain text"), "plain text");
        assert_eq!(escape_log_text("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape_log_text("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_log_text("x\u{85}y\u{2028}z"), "x\\u{85}y\\u{2028}z");
        assert_eq!(escape_log_text("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(escape_log_text("\0\u{7f}é"), "\\u{0}\\u{7f}é");
    }

    #[test]
    fn a_field_or_message_cannot_forge_a_log_line() {
        let hostile = "ok\nERROR databot: forged line\r\u{1b}[2K";
        let output = logged(|| {
            let plugin = "web\nfetch";
            tracing::warn!(
                target: "plugin",
                plugin,
                display = %hostile,
                debug = ?hostile,
                "{hostile}"
            );
            let error = std::io::Error::other(hostile);
            tracing::error!(
                error = &error as &(dyn std::error::Error + 'static),
                "failed"
            );
        });
        assert_eq!(output.lines().count(), 2, "{output:?}");
        assert!(
            !output.contains('\r') && !output.contains('\u{1b}'),
            "{output:?}"
        );
        let first = output.lines().next().unwrap_or_default();
        assert!(
            first.contains("ok\\nERROR databot: forged line\\r\\u{1b}[2K"),
            "{first}"
        );
        assert!(first.contains("plugin=\"web\\nfetch\""), "{first}");
        assert!(first.contains("display=ok\\nERROR"), "{first}");
        assert!(output.contains("error=ok\\nERROR"), "{output}");
    }

    #[test]
    fn ordinary_lines_look_as_before() {
        let output = logged(|| tracing::info!(plugin = "echo", port = 8080, "loaded"));
        assert!(
            output.ends_with(
                "INFO databot::telemetry::log_format::tests: loaded plugin=\"echo\" port=8080\n"
            ),
            "{output:?}"
        );
    }
}
