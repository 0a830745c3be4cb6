//! The declared layering, checked: every `crate::MODULE` path in a module's sources must name
//! a module below it in `LAYERS` (the order `lib.rs` documents). A lower layer that reaches up
//! fails this test with the file and the path, so the module graph stays acyclic.

use std::path::{Path, PathBuf};

/// Top to bottom. Modules on one line are peers that do not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["gateway"],
    &["schedules"],
    &["mcp", "channels"],
    &["agent"],
    &["rag"],
    &["bus"],
    &["runtime"],
    &["capabilities"],
    &["vectors"],
    &["contract"],
    &["telemetry"],
    &["config"],
    &["signature"],
    &[
        "events",
        "digest",
        "process_limits",
        "net",
        "timing",
        "progress",
    ],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|peers| peers.contains(&module))
}

/// The `.rs` files of `module` (its folder, or its single file).
fn sources(src: &Path, module: &str) -> Vec<PathBuf> {
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        return vec![single];
    }
    let mut found = Vec::new();
    let mut folders = vec![src.join(module)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)
            .expect("a module folder")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The modules a source names through `crate::NAME` or `crate::{NAME, ...}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, prefix) in text.match_indices("crate::") {
        // `databot_crate::` or `some_crate::` are other names.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                // The first segment of each path at the group's top level.
                let mut depth = 0usize;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && (c.is_ascii_lowercase() || c == '_') => {
                            names.push(leading_name(&group[i..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(leading_name(rest)),
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

fn leading_name(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for module in LAYERS.iter().flat_map(|peers| peers.iter()) {
        let own = rank(module).expect("listed");
        for file in sources(&src, module) {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for used in crate_paths(&text) {
                if used == *module {
                    continue;
                }
                match rank(&used) {
                    Some(theirs) if theirs > own => {}
                    Some(_) => violations.push(format!(
                        "{}: `crate::{used}` (`{module}` may use only the layers below it)",
                        file.display()
                    )),
                    None => violations.push(format!(
                        "{}: `crate::{used}` is not in the layer list of layering.rs",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(rank(name).is_some(), "`{name}` has no layer in layering.rs");
        }
    }
}

#[test]
fn the_check_sees_paths_and_ignores_other_crates() {
    assert_eq!(
        crate_paths("use crate::runtime::Runtime; my_crate::x; crate::config"),
        vec!["runtime".to_owned(), "config".to_owned()]
    );
    assert_eq!(
        crate_paths("use crate::{agent::Agent, rag::{self, Rag}, bus};"),
        vec!["agent".to_owned(), "rag".to_owned(), "bus".to_owned()]
    );
}
