//! Embeds the Rust SDK (`sdk/`, with its macros and types crates) and the contract (`wit/`)
//! so `databot plugin new` writes a crate that builds with nothing but this binary and Rust,
//! and `databot plugin wit` prints the contract. Each `Cargo.toml` is made standalone on the
//! way: fields inherited from this workspace (`x.workspace = true`) get the workspace's values.
//! Listed in `OUT_DIR/sdk_files.rs` as `(path, text)`, paths relative to the written folder
//! (`sdk/...`, `wit/...`: the SDK finds the contract at `../wit`, as in this repository).

use std::path::Path;

/// `key = value` lines of one `[table]` of a manifest, in order.
fn table(manifest: &str, name: &str) -> Vec<(String, String)> {
    let header = format!("[{name}]");
    let mut inside = false;
    let mut entries = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    entries
}

/// `manifest` with each `key.workspace = true` replaced by the workspace's value.
fn standalone(manifest: &str, workspace: &str, path: &Path) -> String {
    let package = table(workspace, "workspace.package");
    let dependencies = table(workspace, "workspace.dependencies");
    let mut section = String::new();
    let mut out = String::new();
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_owned();
        }
        let inherited = trimmed
            .strip_suffix(".workspace = true")
            .filter(|key| !key.contains(' '));
        let Some(key) = inherited else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let source = if section == "[package]" {
            &package
        } else {
            &dependencies
        };
        let value = source
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .unwrap_or_else(|| {
                panic!(
                    "{}: `{key}.workspace = true` has no value in the workspace's Cargo.toml",
                    path.display()
                )
            });
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

pub fn embed_sdk(root: &Path, out_dir: &Path) {
    let workspace =
        std::fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    let stored = out_dir.join("sdk_files");
    let mut table = String::from("pub static SDK_FILES: &[(&str, &str)] = &[\n");
    for folder in ["sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(folder).display());
        let mut found = Vec::new();
        crate::build_console::files(&root.join(folder), &mut found);
        let sources = found.into_iter().filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            name == "Cargo.toml" || name.ends_with(".rs") || name.ends_with(".wit")
        });
        for path in sources {
            let relative = path.strip_prefix(root).expect("below the workspace");
            let relative = relative
                .to_str()
                .expect("SDK paths are UTF-8")
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let text = if relative.ends_with("Cargo.toml") {
                standalone(&text, &workspace, &path)
            } else {
                text
            };
            let copy = stored.join(&relative);
            std::fs::create_dir_all(copy.parent().expect("a file has a folder"))
                .expect("OUT_DIR/sdk_files");
            std::fs::write(&copy, text).expect("writing an SDK copy");
            table.push_str(&format!(
                "    ({relative:?}, include_str!({:?})),\n",
                copy.display().to_string()
            ));
        }
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("sdk_files.rs"), table).expect("OUT_DIR/sdk_files.rs");
}
