//! Discovery of cgroup hierarchies from `/proc/self/mountinfo` and `/proc/self/cgroup`.
//!
//! Pure parsers over text, so that every layout (v1, hybrid, v2) is unit-tested from samples.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::Layout;

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounted {
    /// 1 for a cgroup v1 hierarchy, 2 for the unified hierarchy.
    pub version: u8,
    /// v1: the controllers bound to it (sorted; `name=systemd` style names included). v2: empty.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup (within the hierarchy) that the mount shows at `mount_point` (usually "/").
    pub root: String,
}

/// Mount options of a v1 cgroup mount that are not controller names.
const NON_CONTROLLER_OPTS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavordynmods",
    "memory_recursiveprot",
    "memory_localevents",
    "nsdelegate",
    "none",
];

/// Undo the octal escapes (`\040` for a space...) the kernel writes in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo` text into the cgroup hierarchies it mounts. A hierarchy mounted
/// several times is reported once (the first mount whose root is "/" wins, else the first).
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mounted>, CgroupError> {
    let mut out: Vec<(String, Mounted)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| CgroupError::Parse {
            path: PathBuf::from("/proc/self/mountinfo"),
            reason: format!("line {}: {reason}", n + 1),
        };
        let (left, right) = line
            .split_once(" - ")
            .ok_or_else(|| bad("no ' - ' separator"))?;
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 6 || rf.len() < 3 {
            return Err(bad("too few fields"));
        }
        let fstype = rf[0];
        let version = match fstype {
            "cgroup" => 1,
            "cgroup2" => 2,
            _ => continue,
        };
        let dev = lf[2].to_string();
        let root = unescape(lf[3]);
        let mount_point = PathBuf::from(unescape(lf[4]));
        let controllers = if version == 1 {
            let mut c: Vec<String> = rf[2]
                .split(',')
                .filter(|o| !NON_CONTROLLER_OPTS.contains(o) && !o.starts_with("release_agent="))
                .map(str::to_string)
                .collect();
            c.sort();
            c
        } else {
            Vec::new()
        };
        let m = Mounted {
            version,
            controllers,
            mount_point,
            root,
        };
        match out.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, existing)) => {
                if existing.root != "/" && m.root == "/" {
                    *existing = m;
                }
            }
            None => out.push((dev, m)),
        }
    }
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Hierarchy id (0 for the unified hierarchy).
    pub id: u32,
    /// Controllers (sorted), empty for v2.
    pub controllers: Vec<String>,
    /// The cgroup path within the hierarchy, e.g. "/user.slice".
    pub path: String,
}

/// Parse `/proc/<pid>/cgroup` text.
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<Membership>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            return Err(CgroupError::Parse {
                path: PathBuf::from("/proc/self/cgroup"),
                reason: format!("bad line {line:?}"),
            });
        };
        let id = id.parse().map_err(|_| CgroupError::Parse {
            path: PathBuf::from("/proc/self/cgroup"),
            reason: format!("bad hierarchy id in {line:?}"),
        })?;
        let mut controllers: Vec<String> = ctrls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        controllers.sort();
        out.push(Membership {
            id,
            controllers,
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Classify the layout from the mounted hierarchies.
pub fn layout_of(mounts: &[Mounted]) -> Result<Layout, CgroupError> {
    let v1 = mounts
        .iter()
        .any(|m| m.version == 1 && m.controllers.iter().any(|c| !c.starts_with("name=")));
    let v2 = mounts.iter().any(|m| m.version == 2);
    match (v1, v2) {
        (true, true) => Ok(Layout::Hybrid),
        (true, false) => Ok(Layout::V1),
        (false, true) => Ok(Layout::V2),
        (false, false) => {
            if mounts.is_empty() {
                Err(CgroupError::NoCgroupFs)
            } else {
                Ok(Layout::V1)
            }
        }
    }
}

/// The current cgroup of the process in hierarchy `m`, as a directory under its mount point.
/// `None` when the process's cgroup is outside what the mount shows.
pub fn current_dir(m: &Mounted, memberships: &[Membership]) -> Option<PathBuf> {
    let own = memberships.iter().find(|ms| {
        if m.version == 2 {
            ms.id == 0 && ms.controllers.is_empty()
        } else {
            ms.controllers == m.controllers
        }
    })?;
    let rel = strip_root(&own.path, &m.root)?;
    Some(join_rel(&m.mount_point, &rel))
}

fn strip_root(path: &str, root: &str) -> Option<String> {
    if root == "/" {
        return Some(path.to_string());
    }
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.to_string())
    } else {
        None
    }
}

/// Join a cgroup path ("/a/b" or "a/b") below a directory, component by component.
pub(crate) fn join_rel(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const HYBRID: &str = "\
22 28 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const V1_COMOUNT: &str = "\
25 19 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,net_cls,net_prio
99 30 0:27 /docker /mnt/memory\\040copy rw - cgroup cgroup rw,memory
";

    const V2: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_layout_parsed() {
        let m = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(m.len(), 10);
        assert_eq!(layout_of(&m).unwrap(), Layout::Hybrid);
        assert_eq!(m[0].controllers, vec!["cpu"]);
        assert_eq!(m[1].controllers, vec!["cpuacct"]);
        assert_eq!(m[8].controllers, vec!["name=systemd"]);
        assert_eq!(m[9].version, 2);
        assert_eq!(m[9].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn v1_comounted_and_duplicate_mounts() {
        let m = parse_mountinfo(V1_COMOUNT).unwrap();
        assert_eq!(layout_of(&m).unwrap(), Layout::V1);
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[0].controllers, vec!["name=systemd"]);
        assert_eq!(m[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            m[1].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m[3].controllers, vec!["net_cls", "net_prio"]);
        // the second mount of the memory hierarchy (root /docker) does not replace the first
        assert_eq!(m[2].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn unescapes_mount_points() {
        let t = "99 30 0:27 /docker /mnt/memory\\040copy rw - cgroup cgroup rw,memory\n";
        let m = parse_mountinfo(t).unwrap();
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/memory copy"));
        assert_eq!(m[0].root, "/docker");
    }

    #[test]
    fn pure_v2_layout() {
        let m = parse_mountinfo(V2).unwrap();
        assert_eq!(layout_of(&m).unwrap(), Layout::V2);
        assert!(matches!(layout_of(&[]), Err(CgroupError::NoCgroupFs)));
    }

    #[test]
    fn garbage_mountinfo_is_an_error_not_a_panic() {
        assert!(parse_mountinfo("garbage line\n").is_err());
        assert!(parse_mountinfo("1 2 - cgroup\n").is_err());
        assert!(parse_proc_cgroup("x:y\n").is_err());
        assert!(parse_proc_cgroup("x:y:/z\n").is_err());
    }

    #[test]
    fn proc_cgroup_and_current_dir() {
        let text = "9:name=systemd:/\n4:memory:/process_api/5ade\n2:cpuacct,cpu:/a\n0::/u\n";
        let ms = parse_proc_cgroup(text).unwrap();
        assert_eq!(ms[2].controllers, vec!["cpu", "cpuacct"]);
        let mounts = parse_mountinfo(HYBRID).unwrap();
        let mem = mounts.iter().find(|m| m.controllers == ["memory"]).unwrap();
        assert_eq!(
            current_dir(mem, &ms).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/5ade")
        );
        let uni = mounts.iter().find(|m| m.version == 2).unwrap();
        assert_eq!(
            current_dir(uni, &ms).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/u")
        );
        // cpu alone is not the cpu,cpuacct hierarchy of this process
        let cpu = mounts.iter().find(|m| m.controllers == ["cpu"]).unwrap();
        assert_eq!(current_dir(cpu, &ms), None);
        // a mount whose root hides the process's cgroup
        let hidden = Mounted {
            version: 1,
            controllers: vec!["memory".into()],
            mount_point: "/m".into(),
            root: "/other".into(),
        };
        assert_eq!(current_dir(&hidden, &ms), None);
        let shown = Mounted {
            root: "/process_api".into(),
            ..hidden
        };
        assert_eq!(current_dir(&shown, &ms).unwrap(), PathBuf::from("/m/5ade"));
    }
}
