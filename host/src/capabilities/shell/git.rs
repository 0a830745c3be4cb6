//! The shell capability's policy for `git`: local work on repositories inside the working
//! folder, nothing that runs another program, reaches the network or reads outside the folder.
//!
//! - Global options: only a known few (`-C`, `--git-dir`, `--work-tree` with paths inside the
//!   folder, pathspec and pager switches). `-c`, `--config-env`, `--exec-path` and the rest are
//!   refused: configuration given by the caller could define aliases, pagers, hooks or helpers.
//! - Subcommands: only the listed ones, so neither aliases nor `git-*` programs on `PATH` run;
//!   per subcommand, options that run programs (`rebase --exec`, `grep -O`, `--ext-diff`,
//!   merge strategies) or read outside the repository (`--no-index`) are refused, abbreviated or
//!   not.
//! - Configuration: the system and global files are not read; configuration at command scope
//!   (above the repository's own) turns off hooks, fsmonitor, pagers, editors, signing
//!   programs, credential helpers, automatic maintenance and every transport (no clone, fetch
//!   or push, to any URL).
//! - Repository: discovery stops at the working folder, and a preflight `git rev-parse` (with
//!   the same options and configuration) must show the repository, its common folder and its
//!   work tree inside the folder (a `core.worktree` or a `.git` file pointing out is refused).
//!
//! The repository's own configuration (diff and merge drivers, filters) is the operator's: git
//! gives the caller no way to change it, but another allowed program that writes into `.git`
//! could.

use std::path::{Path, PathBuf};

use super::paths::Folder;
use super::policy::Plan;

/// Configuration at command scope, above anything in the repository.
const FORCED_CONFIG: [(&str, &str); 19] = [
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.sshCommand", "false"),
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("gpg.format", "openpgp"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),
    // A bare repository nested in the work tree (with a configuration of its own) is used
    // only when named with --git-dir.
    ("safe.bareRepository", "explicit"),
    ("core.askPass", "false"),
];

/// Global options that take no value and change nothing the policy relies on.
const GLOBAL_SWITCHES: [&str; 12] = [
    "--no-pager",
    "-P",
    "--no-replace-objects",
    "--literal-pathspecs",
    "--glob-pathspecs",
    "--noglob-pathspecs",
    "--icase-pathspecs",
    "--no-optional-locks",
    "--bare",
    "--no-advice",
    "--version",
    "-v",
];

/// An option a subcommand refuses: a long name (also its abbreviations and `--name=value`),
/// or a short letter (anywhere in a bundle like `-nO`).
#[derive(Clone, Copy)]
enum Refuse {
    Long(&'static str, &'static str),
    Short(char, &'static str),
}

use Refuse::{Long, Short};

const NO_INDEX: Refuse = Long("no-index", "reads files outside the repository");
const EXT_DIFF: Refuse = Long("ext-diff", "runs an external diff program");
const STRATEGY: Refuse = Long("strategy", "runs a merge program named after the strategy");
const DIFFS: &[Refuse] = &[NO_INDEX, EXT_DIFF];

/// The subcommands that run, with the options each refuses.
const SUBCOMMANDS: &[(&str, &[Refuse])] = &[
    ("status", &[]),
    ("log", DIFFS),
    ("show", DIFFS),
    ("diff", DIFFS),
    ("diff-tree", DIFFS),
    ("diff-index", DIFFS),
    ("diff-files", DIFFS),
    ("range-diff", DIFFS),
    ("whatchanged", DIFFS),
    ("shortlog", DIFFS),
    ("format-patch", DIFFS),
    ("blame", DIFFS),
    ("annotate", DIFFS),
    (
        "grep",
        &[
            NO_INDEX,
            Long("open-files-in-pager", "runs a pager program"),
            Short('O', "runs a pager program"),
        ],
    ),
    ("ls-files", &[]),
    ("ls-tree", &[]),
    ("cat-file", &[]),
    ("rev-parse", &[]),
    ("rev-list", &[]),
    ("describe", &[]),
    ("show-ref", &[]),
    ("for-each-ref", &[]),
    ("name-rev", &[]),
    ("merge-base", &[]),
    ("count-objects", &[]),
    ("check-ignore", &[]),
    ("check-attr", &[]),
    ("show-branch", &[]),
    ("cherry", &[]),
    ("reflog", &[]),
    ("version", &[]),
    ("add", &[]),
    ("rm", &[]),
    ("mv", &[]),
    ("commit", &[]),
    ("checkout", &[]),
    ("switch", &[]),
    ("restore", &[]),
    ("reset", &[]),
    ("stash", &[]),
    ("tag", &[]),
    ("branch", &[]),
    ("notes", &[]),
    ("clean", &[]),
    (
        "init",
        &[Long(
            "template",
            "copies hooks and files from a template folder",
        )],
    ),
    (
        "apply",
        &[Long("unsafe-paths", "writes outside the working tree")],
    ),
    (
        "merge",
        &[
            STRATEGY,
            Short('s', "runs a merge program named after the strategy"),
        ],
    ),
    ("cherry-pick", &[STRATEGY]),
    ("revert", &[STRATEGY]),
    (
        "rebase",
        &[
            STRATEGY,
            Short('s', "runs a merge program named after the strategy"),
            Long("exec", "runs a command after each commit"),
            Short('x', "runs a command after each commit"),
        ],
    ),
    (
        "archive",
        &[
            Long("remote", "reaches another repository over the network"),
            Long("exec", "runs a program on the remote side"),
        ],
    ),
];

/// Why well-known subcommands outside the list are refused (others get the list).
const REFUSED_SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "config",
        "it changes configuration, which can run commands (aliases, pagers, hooks, filters)",
    ),
    (
        "submodule",
        "`submodule foreach` and update commands run programs, and it fetches over the network",
    ),
    ("difftool", "it runs a diff program"),
    ("mergetool", "it runs a merge program"),
    ("filter-branch", "it runs commands on every commit"),
    ("bisect", "`bisect run` runs a command"),
    (
        "clone",
        "it reaches the network around the host's egress policy",
    ),
    (
        "fetch",
        "it reaches the network around the host's egress policy",
    ),
    (
        "pull",
        "it reaches the network around the host's egress policy",
    ),
    (
        "push",
        "it reaches the network around the host's egress policy",
    ),
    (
        "ls-remote",
        "it reaches the network around the host's egress policy",
    ),
    ("remote", "it reaches the network and changes configuration"),
    ("send-email", "it sends mail and runs an SMTP program"),
    ("help", "it starts a manual viewer or a browser"),
    ("instaweb", "it starts a web server and a browser"),
    ("worktree", "it creates work trees wherever it is told"),
    ("hook", "it runs hooks"),
    ("gc", "it starts maintenance programs"),
    (
        "maintenance",
        "it starts maintenance programs and writes global configuration",
    ),
];

/// Check a git command line: the plan (environment, where `-C` leads, the preflight), or why
/// it is refused.
pub(super) fn plan(args: &[String], folder: &Folder) -> Result<Plan, String> {
    let mut cwd = folder.root().to_owned();
    let mut global: Vec<String> = Vec::new();
    let mut rest = args;
    while let Some(arg) = rest.first() {
        if !arg.starts_with('-') {
            break;
        }
        let taken = global_option(arg, rest.get(1), folder, &mut cwd)?;
        global.extend(rest[..taken].iter().cloned());
        rest = &rest[taken..];
    }
    if let Some((subcommand, options)) = rest.split_first() {
        check_subcommand(subcommand, options)?;
    }
    let repository_args = global.len();
    let mut preflight = global;
    preflight.extend(
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
            "--show-toplevel",
        ]
        .map(String::from),
    );
    Ok(Plan {
        env: environment(folder.root()),
        moved_to: Some(cwd),
        preflight: Some(preflight),
        repository_args,
    })
}

/// Check one global option; how many arguments it takes (itself and its value).
fn global_option(
    arg: &str,
    next: Option<&String>,
    folder: &Folder,
    cwd: &mut PathBuf,
) -> Result<usize, String> {
    if GLOBAL_SWITCHES.contains(&arg) {
        return Ok(1);
    }
    let (name, attached) = match arg.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (arg, None),
    };
    let missing = || format!("git `{name}` needs a value");
    match name {
        "-C" if attached.is_none() => {
            let value = next.ok_or_else(missing)?;
            *cwd = folder
                .confine(cwd, Path::new(value))
                .map_err(|e| format!("git -C: {e}"))?;
            Ok(2)
        }
        "--git-dir" | "--work-tree" | "--namespace" => {
            let (value, taken) = match attached {
                Some(value) => (value, 1),
                None => (next.ok_or_else(missing)?.as_str(), 2),
            };
            if name != "--namespace" {
                folder
                    .confine(cwd, Path::new(value))
                    .map_err(|e| format!("git {name}: {e}"))?;
            }
            Ok(taken)
        }
        _ => Err(format!("git `{arg}` is refused: {}", global_refusal(name))),
    }
}

fn global_refusal(name: &str) -> String {
    match name {
        _ if name.starts_with("-c") || name.starts_with("--config") => {
            "it sets configuration, which can run commands (aliases, pagers, hooks, filters)".into()
        }
        "--exec-path" => "it points git at other programs".into(),
        "-p" | "--paginate" => "it runs a pager program".into(),
        "-h" | "--help" => "it starts a manual viewer".into(),
        _ => format!(
            "not among the global options the host allows: -C, --git-dir, --work-tree, --namespace, {}",
            GLOBAL_SWITCHES.join(", ")
        ),
    }
}

fn check_subcommand(subcommand: &str, options: &[String]) -> Result<(), String> {
    let Some((_, refused)) = SUBCOMMANDS.iter().find(|(name, _)| *name == subcommand) else {
        if let Some((_, why)) = REFUSED_SUBCOMMANDS.iter().find(|(n, _)| *n == subcommand) {
            return Err(format!("`git {subcommand}` is refused: {why}"));
        }
        let allowed: Vec<&str> = SUBCOMMANDS.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "`git {subcommand}` is not among the subcommands the host allows (aliases and git-* programs never run): {}",
            allowed.join(", ")
        ));
    };
    for option in options {
        // After `--` every argument is a path (checked as one by the confinement).
        if option == "--" || option == "--end-of-options" {
            break;
        }
        if let Some(long) = option.strip_prefix("--") {
            let name = long.split_once('=').map_or(long, |(name, _)| name);
            if name == "help" {
                return Err(format!(
                    "`git {subcommand} --help` is refused: it starts a manual viewer"
                ));
            }
            for refuse in *refused {
                // git accepts any unambiguous abbreviation of a long option.
                if let Long(full, why) = refuse
                    && !name.is_empty()
                    && full.starts_with(name)
                {
                    return Err(format!("`git {subcommand} --{full}` is refused: it {why}"));
                }
            }
        } else if let Some(short) = option.strip_prefix('-') {
            for refuse in *refused {
                if let Short(letter, why) = refuse
                    && short.contains(*letter)
                {
                    return Err(format!(
                        "`git {subcommand} -{letter}` (in `{option}`) is refused: it {why}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The environment of every git run: no system or global configuration, discovery bounded by
/// the working folder, no transports, no prompts, and [`FORCED_CONFIG`] at command scope.
fn environment(root: &Path) -> Vec<(String, String)> {
    let ceiling = root.parent().unwrap_or(root);
    let mut env: Vec<(String, String)> = [
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        // Set but empty: no transport is allowed, whatever the configuration says.
        ("GIT_ALLOW_PROTOCOL", ""),
        ("GIT_PROTOCOL_FROM_USER", "0"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_EDITOR", ":"),
        ("GIT_SEQUENCE_EDITOR", ":"),
        ("GIT_PAGER", "cat"),
        ("PAGER", "cat"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Repository discovery does not climb out of the working folder.
    env.push((
        "GIT_CEILING_DIRECTORIES".into(),
        ceiling.display().to_string(),
    ));
    env.push(("GIT_CONFIG_COUNT".into(), FORCED_CONFIG.len().to_string()));
    for (index, (key, value)) in FORCED_CONFIG.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{index}"), key.to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{index}"), value.to_string()));
    }
    env
}

/// Check the preflight's output: every line (the git folder, the common folder, the work
/// tree, as far as they exist) must be inside the working folder. No output: no repository.
pub(super) fn check_preflight(stdout: &str, cwd: &Path, folder: &Folder) -> Result<(), String> {
    for line in stdout.lines().filter(|line| !line.is_empty()) {
        folder.confine(cwd, Path::new(line)).map_err(|e| {
            format!("git is refused here: its repository or work tree is outside the working folder ({e})")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("repo")).expect("folder");
        let folder = Folder::open(dir.path()).expect("folder");
        (dir, folder)
    }

    /// Through the whole policy (the git rules and the path confinement).
    fn check(args: &[&str], folder: &Folder) -> Result<Plan, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        super::super::policy::plan("git", Path::new("/nonexistent/git"), &args, folder)
    }

    #[test]
    fn local_work_is_allowed() {
        let (_dir, folder) = folder();
        for args in [
            &["status", "--porcelain"][..],
            &["log", "--oneline", "-n", "5", "--", "data.csv"],
            &["-C", "repo", "diff", "HEAD~1..HEAD", "--stat"],
            &["--no-pager", "show", "HEAD:notes.md"],
            &["commit", "-m", "update", "--no-ext-diff"],
            &["grep", "-n", "-e", "total"],
            &["rebase", "-i", "main"],
            &["merge", "--no-ff", "feature"],
            &["--version"],
            &[],
        ] {
            assert!(
                check(args, &folder).is_ok(),
                "{args:?}: {:?}",
                check(args, &folder).err()
            );
        }
    }

    #[test]
    fn configuration_programs_and_outside_paths_are_refused() {
        let (_dir, folder) = folder();
        for args in [
            &["-c", "alias.x=!touch /tmp/pwned", "x"][..],
            &["-calias.x=!id", "x"],
            &["--config-env=core.pager=HOME", "log"],
            &["--exec-path=/tmp", "status"],
            &["-p", "log"],
            &["-C", "/", "status"],
            &["-C", "..", "status"],
            &["--git-dir=/etc", "log"],
            &["--work-tree", "/", "status"],
            &["x"],
            &["config", "core.hooksPath", "hooks"],
            &["submodule", "foreach", "id"],
            &["difftool", "-x", "id"],
            &["mergetool"],
            &["filter-branch", "--tree-filter", "id"],
            &["bisect", "run", "id"],
            &["fetch", "ext::sh -c id"],
            &["clone", "--upload-pack=id", "fd::3"],
            &["ls-remote", "-u", "id", "."],
            &["diff", "--no-index", "/etc/passwd", "x"],
            &["diff", "--no-ind", "a", "b"],
            &["diff", "--ext-diff"],
            &["log", "--output=/tmp/out"],
            &["show", "--output", "../out"],
            &["grep", "-O", "x"],
            &["grep", "-nOid", "x"],
            &["grep", "--open-files=id", "x"],
            &["rebase", "--exec", "id", "main"],
            &["rebase", "-x", "id", "main"],
            &["rebase", "-ix", "id", "main"],
            &["merge", "-s", "evil", "x"],
            &["cherry-pick", "--strategy=evil", "x"],
            &["init", "--template=tpl"],
            &["apply", "--unsafe-paths", "p.diff"],
            &["archive", "--remote=ext::id", "HEAD"],
            &["log", "--help"],
            &["help", "log"],
            &["upload-pack", "."],
            &[
                "log",
                "--format=[core]%n\tworktree = /",
                "-1",
                "--output=.git/config",
            ],
            &["archive", "-o", "repo/.git/hooks/pre-commit", "HEAD"],
            &["-C", "repo", "mv", "tracked", ".git/config"],
        ] {
            assert!(check(args, &folder).is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_environment_pins_configuration_above_the_repository() {
        let (_dir, folder) = folder();
        let plan = check(&["status"], &folder).expect("allowed");
        let get = |key: &str| {
            plan.env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("GIT_CONFIG_GLOBAL"), Some("/dev/null"));
        assert_eq!(get("GIT_ALLOW_PROTOCOL"), Some(""));
        let count: usize = get("GIT_CONFIG_COUNT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let keys: Vec<&str> = (0..count)
            .filter_map(|i| get(&format!("GIT_CONFIG_KEY_{i}")))
            .collect();
        assert!(keys.contains(&"core.hooksPath") && keys.contains(&"protocol.allow"));
        let ceiling = get("GIT_CEILING_DIRECTORIES").map(PathBuf::from);
        assert_eq!(ceiling.as_deref(), folder.root().parent());
    }
}
