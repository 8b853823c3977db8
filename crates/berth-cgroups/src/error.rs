//! The error type of berth-cgroups.

use std::path::PathBuf;

use berth_core::ErrorKind;

/// What went wrong while managing cgroups. Messages name the file or path involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroup file or kernel table failed.
    #[error("read {}: {}", path.display(), os_msg(source))]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("write {} to {}: {}", value, path.display(), os_msg(source))]
    Write {
        /// The value written.
        value: String,
        /// The file written to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or removing a cgroup directory failed.
    #[error("{} {}: {}", op, path.display(), os_msg(source))]
    Dir {
        /// "mkdir", "rmdir" or "open".
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel file had content we could not understand.
    #[error("parse {}: {}", path.display(), reason)]
    Parse {
        /// The file (or pseudo-file) parsed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The caller's input is invalid (bad cgroups path, bad unified key, bad device rule...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        reason: String,
    },
    /// The spec asks for something this host or berth does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem found in /proc/self/mountinfo")]
    NoCgroupFs,
    /// Loading or attaching the device-filter BPF program failed.
    #[error("{} device filter on {}: {}", op, path.display(), os_msg(source))]
    Bpf {
        /// The failed operation ("load", "attach", "query", "detach").
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Processes did not leave the cgroup in time.
    #[error("rmdir {}: cgroup still busy after {} ms", path.display(), waited_ms)]
    Busy {
        /// The directory that could not be removed.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// Sending a signal to a process of the cgroup failed.
    #[error("kill pid {pid} with signal {signal}: {}", os_msg(source))]
    Kill {
        /// The target process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    /// The berth-wide classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Dir { source, .. }
            | CgroupError::Bpf { source, .. }
            | CgroupError::Kill { source, .. } => match source.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ERANGE) => ErrorKind::InvalidInput,
                _ => ErrorKind::from_io(source),
            },
            CgroupError::Parse { .. } => ErrorKind::Corrupt,
            CgroupError::Invalid { .. } => ErrorKind::InvalidInput,
            CgroupError::Unsupported(_) | CgroupError::NoCgroupFs => ErrorKind::Unsupported,
            CgroupError::Busy { .. } => ErrorKind::Conflict,
        }
    }
}

pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> CgroupError {
    CgroupError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// An OS error as a short lowercase message: "invalid argument", not
/// "Invalid argument (os error 22)".
pub(crate) fn os_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}
