//! The embedded store's files on disk: reading the snapshot and its log, the writer's lock,
//! appends, compaction, and atomic replacement.

use std::path::{Path, PathBuf};

use super::*;

/// The log is folded into a new snapshot once it is larger than the snapshot and than this.
pub(super) const COMPACT_MIN_LOG_BYTES: u64 = 1024 * 1024;

/// How often a reader re-reads the pair when the log continues another snapshot (a writer
/// compacting between the two reads).
pub(super) const READ_ATTEMPTS: usize = 3;

/// The files of a writable store.
pub(super) struct Files {
    pub(super) snapshot: PathBuf,
    pub(super) log_path: PathBuf,
    /// Append handle of a log continuing the current snapshot; `None`: the next change
    /// writes a snapshot (there is none yet, the log was stale, or an append failed).
    pub(super) log: Option<std::fs::File>,
    pub(super) log_len: u64,
    pub(super) snapshot_len: u64,
    pub(super) compact_min: u64,
}

impl Files {
    /// Append one record and fsync it. On failure nothing of it may stay for the next
    /// record to follow: the log is cut back, and the next change writes a snapshot.
    pub(super) fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let Some(file) = self.log.as_mut() else {
            return Err(std::io::Error::other("no log is open"));
        };
        let written = file.write_all(record).and_then(|()| file.sync_data());
        if let Err(error) = written {
            let _ = file.set_len(self.log_len);
            self.log = None;
            return Err(error);
        }
        self.log_len += record.len() as u64;
        Ok(())
    }

    pub(super) fn compaction_due(&self) -> bool {
        self.log.is_none() || self.log_len > self.snapshot_len.max(self.compact_min)
    }

    /// Replace the snapshot with `bytes` (the whole store) and start an empty log after it.
    /// A crash between the two renames leaves the old log, which continues the old snapshot
    /// and is therefore ignored as stale.
    pub(super) fn compact(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.log = None;
        write_atomically(&self.snapshot, bytes).map_err(|source| StoreError::Write {
            path: self.snapshot.display().to_string(),
            source,
        })?;
        self.snapshot_len = bytes.len() as u64;
        let header = log_header(&tag_of(bytes));
        let log_error = |source| StoreError::Write {
            path: self.log_path.display().to_string(),
            source,
        };
        write_atomically(&self.log_path, &header).map_err(log_error)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(log_error)?;
        self.log = Some(file);
        self.log_len = header.len() as u64;
        Ok(())
    }
}

/// What opening read: the snapshot with the log replayed onto it.
pub(super) struct Loaded {
    pub(super) inner: Inner,
    /// Length of the snapshot file (0: none).
    pub(super) snapshot_len: u64,
    /// The log continuing the snapshot, if there is one.
    pub(super) log: Option<LogScan>,
    /// A log was there but continues another snapshot.
    pub(super) stale_log: bool,
}

pub(super) fn log_path_of(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push(".log");
    PathBuf::from(log)
}

/// Read the snapshot at `path` and replay the log at `log_path` onto it.
pub(super) fn load(path: &Path, log_path: &Path) -> Result<Loaded, StoreError> {
    let corrupt = |file: &Path, reason: String| StoreError::Corrupt {
        path: file.display().to_string(),
        reason,
    };
    let read = |file: &Path| match std::fs::read(file) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: file.display().to_string(),
            source,
        }),
    };
    let (mut inner, snapshot) = match read(path)? {
        Some(bytes) => {
            let inner = decode(&bytes).map_err(|reason| corrupt(path, reason))?;
            (inner, Some((bytes.len() as u64, tag_of(&bytes))))
        }
        None => (Inner::default(), None),
    };
    let snapshot_len = snapshot.map_or(0, |(len, _)| len);
    let Some(log) = read(log_path)? else {
        return Ok(Loaded {
            inner,
            snapshot_len,
            log: None,
            stale_log: false,
        });
    };
    let continues = parse_log_header(&log).map_err(|reason| corrupt(log_path, reason))?;
    if snapshot.map(|(_, tag)| tag) != Some(continues) {
        return Ok(Loaded {
            inner,
            snapshot_len,
            log: None,
            stale_log: true,
        });
    }
    let location = path.display().to_string();
    let scan = replay(&log, &mut inner, &location).map_err(|reason| corrupt(log_path, reason))?;
    Ok(Loaded {
        inner,
        snapshot_len,
        log: Some(scan),
        stale_log: false,
    })
}

/// Open the log for appending after its first `len` good bytes (a torn tail is cut off).
pub(super) fn open_log_for_append(path: &Path, len: u64) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    if file.metadata()?.len() != len {
        file.set_len(len)?;
        file.sync_all()?;
    }
    Ok(file)
}

/// Take the exclusive lock on `PATH.lock` (created with its folder when missing).
pub(super) fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let write_error = |source| StoreError::Write {
        path: lock_path.display().to_string(),
        source,
    };
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_error)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                return Err(StoreError::Busy {
                    path: path.display().to_string(),
                });
            }
            return Err(write_error(error));
        }
    }
    Ok(file)
}

/// Replace `path` with `bytes`: temporary file, fsync, rename, fsync of the folder (so the
/// rename itself survives a crash).
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp{}", std::process::id()));
    let temp = PathBuf::from(temp);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    #[cfg(unix)]
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}
