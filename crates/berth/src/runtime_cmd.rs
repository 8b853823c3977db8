//! `berth runtime ...` (also `berth-runc`): runc's command line over berth-runtime.
//!
//! Global flags come before the subcommand, as with runc. Errors go to stderr and, with
//! `--log`, to the log file (`--log-format json`: `{"level":"error","msg":...,"time":...}`);
//! the exit code is 1. `run` in the foreground returns the container's exit status
//! (128 + signal when it was killed) and forwards signals to it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use berth_runtime::oci_spec::runtime::{Process, Spec, User};
use berth_runtime::{CreateOptions, ExecOptions, Runtime, State};
use clap::{Args, Parser, Subcommand};

/// Arguments of `berth runtime`.
#[derive(Args, Debug)]
pub struct RuntimeArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "berth-runc",
    about = "OCI runtime with runc's command line",
    version
)]
struct Cli {
    /// Root directory for storage of container state.
    #[arg(long, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Enable debug logging.
    #[arg(long)]
    debug: bool,
    /// Use the systemd cgroup driver (not supported).
    #[arg(long)]
    systemd_cgroup: bool,
    /// Path to criu (ignored: checkpoint/restore is not supported).
    #[arg(long)]
    criu: Option<String>,
    /// Rootless mode: true, false or auto (accepted; berth runs as root).
    #[arg(long)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug)]
struct CreateFlags {
    /// Path to the bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to receive the pty master on.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass N additional file descriptors to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (waits for `start`).
    Create(CreateFlags),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        c: CreateFlags,
        /// Detach from the container's process.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Output the state of a container.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to the container's init process.
    Kill {
        /// Send to all processes of the container.
        #[arg(long, short = 'a')]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name or number (default SIGTERM).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill the container if it is still running.
        #[arg(long, short = 'f')]
        force: bool,
        /// Container id.
        id: String,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Display only ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Execute a new process inside the container.
    Exec(Box<ExecFlags>),
    /// Display the processes running inside a container.
    Ps {
        /// table or json.
        #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Container id.
        id: String,
        /// Arguments for ps (table mode).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Suspend all processes of a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Resume all processes of a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Display container events and statistics.
    Events {
        /// Display the container's stats once, then exit.
        #[arg(long)]
        stats: bool,
        /// Stats collection interval.
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Container id.
        id: String,
    },
    /// Show the enabled features (JSON).
    Features,
    /// Create a new specification file (config.json).
    Spec {
        /// Path to the bundle directory.
        #[arg(long, short = 'b')]
        bundle: Option<PathBuf>,
        /// Generate a configuration for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Args, Debug)]
struct ExecFlags {
    /// Unix socket to receive the pty master on.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Current working directory in the container.
    #[arg(long)]
    cwd: Option<String>,
    /// Environment variables to set (KEY=value).
    #[arg(long, short = 'e')]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(long, short = 't')]
    tty: bool,
    /// UID[:GID] to run as.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Additional gids.
    #[arg(long, short = 'g')]
    additional_gids: Vec<u32>,
    /// Path to a process.json.
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(long, short = 'd')]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Set the asm process label (ignored).
    #[arg(long)]
    process_label: Option<String>,
    /// Set the apparmor profile (ignored).
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no new privileges.
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability.
    #[arg(long, short = 'c')]
    cap: Vec<String>,
    /// Pass N additional file descriptors.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Ignore paused state (accepted).
    #[arg(long)]
    ignore_paused: bool,
    /// Cgroup to join (accepted, ignored).
    #[arg(long)]
    cgroup: Vec<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Run `berth runtime ...`; returns the exit code.
pub fn run(args: RuntimeArgs) -> anyhow::Result<i32> {
    let mut argv = vec!["berth-runc".to_string()];
    argv.extend(args.args);
    Ok(main_with(argv))
}

/// Entry point when invoked as `berth-runc`.
pub fn main_as_runc() -> i32 {
    main_with(std::env::args().collect())
}

fn main_with(argv: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let log = Logger {
        file: cli.log.clone(),
        json: cli.log_format == "json",
    };
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_writer(std::io::stderr)
            .try_init();
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&format!("{e:#}"));
            1
        }
    }
}

struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    fn error(&self, msg: &str) {
        let time = berth_runtime::timefmt::rfc3339_nanos(std::time::SystemTime::now());
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level=error msg={msg:?}")
        };
        if let Some(f) = &self.file {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        eprintln!("berth-runc: {msg}");
    }
}

fn listen_fds() -> u32 {
    // runc passes LISTEN_FDS through only when LISTEN_PID names this process.
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .is_none_or(|p| p == std::process::id());
    if !pid_ok {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn create_opts(c: &CreateFlags) -> CreateOptions {
    CreateOptions {
        bundle: c.bundle.clone(),
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        listen_fds: listen_fds(),
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        bail!("systemd cgroup driver is not supported");
    }
    let rt = Runtime::new(&cli.root);
    match &cli.cmd {
        Cmd::Create(c) => {
            rt.create(&c.id, &create_opts(c))?;
            Ok(0)
        }
        Cmd::Start { id } => {
            rt.start(id)?;
            Ok(0)
        }
        Cmd::Run { c, detach, keep } => run_container(&rt, c, *detach, *keep),
        Cmd::State { id } => {
            let st = rt.state(id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = berth_runtime::signal::parse_signal(signal)?;
            rt.kill(id, sig, *all)?;
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            match rt.delete(id, *force) {
                Err(berth_runtime::Error::NotFound(_)) if *force => {}
                r => r?,
            }
            Ok(0)
        }
        Cmd::List { format, quiet } => {
            let list = rt.list()?;
            print_list(&list, format, *quiet);
            Ok(0)
        }
        Cmd::Exec(e) => exec(&rt, e),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, id, format, ps_args),
        Cmd::Pause { id } => {
            rt.pause(id)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            rt.resume(id)?;
            Ok(0)
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => events(&rt, id, *stats, interval),
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::features::features())?
            );
            Ok(0)
        }
        Cmd::Spec { bundle, rootless } => {
            let dir = bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                bail!("file {} exists: remove it first", path.display());
            }
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            let v = berth_runtime::features::default_spec(*rootless, uid, gid);
            std::fs::write(&path, serde_json::to_string_pretty(&v)?)
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
    }
}

fn print_list(list: &[State], format: &str, quiet: bool) {
    if quiet {
        for s in list {
            println!("{}", s.id);
        }
        return;
    }
    if format == "json" {
        println!(
            "{}",
            serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
        );
        return;
    }
    let rows: Vec<[String; 6]> = std::iter::once([
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ])
    .chain(list.iter().map(|s| {
        [
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            if s.owner.is_empty() {
                "root".into()
            } else {
                s.owner.clone()
            },
        ]
    }))
    .collect();
    let mut widths = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len() + 3).max(12);
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == 5 {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        println!("{line}");
    }
}

/// Wait for `pid` (a child), forwarding signals to it; returns its exit code.
/// `sigs` must have been blocked before the child was created.
fn supervise(pid: i32, sigs: &berth_sys::process::SignalSet) -> anyhow::Result<i32> {
    use rustix::process::{wait, WaitOptions};
    loop {
        // reap first: the child may have exited before we got here
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((p, st))) => {
                    if p.as_raw_nonzero().get() == pid {
                        return Ok(berth_runtime::exit_code(st));
                    }
                }
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::CHILD) => bail!("process {pid} is not a child of berth"),
                Err(e) => return Err(e).context("waitpid"),
            }
        }
        let sig = sigs.wait().context("sigwaitinfo")?;
        if sig != libc::SIGCHLD {
            let _ = berth_sys::process::kill(pid, sig);
        }
    }
}

fn run_container(rt: &Runtime, c: &CreateFlags, detach: bool, keep: bool) -> anyhow::Result<i32> {
    if detach {
        rt.create(&c.id, &create_opts(c))?;
        if let Err(e) = rt.start(&c.id) {
            let _ = rt.delete(&c.id, true);
            return Err(e.into());
        }
        return Ok(0);
    }
    let sigs = berth_sys::process::SignalSet::forwardable();
    sigs.block().context("block signals")?;
    // Orphans of a container without its own pid namespace come back to us.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut opts = create_opts(c);
    let console = if c.console_socket.is_none() && spec_wants_terminal(&c.bundle) {
        let l = ConsoleListener::new(&c.id)?;
        opts.console_socket = Some(l.path.clone());
        Some(l)
    } else {
        None
    };
    let st = rt.create(&c.id, &opts)?;
    let result = match console {
        Some(l) => l.receive().and_then(|master| {
            rt.start(&c.id)?;
            proxy_tty(master, st.pid, &sigs)
        }),
        None => rt
            .start(&c.id)
            .map_err(anyhow::Error::from)
            .and_then(|()| supervise(st.pid, &sigs)),
    };
    if !keep {
        let _ = rt.delete(&c.id, true);
    }
    result
}

fn parse_user(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .map_err(|_| anyhow!("--user {s:?}: only numeric uid[:gid] is supported"))?;
    let gid = match g {
        Some(g) => Some(
            g.parse()
                .map_err(|_| anyhow!("--user {s:?}: only numeric uid[:gid] is supported"))?,
        ),
        None => None,
    };
    Ok((uid, gid))
}

fn exec_process(spec: &Spec, e: &ExecFlags) -> anyhow::Result<Process> {
    if let Some(path) = &e.process {
        let data =
            std::fs::read(path).with_context(|| format!("read process file {}", path.display()))?;
        let p: Process = serde_json::from_slice(&data)
            .with_context(|| format!("parse process file {}", path.display()))?;
        return Ok(p);
    }
    if e.command.is_empty() {
        bail!("exec: process args cannot be empty");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    p.set_terminal(Some(e.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(e.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    if let Some(u) = &e.user {
        let (uid, gid) = parse_user(u)?;
        let mut user: User = p.user().clone();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
        p.set_user(user);
    }
    if !e.additional_gids.is_empty() {
        let mut user: User = p.user().clone();
        user.set_additional_gids(Some(e.additional_gids.clone()));
        p.set_user(user);
    }
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !e.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &e.cap {
            let cap = c
                .trim_start_matches("CAP_")
                .parse()
                .map_err(|_| anyhow!("unknown capability {c:?}"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    _ => caps.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn exec(rt: &Runtime, e: &ExecFlags) -> anyhow::Result<i32> {
    let spec = rt.spec(&e.id)?;
    let process = exec_process(&spec, e)?;
    let opts = ExecOptions {
        process,
        console_socket: e.console_socket.clone(),
        pid_file: e.pid_file.clone(),
        preserve_fds: e.preserve_fds,
    };
    if e.detach {
        rt.exec(&e.id, &opts)?;
        return Ok(0);
    }
    let sigs = berth_sys::process::SignalSet::forwardable();
    sigs.block().context("block signals")?;
    if e.tty && e.console_socket.is_none() {
        let l = ConsoleListener::new(&e.id)?;
        let mut opts = opts;
        opts.console_socket = Some(l.path.clone());
        let pid = rt.exec(&e.id, &opts)?;
        let master = l.receive()?;
        return proxy_tty(master, pid, &sigs);
    }
    let pid = rt.exec(&e.id, &opts)?;
    supervise(pid, &sigs)
}

fn spec_wants_terminal(bundle: &std::path::Path) -> bool {
    berth_runtime::spec::load(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// A console socket of our own, for a foreground `run`/`exec` with a terminal and no
/// `--console-socket`: the container connects during create (the connection waits in the
/// backlog), we accept it afterwards and receive the pty master.
struct ConsoleListener {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleListener {
    fn new(id: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("berth-console-{}-{id}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("bind console socket {}", path.display()))?;
        Ok(ConsoleListener { path, listener })
    }

    fn receive(&self) -> anyhow::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        let (conn, _) = self
            .listener
            .accept()
            .context("accept console connection")?;
        berth_runtime::console::recv_fd(conn.as_fd()).context("receive pty master")
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Restores the terminal's mode on drop.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enable() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

fn copy_winsize(master: &std::os::fd::OwnedFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Copy our stdin to the pty master and the master to our stdout until `pid` (a child) exits;
/// forward signals to it and follow window size changes. Returns its exit code.
fn proxy_tty(
    master: std::os::fd::OwnedFd,
    pid: i32,
    sigs: &berth_sys::process::SignalSet,
) -> anyhow::Result<i32> {
    use rustix::event::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let sigfd = sigs.signalfd().context("signalfd")?;
    let stdin = std::io::stdin();
    let _raw = if rustix::termios::isatty(&stdin) {
        copy_winsize(&master);
        Some(RawMode::enable())
    } else {
        None
    };
    let mut stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut status = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (sig_ready, master_ready, stdin_ready) = {
            let mut fds = vec![
                PollFd::new(&sigfd, PollFlags::IN),
                PollFd::new(&master, PollFlags::IN),
            ];
            if stdin_open {
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            if !master_open {
                fds[1].clear_revents();
                fds[1] = PollFd::new(&sigfd, PollFlags::IN);
            }
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let r = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
            (r(0), master_open && r(1), stdin_open && r(2))
        };
        if sig_ready {
            while let Some(sig) = berth_sys::process::read_signalfd(sigfd.as_fd())? {
                match sig {
                    libc::SIGCHLD => {
                        while let Ok(Some((p, st))) =
                            rustix::process::wait(rustix::process::WaitOptions::NOHANG)
                        {
                            if p.as_raw_nonzero().get() == pid {
                                status = Some(berth_runtime::exit_code(st));
                            }
                        }
                    }
                    libc::SIGWINCH => copy_winsize(&master),
                    s => {
                        let _ = berth_sys::process::kill(pid, s);
                    }
                }
            }
        }
        if master_ready {
            match rustix::io::read(&master, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => master_open = false,
                Ok(n) => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e).context("read pty"),
            }
        }
        if stdin_ready {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    let mut off = 0;
                    while off < n {
                        match rustix::io::write(&master, &buf[off..n]) {
                            Ok(w) => off += w,
                            Err(rustix::io::Errno::INTR) => {}
                            Err(_) => break,
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if let Some(code) = status {
            if !master_open {
                return Ok(code);
            }
            // drain what the process wrote before exiting, then stop
            let _ = rustix::io::ioctl_fionbio(&master, true);
            loop {
                match rustix::io::read(&master, &mut buf) {
                    Ok(n) if n > 0 => {
                        stdout.write_all(&buf[..n])?;
                    }
                    _ => break,
                }
            }
            stdout.flush()?;
            return Ok(code);
        }
    }
}

fn ps(rt: &Runtime, id: &str, format: &str, ps_args: &[String]) -> anyhow::Result<i32> {
    let pids = rt.pids(id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|s| s.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn parse_interval(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid interval {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid interval {s:?}"),
    };
    if secs <= 0.0 {
        bail!("duration interval must be greater than 0");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn events(rt: &Runtime, id: &str, stats_once: bool, interval: &str) -> anyhow::Result<i32> {
    let interval = parse_interval(interval)?;
    let event = |rt: &Runtime| -> anyhow::Result<String> {
        let data = rt.stats(id)?;
        Ok(serde_json::json!({"type": "stats", "id": id, "data": data}).to_string())
    };
    if stats_once {
        println!("{}", event(rt)?);
        return Ok(0);
    }
    let mut ooms = rt.oom_kill_count(id).unwrap_or(0);
    loop {
        match rt.state(id) {
            Ok(s) if s.status != berth_runtime::Status::Stopped => {}
            _ => return Ok(0),
        }
        if let Ok(n) = rt.oom_kill_count(id) {
            if n > ooms {
                println!("{}", serde_json::json!({"type": "oom", "id": id}));
                ooms = n;
            }
        }
        match event(rt) {
            Ok(line) => println!("{line}"),
            Err(_) => return Ok(0),
        }
        std::thread::sleep(interval);
    }
}
