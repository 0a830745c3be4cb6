//! The `shell` capability through the real `shell` tool component: git cannot be turned into a
//! command runner or a reader of files outside the working folder, every process a call starts
//! is gone when the call returns (after an exit, a timeout or a cancelled call), and program
//! runners are refused in the allowlist at config load.

use std::path::Path;
use std::time::Duration;

use databot::runtime::ErrorKind;
use databot_e2e::{TestHost, processes_with, unique_name};
use serde_json::json;

/// Run `git` as the operator does when preparing the working folder.
fn operator_git(dir: &Path, args: &[&str]) -> std::io::Result<()> {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("git {args:?}: {status}")))
    }
}

/// A repository in `DIR/work` with one commit, its identity in its own configuration.
fn repository(dir: &Path) -> std::io::Result<()> {
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    operator_git(&work, &["init", "-q", "-b", "main"])?;
    operator_git(&work, &["config", "user.name", "databot"])?;
    operator_git(&work, &["config", "user.email", "databot@localhost"])?;
    std::fs::write(work.join("data.csv"), "id,total\n1,2\n")?;
    operator_git(&work, &["add", "data.csv"])?;
    operator_git(&work, &["commit", "-q", "-m", "first"])
}

async fn git(
    host: &TestHost,
    args: &[&str],
) -> Result<serde_json::Value, databot::runtime::CallError> {
    host.tool("shell", json!({"program": "git", "args": args}))
        .await
}

async fn git_host() -> TestHost {
    let yaml = r#"plugins:
  shell:
    permissions:
      shell: {allow: [git], working_dir: "{dir}/work"}
"#;
    let host = TestHost::start_with(yaml, &[], repository)
        .await
        .expect("host starts");
    host.load_builtin("shell").await;
    host
}

/// No file named like a `pwned` marker anywhere under the test folder or in /tmp.
fn assert_nothing_written(dir: &Path, marker: &str) {
    for folder in [dir.to_owned(), dir.join("work"), std::env::temp_dir()] {
        let names: Vec<String> = std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.contains(marker))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            names.is_empty(),
            "written in {}: {names:?}",
            folder.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_runs_local_work_but_no_other_program_and_reads_nothing_outside() {
    let host = git_host().await;
    let dir = host.dir.path().to_owned();
    let marker = unique_name("pwned");
    let touch = format!("touch {}/{marker}", dir.display());

    // The well-behaved commands work.
    let out = git(&host, &["log", "--oneline"]).await.expect("log");
    assert!(
        out["stdout"].as_str().is_some_and(|s| s.contains("first")),
        "{out}"
    );
    std::fs::write(dir.join("work/data.csv"), "id,total\n1,3\n").expect("edit");
    let out = git(&host, &["diff", "--stat"]).await.expect("diff");
    assert!(
        out["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("data.csv")),
        "{out}"
    );

    let attempts: Vec<Vec<String>> = vec![
        // Aliases and configuration from the caller.
        vec!["-c".into(), format!("alias.x=!{touch}"), "x".into()],
        vec![format!("-calias.x=!{touch}"), "x".into()],
        vec![
            "-c".into(),
            format!("core.pager={touch}"),
            "-p".into(),
            "log".into(),
        ],
        vec!["-c".into(), format!("core.pager={touch}"), "log".into()],
        vec!["--config-env=core.pager=PATH".into(), "log".into()],
        vec!["config".into(), "alias.x".into(), format!("!{touch}")],
        vec!["config".into(), "core.hooksPath".into(), ".".into()],
        vec!["--exec-path=/tmp".into(), "status".into()],
        // Reading outside the working folder.
        vec![
            "diff".into(),
            "--no-index".into(),
            "/etc/passwd".into(),
            "data.csv".into(),
        ],
        vec!["diff".into(), "/etc/passwd".into(), "data.csv".into()],
        vec![
            "diff".into(),
            "--no-index".into(),
            "../../../../etc/passwd".into(),
            "data.csv".into(),
        ],
        vec!["-C".into(), "/".into(), "status".into()],
        vec!["-C".into(), "..".into(), "status".into()],
        vec!["--git-dir=/".into(), "log".into()],
        // Programs run by git.
        vec!["grep".into(), format!("-O{touch}"), "total".into()],
        vec![
            "rebase".into(),
            "--exec".into(),
            touch.clone(),
            "HEAD".into(),
        ],
        vec!["difftool".into(), "-x".into(), touch.clone()],
        vec!["submodule".into(), "foreach".into(), touch.clone()],
        vec![
            "filter-branch".into(),
            "--tree-filter".into(),
            touch.clone(),
        ],
        vec!["bisect".into(), "run".into(), touch.clone()],
        vec!["fetch".into(), format!("ext::sh -c {touch}")],
        vec![
            "ls-remote".into(),
            format!("--upload-pack={touch}"),
            ".".into(),
        ],
        // Writing the repository's configuration through an output file.
        vec![
            "log".into(),
            "-1".into(),
            format!("--format=[alias]%n\tx = !{touch}%n[core]%n\tfsmonitor = {touch}"),
            "--output=.git/config".into(),
        ],
        vec!["log".into(), "--output=/tmp/databot-git-out".into()],
    ];
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let error = git(&host, &args).await.expect_err("refused");
        assert_eq!(error.kind, ErrorKind::Denied, "{args:?}: {error}");
    }
    assert_nothing_written(&dir, &marker);
    assert!(!Path::new("/tmp/databot-git-out").exists());
    let config = std::fs::read_to_string(dir.join("work/.git/config")).expect("config");
    assert!(
        !config.contains(&marker) && !config.contains("alias"),
        "{config}"
    );
    // Still a working repository after all that.
    git(&host, &["status", "--porcelain"])
        .await
        .expect("status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_and_repository_settings_that_run_programs_stay_off() {
    let host = git_host().await;
    let dir = host.dir.path().to_owned();
    let work = dir.join("work");
    let marker = unique_name("pwned");
    let touch = format!("touch {}/{marker}", dir.display());
    // As if another program had written them: hooks, fsmonitor, a pager.
    for hook in ["pre-commit", "commit-msg", "post-commit", "post-checkout"] {
        let path = work.join(".git/hooks").join(hook);
        std::fs::write(&path, format!("#!/bin/sh\n{touch}-{hook}\n")).expect("hook");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("executable");
    }
    operator_git(&work, &["config", "core.fsmonitor", &touch]).expect("config");
    operator_git(&work, &["config", "core.pager", &touch]).expect("config");

    std::fs::write(work.join("notes.md"), "n\n").expect("file");
    git(&host, &["add", "notes.md"]).await.expect("add");
    let out = git(&host, &["commit", "-m", "notes"])
        .await
        .expect("commit");
    assert_eq!(out["exit_code"], 0, "{out}");
    git(&host, &["checkout", "-b", "other"])
        .await
        .expect("checkout");
    git(&host, &["status"]).await.expect("status");
    git(&host, &["log", "-p"]).await.expect("log");
    assert_nothing_written(&dir, &marker);

    // A work tree pointed outside the folder is refused before git runs.
    operator_git(&work, &["config", "core.worktree", "/"]).expect("config");
    let error = git(&host, &["status"]).await.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error.message.contains("outside the working folder"),
        "{error}"
    );
}

/// A program the operator allowed that leaves processes behind: `setsid`, `setsid` ignoring
/// SIGTERM, a double fork, `nohup`, a plain child (each sleeping through a link named with the
/// marker, so its command line shows it); then it exits (`exit`) or hangs ignoring SIGTERM
/// (`hang`).
const SPAWNER: &str = r#"#!/bin/sh
s="./$2"
ln -sf "$(command -v sleep)" "$s"
setsid "$s" 1000 &
( setsid sh -c 'trap "" TERM HUP; "$1" 1001; :' sh "$s" & ) &
( ( "$s" 1002 & ) & ) &
nohup "$s" 1003 >/dev/null 2>&1 &
"$s" 1004 &
echo started
if [ "$1" = hang ]; then
  trap '' TERM
  "$s" 1005
  :
fi
"#;

/// Wait until at least `count` processes carry `marker`, so that a later check that they are
/// gone is not vacuous.
async fn wait_for(marker: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with(marker).len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {:?} started",
            processes_with(marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_gone(marker: &str) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while !processes_with(marker).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    processes_with(marker)
}

/// A host whose `shell` plugin may run `DIR/bin/spawner` (`SPAWNER`); `extra` is added to
/// the plugin's section.
async fn spawner_host(shell_timeout_ms: u64, extra: &str) -> (TestHost, String) {
    let yaml = format!(
        "plugins:\n  shell:\n{extra}    permissions:\n      shell: {{allow: [\"{{dir}}/bin/spawner\"], timeout_ms: {shell_timeout_ms}}}\n"
    );
    let host = TestHost::start_with(&yaml, &[], |dir| {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::write(bin.join("spawner"), SPAWNER)?;
        std::fs::set_permissions(
            bin.join("spawner"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
    })
    .await
    .expect("host starts");
    host.load_builtin("shell").await;
    let program = host.dir.path().join("bin/spawner").display().to_string();
    (host, program)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_a_call_starts_is_gone_when_it_returns() {
    let (host, program) = spawner_host(3000, "").await;

    // It exits, leaving its descendants: they are gone when the call returns.
    let marker = unique_name("databot_exit");
    let out = host
        .tool(
            "shell",
            json!({"program": program, "args": ["exit", marker]}),
        )
        .await
        .expect("runs");
    assert_eq!(
        (&out["stdout"], &out["stderr"]),
        (&json!("started\n"), &json!("")),
        "{out}"
    );
    assert_eq!(out["exit_code"], 0);
    assert_eq!(processes_with(&marker), Vec::<u32>::new());

    // It hangs ignoring SIGTERM: the timeout ends it and everything it started.
    let marker = unique_name("databot_hang");
    let (result, ()) = tokio::join!(
        host.tool(
            "shell",
            json!({"program": program, "args": ["hang", marker]})
        ),
        wait_for(&marker, 6)
    );
    let error = result.expect_err("times out");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(error.message.contains("killed"), "{error}");
    assert_eq!(processes_with(&marker), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_at_the_plugin_deadline_takes_its_processes_along() {
    let (host, program) = spawner_host(60_000, "    budgets: {timeout_ms: 1500}\n").await;
    let marker = unique_name("databot_cancel");
    let (result, ()) = tokio::join!(
        host.tool(
            "shell",
            json!({"program": program, "args": ["hang", marker]})
        ),
        wait_for(&marker, 6)
    );
    let error = result.expect_err("deadline");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    // The dropped call closed the supervisor's stop pipe; it ends everything on its own.
    assert_eq!(wait_until_gone(&marker).await, Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_runners_are_refused_in_the_allowlist_at_config_load() {
    for program in [
        "bash", "env", "xargs", "python3", "awk", "sed", "tar", "/bin/sh",
    ] {
        let yaml = format!(
            "plugins:\n  shell:\n    permissions:\n      shell: {{allow: [git, \"{program}\"]}}\n"
        );
        let error = match TestHost::start(&yaml, &[]).await {
            Ok(_) => panic!("{program} was accepted"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("plugins.shell.permissions.shell.allow") && error.contains(program),
            "{error}"
        );
    }
}
