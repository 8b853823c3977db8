//! OCI hooks: run each hook with its path, args, env and timeout, the state JSON on stdin.
//!
//! Where each phase runs (the caller picks the context; [`run_hooks`] runs from the current one):
//! - `prestart` (deprecated), `createRuntime`, `poststart`, `poststop`: the runtime's namespaces.
//! - `createContainer`, `startContainer`: inside the container's namespaces (the init calls them
//!   after entering the namespaces, before pivot_root for createContainer, before exec for
//!   startContainer).

use std::time::Duration;

use berth_core::ErrorKind;
use oci_spec::runtime::Hook;

/// Errors running a hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The phase name is not one of the OCI hook phases.
    #[error("unknown hook phase {0:?}")]
    UnknownPhase(String),
    /// The hook could not be started.
    #[error("{phase} hook {path}: start: {source}")]
    Spawn {
        /// Phase name.
        phase: String,
        /// Hook path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The hook exited unsuccessfully.
    #[error("{phase} hook {path} failed ({status}): {stderr}")]
    Failed {
        /// Phase name.
        phase: String,
        /// Hook path.
        path: String,
        /// "exit status 3" or "signal 9".
        status: String,
        /// Excerpt of its stderr.
        stderr: String,
    },
    /// The hook ran longer than its timeout and was killed.
    #[error("{phase} hook {path} timed out after {}s", timeout.as_secs())]
    TimedOut {
        /// Phase name.
        phase: String,
        /// Hook path.
        path: String,
        /// The hook's timeout.
        timeout: Duration,
    },
    /// poststop hooks failed: these are warnings, every hook was still run.
    #[error("poststop hooks failed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Poststop(Vec<HookError>),
}

impl HookError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HookError::UnknownPhase(_) => ErrorKind::InvalidInput,
            HookError::Spawn { source, .. } => ErrorKind::from_io(source),
            HookError::Failed { .. } | HookError::TimedOut { .. } | HookError::Poststop(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// True for errors the caller should log and otherwise ignore (poststop failures).
    pub fn is_warning(&self) -> bool {
        matches!(self, HookError::Poststop(_))
    }
}

/// Run `hooks` of `phase` in order, each with `state_json` on stdin.
///
/// Stops at the first failure, except for `poststop`, where every hook runs and the failures are
/// returned together as [`HookError::Poststop`].
pub fn run_hooks(hooks: &[Hook], state_json: &[u8], phase: &str) -> Result<(), HookError> {
    let _ = (hooks, state_json);
    Err(HookError::UnknownPhase(phase.to_string()))
}
