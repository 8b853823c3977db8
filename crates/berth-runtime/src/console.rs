//! Terminals: a pty pair, making a pty the process's stdio, and passing the master over the
//! `--console-socket` with SCM_RIGHTS (what runc does; the receiver gets the fd and the
//! string "/dev/ptmx" as payload).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Open a new pty pair from the current /dev/ptmx: (master, slave).
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((master, slave))
}

/// Make `fd` the calling process's stdin, stdout and stderr.
pub fn make_stdio(fd: &OwnedFd) -> io::Result<()> {
    rustix::stdio::dup2_stdin(fd)?;
    rustix::stdio::dup2_stdout(fd)?;
    rustix::stdio::dup2_stderr(fd)?;
    Ok(())
}

/// Connect to the console socket at `path` (a unix stream socket).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    Ok(OwnedFd::from(s))
}

/// Send `fd` over the connected unix socket `sock`, with payload "/dev/ptmx".
pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> io::Result<()> {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let payload = b"/dev/ptmx";
    rustix::net::sendmsg(
        sock,
        &[io::IoSlice::new(payload)],
        &mut anc,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`] on `sock` (the console-socket server side).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 256];
    rustix::net::recvmsg(
        sock,
        &mut [io::IoSliceMut::new(&mut buf)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other(
        "no file descriptor received on console socket",
    ))
}
