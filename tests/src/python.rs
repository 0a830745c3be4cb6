//! The Python peers of the end-to-end tests (the MCP SDK client, the Qdrant edge server):
//! making sure their packages are installed, through `.ci/python-deps.sh`, once per process.

use std::path::{Path, PathBuf};
use std::sync::Once;

/// The modules the Python peers import.
const MODULES: &str = "import mcp, grpc, qdrant_client, qdrant_edge";

fn importable() -> bool {
    std::process::Command::new("python3")
        .args(["-c", MODULES])
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure every Python package the tests use imports, running `.ci/python-deps.sh` once if
/// one does not. Panics with the reason when they cannot be installed.
pub fn ensure_packages() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if importable() {
            return;
        }
        let status = std::process::Command::new("bash")
            .arg(repo_path(".ci/python-deps.sh"))
            .status()
            .expect("bash runs .ci/python-deps.sh");
        assert!(
            status.success() && importable(),
            "the tests' Python packages are needed: `bash .ci/python-deps.sh` failed"
        );
    });
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
