//! Filesystem views of a container: `changes` (the upper directory against the image's
//! layers) and `export` (a tar of the rootfs).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::EngineError;

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

/// `GET /containers/{id}/changes`: Kind 0 modified, 1 added, 2 deleted. `lowers` are the
/// image's layer directories (empty: everything in the upper directory counts as added).
pub fn changes_with(upper: &Path, lowers: &[PathBuf]) -> Result<Value, EngineError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| EngineError::io(format!("read {}", dir.display()), e))?;
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let md = match std::fs::symlink_metadata(upper.join(&r)) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let shown = format!("/{}", r.display());
            if is_whiteout(&md) {
                out.push(json!({"Path": shown, "Kind": 2}));
                continue;
            }
            let in_lower = lowers
                .iter()
                .any(|l| std::fs::symlink_metadata(l.join(&r)).is_ok());
            out.push(json!({"Path": shown, "Kind": if in_lower { 0 } else { 1 }}));
            if md.is_dir() {
                stack.push(r);
            }
        }
    }
    out.sort_by(|a, b| a["Path"].as_str().cmp(&b["Path"].as_str()));
    Ok(Value::Array(out))
}

/// The lower directories of an overlay mount's options.
pub fn lowers_of(mounts: &[berth_core::Mount]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for m in mounts {
        for o in &m.options {
            if let Some(l) = o.strip_prefix("lowerdir=") {
                v.extend(l.split(':').map(PathBuf::from));
            } else if let Some(l) = o.strip_prefix("lowerdir+=") {
                v.push(PathBuf::from(l));
            }
        }
    }
    v
}

/// A tar of `root` (symlinks archived as links, never followed).
pub fn tar_dir(root: &Path, w: impl std::io::Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", root)?;
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "x").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/passwd"), "y").unwrap();
        std::fs::write(upper.join("new"), "n").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        let v = changes_with(&upper, &[lower]).unwrap();
        assert_eq!(
            v,
            json!([
                {"Path": "/etc", "Kind": 0},
                {"Path": "/etc/passwd", "Kind": 0},
                {"Path": "/gone", "Kind": 2},
                {"Path": "/new", "Kind": 1},
            ])
        );
    }
}

/// `docker cp`: paths resolved inside a container root with `openat2(RESOLVE_IN_ROOT)` and
/// walked with fd-relative, no-follow operations, so symlinks inside the container can never
/// reach host files.
pub mod cp {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
    use serde_json::json;

    use crate::EngineError;

    fn open_in_root(root: &OwnedFd, path: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        Ok(rustix::fs::openat2(
            root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Open the container root directory `root` (a mounted rootfs or `/proc/<pid>/root`).
    pub fn open_root(root: &std::path::Path) -> Result<OwnedFd, EngineError> {
        rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| EngineError::io(format!("open container root {}", root.display()), e.into()))
    }

    fn not_found(path: &str, id: &str) -> EngineError {
        EngineError::not_found(format!("Could not find the file {path} in container {id}"))
    }

    /// Go's `os.FileMode` bits of a stat mode.
    pub fn go_mode(st_mode: u32) -> u32 {
        let perm = st_mode & 0o777;
        let mut m = perm;
        match FileType::from_raw_mode(st_mode) {
            FileType::Directory => m |= 1 << 31,
            FileType::Symlink => m |= 1 << 27,
            FileType::BlockDevice => m |= 1 << 26,
            FileType::CharacterDevice => m |= (1 << 26) | (1 << 21),
            FileType::Fifo => m |= 1 << 25,
            FileType::Socket => m |= 1 << 24,
            _ => {}
        }
        if st_mode & 0o4000 != 0 {
            m |= 1 << 23;
        }
        if st_mode & 0o2000 != 0 {
            m |= 1 << 22;
        }
        if st_mode & 0o1000 != 0 {
            m |= 1 << 20;
        }
        m
    }

    fn basename(path: &str) -> String {
        let t = path.trim_end_matches('/');
        match t.rsplit_once('/') {
            Some((_, b)) if !b.is_empty() => b.to_string(),
            _ if t.is_empty() => "/".to_string(),
            _ => t.to_string(),
        }
    }

    /// `X-Docker-Container-Path-Stat` of `path` (the final symlink itself, not its target).
    pub fn stat(root: &OwnedFd, path: &str, id: &str) -> Result<serde_json::Value, EngineError> {
        let fd = open_in_root(root, path, OFlags::PATH | OFlags::NOFOLLOW)
            .map_err(|_| not_found(path, id))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| EngineError::io("stat", e.into()))?;
        let link = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            rustix::fs::readlinkat(&fd, "", Vec::new())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mtime = super::super::fmt_time(st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64);
        Ok(json!({
            "name": basename(path),
            "size": st.st_size,
            "mode": go_mode(st.st_mode),
            "mtime": mtime,
            "linkTarget": link,
        }))
    }

    fn header_for(st: &rustix::fs::Stat, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(size);
        h
    }

    fn add<W: Write>(
        b: &mut tar::Builder<W>,
        dir: &OwnedFd,
        name: &str,
        rel: &str,
    ) -> std::io::Result<()> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let mut h = header_for(&st, tar::EntryType::Directory, 0);
                b.append_data(&mut h, format!("{rel}/"), std::io::empty())?;
                let d = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut names = Vec::new();
                for e in rustix::fs::Dir::read_from(&d)? {
                    let e = e?;
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n != "." && n != ".." {
                        names.push(n);
                    }
                }
                names.sort();
                for n in names {
                    add(b, &d, &n, &format!("{rel}/{n}"))?;
                }
            }
            FileType::RegularFile => {
                let f = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut h = header_for(&st, tar::EntryType::Regular, st.st_size as u64);
                b.append_data(&mut h, rel, std::fs::File::from(f).take(st.st_size as u64))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                let mut h = header_for(&st, tar::EntryType::Symlink, 0);
                b.append_link(&mut h, rel, target.to_string_lossy().as_ref())?;
            }
            _ => {} // devices, fifos, sockets: skipped
        }
        Ok(())
    }

    /// `GET /containers/{id}/archive`: a tar of `path` named by its base name.
    pub fn get(root: &OwnedFd, path: &str, w: impl Write) -> std::io::Result<()> {
        let t = path.trim_end_matches('/');
        let (parent, name) = match t.rsplit_once('/') {
            Some((p, n)) if !n.is_empty() => (if p.is_empty() { "/" } else { p }, n.to_string()),
            _ => ("/", ".".to_string()),
        };
        let pfd = open_in_root(root, parent, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut b = tar::Builder::new(w);
        let rel = if name == "." {
            ".".to_string()
        } else {
            name.clone()
        };
        add(&mut b, &pfd, &name, &rel)?;
        b.into_inner()?.flush()
    }

    /// Copy the image's content at `path` (a directory inside `root`) into the empty directory
    /// `dest` (a new volume), as Docker does when a volume is first mounted.
    pub fn copy_dir_into(
        root: &OwnedFd,
        path: &str,
        dest: &std::path::Path,
    ) -> Result<(), EngineError> {
        let Ok(dir) = open_in_root(root, path, OFlags::RDONLY | OFlags::DIRECTORY) else {
            return Ok(()); // nothing there: nothing to copy
        };
        // a scratch file beside the volume's data directory, unlinked at once
        let scratch = dest
            .parent()
            .unwrap_or(dest)
            .join(format!(".berth-copy-{}", std::process::id()));
        let mut tarball = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&scratch)
            .map_err(|e| EngineError::io(format!("create {}", scratch.display()), e))?;
        let _ = std::fs::remove_file(&scratch);
        {
            let mut b = tar::Builder::new(&mut tarball);
            let mut names = Vec::new();
            for e in rustix::fs::Dir::read_from(&dir)
                .map_err(|e| EngineError::io(format!("read {path}"), e.into()))?
            {
                let e = e.map_err(|e| EngineError::io(format!("read {path}"), e.into()))?;
                let n = e.file_name().to_string_lossy().into_owned();
                if n != "." && n != ".." {
                    names.push(n);
                }
            }
            for n in names {
                add(&mut b, &dir, &n, &n)
                    .map_err(|e| EngineError::io(format!("copy {path}/{n}"), e))?;
            }
            b.finish().map_err(|e| EngineError::io("write tar", e))?;
        }
        std::io::Seek::seek(&mut tarball, std::io::SeekFrom::Start(0))
            .map_err(|e| EngineError::io("rewind", e))?;
        let dfd = open_root(dest)?;
        put(&dfd, "/", tarball, "volume")
    }

    /// `PUT /containers/{id}/archive`: extract a tar into directory `path`.
    pub fn put(root: &OwnedFd, path: &str, r: impl Read, id: &str) -> Result<(), EngineError> {
        let dest = open_in_root(root, path, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                EngineError::invalid(format!("extraction point is not a directory: {path}"))
            } else {
                not_found(path, id)
            }
        })?;
        let mut ar = tar::Archive::new(r);
        let entries = ar
            .entries()
            .map_err(|e| EngineError::invalid(format!("read tar: {e}")))?;
        for e in entries {
            let mut e = e.map_err(|e| EngineError::invalid(format!("read tar: {e}")))?;
            let p = e
                .path()
                .map_err(|e| EngineError::invalid(format!("tar path: {e}")))?
                .into_owned();
            let mut comps: Vec<String> = Vec::new();
            for c in p.components() {
                match c {
                    std::path::Component::Normal(s) => comps.push(s.to_string_lossy().into_owned()),
                    std::path::Component::CurDir => {}
                    _ => {
                        return Err(EngineError::invalid(format!(
                            "tar entry {} leaves the destination",
                            p.display()
                        )))
                    }
                }
            }
            let Some(name) = comps.pop() else { continue };
            let parent_rel = comps.join("/");
            // the parent, resolved inside the destination (symlinks stay within the root)
            let parent = if parent_rel.is_empty() {
                rustix::io::fcntl_dupfd_cloexec(&dest, 3)
                    .map_err(|e| EngineError::io("dup", e.into()))?
            } else {
                rustix::fs::openat2(
                    &dest,
                    parent_rel.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS,
                )
                .map_err(|err| {
                    EngineError::io(format!("open {parent_rel} in {path}"), err.into())
                })?
            };
            let mode = Mode::from_raw_mode(e.header().mode().unwrap_or(0o644) & 0o7777);
            let ctx = |what: &str| format!("{what} {}", p.display());
            match e.header().entry_type() {
                tar::EntryType::Directory => {
                    match rustix::fs::mkdirat(&parent, name.as_str(), mode) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(err) => return Err(EngineError::io(ctx("mkdir"), err.into())),
                    }
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let _ = rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::empty());
                    rustix::fs::symlinkat(target.as_str(), &parent, name.as_str())
                        .map_err(|err| EngineError::io(ctx("symlink"), err.into()))?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    // never write through a symlink planted at the destination
                    if let Ok(st) =
                        rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    {
                        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                            let _ = rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::empty());
                        }
                    }
                    let fd = rustix::fs::openat(
                        &parent,
                        name.as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::TRUNC
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        mode,
                    )
                    .map_err(|err| EngineError::io(ctx("create"), err.into()))?;
                    let mut f = std::fs::File::from(fd);
                    std::io::copy(&mut e, &mut f)
                        .map_err(|err| EngineError::io(ctx("write"), err))?;
                    let _ = rustix::fs::fchmod(f.as_fd(), mode);
                }
                _ => {} // hard links, devices: not supported by cp here
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn modes() {
            assert_eq!(go_mode(0o040755), 2147484141);
            assert_eq!(go_mode(0o100644), 0o644);
            assert_eq!(go_mode(0o120777), (1 << 27) | 0o777);
        }

        #[test]
        fn symlinks_stay_inside() {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().join("root");
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/f"), "inside").unwrap();
            std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
            let host_secret = d.path().join("secret");
            std::fs::write(&host_secret, "host").unwrap();
            let rfd = open_root(&root).unwrap();
            // /escape/f resolves to <root>/etc/f, not the host's /etc/f
            let mut out = Vec::new();
            get(&rfd, "/escape/f", &mut out).unwrap();
            let mut ar = tar::Archive::new(&out[..]);
            let mut e = ar.entries().unwrap().next().unwrap().unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            assert_eq!(s, "inside");
            assert_eq!(stat(&rfd, "/escape", "c").unwrap()["linkTarget"], "/etc");
            // put: entries with .. are refused, files land in the root
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o600);
            b.append_data(&mut h, "new.txt", &b"hi"[..]).unwrap();
            put(&rfd, "/escape", &b.into_inner().unwrap()[..], "c").unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("etc/new.txt")).unwrap(),
                "hi"
            );
            let mut raw = Vec::new();
            {
                let mut h = tar::Header::new_gnu();
                h.set_size(1);
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                let name = b"../x";
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                raw.extend_from_slice(h.as_bytes());
                let mut blk = [0u8; 512];
                blk[0] = b'x';
                raw.extend_from_slice(&blk);
                raw.extend_from_slice(&[0u8; 1024]);
            }
            assert!(put(&rfd, "/etc", &raw[..], "c").is_err());
            assert!(!root.join("x").exists() && !d.path().join("x").exists());
            assert!(stat(&rfd, "/nope", "c")
                .unwrap_err()
                .to_string()
                .contains("Could not find the file /nope"));
        }
    }
}
