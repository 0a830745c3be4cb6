//! `databot plugin list | inspect | new | build | package | keygen | sign | wit`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::runtime::{PluginSource, Runtime, read_manifest};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// List loaded plugins, their state and circuit breaker, and files that were refused.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a component's manifest, digest and operations without installing it.
    Inspect {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Create a new plugin crate that builds to a working component.
    New {
        /// What the plugin is.
        #[arg(long, value_enum, default_value = "tool")]
        kind: Kind,
        /// The language it is written in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// Plugin name (lowercase letters, digits, `_`).
        name: String,
        /// Folder to create the crate in (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin (a Rust crate, or a Python project from `new --lang python`) to a
    /// component and check its manifest.
    Build {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Embed a manifest into a component built by another toolchain (componentize-py,
    /// componentize-js, wit-bindgen), making it a plugin this host loads.
    Package {
        /// The component (`.wasm`) without a manifest.
        file: PathBuf,
        /// The manifest: JSON with `name`, `version`, `kind`, `description` and
        /// `capabilities` (`contract` defaults to this host's).
        #[arg(long)]
        manifest: PathBuf,
        /// Where to write the plugin (default: FILE itself, replaced atomically).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a publisher key pair for signing plugins: KEYFILE (secret, mode 0600) and
    /// KEYFILE.pub; prints the line for `runtime.trusted_keys`.
    Keygen {
        /// Where to write the secret key (the public one goes next to it, `.pub` added).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component with a publisher key: writes the detached signature FILE.sig, which
    /// hosts listing the key in `runtime.trusted_keys` check as they load FILE.
    Sign {
        /// The `.wasm` file.
        file: PathBuf,
        /// The secret key file (`databot plugin keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the plugin contract (WIT) this host implements, or write it into a folder, for
    /// toolchains other than the Rust SDK (componentize-py, componentize-js, wit-bindgen).
    Wit {
        /// Write the contract's files into this folder instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Lang {
    /// A crate on the Rust SDK.
    Rust,
    /// A componentize-py project (a tool).
    Python,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Tool,
    Connector,
    Provider,
    Channel,
}

pub async fn run(command: PluginCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::List { json } => {
            let runtime = super::start_runtime(config).await?;
            let status = runtime.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "{:<20} {:<10} {:<9} {:<9} {:<10} {:<12} SOURCE",
                    "NAME", "KIND", "VERSION", "STATE", "BREAKER", "SIGNER"
                );
                for plugin in &status {
                    println!(
                        "{:<20} {:<10} {:<9} {:<9} {:<10} {:<12} {}",
                        plugin.name,
                        plugin.kind.as_deref().unwrap_or("-"),
                        plugin.version.as_deref().unwrap_or("-"),
                        plugin.state,
                        plugin
                            .breaker
                            .map(|b| format!("{b:?}").to_lowercase())
                            .unwrap_or_else(|| "-".into()),
                        plugin.signer.as_ref().map_or("-", |s| s.key.as_str()),
                        plugin.source
                    );
                    if let Some(error) = &plugin.last_error {
                        println!("    last error: {error}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { file } => inspect(&file, config).await,
        PluginCommand::New {
            kind,
            lang,
            name,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            match lang {
                Lang::Rust => super::scaffold::create(kind, &name, &dir)?,
                Lang::Python => {
                    super::scaffold::check_new(&name, &dir)?;
                    super::python_plugin::create(kind, &name, &dir)?;
                }
            }
            println!(
                "created {} ({} plugin `{name}`)",
                dir.display(),
                kind_name(kind)
            );
            println!("build it with: databot plugin build {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Package {
            file,
            manifest,
            out,
        } => package(&file, &manifest, out.as_deref()),
        PluginCommand::Keygen { out } => keygen(&out),
        PluginCommand::Sign { file, key } => sign(&file, &key),
        PluginCommand::Wit { out: Some(dir) } => {
            super::scaffold::write_contract(&dir)?;
            println!("wrote the databot contract to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Wit { out: None } => {
            let files: Vec<_> = super::scaffold::contract().collect();
            let [(_, text)] = files.as_slice() else {
                bail!(
                    "the contract has {} files: write them with --out DIR",
                    files.len()
                );
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { path } => {
            let wasm = build(&path)?;
            let manifest = read_manifest(&std::fs::read(&wasm)?).with_context(|| {
                format!("{} was built but is not a loadable plugin", wasm.display())
            })?;
            println!(
                "{} ({} {} v{})",
                wasm.display(),
                manifest.kind.as_str(),
                manifest.name,
                manifest.version
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tool",
        Kind::Connector => "connector",
        Kind::Provider => "provider",
        Kind::Channel => "channel",
    }
}

async fn inspect(file: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let manifest = read_manifest(&bytes)
        .with_context(|| format!("{} is not a loadable plugin", file.display()))?;
    let mut config = Config::load(config)?;
    // Inspect only this file: nothing else is loaded and no cache is written.
    config.runtime.builtin_plugins = false;
    config.runtime.data_dir =
        std::env::temp_dir().join(format!("databot-inspect-{}", std::process::id()));
    let data_dir = config.runtime.data_dir.clone();
    let runtime = Runtime::new(Arc::new(config))?;
    let loaded = runtime
        .load_bytes(bytes, PluginSource::File(file.to_owned()))
        .await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let revision = loaded?;
    let report = serde_json::json!({
        "manifest": manifest,
        "sha256": revision.digest,
        "signer": revision.signer,
        "operations": revision.operations.iter().map(|op| serde_json::json!({
            "name": op.name,
            "description": op.description,
            "input_schema": serde_json::from_str::<serde_json::Value>(&op.input_schema).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "imports": component_imports(&runtime, &revision),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn package(file: &Path, manifest: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let json = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let packaged = crate::runtime::embed_manifest(&bytes, &json)
        .with_context(|| format!("packaging {} with {}", file.display(), manifest.display()))?;
    let out = out.unwrap_or(file);
    write_replacing(out, &packaged)?;
    let manifest = read_manifest(&packaged)?;
    println!(
        "{} ({} {} v{}, contract {})",
        out.display(),
        manifest.kind.as_str(),
        manifest.name,
        manifest.version,
        manifest.contract
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `path` through a new temporary file and a rename: a watcher of the folder never
/// sees half a file, and a link planted at `path` is replaced, not followed.
pub(super) fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".partial-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let public_path = crate::signature::public_key_path(out);
    for path in [out, public_path.as_path()] {
        if path.exists() {
            bail!(
                "{} exists; choose another name (a key is never overwritten)",
                path.display()
            );
        }
    }
    let key = crate::signature::SecretKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(out)
        .and_then(|mut file| file.write_all(key.to_text().as_bytes()))
        .with_context(|| format!("writing {}", out.display()))?;
    let public = key.public_key();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public_path)
        .and_then(|mut file| file.write_all(format!("{public}\n").as_bytes()))
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("secret key: {} (keep it private)", out.display());
    println!(
        "public key: {} (key id {})",
        public_path.display(),
        public.id()
    );
    println!("hosts that trust it list, in their config:");
    println!("runtime:\n  trusted_keys:\n    PUBLISHER: \"{public}\"");
    Ok(ExitCode::SUCCESS)
}

fn sign(file: &Path, key: &Path) -> anyhow::Result<ExitCode> {
    let key_text =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let key = crate::signature::SecretKey::parse(&key_text)
        .with_context(|| format!("{} is not a signing key", key.display()))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    read_manifest(&bytes)
        .with_context(|| format!("{} is not a loadable plugin", file.display()))?;
    let digest = crate::digest::sha256_hex(&bytes);
    let signature_path = crate::signature::signature_path(file);
    write_replacing(&signature_path, key.sign(&digest).to_text().as_bytes())?;
    println!(
        "signed {} (sha256 {digest}) with key id {}: {}",
        file.display(),
        key.public_key().id(),
        signature_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn component_imports(runtime: &Runtime, revision: &crate::runtime::Revision) -> Vec<String> {
    let component_type = revision.pre.component().component_type();
    component_type
        .imports(runtime.engine())
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Builds the plugin in `path`: a Python project (`app.py`, `manifest.json`) with
/// componentize-py, otherwise a crate with `cargo build --release --target wasm32-wasip2`.
/// Returns the component.
pub fn build(path: &Path) -> anyhow::Result<PathBuf> {
    if super::python_plugin::is_python_plugin(path) {
        return super::python_plugin::build(path);
    }
    let manifest_path = path.join("Cargo.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{} is not a plugin crate (no Cargo.toml)", path.display()))?;
    let package: toml_name::Package = toml_name::read(&manifest_text)
        .with_context(|| format!("reading the package name from {}", manifest_path.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest_path)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed (is the target installed? `rustup target add wasm32-wasip2`)");
    }
    let metadata = std::process::Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest_path)
        .output()
        .context("running cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).context("parsing cargo metadata")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let wasm = PathBuf::from(target_dir)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.name.replace('-', "_")));
    if !wasm.exists() {
        bail!(
            "cargo finished but {} is missing; is the crate a `cdylib`?",
            wasm.display()
        );
    }
    Ok(wasm)
}

/// Just enough TOML reading to find `[package] name`.
mod toml_name {
    pub struct Package {
        pub name: String,
    }

    pub fn read(text: &str) -> anyhow::Result<Package> {
        let mut in_package = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_package = line == "[package]";
            } else if in_package
                && let Some(value) = line.strip_prefix("name")
                && let Some(value) = value.trim_start().strip_prefix('=')
            {
                return Ok(Package {
                    name: value.trim().trim_matches('"').to_owned(),
                });
            }
        }
        anyhow::bail!("no `name` in the [package] section")
    }
}
