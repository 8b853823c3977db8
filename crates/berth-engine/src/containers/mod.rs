//! Containers: records in `engine.db`, bundles, one `berth shim` per running container, and
//! live restore.
//!
//! # Layout
//! - `<data-root>/containers/<id>/`: the bundle (`config.json`, `rootfs/` — the overlay
//!   snapshot mounted while the container runs), `hostname`, `hosts`, `resolv.conf`
//!   (bind-mounted into the container) and the json-file log `<id>-json.log`.
//! - `<exec-root>/c/<id>/`: the shim's state directory (`shim.json`, the control socket `sock`,
//!   `exit.json`, `shim.log`); `<exec-root>/runtime/`: berth-runtime's state root.
//!
//! # Lifecycle
//! `create` resolves the image, prepares a snapshot on its top chain id (held in berth.db by a
//! `container` holder, so GC and `rmi` respect it) and stores the record. `start` mounts the
//! rootfs, writes config.json ([`spec::build_spec`]), spawns `berth shim` (which creates the
//! container in-process and reports the init's pid or the create error), connects attach
//! streams that were waiting for the start, then asks the shim to start the process. A monitor
//! task keeps a `wait` connection to the shim; when the container exits it records the status,
//! publishes `die`, unmounts, and applies `--rm` or the restart policy.
//!
//! # Live restore
//! Shims are not children of the daemon's lifetime: when the daemon stops (or is killed) they
//! keep running. At start-up the manager asks each running container's shim for its state and
//! re-attaches a monitor; a shim that is gone left `exit.json`, which is recorded as the exit.
//!
//! # Networking gap
//! Until the networking issue lands, `NetworkMode` `host` shares the host's network namespace;
//! every other mode (`none`, `default`, `bridge`, user networks) gets a private network namespace
//! with only the loopback device, up (the shim brings it up). Bridge networking, published ports
//! and DNS for user networks come with the networking issue.

pub mod archive;
pub mod shim;
pub mod spec;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_core::ErrorKind;
use berth_shim::protocol::{ExitStatus, Request};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::events::Event;
use crate::{ContainerCounts, ContainerQueries, EngineError, Services};
use shim::ShimClient;
use types::{ContainerConfig, ContainerState, CreateBody, ExecConfig, HostConfig, MountPoint};

/// The zero time Docker prints for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (nanoseconds) of `ns`, or [`ZERO_TIME`] for 0.
pub fn fmt_time(ns: i64) -> String {
    if ns <= 0 {
        ZERO_TIME.to_string()
    } else {
        berth_runtime::timefmt::rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns as u64))
    }
}

/// Parse RFC 3339 with optional fraction into nanoseconds (None for the zero time / garbage).
pub fn parse_time(s: &str) -> Option<i64> {
    let secs = berth_image::timefmt::parse_rfc3339(s)?;
    if secs <= 0 {
        return None;
    }
    let frac = s
        .find('.')
        .map(|i| {
            let digits: String = s[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let mut d = digits;
            d.truncate(9);
            while d.len() < 9 {
                d.push('0');
            }
            d.parse::<i64>().unwrap_or(0)
        })
        .unwrap_or(0);
    Some(secs * 1_000_000_000 + frac)
}

/// What is persisted for a container (one JSON document per row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created_ns: i64,
    /// The image as the user named it.
    pub image: String,
    /// `sha256:...`.
    pub image_id: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: ContainerState,
    pub started_ns: i64,
    pub finished_ns: i64,
    pub restart_count: i64,
    pub mounts: Vec<MountPoint>,
    /// Snapshot key of the rootfs.
    pub snapshot: String,
    /// Stopped by the user (restart policies do not restart it).
    pub manually_stopped: bool,
    /// Exits so far (wait `next-exit`).
    #[serde(default)]
    pub exits: u64,
}

/// What waiters watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gen {
    pub exits: u64,
    pub running: bool,
    pub removed: bool,
    pub exit_code: i64,
}

/// A container: its record and its watchers.
#[derive(Debug)]
pub struct Ctr {
    pub id: String,
    rec: Mutex<Record>,
    watch: watch::Sender<Gen>,
    /// Serialises start/stop/remove.
    op: tokio::sync::Mutex<()>,
    /// Attach streams waiting for the start.
    pending: Mutex<Pending>,
}

/// Attach streams waiting for the next start, and whether the shim takes attaches now.
#[derive(Debug, Default)]
struct Pending {
    /// The shim of the current run has taken the waiting streams (new attaches go to it).
    started: bool,
    list: Vec<PendingAttach>,
}

/// An attach request made before the container started.
pub struct PendingAttach {
    pub req: Request,
    pub tx: tokio::sync::oneshot::Sender<shim::ShimStream>,
}

impl std::fmt::Debug for PendingAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingAttach")
    }
}

impl Ctr {
    /// A copy of the record.
    pub fn record(&self) -> Record {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r)
    }

    /// Subscribe to state changes.
    pub fn subscribe(&self) -> watch::Receiver<Gen> {
        self.watch.subscribe()
    }

    fn notify(&self) {
        let r = self.record();
        self.watch.send_modify(|g| {
            g.exits = r.exits;
            g.running = r.state.running;
            g.exit_code = r.state.exit_code;
        });
    }

    /// Whether the container's process runs (or is paused).
    pub fn is_running(&self) -> bool {
        self.rec
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state
            .running
    }
}

/// An attach stream being set up.
pub enum AttachWait {
    /// Connected to the running container's shim.
    Ready(shim::ShimStream),
    /// Waiting for the next start.
    Pending(tokio::sync::oneshot::Receiver<shim::ShimStream>),
    /// The container's run ended: no stream.
    Ended,
}

impl AttachWait {
    /// The stream, once there is one.
    pub async fn stream(self) -> Option<shim::ShimStream> {
        match self {
            AttachWait::Ready(s) => Some(s),
            AttachWait::Pending(rx) => rx.await.ok(),
            AttachWait::Ended => None,
        }
    }
}

/// An exec instance.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container: String,
    pub config: ExecConfig,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

struct Inner {
    svc: Services,
    ctrs: Mutex<HashMap<String, Arc<Ctr>>>,
    execs: Mutex<HashMap<String, ExecRecord>>,
    /// Held while a name is chosen and its container inserted.
    names: Mutex<()>,
    shim_bin: PathBuf,
}

/// The containers half of the engine.
#[derive(Clone)]
pub struct ContainerManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ContainerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContainerManager")
    }
}

/// The binary that runs `berth shim`: `$BERTH_SHIM_BINARY`, else this process's executable
/// when it is `berth`, else a `berth` next to it or one directory up (an engine embedded in a
/// test binary under `target/debug/deps/` finds `target/debug/berth`).
pub fn shim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_SHIM_BINARY") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "berth") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    [dir.join("berth"), dir.parent()?.join("berth")]
        .into_iter()
        .find(|p| p.is_file())
        .or(Some(exe))
}

/// `--device /dev/x[:/dev/y[:rwm]]`: the host nodes' numbers (directories are not expanded).
fn host_devices(h: &HostConfig) -> Result<Vec<spec::DeviceNode>, EngineError> {
    use rustix::fs::FileType;
    let mut out = Vec::new();
    for d in &h.devices {
        let st = rustix::fs::stat(d.path_on_host.as_str()).map_err(|e| {
            EngineError::invalid(format!(
                "error gathering device information while adding custom device {:?}: {e}",
                d.path_on_host
            ))
        })?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice => 'c',
            FileType::BlockDevice => 'b',
            _ => {
                return Err(EngineError::invalid(format!(
                    "{:?} is not a device node",
                    d.path_on_host
                )))
            }
        };
        out.push(spec::DeviceNode {
            path: if d.path_in_container.is_empty() {
                d.path_on_host.clone()
            } else {
                d.path_in_container.clone()
            },
            kind,
            major: rustix::fs::major(st.st_rdev) as u64,
            minor: rustix::fs::minor(st.st_rdev) as u64,
            mode: st.st_mode & 0o777,
            access: if d.cgroup_permissions.is_empty() {
                "rwm".into()
            } else {
                d.cgroup_permissions.clone()
            },
        });
    }
    Ok(out)
}

/// Docker's container name rule.
pub fn valid_name(n: &str) -> bool {
    let n = n.strip_prefix('/').unwrap_or(n);
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn random_name(id: &str) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zen",
    ];
    const NOUN: &[&str] = &[
        "anchor", "barge", "cutter", "dinghy", "ferry", "galley", "harbor", "jetty", "keel",
        "lighter", "mooring", "pier", "quay", "rudder", "schooner", "tug", "wharf", "yawl",
    ];
    let n = u64::from_str_radix(&id[..8.min(id.len())], 16).unwrap_or(0);
    format!(
        "{}_{}",
        ADJ[(n % ADJ.len() as u64) as usize],
        NOUN[((n / 97) % NOUN.len() as u64) as usize]
    )
}

impl ContainerManager {
    /// Open the manager: create the table, load the records, reattach to live shims, record
    /// exits that happened while the daemon was down, apply restart policies.
    pub fn open(services: &Services) -> Result<Self, EngineError> {
        services.db.with("create containers table", |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS containers (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    image TEXT NOT NULL,
                    status TEXT NOT NULL,
                    created INTEGER NOT NULL,
                    data TEXT NOT NULL
                )",
            )
        })?;
        let shim_bin = shim_binary()
            .ok_or_else(|| EngineError::internal("cannot find the berth binary for shims"))?;
        for d in [
            services.config.data_root.join("containers"),
            services.config.exec_root.join("c"),
            services.config.exec_root.join("runtime"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
        }
        let rows: Vec<String> = services.db.with("load containers", |c| {
            let mut st = c.prepare("SELECT data FROM containers")?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let mgr = ContainerManager {
            inner: Arc::new(Inner {
                svc: services.clone(),
                ctrs: Mutex::new(HashMap::new()),
                execs: Mutex::new(HashMap::new()),
                names: Mutex::new(()),
                shim_bin,
            }),
        };
        let mut to_restart = Vec::new();
        for data in rows {
            let rec: Record = match serde_json::from_str(&data) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("skipping unreadable container record: {e}");
                    continue;
                }
            };
            let c = mgr.insert_ctr(rec);
            if c.is_running() {
                mgr.recover(&c);
            }
            let r = c.record();
            let policy = r.host_config.restart_policy.name.as_str();
            if !r.state.running
                && (policy == "always" || (policy == "unless-stopped" && !r.manually_stopped))
            {
                to_restart.push(c.clone());
            }
        }
        for c in to_restart {
            let m = mgr.clone();
            tokio::spawn(async move {
                if let Err(e) = m.start(&c).await {
                    tracing::warn!("restart policy: start {}: {e}", c.id);
                }
            });
        }
        Ok(mgr)
    }

    fn insert_ctr(&self, rec: Record) -> Arc<Ctr> {
        let g = Gen {
            exits: rec.exits,
            running: rec.state.running,
            removed: false,
            exit_code: rec.state.exit_code,
        };
        let (tx, _) = watch::channel(g);
        let c = Arc::new(Ctr {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            watch: tx,
            op: tokio::sync::Mutex::new(()),
            pending: Mutex::new(Pending::default()),
        });
        self.inner
            .ctrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), c.clone());
        c
    }

    /// Reattach to the shim of a container recorded as running (start-up).
    fn recover(&self, c: &Arc<Ctr>) {
        let dir = self.state_dir(&c.id);
        let alive = {
            use std::io::{BufRead, BufReader, Write};
            let sock = dir.join(berth_shim::protocol::SOCKET_NAME);
            std::os::unix::net::UnixStream::connect(&sock)
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(b"{\"op\":\"state\"}\n")?;
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line)?;
                    Ok(line)
                })
                .ok()
                .and_then(|l| serde_json::from_str::<berth_shim::Reply>(l.trim()).ok())
                .filter(|r| r.ok && r.status.as_deref() == Some("running"))
                .is_some()
        };
        if alive {
            tracing::info!("reattached to running container {}", c.id);
            self.spawn_monitor(c.clone());
            return;
        }
        let es = berth_shim::read_exit(&dir).unwrap_or(ExitStatus {
            exit_code: 255,
            finished_at: fmt_time(now_ns()),
            oom_killed: false,
        });
        tracing::info!(
            "container {} exited with {} while the daemon was down",
            c.id,
            es.exit_code
        );
        let m = self.clone();
        let c = c.clone();
        tokio::spawn(async move { m.on_exit(&c, es).await });
    }

    fn svc(&self) -> &Services {
        &self.inner.svc
    }

    /// `<data-root>/containers/<id>`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.svc().config.data_root.join("containers").join(id)
    }

    /// `<exec-root>/c/<id>`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.svc().config.exec_root.join("c").join(id)
    }

    fn runtime_root(&self) -> PathBuf {
        self.svc().config.exec_root.join("runtime")
    }

    /// The rootfs mount point.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }

    /// The json-file log.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    fn shim(&self, id: &str) -> ShimClient {
        ShimClient::new(&self.state_dir(id))
    }

    fn save(&self, r: &Record) -> Result<(), EngineError> {
        let data = serde_json::to_string(r)
            .map_err(|e| EngineError::internal(format!("encode container record: {e}")))?;
        self.svc().db.with("save container", |c| {
            c.execute(
                "INSERT INTO containers (id, name, image, status, created, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, image = ?3, status = ?4, data = ?6",
                rusqlite::params![r.id, r.name, r.image, r.state.status, r.created_ns, data],
            )
        })?;
        Ok(())
    }

    fn save_ctr(&self, c: &Ctr) {
        if let Err(e) = self.save(&c.record()) {
            tracing::error!("save container {}: {e}", c.id);
        }
    }

    fn event(&self, r: &Record, action: &str) -> Event {
        let mut ev = Event::new("container", action, &r.id)
            .attr("name", r.name.clone())
            .attr("image", r.image.clone());
        for (k, v) in &r.config.labels {
            ev = ev.attr(k.clone(), v.clone());
        }
        ev
    }

    fn publish(&self, c: &Ctr, action: &str, extra: &[(&str, String)]) {
        let mut ev = self.event(&c.record(), action);
        for (k, v) in extra {
            ev = ev.attr(*k, v.clone());
        }
        self.svc().events.publish(ev);
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<Ctr>> {
        let mut v: Vec<Arc<Ctr>> = self
            .inner
            .ctrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.record().created_ns));
        v
    }

    /// Find by full id, name (with or without `/`) or unique id prefix.
    pub fn find(&self, r: &str) -> Result<Arc<Ctr>, EngineError> {
        let m = self.inner.ctrs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(r) {
            return Ok(c.clone());
        }
        let name = r.strip_prefix('/').unwrap_or(r);
        if let Some(c) = m.values().find(|c| c.record().name == name) {
            return Ok(c.clone());
        }
        if !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = m.values().filter(|c| c.id.starts_with(r)).collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                n if n > 1 => {
                    return Err(EngineError::invalid(format!(
                        "multiple IDs found with provided prefix: {r}"
                    )))
                }
                _ => {}
            }
        }
        Err(EngineError::not_found(format!("No such container: {r}")))
    }

    /// `POST /containers/create`.
    pub async fn create(
        &self,
        name: Option<String>,
        body: CreateBody,
    ) -> Result<(String, Vec<String>), EngineError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_name(&n) {
                    return Err(EngineError::invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                Some(n.trim_start_matches('/').to_string())
            }
            None => None,
        };
        if body.config.image.is_empty() {
            return Err(EngineError::invalid("config: Image is required"));
        }
        let h = &body.host_config;
        match h.restart_policy.name.as_str() {
            "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
            p => {
                return Err(EngineError::invalid(format!(
                    "invalid restart policy '{p}'"
                )))
            }
        }
        if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
            return Err(EngineError::invalid(
                "can't create 'AutoRemove' container with restart policy",
            ));
        }
        if h.restart_policy.name != "on-failure" && h.restart_policy.maximum_retry_count != 0 {
            return Err(EngineError::invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
        spec::security_opts(h)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.create_blocking(name, body))
            .await
            .map_err(|e| EngineError::internal(format!("create task: {e}")))?
    }

    fn create_blocking(
        &self,
        name: Option<String>,
        body: CreateBody,
    ) -> Result<(String, Vec<String>), EngineError> {
        let images = &self.svc().images;
        let img = images.resolve(&body.config.image).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                let shown = berth_core::Reference::parse(&body.config.image)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| body.config.image.clone());
                EngineError::not_found(format!("No such image: {shown}"))
            } else {
                EngineError::from(e)
            }
        })?;
        images.unpack(&img.id.to_string())?;
        let id = crate::random_hex(32)?;
        let user_name = name;
        if let Some(n) = &user_name {
            self.check_name_free(n)?;
        }
        let rc = img.config.config.clone().unwrap_or_default();
        let defaults = spec::ImageDefaults {
            env: rc.env.clone().unwrap_or_default(),
            cmd: rc.cmd.clone(),
            entrypoint: rc.entrypoint.clone(),
            working_dir: rc.working_dir.clone().unwrap_or_default(),
            user: rc.user.clone().unwrap_or_default(),
            labels: rc.labels.clone().unwrap_or_default(),
            volumes: rc
                .volumes
                .as_ref()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
            stop_signal: rc.stop_signal.clone(),
            exposed_ports: rc
                .exposed_ports
                .as_ref()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
            healthcheck: rc
                .healthcheck
                .as_ref()
                .and_then(|h| serde_json::to_value(h).ok()),
        };
        let mut config = spec::merge_config(&body.config, &defaults);
        config.image = body.config.image.clone();
        config.hostname = if body.config.hostname.is_empty() {
            id[..12].to_string()
        } else {
            body.config.hostname.clone()
        };
        let cmdline = spec::command_line(&config);
        if cmdline.is_empty() {
            return Err(EngineError::invalid("no command specified"));
        }
        let mut host = body.host_config.clone();
        if host.network_mode.is_empty() {
            host.network_mode = "default".into();
        }
        if host.log_config.kind.is_empty() {
            host.log_config.kind = "json-file".into();
        }
        if host.log_config.kind != "json-file" && host.log_config.kind != "none" {
            return Err(EngineError::invalid(format!(
                "logging driver {:?} is not supported (json-file, none)",
                host.log_config.kind
            )));
        }
        let dir = self.container_dir(&id);
        std::fs::create_dir_all(dir.join("rootfs"))
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        let snapshot = format!("berth-container-{id}");
        let holder = berth_metadata::Holder::new("container", &id);
        let cleanup = |e: EngineError| {
            let _ = images.snapshotter().remove(&snapshot);
            let _ = images
                .db()
                .remove_hold(&holder, &berth_metadata::Resource::Image(img.id.clone()));
            let _ = images.db().remove_hold(
                &holder,
                &berth_metadata::Resource::Snapshot(snapshot.clone()),
            );
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let hold = || -> Result<(), EngineError> {
            images
                .db()
                .add_hold(&holder, &berth_metadata::Resource::Image(img.id.clone()))
                .map_err(|e| EngineError::internal(format!("hold image {}: {e}", img.id)))?;
            images
                .db()
                .add_hold(
                    &holder,
                    &berth_metadata::Resource::Snapshot(snapshot.clone()),
                )
                .map_err(|e| EngineError::internal(format!("hold snapshot {snapshot}: {e}")))?;
            let parent = img.top_chain_id().map(|d| d.to_string());
            images
                .snapshotter()
                .prepare(&snapshot, parent.as_deref())
                .map_err(|e| EngineError::internal(format!("prepare rootfs snapshot: {e}")))?;
            Ok(())
        };
        hold().map_err(cleanup)?;
        let mounts = self.plan_mounts(&id, &config, &host).map_err(cleanup)?;
        let now = now_ns();
        let rec = Record {
            id: id.clone(),
            name: String::new(),
            created_ns: now,
            image: body.config.image.clone(),
            image_id: img.id.to_string(),
            path: cmdline[0].clone(),
            args: cmdline[1..].to_vec(),
            config,
            host_config: host,
            state: ContainerState {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            started_ns: 0,
            finished_ns: 0,
            restart_count: 0,
            mounts,
            snapshot: snapshot.clone(),
            manually_stopped: false,
            exits: 0,
        };
        // choose/check the name and insert under one lock: concurrent creates never share a name
        let _g = self.inner.names.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = rec;
        rec.name = match user_name {
            Some(n) => {
                self.check_name_free(&n).map_err(cleanup)?;
                n
            }
            None => {
                let taken = |n: &str| self.check_name_free(n).is_err();
                let mut n = random_name(&id);
                let mut i = 1;
                while taken(&n) {
                    n = if i < 8 {
                        random_name(&id[i * 8..])
                    } else {
                        format!("{}{}", random_name(&id), i)
                    };
                    i += 1;
                }
                n
            }
        };
        self.save(&rec).map_err(cleanup)?;
        let c = self.insert_ctr(rec);
        drop(_g);
        self.publish(&c, "create", &[]);
        Ok((id, Vec::new()))
    }

    fn check_name_free(&self, name: &str) -> Result<(), EngineError> {
        let m = self.inner.ctrs.lock().unwrap_or_else(|p| p.into_inner());
        match m.values().find(|c| c.record().name == name) {
            Some(o) => Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                o.id
            ))),
            None => Ok(()),
        }
    }

    /// Binds, named and anonymous volumes, tmpfs: as mount points (volumes created as needed).
    fn plan_mounts(
        &self,
        id: &str,
        config: &ContainerConfig,
        host: &HostConfig,
    ) -> Result<Vec<MountPoint>, EngineError> {
        let mut out: Vec<MountPoint> = Vec::new();
        let vols = &self.svc().volumes;
        let volume = |name: Option<String>, dest: &str, rw: bool, anon: bool| {
            let v = match name.as_deref().map(|n| vols.get(n)) {
                Some(Ok(v)) => v,
                _ => vols.create(crate::volumes::CreateVolume {
                    name,
                    ..Default::default()
                })?,
            };
            Ok::<MountPoint, EngineError>(MountPoint {
                kind: "volume".into(),
                name: v.name.clone(),
                source: v.mountpoint.to_string_lossy().into_owned(),
                destination: dest.to_string(),
                driver: "local".into(),
                mode: if rw { "z".into() } else { "ro".into() },
                rw,
                propagation: String::new(),
                anonymous: anon,
                options: Vec::new(),
            })
        };
        for b in &host.binds {
            let parts: Vec<&str> = b.split(':').collect();
            let (src, dst, opts) = match parts.as_slice() {
                [s, d] => (*s, *d, ""),
                [s, d, o] => (*s, *d, *o),
                _ => {
                    return Err(EngineError::invalid(format!(
                        "invalid volume specification: '{b}'"
                    )))
                }
            };
            if !dst.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid volume specification: '{b}': invalid mount config: destination must be an absolute path"
                )));
            }
            let rw = !opts.split(',').any(|o| o == "ro");
            let prop = opts
                .split(',')
                .find(|o| {
                    matches!(
                        *o,
                        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                    )
                })
                .unwrap_or("")
                .to_string();
            if src.starts_with('/') {
                if !Path::new(src).exists() {
                    std::fs::create_dir_all(src)
                        .map_err(|e| EngineError::io(format!("create bind source {src}"), e))?;
                }
                out.push(MountPoint {
                    kind: "bind".into(),
                    source: src.into(),
                    destination: dst.into(),
                    mode: opts.into(),
                    rw,
                    propagation: if prop.is_empty() {
                        "rprivate".into()
                    } else {
                        prop
                    },
                    ..Default::default()
                });
            } else {
                crate::volumes::validate_name(src)?;
                out.push(volume(Some(src.to_string()), dst, rw, false)?);
            }
        }
        for m in &host.mounts {
            match m.kind.as_str() {
                "bind" => out.push(MountPoint {
                    kind: "bind".into(),
                    source: m.source.clone(),
                    destination: m.target.clone(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: "rprivate".into(),
                    ..Default::default()
                }),
                "volume" => {
                    let name = (!m.source.is_empty()).then(|| m.source.clone());
                    let anon = name.is_none();
                    out.push(volume(name, &m.target, !m.read_only, anon)?)
                }
                "tmpfs" => out.push(MountPoint {
                    kind: "tmpfs".into(),
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    ..Default::default()
                }),
                k => {
                    return Err(EngineError::invalid(format!(
                        "mount type {k:?} is not supported"
                    )))
                }
            }
        }
        for (dst, opts) in &host.tmpfs {
            out.push(MountPoint {
                kind: "tmpfs".into(),
                destination: dst.clone(),
                rw: true,
                options: opts
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                ..Default::default()
            });
        }
        if let Some(v) = &config.volumes {
            for dst in v.keys() {
                if out.iter().any(|m| m.destination == *dst) {
                    continue;
                }
                out.push(volume(None, dst, true, true)?);
            }
        }
        let _ = id;
        Ok(out)
    }

    /// Mount the rootfs snapshot if it is not mounted.
    pub fn mount_rootfs(&self, r: &Record) -> Result<PathBuf, EngineError> {
        let target = self.rootfs(&r.id);
        std::fs::create_dir_all(&target)
            .map_err(|e| EngineError::io(format!("create {}", target.display()), e))?;
        if !crate::volumes::is_mountpoint(&target)? {
            let mounts = self
                .svc()
                .images
                .snapshotter()
                .mounts(&r.snapshot)
                .map_err(|e| {
                    EngineError::internal(format!("rootfs snapshot {}: {e}", r.snapshot))
                })?;
            berth_snapshot::mount_all(&mounts, &target)
                .map_err(|e| EngineError::internal(format!("mount rootfs: {e}")))?;
        }
        Ok(target)
    }

    fn unmount_rootfs(&self, id: &str) {
        let target = self.rootfs(id);
        while crate::volumes::is_mountpoint(&target).unwrap_or(false) {
            if let Err(e) = berth_snapshot::unmount(&target) {
                tracing::warn!("unmount {}: {e}", target.display());
                break;
            }
        }
    }

    /// Write the bundle: rootfs mounted, /etc files, volumes mounted, config.json.
    fn prepare_bundle(&self, r: &Record) -> Result<(), EngineError> {
        let dir = self.container_dir(&r.id);
        let rootfs = self.mount_rootfs(r)?;
        // Docker creates a missing working directory (`-w`, WORKDIR) before the process starts.
        let wd = r.config.working_dir.trim();
        if !wd.is_empty() && wd != "/" {
            mkdir_all_in_root(&rootfs, wd).map_err(|e| {
                EngineError::io(format!("create working directory {wd} in the container"), e)
            })?;
        }
        let w = |name: &str, data: &str| {
            let p = dir.join(name);
            std::fs::write(&p, data)
                .map_err(|e| EngineError::io(format!("write {}", p.display()), e))?;
            Ok::<String, EngineError>(p.to_string_lossy().into_owned())
        };
        let host_net = r.host_config.network_mode == "host";
        let hostname = if host_net && r.config.hostname == r.id[..12] {
            crate::config::Config::with_roots("/", "/").name
        } else {
            r.config.hostname.clone()
        };
        let mut etc = Vec::new();
        etc.push((
            "/etc/hostname".to_string(),
            w("hostname", &format!("{hostname}\n"))?,
        ));
        let mut hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
            )
        };
        for eh in &r.host_config.extra_hosts {
            if let Some((h, ip)) = eh.split_once(':') {
                hosts.push_str(&format!("{ip}\t{h}\n"));
            }
        }
        etc.push(("/etc/hosts".to_string(), w("hosts", &hosts)?));
        etc.push((
            "/etc/resolv.conf".to_string(),
            w("resolv.conf", &resolv_conf(&r.host_config, host_net))?,
        ));
        let rootfd = archive::cp::open_root(&rootfs)?;
        for m in &r.mounts {
            if m.kind == "volume" {
                let dir = self.svc().volumes.mount(&m.name, &r.id)?;
                // a new (empty) volume gets the image's content at its mount point
                let empty = std::fs::read_dir(&dir)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if empty && r.exits == 0 && r.started_ns == 0 {
                    archive::cp::copy_dir_into(&rootfd, &m.destination, &dir)?;
                }
            }
        }
        let (uid, gid, mut extra) = resolve_user(&rootfs, &r.config.user)?;
        for g in &r.host_config.group_add {
            let n = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    let groups = read_in_root(&rootfs, "/etc/group").unwrap_or_default();
                    String::from_utf8_lossy(&groups)
                        .lines()
                        .find_map(|l| {
                            let f: Vec<&str> = l.split(':').collect();
                            (f.len() >= 3 && f[0] == g)
                                .then(|| f[2].parse().ok())
                                .flatten()
                        })
                        .ok_or_else(|| {
                            EngineError::invalid(format!(
                                "unable to find group {g}: no matching entries in group file"
                            ))
                        })?
                }
            };
            if !extra.contains(&n) {
                extra.push(n);
            }
        }
        let caps = spec::capabilities(&r.host_config);
        let default_seccomp =
            serde_json::to_value(berth_runtime::seccomp::docker_default_profile(&caps)).ok();
        let devices = host_devices(&r.host_config)?;
        let s = spec::build_spec(&spec::SpecInput {
            devices: &devices,
            id: &r.id,
            config: &r.config,
            host: &r.host_config,
            rootfs: &rootfs,
            mounts: &r.mounts,
            etc_files: &etc,
            uid,
            gid,
            additional_gids: extra,
            hostname: &hostname,
            default_seccomp,
        })?;
        let p = dir.join("config.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&s).unwrap_or_default())
            .map_err(|e| EngineError::io(format!("write {}", p.display()), e))?;
        // shim configuration
        let sd = self.state_dir(&r.id);
        let _ = std::fs::remove_dir_all(&sd);
        std::fs::create_dir_all(&sd)
            .map_err(|e| EngineError::io(format!("create {}", sd.display()), e))?;
        let lc = &r.host_config.log_config;
        let rotation = berth_shim::logfile::Rotation {
            max_size: lc
                .config
                .get("max-size")
                .and_then(|s| berth_shim::logfile::parse_size(s))
                .unwrap_or(10 << 20),
            max_files: lc
                .config
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(3),
        };
        let cfg = berth_shim::ShimConfig {
            id: r.id.clone(),
            bundle: dir.clone(),
            runtime_root: self.runtime_root(),
            log_path: (lc.kind != "none").then(|| self.log_path(&r.id)),
            rotation,
            tty: r.config.tty,
            open_stdin: r.config.open_stdin,
            stdin_once: r.config.stdin_once,
            loopback_up: r.host_config.network_mode != "host",
        };
        berth_shim::write_json_atomic(&sd.join(berth_shim::protocol::CONFIG_NAME), &cfg)
            .map_err(|e| EngineError::io("write shim.json", e))?;
        Ok(())
    }

    /// `POST /containers/{id}/start`. Ok(false): already running (304).
    pub async fn start(&self, c: &Arc<Ctr>) -> Result<bool, EngineError> {
        let _op = c.op.lock().await;
        if c.is_running() {
            return Ok(false);
        }
        let r = c.record();
        if r.state.status == "removing" || r.state.dead {
            return Err(EngineError::conflict(format!(
                "container {} is marked for removal",
                r.id
            )));
        }
        let me = self.clone();
        let rr = r.clone();
        let prepared = tokio::task::spawn_blocking(move || me.prepare_bundle(&rr))
            .await
            .map_err(|e| EngineError::internal(format!("prepare task: {e}")))
            .and_then(|r| r);
        let sd = self.state_dir(&r.id);
        let ready = match prepared {
            Ok(()) => shim::spawn(&self.inner.shim_bin, &sd, &self.svc().reaper).await,
            Err(e) => Err(e),
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => berth_shim::Reply::err(e.kind(), e.to_string()),
        };
        if !ready.ok {
            let msg = ready.error.clone().unwrap_or_default();
            let code = if msg.contains("executable file not found")
                || msg.contains("no such file or directory")
            {
                127
            } else if msg.contains("permission denied") {
                126
            } else {
                128
            };
            c.update(|r| {
                r.state.error = msg.clone();
                r.state.exit_code = code;
                r.state.status = if r.exits > 0 || r.started_ns > 0 {
                    "exited".into()
                } else {
                    "created".into()
                };
            });
            self.save_ctr(c);
            self.unmount_and_release(&r);
            // attach streams waiting for this start end now
            c.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .list
                .clear();
            if r.host_config.auto_remove {
                let me = self.clone();
                let c2 = c.clone();
                tokio::spawn(async move {
                    // after this start's lock is released
                    let _ = me.remove(&c2, true, false).await;
                });
            }
            let kind = match ready.error_kind() {
                ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::InvalidInput => {
                    ErrorKind::InvalidInput
                }
                k => k,
            };
            return Err(EngineError::new(
                kind,
                format!("failed to create task for container: {msg}: unknown"),
            ));
        }
        let client = self.shim(&r.id);
        // streams that attached before the start
        let pending: Vec<PendingAttach> = {
            let mut p = c.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.started = true;
            std::mem::take(&mut p.list)
        };
        for p in pending {
            match client.open(&p.req).await {
                Ok((reply, stream)) if reply.ok => {
                    let _ = p.tx.send(stream);
                }
                Ok((reply, _)) => tracing::warn!("attach: {:?}", reply.error),
                Err(e) => tracing::warn!("attach: {e}"),
            }
        }
        let started = match client.call(&Request::Start).await {
            Ok(s) => s,
            Err(e) => {
                let _ = client
                    .call(&Request::Kill {
                        signal: libc::SIGKILL,
                        all: true,
                    })
                    .await;
                c.update(|r| r.state.error = e.to_string());
                self.save_ctr(c);
                // the shim reports the killed init's exit: recorded (and --rm honoured) as usual
                self.spawn_monitor(c.clone());
                return Err(e);
            }
        };
        let now = now_ns();
        c.update(|r| {
            r.state.status = "running".into();
            r.state.running = true;
            r.state.paused = false;
            r.state.restarting = false;
            r.state.pid = started.pid.unwrap_or(0) as i64;
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
            r.state.started_at = started.started_at.clone().unwrap_or_else(|| fmt_time(now));
            r.started_ns = parse_time(&r.state.started_at).unwrap_or(now);
            r.state.finished_at = ZERO_TIME.into();
            r.manually_stopped = false;
        });
        self.save_ctr(c);
        c.notify();
        self.publish(c, "start", &[]);
        self.spawn_monitor(c.clone());
        Ok(true)
    }

    fn unmount_and_release(&self, r: &Record) {
        self.unmount_rootfs(&r.id);
        for m in &r.mounts {
            if m.kind == "volume" {
                let _ = self.svc().volumes.unmount(&m.name, &r.id);
            }
        }
    }

    fn spawn_monitor(&self, c: Arc<Ctr>) {
        let me = self.clone();
        tokio::spawn(async move {
            let client = me.shim(&c.id);
            let es = match client.open(&Request::Wait).await {
                Ok((_, mut s)) => shim::read_reply(&mut s.rd).await.ok().and_then(|r| r.exit),
                Err(_) => None,
            };
            let es = match es {
                Some(e) => e,
                None => {
                    // the shim went away without answering: its exit file, if any
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    berth_shim::read_exit(&me.state_dir(&c.id)).unwrap_or(ExitStatus {
                        exit_code: 255,
                        finished_at: fmt_time(now_ns()),
                        oom_killed: false,
                    })
                }
            };
            me.on_exit(&c, es).await;
        });
    }

    async fn on_exit(&self, c: &Arc<Ctr>, es: ExitStatus) {
        let fin = parse_time(&es.finished_at).unwrap_or_else(now_ns);
        c.update(|r| {
            r.state.status = "exited".into();
            r.state.running = false;
            r.state.paused = false;
            r.state.pid = 0;
            r.state.exit_code = es.exit_code as i64;
            r.state.oom_killed = es.oom_killed;
            r.state.finished_at = fmt_time(fin);
            r.finished_ns = fin;
            r.exits += 1;
        });
        c.pending.lock().unwrap_or_else(|p| p.into_inner()).started = false;
        let r = c.record();
        self.save_ctr(c);
        if es.oom_killed {
            self.publish(c, "oom", &[]);
        }
        self.publish(c, "die", &[("exitCode", es.exit_code.to_string())]);
        c.notify();
        {
            // not while a start mounts it again
            let _op = c.op.lock().await;
            if !c.is_running() {
                let me = self.clone();
                let rr = r.clone();
                let _ = tokio::task::spawn_blocking(move || me.unmount_and_release(&rr)).await;
            }
        }
        if r.host_config.auto_remove {
            let _ = self.remove(c, true, false).await;
            return;
        }
        let p = &r.host_config.restart_policy;
        let restart = !r.manually_stopped
            && match p.name.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => {
                    es.exit_code != 0
                        && (p.maximum_retry_count <= 0 || r.restart_count < p.maximum_retry_count)
                }
                _ => false,
            };
        if restart {
            let ran = (fin - r.started_ns).max(0);
            let n = if ran > 10_000_000_000 {
                0
            } else {
                r.restart_count.min(10)
            };
            let delay = Duration::from_millis((100u64 << n).min(60_000));
            c.update(|r| {
                r.state.restarting = true;
                r.state.status = "restarting".into();
                r.restart_count += 1;
            });
            self.save_ctr(c);
            let me = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let r = c.record();
                if !r.state.restarting || r.manually_stopped {
                    return;
                }
                if let Err(e) = me.start(&c).await {
                    tracing::warn!("restart {}: {e}", c.id);
                    c.update(|r| {
                        r.state.restarting = false;
                        r.state.status = "exited".into();
                    });
                    me.save_ctr(&c);
                }
            });
        }
    }

    /// Send a signal through the shim.
    pub async fn signal(&self, c: &Ctr, sig: i32, all: bool) -> Result<(), EngineError> {
        self.shim(&c.id)
            .call(&Request::Kill { signal: sig, all })
            .await
            .map(|_| ())
    }

    /// Wait until the container is not running, up to `t` (None: forever). True if it stopped.
    pub async fn wait_stopped(&self, c: &Ctr, t: Option<Duration>) -> bool {
        let mut rx = c.subscribe();
        let fut = rx.wait_for(|g| !g.running || g.removed);
        match t {
            Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
            None => fut.await.is_ok(),
        }
    }

    /// `POST /containers/{id}/stop`. Ok(false): was not running (304).
    pub async fn stop(
        &self,
        c: &Arc<Ctr>,
        t: Option<i64>,
        signal: Option<String>,
    ) -> Result<bool, EngineError> {
        let r = c.record();
        if r.state.restarting {
            c.update(|r| {
                r.state.restarting = false;
                r.manually_stopped = true;
                r.state.status = "exited".into();
            });
            self.save_ctr(c);
            return Ok(true);
        }
        if !r.state.running {
            return Ok(false);
        }
        c.update(|r| r.manually_stopped = true);
        self.save_ctr(c);
        let sig_name = signal
            .or_else(|| r.config.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = berth_runtime::signal::parse_signal(&sig_name)
            .map_err(|e| EngineError::invalid(e.to_string()))?;
        let t = t.or(r.config.stop_timeout).unwrap_or(10);
        if r.state.paused {
            let _ = self.unpause(c).await;
        }
        if self.signal(c, sig, false).await.is_ok() {
            self.publish(c, "kill", &[("signal", sig.to_string())]);
        }
        let graceful = if t < 0 {
            None
        } else {
            Some(Duration::from_secs(t as u64))
        };
        if !self.wait_stopped(c, graceful).await {
            let _ = self.signal(c, libc::SIGKILL, true).await;
            self.publish(c, "kill", &[("signal", libc::SIGKILL.to_string())]);
            self.wait_stopped(c, Some(Duration::from_secs(30))).await;
        }
        self.publish(c, "stop", &[]);
        Ok(true)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, c: &Arc<Ctr>, signal: Option<&str>) -> Result<(), EngineError> {
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => berth_runtime::signal::parse_signal(s)
                .map_err(|e| EngineError::invalid(e.to_string()))?,
            None => libc::SIGKILL,
        };
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if sig == libc::SIGKILL || sig == libc::SIGTERM {
            c.update(|r| r.manually_stopped = true);
            self.save_ctr(c);
        }
        self.signal(c, sig, sig == libc::SIGKILL).await?;
        self.publish(c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/pause`.
    pub async fn pause(&self, c: &Arc<Ctr>) -> Result<(), EngineError> {
        let r = c.record();
        if !r.state.running {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        if r.state.paused {
            return Err(EngineError::conflict(format!(
                "Container {} is already paused",
                r.id
            )));
        }
        let rt = berth_runtime::Runtime::new(self.runtime_root());
        let id = r.id.clone();
        tokio::task::spawn_blocking(move || rt.pause(&id))
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
            .map_err(|e| EngineError::new(e.kind(), e.to_string()))?;
        c.update(|r| {
            r.state.paused = true;
            r.state.status = "paused".into();
        });
        self.save_ctr(c);
        self.publish(c, "pause", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause(&self, c: &Arc<Ctr>) -> Result<(), EngineError> {
        let r = c.record();
        if !r.state.paused {
            return Err(EngineError::conflict(format!(
                "Container {} is not paused",
                r.id
            )));
        }
        let rt = berth_runtime::Runtime::new(self.runtime_root());
        let id = r.id.clone();
        tokio::task::spawn_blocking(move || rt.resume(&id))
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
            .map_err(|e| EngineError::new(e.kind(), e.to_string()))?;
        c.update(|r| {
            r.state.paused = false;
            r.state.status = "running".into();
        });
        self.save_ctr(c);
        self.publish(c, "unpause", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/rename`.
    pub fn rename(&self, c: &Arc<Ctr>, new: &str) -> Result<(), EngineError> {
        if !valid_name(new) {
            return Err(EngineError::invalid(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let new = new.trim_start_matches('/').to_string();
        let _g = self.inner.names.lock().unwrap_or_else(|p| p.into_inner());
        self.check_name_free(&new)?;
        let old = c.update(|r| std::mem::replace(&mut r.name, new.clone()));
        self.save_ctr(c);
        self.publish(c, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub async fn remove(
        &self,
        c: &Arc<Ctr>,
        force: bool,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let r = c.record();
        if r.state.running || r.state.restarting {
            if !force {
                let what = if r.state.paused { "paused" } else { "running" };
                return Err(EngineError::conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                    r.name
                )));
            }
            c.update(|r| {
                r.manually_stopped = true;
                r.state.restarting = false;
            });
            if r.state.running {
                if r.state.paused {
                    let _ = self.unpause(c).await;
                }
                let _ = self.signal(c, libc::SIGKILL, true).await;
                self.wait_stopped(c, Some(Duration::from_secs(30))).await;
            }
        }
        let _op = c.op.lock().await;
        if c.record().state.status == "removing" {
            return Ok(());
        }
        c.update(|r| r.state.status = "removing".into());
        let me = self.clone();
        let r = c.record();
        tokio::task::spawn_blocking(move || me.remove_blocking(&r, volumes))
            .await
            .map_err(|e| EngineError::internal(format!("remove task: {e}")))??;
        self.inner
            .ctrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.id);
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.container != c.id);
        self.publish(c, "destroy", &[]);
        c.watch.send_modify(|g| g.removed = true);
        Ok(())
    }

    fn remove_blocking(&self, r: &Record, volumes: bool) -> Result<(), EngineError> {
        self.unmount_and_release(r);
        let images = &self.svc().images;
        if let Err(e) = images.snapshotter().remove(&r.snapshot) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!("remove snapshot {}: {e}", r.snapshot);
            }
        }
        let holder = berth_metadata::Holder::new("container", &r.id);
        if let Ok(d) = r.image_id.parse() {
            let _ = images
                .db()
                .remove_hold(&holder, &berth_metadata::Resource::Image(d));
        }
        let _ = images.db().remove_hold(
            &holder,
            &berth_metadata::Resource::Snapshot(r.snapshot.clone()),
        );
        let _ = std::fs::remove_dir_all(self.container_dir(&r.id));
        let _ = std::fs::remove_dir_all(self.state_dir(&r.id));
        self.svc().db.with("delete container", |c| {
            c.execute("DELETE FROM containers WHERE id = ?1", [&r.id])
        })?;
        if volumes {
            for m in r
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" && m.anonymous)
            {
                if let Err(e) = self.svc().volumes.remove(&m.name, true, &[]) {
                    tracing::warn!("remove volume {}: {e}", m.name);
                }
            }
        }
        Ok(())
    }

    /// Register an attach stream: connected to the shim now if the container runs, otherwise
    /// queued for the next start. Call before answering the client (the CLI sends `start` as
    /// soon as it has the 101), then await the returned [`AttachWait`].
    pub async fn attach(&self, c: &Arc<Ctr>, req: Request) -> Result<AttachWait, EngineError> {
        let rx = {
            let mut p = c.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !p.started {
                let (tx, rx) = tokio::sync::oneshot::channel();
                p.list.push(PendingAttach {
                    req: req.clone(),
                    tx,
                });
                Some(rx)
            } else {
                None
            }
        };
        match rx {
            Some(rx) => Ok(AttachWait::Pending(rx)),
            None => match self.shim(&c.id).open(&req).await {
                Ok((reply, s)) if reply.ok => Ok(AttachWait::Ready(s)),
                // the run just ended
                _ => Ok(AttachWait::Ended),
            },
        }
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(
        &self,
        c: &Ctr,
        exec: Option<String>,
        h: u16,
        w: u16,
    ) -> Result<(), EngineError> {
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        self.shim(&c.id)
            .call(&Request::Resize {
                exec,
                height: h,
                width: w,
            })
            .await
            .map(|_| ())
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, c: &Arc<Ctr>, cfg: ExecConfig) -> Result<String, EngineError> {
        let r = c.record();
        if !r.state.running {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        if r.state.paused {
            return Err(EngineError::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                r.id
            )));
        }
        if cfg.cmd.as_ref().is_none_or(|v| v.is_empty()) {
            return Err(EngineError::invalid("No exec command specified"));
        }
        let id = crate::random_hex(32)?;
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                ExecRecord {
                    id: id.clone(),
                    container: r.id.clone(),
                    config: cfg.clone(),
                    running: false,
                    started: false,
                    exit_code: None,
                    pid: 0,
                },
            );
        let cmd = cfg.cmd.unwrap_or_default();
        self.publish(
            c,
            &format!("exec_create: {}", cmd.join(" ")),
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    /// An exec record.
    pub fn exec_get(&self, id: &str) -> Result<ExecRecord, EngineError> {
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    fn exec_update(&self, id: &str, f: impl FnOnce(&mut ExecRecord)) {
        if let Some(e) = self
            .inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            f(e);
        }
    }

    /// Start an exec: the shim stream (frames; an exit frame last) or the start error.
    pub async fn exec_start(
        &self,
        id: &str,
    ) -> Result<(ExecRecord, Result<shim::ShimStream, EngineError>), EngineError> {
        let e = self.exec_get(id)?;
        if e.started {
            return Err(EngineError::conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        let c = self.find(&e.container)?;
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        self.exec_update(id, |x| {
            x.started = true;
            x.running = true;
        });
        let process = match self.exec_process(&c.record(), &e.config).await {
            Ok(p) => p,
            Err(err) => {
                self.exec_update(id, |x| {
                    x.running = false;
                    x.exit_code = Some(126);
                });
                return Ok((e, Err(err)));
            }
        };
        let req = Request::Exec {
            id: id.to_string(),
            process,
            stdin: e.config.attach_stdin,
            stdout: true,
            stderr: true,
        };
        let cmd = e.config.cmd.clone().unwrap_or_default().join(" ");
        self.publish(
            &c,
            &format!("exec_start: {cmd}"),
            &[("execID", id.to_string())],
        );
        match self.shim(&c.id).open(&req).await {
            Ok((reply, s)) if reply.ok => {
                self.exec_update(id, |x| x.pid = reply.pid.unwrap_or(0) as i64);
                Ok((e, Ok(s)))
            }
            Ok((reply, _)) => {
                let code = if reply.error_kind() == ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                self.exec_update(id, |x| {
                    x.running = false;
                    x.exit_code = Some(code);
                });
                let err = EngineError::new(reply.error_kind(), reply.error.unwrap_or_default());
                Ok((e, Err(err)))
            }
            Err(err) => {
                self.exec_update(id, |x| {
                    x.running = false;
                    x.exit_code = Some(126);
                });
                Ok((e, Err(err)))
            }
        }
    }

    /// Record an exec's exit (from its exit frame, or 137... when the stream broke).
    pub fn exec_exited(&self, id: &str, code: i64) {
        let mut container = None;
        self.exec_update(id, |x| {
            x.running = false;
            x.exit_code = Some(code);
            container = Some(x.container.clone());
        });
        if let Some(c) = container.and_then(|c| self.find(&c).ok()) {
            self.publish(
                &c,
                "exec_die",
                &[("execID", id.to_string()), ("exitCode", code.to_string())],
            );
        }
    }

    async fn exec_process(&self, r: &Record, cfg: &ExecConfig) -> Result<Value, EngineError> {
        let p = self.container_dir(&r.id).join("config.json");
        let spec: Value = serde_json::from_slice(
            &tokio::fs::read(&p)
                .await
                .map_err(|e| EngineError::io(format!("read {}", p.display()), e))?,
        )
        .map_err(|e| EngineError::internal(format!("parse {}: {e}", p.display())))?;
        let mut proc_ = spec["process"].clone();
        proc_["args"] = json!(cfg.cmd.clone().unwrap_or_default());
        proc_["terminal"] = json!(cfg.tty);
        if let Some(o) = proc_.as_object_mut() {
            o.remove("consoleSize");
        }
        let base: Vec<String> = serde_json::from_value(proc_["env"].clone()).unwrap_or_default();
        let mut env = spec::merge_env(&base, &cfg.env);
        if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        proc_["env"] = json!(env);
        if !cfg.working_dir.is_empty() {
            proc_["cwd"] = json!(cfg.working_dir);
        }
        if !cfg.user.is_empty() {
            let rootfs = self.rootfs(&r.id);
            let (uid, gid, extra) = resolve_user(&rootfs, &cfg.user)?;
            proc_["user"] = json!({"uid": uid, "gid": gid, "additionalGids": extra});
        }
        if cfg.privileged {
            let all: Vec<&str> = spec::ALL_CAPS.to_vec();
            proc_["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
        }
        Ok(proc_)
    }

    /// The processes of a running container (host pids).
    pub fn pids(&self, c: &Ctr) -> Result<Vec<i32>, EngineError> {
        let r = c.record();
        if !r.state.running {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let mgr = berth_cgroups::Manager::new(Some(&format!("/berth/{}", r.id)), &r.id)
            .map_err(|e| EngineError::internal(e.to_string()))?;
        mgr.pids()
            .map_err(|e| EngineError::internal(format!("list processes: {e}")))
    }

    /// Cgroup statistics of a running container.
    pub fn stats(&self, c: &Ctr) -> Option<berth_cgroups::Stats> {
        let r = c.record();
        if !r.state.running {
            return None;
        }
        let mgr = berth_cgroups::Manager::new(Some(&format!("/berth/{}", r.id)), &r.id).ok()?;
        mgr.stats().ok()
    }

    /// The upper (writable) directory of the rootfs snapshot.
    pub fn upper_dir(&self, r: &Record) -> Result<PathBuf, EngineError> {
        self.svc()
            .images
            .snapshotter()
            .upper_dir(&r.snapshot)
            .map_err(|e| EngineError::internal(format!("snapshot {}: {e}", r.snapshot)))
    }

    /// The root `docker cp` works in: the running container's own view (`/proc/<pid>/root`, with
    /// its volumes and binds), or the mounted rootfs of a stopped one.
    pub async fn cp_root(&self, c: &Ctr) -> Result<PathBuf, EngineError> {
        let r = c.record();
        if r.state.running && r.state.pid > 0 {
            let p = PathBuf::from(format!("/proc/{}/root", r.state.pid));
            if p.exists() {
                return Ok(p);
            }
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.mount_rootfs(&r))
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
    }

    /// `GET /containers/{id}/changes`.
    pub fn changes(&self, r: &Record) -> Result<Value, EngineError> {
        let upper = self.upper_dir(r)?;
        let mounts = self
            .svc()
            .images
            .snapshotter()
            .mounts(&r.snapshot)
            .map_err(|e| EngineError::internal(format!("snapshot {}: {e}", r.snapshot)))?;
        let all = archive::changes_with(&upper, &archive::lowers_of(&mounts))?;
        // mount points the runtime created (Docker keeps them in a hidden init layer)
        let mut hidden: Vec<String> = [
            "/dev",
            "/proc",
            "/sys",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        hidden.extend(r.mounts.iter().map(|m| m.destination.clone()));
        let list = all.as_array().cloned().unwrap_or_default();
        let path = |v: &Value| v["Path"].as_str().unwrap_or("").to_string();
        let kept: Vec<Value> = list
            .iter()
            .filter(|v| {
                let p = path(v);
                let added = v["Kind"] == 1;
                !(added
                    && hidden
                        .iter()
                        .any(|h| p == *h || p.starts_with(&format!("{h}/"))))
            })
            .cloned()
            .collect();
        let kept: Vec<Value> = kept
            .iter()
            .filter(|v| {
                let p = path(v);
                let parent_of_hidden = hidden.iter().any(|h| h.starts_with(&format!("{p}/")));
                let has_kept_child = kept.iter().any(|o| path(o).starts_with(&format!("{p}/")));
                !(v["Kind"] == 0 && parent_of_hidden && !has_kept_child)
            })
            .cloned()
            .collect();
        Ok(Value::Array(kept))
    }

    /// `/containers/json` row.
    pub fn summary(&self, c: &Ctr, size: bool) -> Value {
        let r = c.record();
        let mut v = json!({
            "Id": r.id,
            "Names": [format!("/{}", r.name)],
            "Image": r.image,
            "ImageID": r.image_id,
            "Command": std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>().join(" "),
            "Created": r.created_ns / 1_000_000_000,
            "Ports": [],
            "Labels": r.config.labels,
            "State": r.state.status,
            "Status": status_text(&r),
            "HostConfig": {"NetworkMode": r.host_config.network_mode},
            "NetworkSettings": {"Networks": {}},
            "Mounts": r.mounts,
        });
        if size {
            let rw = self
                .upper_dir(&r)
                .map(|p| crate::volumes::dir_size(&p))
                .unwrap_or(0);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rw);
        }
        v
    }

    /// `/containers/{id}/json`.
    pub fn inspect(&self, c: &Ctr, size: bool) -> Value {
        let r = c.record();
        let dir = self.container_dir(&r.id);
        let execs: Vec<String> = self
            .inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|e| e.container == r.id && e.running)
            .map(|e| e.id.clone())
            .collect();
        let mut state = serde_json::to_value(&r.state).unwrap_or_default();
        state["Status"] = json!(r.state.status);
        let upper = self.upper_dir(&r).ok();
        let mut v = json!({
            "Id": r.id,
            "Created": fmt_time(r.created_ns),
            "Path": r.path,
            "Args": r.args,
            "State": state,
            "Image": r.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": if r.host_config.log_config.kind == "none" { String::new() } else { self.log_path(&r.id).to_string_lossy().into_owned() },
            "Name": format!("/{}", r.name),
            "RestartCount": r.restart_count,
            "Driver": self.svc().images.snapshotter().name(),
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": if execs.is_empty() { Value::Null } else { json!(execs) },
            "HostConfig": r.host_config,
            "GraphDriver": {
                "Name": self.svc().images.snapshotter().name(),
                "Data": {"UpperDir": upper, "MergedDir": self.rootfs(&r.id)},
            },
            "Mounts": r.mounts,
            "Config": r.config,
            "NetworkSettings": {
                "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": {}, "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
                "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
                "Networks": {},
            },
        });
        if size {
            let rw = upper.as_deref().map(crate::volumes::dir_size).unwrap_or(0);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rw);
        }
        v
    }
}

/// `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`...
pub fn status_text(r: &Record) -> String {
    let now = now_ns();
    let s = &r.state;
    if s.restarting {
        return format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human_duration(now - r.finished_ns)
        );
    }
    if s.running {
        let up = human_duration(now - r.started_ns);
        return if s.paused {
            format!("Up {up} (Paused)")
        } else {
            format!("Up {up}")
        };
    }
    if s.status == "removing" {
        return "Removal In Progress".into();
    }
    if r.finished_ns > 0 {
        return format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(now - r.finished_ns)
        );
    }
    "Created".into()
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(ns: i64) -> String {
    let secs = ns / 1_000_000_000;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if secs / 60 == 1 {
        "About a minute".into()
    } else if secs < 3600 {
        format!("{} minutes", secs / 60)
    } else if (secs as f64 / 3600.0).round() as i64 == 1 {
        "About an hour".into()
    } else if secs < 48 * 3600 {
        format!("{} hours", (secs as f64 / 3600.0).round() as i64)
    } else if secs < 7 * 24 * 3600 * 2 {
        format!("{} days", secs / 86400)
    } else if secs < 30 * 24 * 3600 * 3 {
        format!("{} weeks", secs / (7 * 86400))
    } else if secs < 365 * 24 * 3600 * 2 {
        format!("{} months", secs / (30 * 86400))
    } else {
        format!("{} years", secs / (365 * 86400))
    }
}

/// The host's resolv.conf without loopback nameservers (they do not work from a private
/// network namespace), with `--dns*` overrides.
fn resolv_conf(h: &HostConfig, host_net: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut ns = 0;
    for l in host.lines() {
        let t = l.trim();
        if let Some(a) = t.strip_prefix("nameserver") {
            let a = a.trim();
            if !h.dns.is_empty() || (!host_net && (a.starts_with("127.") || a == "::1")) {
                continue;
            }
            ns += 1;
        }
        if (t.starts_with("search") && !h.dns_search.is_empty())
            || (t.starts_with("options") && !h.dns_options.is_empty())
        {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    for d in &h.dns {
        out.push_str(&format!("nameserver {d}\n"));
        ns += 1;
    }
    if !h.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", h.dns_search.join(" ")));
    }
    if !h.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", h.dns_options.join(" ")));
    }
    if ns == 0 && !host_net {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// `mkdir -p` of `path` inside the container's rootfs: every component is resolved inside the
/// root with `openat2(RESOLVE_IN_ROOT)` and a missing one is created with `mkdirat` relative to
/// its already-resolved parent, so symlinks in the image cannot redirect it to the host.
pub fn mkdir_all_in_root(root: &Path, path: &str) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut parent = rustix::fs::openat2(&dir, ".", flags, Mode::empty(), how)?;
    for (i, comp) in comps.iter().enumerate() {
        let prefix = comps[..=i].join("/");
        match rustix::fs::openat2(&dir, prefix.as_str(), flags, Mode::empty(), how) {
            Ok(fd) => parent = fd,
            Err(rustix::io::Errno::NOENT) if *comp != ".." => {
                match rustix::fs::mkdirat(&parent, *comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                parent = rustix::fs::openat2(&dir, prefix.as_str(), flags, Mode::empty(), how)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Read a file of the container's rootfs, resolved inside the root (symlinks cannot escape).
pub fn read_in_root(root: &Path, path: &str) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut f = std::fs::File::from(fd);
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut v)?;
    Ok(v)
}

/// Resolve `user[:group]` (names or numbers) against the container's /etc/passwd and /etc/group:
/// (uid, gid, supplementary gids).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), EngineError> {
    if let Some((u, g)) = spec::numeric_user(user) {
        if !user.contains(':') && !user.is_empty() {
            // primary group from passwd when only a uid is given
            let passwd = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
            let gid = String::from_utf8_lossy(&passwd)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 4 && f[2].parse() == Ok(u))
                        .then(|| f[3].parse().ok())
                        .flatten()
                })
                .next()
                .unwrap_or(g);
            return Ok((u, gid, Vec::new()));
        }
        return Ok((u, g, Vec::new()));
    }
    let (uname, gname) = match user.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (user, None),
    };
    let passwd = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
    let passwd = String::from_utf8_lossy(&passwd);
    let mut found = None;
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && (f[0] == uname || f[2] == uname) {
            found = Some((
                f[0].to_string(),
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
            ));
            break;
        }
    }
    let (name, uid, mut gid) = match found {
        Some((n, Some(u), Some(g))) => (n, u, g),
        _ => match uname.parse::<u32>() {
            Ok(u) => (String::new(), u, 0),
            Err(_) => {
                return Err(EngineError::invalid(format!(
                    "unable to find user {uname}: no matching entries in passwd file"
                )))
            }
        },
    };
    let group = read_in_root(rootfs, "/etc/group").unwrap_or_default();
    let group = String::from_utf8_lossy(&group);
    if let Some(g) = gname {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .ok_or_else(|| {
                    EngineError::invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut extra = Vec::new();
    if !name.is_empty() {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if n != gid && !extra.contains(&n) {
                        extra.push(n);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra))
}

impl ContainerManager {
    /// The daemon is stopping: containers keep running (their shims do not depend on us).
    pub fn shutdown(&self) {}
}

impl ContainerQueries for ContainerManager {
    fn counts(&self) -> ContainerCounts {
        let mut c = ContainerCounts::default();
        for x in self.all() {
            let r = x.record();
            c.total += 1;
            if r.state.paused {
                c.paused += 1;
            } else if r.state.running {
                c.running += 1;
            } else {
                c.stopped += 1;
            }
        }
        c
    }

    fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|c| {
                c.record()
                    .mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == name)
            })
            .map(|c| c.id.clone())
            .collect()
    }

    fn df_rows(&self) -> Vec<Value> {
        self.all().iter().map(|c| self.summary(c, true)).collect()
    }
}

/// Labels as `k=v` for filters.
pub fn labels_of(r: &Record) -> &BTreeMap<String, String> {
    &r.config.labels
}

impl ContainerManager {
    /// `POST /containers/{id}/update`: resources and the restart policy. Applied to the cgroup
    /// at once when the container runs, and kept for later starts.
    pub async fn update_resources(
        &self,
        c: &Arc<Ctr>,
        body: &Value,
    ) -> Result<Vec<String>, EngineError> {
        let upd: HostConfig = serde_json::from_value(body.clone())
            .map_err(|e| EngineError::invalid(format!("invalid update body: {e}")))?;
        let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
        c.update(|r| {
            let h = &mut r.host_config;
            if has("Memory") {
                h.memory = upd.memory;
            }
            if has("MemorySwap") {
                h.memory_swap = upd.memory_swap;
            }
            if has("MemoryReservation") {
                h.memory_reservation = upd.memory_reservation;
            }
            if has("CpuShares") {
                h.cpu_shares = upd.cpu_shares;
            }
            if has("NanoCpus") {
                h.nano_cpus = upd.nano_cpus;
            }
            if has("CpuQuota") {
                h.cpu_quota = upd.cpu_quota;
            }
            if has("CpuPeriod") {
                h.cpu_period = upd.cpu_period;
            }
            if has("CpusetCpus") {
                h.cpuset_cpus = upd.cpuset_cpus.clone();
            }
            if has("CpusetMems") {
                h.cpuset_mems = upd.cpuset_mems.clone();
            }
            if has("PidsLimit") {
                h.pids_limit = upd.pids_limit;
            }
            if has("BlkioWeight") {
                h.blkio_weight = upd.blkio_weight;
            }
            if has("RestartPolicy") && !upd.restart_policy.name.is_empty() {
                h.restart_policy = upd.restart_policy.clone();
            }
        });
        self.save_ctr(c);
        let r = c.record();
        if r.state.running {
            // the resources part of the spec the container would get now
            let s = spec::build_spec(&spec::SpecInput {
                id: &r.id,
                config: &r.config,
                host: &r.host_config,
                rootfs: &self.rootfs(&r.id),
                mounts: &[],
                etc_files: &[],
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
                hostname: "",
                default_seccomp: None,
                devices: &[],
            })?;
            let mut res = s["linux"]["resources"].clone();
            if let Some(o) = res.as_object_mut() {
                o.remove("devices");
            }
            let res: berth_runtime::oci_spec::runtime::LinuxResources = serde_json::from_value(res)
                .map_err(|e| EngineError::invalid(format!("resources: {e}")))?;
            let id = r.id.clone();
            tokio::task::spawn_blocking(move || {
                let mgr = berth_cgroups::Manager::new(Some(&format!("/berth/{id}")), &id)
                    .map_err(|e| EngineError::internal(e.to_string()))?;
                mgr.apply(&res)
                    .map_err(|e| EngineError::new(e.kind(), format!("update resources: {e}")))
            })
            .await
            .map_err(|e| EngineError::internal(e.to_string()))??;
        }
        self.publish(c, "update", &[]);
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web"));
        assert!(valid_name("/web-1.x_y"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        let n = random_name("0123456789abcdef");
        assert!(valid_name(&n), "{n}");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(human_duration(500_000_000), "Less than a second");
        assert_eq!(human_duration(1_000_000_000), "1 second");
        assert_eq!(human_duration(17_000_000_000), "17 seconds");
        assert_eq!(human_duration(90_000_000_000), "About a minute");
        assert_eq!(human_duration(600_000_000_000), "10 minutes");
        let t = fmt_time(1_700_000_000_123_456_789);
        assert_eq!(parse_time(&t), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_time(ZERO_TIME), None);
        assert_eq!(fmt_time(0), ZERO_TIME);
    }

    #[test]
    fn resolv_without_loopback() {
        let h = HostConfig {
            dns: vec!["1.1.1.1".into()],
            ..Default::default()
        };
        let s = resolv_conf(&h, false);
        assert!(s.contains("nameserver 1.1.1.1"));
        assert!(!s.contains("nameserver 127."));
    }

    #[test]
    fn users_in_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:100::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "users:x:100:\nwheel:x:10:bob\n").unwrap();
        assert_eq!(
            resolve_user(d.path(), "bob").unwrap(),
            (1000, 100, vec![10])
        );
        assert_eq!(
            resolve_user(d.path(), "bob:wheel").unwrap(),
            (1000, 10, vec![])
        );
        assert_eq!(resolve_user(d.path(), "1000").unwrap(), (1000, 100, vec![]));
        assert_eq!(resolve_user(d.path(), "5:6").unwrap(), (5, 6, vec![]));
        assert!(resolve_user(d.path(), "nobody").is_err());
        // a symlink pointing outside the root stays inside
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(d.path(), "daemon").is_err());
    }
}

#[cfg(test)]
mod mkdir_in_root_tests {
    use super::mkdir_all_in_root;

    #[test]
    fn creates_missing_dirs_and_stays_inside_the_root() {
        let host = tempfile::Builder::new()
            .prefix("berthtest-mkdir")
            .tempdir()
            .unwrap();
        let root = host.path().join("root");
        let outside = host.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // an absolute symlink and a ..-symlink pointing at the host's "outside" dir
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("rel")).unwrap();

        mkdir_all_in_root(&root, "/work/dir").unwrap();
        assert!(root.join("work/dir").is_dir());
        mkdir_all_in_root(&root, "/work/dir").unwrap(); // idempotent

        // symlinks resolve inside the root: pointing at the host's dir they dangle there, and
        // the mkdir fails instead of writing outside
        assert!(mkdir_all_in_root(&root, "/abs/x").is_err());
        assert!(mkdir_all_in_root(&root, "/rel/y").is_err());
        mkdir_all_in_root(&root, "/../../z").unwrap();
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "escaped the root"
        );
        assert!(!host.path().join("z").exists());
        assert!(root.join("z").is_dir());
        // a symlink to a directory inside the root is followed there
        std::os::unix::fs::symlink("/work", root.join("inroot")).unwrap();
        mkdir_all_in_root(&root, "/inroot/q").unwrap();
        assert!(root.join("work/q").is_dir());

        std::fs::write(root.join("file"), b"").unwrap();
        assert!(mkdir_all_in_root(&root, "/file/sub").is_err());
    }
}
