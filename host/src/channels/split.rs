//! Splitting an answer into messages a platform accepts: at most `max_chars` each, cut at a
//! paragraph, a line, a sentence or a word where there is one, and a fenced code block cut in
//! two is closed at the end of one part and reopened at the start of the next.
//!
//! Lengths are UTF-16 code units, the way the platforms count (Telegram, Discord and Slack
//! measure strings as JavaScript does): an emoji outside the Basic Multilingual Plane is two,
//! and counting scalar values instead would let such text run over the limit.

/// The length of `text` as the platforms count it.
pub fn units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// The longest prefix of `text` of at most `max_units`, ending on a character boundary.
pub fn prefix_within(text: &str, max_units: usize) -> &str {
    &text[..offset_at(text, max_units)]
}

/// The byte offset where the prefix of at most `max_units` ends.
fn offset_at(text: &str, max_units: usize) -> usize {
    let mut counted = 0;
    for (at, c) in text.char_indices() {
        counted += c.len_utf16();
        if counted > max_units {
            return at;
        }
    }
    text.len()
}

/// Characters kept free in each part for a closing and a reopening fence.
const FENCE_ROOM: usize = 8;

/// The parts of `text`, in order; their concatenation (fences aside) is `text`. Never empty:
/// an empty text is one empty part.
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(FENCE_ROOM * 4);
    let mut parts = Vec::new();
    let mut rest = text;
    let mut reopen = false;
    while !rest.is_empty() {
        let (part, head_len, open) = next_part(rest, max_chars, reopen);
        parts.push(part);
        let tail = &rest[head_len..];
        reopen = open;
        // Inside a code block the next part keeps its indentation (Python, YAML).
        rest = if reopen {
            tail.strip_prefix('\n').unwrap_or(tail)
        } else {
            tail.trim_start()
        };
    }
    if parts.is_empty() {
        parts.push(String::new());
    }
    parts
}

/// The first part of `text` exactly as `split_message` makes it, and how many bytes of
/// `text` it takes: a message closed while a stream runs past the limit already holds the
/// first part of the answer split whole.
pub fn first_part(text: &str, max_chars: usize) -> (String, usize) {
    let (part, head_len, _) = next_part(text, max_chars.max(FENCE_ROOM * 4), false);
    (part, head_len)
}

/// One part cut from the front of `rest` (`reopen`: a code fence is open before it): its
/// text, the bytes of `rest` it takes, and whether a fence is open after it.
fn next_part(rest: &str, max_chars: usize, reopen: bool) -> (String, usize, bool) {
    let budget = max_chars - if reopen { FENCE_ROOM } else { 0 };
    let cut = if units(rest) <= budget {
        rest.len()
    } else {
        // Room kept for the closing fence.
        cut_point(rest, budget - FENCE_ROOM)
    };
    let (head, tail) = rest.split_at(cut);
    let mut part = String::with_capacity(head.len() + FENCE_ROOM * 2);
    if reopen {
        part.push_str("```\n");
    }
    part.push_str(head);
    let open = fence_open_after(reopen, head);
    if open && !tail.is_empty() {
        if !part.ends_with('\n') {
            part.push('\n');
        }
        part.push_str("```");
    }
    (part.trim_end().to_owned(), cut, open)
}

/// Is a code fence open after `head`, given whether one was open before it?
fn fence_open_after(open_before: bool, head: &str) -> bool {
    head.lines()
        .filter(|line| line.trim_start().starts_with("```"))
        .fold(open_before, |open, _| !open)
}

/// The byte offset to cut `text` at so the head holds at most `budget` units: after the last
/// paragraph break, line break, sentence end or space in the second half of the budget, else
/// at the budget.
fn cut_point(text: &str, budget: usize) -> usize {
    let limit = offset_at(text, budget);
    let window = &text[..limit];
    let floor = offset_at(window, budget / 2);
    for separator in ["\n\n", "\n", ". ", " "] {
        if let Some(at) = window.rfind(separator)
            && at >= floor
        {
            return at + separator.len();
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part_and_empty_text_one_empty_part() {
        assert_eq!(split_message("hello", 100), vec!["hello"]);
        assert_eq!(split_message("", 100), vec![""]);
    }

    #[test]
    fn parts_respect_the_limit_and_cut_at_words() {
        let text = "word ".repeat(1000);
        let parts = split_message(&text, 100);
        assert!(parts.len() > 40);
        for part in &parts {
            assert!(units(part) <= 100, "{}", part.len());
            assert!(!part.starts_with(' ') && !part.contains("wor d"));
        }
        assert_eq!(parts.join(" ").split_whitespace().count(), 1000);
    }

    #[test]
    fn paragraphs_are_preferred_and_multibyte_text_is_never_cut_inside_a_character() {
        let text = format!("{}\n\n{}", "ä".repeat(60), "ö".repeat(60));
        let parts = split_message(&text, 100);
        assert_eq!(parts, vec!["ä".repeat(60), "ö".repeat(60)]);
        let long = "é".repeat(1000);
        let parts = split_message(&long, 64);
        assert!(parts.iter().all(|p| units(p) <= 64));
        assert_eq!(parts.concat(), long);
    }

    #[test]
    fn indentation_inside_a_code_block_survives_a_cut() {
        let code: String = (0..40).map(|i| format!("    line_{i} = {i}\n")).collect();
        let text = format!("```python\ndef f():\n{code}```");
        for part in split_message(&text, 120) {
            for line in part.lines().filter(|l| l.contains("line_")) {
                assert!(line.starts_with("    "), "{line:?} lost its indentation");
            }
        }
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code: String = (0..50).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.");
        let parts = split_message(&text, 200);
        assert!(parts.len() > 2);
        for part in &parts {
            assert!(units(part) <= 200, "{part}");
            let fences = part
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count();
            assert_eq!(fences % 2, 0, "unbalanced: {part}");
        }
        assert!(parts.last().unwrap().ends_with("Done."));
    }

    #[test]
    fn lengths_are_utf16_units_so_emoji_count_twice() {
        assert_eq!(units("a😀é"), 4);
        assert_eq!(prefix_within("😀😀", 3), "😀");
        assert_eq!(prefix_within("ab", 9), "ab");
        let text = "😀".repeat(100);
        let parts = split_message(&text, 64);
        assert!(parts.iter().all(|p| units(p) <= 64), "{parts:?}");
        assert_eq!(parts.concat(), text);
        let (first, taken) = first_part(&text, 64);
        assert_eq!(taken % 4, 0, "never inside a character");
        assert_eq!(first, parts[0]);
    }
}
