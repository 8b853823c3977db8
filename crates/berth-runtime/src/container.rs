//! The lifecycle operations: create, start, state, kill, delete, exec, list, wait.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_core::ErrorKind;
use oci_spec::runtime::{Hook, LinuxNamespaceType, Process, Spec};
use rustix::fs::{Mode, OFlags};

use berth_cgroups::{FreezerState, Manager};

use crate::error::{Error, Result};
use crate::init::{self, ChildConfig};
use crate::state::{self, Persisted, Root, State, Status, EXEC_FIFO};
use crate::sync::{self, Msg};

/// OCI runtime spec version berth implements.
pub const OCI_VERSION: &str = "1.2.0";

/// Options of `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Bundle directory (config.json and usually the rootfs).
    pub bundle: PathBuf,
    /// Unix socket to send the pty master to when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not create a new session keyring (berth never creates one; accepted for runc parity).
    pub no_new_keyring: bool,
    /// Number of fds after stdio (and after LISTEN_FDS ones) passed to the container.
    pub preserve_fds: u32,
    /// Number of socket-activation fds (from `LISTEN_FDS`), passed first; the container gets
    /// `LISTEN_FDS=n` and `LISTEN_PID=1`.
    pub listen_fds: u32,
}

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (runc builds it from `--process` or from args + the container's
    /// process).
    pub process: Process,
    /// Console socket when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Where to write the new process's pid.
    pub pid_file: Option<PathBuf>,
    /// Fds after stdio passed to the process.
    pub preserve_fds: u32,
}

/// The runtime: containers kept under one root directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: Root,
}

/// Kills and reaps the children of a failed create/exec, removes a half-made state dir.
struct Cleanup<'a> {
    root: &'a Root,
    id: Option<&'a str>,
    pids: Vec<i32>,
    cgroup: Option<Manager>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for &pid in &self.pids {
            let _ = berth_sys::process::kill(pid, libc::SIGKILL);
        }
        for &pid in &self.pids {
            let _ = reap(pid);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_and_destroy();
        }
        if let Some(id) = self.id {
            let _ = self.root.remove(id);
        }
    }
}

fn reap(pid: i32) -> Option<rustix::process::WaitStatus> {
    let p = rustix::process::Pid::from_raw(pid)?;
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return Some(st),
            Ok(None) => return None,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Exit code of a wait status, shell style (128 + signal when killed).
pub fn exit_code(st: rustix::process::WaitStatus) -> i32 {
    if let Some(c) = st.exit_status() {
        c
    } else if let Some(s) = st.terminating_signal() {
        128 + s
    } else {
        255
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(format!("resolve {}", p.display()), e))
}

fn write_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let render = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.map(|v| {
            v.iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect::<String>()
        })
        .unwrap_or_default()
    };
    let uid = render(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = render(linux.and_then(|l| l.gid_mappings().as_ref()));
    let w = |f: &str, s: &str| {
        let p = format!("/proc/{pid}/{f}");
        std::fs::write(&p, s).map_err(|e| Error::io(format!("write {p}"), e))
    };
    w("uid_map", &uid)?;
    w("gid_map", &gid)?;
    Ok(())
}

fn hooks_of(
    spec: &Spec,
    pick: impl Fn(&oci_spec::runtime::Hooks) -> Option<Vec<Hook>>,
) -> Vec<Hook> {
    spec.hooks().as_ref().and_then(pick).unwrap_or_default()
}

impl Runtime {
    /// A runtime keeping its state under `root` (runc's `--root`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: Root::new(root),
        }
    }

    /// The state root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Create container `id` from a bundle: the init is set up completely and waits for
    /// [`Runtime::start`]. The init becomes a child of the calling process (which must reap it,
    /// or exit so that a subreaper does). Call from a single-threaded process.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<State> {
        state::validate_id(id)?;
        let bundle = absolute(&opts.bundle)?;
        let spec = crate::spec::load(&bundle)?;
        let rootfs = crate::spec::validate(&spec, &bundle)?;
        let process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::Config("process: missing".into()))?;
        let terminal = process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(Error::Invalid(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        if !terminal && opts.console_socket.is_some() {
            return Err(Error::Invalid(
                "cannot use console socket if runc will not detach or allocate tty".into(),
            ));
        }
        let dir = self.root.create_dir(id)?;
        let mut cleanup = Cleanup {
            root: &self.root,
            id: Some(id),
            pids: Vec::new(),
            cgroup: None,
            armed: true,
        };
        let lock = self.root.lock(id)?;
        let fifo_path = dir.join(EXEC_FIFO);
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo_path, Mode::from_raw_mode(0o622))
            .map_err(|e| Error::io(format!("mkfifo {}", fifo_path.display()), e))?;
        let fifo = rustix::fs::open(&fifo_path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(format!("open {}", fifo_path.display()), e))?;
        let console =
            match &opts.console_socket {
                Some(p) => Some(crate::console::connect(p).map_err(|e| {
                    Error::io(format!("connect to console socket {}", p.display()), e)
                })?),
                None => None,
            };
        let (new_ns, join) = init::plan_namespaces(&spec);
        let new_user = new_ns & libc::CLONE_NEWUSER != 0;
        let in_user_ns = new_user || join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER);
        let prestart = hooks_of(&spec, |h| h.prestart().clone());
        let create_runtime = hooks_of(&spec, |h| h.create_runtime().clone());
        let has_create_container = !hooks_of(&spec, |h| h.create_container().clone()).is_empty();
        let has_start_container = !hooks_of(&spec, |h| h.start_container().clone()).is_empty();
        let parent_hooks = !prestart.is_empty()
            || !create_runtime.is_empty()
            || has_create_container
            || has_start_container;
        let mut extra_env = Vec::new();
        if opts.listen_fds > 0 {
            extra_env.push(format!("LISTEN_FDS={}", opts.listen_fds));
            extra_env.push("LISTEN_PID=1".to_string());
        }
        let seccomp = self.compile_seccomp(&spec)?;
        let created = crate::timefmt::rfc3339_nanos(SystemTime::now());
        let annotations = spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let cfg = ChildConfig {
            spec: &spec,
            process: &process,
            bundle: &bundle,
            new_ns,
            join,
            new_user,
            in_user_ns,
            setup_rootfs: true,
            no_pivot: opts.no_pivot,
            exec_fifo: Some(&fifo),
            console_socket: console.as_ref(),
            preserve_fds: opts.preserve_fds + opts.listen_fds,
            extra_env,
            parent_hooks,
            setsid: true,
            seccomp: seccomp.as_ref(),
        };
        let (pchan, cchan) = sync::pair().map_err(|e| Error::io("create sync socket", e))?;
        let spid = match berth_sys::process::fork().map_err(|e| Error::io("fork", e))? {
            berth_sys::process::Forked::Child => {
                // the init must not hold the state lock while it waits for `start`
                drop(lock);
                drop(pchan);
                init::stage_main(&cfg, &cchan)
            }
            berth_sys::process::Forked::Parent(pid) => pid,
        };
        drop(cchan);
        cleanup.pids.push(spid);
        let mut state = State {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            pid: 0,
            status: Status::Creating,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: created.clone(),
            owner: String::new(),
            annotations,
        };
        pchan
            .send(&Msg::Go)
            .map_err(|e| Error::io("sync: send", e))?;
        // the child sets up its namespaces meanwhile
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        let cg = Manager::new(cgroups_path.as_deref(), id)?;
        cleanup.cgroup = Some(cg.clone());
        cg.create()?;
        if let Some(r) = cgroup_resources(&spec) {
            cg.apply(&r)?;
        }
        cg.add_task(spid)?;
        pchan
            .send(&Msg::CgroupDone)
            .map_err(|e| Error::io("sync: send", e))?;
        // The init may report (HooksPlease, Ready, Error) before the stage process has sent
        // its pid: hold those until the pid is known.
        let mut init_pid = 0;
        let mut hooks_pending = false;
        let mut ready = false;
        let mut notify_fd: Option<OwnedFd> = None;
        loop {
            if init_pid != 0 {
                if let Some(fd) = notify_fd.take() {
                    send_notify(seccomp.as_ref(), &fd, init_pid, &state)?;
                }
            }
            if init_pid != 0 && hooks_pending {
                hooks_pending = false;
                let json = serde_json::to_string(&state).unwrap_or_default();
                crate::hooks::run_hooks(&prestart, json.as_bytes(), "prestart")?;
                crate::hooks::run_hooks(&create_runtime, json.as_bytes(), "createRuntime")?;
                pchan
                    .send(&Msg::HooksDone(json))
                    .map_err(|e| Error::io("sync: send", e))?;
            }
            if init_pid != 0 && ready {
                break;
            }
            let (msg, fd) = match pchan
                .recv_with_fd()
                .map_err(|e| Error::io("sync: receive", e))?
            {
                Some((m, fd)) => (Some(m), fd),
                None => (None, None),
            };
            match msg {
                Some(Msg::SeccompFd) => notify_fd = fd,
                Some(Msg::MapsPlease) => {
                    write_maps(spid, &spec)?;
                    pchan
                        .send(&Msg::MapsDone)
                        .map_err(|e| Error::io("sync: send", e))?;
                }
                Some(Msg::Pid(p)) => {
                    init_pid = p;
                    cleanup.pids.push(p);
                    state.pid = p;
                }
                Some(Msg::HooksPlease) => hooks_pending = true,
                Some(Msg::Ready) => ready = true,
                Some(Msg::Error { msg, kind }) => {
                    // collect the init's pid (if any) so the cleanup reaps it
                    drain_pids(&pchan, &mut cleanup.pids);
                    return Err(Error::Init {
                        msg,
                        kind: sync::kind_from_name(&kind),
                    });
                }
                Some(m) => {
                    return Err(Error::Init {
                        msg: format!("sync: unexpected message {m:?}"),
                        kind: ErrorKind::Internal,
                    })
                }
                None => {
                    return Err(Error::Init {
                        msg: "container init exited before reporting its state".into(),
                        kind: ErrorKind::Internal,
                    })
                }
            }
        }
        reap(spid);
        cleanup.pids.retain(|&p| p != spid);
        let start_time = match state::liveness(init_pid) {
            state::Liveness::Alive(t) => t,
            _ => {
                return Err(Error::Init {
                    msg: "container init exited during create".into(),
                    kind: ErrorKind::Internal,
                })
            }
        };
        let persisted = Persisted {
            id: id.into(),
            pid: init_pid,
            pid_start_time: start_time,
            bundle,
            rootfs,
            created,
            spec: spec.clone(),
            cgroup: serde_json::to_value(&cg).ok(),
        };
        self.root.save(&persisted)?;
        if let Some(pf) = &opts.pid_file {
            state::write_atomic(pf, init_pid.to_string().as_bytes())
                .map_err(|e| Error::io(format!("write pid file {}", pf.display()), e))?;
        }
        cleanup.armed = false;
        state.status = Status::Created;
        Ok(state)
    }

    /// Compile the spec's seccomp filter before forking (errors reach the caller directly),
    /// reusing programs cached under `<root>/.seccomp-cache`.
    fn compile_seccomp(&self, spec: &Spec) -> Result<Option<crate::seccomp::CompiledFilter>> {
        let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
            return Ok(None);
        };
        let cache = self.root.path().join(".seccomp-cache");
        crate::seccomp::build_filter_cached(s, &cache)
            .map(Some)
            .map_err(|e| Error::Init {
                msg: format!("linux.seccomp: {e}"),
                kind: e.kind(),
            })
    }

    fn status_of(&self, p: &Persisted) -> Status {
        if !state::init_alive(p) {
            Status::Stopped
        } else if self.root.container_dir(&p.id).join(EXEC_FIFO).exists() {
            Status::Created
        } else if cgroup_of(p).is_some_and(|c| c.state() == FreezerState::Frozen) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    fn to_state(&self, p: &Persisted) -> State {
        let status = self.status_of(p);
        State {
            oci_version: OCI_VERSION.into(),
            id: p.id.clone(),
            pid: if status == Status::Stopped { 0 } else { p.pid },
            status,
            bundle: p.bundle.clone(),
            rootfs: p.rootfs.clone(),
            created: p.created.clone(),
            owner: String::new(),
            annotations: p
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    /// The state of container `id`.
    pub fn state(&self, id: &str) -> Result<State> {
        let p = self.root.load(id)?;
        Ok(self.to_state(&p))
    }

    /// The spec container `id` was created from.
    pub fn spec(&self, id: &str) -> Result<Spec> {
        Ok(self.root.load(id)?.spec)
    }

    /// The states of every container under the root.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        for id in self.root.ids()? {
            if let Ok(p) = self.root.load(&id) {
                out.push(self.to_state(&p));
            }
        }
        Ok(out)
    }

    /// Start the user process of a created container (only once).
    pub fn start(&self, id: &str) -> Result<()> {
        let _lock = self.root.lock(id)?;
        let p = self.root.load(id)?;
        match self.status_of(&p) {
            Status::Created => {}
            Status::Stopped => {
                return Err(Error::State(
                    "cannot start a container that has stopped".into(),
                ))
            }
            _ => {
                return Err(Error::State(
                    "cannot start an already running container".into(),
                ))
            }
        }
        let fifo_path = self.root.container_dir(id).join(EXEC_FIFO);
        let fifo = rustix::fs::open(
            &fifo_path,
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NXIO => {
                Error::State("cannot start a container that has stopped".into())
            }
            e => Error::io(format!("open {}", fifo_path.display()), e),
        })?;
        rustix::io::write(&fifo, &[0u8])
            .map_err(|e| Error::io(format!("write {}", fifo_path.display()), e))?;
        drop(fifo);
        let _ = std::fs::remove_file(&fifo_path);
        let poststart = hooks_of(&p.spec, |h| h.poststart().clone());
        if !poststart.is_empty() {
            let mut st = self.to_state(&p);
            st.status = Status::Running;
            let json = serde_json::to_string(&st).unwrap_or_default();
            if let Err(e) = crate::hooks::run_hooks(&poststart, json.as_bytes(), "poststart") {
                tracing::warn!("poststart hook failed: {e}");
            }
        }
        Ok(())
    }

    /// Send signal `sig` to the container's init (`all`: to every process of the container).
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<()> {
        let p = self.root.load(id)?;
        let status = self.status_of(&p);
        if status == Status::Stopped {
            return Err(Error::State("container not running".into()));
        }
        if all {
            if let Some(cg) = cgroup_of(&p).filter(|c| c.exists()) {
                cg.kill_all(sig)?;
                return Ok(());
            }
            for pid in self.pids_of(&p)? {
                let _ = berth_sys::process::kill(pid, sig);
            }
            return Ok(());
        }
        berth_sys::process::kill(p.pid, sig)
            .map_err(|e| Error::io(format!("kill container {id} (pid {})", p.pid), e))
    }

    /// Host pids of the container's processes: its cgroup's, or without one the init and its
    /// descendants.
    fn pids_of(&self, p: &Persisted) -> Result<Vec<i32>> {
        if let Some(cg) = cgroup_of(p).filter(|c| c.exists()) {
            return Ok(cg.pids()?);
        }
        if !state::init_alive(p) {
            return Ok(Vec::new());
        }
        Ok(descendants(p.pid))
    }

    /// Host pids of the processes of container `id` (`runc ps`).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let p = self.root.load(id)?;
        self.pids_of(&p)
    }

    /// Freeze every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.root.lock(id)?;
        let p = self.root.load(id)?;
        match self.status_of(&p) {
            Status::Running => {}
            Status::Paused => return Err(Error::State("container already paused".into())),
            _ => return Err(Error::State("container not running".into())),
        }
        let cg =
            cgroup_of(&p).ok_or_else(|| Error::Unsupported("container has no cgroup".into()))?;
        cg.freeze()?;
        Ok(())
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.root.lock(id)?;
        let p = self.root.load(id)?;
        if self.status_of(&p) != Status::Paused {
            return Err(Error::State("container not paused".into()));
        }
        let cg =
            cgroup_of(&p).ok_or_else(|| Error::Unsupported("container has no cgroup".into()))?;
        cg.thaw()?;
        Ok(())
    }

    /// Resource usage of container `id` (the `data` of `runc events --stats`).
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats> {
        let p = self.root.load(id)?;
        if self.status_of(&p) == Status::Stopped {
            return Err(Error::State("container not running".into()));
        }
        let cg =
            cgroup_of(&p).ok_or_else(|| Error::Unsupported("container has no cgroup".into()))?;
        Ok(cg.stats()?)
    }

    /// How many processes of container `id` the kernel OOM killer has killed.
    pub fn oom_kill_count(&self, id: &str) -> Result<u64> {
        let p = self.root.load(id)?;
        let cg =
            cgroup_of(&p).ok_or_else(|| Error::Unsupported("container has no cgroup".into()))?;
        Ok(cg.oom_kill_count()?)
    }

    /// Delete container `id`. A stopped or created container is removed; a running one only
    /// with `force` (it is killed first). Runs poststop hooks and removes its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let lock = self.root.lock(id)?;
        let p = match self.root.load(id) {
            Ok(p) => p,
            Err(Error::NotFound(_)) => {
                // a directory without state: an interrupted create
                drop(lock);
                return self.root.remove(id);
            }
            Err(e) => return Err(e),
        };
        match self.status_of(&p) {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait(&p)?,
            s => {
                if !force {
                    return Err(Error::State(format!(
                        "cannot delete container {id} that is not stopped: {s}"
                    )));
                }
                self.kill_and_wait(&p)?;
            }
        }
        if let Some(cg) = cgroup_of(&p) {
            cg.kill_and_destroy()?;
        }
        let poststop = hooks_of(&p.spec, |h| h.poststop().clone());
        if !poststop.is_empty() {
            let mut st = self.to_state(&p);
            st.status = Status::Stopped;
            let json = serde_json::to_string(&st).unwrap_or_default();
            if let Err(e) = crate::hooks::run_hooks(&poststop, json.as_bytes(), "poststop") {
                tracing::warn!("poststop hook failed: {e}");
            }
        }
        self.root.remove(id)
    }

    fn kill_and_wait(&self, p: &Persisted) -> Result<()> {
        if let Some(cg) = cgroup_of(p).filter(|c| c.exists()) {
            if cg.state() != FreezerState::Thawed {
                let _ = cg.thaw();
            }
        }
        let pids = self.pids_of(p)?;
        let _ = berth_sys::process::kill(p.pid, libc::SIGKILL);
        for pid in pids {
            let _ = berth_sys::process::kill(pid, libc::SIGKILL);
        }
        wait_gone(p, Duration::from_secs(10))
    }

    /// Run a new process in the container's namespaces. Returns its host pid; it is a child of
    /// the caller. Call from a single-threaded process.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let p = self.root.load(id)?;
        match self.status_of(&p) {
            Status::Created | Status::Running => {}
            Status::Paused => return Err(Error::State("cannot exec in a paused container".into())),
            _ => return Err(Error::State("cannot exec in a stopped container".into())),
        }
        let terminal = opts.process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(Error::Invalid(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        let console = match &opts.console_socket {
            Some(path) => Some(crate::console::connect(path).map_err(|e| {
                Error::io(format!("connect to console socket {}", path.display()), e)
            })?),
            None => None,
        };
        let seccomp = self.compile_seccomp(&p.spec)?;
        let mut join = Vec::new();
        let nss = p
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut in_user_ns = false;
        for ns in &nss {
            let (flag, name) = match ns.typ() {
                LinuxNamespaceType::User => (libc::CLONE_NEWUSER, "user"),
                LinuxNamespaceType::Mount => (libc::CLONE_NEWNS, "mnt"),
                LinuxNamespaceType::Cgroup => (libc::CLONE_NEWCGROUP, "cgroup"),
                LinuxNamespaceType::Uts => (libc::CLONE_NEWUTS, "uts"),
                LinuxNamespaceType::Ipc => (libc::CLONE_NEWIPC, "ipc"),
                LinuxNamespaceType::Pid => (libc::CLONE_NEWPID, "pid"),
                LinuxNamespaceType::Network => (libc::CLONE_NEWNET, "net"),
                LinuxNamespaceType::Time => (libc::CLONE_NEWTIME, "time"),
            };
            if flag == libc::CLONE_NEWUSER {
                in_user_ns = true;
            }
            join.push((flag, PathBuf::from(format!("/proc/{}/ns/{name}", p.pid))));
        }
        join.sort_by_key(|(f, _)| match *f {
            libc::CLONE_NEWUSER => 0,
            libc::CLONE_NEWNS => 2,
            _ => 1,
        });
        let cfg = ChildConfig {
            spec: &p.spec,
            process: &opts.process,
            bundle: &p.bundle,
            new_ns: 0,
            join,
            new_user: false,
            in_user_ns,
            setup_rootfs: false,
            no_pivot: false,
            exec_fifo: None,
            console_socket: console.as_ref(),
            preserve_fds: opts.preserve_fds,
            extra_env: Vec::new(),
            parent_hooks: false,
            setsid: terminal,
            seccomp: seccomp.as_ref(),
        };
        let (pchan, cchan) = sync::pair().map_err(|e| Error::io("create sync socket", e))?;
        let spid = match berth_sys::process::fork().map_err(|e| Error::io("fork", e))? {
            berth_sys::process::Forked::Child => {
                drop(pchan);
                init::stage_main(&cfg, &cchan)
            }
            berth_sys::process::Forked::Parent(pid) => pid,
        };
        drop(cchan);
        let mut cleanup = Cleanup {
            root: &self.root,
            id: None,
            pids: vec![spid],
            cgroup: None,
            armed: true,
        };
        pchan
            .send(&Msg::Go)
            .map_err(|e| Error::io("sync: send", e))?;
        if let Some(cg) = cgroup_of(&p).filter(|c| c.exists()) {
            cg.add_task(spid)?;
        }
        pchan
            .send(&Msg::CgroupDone)
            .map_err(|e| Error::io("sync: send", e))?;
        let mut pid = 0;
        let mut notify_fd: Option<OwnedFd> = None;
        loop {
            if pid != 0 {
                if let Some(fd) = notify_fd.take() {
                    send_notify(seccomp.as_ref(), &fd, pid, &self.to_state(&p))?;
                }
            }
            let (msg, fd) = match pchan
                .recv_with_fd()
                .map_err(|e| Error::io("sync: receive", e))?
            {
                Some((m, fd)) => (Some(m), fd),
                None => (None, None),
            };
            match msg {
                Some(Msg::SeccompFd) => notify_fd = fd,
                Some(Msg::Pid(x)) => {
                    pid = x;
                    cleanup.pids.push(x);
                }
                Some(Msg::Error { msg, kind }) => {
                    drain_pids(&pchan, &mut cleanup.pids);
                    return Err(Error::Init {
                        msg,
                        kind: sync::kind_from_name(&kind),
                    });
                }
                Some(m) => {
                    return Err(Error::Init {
                        msg: format!("sync: unexpected message {m:?}"),
                        kind: ErrorKind::Internal,
                    })
                }
                None => break,
            }
        }
        reap(spid);
        if pid == 0 {
            return Err(Error::Init {
                msg: "exec: setup process exited before starting the process".into(),
                kind: ErrorKind::Internal,
            });
        }
        if let Some(pf) = &opts.pid_file {
            state::write_atomic(pf, pid.to_string().as_bytes())
                .map_err(|e| Error::io(format!("write pid file {}", pf.display()), e))?;
        }
        cleanup.armed = false;
        Ok(pid)
    }
}

/// The spec's resources with the device rules every container gets (runc's): the spec's rules,
/// then access to each device of `linux.devices`, then the standard devices (null, zero, tty,
/// pts...) and mknod of anything.
fn cgroup_resources(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone()?;
    if let Some(rules) = r.devices().clone() {
        let mut rules = rules;
        for d in linux.devices().as_deref().unwrap_or(&[]) {
            let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(d.typ()));
            rule.set_major(Some(d.major()));
            rule.set_minor(Some(d.minor()));
            rule.set_access(Some("rwm".into()));
            rules.push(rule);
        }
        rules.extend(berth_cgroups::devices::default_allowed());
        r.set_devices(Some(rules));
    }
    Some(r)
}

/// Hand a seccomp user-notification fd to the filter's listener (OCI `listenerPath`).
fn send_notify(
    filter: Option<&crate::seccomp::CompiledFilter>,
    fd: &OwnedFd,
    pid: i32,
    state: &State,
) -> Result<()> {
    let Some(listener) = filter.and_then(|f| f.listener()) else {
        return Ok(());
    };
    let json = serde_json::to_vec(state).unwrap_or_default();
    use std::os::fd::AsFd;
    crate::seccomp::send_notify_fd(listener, fd.as_fd(), pid, &json).map_err(|e| Error::Init {
        msg: format!("seccomp listener: {e}"),
        kind: e.kind(),
    })
}

/// After a setup error: read the remaining messages until every child end is closed (the
/// failing process exits), collecting a `Pid` so that its process gets reaped.
fn drain_pids(chan: &sync::Channel, pids: &mut Vec<i32>) {
    while let Ok(Some(m)) = chan.recv() {
        if let Msg::Pid(p) = m {
            pids.push(p);
        }
    }
}

/// The cgroup manager saved with a container.
fn cgroup_of(p: &Persisted) -> Option<Manager> {
    p.cgroup
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// `pid` and all its descendants (from /proc/*/stat parent links).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
                    if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                        parent_of.push((p, pp));
                    }
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        for &(c, pp) in &parent_of {
            if pp == cur && !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// Wait until the init recorded in `p` has exited (zombie or gone), up to `timeout`.
fn wait_gone(p: &Persisted, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let pidfd: Option<OwnedFd> = rustix::process::Pid::from_raw(p.pid).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    while state::init_alive(p) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::State(format!(
                "container {} did not exit within {timeout:?} of SIGKILL",
                p.id
            )));
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let ts = rustix::event::Timespec {
                    tv_sec: left.as_secs().min(1) as i64,
                    tv_nsec: if left.as_secs() == 0 {
                        left.subsec_nanos() as i64
                    } else {
                        0
                    },
                };
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    Ok(())
}
