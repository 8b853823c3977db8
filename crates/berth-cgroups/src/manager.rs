//! The per-container cgroup manager.

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::mountinfo::{self, Membership, Mounted};
use crate::path::{self, CgroupPath};
use crate::stats::Stats;
use crate::Layout;

/// The container's cgroup in one mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// 1 or 2.
    pub version: u8,
    /// v1: controllers of the hierarchy (e.g. `["cpu", "cpuacct"]`, `["name=systemd"]`); v2: empty.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted on the host (e.g. /sys/fs/cgroup/cpu).
    pub mount_point: PathBuf,
    /// The container's cgroup directory.
    pub dir: PathBuf,
}

impl Hierarchy {
    /// The mount options to mount this hierarchy (`cgroup` fs) inside a container, e.g.
    /// "cpu,cpuacct" or "name=systemd"; empty for cgroup2.
    pub fn mount_options(&self) -> String {
        self.controllers.join(",")
    }

    /// The last component of the host mount point ("cpu,cpuacct", "systemd", "unified"), i.e.
    /// the directory under the container's /sys/fs/cgroup where this hierarchy conventionally
    /// goes. On a pure v2 host the unified hierarchy goes at /sys/fs/cgroup itself instead.
    pub fn mount_name(&self) -> String {
        self.mount_point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The freezer state of a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Being frozen (v1 FREEZING, or v2 cgroup.freeze=1 while cgroup.events says not yet frozen).
    Freezing,
    /// Frozen.
    Frozen,
    /// No freezer available, or the cgroup does not exist.
    Unknown,
}

/// The cgroups of one container. Serialisable, so a later process can reuse it; or rebuild it
/// with [`Manager::new`] from the same `(cgroups_path, id)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manager {
    pub(crate) layout: Layout,
    pub(crate) id: String,
    pub(crate) hierarchies: Vec<Hierarchy>,
}

pub(crate) fn read_text(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_text(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        value: value.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_mounts() -> Result<Vec<Mounted>, CgroupError> {
    mountinfo::parse_mountinfo(&read_text(Path::new("/proc/self/mountinfo"))?)
}

/// Compute the container's directory in every hierarchy (pure).
pub fn plan_hierarchies(
    mounts: &[Mounted],
    memberships: &[Membership],
    cg: &CgroupPath,
) -> Result<(Layout, Vec<Hierarchy>), CgroupError> {
    let layout = mountinfo::layout_of(mounts)?;
    let mut out = Vec::new();
    for m in mounts {
        let base = match cg {
            CgroupPath::Absolute(_) => m.mount_point.clone(),
            CgroupPath::Relative(_) => {
                mountinfo::current_dir(m, memberships).ok_or_else(|| CgroupError::Parse {
                    path: PathBuf::from("/proc/self/cgroup"),
                    reason: format!(
                        "own cgroup in the hierarchy mounted at {} not found or not visible",
                        m.mount_point.display()
                    ),
                })?
            }
        };
        out.push(Hierarchy {
            version: m.version,
            controllers: m.controllers.clone(),
            mount_point: m.mount_point.clone(),
            dir: mountinfo::join_rel(&base, &cg.components().join("/")),
        });
    }
    Ok((layout, out))
}

fn mkdir_p(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::Dir {
        op: "mkdir",
        path: dir.to_path_buf(),
        source,
    })
}

/// The directories from `top` (exclusive) down to `dir` (inclusive).
fn chain(top: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut cur = dir.to_path_buf();
    while cur.starts_with(top) && cur != top {
        v.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    v.reverse();
    v
}

impl Manager {
    /// Resolve `cgroups_path` (see [`path::resolve`]) against the hierarchies mounted on this
    /// host. Touches nothing.
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        let cg = path::resolve(cgroups_path, container_id)?;
        let mounts = read_mounts()?;
        let memberships = match cg {
            CgroupPath::Relative(_) => {
                mountinfo::parse_proc_cgroup(&read_text(Path::new("/proc/self/cgroup"))?)?
            }
            CgroupPath::Absolute(_) => Vec::new(),
        };
        let (layout, hierarchies) = plan_hierarchies(&mounts, &memberships, &cg)?;
        Ok(Manager {
            layout,
            id: container_id.to_string(),
            hierarchies,
        })
    }

    /// A manager over exactly these hierarchies (for example one rebuilt from saved state).
    pub fn from_parts(layout: Layout, container_id: &str, hierarchies: Vec<Hierarchy>) -> Self {
        Manager {
            layout,
            id: container_id.to_string(),
            hierarchies,
        }
    }

    /// Keep only the hierarchies `keep` accepts (e.g. only cgroup2, or skip `name=` ones).
    pub fn restrict(mut self, keep: impl Fn(&Hierarchy) -> bool) -> Self {
        self.hierarchies.retain(|h| keep(h));
        self
    }

    /// Whether the container's cgroup exists in any hierarchy (e.g. before `delete`).
    pub fn exists(&self) -> bool {
        self.hierarchies.iter().any(|h| h.dir.is_dir())
    }

    /// The host's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's cgroup in every hierarchy (for mounting cgroups inside the container).
    pub fn paths(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The cgroup directory of a v1 controller, if that controller has a v1 hierarchy.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.version == 1 && h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The cgroup directory in the unified hierarchy, if one is mounted.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.version == 2)
            .map(|h| h.dir.as_path())
    }

    fn v2_hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == 2)
    }

    /// Controllers usable in our unified cgroup (its `cgroup.controllers`, or its parent's before
    /// creation).
    pub(crate) fn v2_controllers(&self) -> Vec<String> {
        let Some(h) = self.v2_hierarchy() else {
            return Vec::new();
        };
        let mut p = h.dir.clone();
        loop {
            if let Ok(t) = fs::read_to_string(p.join("cgroup.controllers")) {
                return t.split_whitespace().map(str::to_string).collect();
            }
            if p == h.mount_point || !p.pop() {
                return Vec::new();
            }
        }
    }

    /// Create the container's cgroup in every hierarchy. v1 cpuset parents get their
    /// `cpuset.cpus`/`cpuset.mems` from their parent first; in v2 every available controller is
    /// enabled in the `cgroup.subtree_control` of each ancestor. Idempotent.
    pub fn create(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            if h.version == 2 {
                self.enable_v2_controllers(h)?;
                mkdir_p(&h.dir)?;
            } else if h.controllers.iter().any(|c| c == "cpuset") {
                for d in chain(&h.mount_point, &h.dir) {
                    match fs::create_dir(&d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == IoKind::AlreadyExists => {}
                        Err(source) => {
                            return Err(CgroupError::Dir {
                                op: "mkdir",
                                path: d,
                                source,
                            })
                        }
                    }
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let cur = read_text(&d.join(f))?;
                        if cur.trim().is_empty() {
                            let parent = d.parent().unwrap_or(&h.mount_point);
                            let v = read_text(&parent.join(f))?;
                            write_text(&d.join(f), v.trim())?;
                        }
                    }
                }
            } else {
                mkdir_p(&h.dir)?;
            }
        }
        Ok(())
    }

    fn enable_v2_controllers(&self, h: &Hierarchy) -> Result<(), CgroupError> {
        let mut d = h.mount_point.clone();
        let ancestors = chain(&h.mount_point, &h.dir);
        for next in ancestors.iter() {
            if !d.exists() {
                mkdir_p(&d)?;
            }
            let avail = fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default();
            let enabled = fs::read_to_string(d.join("cgroup.subtree_control")).unwrap_or_default();
            for c in avail.split_whitespace() {
                if !enabled.split_whitespace().any(|e| e == c) {
                    // Best effort: a controller that cannot be enabled (e.g. processes in an
                    // inner node) is reported by apply() only if the spec needs it.
                    let _ = fs::write(d.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
            d = next.clone();
        }
        Ok(())
    }

    /// Move process `pid` (all its threads) into the container's cgroup in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            write_text(&h.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Apply the spec's resource limits.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        crate::resources::apply(self, r)
    }

    /// Freeze every process of the cgroup and wait until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaw the cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Some(d) = self.v1_dir("freezer") {
            let want = if frozen { "FROZEN" } else { "THAWED" };
            loop {
                write_text(&d.join("freezer.state"), want)?;
                let st = read_text(&d.join("freezer.state"))?;
                if st.trim() == want {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::Busy {
                        path: d.join("freezer.state"),
                        waited_ms: 5000,
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if let Some(d) = self.v2_dir() {
            write_text(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
            loop {
                let ev = read_text(&d.join("cgroup.events"))?;
                let is = kv_lookup(&ev, "frozen") == Some(1);
                if is == frozen {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::Busy {
                        path: d.join("cgroup.events"),
                        waited_ms: 5000,
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Err(CgroupError::Unsupported(
            "freezer: no v1 freezer hierarchy and no cgroup2 mount".into(),
        ))
    }

    /// The freezer state.
    pub fn state(&self) -> FreezerState {
        if let Some(d) = self.v1_dir("freezer") {
            return match fs::read_to_string(d.join("freezer.state"))
                .as_deref()
                .map(str::trim)
            {
                Ok("THAWED") => FreezerState::Thawed,
                Ok("FREEZING") => FreezerState::Freezing,
                Ok("FROZEN") => FreezerState::Frozen,
                _ => FreezerState::Unknown,
            };
        }
        if let Some(d) = self.v2_dir() {
            let want = fs::read_to_string(d.join("cgroup.freeze"));
            let ev = fs::read_to_string(d.join("cgroup.events"));
            return match (want.as_deref().map(str::trim), ev) {
                (Ok("0"), Ok(_)) => FreezerState::Thawed,
                (Ok("1"), Ok(ev)) if kv_lookup(&ev, "frozen") == Some(1) => FreezerState::Frozen,
                (Ok("1"), Ok(_)) => FreezerState::Freezing,
                _ => FreezerState::Unknown,
            };
        }
        FreezerState::Unknown
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        self.v2_dir()
            .or_else(|| self.v1_dir("pids"))
            .or_else(|| self.v1_dir("freezer"))
            .or_else(|| self.hierarchies.first().map(|h| h.dir.as_path()))
    }

    /// The processes of the container's cgroup (and of cgroups nested below it).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(d) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        collect_pids(d, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Resource usage, shaped like the `data` object of runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        crate::stats::collect(self)
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        if let Some(d) = self.v1_dir("memory") {
            let p = d.join("memory.oom_control");
            return kv_lookup(&read_text(&p)?, "oom_kill").ok_or_else(|| CgroupError::Parse {
                path: p,
                reason: "no oom_kill line".into(),
            });
        }
        if let Some(d) = self.v2_dir() {
            let p = d.join("memory.events");
            return kv_lookup(&read_text(&p)?, "oom_kill").ok_or_else(|| CgroupError::Parse {
                path: p,
                reason: "no oom_kill line".into(),
            });
        }
        Err(CgroupError::Unsupported("no memory controller".into()))
    }

    /// Send `signal` to every process of the cgroup. With SIGKILL on v2, uses `cgroup.kill`;
    /// otherwise freezes the cgroup (so no process escapes by forking), signals each process,
    /// and thaws it.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        if signal == libc::SIGKILL {
            if let Some(d) = self.v2_dir() {
                let f = d.join("cgroup.kill");
                if f.exists() {
                    return write_text(&f, "1");
                }
            }
        }
        let frozen = self.freeze().is_ok();
        let mut result = Ok(());
        for pid in self.pids()? {
            if let Err(e) = send_signal(pid, signal) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        result
    }

    /// Remove the container's cgroup (and any cgroups nested in it) from every hierarchy,
    /// retrying for a short while when processes are still draining. Idempotent.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        let mut pending: Vec<&Path> = self.hierarchies.iter().map(|h| h.dir.as_path()).collect();
        loop {
            let mut busy = Vec::new();
            for d in pending {
                match rmdir_tree(d)? {
                    true => {}
                    false => busy.push(d),
                }
            }
            let Some(first) = busy.first() else {
                return Ok(());
            };
            let waited = start.elapsed();
            if waited > DESTROY_WAIT {
                return Err(CgroupError::Busy {
                    path: first.to_path_buf(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
            pending = busy;
        }
    }

    /// Kill whatever is left in the cgroup (SIGKILL), then [`destroy`](Self::destroy) it.
    pub fn kill_and_destroy(&self) -> Result<(), CgroupError> {
        if self.hierarchies.iter().any(|h| h.dir.exists()) {
            let _ = self.kill_all(libc::SIGKILL);
        }
        self.destroy()
    }
}

fn send_signal(pid: i32, signal: i32) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Kill {
        pid,
        signal,
        source,
    };
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| err(std::io::Error::from_raw_os_error(libc::ESRCH)))?;
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    match rustix::process::kill_process(p, sig) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        Err(e) => Err(err(e.into())),
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let text = match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(t) => t,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.join("cgroup.procs"),
                source,
            })
        }
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// How long [`Manager::destroy`] waits for processes to leave.
const DESTROY_WAIT: Duration = Duration::from_millis(1000);

/// Remove a cgroup directory and the cgroups nested below it, deepest first. `Ok(false)` when
/// a cgroup is still busy (has processes).
fn rmdir_tree(dir: &Path) -> Result<bool, CgroupError> {
    let mut all = true;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                all &= rmdir_tree(&e.path())?;
            }
        }
    }
    if !all {
        return Ok(false);
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == IoKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(source) => Err(CgroupError::Dir {
            op: "rmdir",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The value of `key` in a "key value" per line file (memory.events, memory.oom_control...).
pub(crate) fn kv_lookup(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn plans_absolute_and_relative_paths() {
        let mounts = mountinfo::parse_mountinfo(HYBRID).unwrap();
        let own = mountinfo::parse_proc_cgroup(
            "3:name=systemd:/user.slice\n2:memory:/mem/x\n1:cpu,cpuacct:/\n0::/u/v\n",
        )
        .unwrap();
        let abs = path::resolve(None, "id1").unwrap();
        let (layout, hs) = plan_hierarchies(&mounts, &own, &abs).unwrap();
        assert_eq!(layout, Layout::Hybrid);
        let dirs: Vec<_> = hs.iter().map(|h| h.dir.display().to_string()).collect();
        assert_eq!(
            dirs,
            vec![
                "/sys/fs/cgroup/cpu,cpuacct/berth/id1",
                "/sys/fs/cgroup/memory/berth/id1",
                "/sys/fs/cgroup/systemd/berth/id1",
                "/sys/fs/cgroup/unified/berth/id1",
            ]
        );
        assert_eq!(hs[0].mount_options(), "cpu,cpuacct");
        assert_eq!(hs[0].mount_name(), "cpu,cpuacct");
        assert_eq!(hs[3].mount_options(), "");
        let rel = path::resolve(Some("ctr/a"), "a").unwrap();
        let (_, hs) = plan_hierarchies(&mounts, &own, &rel).unwrap();
        let dirs: Vec<_> = hs.iter().map(|h| h.dir.display().to_string()).collect();
        assert_eq!(
            dirs,
            vec![
                "/sys/fs/cgroup/cpu,cpuacct/ctr/a",
                "/sys/fs/cgroup/memory/mem/x/ctr/a",
                "/sys/fs/cgroup/systemd/user.slice/ctr/a",
                "/sys/fs/cgroup/unified/u/v/ctr/a",
            ]
        );
        // relative path, but the process's cgroup is unknown in one hierarchy
        let partial = mountinfo::parse_proc_cgroup("2:memory:/m\n").unwrap();
        assert!(plan_hierarchies(&mounts, &partial, &rel).is_err());
    }

    #[test]
    fn manager_json_roundtrip() {
        let m = Manager::from_parts(
            Layout::V2,
            "x",
            vec![Hierarchy {
                version: 2,
                controllers: vec![],
                mount_point: "/sys/fs/cgroup".into(),
                dir: "/sys/fs/cgroup/berth/x".into(),
            }],
        );
        let j = serde_json::to_string(&m).unwrap();
        assert!(j.contains("\"layout\":\"v2\""), "{j}");
        assert_eq!(serde_json::from_str::<Manager>(&j).unwrap(), m);
    }

    #[test]
    fn kv_lookup_reads_flat_files() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(kv_lookup(t, "oom_kill"), Some(3));
        assert_eq!(kv_lookup(t, "missing"), None);
        assert_eq!(kv_lookup("populated 1\nfrozen 1\n", "frozen"), Some(1));
    }
}
