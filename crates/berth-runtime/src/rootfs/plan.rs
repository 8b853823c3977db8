//! Pure planning: the spec's mounts, devices and the host's cgroup layout turned into ordered
//! lists of work, so that the order and choices are unit-testable without root.

use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

use super::options::{parse_options, MountOptions};
use super::RootfsError;
use berth_sys::mount::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// What kind of work a planned mount needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// Bind (or rbind) of a host path.
    Bind,
    /// A new filesystem instance of the given type (tmpfs, proc, devpts, mqueue, ...).
    Fs(String),
    /// sysfs: a new instance, or a read-only rbind of the host's /sys when the kernel refuses.
    Sysfs,
    /// The cgroup filesystem(s): `cgroup` (whatever the host has) or `cgroup2` in the spec.
    Cgroup {
        /// The spec asked for `cgroup2`.
        v2: bool,
    },
}

/// One mount to perform inside the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// Index in `spec.mounts`, `None` for mounts berth adds (the default /dev).
    pub index: Option<usize>,
    /// Lexically cleaned absolute destination inside the container.
    pub destination: String,
    /// The kind of mount.
    pub kind: MountKind,
    /// The source as given (a host path for binds; a label otherwise).
    pub source: Option<String>,
    /// Parsed options.
    pub options: MountOptions,
}

/// The whole mount plan of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Mounts in the order to perform them.
    pub mounts: Vec<PlannedMount>,
    /// Whether berth populates /dev (devices, symlinks): false when /dev is a bind mount.
    pub setup_dev: bool,
}

/// Lexically clean `dest` into an absolute path (`a/../b/./c` -> `/b/c`); `..` never climbs
/// above `/`. `None` for an empty path.
pub fn clean_path(dest: &str) -> Option<String> {
    if dest.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in dest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
}

/// Whether the spec puts the container in a user namespace (new or joined).
pub fn uses_user_ns(spec: &Spec) -> bool {
    has_namespace(spec, LinuxNamespaceType::User)
}

/// Whether the spec puts the container in a cgroup namespace.
pub fn uses_cgroup_ns(spec: &Spec) -> bool {
    has_namespace(spec, LinuxNamespaceType::Cgroup)
}

fn synth(dest: &str, fstype: &str, opts: &[&str]) -> PlannedMount {
    PlannedMount {
        index: None,
        destination: dest.to_string(),
        kind: MountKind::Fs(fstype.to_string()),
        source: Some(fstype.to_string()),
        // the option lists below are constants that parse
        options: parse_options(opts).unwrap_or_default(),
    }
}

/// Plan the spec's mounts. When the spec has no /dev mount, berth first mounts a tmpfs on /dev
/// (mode 755, nosuid, strictatime) and, unless the spec has them, a devpts on /dev/pts
/// (newinstance, ptmxmode=0666, mode=0620, gid=5 outside user namespaces) and a tmpfs on
/// /dev/shm (mode 1777, 64 MiB, nosuid, nodev, noexec). sysfs is read-only without a network
/// namespace (runc's rule: the host's network devices would show otherwise).
pub fn plan_mounts(spec: &Spec) -> Result<MountPlan, RootfsError> {
    let userns = uses_user_ns(spec);
    let netns = has_namespace(spec, LinuxNamespaceType::Network);
    let spec_mounts = spec.mounts().as_deref().unwrap_or(&[]);

    let mut planned = Vec::with_capacity(spec_mounts.len() + 3);
    for (i, m) in spec_mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination().to_str().ok_or_else(|| {
            RootfsError::invalid(format!("{field}.destination"), "not valid UTF-8")
        })?;
        let destination = clean_path(dest)
            .ok_or_else(|| RootfsError::invalid(format!("{field}.destination"), "empty"))?;
        let source = match m.source() {
            Some(s) => Some(
                s.to_str()
                    .ok_or_else(|| {
                        RootfsError::invalid(format!("{field}.source"), "not valid UTF-8")
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let raw = m.options().as_deref().unwrap_or(&[]);
        let mut options = parse_options(raw).map_err(|u| RootfsError::Invalid {
            field: format!("{field}.options"),
            reason: format!("option {:?} is not supported", u.0),
            unsupported: true,
        })?;
        let typ = m.typ().as_deref().unwrap_or("");
        let kind = if options.bind || typ == "bind" {
            options.bind = true;
            if source.as_deref().is_none_or(str::is_empty) {
                return Err(RootfsError::invalid(
                    format!("{field}.source"),
                    "a bind mount needs a source",
                ));
            }
            MountKind::Bind
        } else {
            match typ {
                "" | "none" => {
                    return Err(RootfsError::invalid(
                        format!("{field}.type"),
                        "missing filesystem type",
                    ))
                }
                "sysfs" => {
                    if !netns {
                        options.attrs.set |= MOUNT_ATTR_RDONLY;
                        options.attrs.clr &= !MOUNT_ATTR_RDONLY;
                    }
                    MountKind::Sysfs
                }
                "cgroup" => MountKind::Cgroup { v2: false },
                "cgroup2" => MountKind::Cgroup { v2: true },
                t => MountKind::Fs(t.to_string()),
            }
        };
        check_proc_destination(&destination, &kind)
            .map_err(|reason| RootfsError::invalid(format!("{field}.destination"), reason))?;
        planned.push(PlannedMount {
            index: Some(i),
            destination,
            kind,
            source,
            options,
        });
    }

    let dev_mount = planned.iter().find(|m| m.destination == "/dev");
    let setup_dev = !dev_mount.is_some_and(|m| m.kind == MountKind::Bind);
    let mut mounts = Vec::new();
    if dev_mount.is_none() {
        mounts.push(synth(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ));
        if !planned.iter().any(|m| m.destination == "/dev/pts") {
            let mut opts = vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ];
            if !userns {
                opts.push("gid=5");
            }
            mounts.push(synth("/dev/pts", "devpts", &opts));
        }
        if !planned.iter().any(|m| m.destination == "/dev/shm") {
            mounts.push(synth(
                "/dev/shm",
                "tmpfs",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ));
        }
    }
    mounts.extend(planned);
    Ok(MountPlan { mounts, setup_dev })
}

/// Files under /proc that may be mount destinations (what lxcfs and friends overlay); runc
/// has the same list.
const PROC_DESTINATIONS: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Mounts over procfs files could hide or redirect what the runtime writes later (e.g.
/// /proc/self/attr for LSM labels): only a proc mount on /proc and a few known files are allowed.
fn check_proc_destination(dest: &str, kind: &MountKind) -> Result<(), String> {
    if dest == "/proc" {
        return match kind {
            MountKind::Fs(t) if t == "proc" => Ok(()),
            MountKind::Bind => Ok(()),
            _ => Err("only a proc or bind mount may be placed on /proc".into()),
        };
    }
    if dest.starts_with("/proc/") && !PROC_DESTINATIONS.contains(&dest) {
        return Err(format!(
            "{dest} cannot be mounted because it is inside /proc"
        ));
    }
    Ok(())
}

/// The kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character device (`c`, `u`).
    Char,
    /// Block device (`b`).
    Block,
    /// FIFO (`p`).
    Fifo,
}

/// One device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Cleaned absolute path inside the container (and on the host, for bind fallback).
    pub path: String,
    /// Node type.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits (default 0666).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets: null zero full random urandom tty.
pub const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The default devices followed by `linux.devices`; a spec device replaces a default one with
/// the same path.
pub fn plan_devices(spec: &Spec) -> Result<Vec<DeviceNode>, RootfsError> {
    let mut out: Vec<DeviceNode> = DEFAULT_DEVICES
        .iter()
        .map(|&(path, major, minor)| DeviceNode {
            path: path.to_string(),
            kind: DeviceKind::Char,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or(&[]);
    for (i, d) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = d
            .path()
            .to_str()
            .and_then(clean_path)
            .filter(|p| p != "/")
            .ok_or_else(|| RootfsError::invalid(format!("{field}.path"), "empty or not UTF-8"))?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::P => DeviceKind::Fifo,
            LinuxDeviceType::A => {
                return Err(RootfsError::invalid(
                    format!("{field}.type"),
                    "must be c, b, u or p",
                ))
            }
        };
        let num = |v: i64, name: &str| {
            u32::try_from(v).map_err(|_| {
                RootfsError::invalid(format!("{field}.{name}"), format!("{v} is out of range"))
            })
        };
        let node = DeviceNode {
            path,
            kind,
            major: num(d.major(), "major")?,
            minor: num(d.minor(), "minor")?,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        match out.iter_mut().find(|n| n.path == node.path) {
            Some(slot) => *slot = node,
            None => out.push(node),
        }
    }
    Ok(out)
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Root of the mount within its filesystem.
    pub root: String,
    /// Mount point.
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Superblock options (`rw,memory`).
    pub super_options: String,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse /proc/self/mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 || post.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: unescape(pre[3]),
                mount_point: unescape(pre[4]),
                mount_options: pre[5].to_string(),
                fstype: post[0].to_string(),
                super_options: post[2].to_string(),
            })
        })
        .collect()
}

/// One cgroup hierarchy to expose under the container's cgroup mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHierarchy {
    /// Directory name under the destination (`memory`, `cpu,cpuacct`, `systemd`, `unified`).
    pub name: String,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// The v1 options naming the hierarchy (`memory`, `name=systemd`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// The host directory of this process's own cgroup in that hierarchy, when visible.
    pub host_dir: Option<String>,
}

/// The host's cgroup layout as seen by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// /sys/fs/cgroup is cgroup2: the unified hierarchy only.
    Unified {
        /// The host directory of this process's cgroup.
        host_dir: Option<String>,
    },
    /// v1 controllers (plus maybe a cgroup2 at /sys/fs/cgroup/unified): the hybrid layout.
    Legacy(Vec<CgroupHierarchy>),
}

const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "clone_children",
    "noprefix",
    "xattr",
    "nsdelegate",
    "memory_recursiveprot",
    "memory_localevents",
    "memory_hugetlb_accounting",
    "favordynmods",
    "cpuset_v2_mode",
];

fn host_dir(m: &MountInfo, cg_path: &str) -> Option<String> {
    let rel = if m.root == "/" {
        cg_path
    } else {
        let rest = cg_path.strip_prefix(m.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(
        format!("{}{}", m.mount_point.trim_end_matches('/'), rel)
            .trim_end_matches('/')
            .to_string(),
    )
    .map(|s| if s.is_empty() { "/".to_string() } else { s })
}

/// Work out the cgroup hierarchies under /sys/fs/cgroup and this process's place in each, from
/// /proc/self/mountinfo and /proc/self/cgroup.
pub fn cgroup_layout(mountinfo: &[MountInfo], proc_cgroup: &str) -> CgroupLayout {
    let lines: Vec<(Vec<&str>, &str)> = proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            let ctrls = if ctrl.is_empty() {
                Vec::new()
            } else {
                ctrl.split(',').collect()
            };
            Some((ctrls, path))
        })
        .collect();
    let v2_path = lines.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| *p);
    // the last mount at a mount point is the visible one
    let top = mountinfo
        .iter()
        .rev()
        .find(|m| m.mount_point == "/sys/fs/cgroup");
    if let Some(m) = top {
        if m.fstype == "cgroup2" {
            return CgroupLayout::Unified {
                host_dir: v2_path.and_then(|p| host_dir(m, p)),
            };
        }
    }
    let mut out: Vec<CgroupHierarchy> = Vec::new();
    for m in mountinfo {
        let Some(name) = m.mount_point.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        if name.is_empty() || name.contains('/') || out.iter().any(|h| h.name == name) {
            continue;
        }
        match m.fstype.as_str() {
            "cgroup" => {
                let ctrls: Vec<String> = m
                    .super_options
                    .split(',')
                    .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
                    .map(str::to_string)
                    .collect();
                if ctrls.is_empty() {
                    continue;
                }
                let path = lines
                    .iter()
                    .find(|(c, _)| !c.is_empty() && c.iter().all(|x| ctrls.iter().any(|y| y == x)))
                    .map(|(_, p)| *p);
                out.push(CgroupHierarchy {
                    name: name.to_string(),
                    fstype: "cgroup".into(),
                    host_dir: path.and_then(|p| host_dir(m, p)),
                    controllers: ctrls,
                });
            }
            "cgroup2" => out.push(CgroupHierarchy {
                name: name.to_string(),
                fstype: "cgroup2".into(),
                controllers: Vec::new(),
                host_dir: v2_path.and_then(|p| host_dir(m, p)),
            }),
            _ => {}
        }
    }
    CgroupLayout::Legacy(out)
}

/// The symlinks runc-style layouts add for combined hierarchies: `cpu -> cpu,cpuacct`.
pub fn cgroup_symlinks(hierarchies: &[CgroupHierarchy]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in hierarchies {
        if !h.name.contains(',') {
            continue;
        }
        for part in h.name.split(',') {
            if !hierarchies.iter().any(|o| o.name == part) {
                out.push((part.to_string(), h.name.clone()));
            }
        }
    }
    out
}

/// The default read-only attributes of cgroup mounts inside the container.
pub const CGROUP_ATTRS: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

/// Validate a `linux.sysctl` key and return its path under /proc/sys (`net.ipv4.ip_forward`
/// -> `net/ipv4/ip_forward`).
pub fn sysctl_path(key: &str) -> Result<String, RootfsError> {
    let bad = |why: &str| RootfsError::invalid(format!("linux.sysctl key {key:?}"), why);
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if key.contains("..") {
        return Err(bad("must not contain '..'"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("contains a character other than [A-Za-z0-9._-]"));
    }
    if key.split('.').any(str::is_empty) {
        return Err(bad("has an empty component"));
    }
    Ok(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({"ociVersion": "1.2.0", "root": {"path": "rootfs"}});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn dests(p: &MountPlan) -> Vec<&str> {
        p.mounts.iter().map(|m| m.destination.as_str()).collect()
    }

    #[test]
    fn clean_paths() {
        for (input, want) in [
            ("/proc", Some("/proc")),
            ("proc/", Some("/proc")),
            ("/a/./b//c/", Some("/a/b/c")),
            ("/../../etc", Some("/etc")),
            ("/a/b/../../..", Some("/")),
            ("", None),
        ] {
            assert_eq!(clean_path(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn default_dev_goes_first_and_spec_order_is_kept() {
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/proc/../proc/meminfo", "type": "bind", "source": "/m"},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
            {"destination": "/data", "type": "none", "source": "/srv", "options": ["rbind"]},
        ]}));
        let p = plan_mounts(&s).unwrap();
        assert_eq!(
            dests(&p),
            [
                "/dev",
                "/dev/pts",
                "/proc",
                "/proc/meminfo",
                "/dev/shm",
                "/data"
            ]
        );
        assert!(p.setup_dev);
        assert_eq!(p.mounts[0].kind, MountKind::Fs("tmpfs".into()));
        assert_eq!(p.mounts[0].index, None);
        assert_eq!(
            p.mounts[1].options.data,
            ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        );
        assert_eq!(p.mounts[5].kind, MountKind::Bind);
        assert!(p.mounts[5].options.recursive_bind);
        assert_eq!(p.mounts[5].index, Some(3));
    }

    #[test]
    fn spec_dev_mount_is_used_and_a_bound_dev_is_left_alone() {
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        ]}));
        let p = plan_mounts(&s).unwrap();
        assert_eq!(dests(&p), ["/dev"]);
        assert!(p.setup_dev);
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/dev/", "type": "bind", "source": "/dev", "options": ["rbind"]},
        ]}));
        let p = plan_mounts(&s).unwrap();
        assert_eq!(dests(&p), ["/dev"]);
        assert!(!p.setup_dev);
    }

    #[test]
    fn sysfs_is_read_only_without_a_network_namespace() {
        let m = serde_json::json!([{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["rw"]}]);
        let p = plan_mounts(&spec(serde_json::json!({"mounts": m}))).unwrap();
        let sys = p.mounts.iter().find(|m| m.destination == "/sys").unwrap();
        assert!(sys.options.readonly());
        let p = plan_mounts(&spec(serde_json::json!({
            "mounts": m,
            "linux": {"namespaces": [{"type": "network"}]}
        })))
        .unwrap();
        let sys = p.mounts.iter().find(|m| m.destination == "/sys").unwrap();
        assert!(!sys.options.readonly());
    }

    #[test]
    fn user_namespace_devpts_has_no_gid() {
        let p = plan_mounts(&spec(serde_json::json!({
            "linux": {"namespaces": [{"type": "user"}]}
        })))
        .unwrap();
        let pts = p
            .mounts
            .iter()
            .find(|m| m.destination == "/dev/pts")
            .unwrap();
        assert!(!pts.options.data.iter().any(|d| d.starts_with("gid=")));
    }

    #[test]
    fn bad_mounts_name_the_field() {
        for (m, want) in [
            (
                serde_json::json!({"destination": "/x", "type": "bind"}),
                "invalid mounts[0].source: a bind mount needs a source",
            ),
            (
                serde_json::json!({"destination": "", "type": "tmpfs"}),
                "invalid mounts[0].destination: empty",
            ),
            (
                serde_json::json!({"destination": "/x", "source": "x"}),
                "invalid mounts[0].type: missing filesystem type",
            ),
            (
                serde_json::json!({"destination": "/proc/self/attr/exec", "type": "bind", "source": "/x"}),
                "invalid mounts[0].destination: /proc/self/attr/exec cannot be mounted because it is inside /proc",
            ),
            (
                serde_json::json!({"destination": "/proc", "type": "tmpfs", "source": "x"}),
                "invalid mounts[0].destination: only a proc or bind mount may be placed on /proc",
            ),
            (
                serde_json::json!({"destination": "/x", "type": "bind", "source": "/x", "options": ["idmap"]}),
                "invalid mounts[0].options: option \"idmap\" is not supported",
            ),
        ] {
            let err = plan_mounts(&spec(serde_json::json!({ "mounts": [m] }))).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn devices_defaults_overrides_and_errors() {
        let s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "uid": 5, "gid": 6},
            {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0},
            {"path": "/dev/pipe", "type": "p"},
        ]}}));
        let d = plan_devices(&s).unwrap();
        let paths: Vec<_> = d.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/net/tun",
                "/dev/loop0",
                "/dev/pipe"
            ]
        );
        assert_eq!(d[0].mode, 0o600);
        assert_eq!(d[1].mode, 0o666);
        assert_eq!(
            (d[6].major, d[6].minor, d[6].uid, d[6].gid),
            (10, 200, 5, 6)
        );
        assert_eq!(d[7].kind, DeviceKind::Block);
        assert_eq!(d[8].kind, DeviceKind::Fifo);

        let s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/x", "type": "a"}
        ]}}));
        assert_eq!(
            plan_devices(&s).unwrap_err().to_string(),
            "invalid linux.devices[0].type: must be c, b, u or p"
        );
        let s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/x", "type": "c", "major": -1}
        ]}}));
        assert_eq!(
            plan_devices(&s).unwrap_err().to_string(),
            "invalid linux.devices[0].major: -1 is out of range"
        );
    }

    const HYBRID_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/a54c
1:cpu,cpuacct:/berth/c1
0::/berth/c1
";

    #[test]
    fn mountinfo_unescapes_paths() {
        let m = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(m.len(), 8);
        assert_eq!(m[7].mount_point, "/mnt/with space");
        assert_eq!(m[3].super_options, "rw,cpu,cpuacct");
        assert_eq!(m[0].fstype, "ext4");
    }

    #[test]
    fn hybrid_cgroup_layout() {
        let layout = cgroup_layout(&parse_mountinfo(HYBRID_MOUNTINFO), HYBRID_CGROUP);
        let CgroupLayout::Legacy(h) = layout else {
            panic!("not legacy: {layout:?}")
        };
        let got: Vec<(&str, &str, Option<&str>)> = h
            .iter()
            .map(|h| (h.name.as_str(), h.fstype.as_str(), h.host_dir.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "cpu,cpuacct",
                    "cgroup",
                    Some("/sys/fs/cgroup/cpu,cpuacct/berth/c1")
                ),
                (
                    "memory",
                    "cgroup",
                    Some("/sys/fs/cgroup/memory/process_api/a54c")
                ),
                ("systemd", "cgroup", Some("/sys/fs/cgroup/systemd")),
                (
                    "unified",
                    "cgroup2",
                    Some("/sys/fs/cgroup/unified/berth/c1")
                ),
            ]
        );
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[2].controllers, ["name=systemd"]);
        assert_eq!(
            cgroup_symlinks(&h),
            [
                ("cpu".to_string(), "cpu,cpuacct".to_string()),
                ("cpuacct".to_string(), "cpu,cpuacct".to_string())
            ]
        );
    }

    #[test]
    fn unified_cgroup_layout_and_foreign_roots() {
        let mi = parse_mountinfo(
            "30 20 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            cgroup_layout(&mi, "0::/system.slice/x.scope\n"),
            CgroupLayout::Unified {
                host_dir: Some("/sys/fs/cgroup/system.slice/x.scope".into())
            }
        );
        // a mount whose root is not an ancestor of our cgroup (e.g. seen from a cgroup
        // namespace): no host directory to bind
        let mi =
            parse_mountinfo("30 20 0:26 /other /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
        assert_eq!(
            cgroup_layout(&mi, "0::/../mine\n"),
            CgroupLayout::Unified { host_dir: None }
        );
        let mi = parse_mountinfo("30 20 0:26 /a /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
        assert_eq!(
            cgroup_layout(&mi, "0::/a/b\n"),
            CgroupLayout::Unified {
                host_dir: Some("/sys/fs/cgroup/b".into())
            }
        );
        assert_eq!(
            cgroup_layout(&mi, "0::/ab\n"),
            CgroupLayout::Unified { host_dir: None }
        );
    }

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("kernel.shm_rmid_forced").unwrap(),
            "kernel/shm_rmid_forced"
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth-0.forwarding").unwrap(),
            "net/ipv4/conf/eth-0/forwarding"
        );
        for bad in [
            "",
            "net/ipv4",
            "net..ipv4",
            "..",
            ".net",
            "net.",
            "a b",
            "net.ipv4.\0",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }
}
