//! berth-shim: the per-container monitor behind `berth shim <state-dir>`.
//!
//! ```text
//! daemon --spawn--> berth shim DIR (intermediate) --fork--> shim (setsid, subreaper)
//!                     waits for one ready line            Runtime::create in-process
//!                     prints it, exits 0/1                binds DIR/sock, reports ready
//!                                                         poll loop until the container exits
//! ```
//!
//! The daemon writes `DIR/shim.json` ([`ShimConfig`]) and runs `berth shim DIR`. The
//! intermediate process forks the shim, waits for its ready line (a [`protocol::Reply`] with
//! the init's pid, or the create error) and prints it on stdout, so the daemon learns the outcome
//! of `create` synchronously and the shim is re-parented to the daemon (a subreaper) or to init,
//! surviving the daemon's exit.
//!
//! The shim is single-threaded (it forks through berth-runtime) and small: one `poll(2)` loop
//! over the control socket, the clients, the container's pipes (or pty master), pidfds of the
//! init and exec'd processes, with a 1 s tick that also reaps orphans (the shim is a child
//! subreaper). It
//! - keeps the container's stdio: output goes to the json-file log ([`logfile`]) and to every
//!   attached client; stdin comes from attached clients;
//! - runs exec'd processes with their own pipes or pty and reports their exit status;
//! - on the init's exit: drains the output, reads the cgroup's OOM-kill count, deletes the
//!   runtime state (cgroup), writes `DIR/exit.json` atomically, answers waiters, closes the
//!   streams and exits. The exit file outlives it: a daemon that was down reads it at start-up.
//!
//! The control protocol is in [`protocol`].
#![forbid(unsafe_code)]

pub mod logfile;
mod monitor;
mod netns;
pub mod protocol;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use protocol::{ExitStatus, Reply, Request};

/// What the daemon writes to `DIR/shim.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The container id (also the runtime id).
    pub id: String,
    /// The OCI bundle (config.json; the rootfs already mounted).
    pub bundle: PathBuf,
    /// berth-runtime's state root.
    pub runtime_root: PathBuf,
    /// The json-file log (none: output is only streamed).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// Log rotation.
    #[serde(default)]
    pub rotation: logfile::Rotation,
    /// Give the container a pty.
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's stdin open for attach (`OpenStdin`); otherwise it is /dev/null.
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when an attached client's stdin ends (`StdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Bring the loopback device up in the container's (new) network namespace after create.
    #[serde(default)]
    pub loopback_up: bool,
}

/// Errors of the launcher.
#[derive(Debug)]
pub struct ShimError {
    /// The kind.
    pub kind: berth_core::ErrorKind,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShimError {}

impl ShimError {
    /// The error's class.
    pub fn kind(&self) -> berth_core::ErrorKind {
        self.kind
    }

    pub(crate) fn io(ctx: impl std::fmt::Display, e: impl Into<std::io::Error>) -> Self {
        let e = e.into();
        ShimError {
            kind: berth_core::ErrorKind::from_io(&e),
            message: format!("{ctx}: {e}"),
        }
    }
}

/// Read `DIR/shim.json`.
pub fn read_config(dir: &Path) -> Result<ShimConfig, ShimError> {
    let p = dir.join(protocol::CONFIG_NAME);
    let b = std::fs::read(&p).map_err(|e| ShimError::io(format!("read {}", p.display()), e))?;
    serde_json::from_slice(&b).map_err(|e| ShimError {
        kind: berth_core::ErrorKind::InvalidInput,
        message: format!("parse {}: {e}", p.display()),
    })
}

/// Write `v` as JSON to `path` atomically (temp file + rename). No fsync: these files live
/// under the exec root (tmpfs in production) and only have to survive process crashes; after a
/// power loss every container is gone anyway.
pub fn write_json_atomic<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(v).map_err(std::io::Error::other)?)?;
    }
    std::fs::rename(&tmp, path)
}

/// Read `DIR/exit.json` if the container has exited.
pub fn read_exit(dir: &Path) -> Option<ExitStatus> {
    let b = std::fs::read(dir.join(protocol::EXIT_NAME)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// `berth shim DIR`: fork the monitor, wait for its ready line, print it on stdout. Returns
/// the process exit code (0 when the container was created). Call from a single-threaded
/// process.
pub fn main(dir: &Path) -> i32 {
    let reply = match launch(dir) {
        Ok(r) => r,
        Err(e) => Reply::err(e.kind, e.message),
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into())
    );
    let _ = out.flush();
    if reply.ok {
        0
    } else {
        1
    }
}

fn launch(dir: &Path) -> Result<Reply, ShimError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| ShimError::io(format!("resolve {}", dir.display()), e))?;
    let cfg = read_config(&dir)?;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ShimError::io("create ready pipe", e))?;
    match berth_sys::process::fork().map_err(|e| ShimError::io("fork shim", e))? {
        berth_sys::process::Forked::Child => {
            drop(r);
            let code = monitor::child_main(cfg, &dir, w);
            std::process::exit(code)
        }
        berth_sys::process::Forked::Parent(_) => {
            drop(w);
            // One line, not to EOF: the container's init inherits the write end until it execs.
            let mut f = std::fs::File::from(r);
            let mut buf = Vec::new();
            let mut b = [0u8; 1];
            while buf.len() < 1 << 20 {
                match f.read(&mut b) {
                    Ok(0) => break,
                    Ok(_) if b[0] == b'\n' => break,
                    Ok(_) => buf.push(b[0]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let s = String::from_utf8_lossy(&buf);
            let line = s.trim();
            if line.is_empty() {
                return Err(ShimError {
                    kind: berth_core::ErrorKind::Internal,
                    message: format!(
                        "shim for {} exited before reporting (see {})",
                        cfg.id,
                        dir.join("shim.log").display()
                    ),
                });
            }
            serde_json::from_str(line).map_err(|e| ShimError {
                kind: berth_core::ErrorKind::Internal,
                message: format!("shim ready line {line:?}: {e}"),
            })
        }
    }
}

/// Send the ready line (consumes the pipe).
pub(crate) fn report(w: OwnedFd, r: &Reply) {
    let mut f = std::fs::File::from(w);
    let _ = writeln!(
        f,
        "{}",
        serde_json::to_string(r).unwrap_or_else(|_| "{}".into())
    );
}
