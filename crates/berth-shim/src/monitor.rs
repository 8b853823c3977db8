//! The shim process: create the container, then one poll loop until it has exited.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_core::ErrorKind;
use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, WaitOptions};

use crate::logfile;
use crate::protocol::{self, ExitStatus, Reply, Request};
use crate::{ShimConfig, ShimError};

/// How long output may keep flowing after a process exited (grandchildren holding the pipes).
const DRAIN: Duration = Duration::from_secs(2);
/// How long the shim waits for slow clients after the container is gone.
const LINGER: Duration = Duration::from_secs(5);
/// A client that does not read more than this is dropped.
const MAX_PENDING: usize = 8 << 20;
const CHUNK: usize = 32 * 1024;

fn now() -> String {
    berth_runtime::timefmt::rfc3339_nanos(SystemTime::now())
}

fn log(msg: &str) {
    // stderr is DIR/shim.log
    eprintln!("{} {msg}", now());
}

/// The shim after the fork: never returns to the caller's code (the result is an exit code).
pub(crate) fn child_main(cfg: ShimConfig, dir: &Path, ready: OwnedFd) -> i32 {
    let _ = rustix::process::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))
    {
        let _ = rustix::stdio::dup2_stderr(&f);
    }
    match Monitor::setup(cfg, dir) {
        Ok(mut m) => {
            let r = Reply {
                pid: Some(m.ctr.pid),
                status: Some("created".into()),
                ..Reply::ok()
            };
            crate::report(ready, &r);
            m.run();
            0
        }
        Err(e) => {
            log(&format!("create failed: {e}"));
            crate::report(ready, &Reply::err(e.kind, e.message));
            1
        }
    }
}

/// A process whose stdio the shim holds: the container's init or an exec'd process.
struct Proc {
    exec_id: Option<String>,
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// stdout (or the pty master) read end.
    out: Option<OwnedFd>,
    /// stderr read end (none with a pty).
    err: Option<OwnedFd>,
    /// stdin write end (or a dup of the pty master).
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    close_stdin_when_flushed: bool,
    master: Option<OwnedFd>,
    tty: bool,
    started_at: Option<String>,
    exited: Option<(ExitStatus, Instant)>,
    finalized: bool,
}

impl Proc {
    fn streams_done(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ctr,
    Exec(usize),
}

enum Role {
    Pending,
    Attach {
        target: Target,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Waiter,
    /// Answered: close once the output is flushed.
    Done,
}

struct Conn {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    role: Role,
    read_eof: bool,
    close_when_flushed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Listener,
    Conn(usize),
    Out(Target),
    Err(Target),
    Stdin(Target),
    Pidfd,
}

struct Monitor {
    cfg: ShimConfig,
    dir: PathBuf,
    rt: Runtime,
    listener: UnixListener,
    conns: Vec<Option<Conn>>,
    ctr: Proc,
    execs: Vec<Proc>,
    exec_ids: HashMap<String, usize>,
    log: Option<logfile::Writer>,
    status: &'static str,
    final_exit: Option<ExitStatus>,
    finished_at: Option<Instant>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ShimError::io("pipe", e))
}

fn nonblock(fd: &OwnedFd) {
    let _ = rustix::io::ioctl_fionbio(fd, true);
}

/// The stdio a new process gets, and what the shim keeps.
struct Stdio {
    child: [OwnedFd; 3],
    out: OwnedFd,
    err: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
}

fn make_stdio(open_stdin: bool) -> Result<Stdio, ShimError> {
    let (in_r, in_w) = if open_stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let null =
            std::fs::File::open("/dev/null").map_err(|e| ShimError::io("open /dev/null", e))?;
        (OwnedFd::from(null), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok(Stdio {
        child: [in_r, out_w, err_w],
        out: out_r,
        err: Some(err_r),
        stdin: in_w,
    })
}

/// Run `f` with fds 0/1/2 replaced by `child` (berth-runtime hands the caller's stdio to the
/// process it creates), restoring them afterwards.
fn with_stdio<T>(child: &[OwnedFd; 3], f: impl FnOnce() -> T) -> Result<T, ShimError> {
    let save = |fd: BorrowedFd<'_>| {
        rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| ShimError::io("save stdio", e))
    };
    let saved = [
        save(rustix::stdio::stdin())?,
        save(rustix::stdio::stdout())?,
        save(rustix::stdio::stderr())?,
    ];
    let set = |fds: &[OwnedFd; 3]| -> std::io::Result<()> {
        rustix::stdio::dup2_stdin(&fds[0])?;
        rustix::stdio::dup2_stdout(&fds[1])?;
        rustix::stdio::dup2_stderr(&fds[2])?;
        Ok(())
    };
    set(child).map_err(|e| ShimError::io("set stdio", e))?;
    let r = f();
    set(&saved).map_err(|e| ShimError::io("restore stdio", e))?;
    Ok(r)
}

fn rt_err(e: berth_runtime::Error) -> ShimError {
    ShimError {
        kind: e.kind(),
        message: e.to_string(),
    }
}

fn accept_console(l: &UnixListener) -> Result<OwnedFd, ShimError> {
    let (s, _) = l
        .accept()
        .map_err(|e| ShimError::io("accept console socket", e))?;
    let fd = OwnedFd::from(s);
    berth_runtime::console::recv_fd(fd.as_fd()).map_err(|e| ShimError::io("receive pty master", e))
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
}

/// Create a process (the container, or an exec) with the shim's stdio plumbing.
fn spawn_proc(
    tty: bool,
    open_stdin: bool,
    console_name: &str,
    create: impl FnOnce(Option<PathBuf>) -> Result<i32, ShimError>,
) -> Result<Proc, ShimError> {
    let (pid, out, err, stdin, master) = if tty {
        let _ = std::fs::remove_file(console_name);
        let l = UnixListener::bind(console_name)
            .map_err(|e| ShimError::io(format!("bind {console_name}"), e))?;
        let res = create(Some(PathBuf::from(console_name)));
        let _ = std::fs::remove_file(console_name);
        let pid = res?;
        let master = accept_console(&l)?;
        let dup = |fd: &OwnedFd| {
            rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| ShimError::io("dup pty master", e))
        };
        let out = dup(&master)?;
        let stdin = dup(&master)?;
        (pid, Some(out), None, Some(stdin), Some(master))
    } else {
        let s = make_stdio(open_stdin)?;
        let pid = with_stdio(&s.child, || create(None))??;
        drop(s.child);
        (pid, Some(s.out), s.err, s.stdin, None)
    };
    for fd in [&out, &err, &stdin].into_iter().flatten() {
        nonblock(fd);
    }
    Ok(Proc {
        exec_id: None,
        pid,
        pidfd: pidfd(pid),
        out,
        err,
        stdin,
        stdin_buf: Vec::new(),
        close_stdin_when_flushed: false,
        master,
        tty,
        started_at: None,
        exited: None,
        finalized: false,
    })
}

fn exit_code(st: rustix::process::WaitStatus) -> i32 {
    berth_runtime::exit_code(st)
}

impl Monitor {
    fn setup(cfg: ShimConfig, dir: &Path) -> Result<Monitor, ShimError> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| ShimError::io("set child subreaper", e))?;
        std::env::set_current_dir(dir)
            .map_err(|e| ShimError::io(format!("chdir {}", dir.display()), e))?;
        std::fs::write(protocol::PID_NAME, std::process::id().to_string())
            .map_err(|e| ShimError::io("write shim.pid", e))?;
        let _ = std::fs::remove_file(protocol::EXIT_NAME);
        let log = match &cfg.log_path {
            Some(p) => Some(
                logfile::Writer::open(p, cfg.rotation)
                    .map_err(|e| ShimError::io(format!("open log {}", p.display()), e))?,
            ),
            None => None,
        };
        let rt = Runtime::new(&cfg.runtime_root);
        // A leftover of an earlier run of this container (a crashed shim).
        if rt.state(&cfg.id).is_ok() {
            let _ = rt.delete(&cfg.id, true);
        }
        let opts_bundle = cfg.bundle.clone();
        let id = cfg.id.clone();
        let ctr = spawn_proc(cfg.tty, cfg.open_stdin, "console.sock", |console| {
            let opts = CreateOptions {
                bundle: opts_bundle,
                console_socket: console,
                ..Default::default()
            };
            rt.create(&id, &opts).map(|s| s.pid).map_err(rt_err)
        })?;
        if cfg.loopback_up {
            if let Err(e) = crate::netns::loopback_up(ctr.pid) {
                let _ = rt.delete(&cfg.id, true);
                return Err(e);
            }
        }
        let _ = std::fs::remove_file(protocol::SOCKET_NAME);
        let listener = UnixListener::bind(protocol::SOCKET_NAME)
            .map_err(|e| ShimError::io("bind control socket", e));
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = rt.delete(&cfg.id, true);
                return Err(e);
            }
        };
        let _ = listener.set_nonblocking(true);
        Ok(Monitor {
            cfg,
            dir: dir.to_path_buf(),
            rt,
            listener,
            conns: Vec::new(),
            ctr,
            execs: Vec::new(),
            exec_ids: HashMap::new(),
            log,
            status: "created",
            final_exit: None,
            finished_at: None,
        })
    }

    fn proc_mut(&mut self, t: Target) -> &mut Proc {
        match t {
            Target::Ctr => &mut self.ctr,
            Target::Exec(i) => &mut self.execs[i],
        }
    }

    fn run(&mut self) {
        loop {
            if let Some(t) = self.finished_at {
                let live = self.conns.iter().flatten().count();
                if live == 0 || t.elapsed() > LINGER {
                    break;
                }
            }
            let ready = self.poll_once();
            for (slot, flags) in ready {
                self.handle(slot, flags);
            }
            self.reap();
            self.check_exits();
        }
        let _ = std::fs::remove_file(self.dir.join(protocol::SOCKET_NAME));
        log("container exited; shim done");
    }

    fn poll_once(&self) -> Vec<(Slot, PollFlags)> {
        let mut slots: Vec<Slot> = Vec::new();
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        if self.finished_at.is_none() {
            slots.push(Slot::Listener);
            fds.push(PollFd::new(&self.listener, PollFlags::IN));
        }
        for (i, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut f = PollFlags::empty();
            if !c.read_eof {
                f |= PollFlags::IN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::OUT;
            }
            if f.is_empty() {
                // poll reports HUP even for no events: a closed peer would spin the loop
                continue;
            }
            slots.push(Slot::Conn(i));
            fds.push(PollFd::new(&c.sock, f));
        }
        let procs = std::iter::once((Target::Ctr, &self.ctr)).chain(
            self.execs
                .iter()
                .enumerate()
                .map(|(i, p)| (Target::Exec(i), p)),
        );
        for (t, p) in procs {
            if let Some(fd) = &p.out {
                slots.push(Slot::Out(t));
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            if let Some(fd) = &p.err {
                slots.push(Slot::Err(t));
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            if let Some(fd) = &p.stdin {
                if !p.stdin_buf.is_empty() {
                    slots.push(Slot::Stdin(t));
                    fds.push(PollFd::new(fd, PollFlags::OUT));
                }
            }
            if p.exited.is_none() {
                if let Some(fd) = &p.pidfd {
                    slots.push(Slot::Pidfd);
                    fds.push(PollFd::new(fd, PollFlags::IN));
                }
            }
        }
        let draining = self.ctr.exited.is_some()
            || self
                .execs
                .iter()
                .any(|p| p.exited.is_some() && !p.finalized);
        let timeout = if draining || self.finished_at.is_some() {
            rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            }
        } else {
            rustix::event::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            }
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(_) => return Vec::new(),
        }
        fds.iter()
            .zip(slots)
            .filter(|(f, _)| !f.revents().is_empty())
            .map(|(f, s)| (s, f.revents()))
            .collect()
    }

    fn handle(&mut self, slot: Slot, flags: PollFlags) {
        match slot {
            Slot::Listener => self.accept(),
            Slot::Conn(i) => {
                if flags.intersects(PollFlags::OUT) {
                    self.flush_conn(i);
                }
                if flags.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                    self.read_conn(i);
                }
                if flags.intersects(PollFlags::HUP | PollFlags::ERR)
                    && self.conns[i].as_ref().is_some_and(|c| c.read_eof)
                {
                    self.drop_conn(i);
                }
            }
            Slot::Out(t) => self.read_output(t, 1),
            Slot::Err(t) => self.read_output(t, 2),
            Slot::Stdin(t) => self.flush_stdin(t),
            Slot::Pidfd => {} // reaped below
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(true);
                    let c = Conn {
                        sock: s,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        role: Role::Pending,
                        read_eof: false,
                        close_when_flushed: false,
                    };
                    match self.conns.iter().position(Option::is_none) {
                        Some(i) => self.conns[i] = Some(c),
                        None => self.conns.push(Some(c)),
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn drop_conn(&mut self, i: usize) {
        self.conns[i] = None;
    }

    fn flush_conn(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        while !c.out.is_empty() {
            match (&c.sock).write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_conn(i);
                    return;
                }
            }
        }
        if c.out.is_empty() && c.close_when_flushed {
            self.drop_conn(i);
        }
    }

    fn send(&mut self, i: usize, data: &[u8]) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        if c.out.len() + data.len() > MAX_PENDING {
            log("dropping a client that does not read");
            self.drop_conn(i);
            return;
        }
        c.out.extend_from_slice(data);
        self.flush_conn(i);
    }

    fn send_reply(&mut self, i: usize, r: &Reply) {
        let mut b = serde_json::to_vec(r).unwrap_or_default();
        b.push(b'\n');
        self.send(i, &b);
    }

    fn close_after(&mut self, i: usize) {
        if let Some(c) = self.conns[i].as_mut() {
            c.close_when_flushed = true;
            c.role = Role::Done;
        }
        self.flush_conn(i);
    }

    fn read_conn(&mut self, i: usize) {
        let mut buf = [0u8; CHUNK];
        loop {
            let Some(c) = self.conns[i].as_mut() else {
                return;
            };
            if c.read_eof {
                return;
            }
            match (&c.sock).read(&mut buf) {
                Ok(0) => {
                    c.read_eof = true;
                    self.client_eof(i);
                    return;
                }
                Ok(n) => self.client_data(i, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_conn(i);
                    return;
                }
            }
        }
    }

    fn client_data(&mut self, i: usize, data: &[u8]) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        match c.role {
            Role::Pending => {
                c.inbuf.extend_from_slice(data);
                if let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                    let rest = std::mem::take(&mut c.inbuf);
                    match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => self.request(i, req),
                        Err(e) => {
                            self.send_reply(
                                i,
                                &Reply::err(ErrorKind::InvalidInput, format!("bad request: {e}")),
                            );
                            self.close_after(i);
                        }
                    }
                    if !rest.is_empty() {
                        self.client_data(i, &rest);
                    }
                } else if c.inbuf.len() > 1 << 20 {
                    self.drop_conn(i);
                }
            }
            Role::Attach {
                target,
                stdin: true,
                ..
            } => {
                let p = self.proc_mut(target);
                if p.stdin.is_some() {
                    p.stdin_buf.extend_from_slice(data);
                    self.flush_stdin(target);
                }
            }
            _ => {}
        }
    }

    fn client_eof(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_ref() else {
            return;
        };
        match c.role {
            Role::Attach {
                target,
                stdin: true,
                ..
            } => {
                let once = match target {
                    Target::Ctr => self.cfg.stdin_once,
                    Target::Exec(_) => true,
                };
                let p = self.proc_mut(target);
                if once && !p.tty {
                    p.close_stdin_when_flushed = true;
                    self.flush_stdin(target);
                }
            }
            Role::Pending => self.drop_conn(i),
            _ => {}
        }
    }

    fn flush_stdin(&mut self, t: Target) {
        let p = self.proc_mut(t);
        if let Some(fd) = &p.stdin {
            while !p.stdin_buf.is_empty() {
                match rustix::io::write(fd, &p.stdin_buf) {
                    Ok(n) => {
                        p.stdin_buf.drain(..n);
                    }
                    Err(rustix::io::Errno::AGAIN) => return,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => {
                        p.stdin_buf.clear();
                        p.stdin = None;
                        return;
                    }
                }
            }
            if p.close_stdin_when_flushed {
                p.stdin = None;
            }
        }
    }

    fn read_output(&mut self, t: Target, stream: u8) {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let p = self.proc_mut(t);
            let fd = if stream == 1 { &p.out } else { &p.err };
            let Some(fd) = fd else { return };
            match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => {
                    // EIO: the pty's last slave fd closed
                    if stream == 1 {
                        p.out = None;
                    } else {
                        p.err = None;
                    }
                    return;
                }
                Ok(n) => {
                    let stream = if p.tty { 1 } else { stream };
                    self.output(t, stream, &buf[..n]);
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log(&format!("read output: {e}"));
                    let p = self.proc_mut(t);
                    if stream == 1 {
                        p.out = None;
                    } else {
                        p.err = None;
                    }
                    return;
                }
            }
        }
    }

    fn output(&mut self, t: Target, stream: u8, data: &[u8]) {
        if t == Target::Ctr {
            if let Some(l) = self.log.as_mut() {
                if let Err(e) = l.write(stream, data) {
                    log(&format!("write log: {e}"));
                }
            }
        }
        let frame = protocol::frame(stream, data);
        for i in 0..self.conns.len() {
            let wants = match self.conns[i].as_ref().map(|c| &c.role) {
                Some(Role::Attach {
                    target,
                    stdout,
                    stderr,
                    ..
                }) => *target == t && ((stream == 1 && *stdout) || (stream == 2 && *stderr)),
                _ => false,
            };
            if wants {
                self.send(i, &frame);
            }
        }
    }

    fn request(&mut self, i: usize, req: Request) {
        match req {
            Request::Start => {
                let r = self.start();
                self.send_reply(i, &r);
                self.close_after(i);
            }
            Request::State => {
                let r = Reply {
                    status: Some(self.status.into()),
                    pid: Some(self.ctr.pid),
                    started_at: self.ctr.started_at.clone(),
                    exit: self.ctr.exited.as_ref().map(|e| e.0.clone()),
                    ..Reply::ok()
                };
                self.send_reply(i, &r);
                self.close_after(i);
            }
            Request::Wait => {
                if let Some(e) = self.final_exit.clone() {
                    self.send_reply(i, &Reply::ok());
                    self.send_reply(
                        i,
                        &Reply {
                            exit: Some(e),
                            ..Reply::ok()
                        },
                    );
                    self.close_after(i);
                } else {
                    self.send_reply(i, &Reply::ok());
                    if let Some(c) = self.conns[i].as_mut() {
                        c.role = Role::Waiter;
                    }
                }
            }
            Request::Kill { signal, all } => {
                let r = if self.ctr.exited.is_some() {
                    Reply::err(
                        ErrorKind::Conflict,
                        format!("container {} is not running", self.cfg.id),
                    )
                } else {
                    match self.rt.kill(&self.cfg.id, signal, all) {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::err(e.kind(), e.to_string()),
                    }
                };
                self.send_reply(i, &r);
                self.close_after(i);
            }
            Request::Resize {
                exec,
                height,
                width,
            } => {
                let p = match exec {
                    None => Some(&self.ctr),
                    Some(id) => self.exec_ids.get(&id).map(|&x| &self.execs[x]),
                };
                let r = match p.and_then(|p| p.master.as_ref().map(|m| (m, p.exited.is_some()))) {
                    None => Reply::err(ErrorKind::Conflict, "no terminal to resize"),
                    Some((_, true)) => {
                        Reply::err(ErrorKind::Conflict, "cannot resize a stopped container")
                    }
                    Some((m, false)) => {
                        let ws = rustix::termios::Winsize {
                            ws_row: height,
                            ws_col: width,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        match rustix::termios::tcsetwinsize(m, ws) {
                            Ok(()) => Reply::ok(),
                            Err(e) => Reply::err(ErrorKind::Internal, format!("resize tty: {e}")),
                        }
                    }
                };
                self.send_reply(i, &r);
                self.close_after(i);
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                self.send_reply(i, &Reply::ok());
                if self.ctr.finalized || (self.ctr.exited.is_some() && self.ctr.streams_done()) {
                    self.close_after(i);
                } else if let Some(c) = self.conns[i].as_mut() {
                    c.role = Role::Attach {
                        target: Target::Ctr,
                        stdin,
                        stdout,
                        stderr,
                    };
                }
            }
            Request::Exec {
                id,
                process,
                stdin,
                stdout,
                stderr,
            } => match self.exec(&id, process, stdin) {
                Ok(idx) => {
                    let pid = self.execs[idx].pid;
                    self.send_reply(
                        i,
                        &Reply {
                            pid: Some(pid),
                            status: Some("running".into()),
                            ..Reply::ok()
                        },
                    );
                    if let Some(c) = self.conns[i].as_mut() {
                        c.role = Role::Attach {
                            target: Target::Exec(idx),
                            stdin,
                            stdout,
                            stderr,
                        };
                    }
                }
                Err(e) => {
                    self.send_reply(i, &Reply::err(e.kind, e.message));
                    self.close_after(i);
                }
            },
            Request::ExecState { id } => {
                let r = match self.exec_ids.get(&id) {
                    None => Reply::err(ErrorKind::NotFound, format!("no such exec: {id}")),
                    Some(&x) => {
                        let p = &self.execs[x];
                        Reply {
                            status: Some(
                                if p.exited.is_some() {
                                    "exited"
                                } else {
                                    "running"
                                }
                                .into(),
                            ),
                            pid: Some(p.pid),
                            exit: p.exited.as_ref().map(|e| e.0.clone()),
                            ..Reply::ok()
                        }
                    }
                };
                self.send_reply(i, &r);
                self.close_after(i);
            }
            Request::CloseStdin => {
                self.ctr.close_stdin_when_flushed = true;
                self.flush_stdin(Target::Ctr);
                self.send_reply(i, &Reply::ok());
                self.close_after(i);
            }
        }
    }

    fn start(&mut self) -> Reply {
        if self.status != "created" {
            return Reply::err(
                ErrorKind::Conflict,
                format!("container {} is {}", self.cfg.id, self.status),
            );
        }
        match self.rt.start(&self.cfg.id) {
            Ok(()) => {
                self.status = "running";
                self.ctr.started_at = Some(now());
                Reply {
                    pid: Some(self.ctr.pid),
                    started_at: self.ctr.started_at.clone(),
                    status: Some("running".into()),
                    ..Reply::ok()
                }
            }
            Err(e) => Reply::err(e.kind(), e.to_string()),
        }
    }

    fn exec(
        &mut self,
        id: &str,
        process: serde_json::Value,
        open_stdin: bool,
    ) -> Result<usize, ShimError> {
        if self.status != "running" || self.ctr.exited.is_some() {
            return Err(ShimError {
                kind: ErrorKind::Conflict,
                message: format!("container {} is not running", self.cfg.id),
            });
        }
        if self.exec_ids.contains_key(id) {
            return Err(ShimError {
                kind: ErrorKind::Conflict,
                message: format!("exec {id} already started"),
            });
        }
        let process: berth_runtime::oci_spec::runtime::Process = serde_json::from_value(process)
            .map_err(|e| ShimError {
                kind: ErrorKind::InvalidInput,
                message: format!("exec process: {e}"),
            })?;
        let tty = process.terminal().unwrap_or(false);
        let n = self.execs.len();
        let rt = &self.rt;
        let cid = self.cfg.id.clone();
        let mut p = spawn_proc(tty, open_stdin, &format!("exec{n}.sock"), |console| {
            let opts = ExecOptions {
                process,
                console_socket: console,
                pid_file: None,
                preserve_fds: 0,
            };
            rt.exec(&cid, &opts).map_err(rt_err)
        })?;
        p.exec_id = Some(id.to_string());
        p.started_at = Some(now());
        self.execs.push(p);
        self.exec_ids.insert(id.to_string(), n);
        Ok(n)
    }

    /// Reap every exited child; record the container's and execs' statuses.
    fn reap(&mut self) {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, st))) => {
                    let pid = pid.as_raw_nonzero().get();
                    let code = exit_code(st);
                    let es = ExitStatus {
                        exit_code: code,
                        finished_at: now(),
                        oom_killed: false,
                    };
                    if pid == self.ctr.pid && self.ctr.exited.is_none() {
                        self.ctr.exited = Some((es, Instant::now()));
                        self.ctr.stdin = None;
                    } else if let Some(p) = self
                        .execs
                        .iter_mut()
                        .find(|p| p.pid == pid && p.exited.is_none())
                    {
                        p.exited = Some((es, Instant::now()));
                        p.stdin = None;
                    }
                }
                Ok(None) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }

    fn check_exits(&mut self) {
        for x in 0..self.execs.len() {
            let p = &mut self.execs[x];
            let Some((es, at)) = p.exited.clone() else {
                continue;
            };
            if p.finalized || !(p.streams_done() || at.elapsed() > DRAIN) {
                continue;
            }
            p.finalized = true;
            p.out = None;
            p.err = None;
            p.master = None;
            let payload = serde_json::to_vec(&es).unwrap_or_default();
            let frame = protocol::frame(protocol::STREAM_EXIT, &payload);
            for i in 0..self.conns.len() {
                if matches!(self.conns[i].as_ref().map(|c| &c.role), Some(Role::Attach { target: Target::Exec(t), .. }) if *t == x)
                {
                    self.send(i, &frame);
                    self.close_after(i);
                }
            }
        }
        let Some((es, at)) = self.ctr.exited.clone() else {
            return;
        };
        if self.ctr.finalized || !(self.ctr.streams_done() || at.elapsed() > DRAIN) {
            return;
        }
        self.ctr.finalized = true;
        self.ctr.out = None;
        self.ctr.err = None;
        self.ctr.master = None;
        self.status = "exited";
        if let Some(l) = self.log.as_mut() {
            let _ = l.flush_partial();
        }
        let oom = self
            .rt
            .oom_kill_count(&self.cfg.id)
            .map(|n| n > 0)
            .unwrap_or(false);
        let es = ExitStatus {
            oom_killed: oom,
            ..es
        };
        if let Err(e) = crate::write_json_atomic(&self.dir.join(protocol::EXIT_NAME), &es) {
            log(&format!("write exit status: {e}"));
        }
        self.final_exit = Some(es.clone());
        self.finished_at = Some(Instant::now());
        let line = {
            let mut b = serde_json::to_vec(&Reply {
                exit: Some(es),
                ..Reply::ok()
            })
            .unwrap_or_default();
            b.push(b'\n');
            b
        };
        for i in 0..self.conns.len() {
            let role = self.conns[i].as_ref().map(|c| match c.role {
                Role::Waiter => 1,
                Role::Attach {
                    target: Target::Ctr,
                    ..
                } => 2,
                Role::Pending => 3,
                _ => 0,
            });
            match role {
                Some(1) => {
                    self.send(i, &line);
                    self.close_after(i);
                }
                Some(2) | Some(3) => self.close_after(i),
                _ => {}
            }
        }
        let _ = self.ctr.pidfd.take();
        // after the waiters have their answer: the cgroup removal can take an RCU grace period
        if let Err(e) = self.rt.delete(&self.cfg.id, true) {
            log(&format!("delete runtime state: {e}"));
        }
    }
}
