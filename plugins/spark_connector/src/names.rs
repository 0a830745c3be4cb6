//! Kubernetes object names for Spark applications: DNS-1123 labels, unique per submission
//! (a fixed name made the second submission collide with the first).

/// Longest base kept, so that `{base}-{suffix}-driver` stays within the 63 characters of a
/// pod name label.
const MAX_BASE: usize = 40;
const SUFFIX_LEN: usize = 8;

/// A lower-case DNS-1123 label from a free-form name, `databot-spark` when nothing is left.
pub fn base_name(name: Option<&str>) -> String {
    let mut out = String::new();
    for c in name.unwrap_or_default().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(MAX_BASE).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() || !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(
            0,
            if out.is_empty() {
                "databot-spark"
            } else {
                "spark-"
            },
        );
        out = out.chars().take(MAX_BASE).collect();
    }
    out
}

/// `base` with a random suffix in base 36.
pub fn unique_name(base: &str, random: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut suffix = String::with_capacity(SUFFIX_LEN);
    let mut n = random;
    for _ in 0..SUFFIX_LEN {
        suffix.push(DIGITS[(n % 36) as usize] as char);
        n /= 36;
    }
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(base_name(Some("Daily ETL_job (v2)")), "daily-etl-job-v2");
        assert_eq!(base_name(None), "databot-spark");
        assert_eq!(base_name(Some("__")), "databot-spark");
        assert_eq!(base_name(Some("2024 report")), "spark-2024-report");
        let long = base_name(Some(&"x".repeat(100)));
        assert_eq!(long.len(), MAX_BASE);
        let name = unique_name(&long, u64::MAX);
        assert!(name.len() + "-driver".len() <= 63, "{name}");
        assert_ne!(unique_name("a", 1), unique_name("a", 2));
    }
}
