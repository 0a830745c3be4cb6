//! Splitting an answer into messages a platform accepts: at most `max_chars` characters
//! each, cut at a paragraph, a line, a sentence or a word where there is one, and a fenced
//! code block cut in two is closed at the end of one part and reopened at the start of the next.

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
        let budget = max_chars - if reopen { FENCE_ROOM } else { 0 };
        let cut = if rest.chars().count() <= budget {
            rest.len()
        } else {
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
        reopen = open;
        parts.push(part.trim_end().to_owned());
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

/// Where a streamed text that passed `max_chars` is cut: the length of its first part.
pub fn first_cut(text: &str, max_chars: usize) -> usize {
    if text.chars().count() <= max_chars {
        return text.len();
    }
    cut_point(text, max_chars.max(FENCE_ROOM * 4))
}

/// Is a code fence open after `head`, given whether one was open before it?
fn fence_open_after(open_before: bool, head: &str) -> bool {
    head.lines()
        .filter(|line| line.trim_start().starts_with("```"))
        .fold(open_before, |open, _| !open)
}

/// The byte offset to cut `text` at so the head holds at most `budget` characters: after the
/// last paragraph break, line break, sentence end or space in the second half of the budget,
/// else at the budget.
fn cut_point(text: &str, budget: usize) -> usize {
    let limit = text
        .char_indices()
        .nth(budget)
        .map_or(text.len(), |(at, _)| at);
    let window = &text[..limit];
    let floor = window
        .char_indices()
        .nth(budget / 2)
        .map_or(0, |(at, _)| at);
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
            assert!(part.chars().count() <= 100, "{}", part.len());
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
        assert!(parts.iter().all(|p| p.chars().count() <= 64));
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
            assert!(part.chars().count() <= 200, "{part}");
            let fences = part
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count();
            assert_eq!(fences % 2, 0, "unbalanced: {part}");
        }
        assert!(parts.last().unwrap().ends_with("Done."));
    }
}
