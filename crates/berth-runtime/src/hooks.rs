//! OCI hooks: run each hook with its path, args, env and timeout, the state JSON on stdin.
//!
//! Where each phase runs (the caller picks the context; [`run_hooks`] runs from the current one):
//! - `prestart` (deprecated), `createRuntime`, `poststart`, `poststop`: the runtime's
//!   namespaces (the caller is the runtime process).
//! - `createContainer`: inside the container's namespaces, after the mounts are set up and before
//!   pivot_root; `startContainer`: inside the container, right before the user process is
//!   executed. Both are the lifecycle's init calling [`run_hooks`].
//!
//! Each hook runs in its own process group; on timeout the whole group gets SIGKILL and the hook
//! is reaped. Orphaned grandchildren are reparented to the nearest subreaper: a caller that
//! outlives its hooks should be one (`PR_SET_CHILD_SUBREAPER`) and reap them.
//!
//! `env` absent means the hook inherits the caller's environment (as runc does); `env: []` means
//! an empty environment. `args[0]` is the hook's `argv[0]`; without `args`, `argv[0]` is `path`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::ErrorKind;
use oci_spec::runtime::Hook;

/// The OCI hook phases, in lifecycle order.
pub const PHASES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// How much of a failing hook's stderr goes into the error.
const STDERR_EXCERPT: usize = 2048;

/// Errors running a hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The phase name is not one of the OCI hook phases.
    #[error("unknown hook phase {0:?}")]
    UnknownPhase(String),
    /// The hook definition is invalid (relative path, non-positive timeout).
    #[error("{phase} hook {path}: {reason}")]
    Invalid {
        /// Phase name.
        phase: String,
        /// Hook path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The hook could not be started or watched.
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
    /// poststart or poststop hooks failed: warnings for the caller to log (the spec says the
    /// remaining hooks and the lifecycle continue); every hook was still run.
    #[error("{phase} hooks failed: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Warnings {
        /// Phase name.
        phase: String,
        /// One error per failed hook, in order.
        errors: Vec<HookError>,
    },
}

impl HookError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HookError::UnknownPhase(_) | HookError::Invalid { .. } => ErrorKind::InvalidInput,
            HookError::Spawn { source, .. } => ErrorKind::from_io(source),
            HookError::Failed { .. } | HookError::TimedOut { .. } | HookError::Warnings { .. } => {
                ErrorKind::Internal
            }
        }
    }

    /// True for errors the caller should log and otherwise ignore (poststart and poststop).
    pub fn is_warning(&self) -> bool {
        matches!(self, HookError::Warnings { .. })
    }
}

/// Run `hooks` of `phase` in order, each with `state_json` on stdin.
///
/// Stops at the first failure, except for `poststart` and `poststop`, where every hook runs and
/// the failures are returned together as [`HookError::Warnings`] (see [`HookError::is_warning`]),
/// as the runtime spec asks: the caller logs them and the lifecycle continues.
pub fn run_hooks(hooks: &[Hook], state_json: &[u8], phase: &str) -> Result<(), HookError> {
    if !PHASES.contains(&phase) {
        return Err(HookError::UnknownPhase(phase.to_string()));
    }
    let mut warnings = Vec::new();
    for hook in hooks {
        match run_hook(hook, state_json, phase) {
            Ok(()) => {}
            Err(e) if phase == "poststart" || phase == "poststop" => warnings.push(e),
            Err(e) => return Err(e),
        }
    }
    if warnings.is_empty() {
        Ok(())
    } else {
        Err(HookError::Warnings {
            phase: phase.to_string(),
            errors: warnings,
        })
    }
}

/// Run one hook of `phase` with `state_json` on stdin, honouring its timeout.
pub fn run_hook(hook: &Hook, state_json: &[u8], phase: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let invalid = |reason: &str| HookError::Invalid {
        phase: phase.to_string(),
        path: path.clone(),
        reason: reason.to_string(),
    };
    if !hook.path().is_absolute() {
        return Err(invalid("path must be absolute"));
    }
    let timeout = match hook.timeout() {
        None => None,
        Some(t) if t <= 0 => return Err(invalid(&format!("timeout must be positive, got {t}"))),
        Some(t) => Some(Duration::from_secs(t.unsigned_abs())),
    };
    let spawn_err = |source: std::io::Error| HookError::Spawn {
        phase: phase.to_string(),
        path: path.clone(),
        source,
    };

    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let pid = rustix::process::Pid::from_child(&child);

    let outcome = watch(&mut child, state_json, timeout);
    let (status, stderr) = match outcome {
        Ok(Watched::Exited(stderr)) => {
            let status = child.wait().map_err(spawn_err)?;
            (status, stderr)
        }
        Ok(Watched::TimedOut) => {
            kill_group(pid);
            let _ = child.wait();
            return Err(HookError::TimedOut {
                phase: phase.to_string(),
                path,
                timeout: timeout.unwrap_or_default(),
            });
        }
        Err(e) => {
            kill_group(pid);
            let _ = child.wait();
            return Err(spawn_err(e));
        }
    };
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    };
    Err(HookError::Failed {
        phase: phase.to_string(),
        path,
        status,
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
    })
}

fn kill_group(pgid: rustix::process::Pid) {
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
}

enum Watched {
    /// The hook exited; its stderr excerpt.
    Exited(Vec<u8>),
    TimedOut,
}

/// Feed stdin, collect stderr and wait for the hook's exit (via a pidfd) until the deadline,
/// in one thread: no helper threads, so this also works in a single-threaded container init.
fn watch(
    child: &mut std::process::Child,
    input: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<Watched> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let pid = rustix::process::Pid::from_child(child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    for fd in [
        stdin.as_ref().map(|s| s.as_fd()),
        stderr.as_ref().map(|s| s.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
    }
    // A timeout too large to represent is no timeout.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut written = 0;
    if input.is_empty() {
        stdin = None;
    }
    let mut err_buf = Vec::new();
    loop {
        let wait = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Watched::TimedOut);
                }
                Some(Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
        if let Some(s) = &stdin {
            fds.push(PollFd::new(s, PollFlags::OUT));
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        match poll(&mut fds, wait.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let exited = !fds[0].revents().is_empty();
        let mut i = 1;
        let stdin_ready = stdin.is_some() && {
            let r = !fds[i].revents().is_empty();
            i += 1;
            r
        };
        let stderr_ready = stderr.is_some() && !fds[i].revents().is_empty();
        drop(fds);
        if stdin_ready {
            if let Some(s) = stdin.as_mut() {
                match s.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // EPIPE: the hook does not read its stdin; that is its right.
                    Err(_) => written = input.len(),
                }
            }
            if written >= input.len() {
                stdin = None; // close: the hook sees EOF.
            }
        }
        if stderr_ready || exited {
            if let Some(s) = stderr.as_mut() {
                if drain(s, &mut err_buf) {
                    stderr = None;
                }
            }
        }
        if exited {
            return Ok(Watched::Exited(err_buf));
        }
    }
}

/// Read what is available into `buf` (keeping at most [`STDERR_EXCERPT`] bytes); true at EOF.
fn drain(r: &mut impl Read, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                let room = STDERR_EXCERPT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_phase_and_invalid_hooks_are_rejected() {
        let e = run_hooks(&[], b"{}", "preStart").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let mut h = Hook::default();
        h.set_path("relative/hook".into());
        let e = run_hooks(&[h], b"{}", "prestart").unwrap_err();
        assert!(e.to_string().contains("path must be absolute"), "{e}");
        let mut h = Hook::default();
        h.set_path("/bin/true".into());
        h.set_timeout(Some(0));
        let e = run_hooks(&[h], b"{}", "poststart").unwrap_err();
        assert!(e.to_string().contains("timeout must be positive"), "{e}");
        // A huge timeout is no timeout, not a panic.
        let mut h = Hook::default();
        h.set_path("/bin/busybox".into());
        h.set_args(Some(vec!["true".into()]));
        h.set_timeout(Some(i64::MAX));
        run_hooks(&[h], b"{}", "prestart").expect("runs");
    }
}
