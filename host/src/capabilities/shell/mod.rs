//! The `shell` capability: run an allowlisted program with an argument vector, never through
//! a shell, in a fixed working folder, with a minimal environment chosen by the host, a timeout
//! and capped output. Off unless the operator lists programs in
//! `plugins.NAME.permissions.shell.allow`.
//!
//! An argument allowlist is not a sandbox: a program runs with the host's user and can do what
//! that user can. What the host adds: the per-program policies of `policy` (programs that run
//! others refused, `git`/`dbt`/`find` argument rules, path arguments confined to the working
//! folder), and `contain` (every process a run starts ends with the run).

mod contain;
mod git;
mod paths;
mod policy;

use std::path::Path;
use std::time::Duration;

use crate::config::ShellGrant;
use crate::contract::GuestError;
use crate::contract::databot::plugin::shell;

use super::{StoreState, denied};
use contain::{Containment, RunError};
use paths::Folder;

pub use policy::entry_problem;

/// Most arguments and stdin bytes one run accepts.
const MAX_ARGS: usize = 256;
const MAX_STDIN_BYTES: usize = 1024 * 1024;
/// Output kept of a preflight run (a few paths).
const PREFLIGHT_OUTPUT_BYTES: usize = 16 * 1024;

impl shell::Host for StoreState {
    async fn run(
        &mut self,
        program: String,
        args: Vec<String>,
        stdin: Option<String>,
    ) -> wasmtime::Result<Result<shell::ShellOutput, GuestError>> {
        let plugin = self.grants.plugin.clone();
        let Some(grant) = self.grants.shell.clone() else {
            return Ok(Err(denied(
                &plugin,
                &format!("run programs (`{program}`)"),
                &format!("plugins.{plugin}.permissions.shell.allow: [\"{program}\"]"),
            )));
        };
        Ok(run_allowed(
            &plugin,
            &grant,
            &self.services.data_dir,
            &program,
            &args,
            stdin,
        )
        .await)
    }
}

async fn run_allowed(
    plugin: &str,
    grant: &ShellGrant,
    data_dir: &Path,
    program: &str,
    args: &[String],
    stdin: Option<String>,
) -> Result<shell::ShellOutput, GuestError> {
    if !grant.allow.iter().any(|allowed| allowed == program) {
        return Err(denied(
            plugin,
            &format!("run `{program}` (allowed: {})", grant.allow.join(", ")),
            &format!("plugins.{plugin}.permissions.shell.allow: [..., \"{program}\"]"),
        ));
    }
    if args.len() > MAX_ARGS || args.iter().any(|a| a.contains('\0')) {
        return Err(GuestError::InvalidInput(format!(
            "at most {MAX_ARGS} arguments, none containing NUL"
        )));
    }
    if stdin.as_ref().is_some_and(|s| s.len() > MAX_STDIN_BYTES) {
        return Err(GuestError::InvalidInput(format!(
            "stdin is limited to {MAX_STDIN_BYTES} bytes"
        )));
    }
    let executable = policy::resolve_program(program).ok_or_else(|| {
        GuestError::NotFound(format!(
            "`{program}` is allowed but not installed on this host"
        ))
    })?;
    // Default: a folder of its own, not the host's data folder (state, compile cache).
    let working_dir = match &grant.working_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = data_dir.join("shell").join(plugin);
            std::fs::create_dir_all(&dir).map_err(|e| {
                GuestError::Failed(format!(
                    "creating the working folder {}: {e}",
                    dir.display()
                ))
            })?;
            dir
        }
    };
    let folder = Folder::open(&working_dir).map_err(|e| {
        GuestError::Unavailable(format!(
            "the working folder {} (plugins.{plugin}.permissions.shell.working_dir): {e}",
            working_dir.display()
        ))
    })?;
    // A program the runs can rewrite would be whatever a run last wrote there.
    if executable
        .canonicalize()
        .is_ok_and(|real| real.starts_with(folder.root()))
    {
        return Err(GuestError::Denied(format!(
            "shell: `{program}` lies inside the working folder {}, where runs can rewrite it; install it elsewhere",
            folder.root().display()
        )));
    }
    let plan = policy::plan(program, &executable, args, &folder).map_err(|why| {
        tracing::warn!(plugin, program, %why, "shell capability refused a run");
        GuestError::Denied(format!("shell: {why}"))
    })?;
    let timeout = Duration::from_millis(grant.timeout_ms.max(1));
    let mode = Containment::available();
    let command = |args: &[String]| {
        let mut command = tokio::process::Command::new(&executable);
        command
            .args(args)
            .current_dir(folder.root())
            .env_clear()
            .env("PATH", policy::SEARCH_PATH.join(":"))
            .env("LANG", "C.UTF-8")
            .envs(plan.env.iter().map(|(k, v)| (k, v)));
        command
    };
    let failed = |e: RunError| match e {
        RunError::Spawn(e) => GuestError::Failed(format!(
            "starting `{program}` in {} failed: {e}",
            folder.root().display()
        )),
        RunError::Wait(e) => GuestError::Failed(format!("waiting for `{program}`: {e}")),
        RunError::TimedOut => GuestError::Timeout(format!(
            "`{program}` ran longer than {} ms and was killed with everything it started",
            timeout.as_millis()
        )),
    };
    if let Some(preflight) = &plan.preflight {
        let checked = contain::run(
            command(preflight),
            mode,
            None,
            PREFLIGHT_OUTPUT_BYTES,
            timeout,
        )
        .await
        .map_err(failed)?;
        let cwd = plan.moved_to.as_deref().unwrap_or(folder.root());
        git::check_preflight(&checked.stdout, cwd, &folder).map_err(|why| {
            tracing::warn!(plugin, program, %why, "shell capability refused a run");
            GuestError::Denied(format!("shell: {why}"))
        })?;
    }
    let out = contain::run(command(args), mode, stdin, grant.max_output_bytes, timeout)
        .await
        .map_err(failed)?;
    tracing::info!(plugin, program, exit = ?out.status.code(), "shell capability ran a program");
    Ok(shell::ShellOutput {
        exit_code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
        truncated: out.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str]) -> ShellGrant {
        ShellGrant {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            working_dir: None,
            timeout_ms: 5_000,
            max_output_bytes: 16,
        }
    }

    #[tokio::test]
    async fn an_allowed_program_runs_with_argv_not_a_shell() {
        let dir = std::env::temp_dir();
        let out = run_allowed(
            "p",
            &grant(&["echo"]),
            &dir,
            "echo",
            &["$HOME;id".into()],
            None,
        )
        .await;
        let out = out.map_err(|e| format!("{e:?}"));
        assert_eq!(out.as_ref().map(|o| o.stdout.as_str()), Ok("$HOME;id\n"));
    }

    #[tokio::test]
    async fn anything_not_allowed_is_denied_with_the_config_line() {
        let dir = std::env::temp_dir();
        for program in ["sh", "/bin/sh", "../echo"] {
            match run_allowed("p", &grant(&["echo"]), &dir, program, &[], None).await {
                Err(GuestError::Denied(message)) => {
                    assert!(message.contains("permissions.shell.allow"), "{message}")
                }
                other => panic!("{program}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_program_inside_the_working_folder_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\necho hi\n").expect("script");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("executable");
        let entry = tool.display().to_string();
        let mut inside = grant(&[&entry]);
        inside.working_dir = Some(dir.path().to_owned());
        let result = run_allowed("p", &inside, dir.path(), &entry, &[], None).await;
        assert!(
            matches!(&result, Err(GuestError::Denied(m)) if m.contains("inside the working folder")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn output_is_capped_and_runs_time_out() {
        let dir = std::env::temp_dir();
        let out = run_allowed("p", &grant(&["seq"]), &dir, "seq", &["1000".into()], None).await;
        let out = out.map_err(|e| format!("{e:?}"));
        assert_eq!(
            out.as_ref().map(|o| (o.stdout.len(), o.truncated)),
            Ok((16, true))
        );
        let mut slow = grant(&["sleep"]);
        slow.timeout_ms = 200;
        let result = run_allowed("p", &slow, &dir, "sleep", &["5".into()], None).await;
        assert!(matches!(result, Err(GuestError::Timeout(_))), "{result:?}");
    }

    /// Run git as the operator preparing a folder.
    fn operator_git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn git_works_in_its_repository_and_never_outside_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("folder");
        operator_git(&work, &["init", "-q", "-b", "main"]);
        operator_git(&work, &["config", "user.name", "t"]);
        operator_git(&work, &["config", "user.email", "t@localhost"]);
        let mut git = grant(&["git"]);
        git.working_dir = Some(work.clone());
        git.max_output_bytes = 4096;
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let git = git.clone();
            let data = dir.path().to_owned();
            async move { run_allowed("p", &git, &data, "git", &args, None).await }
        };
        std::fs::write(work.join("a.txt"), "a\n").expect("file");
        run(&["add", "a.txt"]).await.expect("add");
        let out = run(&["commit", "-m", "one"]).await.expect("commit");
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        let out = run(&["log", "--format=%s"]).await.expect("log");
        assert_eq!(out.stdout, "one\n");

        // Discovery stops at the working folder: a sub-folder that is no repository of its
        // own does not reach the repository around the folder.
        let inner = work.join("inner");
        std::fs::create_dir_all(&inner).expect("folder");
        let mut nested = git.clone();
        nested.working_dir = Some(inner.clone());
        let out = run_allowed("p", &nested, dir.path(), "git", &["log".into()], None)
            .await
            .expect("runs");
        assert_ne!(out.exit_code, 0);
        assert!(
            out.stderr.contains("not a git repository"),
            "{}",
            out.stderr
        );

        // A repository whose work tree is elsewhere is refused before git runs.
        operator_git(&work, &["config", "core.worktree", "/"]);
        let refused = run(&["status"]).await;
        assert!(
            matches!(&refused, Err(GuestError::Denied(m)) if m.contains("outside the working folder")),
            "{refused:?}"
        );
    }
}
