//! Process creation and signals: fork, clone3 with `CLONE_PARENT`, kill with any signal number,
//! signal mask/disposition reset, and `sigwaitinfo` for foreground supervisors.
//!
//! All functions that create processes must only be called from a single-threaded process (or
//! accept that the child contains only the calling thread): the child continues with a copy of
//! the address space and must not rely on locks held by other threads.

use std::io;

/// Which side of a fork we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent; holds the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork()` through glibc (so its internal state, e.g. the cached TID, is updated in the child).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the child runs only the
    // calling thread, which berth's callers document and rely on (they are single-threaded).
    let r = unsafe { libc::fork() };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(CLONE_PARENT)` without a new stack (fork semantics): the new process becomes a sibling
/// of the caller, i.e. a child of the caller's parent, with the caller's exit signal.
///
/// Used by the namespace stage so that the container init is a direct child of the runtime
/// process (which can then wait for it) although the init was forked after `unshare(CLONE_NEWPID)`.
/// Falls back to `clone(2)` when clone3 is unavailable (ENOSYS).
pub fn fork_as_sibling() -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags: libc::CLONE_PARENT as u64,
        // must be 0 with CLONE_PARENT: the child inherits the caller's exit signal
        exit_signal: 0,
        ..Default::default()
    };
    // SAFETY: clone3 with stack == 0 behaves like fork: the child continues on a copy-on-write
    // copy of the caller's stack. `args` is a valid, properly sized clone_args struct that lives
    // across the call. The caller is single-threaded (documented precondition of this module).
    let mut r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: raw clone(2) with a NULL stack also has fork semantics; the remaining pointer
        // arguments (parent_tid, child_tid, tls) are NULL/0 and unused without the matching flags.
        r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Terminate the calling process immediately without running atexit handlers or destructors
/// (the correct way to leave a forked child that must not flush the parent's buffers).
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Send signal number `sig` (any number, including real-time signals) to `pid`
/// (negative pid: a process group; see kill(2)).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers and has no memory-safety implications.
    let r = unsafe { libc::kill(pid, sig) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Unblock every signal and reset every signal's disposition to the default (except SIGKILL and
/// SIGSTOP, which cannot be changed). Called before exec'ing a container process so it starts in
/// a standard state (Rust ignores SIGPIPE; callers may have blocked signals).
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler to be unsafe about; invalid numbers
        // (reserved by glibc) fail with EINVAL, which we ignore.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: `set` is a valid sigset_t initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A set of blocked signals, for synchronous handling with [`SignalSet::wait`].
pub struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    /// Every catchable signal except the synchronous fault signals (SIGSEGV, SIGBUS, SIGILL,
    /// SIGFPE, SIGTRAP, SIGSYS), which must keep their default action.
    pub fn forwardable() -> Self {
        // SAFETY: sigfillset/sigdelset operate on a local, valid sigset_t.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut set);
            for s in [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGILL,
                libc::SIGFPE,
                libc::SIGTRAP,
                libc::SIGSYS,
                libc::SIGKILL,
                libc::SIGSTOP,
            ] {
                libc::sigdelset(&mut set, s);
            }
            Self { set }
        }
    }

    /// Block these signals in the calling thread (so they queue for [`SignalSet::wait`]).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: `self.set` is a valid sigset_t; old mask pointer is NULL.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    /// Unblock these signals in the calling thread.
    pub fn unblock(&self) -> io::Result<()> {
        // SAFETY: as in `block`.
        let r =
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    /// A `signalfd` delivering these (blocked) signals, close-on-exec and non-blocking; read it
    /// with [`read_signalfd`].
    pub fn signalfd(&self) -> io::Result<std::os::fd::OwnedFd> {
        // SAFETY: `self.set` is valid; -1 asks for a new fd, which we own from here on.
        let fd = unsafe { libc::signalfd(-1, &self.set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
        Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    /// Wait for one of the (blocked) signals; returns its number. Retries on EINTR.
    pub fn wait(&self) -> io::Result<i32> {
        loop {
            // SAFETY: `self.set` is valid; a NULL siginfo pointer is allowed.
            let r = unsafe { libc::sigwaitinfo(&self.set, std::ptr::null_mut()) };
            if r >= 0 {
                return Ok(r);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }
}

/// Read one pending signal number from a [`SignalSet::signalfd`]; `None` when none is pending.
pub fn read_signalfd(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    loop {
        // SAFETY: `buf` is a writable buffer of exactly the size passed.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n == buf.len() as isize {
            // ssi_signo is the first field (u32, native endian)
            return Ok(Some(
                u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as i32
            ));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ if n >= 0 => return Err(io::Error::other("short read on signalfd")),
            _ => return Err(e),
        }
    }
}

/// Number of the highest real-time signal (SIGRTMAX).
pub fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

/// Number of the lowest real-time signal usable by applications (SIGRTMIN).
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}
