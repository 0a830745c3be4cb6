//! Per-program policies of the shell capability, in one table: programs refused outright (they
//! run other programs, code or scripts from their arguments, reach the network around the
//! egress policy, or change user), programs with an argument policy of their own (`git`, `dbt`,
//! `find`), and the path confinement every argument of every program passes.
//!
//! An allowlist entry is looked up by its name and by the name of the file it resolves to, so a
//! link to `bash` under another name is still a shell. The table cannot list every program
//! that can run others: the operator's allowlist remains as powerful as the programs in it.

use std::path::{Path, PathBuf};

use super::git;
use super::paths::Folder;

/// The folders a bare program name is looked up in (also the `PATH` programs run with).
pub(super) const SEARCH_PATH: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

/// What the host does with a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Never runs; the reason says why.
    Refused(&'static str),
    /// Its own argument policy (plus the path confinement).
    Git,
    Dbt,
    Find,
}

/// How a table row matches a program's file name.
#[derive(Debug, Clone, Copy)]
enum Name {
    /// Exactly this name.
    Exact(&'static str),
    /// This name, or it followed by a version (`python3.12`, `perl5.36`, `lua5.4`).
    Versioned(&'static str),
    /// Any name starting with this (`git-upload-pack`).
    Prefix(&'static str),
}

impl Name {
    fn matches(self, name: &str) -> bool {
        match self {
            Name::Exact(exact) => name == exact,
            Name::Versioned(stem) => name
                .strip_prefix(stem)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.')),
            Name::Prefix(prefix) => name.starts_with(prefix),
        }
    }
}

const SHELL: &str = "a shell runs any command line given as an argument";
const INTERPRETER: &str = "an interpreter runs any code given as an argument or in a file";
const BUILD: &str = "it runs commands from a project or build file, or installs and runs packages";
const RUNNER: &str = "it runs another program named in its arguments";
const PRIVILEGE: &str = "it runs programs as another user";
const SCRIPTED: &str = "its arguments can make it run commands or write any file (`sed e`, `awk system()`, `tar --to-command`, a pager or editor command)";
const FILE_LIST: &str =
    "it reads the names of the files it opens from its input, out of reach of the argument checks";
const NETWORK: &str = "it reaches the network around the host's egress policy (`permissions.http`)";
const MULTICALL: &str = "named directly, a multi-call binary runs any of its applets, shells included (a link to it under an applet's name runs that applet)";
const GIT_HELPER: &str =
    "a git helper program; allow `git` itself, whose policy covers its subcommands";

/// One row of the table.
struct Rule {
    names: &'static [Name],
    policy: Policy,
}

use Name::{Exact, Prefix, Versioned};

/// Every program the host knows a policy for. A program not listed runs with the path
/// confinement only.
const RULES: &[Rule] = &[
    Rule {
        names: &[Exact("git")],
        policy: Policy::Git,
    },
    Rule {
        names: &[Exact("dbt")],
        policy: Policy::Dbt,
    },
    Rule {
        names: &[Exact("find"), Exact("gfind")],
        policy: Policy::Find,
    },
    Rule {
        names: &[Prefix("git-")],
        policy: Policy::Refused(GIT_HELPER),
    },
    Rule {
        names: &[
            Exact("sh"),
            Exact("ash"),
            Exact("bash"),
            Exact("rbash"),
            Exact("dash"),
            Exact("zsh"),
            Exact("ksh"),
            Exact("ksh93"),
            Exact("mksh"),
            Exact("pdksh"),
            Exact("yash"),
            Exact("fish"),
            Exact("csh"),
            Exact("tcsh"),
            Exact("elvish"),
            Exact("nu"),
            Exact("xonsh"),
            Exact("pwsh"),
        ],
        policy: Policy::Refused(SHELL),
    },
    Rule {
        names: &[Exact("busybox"), Exact("toybox")],
        policy: Policy::Refused(MULTICALL),
    },
    Rule {
        names: &[
            Versioned("python"),
            Versioned("pypy"),
            Versioned("perl"),
            Versioned("ruby"),
            Exact("irb"),
            Versioned("node"),
            Exact("nodejs"),
            Exact("deno"),
            Exact("bun"),
            Versioned("php"),
            Versioned("lua"),
            Exact("luajit"),
            Versioned("tclsh"),
            Versioned("wish"),
            Exact("expect"),
            Exact("R"),
            Exact("Rscript"),
            Exact("julia"),
            Exact("java"),
            Exact("jshell"),
            Exact("groovy"),
            Exact("scala"),
            Versioned("guile"),
            Exact("racket"),
            Exact("sbcl"),
            Exact("osascript"),
            Exact("gdb"),
            Exact("lldb"),
        ],
        policy: Policy::Refused(INTERPRETER),
    },
    Rule {
        names: &[
            Versioned("pip"),
            Exact("pipx"),
            Exact("uv"),
            Exact("uvx"),
            Exact("poetry"),
            Exact("npm"),
            Exact("npx"),
            Exact("yarn"),
            Exact("pnpm"),
            Exact("gem"),
            Exact("bundle"),
            Exact("cargo"),
            Exact("go"),
            Exact("make"),
            Exact("gmake"),
            Exact("cmake"),
            Exact("ninja"),
            Exact("mvn"),
            Exact("gradle"),
            Exact("ant"),
            Exact("sbt"),
            Exact("dotnet"),
        ],
        policy: Policy::Refused(BUILD),
    },
    Rule {
        names: &[
            Exact("env"),
            Exact("xargs"),
            Exact("nohup"),
            Exact("setsid"),
            Exact("timeout"),
            Exact("nice"),
            Exact("ionice"),
            Exact("chrt"),
            Exact("taskset"),
            Exact("stdbuf"),
            Exact("time"),
            Exact("watch"),
            Exact("flock"),
            Exact("script"),
            Exact("chroot"),
            Exact("unshare"),
            Exact("nsenter"),
            Exact("setpriv"),
            Exact("capsh"),
            Exact("prlimit"),
            Exact("strace"),
            Exact("ltrace"),
            Exact("valgrind"),
            Exact("parallel"),
            Exact("run-parts"),
            Exact("start-stop-daemon"),
            Exact("systemd-run"),
            Exact("at"),
            Exact("batch"),
            Exact("crontab"),
            Exact("firejail"),
            Exact("bwrap"),
            Exact("docker"),
            Exact("podman"),
            Exact("nerdctl"),
        ],
        policy: Policy::Refused(RUNNER),
    },
    Rule {
        names: &[
            Exact("sudo"),
            Exact("su"),
            Exact("doas"),
            Exact("runuser"),
            Exact("pkexec"),
            Exact("sg"),
            Exact("newgrp"),
        ],
        policy: Policy::Refused(PRIVILEGE),
    },
    Rule {
        names: &[
            Exact("awk"),
            Exact("gawk"),
            Exact("mawk"),
            Exact("nawk"),
            Exact("sed"),
            Exact("gsed"),
            Exact("ed"),
            Exact("ex"),
            Exact("vi"),
            Exact("vim"),
            Exact("view"),
            Exact("nvim"),
            Exact("emacs"),
            Exact("m4"),
            Exact("dc"),
            Exact("tar"),
            Exact("gtar"),
            Exact("bsdtar"),
            Exact("zip"),
            Exact("patch"),
            Exact("man"),
            Exact("less"),
            Exact("more"),
        ],
        policy: Policy::Refused(SCRIPTED),
    },
    Rule {
        names: &[Exact("cpio"), Exact("pax")],
        policy: Policy::Refused(FILE_LIST),
    },
    Rule {
        names: &[
            Exact("curl"),
            Exact("wget"),
            Exact("nc"),
            Exact("ncat"),
            Exact("netcat"),
            Exact("socat"),
            Exact("ssh"),
            Exact("scp"),
            Exact("sftp"),
            Exact("rsync"),
            Exact("telnet"),
            Exact("ftp"),
            Exact("lftp"),
        ],
        policy: Policy::Refused(NETWORK),
    },
];

/// Long options that read a list of file names from a file or the input, for any program
/// (`sort --files0-from=-`, `wc --files0-from=LIST`).
const FILE_LIST_OPTIONS: [&str; 2] = ["--files0-from", "--files-from"];

fn lookup(name: &str) -> Option<Policy> {
    RULES
        .iter()
        .find(|rule| rule.names.iter().any(|n| n.matches(name)))
        .map(|rule| rule.policy)
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// An absolute entry as it is; a bare name looked up in [`SEARCH_PATH`].
pub(super) fn resolve_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_owned());
    }
    if program.contains('/') {
        return None;
    }
    SEARCH_PATH
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// The policy of an allowlist entry, from its name and from the name of the file it resolves
/// to (`executable`, when installed). `Ok(None)`: path confinement only.
fn policy_of(entry: &str, executable: Option<&Path>) -> Result<Option<Policy>, String> {
    let name = file_name(Path::new(entry));
    let own = lookup(name);
    if let Some(Policy::Refused(reason)) = own {
        return Err(format!("`{entry}` is refused: {reason}"));
    }
    let real = executable.and_then(|path| path.canonicalize().ok());
    let real_name = real.as_deref().map(file_name).unwrap_or("");
    if real_name.is_empty() || real_name == name {
        return Ok(own);
    }
    match lookup(real_name) {
        // A link to a multi-call binary runs the applet it is named after.
        Some(Policy::Refused(MULTICALL)) => Ok(own),
        Some(Policy::Refused(reason)) => Err(format!(
            "`{entry}` is refused: it is `{}`, and {reason}",
            real.as_deref().unwrap_or(Path::new("")).display()
        )),
        real_policy => Ok(own.or(real_policy)),
    }
}

/// What is wrong with an allowlist entry, for the config check (`None`: nothing).
pub fn entry_problem(entry: &str) -> Option<String> {
    if entry.is_empty() || entry.contains('\0') {
        return Some("an entry is empty or contains NUL".into());
    }
    if entry.contains('/') && !Path::new(entry).is_absolute() {
        return Some(format!(
            "`{entry}`: name a program (looked up in {}) or give its absolute path",
            SEARCH_PATH.join(":")
        ));
    }
    policy_of(entry, resolve_program(entry).as_deref()).err()
}

/// What the host adds to one run of a program with a policy.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Environment set by the host (after the fixed `PATH` and `LANG`).
    pub env: Vec<(String, String)>,
    /// The folder the program moves to before it resolves paths (`git -C`), besides the
    /// working folder.
    pub moved_to: Option<PathBuf>,
    /// Arguments of a run of the same program, before the real one, whose output lines are
    /// paths that must lie inside the working folder (git's repository and work tree).
    pub preflight: Option<Vec<String>>,
    /// How many leading arguments may name a git folder (git's own checked `-C`,
    /// `--git-dir`, `--work-tree`).
    pub repository_args: usize,
}

/// Check a run of allowlist entry `entry` (resolved to `executable`) with `args` in `folder`:
/// the plan for it, or why it is refused.
pub(super) fn plan(
    entry: &str,
    executable: &Path,
    args: &[String],
    folder: &Folder,
) -> Result<Plan, String> {
    let plan = match policy_of(entry, Some(executable))? {
        None => Plan::default(),
        Some(Policy::Git) => git::plan(args, folder)?,
        Some(Policy::Dbt) => dbt(args)?,
        Some(Policy::Find) => find(args)?,
        Some(Policy::Refused(reason)) => return Err(format!("`{entry}` is refused: {reason}")),
    };
    for arg in args {
        if let Some(option) = FILE_LIST_OPTIONS
            .iter()
            .find(|option| arg == *option || arg.starts_with(&format!("{option}=")))
        {
            return Err(format!(
                "`{option}` is refused: it reads the names of files to open from a list, out of reach of the argument checks"
            ));
        }
    }
    let mut bases = vec![folder.root()];
    if let Some(moved) = &plan.moved_to {
        bases.push(moved);
    }
    for (index, arg) in args.iter().enumerate() {
        folder.check_arg(&bases, arg, index < plan.repository_args)?;
    }
    Ok(plan)
}

/// `dbt`: the subcommand comes first (an option before it could take the next word as its
/// value and hide which subcommand runs) and is one that works on the project as it is.
fn dbt(args: &[String]) -> Result<Plan, String> {
    const ALLOWED: [&str; 14] = [
        "build",
        "run",
        "test",
        "seed",
        "snapshot",
        "compile",
        "parse",
        "ls",
        "list",
        "show",
        "debug",
        "retry",
        "clone",
        "source freshness",
    ];
    let Some(first) = args.first() else {
        return Ok(Plan::default());
    };
    if args.len() == 1 && matches!(first.as_str(), "--version" | "--help" | "-h") {
        return Ok(Plan::default());
    }
    let refused = |reason: &str| Err(format!("`dbt {first}` is refused: {reason}"));
    match first.as_str() {
        "deps" => {
            return refused(
                "it downloads packages over the network and runs git outside the host's git policy",
            );
        }
        "init" => return refused("it writes a profile outside the working folder"),
        "clean" => {
            return refused("it deletes the folders the project file names, wherever they are");
        }
        "run-operation" => return refused("it runs any macro with arguments the caller picks"),
        _ => {}
    }
    let command = match (first.as_str(), args.get(1).map(String::as_str)) {
        ("docs", Some("generate")) => "docs generate",
        ("source", Some("freshness")) => "source freshness",
        (name, _) => name,
    };
    if first.starts_with('-') {
        return Err(format!(
            "dbt: the subcommand must come first, before options like `{first}` (allowed: {})",
            ALLOWED.join(", ")
        ));
    }
    if command == "docs generate" || ALLOWED.contains(&command) {
        Ok(Plan::default())
    } else {
        Err(format!(
            "`dbt {command}` is not among the subcommands the host allows: {}, docs generate",
            ALLOWED.join(", ")
        ))
    }
}

/// `find`: no primary that runs a program, deletes, writes a file, reads names from a file,
/// or follows links out of the start folders.
fn find(args: &[String]) -> Result<Plan, String> {
    const REFUSED: [(&str, &str); 12] = [
        ("-exec", "runs a program"),
        ("-execdir", "runs a program"),
        ("-ok", "runs a program"),
        ("-okdir", "runs a program"),
        ("-delete", "deletes files"),
        ("-fprint", "writes a file"),
        ("-fprint0", "writes a file"),
        ("-fprintf", "writes a file"),
        ("-fls", "writes a file"),
        (
            "-files0-from",
            "reads start points from a file, out of reach of the argument checks",
        ),
        ("-L", "follows links out of the working folder"),
        ("-follow", "follows links out of the working folder"),
    ];
    for arg in args {
        if let Some((name, why)) = REFUSED.iter().find(|(name, _)| arg == name) {
            return Err(format!("`find {name}` is refused: it {why}"));
        }
    }
    Ok(Plan::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_runners_are_refused_by_name_and_by_what_they_resolve_to() {
        for entry in [
            "sh",
            "/bin/sh",
            "bash",
            "env",
            "xargs",
            "awk",
            "sed",
            "tar",
            "python3",
            "python3.12",
            "/usr/bin/perl",
            "sudo",
            "curl",
            "git-upload-pack",
            "busybox",
            "setsid",
        ] {
            assert!(entry_problem(entry).is_some(), "{entry}");
        }
        for entry in [
            "git",
            "dbt",
            "find",
            "ls",
            "echo",
            "/usr/bin/wc",
            "jq",
            "grep",
        ] {
            assert_eq!(entry_problem(entry), None, "{entry}");
        }
        assert!(entry_problem("bin/tool").is_some());
        assert!(entry_problem("").is_some());

        // A link to a shell under another name is a shell.
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("report-tool");
        std::os::unix::fs::symlink("/bin/bash", &link).expect("link");
        let problem = entry_problem(&link.display().to_string()).expect("refused");
        assert!(problem.contains("bash"), "{problem}");
        // A link to a multi-call binary runs as its own name.
        assert_eq!(
            policy_of("ls", Some(Path::new("/nonexistent/busybox"))),
            Ok(None)
        );
    }

    #[test]
    fn versions_match_only_version_suffixes() {
        assert!(Versioned("python").matches("python3.11"));
        assert!(Versioned("python").matches("python"));
        assert!(!Versioned("python").matches("python-config"));
        assert!(!Versioned("R").matches("Rx"));
    }

    fn folder() -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = Folder::open(dir.path()).expect("folder");
        (dir, folder)
    }

    fn check(entry: &str, args: &[&str], folder: &Folder) -> Result<Plan, String> {
        let executable = resolve_program(entry).unwrap_or_else(|| PathBuf::from(entry));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        plan(entry, &executable, &args, folder)
    }

    #[test]
    fn find_dbt_and_every_program_are_checked() {
        let (_dir, folder) = folder();
        assert!(check("find", &[".", "-name", "*.csv"], &folder).is_ok());
        for args in [
            &[".", "-exec", "id", ";"][..],
            &[".", "-delete"],
            &["-L", "."],
            &[".", "-fprint", "out"],
            &["/etc", "-name", "passwd"],
        ] {
            assert!(check("find", args, &folder).is_err(), "{args:?}");
        }
        let dbt = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            plan("dbt", Path::new("/nonexistent/dbt"), &args, &folder)
        };
        assert!(dbt(&["run", "--select", "orders"]).is_ok());
        assert!(dbt(&["docs", "generate"]).is_ok());
        for args in [
            &["deps"][..],
            &["run-operation", "drop_all"],
            &["--target", "run", "deps"],
            &["docs", "serve"],
            &["clean"],
            &["run", "--project-dir", "/srv/other"],
            &["run", "--profiles-dir=../secrets"],
        ] {
            assert!(dbt(args).is_err(), "{args:?}");
        }
        assert!(check("sort", &["--files0-from=-"], &folder).is_err());
        assert!(check("wc", &["--files-from", "list"], &folder).is_err());
        assert!(check("cat", &["/etc/passwd"], &folder).is_err());
        assert!(check("ls", &["-la", "."], &folder).is_ok());
    }
}
