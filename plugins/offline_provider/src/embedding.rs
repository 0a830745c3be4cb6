//! The offline embedder: a deterministic hashed bag of features, good enough for keyword-like
//! retrieval over schemas and docs without a model.
//!
//! Features per text: lower-cased words, identifiers split at `_`, `.`, digits and camelCase
//! (`customerId` -> `customer`, `id`; the whole identifier counts too), English stop words
//! dropped, a light suffix stemmer (`orders`, `ordered`, `ordering` -> `order`), and character
//! trigrams of each stem at a lower weight (so `customer` still meets `customers` or `cust`).
//! Features are hashed (FNV-1a) into `DIMENSIONS` signed buckets, term frequencies are damped
//! (`1 + ln tf`) and the vector is scaled to unit length. Numbers count as words without
//! trigrams, and only up to four digits (longer ones are ids).

use std::collections::BTreeMap;

/// Vector length.
pub const DIMENSIONS: usize = 384;
/// Model name reported with the vectors (changes when the features change).
pub const MODEL: &str = "offline-hash-384-v1";

const WORD_WEIGHT: f32 = 1.0;
const IDENTIFIER_WEIGHT: f32 = 0.5;
const TRIGRAM_WEIGHT: f32 = 0.25;

const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "over", "please", "should",
    "show", "so", "some", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who",
    "whom", "why", "will", "with", "would", "you", "your",
];

/// The embedding of one text.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    // Ordered, so the floating-point sums below are the same on every run.
    let mut counts: BTreeMap<String, f32> = BTreeMap::new();
    let mut add = |feature: String, weight: f32| {
        *counts.entry(feature).or_insert(0.0) += weight;
    };
    for token in tokens(text) {
        let parts = split_identifier(&token);
        if parts.len() > 1 {
            add(format!("w:{}", token.to_lowercase()), IDENTIFIER_WEIGHT);
        }
        for part in parts {
            let lower = part.to_lowercase();
            if STOP_WORDS.contains(&lower.as_str()) {
                continue;
            }
            if lower.chars().all(|c| c.is_ascii_digit()) {
                // Short numbers (years, codes) may matter; long ones are ids and noise.
                if lower.len() <= 4 {
                    add(format!("w:{lower}"), WORD_WEIGHT);
                }
                continue;
            }
            let stemmed = stem(&lower);
            for trigram in trigrams(&stemmed) {
                add(format!("t:{trigram}"), TRIGRAM_WEIGHT);
            }
            add(format!("w:{stemmed}"), WORD_WEIGHT);
        }
    }
    let mut vector = vec![0f32; dimensions.max(1)];
    for (feature, weight) in counts {
        let hash = fnv1a(feature.as_bytes());
        let bucket = (hash % vector.len() as u64) as usize;
        let sign = if (hash >> 63) == 0 { 1.0 } else { -1.0 };
        // Damped term frequency: ten mentions are not ten times as relevant.
        let damped = if weight > 1.0 {
            1.0 + weight.ln()
        } else {
            weight
        };
        vector[bucket] += sign * damped;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// Runs of letters, digits and `_` (identifiers stay whole here).
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// `order_items` -> [order, items]; `customerId` -> [customer, Id]; `HTTPServer2` ->
/// [HTTP, Server, 2].
fn split_identifier(token: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for piece in token.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<char> = piece.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let previous = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match previous {
                None => false,
                Some(p) => {
                    (p.is_lowercase() && c.is_uppercase())
                        || (p.is_alphabetic() != c.is_alphabetic())
                        || (p.is_uppercase()
                            && c.is_uppercase()
                            && next.is_some_and(char::is_lowercase))
                }
            };
            if boundary && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            current.push(c);
        }
        if !current.is_empty() {
            parts.push(current);
        }
    }
    parts
}

/// A light English suffix stemmer: plurals, `-ed`, `-ing`, `-ly`, a final `e` (so `place`,
/// `places` and `placed` meet).
fn stem(word: &str) -> String {
    if word.chars().count() <= 3 || !word.is_ascii() {
        return word.to_owned();
    }
    let mut base = word.to_owned();
    if let Some(root) = base.strip_suffix("ies").filter(|r| r.len() >= 2) {
        base = format!("{root}y");
    } else if base.ends_with("sses")
        || ["xes", "zes", "ches", "shes"]
            .iter()
            .any(|s| base.ends_with(s))
    {
        base.truncate(base.len() - 2);
    } else if base.ends_with('s') && !["ss", "us", "is"].iter().any(|s| base.ends_with(s)) {
        base.pop();
    }
    for (suffix, keep) in [("ing", 3), ("ed", 3), ("ly", 4)] {
        if let Some(root) = base.strip_suffix(suffix).filter(|r| r.len() >= keep) {
            base = undouble(root.to_owned());
            break;
        }
    }
    if base.len() > 4 && base.ends_with('e') {
        base.pop();
    }
    base
}

/// `stopp` -> `stop` (after stripping `-ed`/`-ing`).
fn undouble(mut base: String) -> String {
    let bytes = base.as_bytes();
    let n = bytes.len();
    if n >= 3 && bytes[n - 1] == bytes[n - 2] && !matches!(bytes[n - 1], b'l' | b's' | b'z') {
        base.pop();
    }
    base
}

/// Character trigrams of ` word ` (padded so the start and end count).
fn trigrams(word: &str) -> Vec<String> {
    let chars: Vec<char> = format!(" {word} ").chars().collect();
    if chars.len() < 3 {
        return Vec::new();
    }
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn identifiers_split_and_words_stem() {
        assert_eq!(split_identifier("order_items"), ["order", "items"]);
        assert_eq!(split_identifier("customerId"), ["customer", "Id"]);
        assert_eq!(split_identifier("HTTPServer2"), ["HTTP", "Server", "2"]);
        assert_eq!(stem("orders"), "order");
        assert_eq!(stem("ordered"), "order");
        assert_eq!(stem("categories"), "category");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("stopped"), "stop");
        assert_eq!(stem("placed"), stem("places"));
        assert_eq!(stem("prices"), stem("price"));
        assert_eq!(stem("boxes"), "box");
    }

    #[test]
    fn related_texts_score_higher_and_vectors_are_unit_length() {
        let query = embed(
            "which table has what customers ordered and the order total",
            384,
        );
        let orders = embed(
            "table shop.orders: id, customer_id references customers.id, total numeric, placed_at",
            384,
        );
        let products = embed("table shop.products: id, name, price, stock level", 384);
        assert!((cosine(&query, &query) - 1.0).abs() < 1e-4);
        assert!(cosine(&query, &orders) > cosine(&query, &products) + 0.1);
        assert_eq!(embed("same text", 384), embed("same text", 384));
        assert!(embed("", 384).iter().all(|v| *v == 0.0));
    }
}
