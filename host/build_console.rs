//! Embeds the operator console (`host/console/`): every file with its media type, an ETag
//! from its SHA-256 and a gzip copy, listed in `OUT_DIR/console_assets.rs` for
//! `gateway::console::assets`. Plain files, no JavaScript toolchain: the console needs none.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

/// The media type of a console file by its extension; other files are refused (a stray file
/// must not be served with a guessed type).
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => panic!(
            "host/console/{} has no known media type: use .html, .js, .css, .svg, .png or .ico",
            path.display()
        ),
    }
}

/// Every file below `dir`, sorted, leaving out editors' and systems' leftovers; shared with
/// `build_sdk.rs`.
pub fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // Editors' and systems' leftovers (`.DS_Store`, `.x.swp`, `x~`) are nobody's.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if path.is_dir() {
            files(&path, found);
        } else {
            found.push(path);
        }
    }
}

pub fn embed_console(console: &Path, out_dir: &Path) {
    println!("cargo:rerun-if-changed={}", console.display());
    let mut found = Vec::new();
    files(console, &mut found);
    let stored = out_dir.join("console");
    std::fs::create_dir_all(&stored).expect("OUT_DIR/console");
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (index, path) in found.iter().enumerate() {
        let relative = path
            .strip_prefix(console)
            .expect("below host/console")
            .to_str()
            .expect("console file names are UTF-8")
            .replace('\\', "/");
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("reading {relative}: {e}"));
        let etag = hex::encode(&sha2::Sha256::digest(&body)[..12]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&body).expect("gzip in memory");
        let gzip = encoder.finish().expect("gzip in memory");
        let raw_file = stored.join(format!("{index}.raw"));
        let gzip_file = stored.join(format!("{index}.gz"));
        std::fs::write(&raw_file, &body).expect("writing OUT_DIR/console");
        std::fs::write(&gzip_file, &gzip).expect("writing OUT_DIR/console");
        table.push_str(&format!(
            "    Asset {{ path: {relative:?}, content_type: {:?}, etag: \"\\\"{etag}\\\"\", gzip_etag: \"\\\"{etag}-gz\\\"\", body: include_bytes!({:?}), gzip: include_bytes!({:?}) }},\n",
            content_type(path),
            raw_file.display().to_string(),
            gzip_file.display().to_string(),
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("console_assets.rs"), table).expect("writing console_assets.rs");
}
