//! Process-wide limits the host sets for itself: the open-file limit, raised to the hard limit
//! at start, and how those descriptors are shared so the gateway can always accept. A quarter
//! goes to the plugins' outgoing connections (`runtime.max_outgoing_connections` takes at most
//! that), an eighth (64 to 1,024) stays for the host's own files, pools and listeners, and the
//! rest bounds the gateway's connections (`gateway.max_connections` takes at most that).

use std::sync::OnceLock;

/// The most outgoing plugin connections the plan gives, however many files may be open.
const MAX_OUTGOING: usize = 16_384;
/// Outgoing connections when the open-file limit cannot be read.
const UNKNOWN_OUTGOING: usize = 1024;

/// How the process's descriptors are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPlan {
    /// The soft open-file limit in force, when it could be read.
    pub open_files: Option<usize>,
    /// Outgoing connections of all plugin calls together.
    pub outgoing: usize,
    /// Connections the gateway may hold (`usize::MAX`: no limit is known).
    pub gateway: usize,
}

impl DescriptorPlan {
    pub fn for_open_files(open_files: Option<usize>) -> Self {
        match open_files {
            None => Self {
                open_files,
                outgoing: UNKNOWN_OUTGOING,
                gateway: usize::MAX,
            },
            Some(files) => {
                let outgoing = (files / 4).clamp(1, MAX_OUTGOING);
                let reserve = (files / 8).clamp(64, 1024);
                Self {
                    open_files,
                    outgoing,
                    gateway: files.saturating_sub(outgoing + reserve).max(1),
                }
            }
        }
    }
}

/// The plan for this process, made once: the open-file limit is raised first.
pub fn descriptor_plan() -> DescriptorPlan {
    static PLAN: OnceLock<DescriptorPlan> = OnceLock::new();
    *PLAN.get_or_init(|| DescriptorPlan::for_open_files(raise_open_file_limit()))
}

/// Raise the soft open-file limit to the hard one. The soft limit in force afterwards, or
/// `None` when it cannot be read.
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // An unlimited hard limit still has a kernel ceiling; a million is within every default.
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = target;
        } else {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not raise the open-file limit"
            );
        }
    }
    Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_shared_with_a_reserve_left_over() {
        let plan = DescriptorPlan::for_open_files(Some(1024));
        assert_eq!((plan.outgoing, plan.gateway), (256, 640));
        let plan = DescriptorPlan::for_open_files(Some(20_000));
        assert_eq!((plan.outgoing, plan.gateway), (5_000, 13_976));
        let plan = DescriptorPlan::for_open_files(Some(1 << 20));
        assert_eq!(plan.outgoing, MAX_OUTGOING);
        assert_eq!(plan.gateway, (1 << 20) - MAX_OUTGOING - 1024);
        for files in [10, 100, 1024, 4096, 65_536, 1 << 20] {
            let plan = DescriptorPlan::for_open_files(Some(files));
            assert!(plan.outgoing >= 1 && plan.gateway >= 1, "{files}: {plan:?}");
            if files >= 1024 {
                assert!(
                    plan.outgoing + plan.gateway + 64 <= files,
                    "{files}: {plan:?}"
                );
            }
        }
        let unknown = DescriptorPlan::for_open_files(None);
        assert_eq!(
            (unknown.outgoing, unknown.gateway),
            (UNKNOWN_OUTGOING, usize::MAX)
        );
    }

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let soft = raise_open_file_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_open_file_limit`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(usize::try_from(limit.rlim_cur).unwrap(), soft);
        if limit.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(limit.rlim_cur, limit.rlim_max);
        }
    }
}
