//! fd-relative filesystem helpers: resolution inside a root, removal without following
//! symlinks, and extended attributes on any file type.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, XattrFlags};
use rustix::io::Errno;

use super::path::RelPath;

/// How deep [`remove_all_at`] descends before giving up (each level holds one fd).
pub(crate) const MAX_REMOVE_DEPTH: usize = 512;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Open the root directory itself.
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// openat2 inside `root` (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), retrying EAGAIN.
pub(crate) fn openat2_in_root(
    root: BorrowedFd<'_>,
    rel: &RelPath,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let path = rel.to_bytes();
    let p = OsStr::from_bytes(&path);
    let mut tries = 0;
    loop {
        match rfs::openat2(root, p, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            Err(Errno::NOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2 is not available (Linux 5.6 or later is required)",
                ))
            }
            r => return Ok(r?),
        }
    }
}

/// Open directory `rel` inside `root` as an O_PATH fd (symlinks in it are contained).
pub(crate) fn open_dir(root: BorrowedFd<'_>, rel: &RelPath) -> io::Result<OwnedFd> {
    openat2_in_root(root, rel, OFlags::PATH | OFlags::DIRECTORY)
}

/// Open directory `rel` inside `root` for reading/metadata changes; a symlink as the last
/// component is refused (ELOOP).
pub(crate) fn open_dir_nofollow(root: BorrowedFd<'_>, rel: &RelPath) -> io::Result<OwnedFd> {
    openat2_in_root(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
    )
}

/// Open directory `rel` inside `root`, creating missing components (mode 0755).
pub(crate) fn mkdir_all(root: BorrowedFd<'_>, rel: &RelPath) -> io::Result<OwnedFd> {
    match open_dir(root, rel) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        r => return r,
    }
    let comps = rel.comps();
    let mut fd = open_dir(root, &RelPath::default())?;
    for i in 0..comps.len() {
        let prefix = RelPath::from_comps(comps[..=i].to_vec());
        match open_dir(root, &prefix) {
            Ok(f) => {
                fd = f;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // `fd` is the resolved parent inside the root; create one plain name in it.
        match rfs::mkdirat(
            &fd,
            OsStr::from_bytes(&comps[i]),
            Mode::from_raw_mode(0o755),
        ) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        fd = open_dir(root, &prefix)?;
    }
    Ok(fd)
}

/// lstat of `name` in `dir`; None when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file type of a stat.
pub(crate) fn file_type(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Remove `name` in `dir` and everything below it, never following symlinks. Missing is fine.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    remove_all_inner(dir, name, 0)
}

fn remove_all_inner(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!(
            "directory tree deeper than {MAX_REMOVE_DEPTH} levels"
        )));
    }
    let sub = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for child in list_dir(sub.as_fd())? {
        remove_all_inner(sub.as_fd(), OsStr::from_bytes(&child), depth + 1)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The names in directory `dir` (without `.` and `..`), sorted bytewise.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// The `/proc/self/fd/<dir>/<name>` path of an entry: for xattr calls on file types that
/// cannot be opened (symlinks, devices, fifos). `name` is a single component and the l*xattr
/// calls do not follow it.
fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

/// Where to set or read extended attributes.
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    /// An open file or directory.
    Fd(BorrowedFd<'a>),
    /// `name` in directory `dir`, not followed.
    At(BorrowedFd<'a>, &'a OsStr),
}

/// Set one extended attribute.
pub(crate) fn set_xattr(t: XattrTarget<'_>, key: &str, value: &[u8]) -> Result<(), Errno> {
    match t {
        XattrTarget::Fd(fd) => rfs::fsetxattr(fd, key, value, XattrFlags::empty()),
        XattrTarget::At(dir, name) => {
            rfs::lsetxattr(proc_path(dir, name), key, value, XattrFlags::empty())
        }
    }
}

/// All extended attributes, sorted by name.
pub(crate) fn get_xattrs(t: XattrTarget<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let path = match t {
        XattrTarget::At(dir, name) => Some(proc_path(dir, name)),
        XattrTarget::Fd(_) => None,
    };
    let mut buf = vec![0u8; 4096];
    let list = loop {
        let r = match (&t, &path) {
            (_, Some(p)) => rfs::llistxattr(p, &mut buf[..]),
            (XattrTarget::Fd(fd), None) | (XattrTarget::At(fd, _), None) => {
                rfs::flistxattr(fd, &mut buf[..])
            }
        };
        match r {
            Ok(n) => break buf[..n].to_vec(),
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in list.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        let mut val = vec![0u8; 4096];
        let v = loop {
            let r = match (&t, &path) {
                (_, Some(p)) => rfs::lgetxattr(p, key, &mut val[..]),
                (XattrTarget::Fd(fd), None) | (XattrTarget::At(fd, _), None) => {
                    rfs::fgetxattr(fd, key, &mut val[..])
                }
            };
            match r {
                Ok(n) => break Some(val[..n].to_vec()),
                Err(Errno::RANGE) if val.len() < (1 << 20) => {
                    let l = val.len();
                    val.resize(l * 4, 0)
                }
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(v) = v {
            out.push((key.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}
