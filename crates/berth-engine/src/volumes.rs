//! Named volumes (the `local` driver): `<data-root>/volumes/<name>/_data`, metadata in the
//! engine database's `volumes` table.
//!
//! Driver options follow Docker's local driver: `type`, `device`, `o` (e.g. `type=tmpfs
//! device=tmpfs o=size=64m` or `type=none o=bind device=/srv/x`). Such volumes are mounted on
//! `_data` when the first container mounts them ([`VolumeStore::mount`]) and unmounted after the
//! last one ([`VolumeStore::unmount`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::db::EngineDb;
use crate::events::{Event, EventBus};
use crate::filters::Filters;
use crate::EngineError;

/// The label Docker puts on anonymous volumes (`-v /data`); prune removes only those by default.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume as the API shows it (`GET /volumes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Always `local`.
    pub driver: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The host directory containers bind (`<root>/<name>/_data`).
    pub mountpoint: PathBuf,
    /// Name.
    pub name: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Always `local`.
    pub scope: String,
}

/// `POST /volumes/create` body (unknown fields ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CreateVolume {
    /// Name; empty = a random 64-hex name.
    pub name: Option<String>,
    /// Driver; empty or `local`.
    pub driver: Option<String>,
    /// Local driver options: `type`, `device`, `o`.
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names removed.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub reclaimed: u64,
}

/// Parsed local-driver options: the mount to make on `_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMount {
    /// Filesystem type (`tmpfs`, `ext4`, `none` for a bind).
    pub fstype: String,
    /// Source device or path.
    pub device: String,
    /// Whether this is a bind mount (`o=bind`/`rbind`).
    pub bind: bool,
    /// Recursive bind.
    pub rbind: bool,
    /// Read-only.
    pub readonly: bool,
    /// nosuid, nodev, noexec.
    pub nosuid: bool,
    /// nodev.
    pub nodev: bool,
    /// noexec.
    pub noexec: bool,
    /// The remaining `o` entries, passed as mount data (`size=64m,uid=1000`).
    pub data: String,
}

/// Validate Docker local-driver options; `None` when the volume is a plain directory.
pub fn parse_local_opts(
    opts: &BTreeMap<String, String>,
) -> Result<Option<LocalMount>, EngineError> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
            return Err(EngineError::invalid(format!("invalid option key: {k:?}")));
        }
    }
    if opts.contains_key("size") {
        return Err(EngineError::unsupported(
            "quota size requested but no quota support",
        ));
    }
    let fstype = opts.get("type").cloned().unwrap_or_default();
    let device = opts.get("device").cloned().unwrap_or_default();
    let o = opts.get("o").cloned().unwrap_or_default();
    if fstype.is_empty() && device.is_empty() && o.is_empty() {
        return Ok(None);
    }
    if fstype.is_empty() {
        return Err(EngineError::invalid("missing required option: \"type\""));
    }
    if device.is_empty() {
        return Err(EngineError::invalid("missing required option: \"device\""));
    }
    let mut m = LocalMount {
        fstype,
        device,
        bind: false,
        rbind: false,
        readonly: false,
        nosuid: false,
        nodev: false,
        noexec: false,
        data: String::new(),
    };
    let mut data = Vec::new();
    for item in o.split(',').filter(|s| !s.is_empty()) {
        match item {
            "bind" => m.bind = true,
            "rbind" => {
                m.bind = true;
                m.rbind = true
            }
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            "nosuid" => m.nosuid = true,
            "nodev" => m.nodev = true,
            "noexec" => m.noexec = true,
            other => data.push(other),
        }
    }
    m.data = data.join(",");
    if m.bind && !m.device.starts_with('/') {
        return Err(EngineError::invalid(format!(
            "invalid bind device {:?}: must be an absolute path",
            m.device
        )));
    }
    Ok(Some(m))
}

/// Docker's rule for local volume names.
pub fn validate_name(name: &str) -> Result<(), EngineError> {
    let b = name.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

/// The volume store.
#[derive(Debug)]
pub struct VolumeStore {
    root: PathBuf,
    db: Arc<EngineDb>,
    events: EventBus,
    /// Per volume with a driver mount: the containers that mounted it.
    mounts: Mutex<HashMap<String, BTreeSet<String>>>,
}

fn row_to_volume(root: &Path, r: &rusqlite::Row<'_>) -> rusqlite::Result<Volume> {
    let name: String = r.get(0)?;
    let labels: String = r.get(2)?;
    let options: String = r.get(3)?;
    Ok(Volume {
        mountpoint: root.join(&name).join("_data"),
        name,
        driver: r.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        created_at: r.get(4)?,
        scope: "local".into(),
    })
}

impl VolumeStore {
    /// Open the store rooted at `root` (`<data-root>/volumes`).
    pub fn open(root: &Path, db: Arc<EngineDb>, events: EventBus) -> Result<Self, EngineError> {
        std::fs::create_dir_all(root)
            .map_err(|e| EngineError::io(format!("create {}", root.display()), e))?;
        db.with("create volumes table", |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS volumes (
                    name TEXT PRIMARY KEY,
                    driver TEXT NOT NULL,
                    labels TEXT NOT NULL,
                    options TEXT NOT NULL,
                    created_at TEXT NOT NULL
                )",
            )
        })?;
        Ok(VolumeStore {
            root: root.to_path_buf(),
            db,
            events,
            mounts: Mutex::new(HashMap::new()),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A volume by name (404 `get NAME: no such volume`).
    pub fn get(&self, name: &str) -> Result<Volume, EngineError> {
        let root = self.root.clone();
        self.db
            .with("get volume", |c| {
                c.query_row(
                    "SELECT name, driver, labels, options, created_at FROM volumes WHERE name = ?1",
                    [name],
                    |r| row_to_volume(&root, r),
                )
                .optional()
            })?
            .ok_or_else(|| EngineError::not_found(format!("get {name}: no such volume")))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, EngineError> {
        let root = self.root.clone();
        self.db.with("list volumes", |c| {
            let mut st = c.prepare(
                "SELECT name, driver, labels, options, created_at FROM volumes ORDER BY name",
            )?;
            let rows = st.query_map([], |r| row_to_volume(&root, r))?;
            rows.collect()
        })
    }

    /// Create a volume (idempotent for an existing name with the same options, as Docker).
    pub fn create(&self, req: CreateVolume) -> Result<Volume, EngineError> {
        let driver = req
            .driver
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "local".into());
        if driver != "local" {
            return Err(EngineError::not_found(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let opts = req.driver_opts.unwrap_or_default();
        parse_local_opts(&opts)?;
        let labels = req.labels.unwrap_or_default();
        let name = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => {
                validate_name(&n)?;
                n
            }
            None => crate::random_hex(32)?,
        };
        if let Ok(v) = self.get(&name) {
            if !opts.is_empty() && v.options != opts {
                return Err(EngineError::conflict(format!(
                    "volume {name} already exists with different options"
                )));
            }
            return Ok(v);
        }
        let dir = self.root.join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data).map_err(|e| {
            EngineError::io(format!("create volume directory {}", data.display()), e)
        })?;
        let created_at = berth_image::timefmt::now_rfc3339();
        let labels_s = serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into());
        let opts_s = serde_json::to_string(&opts).unwrap_or_else(|_| "{}".into());
        let ins = self.db.with("insert volume", |c| {
            c.execute(
                "INSERT INTO volumes (name, driver, labels, options, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![name, driver, labels_s, opts_s, created_at],
            )
        });
        if let Err(e) = ins {
            // a racing create of the same name wins; anything else: roll back the directory
            if let Ok(v) = self.get(&name) {
                return Ok(v);
            }
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.events
            .publish(Event::new("volume", "create", &name).attr("driver", "local"));
        self.get(&name)
    }

    /// Remove a volume. `users` are the containers using it (non-empty = 409 in use).
    /// With `force`, a missing volume is not an error.
    pub fn remove(&self, name: &str, force: bool, users: &[String]) -> Result<(), EngineError> {
        let v = match self.get(name) {
            Ok(v) => v,
            Err(e) if force && e.kind() == berth_core::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !users.is_empty() {
            return Err(EngineError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        {
            let mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
            if mounts.get(name).is_some_and(|s| !s.is_empty()) {
                return Err(EngineError::conflict(format!(
                    "remove {name}: volume is in use - [{}]",
                    mounts[name].iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        // Never delete through a live mount (a bind volume would delete host files).
        if is_mountpoint(&v.mountpoint)? {
            detach(&v.mountpoint)?;
            if is_mountpoint(&v.mountpoint)? {
                return Err(EngineError::conflict(format!(
                    "remove {name}: {} is still mounted",
                    v.mountpoint.display()
                )));
            }
        }
        self.db.with("delete volume", |c| {
            c.execute("DELETE FROM volumes WHERE name = ?1", [name])
        })?;
        let dir = self.root.join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EngineError::io(
                    format!("remove volume directory {}", dir.display()),
                    e,
                ))
            }
        }
        self.events
            .publish(Event::new("volume", "destroy", name).attr("driver", "local"));
        Ok(())
    }

    /// Prepare a volume for container `container`: mount the driver options on `_data` at first
    /// use. Returns the host directory to bind into the container. Idempotent per container;
    /// after a daemon restart, call it again for the volumes of running containers (the user
    /// set lives in memory; a driver mount still in place is reused, not mounted twice).
    pub fn mount(&self, name: &str, container: &str) -> Result<PathBuf, EngineError> {
        let v = self.get(name)?;
        let spec = parse_local_opts(&v.options)?;
        let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let users = mounts.entry(name.to_string()).or_default();
        if let Some(m) = spec {
            if users.is_empty() && !is_mountpoint(&v.mountpoint)? {
                mount_local(&m, &v.mountpoint)?;
            }
        }
        users.insert(container.to_string());
        drop(mounts);
        self.events.publish(
            Event::new("volume", "mount", name)
                .attr("driver", "local")
                .attr("container", container),
        );
        Ok(v.mountpoint)
    }

    /// Container `container` no longer uses the volume; the driver mount goes with the last user.
    pub fn unmount(&self, name: &str, container: &str) -> Result<(), EngineError> {
        let v = self.get(name)?;
        let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let last = match mounts.get_mut(name) {
            Some(s) => {
                s.remove(container);
                s.is_empty()
            }
            None => true,
        };
        if last {
            mounts.remove(name);
            if !v.options.is_empty() && is_mountpoint(&v.mountpoint)? {
                detach(&v.mountpoint)?;
            }
        }
        drop(mounts);
        self.events.publish(
            Event::new("volume", "unmount", name)
                .attr("driver", "local")
                .attr("container", container),
        );
        Ok(())
    }

    /// Containers that mounted the volume through [`VolumeStore::mount`] and have not
    /// unmounted it.
    pub fn mounted_by(&self, name: &str) -> Vec<String> {
        let mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        mounts
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Filter volumes (`name` substring, `label`, `label!`, `driver`, `dangling`). `in_use` tells
    /// whether a container uses a volume.
    pub fn filter(
        &self,
        filters: &Filters,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Volume>, EngineError> {
        filters.validate(&["name", "label", "label!", "driver", "dangling"])?;
        let dangling = filters.bool("dangling")?;
        let mut out = Vec::new();
        for v in self.list()? {
            if filters.has("name") && !filters.values("name").any(|n| v.name.contains(n)) {
                continue;
            }
            if filters.has("driver") && !filters.contains("driver", &v.driver) {
                continue;
            }
            if !filters.match_labels("label", &v.labels) {
                continue;
            }
            if filters.has("label!")
                && filters.values("label!").any(|l| match l.split_once('=') {
                    Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                    None => v.labels.contains_key(l),
                })
            {
                continue;
            }
            if let Some(d) = dangling {
                if d == in_use(&v.name) {
                    continue;
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Remove unused volumes matching `filters` (`label`, `label!`, `all`). Without `all=true`
    /// only anonymous volumes go (API >= 1.42); `all_by_default` gives the older behaviour.
    pub fn prune(
        &self,
        filters: &Filters,
        all_by_default: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<PruneReport, EngineError> {
        filters.validate(&["label", "label!", "all"])?;
        let all = filters.bool("all")?.unwrap_or(all_by_default);
        let mut f = filters.clone();
        f.remove("all");
        let mut report = PruneReport::default();
        for v in self.filter(&f, &|_| false)? {
            if in_use(&v.name) || (!all && !v.labels.contains_key(ANONYMOUS_LABEL)) {
                continue;
            }
            let size = dir_size(&v.mountpoint);
            match self.remove(&v.name, false, &[]) {
                Ok(()) => {
                    report.deleted.push(v.name);
                    report.reclaimed += size;
                }
                Err(e) => tracing::warn!("prune volume {}: {e}", v.name),
            }
        }
        self.events.publish(
            Event::new("volume", "prune", "").attr("reclaimed", report.reclaimed.to_string()),
        );
        Ok(report)
    }

    /// Bytes used under the volume's `_data` (for `/system/df`).
    pub fn usage(&self, v: &Volume) -> u64 {
        dir_size(&v.mountpoint)
    }
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> Result<bool, EngineError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| EngineError::io("read /proc/self/mountinfo", e))?;
    let want = path.to_string_lossy();
    Ok(info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    }))
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    let mut bytes = Vec::with_capacity(b.len());
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            bytes.push(v);
            i += 4;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

fn mount_local(m: &LocalMount, target: &Path) -> Result<(), EngineError> {
    use rustix::mount::{mount, mount_bind, mount_bind_recursive, mount_remount, MountFlags};
    let what = || format!("mount volume {} on {}", m.device, target.display());
    let mut flags = MountFlags::empty();
    if m.readonly {
        flags |= MountFlags::RDONLY;
    }
    if m.nosuid {
        flags |= MountFlags::NOSUID;
    }
    if m.nodev {
        flags |= MountFlags::NODEV;
    }
    if m.noexec {
        flags |= MountFlags::NOEXEC;
    }
    if m.bind {
        let r = if m.rbind {
            mount_bind_recursive(m.device.as_str(), target)
        } else {
            mount_bind(m.device.as_str(), target)
        };
        r.map_err(|e| EngineError::io(what(), e.into()))?;
        if !flags.is_empty() {
            if let Err(e) = mount_remount(target, flags | MountFlags::BIND, "") {
                let _ = detach(target);
                return Err(EngineError::io(what(), e.into()));
            }
        }
        Ok(())
    } else {
        let data = std::ffi::CString::new(m.data.as_str())
            .map_err(|_| EngineError::invalid(format!("{}: NUL in options", what())))?;
        mount(
            m.device.as_str(),
            target,
            m.fstype.as_str(),
            flags,
            Some(data.as_c_str()),
        )
        .map_err(|e| EngineError::io(what(), e.into()))
    }
}

fn detach(target: &Path) -> Result<(), EngineError> {
    use rustix::mount::{unmount, UnmountFlags};
    unmount(target, UnmountFlags::DETACH)
        .map_err(|e| EngineError::io(format!("unmount {}", target.display()), e.into()))
}

/// Apparent size of a tree (regular files' lengths), not following symlinks or other mounts.
pub fn dir_size(p: &Path) -> u64 {
    fn walk(p: &Path, dev: u64, total: &mut u64) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            use std::os::unix::fs::MetadataExt;
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                walk(&e.path(), dev, total);
            } else if md.is_file() {
                *total += md.len();
            }
        }
    }
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut total = 0;
    walk(p, md.dev(), &mut total);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names() {
        validate_name("ab").unwrap();
        validate_name("my_vol.1-x").unwrap();
        assert!(validate_name("a").is_err());
        assert!(validate_name("_a").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("../x").is_err());
    }

    #[test]
    fn local_opts() {
        assert_eq!(parse_local_opts(&BTreeMap::new()).unwrap(), None);
        let m = parse_local_opts(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=64m,uid=1000,noexec"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(m.fstype, "tmpfs");
        assert!(m.noexec && !m.bind);
        assert_eq!(m.data, "size=64m,uid=1000");
        let b = parse_local_opts(&opts(&[
            ("type", "none"),
            ("device", "/srv"),
            ("o", "bind,ro"),
        ]))
        .unwrap()
        .unwrap();
        assert!(b.bind && b.readonly);
        assert!(
            parse_local_opts(&opts(&[("type", "none"), ("device", "rel"), ("o", "bind")])).is_err()
        );
        assert!(parse_local_opts(&opts(&[("bogus", "1")])).is_err());
        assert!(parse_local_opts(&opts(&[("device", "/x")])).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
