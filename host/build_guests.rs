//! Shared by the build scripts of `databot` and `databot-e2e`: build a guest workspace for
//! `wasm32-wasip2` with a nested cargo (own target dir, so no lock is shared with the outer
//! build) and copy the components to `OUT_DIR/guests`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn build_guest_workspace(manifest: &Path, packages: &[&str], watch: &[&Path]) -> PathBuf {
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    ensure_wasm_target();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let workspace_root = manifest.parent().expect("manifest has a folder");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            out_dir
                .ancestors()
                .nth(4)
                .expect("OUT_DIR is inside the target dir")
                .to_owned()
        })
        .join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        command.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are not for the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("running cargo for the wasm32-wasip2 guests");
    assert!(
        status.success(),
        "building the guests in {} failed; is the wasm32-wasip2 target installed (`rustup target add wasm32-wasip2`)?",
        manifest.display()
    );
    let guests = out_dir.join("guests");
    std::fs::create_dir_all(&guests).expect("creating OUT_DIR/guests");
    for package in packages {
        let file = format!("{package}.wasm");
        let built = target_dir.join("wasm32-wasip2/release").join(&file);
        std::fs::copy(&built, guests.join(&file))
            .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
    guests
}

/// `rust-toolchain.toml` names the target, but rustup installs it on its own only when
/// auto-install is on; add it here (idempotent) so a fresh checkout builds with one command.
fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(true);
    if !installed {
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
    }
}
