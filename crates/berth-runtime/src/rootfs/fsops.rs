//! fd-based primitives: resolve and create paths inside the rootfs with
//! `openat2(RESOLVE_IN_ROOT)`, and mount onto the resolved fds with the new mount API.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

use super::options::{AttrChange, Propagation};
use super::RootfsError;
use berth_sys::mount::{mount_setattr_fd, MountAttr, AT_RECURSIVE};

/// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `path` is taken
/// relative to `root` whatever its leading slashes, and symlinks and `..` cannot leave `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
    open_resolve(
        root,
        path,
        flags,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// `openat2` with explicit resolve flags, retried on `EAGAIN` (a concurrent rename).
pub fn open_resolve(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    resolve: ResolveFlags,
) -> io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut tries = 0;
    loop {
        match openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < 32 => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// What the last component of a path to create is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// A directory.
    Dir,
    /// An empty regular file (a mount point for a file bind).
    File,
}

/// Create `path` inside `root` like `mkdir -p` (the last component as an empty file when
/// `leaf` is [`Leaf::File`]), one component at a time, each resolved from `root` with
/// `RESOLVE_IN_ROOT`. A dangling symlink on the way is followed inside the root (its target is
/// created there, as if the rootfs were `/`). Returns an `O_PATH` fd of the result. `what`
/// names the path in errors (`create mount destination /x: ...`).
pub fn mkdir_all_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    leaf: Leaf,
    what: &str,
) -> Result<OwnedFd, RootfsError> {
    let op = || format!("create {what} {path}");
    let err = |e: io::Error| RootfsError::os(op(), e);
    let mut todo: VecDeque<String> = components(path);
    let mut done: Vec<String> = Vec::new();
    let mut cur = open_in_root(root, "/", OFlags::PATH | OFlags::DIRECTORY).map_err(err)?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        done.push(name.clone());
        let prefix = done.join("/");
        let last = todo.is_empty();
        let flags = if last && leaf == Leaf::File {
            OFlags::PATH
        } else {
            OFlags::PATH | OFlags::DIRECTORY
        };
        match open_in_root(root, &prefix, flags) {
            Ok(fd) => {
                cur = fd;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                return Err(RootfsError::Escape {
                    what: "path",
                    path: path.to_string(),
                })
            }
            Err(e) => return Err(err(e)),
        }
        let made = if last && leaf == Leaf::File {
            rustix::fs::openat(
                &cur,
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&cur, name.as_str(), Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // a dangling symlink: continue with its target, resolved inside the root
                let target = match rustix::fs::readlinkat(&cur, name.as_str(), Vec::new()) {
                    Ok(t) => t.to_string_lossy().into_owned(),
                    Err(e) => return Err(err(e.into())),
                };
                links += 1;
                if links > 40 {
                    return Err(err(io::Error::from_raw_os_error(libc::ELOOP)));
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                    cur = open_in_root(root, "/", OFlags::PATH | OFlags::DIRECTORY).map_err(err)?;
                }
                for c in components(&target).into_iter().rev() {
                    todo.push_front(c);
                }
                continue;
            }
            Err(e) => return Err(err(e.into())),
        }
        cur = open_in_root(root, &prefix, flags).map_err(err)?;
    }
    Ok(cur)
}

/// Path components, keeping `..` (the kernel resolves it, clamped at the root).
fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Clone the mount tree at `path` (relative to `dir`; `""` for `dir` itself) into a detached
/// mount: a bind (`recursive`: an rbind).
pub fn clone_tree(dir: BorrowedFd<'_>, path: &str, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    if path.is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    Ok(open_tree(dir, path, flags)?)
}

/// Clone the tree at host path `path` (relative paths are relative to the cwd).
pub fn clone_host_tree(path: &str, recursive: bool) -> io::Result<OwnedFd> {
    clone_tree(CWD, path, recursive)
}

/// Change the attributes of the mount `fd` (and all its submounts when `recursive`).
pub fn set_attrs(fd: BorrowedFd<'_>, change: AttrChange, recursive: bool) -> io::Result<()> {
    if change.is_empty() {
        return Ok(());
    }
    let attr = MountAttr {
        attr_set: change.set,
        attr_clr: change.clr,
        ..MountAttr::default()
    };
    mount_setattr_fd(fd, if recursive { AT_RECURSIVE } else { 0 }, &attr)
}

/// Change the propagation of the mount `fd` (and its submounts when `recursive`).
pub fn set_propagation(fd: BorrowedFd<'_>, p: Propagation, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        propagation: p.ms_flag(),
        ..MountAttr::default()
    };
    mount_setattr_fd(fd, if recursive { AT_RECURSIVE } else { 0 }, &attr)
}

/// Attach the detached mount `tree` on top of the path `target` refers to.
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    Ok(move_mount(
        tree,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// Read the kernel's messages queued on an fs context fd (`e tmpfs: Bad value for 'size'`).
fn fs_log(fs: BorrowedFd<'_>) -> String {
    let mut msgs = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 || msgs.len() > 8 {
            break;
        }
        let m = String::from_utf8_lossy(&buf[..n]);
        // each message starts with its level: "e ", "w " or "i "
        let m = m
            .get(2..)
            .filter(|_| m.as_bytes().get(1) == Some(&b' '))
            .unwrap_or(&m);
        msgs.push(m.trim().to_string());
    }
    msgs.join("; ")
}

/// Create a new, detached filesystem instance: `fsopen(fstype)`, one `fsconfig` per data
/// option (`key=value` as a string, bare `key` as a flag), `fsconfig_create`, `fsmount` with
/// the given `MOUNT_ATTR_*` bits. The error says which option the kernel refused and why.
pub fn new_fs(
    fstype: &str,
    source: Option<&str>,
    data: &[String],
    attrs: u64,
) -> Result<OwnedFd, (String, io::Error)> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| ("fsopen".to_string(), io::Error::from(e)))?;
    let with_log = |step: String, e: Errno| -> (String, io::Error) {
        let log = fs_log(fs.as_fd());
        let step = if log.is_empty() {
            step
        } else {
            format!("{step} ({log})")
        };
        (step, e.into())
    };
    if let Some(src) = source.filter(|s| !s.is_empty()) {
        fsconfig_set_string(&fs, "source", src)
            .map_err(|e| with_log(format!("source={src}"), e))?;
    }
    for opt in data {
        let r = match opt.split_once('=') {
            Some((k, v)) => fsconfig_set_string(&fs, k, v),
            None => fsconfig_set_flag(&fs, opt.as_str()),
        };
        r.map_err(|e| with_log(format!("option {opt}"), e))?;
    }
    fsconfig_create(&fs).map_err(|e| with_log("create".to_string(), e))?;
    let bits = MountAttrFlags::from_bits_retain(attrs as u32);
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, bits)
        .map_err(|e| with_log("fsmount".to_string(), e))
}

/// Copy the contents of directory `src` into directory `dst` (both fds), keeping modes and
/// owners: regular files, directories, symlinks, device nodes and fifos; sockets are skipped.
/// Nothing is followed: every entry is opened relative to its parent with `O_NOFOLLOW`.
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: u32) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Gid, Uid};
    if depth > 128 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let dir = rustix::fs::Dir::read_from(src)?;
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        match ft {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_tree(s.as_fd(), d.as_fd(), depth + 1)?;
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                io::copy(&mut std::fs::File::from(s), &mut std::fs::File::from(d))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(dst, name, ft, mode, st.st_rdev)?;
            }
            _ => continue,
        }
        rustix::fs::chownat(
            dst,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if ft != FileType::Symlink {
            rustix::fs::chmodat(dst, name, mode, AtFlags::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::Path;

    fn root_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("berthtest-fsops-")
            .tempdir()
            .unwrap()
    }

    fn fd_path(fd: &OwnedFd) -> std::path::PathBuf {
        std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))
        .unwrap()
    }

    #[test]
    fn creates_directories_and_file_leaves_inside_the_root() {
        let t = tmp();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let fd = mkdir_all_in_root(root_fd(&root).as_fd(), "/a/b/c", Leaf::Dir, "test").unwrap();
        assert_eq!(fd_path(&fd), root.join("a/b/c"));
        assert!(root.join("a/b/c").is_dir());
        let fd = mkdir_all_in_root(root_fd(&root).as_fd(), "/a/f", Leaf::File, "test").unwrap();
        assert_eq!(fd_path(&fd), root.join("a/f"));
        assert!(root.join("a/f").is_file());
        // existing paths are reused
        mkdir_all_in_root(root_fd(&root).as_fd(), "/a/b", Leaf::Dir, "test").unwrap();
    }

    #[test]
    fn symlinks_and_dotdot_never_leave_the_root() {
        let t = tmp();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        // existing and dangling, absolute and relative links that aim outside
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../outside", root.join("rel")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        let rfd = root_fd(&root);
        let fd = mkdir_all_in_root(rfd.as_fd(), "/abs/x", Leaf::Dir, "test").unwrap();
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert_eq!(fd_path(&fd), inside.join("x"));
        let fd = mkdir_all_in_root(rfd.as_fd(), "/rel/y", Leaf::File, "test").unwrap();
        assert_eq!(fd_path(&fd), root.join("outside/y"));
        let fd = mkdir_all_in_root(rfd.as_fd(), "/../../slash/../z", Leaf::Dir, "test").unwrap();
        assert_eq!(fd_path(&fd), root.join("z"));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // opening through the links stays inside too
        let fd = open_in_root(rfd.as_fd(), "/slash/abs/x", OFlags::PATH).unwrap();
        assert_eq!(fd_path(&fd), inside.join("x"));
    }

    #[test]
    fn loops_and_files_in_the_way_are_errors() {
        let t = tmp();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let rfd = root_fd(&root);
        let err =
            mkdir_all_in_root(rfd.as_fd(), "/loop1/x", Leaf::Dir, "mount destination").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("create mount destination /loop1/x: "),
            "{err}"
        );
        let err =
            mkdir_all_in_root(rfd.as_fd(), "/file/x", Leaf::Dir, "mount destination").unwrap_err();
        assert_eq!(
            err.to_string(),
            "create mount destination /file/x: not a directory"
        );
    }

    #[test]
    fn copy_tree_keeps_types_modes_and_owners() {
        let t = tmp();
        let src = t.path().join("src");
        let dst = t.path().join("dst");
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("d/f"), "content").unwrap();
        std::fs::set_permissions(src.join("d/f"), std::fs::Permissions::from_mode(0o4751)).unwrap();
        std::os::unix::fs::chown(src.join("d"), Some(7), Some(8)).unwrap();
        symlink("/etc/passwd", src.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o620),
            0,
        )
        .unwrap();
        std::fs::set_permissions(src.join("fifo"), std::fs::Permissions::from_mode(0o620)).unwrap();
        let s = rustix::fs::open(&src, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        copy_tree(s.as_fd(), root_fd(&dst).as_fd(), 0).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("d/f")).unwrap(), "content");
        let f = std::fs::metadata(dst.join("d/f")).unwrap();
        assert_eq!(f.permissions().mode() & 0o7777, 0o4751);
        let d = std::fs::metadata(dst.join("d")).unwrap();
        assert_eq!((d.uid(), d.gid()), (7, 8));
        assert!(dst.join("d/e").is_dir());
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let fifo = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert_eq!(fifo.permissions().mode() & 0o7777, 0o620);
    }
}
