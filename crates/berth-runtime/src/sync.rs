//! Messages between the runtime process and the container's setup processes, over a
//! `SOCK_SEQPACKET` socketpair (one datagram per message, EOF when every child end is closed).
//!
//! The child end is close-on-exec: a successful `execve` of the container process closes it,
//! which is how the parent learns that an exec succeeded without a message.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use berth_core::ErrorKind;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

/// One message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum Msg {
    /// parent -> child: start (namespaces may be set up now).
    Go,
    /// parent -> child: the child is in the container's cgroup (it may fork the init and
    /// unshare the cgroup namespace). Sent while the child sets up its namespaces, so the slow
    /// cgroup migration (an RCU grace period on cgroup v1) overlaps with that work.
    CgroupDone,
    /// child -> parent: write uid_map/gid_map of this (the sender's) process.
    MapsPlease,
    /// parent -> child: mappings written.
    MapsDone,
    /// child -> parent: host pid of the container process.
    Pid(i32),
    /// child -> parent: run prestart/createRuntime hooks now (namespaces exist, rootfs not yet).
    HooksPlease,
    /// parent -> child: hooks done; carries the state JSON for createContainer hooks.
    HooksDone(String),
    /// child -> parent: setup done; waiting for `start`.
    Ready,
    /// child -> parent: setup failed.
    Error {
        /// What failed, e.g. `mount proc on /proc: permission denied`.
        msg: String,
        /// Its kind, as `ErrorKind`'s debug name.
        kind: String,
    },
}

impl Msg {
    pub(crate) fn error(msg: impl Into<String>, kind: ErrorKind) -> Msg {
        Msg::Error {
            msg: msg.into(),
            kind: format!("{kind:?}"),
        }
    }
}

/// Parse an `ErrorKind` back from its debug name.
pub(crate) fn kind_from_name(s: &str) -> ErrorKind {
    match s {
        "NotFound" => ErrorKind::NotFound,
        "Conflict" => ErrorKind::Conflict,
        "InvalidInput" => ErrorKind::InvalidInput,
        "PermissionDenied" => ErrorKind::PermissionDenied,
        "Unauthorized" => ErrorKind::Unauthorized,
        "Unsupported" => ErrorKind::Unsupported,
        "Corrupt" => ErrorKind::Corrupt,
        _ => ErrorKind::Internal,
    }
}

/// One end of the channel.
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end), both close-on-exec.
pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub(crate) fn send(&self, m: &Msg) -> io::Result<()> {
        let buf = serde_json::to_vec(m).map_err(io::Error::other)?;
        let n = net::send(self.fd.as_fd(), &buf, SendFlags::NOSIGNAL)?;
        if n != buf.len() {
            return Err(io::Error::other("short send on sync socket"));
        }
        Ok(())
    }

    /// The next message; `None` on EOF (every peer end closed).
    pub(crate) fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match net::recv(self.fd.as_fd(), &mut buf, RecvFlags::empty()) {
                Ok((0, _)) => return Ok(None),
                Ok((n, _)) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(io::Error::other)
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
