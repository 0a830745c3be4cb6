//! Splitting documents into retrieval chunks: markdown headings start sections (the heading
//! path travels with every chunk), paragraphs are packed up to a target size, and each chunk
//! repeats the end of the previous one in the same section (the overlap) so a fact cut at a
//! boundary is still found whole. Sizes are in bytes of UTF-8, cut only at char boundaries
//! and, where possible, at whitespace.

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocChunk {
    /// `Title > Section > Subsection` (empty before the first heading).
    pub heading: String,
    pub text: String,
}

/// Split `text` into chunks of about `size` bytes repeating `overlap` bytes. `markdown`
/// turns on heading detection.
pub fn chunk_document(text: &str, size: usize, overlap: usize, markdown: bool) -> Vec<DocChunk> {
    let size = size.max(16);
    let overlap = overlap.min(size / 2);
    let mut chunks = Vec::new();
    for (heading, body) in sections(text, markdown) {
        let mut packer = Packer {
            size,
            overlap,
            heading: &heading,
            current: String::new(),
            fresh: false,
            out: &mut chunks,
        };
        for paragraph in paragraphs(&body) {
            packer.add(&paragraph);
        }
        packer.flush();
    }
    chunks
}

struct Packer<'a> {
    size: usize,
    overlap: usize,
    heading: &'a str,
    /// Text of the chunk being built (may start with the previous chunk's tail).
    current: String,
    /// Whether `current` holds anything beyond the carried-over overlap.
    fresh: bool,
    out: &'a mut Vec<DocChunk>,
}

impl Packer<'_> {
    fn add(&mut self, paragraph: &str) {
        if paragraph.len() > self.size {
            // The packer carries the overlap between pieces; leave room for it.
            let room = self.size.saturating_sub(self.overlap + 2).max(8);
            for piece in windows(paragraph, room, 0) {
                self.push_piece(piece);
            }
            return;
        }
        self.push_piece(paragraph);
    }

    fn push_piece(&mut self, piece: &str) {
        let separator = if self.current.is_empty() { 0 } else { 2 };
        if self.fresh && self.current.len() + separator + piece.len() > self.size {
            self.flush();
        }
        if !self.current.is_empty() {
            self.current.push_str("\n\n");
        }
        self.current.push_str(piece);
        self.fresh = true;
    }

    fn flush(&mut self) {
        if !self.fresh {
            return;
        }
        let text = std::mem::take(&mut self.current);
        self.current = tail(&text, self.overlap).to_owned();
        self.fresh = false;
        self.out.push(DocChunk {
            heading: self.heading.to_owned(),
            text,
        });
    }
}

/// `(heading path, body)` per section.
fn sections(text: &str, markdown: bool) -> Vec<(String, String)> {
    if !markdown {
        return vec![(String::new(), text.to_owned())];
    }
    let mut out = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let heading = (!in_fence).then(|| heading_of(line)).flatten();
        match heading {
            Some((level, title)) => {
                out.push((joined(&path), std::mem::take(&mut body)));
                path.retain(|(l, _)| *l < level);
                path.push((level, title.to_owned()));
            }
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out.push((joined(&path), body));
    // A heading with no text under it still says something: keep it as its own section
    // only when it has a body; empty sections vanish.
    out.retain(|(_, body)| !body.trim().is_empty());
    out
}

fn heading_of(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !rest.starts_with(' ') && !rest.is_empty() {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    (!title.is_empty()).then_some((level, title))
}

fn joined(path: &[(usize, String)]) -> String {
    path.iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join(" > ")
}

/// Blank-line separated paragraphs, trimmed, empty ones dropped.
fn paragraphs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        if line.trim().is_empty() {
            if !current.trim().is_empty() {
                out.push(current.trim_end().to_owned());
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim_end().to_owned());
    }
    out
}

/// Overlapping windows of about `size` bytes over a long text, cut at whitespace when
/// there is some in the second half of the window.
fn windows(text: &str, size: usize, overlap: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = text.floor_char_boundary((start + size).min(text.len()));
        if end < text.len()
            && let Some(space) = text[start..end].rfind(char::is_whitespace)
            && space > size / 2
        {
            end = start + space;
        }
        if end <= start {
            end = text.ceil_char_boundary(start + 1);
        }
        out.push(text[start..end].trim());
        if end >= text.len() {
            break;
        }
        let next = text.floor_char_boundary(end.saturating_sub(overlap));
        // Start the overlap at a word when possible; always move forward.
        let next = text[next..end]
            .find(char::is_whitespace)
            .map_or(next, |i| text.ceil_char_boundary(next + i + 1));
        start = if next > start { next } else { end };
    }
    out.retain(|piece| !piece.is_empty());
    out
}

/// The last `overlap` bytes of `text`, starting at a word when possible.
fn tail(text: &str, overlap: usize) -> &str {
    if overlap == 0 {
        return "";
    }
    if text.len() <= overlap {
        return text;
    }
    let start = text.ceil_char_boundary(text.len() - overlap);
    let piece = &text[start..];
    match piece.find(char::is_whitespace) {
        Some(i) if i + 1 < piece.len() => piece[i..].trim_start(),
        _ => piece,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_give_sections_with_their_path() {
        let text = "# Guide\nintro\n\n## Orders\nOrders are placed daily.\n\n```\n# not a heading\n```\n\n### Refunds\nRefunds take a week.\n## Empty\n";
        let chunks = chunk_document(text, 500, 50, true);
        let headings: Vec<&str> = chunks.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(
            headings,
            ["Guide", "Guide > Orders", "Guide > Orders > Refunds"]
        );
        assert!(chunks[1].text.contains("# not a heading"));
        assert!(chunks[2].text.contains("Refunds take a week."));
        // Plain text has no headings.
        let plain = chunk_document("# just text\nmore", 500, 50, false);
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].heading, "");
    }

    #[test]
    fn paragraphs_are_packed_with_overlap() {
        let paragraphs: Vec<String> = (0..12)
            .map(|i| format!("Paragraph {i} says something about topic {i} in enough words."))
            .collect();
        let text = paragraphs.join("\n\n");
        let chunks = chunk_document(&text, 200, 40, true);
        assert!(chunks.len() >= 4, "{chunks:#?}");
        for chunk in &chunks {
            assert!(chunk.text.len() <= 200 + 40 + 2, "{}", chunk.text.len());
        }
        for pair in chunks.windows(2) {
            // The next chunk starts with the end of the previous one.
            let carried = tail(&pair[0].text, 40);
            assert!(!carried.is_empty() && carried.len() <= 40);
            assert!(pair[0].text.ends_with(carried));
            assert!(
                pair[1].text.starts_with(carried),
                "{carried:?} does not start {:?}",
                pair[1].text
            );
        }
        // Every paragraph survives somewhere.
        for paragraph in &paragraphs {
            assert!(chunks.iter().any(|c| c.text.contains(paragraph.as_str())));
        }
    }

    #[test]
    fn long_paragraphs_are_windowed_and_utf8_is_respected() {
        let text = "äöü wörter ".repeat(200);
        let chunks = chunk_document(&text, 300, 60, false);
        assert!(chunks.len() > 5);
        for pair in chunks.windows(2) {
            let head: String = pair[1].text.chars().take(10).collect();
            assert!(pair[0].text.contains(head.trim()), "no overlap");
        }
        // One giant word with no whitespace still progresses.
        let word = "x".repeat(1000);
        let chunks = chunk_document(&word, 300, 60, false);
        assert!(chunks.len() >= 4);
        assert!(chunks.iter().all(|c| c.text.len() <= 300));
    }
}
