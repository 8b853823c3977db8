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
    /// child -> parent: the seccomp user-notification fd travels with this message
    /// (SCM_RIGHTS); the parent hands it to the filter's listener.
    SeccompFd,
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

    /// Send `m` with `fd` attached (SCM_RIGHTS).
    pub(crate) fn send_with_fd(&self, m: &Msg, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
        let buf = serde_json::to_vec(m).map_err(io::Error::other)?;
        let fds = [fd];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        net::sendmsg(
            self.fd.as_fd(),
            &[io::IoSlice::new(&buf)],
            &mut anc,
            SendFlags::NOSIGNAL,
        )?;
        Ok(())
    }

    /// The next message; `None` on EOF (every peer end closed).
    pub(crate) fn recv(&self) -> io::Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// The next message and the fd sent with it, if any.
    pub(crate) fn recv_with_fd(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        loop {
            let mut anc = RecvAncillaryBuffer::new(&mut space);
            match net::recvmsg(
                self.fd.as_fd(),
                &mut [io::IoSliceMut::new(&mut buf)],
                &mut anc,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) if r.bytes == 0 => return Ok(None),
                Ok(r) => {
                    let mut fd = None;
                    for c in anc.drain() {
                        if let RecvAncillaryMessage::ScmRights(mut fds) = c {
                            fd = fds.next();
                        }
                    }
                    let m = serde_json::from_slice(&buf[..r.bytes]).map_err(io::Error::other)?;
                    return Ok(Some((m, fd)));
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
