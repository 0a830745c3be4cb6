//! Compile cache: precompiled components on disk, keyed by the component's sha256 and the
//! engine's fingerprint, so a second start maps artifacts instead of compiling.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::engine_fingerprint;

pub struct CompileCache {
    folder: Option<PathBuf>,
    fingerprint: String,
}

/// Where a component came from: the cache or a fresh compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    Cache,
    Compiled,
}

impl CompileCache {
    /// `folder: None` disables the cache (every load compiles).
    pub fn new(engine: &Engine, folder: Option<PathBuf>) -> Self {
        Self {
            folder,
            fingerprint: engine_fingerprint(engine),
        }
    }

    fn artifact_path(&self, folder: &Path, digest: &str) -> PathBuf {
        folder.join(format!("{digest}-{}.cwasm", self.fingerprint))
    }

    /// Load `bytes` (whose sha256 is `digest`) as a component, from cache when possible.
    pub fn load(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, CompileSource)> {
        let Some(folder) = &self.folder else {
            return Ok((Component::new(engine, bytes)?, CompileSource::Compiled));
        };
        let path = self.artifact_path(folder, digest);
        if path.exists() {
            // SAFETY: artifacts in the cache folder are written only by this function, from
            // `Engine::precompile_component` of the same engine configuration (the fingerprint
            // is in the file name); wasmtime also checks the header before mapping.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CompileSource::Cache)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), "discarding unusable cached artifact: {error:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating compile cache {}", folder.display()))?;
        // Unique per process and per compile: two loads of the same bytes may race here.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = path.with_extension(format!("tmp{}-{unique}", std::process::id()));
        std::fs::write(&temporary, &artifact)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        // SAFETY: `artifact` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        Ok((component, CompileSource::Compiled))
    }
}
