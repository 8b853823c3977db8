//! Paths inside a root resolved fd-relative (`openat2` with `RESOLVE_IN_ROOT`): `..` and
//! symlinks met on the way never leave the root.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::BuildError;

fn io(what: String, e: Errno) -> BuildError {
    BuildError::io(what, std::io::Error::from_raw_os_error(e.raw_os_error()))
}

/// Open the directory `root`.
pub fn open_root(root: &Path) -> Result<OwnedFd, BuildError> {
    rfs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(format!("open {}", root.display()), e))
}

/// Open `path` (absolute or relative, inside the root `root_fd`) with `flags`.
pub fn open_in(root_fd: &OwnedFd, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    loop {
        match rfs::openat2(
            root_fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// `mkdir -p` of `path` inside `root` (new directories 0755, root-owned).
pub fn mkdir_all_in(root: &Path, path: &str) -> Result<(), BuildError> {
    let root_fd = open_root(root)?;
    mkdir_all_fd(&root_fd, path)
}

/// `mkdir -p` of `path` inside the root directory `root_fd`.
pub fn mkdir_all_fd(root_fd: &OwnedFd, path: &str) -> Result<(), BuildError> {
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = if cur.is_empty() { "." } else { cur.as_str() };
        let dir = open_in(root_fd, parent, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(|e| io(format!("open {parent} in rootfs"), e))?;
        match rfs::mkdirat(&dir, comp, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(format!("mkdir {cur}/{comp} in rootfs"), e)),
        }
        cur.push('/');
        cur.push_str(comp);
    }
    Ok(())
}

/// Read a small file inside the root (e.g. `/etc/passwd`); `None` when it does not exist.
pub fn read_in(root: &Path, path: &str, limit: u64) -> Result<Option<Vec<u8>>, BuildError> {
    let root_fd = open_root(root)?;
    match open_in(&root_fd, path, OFlags::RDONLY) {
        Ok(fd) => {
            let mut v = Vec::new();
            std::fs::File::from(fd)
                .take(limit)
                .read_to_end(&mut v)
                .map_err(|e| BuildError::io(format!("read {path} in rootfs"), e))?;
            Ok(Some(v))
        }
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(io(format!("open {path} in rootfs"), e)),
    }
}

/// Whether `path` inside the root is an existing directory.
pub fn is_dir_in(root_fd: &OwnedFd, path: &str) -> bool {
    open_in(root_fd, path, OFlags::DIRECTORY | OFlags::RDONLY).is_ok()
}

/// Resolve `user[:group]` (names or ids) against the rootfs's `/etc/passwd` and `/etc/group`:
/// `(uid, gid)`. A user without a group takes its primary group (or its uid as gid when it is
/// a bare number without an entry).
pub fn resolve_user(root: Option<&Path>, spec: &str) -> Result<(u32, u32), BuildError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |p: &str| -> Result<String, BuildError> {
        match root {
            Some(r) => Ok(read_in(r, p, 4 << 20)?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()),
            None => Ok(String::new()),
        }
    };
    let passwd = read("/etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, primary) = match (user.parse::<u32>(), &entry) {
        (Ok(n), Some(f)) => (n, f[3].parse().unwrap_or(n)),
        (Ok(n), None) => (n, if group.is_some() { 0 } else { n }),
        (Err(_), Some(f)) => (
            f[2].parse().map_err(|_| {
                BuildError::Invalid(format!("bad uid for user {user} in /etc/passwd"))
            })?,
            f[3].parse().unwrap_or(0),
        ),
        (Err(_), None) => {
            return Err(BuildError::NotFound(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    let gid = match group {
        None => {
            // uid only, without an entry: Docker uses gid 0; with an entry its primary group
            if entry.is_some() {
                primary
            } else {
                0
            }
        }
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read("/etc/group")?;
                groups
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        BuildError::NotFound(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_and_id() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = Some(d.path());
        assert_eq!(resolve_user(r, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(r, "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(r, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(r, "42:7").unwrap(), (42, 7));
        assert_eq!(resolve_user(r, "42").unwrap(), (42, 0));
        assert!(resolve_user(r, "nobody").is_err());
        assert!(resolve_user(r, "app:nogroup").is_err());
    }

    #[test]
    fn mkdir_stays_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(out.path(), d.path().join("esc")).unwrap();
        // the symlink resolves inside the root (where its target does not exist)
        let _ = mkdir_all_in(d.path(), "/esc/a/b");
        assert!(!out.path().join("a").exists());
        std::fs::create_dir_all(d.path().join(out.path().strip_prefix("/").unwrap())).unwrap();
        mkdir_all_in(d.path(), "/esc/a/b").unwrap();
        assert!(!out.path().join("a").exists());
        assert!(d
            .path()
            .join(out.path().strip_prefix("/").unwrap())
            .join("a/b")
            .is_dir());
    }
}
