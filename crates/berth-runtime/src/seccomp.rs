//! seccomp: the OCI `linux.seccomp` object compiled to BPF with libseccomp, loaded with one syscall.
//!
//! Split in two so that nothing heavy happens after fork:
//! - [`build_filter`] (in the parent, before fork) validates the whole object, resolves syscall
//!   names, and compiles a BPF program ([`CompiledFilter`]).
//! - [`CompiledFilter::load`] (in the container's init, right before `execve`) installs the
//!   program with `seccomp(SECCOMP_SET_MODE_FILTER)`; it allocates nothing.
//!
//! The init must hold `CAP_SYS_ADMIN` at load time or have set `no_new_privs` first, as the kernel
//! requires. [`docker_default_profile`] builds Docker's default profile for given capabilities.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_core::ErrorKind;
use oci_spec::runtime::LinuxSeccomp;

/// Errors building or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of the seccomp object is invalid; `field` is its JSON path.
    #[error("invalid seccomp field {field}: {reason}")]
    Invalid {
        /// JSON path of the offending field, e.g. `linux.seccomp.syscalls[2].args[0].index`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host or this implementation cannot do what the object asks.
    #[error("seccomp: {0}")]
    Unsupported(String),
    /// libseccomp failed while compiling the filter.
    #[error("seccomp: compile filter: {0}")]
    Compile(String),
    /// The kernel refused the filter.
    #[error("seccomp: load filter: {0}")]
    Load(#[source] std::io::Error),
    /// Sending the notification fd to the listener failed.
    #[error("seccomp: send notify fd to listener {path}: {source}")]
    Listener {
        /// The listener socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SeccompError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SeccompError::Invalid { .. } => ErrorKind::InvalidInput,
            SeccompError::Unsupported(_) => ErrorKind::Unsupported,
            SeccompError::Compile(_) => ErrorKind::Internal,
            SeccompError::Load(e) | SeccompError::Listener { source: e, .. } => {
                ErrorKind::from_io(e)
            }
        }
    }
}

/// Where to send the user-notification fd when the filter uses `SCMP_ACT_NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyListener {
    /// `listenerPath`: the agent's unix socket.
    pub path: PathBuf,
    /// `listenerMetadata`: opaque data passed to the agent.
    pub metadata: String,
}

/// A validated, compiled filter, ready to be loaded after fork.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    program: Vec<berth_sys::seccomp::SockFilter>,
    flags: u32,
    listener: Option<NotifyListener>,
}

impl CompiledFilter {
    /// Install the filter on the calling thread (all threads with `SECCOMP_FILTER_FLAG_TSYNC`).
    ///
    /// For a filter using `SCMP_ACT_NOTIFY` use [`CompiledFilter::load_notify`] instead: this
    /// returns an `Unsupported` error for it, since the notify fd must reach the agent.
    pub fn load(&self) -> Result<(), SeccompError> {
        if self.listener.is_some() {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY needs the notify fd sent to the listener: use load_notify".into(),
            ));
        }
        berth_sys::seccomp::set_mode_filter(&self.program, self.flags)
            .map(|_| ())
            .map_err(SeccompError::Load)
    }

    /// Install the filter; when it uses `SCMP_ACT_NOTIFY`, return the notify fd, which the caller
    /// passes to [`send_notify_fd`] (typically from the parent, since the listener path lives on
    /// the host).
    pub fn load_notify(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let mut flags = self.flags;
        if self.listener.is_some() {
            flags |= berth_sys::seccomp::FLAG_NEW_LISTENER;
        }
        berth_sys::seccomp::set_mode_filter(&self.program, flags).map_err(SeccompError::Load)
    }

    /// The listener to send the notify fd to, if the filter uses `SCMP_ACT_NOTIFY`.
    pub fn listener(&self) -> Option<&NotifyListener> {
        self.listener.as_ref()
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never true for a built filter).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

/// Validate `s` and compile it to BPF.
///
/// Unknown syscall names are skipped (as runc does); invalid actions, operators, argument
/// indices, flags or a missing listener are errors naming the field.
pub fn build_filter(s: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let _ = s;
    Err(SeccompError::Unsupported("under construction".into()))
}

/// Send the notify fd to the agent listening on `listener.path`, with the OCI
/// `containerProcessState` JSON (`state` is the container's state JSON, `pid` the init's pid).
pub fn send_notify_fd(
    listener: &NotifyListener,
    notify_fd: std::os::fd::BorrowedFd<'_>,
    pid: i32,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let _ = (notify_fd, pid, state_json);
    Err(SeccompError::Listener {
        path: listener.path.clone(),
        source: std::io::Error::from(std::io::ErrorKind::Unsupported),
    })
}

/// Docker's default seccomp profile for a process holding `caps` (names like `CAP_SYS_ADMIN`),
/// resolved for the host's architecture.
pub fn docker_default_profile(caps: &[String]) -> LinuxSeccomp {
    let _ = caps;
    LinuxSeccomp::default()
}
