//! Python plugins: `databot plugin new --lang python` (a tool written against the contract
//! with componentize-py's bindings) and building one (`componentize-py componentize`, then
//! the manifest from `manifest.json` embedded: `runtime::embed_manifest`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::plugin::{Kind, kind_name};

/// The componentize-py release the template and `plugin build` are made for.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The module componentize-py is pointed at.
const APP: &str = "app";

/// Whether `dir` holds a Python plugin (`app.py` and `manifest.json`).
pub fn is_python_plugin(dir: &Path) -> bool {
    dir.join("app.py").is_file() && dir.join("manifest.json").is_file()
}

/// Writes a Python tool plugin named `name` into `dir` (which is new or empty).
pub fn create(kind: Kind, name: &str, dir: &Path) -> anyhow::Result<()> {
    if !matches!(kind, Kind::Tool) {
        bail!(
            "the Python template is a tool; for a {} write against the contract (`databot plugin wit --out wit`, then `componentize-py -d wit -w {} componentize app`) and `databot plugin package`",
            kind_name(kind),
            kind_name(kind)
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let app = include_str!("../../templates/python/app.py").replace("{name}", name);
    std::fs::write(dir.join("app.py"), app)?;
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "kind": kind_name(kind),
        "description": format!("TODO: say what {name} does."),
        "capabilities": ["logging"],
    });
    std::fs::write(
        dir.join("manifest.json"),
        format!("{}\n", serde_json::to_string_pretty(&manifest)?),
    )?;
    super::scaffold::write_contract(&dir.join("wit"))?;
    std::fs::write(dir.join(".gitignore"), "/build\n*.wasm\n__pycache__/\n")?;
    Ok(())
}

/// Builds the Python plugin in `dir` to `dir/NAME.wasm` (NAME from its manifest).
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest_path = dir.join("manifest.json");
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest_text)
        .with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let (Some(name), Some(kind)) = (manifest["name"].as_str(), manifest["kind"].as_str()) else {
        bail!("{} needs `name` and `kind`", manifest_path.display());
    };
    // The name becomes file names below: checked first, as a load would check it.
    crate::config::check_plugin_name(name)
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))?;
    let build_dir = dir.join("build");
    std::fs::create_dir_all(&build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let raw = build_dir.join(format!("{name}.component.wasm"));
    let status = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(dir.join("wit"))
        .args(["-w", kind, "componentize", APP, "-p"])
        .arg(dir)
        .arg("-o")
        .arg(&raw)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(_) => bail!("componentize-py failed (its message is above)"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("componentize-py is not installed: `python3 -m pip install {COMPONENTIZE_PY}`")
        }
        Err(e) => return Err(e).context("running componentize-py"),
    }
    let bytes = std::fs::read(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let packaged = crate::runtime::embed_manifest(&bytes, &manifest_text)
        .with_context(|| format!("embedding {}", manifest_path.display()))?;
    let wasm = dir.join(format!("{name}.wasm"));
    super::plugin::write_replacing(&wasm, &packaged)?;
    Ok(wasm)
}
