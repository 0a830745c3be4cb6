//! The `shell` capability: run an allowlisted program with an argument vector, never through
//! a shell, in a fixed working folder, with a cleared environment, a timeout and capped output.
//! Off unless the operator lists programs in `plugins.NAME.permissions.shell.allow`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::config::ShellGrant;
use crate::runtime::bindings::GuestError;
use crate::runtime::bindings::databot::plugin::shell;

use super::{StoreState, denied};

/// Most arguments and stdin bytes one run accepts.
const MAX_ARGS: usize = 256;
const MAX_STDIN_BYTES: usize = 1024 * 1024;

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
    let executable = resolve_program(program).ok_or_else(|| {
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
    let mut command = tokio::process::Command::new(&executable);
    command
        .args(args)
        .current_dir(&working_dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started as well.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        GuestError::Failed(format!(
            "starting `{program}` in {} failed: {e}",
            working_dir.display()
        ))
    })?;
    let limit = grant.max_output_bytes;
    let input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let timeout = Duration::from_millis(grant.timeout_ms.max(1));
    let process_group = child.id();
    let finished = tokio::time::timeout(timeout, async {
        // Input is written while output is read: a program that answers as it reads would
        // otherwise block on a full output pipe while its input is still being written.
        let write_input = async {
            if let (Some(text), Some(mut pipe)) = (stdin, input) {
                // A program that exits without reading its input is not an error of ours.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let (_, out, err) = tokio::join!(
            write_input,
            read_capped(stdout, limit),
            read_capped(stderr, limit)
        );
        let status = child.wait().await;
        (out, err, status)
    })
    .await;
    let Ok(((stdout, out_cut), (stderr, err_cut), status)) = finished else {
        kill_group(process_group);
        return Err(GuestError::Timeout(format!(
            "`{program}` ran longer than {} ms and was killed",
            timeout.as_millis()
        )));
    };
    let status = status.map_err(|e| GuestError::Failed(format!("waiting for `{program}`: {e}")))?;
    tracing::info!(plugin, program, exit = ?status.code(), "shell capability ran a program");
    Ok(shell::ShellOutput {
        exit_code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        truncated: out_cut || err_cut,
    })
}

/// Kill the process group a timed-out program leads (its children included).
fn kill_group(leader: Option<u32>) {
    let Some(pid) = leader
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|pid| *pid > 0)
    else {
        return;
    };
    // SAFETY: killpg only sends a signal; the group was created for this program alone.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
}

/// An absolute path as it is; a bare name looked up in the fixed `PATH`.
fn resolve_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_owned());
    }
    if program.contains('/') {
        return None;
    }
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// Read a pipe to the end, keeping at most `limit` bytes (the rest is drained so the program
/// does not block on a full pipe).
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> (String, bool) {
    let Some(mut pipe) = pipe else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), cut)
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
}
