//! Path confinement for the shell capability: every part of an argument that could name a file
//! must lead inside the working folder once `..` and symbolic links are resolved.
//!
//! The check cannot know which arguments a program reads as paths, so it treats every argument
//! as one: the whole argument, the value of `--name=VALUE` and `key=VALUE`, the value glued to a
//! short option (`-oVALUE`), and what follows a leading `@` or `file:`. A word that is not a
//! path (`HEAD~1`, `a;b`) resolves to a name inside the folder and passes; an absolute path, a
//! `..` that climbs out, or a link that points out is refused.
//!
//! Nothing inside a git folder (`.git`, or any folder with `HEAD` and `objects`, as git itself
//! recognises a repository) may be named either: a repository's configuration and hooks decide
//! what git runs, so writing them (`git log --output=.git/config`, `sort -o .git/config`) would
//! turn any allowed program into a command runner.

use std::path::{Component, Path, PathBuf};

/// The working folder of a grant, resolved once per call.
#[derive(Debug, Clone)]
pub(super) struct Folder {
    root: PathBuf,
}

impl Folder {
    /// `dir` must exist; it is resolved (symbolic links followed) so comparisons are exact.
    pub(super) fn open(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: dir.canonicalize()?,
        })
    }

    /// The resolved working folder.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` leads from `base`: the longest part that exists, resolved by the file
    /// system (links followed), then the rest appended. A `..` after a part that does not
    /// exist is refused: the program would resolve it differently once it creates that part.
    pub(super) fn resolve(&self, base: &Path, path: &Path) -> Result<PathBuf, String> {
        let full = base.join(path);
        let mut existing = full.as_path();
        loop {
            if existing.symlink_metadata().is_ok() {
                break;
            }
            existing = existing
                .parent()
                .ok_or_else(|| format!("`{}` has no existing folder", path.display()))?;
        }
        let mut resolved = existing.canonicalize().map_err(|e| {
            format!(
                "`{}` cannot be resolved ({e}); a dangling link could lead anywhere",
                path.display()
            )
        })?;
        let rest = full
            .strip_prefix(existing)
            .map_err(|_| format!("`{}` cannot be resolved", path.display()))?;
        for component in rest.components() {
            match component {
                Component::Normal(name) => resolved.push(name),
                Component::CurDir => {}
                _ => {
                    return Err(format!(
                        "`{}` climbs with `..` through a folder that does not exist",
                        path.display()
                    ));
                }
            }
        }
        Ok(resolved)
    }

    /// Is `path`, resolved from `base`, inside the working folder?
    pub(super) fn confine(&self, base: &Path, path: &Path) -> Result<PathBuf, String> {
        let resolved = self.resolve(base, path)?;
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            Err(format!(
                "`{}` leads to {}, outside the working folder {}",
                path.display(),
                resolved.display(),
                self.root.display()
            ))
        }
    }

    /// Is `resolved` (inside the folder) in a git folder below the working folder? The working
    /// folder itself may be one: the operator chose it.
    fn in_git_dir(&self, resolved: &Path) -> bool {
        resolved
            .ancestors()
            .take_while(|ancestor| *ancestor != self.root && ancestor.starts_with(&self.root))
            .any(|ancestor| {
                ancestor
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.eq_ignore_ascii_case(".git"))
                    || (ancestor.join("HEAD").is_file() && ancestor.join("objects").is_dir())
            })
    }

    /// Check every path-like part of `arg` from each of `bases` (the working folder and, for a
    /// program that changes folder first, where it goes). `repository` allows naming a git
    /// folder (git's own `--git-dir`).
    pub(super) fn check_arg(
        &self,
        bases: &[&Path],
        arg: &str,
        repository: bool,
    ) -> Result<(), String> {
        for candidate in candidates(arg) {
            if candidate.starts_with('~') {
                return Err(format!(
                    "argument `{arg}`: `~` names a home folder, outside the working folder"
                ));
            }
            for base in bases {
                let resolved = self
                    .confine(base, Path::new(candidate))
                    .map_err(|e| format!("argument `{arg}`: {e}"))?;
                if !repository && self.in_git_dir(&resolved) {
                    return Err(format!(
                        "argument `{arg}` leads into a git folder ({}); its configuration and hooks belong to the operator",
                        resolved.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The parts of one argument that a program might open as a path.
fn candidates(arg: &str) -> Vec<&str> {
    let mut parts = vec![arg];
    if let Some(long) = arg.strip_prefix("--") {
        if let Some((_, value)) = long.split_once('=') {
            parts.push(value);
        }
    } else if let Some(short) = arg.strip_prefix('-') {
        // `-oFILE`: the value glued to a one-letter option.
        if let Some((index, _)) = short.char_indices().nth(1) {
            parts.push(&short[index..]);
        }
        if let Some((_, value)) = short.split_once('=') {
            parts.push(value);
        }
    } else if let Some((_, value)) = arg.split_once('=') {
        // `if=FILE`, `key=FILE`.
        parts.push(value);
    }
    let more: Vec<&str> = parts
        .iter()
        .filter_map(|part| {
            part.strip_prefix('@')
                .or_else(|| part.strip_prefix("file:"))
        })
        .collect();
    parts.extend(more);
    parts.retain(|part| !part.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("work");
        std::fs::create_dir_all(root.join("sub")).expect("folders");
        std::fs::write(root.join("data.csv"), "a,b\n").expect("file");
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).expect("link");
        std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).expect("link");
        let folder = Folder::open(&root).expect("folder");
        (dir, folder)
    }

    #[test]
    fn words_and_paths_inside_pass() {
        let (_dir, folder) = folder();
        let root = folder.root().to_owned();
        for arg in [
            "data.csv",
            "sub/new.txt",
            "sub/../data.csv",
            "./data.csv",
            "HEAD~1",
            "main..feature",
            "a;b",
            "$(id)",
            "-n",
            "--format=%H",
            "--output=sub/out.txt",
            "https://example.com/x",
        ] {
            assert_eq!(folder.check_arg(&[&root], arg, false), Ok(()), "{arg}");
        }
        let absolute_inside = root.join("data.csv").display().to_string();
        assert_eq!(folder.check_arg(&[&root], &absolute_inside, false), Ok(()));
    }

    #[test]
    fn paths_leading_outside_are_refused_in_every_spelling() {
        let (_dir, folder) = folder();
        let root = folder.root().to_owned();
        for arg in [
            "/etc/passwd",
            "../outside",
            "sub/../../outside",
            "etc-link/passwd",
            "etc-link/new-file",
            "dangling",
            "--output=/tmp/x",
            "--git-dir=../elsewhere",
            "-o/etc/passwd",
            "-O../x",
            "if=/etc/passwd",
            "@/etc/passwd",
            "file:///etc/passwd",
            "~/.ssh/id_rsa",
            "missing/../../x",
        ] {
            assert!(folder.check_arg(&[&root], arg, false).is_err(), "{arg}");
        }
    }

    #[test]
    fn every_base_is_checked() {
        let (_dir, folder) = folder();
        let root = folder.root().to_owned();
        let sub = root.join("sub");
        std::os::unix::fs::symlink("/etc", sub.join("up")).expect("link");
        // Harmless from the root (no such name there), out of bounds from `sub`.
        assert_eq!(folder.check_arg(&[&root], "up/passwd", false), Ok(()));
        assert!(
            folder
                .check_arg(&[&root, &sub], "up/passwd", false)
                .is_err()
        );
    }

    #[test]
    fn git_folders_are_out_of_bounds() {
        let (_dir, folder) = folder();
        let root = folder.root().to_owned();
        std::fs::create_dir_all(root.join("repo/.git")).expect("repo");
        std::fs::create_dir_all(root.join("bare.git/objects")).expect("bare repo");
        std::fs::write(root.join("bare.git/HEAD"), "ref: refs/heads/main\n").expect("HEAD");
        for arg in [
            ".git",
            "repo/.git/config",
            "--output=repo/.GIT/hooks/pre-commit",
            "bare.git/config",
            "bare.git/hooks",
        ] {
            assert!(folder.check_arg(&[&root], arg, false).is_err(), "{arg}");
        }
        assert_eq!(folder.check_arg(&[&root], "repo/.git", true), Ok(()));
        assert_eq!(folder.check_arg(&[&root], "repo/file.csv", false), Ok(()));
        // The working folder itself may be a repository's folder.
        let bare = Folder::open(&root.join("bare.git")).expect("folder");
        let bare_root = bare.root().to_owned();
        assert_eq!(bare.check_arg(&[&bare_root], "HEAD~1", false), Ok(()));
    }
}
