//! Markdown, as language models write it, rendered in each chat platform's dialect with that
//! dialect's escaping: Slack and Google Chat (`*bold*`, `<url|text>`, `&`, `<` and `>`
//! escaped), Telegram (HTML parse mode), WhatsApp (`*bold*`, links as `text (url)`), and
//! Discord (Markdown itself, with mass mentions defused).
//!
//! Handled: fenced code blocks, inline code, `**bold**`/`__bold__`, `*italic*`/`_italic_`,
//! `~~strike~~`, `[text](url)`, `#` headings (as bold) and `-`/`*` list items (as bullets).
//! Anything else is text.

/// A platform's Markdown dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Slack `mrkdwn` (also Google Chat's text formatting).
    Slack,
    /// Telegram's HTML parse mode.
    TelegramHtml,
    WhatsApp,
    Discord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Bold,
    Italic,
    Strike,
}

fn escape(dialect: Dialect, text: &str, out: &mut String) {
    match dialect {
        Dialect::Slack | Dialect::TelegramHtml => {
            for c in text.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' if dialect == Dialect::TelegramHtml => out.push_str("&quot;"),
                    c => out.push(c),
                }
            }
        }
        Dialect::WhatsApp => out.push_str(text),
        Dialect::Discord => {
            // A model's text must never ping a whole server (the plugin also sends
            // `allowed_mentions: {parse: []}`). The full-width at sign is one UTF-16 unit like
            // `@`, so defusing never lengthens a message past the limit the host split it to.
            out.push_str(
                &text
                    .replace("@everyone", "\u{ff20}everyone")
                    .replace("@here", "\u{ff20}here"),
            );
        }
    }
}

fn marker(dialect: Dialect, style: Style, open: bool) -> &'static str {
    match (dialect, style) {
        (Dialect::TelegramHtml, Style::Bold) => {
            if open {
                "<b>"
            } else {
                "</b>"
            }
        }
        (Dialect::TelegramHtml, Style::Italic) => {
            if open {
                "<i>"
            } else {
                "</i>"
            }
        }
        (Dialect::TelegramHtml, Style::Strike) => {
            if open {
                "<s>"
            } else {
                "</s>"
            }
        }
        (Dialect::Discord, Style::Bold) => "**",
        (Dialect::Discord, Style::Italic) => "*",
        (Dialect::Discord, Style::Strike) => "~~",
        (_, Style::Bold) => "*",
        (_, Style::Italic) => "_",
        (_, Style::Strike) => "~",
    }
}

/// Render `markdown` in `dialect`.
pub fn render(markdown: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(markdown.len() + 16);
    let mut in_code = false;
    for (index, line) in markdown.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            match (dialect, in_code) {
                (Dialect::TelegramHtml, true) => out.push_str("<pre>"),
                (Dialect::TelegramHtml, false) => out.push_str("</pre>"),
                (Dialect::Discord, true) => out.push_str(trimmed),
                _ => out.push_str("```"),
            }
            continue;
        }
        if in_code {
            escape(dialect, line, &mut out);
            continue;
        }
        if let Some(heading) = heading_text(trimmed) {
            if dialect == Dialect::Discord {
                out.push_str(&trimmed[..trimmed.len() - heading.len()]);
                inline(heading, dialect, &mut out);
            } else {
                out.push_str(marker(dialect, Style::Bold, true));
                inline(heading, dialect, &mut out);
                out.push_str(marker(dialect, Style::Bold, false));
            }
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            out.push_str(indent);
            out.push_str(if dialect == Dialect::Discord {
                "- "
            } else {
                "• "
            });
            inline(item, dialect, &mut out);
            continue;
        }
        inline(line, dialect, &mut out);
    }
    if in_code && dialect == Dialect::TelegramHtml {
        out.push_str("</pre>");
    }
    out
}

fn heading_text(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    (1..=6)
        .contains(&hashes)
        .then(|| line[hashes..].strip_prefix(' '))
        .flatten()
}

/// Render one line's inline Markdown.
fn inline(text: &str, dialect: Dialect, out: &mut String) {
    let mut open: Vec<Style> = Vec::new();
    let mut rest = text;
    let mut plain = String::new();
    while let Some(c) = rest.chars().next() {
        // Inline code: verbatim up to the closing backtick.
        if c == '`'
            && let Some(end) = rest[1..].find('`')
        {
            flush(&mut plain, dialect, out);
            let code = &rest[1..=end];
            if dialect == Dialect::TelegramHtml {
                out.push_str("<code>");
                escape(dialect, code, out);
                out.push_str("</code>");
            } else {
                out.push('`');
                escape(dialect, code, out);
                out.push('`');
            }
            rest = &rest[end + 2..];
            continue;
        }
        // A link: [text](url).
        if c == '['
            && let Some((label, url, used)) = link(rest)
        {
            flush(&mut plain, dialect, out);
            match dialect {
                Dialect::Slack => {
                    out.push('<');
                    out.push_str(&url.replace('|', "%7C").replace('>', "%3E"));
                    out.push('|');
                    escape(dialect, label, out);
                    out.push('>');
                }
                Dialect::TelegramHtml => {
                    out.push_str("<a href=\"");
                    escape(dialect, url, out);
                    out.push_str("\">");
                    escape(dialect, label, out);
                    out.push_str("</a>");
                }
                Dialect::WhatsApp => {
                    out.push_str(label);
                    out.push_str(" (");
                    out.push_str(url);
                    out.push(')');
                }
                Dialect::Discord => {
                    out.push('[');
                    escape(dialect, label, out);
                    out.push_str("](");
                    out.push_str(url);
                    out.push(')');
                }
            }
            rest = &rest[used..];
            continue;
        }
        let style = if rest.starts_with("**") || rest.starts_with("__") {
            Some((Style::Bold, 2))
        } else if rest.starts_with("~~") {
            Some((Style::Strike, 2))
        } else if (c == '*' || c == '_') && emphasis_edge(text, rest) {
            Some((Style::Italic, 1))
        } else {
            None
        };
        if let Some((style, width)) = style {
            let closing = open.last() == Some(&style);
            let has_close = closing || rest[width..].contains(&rest[..width]);
            if has_close {
                flush(&mut plain, dialect, out);
                if closing {
                    open.pop();
                } else {
                    open.push(style);
                }
                out.push_str(marker(dialect, style, !closing));
                rest = &rest[width..];
                continue;
            }
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut plain, dialect, out);
    // Close what the line left open, so one stray marker cannot format the rest.
    while let Some(style) = open.pop() {
        out.push_str(marker(dialect, style, false));
    }
}

fn flush(plain: &mut String, dialect: Dialect, out: &mut String) {
    if !plain.is_empty() {
        escape(dialect, plain, out);
        plain.clear();
    }
}

/// A single `*` or `_` is emphasis only next to a word, not inside one (`snake_case`) or
/// between spaces (`2 * 3`).
fn emphasis_edge(line: &str, rest: &str) -> bool {
    let at = line.len() - rest.len();
    let before = line[..at].chars().next_back();
    let after = rest[1..].chars().next();
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let solid = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
    let opens = !word(before) && solid(after);
    let closes = solid(before) && !word(after);
    opens || closes
}

/// `[label](url)` at the start of `text`: the label, the URL and the bytes used.
fn link(text: &str) -> Option<(&str, &str, usize)> {
    let close = text.find("](")?;
    let label = &text[1..close];
    if label.contains('\n') || label.contains('[') {
        return None;
    }
    let rest = &text[close + 2..];
    let end = rest.find(')')?;
    let url = &rest[..end];
    let safe =
        url.starts_with("https://") || url.starts_with("http://") || url.starts_with("mailto:");
    (safe && !url.contains(char::is_whitespace)).then_some((label, url, close + 2 + end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escapes_control_characters_and_converts_styles_and_links() {
        let text = "**Total**: 3 < 5 & _fast_ ~~slow~~ see [docs](https://x.io/a?b=1|2)";
        assert_eq!(
            render(text, Dialect::Slack),
            "*Total*: 3 &lt; 5 &amp; _fast_ ~slow~ see <https://x.io/a?b=1%7C2|docs>"
        );
    }

    #[test]
    fn telegram_html_escapes_and_balances_tags() {
        assert_eq!(
            render(
                "# Result\n**a <b>** `x<y`\n```\nif a < b {}\n```",
                Dialect::TelegramHtml
            ),
            "<b>Result</b>\n<b>a &lt;b&gt;</b> <code>x&lt;y</code>\n<pre>\nif a &lt; b {}\n</pre>"
        );
        // An unclosed marker is closed at the end of its line.
        assert_eq!(render("**open", Dialect::TelegramHtml), "**open");
        assert_eq!(render("a **b", Dialect::TelegramHtml), "a **b");
    }

    #[test]
    fn snake_case_and_arithmetic_are_not_emphasis() {
        assert_eq!(
            render("use snake_case_name", Dialect::Slack),
            "use snake_case_name"
        );
        assert_eq!(render("2 * 3 * 4", Dialect::TelegramHtml), "2 * 3 * 4");
    }

    #[test]
    fn whatsapp_writes_links_out_and_discord_defuses_mass_mentions() {
        assert_eq!(
            render("- see [docs](https://x.io)", Dialect::WhatsApp),
            "• see docs (https://x.io)"
        );
        assert_eq!(
            render("hey @everyone and @here", Dialect::Discord),
            "hey \u{ff20}everyone and \u{ff20}here"
        );
        assert_eq!(
            render("# @everyone", Dialect::Discord),
            "# \u{ff20}everyone"
        );
    }

    #[test]
    fn unsafe_link_schemes_stay_text() {
        let rendered = render("[x](javascript:alert(1))", Dialect::TelegramHtml);
        assert!(!rendered.contains("<a"), "{rendered}");
    }
}
