//! The runtime's error type.

use std::io;

use berth_core::ErrorKind;

/// Why a runtime operation failed. Messages are lowercase and say what failed on what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` with an id already in use.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// No container with this id under the runtime root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The id is not usable as a directory name.
    #[error("invalid container id {0:?}: must be 1-1024 characters of [A-Za-z0-9_+.-], not starting with '.'")]
    InvalidId(String),
    /// The operation is not allowed in the container's current state.
    #[error("{0}")]
    State(String),
    /// config.json is missing, malformed, or has an invalid field (the message names it).
    #[error("config.json: {0}")]
    Config(String),
    /// A request that is well-formed but unsupported here.
    #[error("{0}")]
    Unsupported(String),
    /// Invalid caller input other than config.json (a bad signal name, a bad --user...).
    #[error("{0}")]
    Invalid(String),
    /// The container's init (or exec'd process) reported an error during setup.
    #[error("{msg}")]
    Init {
        /// The reason, as reported from inside, e.g. `mount proc on /proc: permission denied`.
        msg: String,
        /// Its kind.
        kind: ErrorKind,
    },
    /// A system call or file operation failed.
    #[error("{context}: {}", errno_text(source))]
    Io {
        /// What was being done, on what.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::CgroupError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Exists(_) | Error::State(_) => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidId(_) | Error::Config(_) | Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Init { kind, .. } => *kind,
            Error::Io { source, .. } => io_kind(source),
            Error::Hook(e) => e.kind(),
            Error::Cgroup(e) => e.kind(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// The [`ErrorKind`] of an OS error.
pub(crate) fn io_kind(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => ErrorKind::PermissionDenied,
        Some(libc::ENOENT) | Some(libc::ESRCH) => ErrorKind::NotFound,
        Some(libc::EINVAL) => ErrorKind::InvalidInput,
        Some(libc::EEXIST) | Some(libc::EBUSY) => ErrorKind::Conflict,
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    }
}

/// "Permission denied (os error 13)" -> "permission denied".
pub(crate) fn errno_text(err: &io::Error) -> String {
    let s = err.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
