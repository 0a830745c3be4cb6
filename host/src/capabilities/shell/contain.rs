//! Process containment for the shell capability: every process a call starts is gone when the
//! call returns, whether the program exited, timed out or the call was cancelled, including
//! children that left the process group (`setsid`), double-forked or daemonized.
//!
//! Each run has a supervisor of its own: the process `spawn` creates forks once more before
//! `exec`, and the fork runs the program while the supervisor waits for it. The supervisor ends
//! everything when the program exits or when the host closes the supervisor's stop pipe (at the
//! timeout, when the call is dropped, or when the host itself dies), then exits with the
//! program's status (`128 + signal` for a program killed by a signal). How it ends everything
//! depends on what this machine allows, probed once:
//!
//! - `PidNamespace` (needs `CAP_SYS_ADMIN`, e.g. the host runs as root): the program is process
//!   1 of a new PID namespace. When it exits or is killed, the kernel kills every process in
//!   the namespace and the program's exit completes only after they are gone; nothing can
//!   leave a PID namespace, and nothing inside can see or signal the supervisor.
//! - `Subreaper` (any user, needs `/proc/PID/task/TID/children`): the supervisor is a child
//!   subreaper, so every orphaned descendant becomes its child; it kills its children, reaps
//!   one, and repeats until it has none (a killed process's children are reparented to it
//!   before the process can be reaped, so none is missed). A program that kills its own
//!   supervisor (same user) leaves its descendants to init: this mode contains accidents and
//!   daemonizing programs, not a program written to escape.
//! - `ProcessGroup` (neither available): the program's process group is killed; a descendant
//!   that called `setsid` survives. Logged as a warning at the first run.
//!
//! Only the supervisor is a subreaper, never the host process: tokio's child handling and
//! anything else that spawns processes in the host see no orphans of ours.
//!
//! The supervisor runs between `fork` and `exec` of std's spawn, in a copy of a multithreaded
//! process, so it uses only async-signal-safe system calls and never allocates.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How this machine lets the supervisor end everything a program started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Containment {
    PidNamespace,
    Subreaper,
    ProcessGroup,
}

impl Containment {
    /// The strongest kind this machine supports, probed once.
    pub(super) fn available() -> Self {
        static MODE: OnceLock<Containment> = OnceLock::new();
        *MODE.get_or_init(|| {
            let mode = probe();
            match mode {
                Containment::PidNamespace => {
                    tracing::info!("shell capability: each run gets its own PID namespace")
                }
                Containment::Subreaper => tracing::info!(
                    "shell capability: no PID namespaces here (needs CAP_SYS_ADMIN); each run has a subreaper supervisor"
                ),
                Containment::ProcessGroup => tracing::warn!(
                    "shell capability: neither PID namespaces nor /proc/PID/task/TID/children are available; only each run's process group is killed, and a program that calls setsid can outlive its call"
                ),
            }
            mode
        })
    }
}

fn probe() -> Containment {
    // `unshare(CLONE_NEWPID)` changes only where the calling thread's future children go, so
    // it is tried on a thread of its own that ends right after.
    let namespaces = std::thread::Builder::new()
        .name("shell-probe".into())
        .spawn(|| {
            // SAFETY: unshare takes no pointers; the namespace it creates is dropped with the
            // thread, which starts no process.
            unsafe { libc::unshare(libc::CLONE_NEWPID) == 0 }
        })
        .ok()
        .and_then(|thread| thread.join().ok())
        .unwrap_or(false);
    if namespaces {
        Containment::PidNamespace
    } else if std::path::Path::new(CHILDREN).exists() {
        Containment::Subreaper
    } else {
        Containment::ProcessGroup
    }
}

/// The supervisor's own children (the supervisor is single-threaded).
const CHILDREN: &str = "/proc/thread-self/children";
const CHILDREN_C: &std::ffi::CStr = c"/proc/thread-self/children";

/// How long the host waits for a supervisor to finish its clean-up after a stop before it
/// kills the supervisor itself.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What a run produced.
#[derive(Debug)]
pub(super) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

/// Why a run did not produce output.
#[derive(Debug)]
pub(super) enum RunError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    TimedOut,
}

/// Run `command` contained: stdin written while stdout and stderr are read (each capped at
/// `limit` bytes, the rest drained), and when this returns, or its future is dropped, no
/// process it started is left (in `PidNamespace` and `Subreaper` mode).
pub(super) async fn run(
    mut command: tokio::process::Command,
    mode: Containment,
    stdin: Option<String>,
    limit: usize,
    timeout: Duration,
) -> Result<Finished, RunError> {
    let (stop_read, stop_write) = stop_pipe().map_err(RunError::Spawn)?;
    let stop_fd = stop_read.as_raw_fd();
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Away from the host's terminal signals (Ctrl-C).
        .process_group(0)
        // Killing the supervisor would skip its clean-up: a dropped run closes the stop pipe
        // instead (below), and tokio reaps the supervisor when it exits.
        .kill_on_drop(false);
    // SAFETY: `split` runs in the forked child before exec and makes only async-signal-safe
    // system calls on integers and stack buffers.
    unsafe {
        command.pre_exec(move || split(mode, stop_fd));
    }
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    drop(stop_read);
    // Closing the write end (on every path out of this function, the dropped future included)
    // tells the supervisor to end everything.
    let stop = stop_write;
    let input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
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
    drop(stop);
    match finished {
        Ok(((stdout, out_cut), (stderr, err_cut), status)) => Ok(Finished {
            status: status.map_err(RunError::Wait)?,
            stdout,
            stderr,
            truncated: out_cut || err_cut,
        }),
        Err(_) => {
            // The call returns only once the supervisor has ended the program's processes.
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "shell capability: a supervisor did not finish its clean-up in time"
                );
                let _ = child.start_kill();
            }
            Err(RunError::TimedOut)
        }
    }
}

/// The stop pipe, both ends close-on-exec and above the standard descriptors (which the child
/// replaces before the supervisor starts).
fn stop_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = std::io::pipe()?;
    let read = OwnedFd::from(read);
    let write = OwnedFd::from(write);
    // `try_clone` duplicates with F_DUPFD_CLOEXEC from descriptor 3 up.
    let read = if read.as_raw_fd() < 3 {
        read.try_clone()?
    } else {
        read
    };
    Ok((read, write))
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

/// In the child std forked: fork once more; the new process goes on to exec the program (in a
/// PID namespace, after one more fork that leaves process 1 of the namespace as its init), this
/// one becomes the supervisor and never returns. A process of the chain that fails returns the
/// error, which std reports to `spawn` through its exec-error pipe.
fn split(mode: Containment, stop_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers; see the module header for why only these.
    unsafe {
        match mode {
            Containment::PidNamespace => {
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Containment::Subreaper => {
                if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Containment::ProcessGroup => {}
        }
        let supervisor = libc::getpid();
        match libc::fork() {
            -1 => Err(std::io::Error::last_os_error()),
            0 => {
                // Killed if the supervisor goes first (in a namespace, with everything in it).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if mode == Containment::PidNamespace {
                    return namespace_init();
                }
                if libc::getppid() != supervisor {
                    libc::_exit(127);
                }
                // A group of its own, which the supervisor can kill without killing itself.
                libc::setpgid(0, 0);
                Ok(())
            }
            child => supervise(mode, stop_fd, child),
        }
    }
}

/// Process 1 of the run's PID namespace: forks the program (which returns to exec it), reaps
/// whatever is orphaned in the namespace, and exits with the program's status, which makes the
/// kernel kill the rest of the namespace. The program, not being process 1, keeps the usual
/// signal behaviour.
unsafe fn namespace_init() -> std::io::Result<()> {
    // SAFETY: async-signal-safe system calls on integers.
    unsafe {
        let init = libc::getpid();
        let program = libc::fork();
        if program == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if program == 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != init {
                libc::_exit(127);
            }
            libc::setpgid(0, 0);
            return Ok(());
        }
        block_signals();
        for fd in 0..3 {
            libc::close(fd);
        }
        close_all_but(-1);
        let mut status: libc::c_int = 0;
        loop {
            let reaped = libc::waitpid(-1, &mut status, 0);
            if reaped == program {
                break;
            }
            if reaped < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(1);
            }
        }
        libc::_exit(exit_code(status))
    }
}

/// A wait status as an exit code: the code, or `128 + signal`.
fn exit_code(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// No signal handler of the host runs in a supervisor or init; SIGKILL still ends them.
unsafe fn block_signals() {
    // SAFETY: a zeroed sigset_t is valid storage for sigfillset.
    unsafe {
        let mut all = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
}

/// The supervisor: wait for `child` (the program, or the namespace's init) to exit or for the
/// stop pipe to close, end everything, exit with the program's status.
unsafe fn supervise(mode: Containment, stop_fd: RawFd, child: libc::pid_t) -> ! {
    // SAFETY (whole body): async-signal-safe system calls on integers and stack buffers.
    unsafe {
        block_signals();
        // The output pipes end when the program's processes are gone, not when this one is.
        for fd in 0..3 {
            libc::close(fd);
        }
        close_all_but(stop_fd);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as libc::c_int;
        let mut exited = false;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: stop_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Without pidfds (Linux < 5.3) the child's exit is polled for.
            let (count, wait_ms) = if pidfd >= 0 { (2, -1) } else { (1, 20) };
            let ready = libc::poll(fds.as_mut_ptr(), count, wait_ms);
            // Not reaped yet (WNOWAIT): its process group cannot be reused until it is.
            let mut info = std::mem::zeroed::<libc::siginfo_t>();
            if libc::waitid(
                libc::P_PID,
                child as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            ) == 0
                && info.si_pid() == child
            {
                exited = true;
                break;
            }
            if ready < 0 || fds[0].revents != 0 {
                break;
            }
        }
        if mode != Containment::PidNamespace {
            libc::kill(-child, libc::SIGKILL);
        }
        if !exited {
            // In a PID namespace this ends the namespace.
            libc::kill(child, libc::SIGKILL);
        }
        let mut status: libc::c_int = 0;
        while libc::waitpid(child, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {
        }
        if mode == Containment::Subreaper {
            reap_descendants();
        }
        libc::_exit(if exited {
            exit_code(status)
        } else {
            128 + libc::SIGKILL
        })
    }
}

/// Kill the supervisor's children and reap them until none is left. Each reaped process's
/// children were reparented to the supervisor before it could be reaped, so the next round
/// sees them.
unsafe fn reap_descendants() {
    // SAFETY: async-signal-safe system calls on integers and stack buffers.
    unsafe {
        loop {
            if !kill_children() {
                // The children file cannot be read (descriptors exhausted): waiting for
                // orphans that cannot be found could last forever.
                while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
                return;
            }
            if libc::waitpid(-1, std::ptr::null_mut(), 0) < 0
                && *libc::__errno_location() != libc::EINTR
            {
                // ECHILD: nothing left.
                return;
            }
        }
    }
}

/// SIGKILL every child listed in the children file; false when it cannot be read.
unsafe fn kill_children() -> bool {
    // SAFETY: async-signal-safe system calls on a stack buffer.
    unsafe {
        let fd = libc::open(CHILDREN_C.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut buffer = [0u8; 512];
        let mut pid: libc::pid_t = 0;
        let mut digits = false;
        loop {
            let read = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
            if read <= 0 {
                break;
            }
            for &byte in &buffer[..read as usize] {
                if byte.is_ascii_digit() {
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add((byte - b'0') as libc::pid_t);
                    digits = true;
                } else {
                    if digits && pid > 0 {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    pid = 0;
                    digits = false;
                }
            }
        }
        if digits && pid > 0 {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::close(fd);
        true
    }
}

/// Close every descriptor from 3 up except `keep` (none if below 3): std's exec-error pipe, the
/// host's copies of other runs' pipes, the stop pipe's write end.
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: close_range and close take integers.
    unsafe {
        let close_from = |low: libc::c_uint, high: libc::c_uint| {
            if low > high {
                return;
            }
            if libc::syscall(libc::SYS_close_range, low, high, 0) != 0 {
                // Linux < 5.9: one by one, up to the descriptor limit.
                let mut limit = std::mem::zeroed::<libc::rlimit>();
                let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                    limit.rlim_cur.min(1 << 20) as libc::c_uint
                } else {
                    1 << 16
                };
                let mut fd = low;
                while fd <= high && fd < top {
                    libc::close(fd as libc::c_int);
                    fd += 1;
                }
            }
        };
        if keep < 3 {
            close_from(3, libc::c_uint::MAX);
            return;
        }
        let keep = keep as libc::c_uint;
        close_from(3, keep - 1);
        close_from(keep + 1, libc::c_uint::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes whose command line holds `marker`.
    pub(crate) fn survivors(marker: &str) -> Vec<u32> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            // Zombies (reaped soon by whoever is their parent) have an empty command line.
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                found.push(pid);
            }
        }
        found
    }

    /// A link to `sleep` named with a marker unique to this test, so that every process
    /// sleeping through it shows the marker on its command line.
    fn sleeper(dir: &std::path::Path, name: &str) -> (String, String) {
        let marker = format!("databot-contain-{name}-{}", std::process::id());
        let sleep = ["/usr/bin/sleep", "/bin/sleep"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect("sleep is installed");
        let link = dir.join(&marker);
        std::os::unix::fs::symlink(sleep, &link).expect("link");
        (marker, link.display().to_string())
    }

    /// `sh -c SCRIPT sh SLEEPER`.
    fn script(body: &str, sleeper: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("/bin/sh");
        command.arg("-c").arg(body).arg("sh").arg(sleeper);
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        command
    }

    /// Five descendants that leave the program's reach in different ways: a new session, a
    /// new session ignoring SIGTERM and SIGHUP, a double fork, `nohup`, a plain child.
    const ESCAPES: &str = r#"
        setsid "$1" 1000 &
        ( setsid sh -c 'trap "" TERM HUP; "$1" 1001; :' sh "$1" & ) &
        ( ( "$1" 1002 & ) & ) &
        nohup "$1" 1003 >/dev/null 2>&1 &
        "$1" 1004 &
        echo started
    "#;

    /// Wait until at least `count` processes carry `marker` (so a check that they are gone
    /// afterwards is not vacuous).
    async fn wait_for(marker: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while survivors(marker).len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "only {:?} started",
                survivors(marker)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn check_mode(mode: Containment) {
        let name = format!("{mode:?}");
        let dir = tempfile::tempdir().expect("temp dir");

        // Escapes of every kind, then a normal exit: all of them gone when run returns.
        let (mark, sleep) = sleeper(dir.path(), &format!("{name}-exit"));
        let out = run(
            script(ESCAPES, &sleep),
            mode,
            None,
            4096,
            Duration::from_secs(20),
        )
        .await
        .expect("runs");
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("started\n", "")
        );
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(survivors(&mark), Vec::<u32>::new(), "{name}: after exit");

        // The same, then a hang ignoring SIGTERM: gone after the timeout.
        let (mark, sleep) = sleeper(dir.path(), &format!("{name}-timeout"));
        let body = format!("{ESCAPES}\ntrap '' TERM; \"$1\" 1005; :");
        let running = tokio::spawn(run(
            script(&body, &sleep),
            mode,
            None,
            4096,
            Duration::from_secs(3),
        ));
        wait_for(&mark, 6).await;
        let result = running.await.expect("joins");
        assert!(matches!(result, Err(RunError::TimedOut)), "{result:?}");
        assert_eq!(survivors(&mark), Vec::<u32>::new(), "{name}: after timeout");

        // A dropped run (a cancelled call) ends its processes too.
        let (mark, sleep) = sleeper(dir.path(), &format!("{name}-drop"));
        let body = format!("{ESCAPES}\n\"$1\" 1005; :");
        let running = tokio::spawn(run(
            script(&body, &sleep),
            mode,
            None,
            4096,
            Duration::from_secs(60),
        ));
        wait_for(&mark, 6).await;
        running.abort();
        let _ = running.await;
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while !survivors(&mark).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(survivors(&mark), Vec::<u32>::new(), "{name}: after drop");

        // Exit codes and signals come through.
        let out = run(
            script("exit 3", "x"),
            mode,
            None,
            64,
            Duration::from_secs(5),
        )
        .await
        .expect("runs");
        assert_eq!(out.status.code(), Some(3));
        let out = run(
            script("kill -9 $$", "x"),
            mode,
            None,
            64,
            Duration::from_secs(5),
        )
        .await
        .expect("runs");
        assert_eq!(out.status.code(), Some(128 + 9));
        // Input is passed, output capped.
        let mut cat = tokio::process::Command::new("cat");
        cat.env_clear();
        let out = run(cat, mode, Some("x".repeat(100)), 10, Duration::from_secs(5))
            .await
            .expect("runs");
        assert_eq!((out.stdout.len(), out.truncated), (10, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_subreaper_supervisor_ends_every_descendant() {
        if !std::path::Path::new(CHILDREN).exists() {
            eprintln!("skipped: this kernel has no {CHILDREN}");
            return;
        }
        check_mode(Containment::Subreaper).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pid_namespace_ends_every_descendant() {
        if Containment::available() != Containment::PidNamespace {
            eprintln!("skipped: no PID namespaces for this user");
            return;
        }
        check_mode(Containment::PidNamespace).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_program_that_is_not_there_is_a_spawn_error() {
        let command = tokio::process::Command::new("/nonexistent/program");
        let result = run(
            command,
            Containment::available(),
            None,
            64,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(result, Err(RunError::Spawn(_))), "{result:?}");
    }
}
