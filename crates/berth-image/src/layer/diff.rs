//! Layer diff: a directory (overlay upper, or two full trees) back to a layer tar.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use berth_core::{Algorithm, Digest, Digester};
use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::compression::Encoder;
use super::fsx::{self, XattrTarget};
use super::path::RelPath;
use super::{Compression, IdMap, LayerError, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// Options of [`diff`] and [`diff_dirs`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// Compression of the written stream.
    pub compression: Compression,
    /// The id mapping the tree was applied with ([`ApplyOptions::id_map`](super::ApplyOptions::id_map)): host owners are
    /// written back as archive owners; an owner outside the map is an error.
    pub id_map: Option<IdMap>,
}

impl DiffOptions {
    /// Defaults with the given output compression.
    pub fn with_compression(compression: Compression) -> Self {
        DiffOptions {
            compression,
            ..Default::default()
        }
    }
}

/// What a diff wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffReport {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the written (possibly compressed) stream: the layer blob's digest.
    pub compressed_digest: Digest,
    /// Bytes written (the blob's size).
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries written.
    pub entries: u64,
}

/// Write the layer tar of an overlayfs upper dir. `lowers` are the lower dirs, top first; they
/// supply data of metacopy-only upper files. 0/0 char devices become `.wh.<name>` entries and
/// opaque directories get a `.wh..wh..opq` entry. Output is deterministic (sorted names,
/// normalised headers).
pub fn diff(
    lowers: &[&Path],
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffReport, LayerError> {
    let upper_fd = fsx::open_root(upper)
        .map_err(|e| LayerError::fs("open upper dir", upper.display().to_string(), e))?;
    let mut lower_fds = Vec::with_capacity(lowers.len());
    for l in lowers {
        lower_fds.push(
            fsx::open_root(l)
                .map_err(|e| LayerError::fs("open lower dir", l.display().to_string(), e))?,
        );
    }
    let mut em = Emitter::new(out, opts)?;
    if let Some(v) = opaque_value(upper_fd.as_fd())? {
        if v {
            em.marker(&RelPath::default(), WHITEOUT_OPAQUE.as_bytes())?;
        }
    }
    walk_upper(
        &mut em,
        upper_fd.as_fd(),
        &lower_fds,
        &RelPath::default(),
        0,
    )?;
    em.finish()
}

/// Write the layer tar that turns the full tree `old` into `new` (for the copy snapshotter and
/// commits without overlay): added and changed entries (compared by type, mode, owner, size,
/// mtime, device, symlink target and xattrs; file contents are not read) and `.wh.<name>` for
/// removed ones. Output is deterministic.
pub fn diff_dirs(
    old: &Path,
    new: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffReport, LayerError> {
    let old_fd = fsx::open_root(old)
        .map_err(|e| LayerError::fs("open old tree", old.display().to_string(), e))?;
    let new_fd = fsx::open_root(new)
        .map_err(|e| LayerError::fs("open new tree", new.display().to_string(), e))?;
    let mut em = Emitter::new(out, opts)?;
    walk_pair(
        &mut em,
        Some(old_fd.as_fd()),
        new_fd.as_fd(),
        &RelPath::default(),
        0,
    )?;
    em.finish()
}

/// Deepest directory level walked.
const MAX_DEPTH: usize = fsx::MAX_REMOVE_DEPTH;

fn too_deep(rel: &RelPath) -> LayerError {
    LayerError::Unsupported(format!(
        "directory tree deeper than {MAX_DEPTH} levels at {:?}",
        rel.display()
    ))
}

/// `Some(true)` when the directory carries `trusted.overlay.opaque=y`.
fn opaque_value(dir: BorrowedFd<'_>) -> Result<Option<bool>, LayerError> {
    let mut buf = [0u8; 8];
    match rfs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf[..]) {
        Ok(n) => Ok(Some(&buf[..n] == b"y")),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => Ok(None),
        Err(e) => Err(LayerError::fs("read opaque xattr", "", e)),
    }
}

fn walk_upper<W: Write>(
    em: &mut Emitter<W>,
    dir: BorrowedFd<'_>,
    lowers: &[OwnedFd],
    rel: &RelPath,
    depth: usize,
) -> Result<(), LayerError> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(rel));
    }
    let names = fsx::list_dir(dir).map_err(|e| LayerError::fs("list", rel.display(), e))?;
    for name in names {
        let child = rel.join(&name);
        let os = OsStr::from_bytes(&name);
        let Some(st) =
            fsx::lstat_at(dir, os).map_err(|e| LayerError::fs("stat", child.display(), e))?
        else {
            continue;
        };
        let ft = fsx::file_type(&st);
        if ft == FileType::CharacterDevice && st.st_rdev == 0 {
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(&name);
            em.marker(rel, &wh)?;
            continue;
        }
        if ft == FileType::Directory {
            let sub = open_nofollow(dir, os, OFlags::RDONLY | OFlags::DIRECTORY, &child)?;
            let xattrs = fsx::get_xattrs(XattrTarget::Fd(sub.as_fd()))
                .map_err(|e| LayerError::fs("read xattrs of", child.display(), e))?;
            check_redirect(&xattrs, &child)?;
            em.dir(&child, &st, &xattrs)?;
            if xattrs
                .iter()
                .any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y")
            {
                em.marker(&child, WHITEOUT_OPAQUE.as_bytes())?;
            }
            walk_upper(em, sub.as_fd(), lowers, &child, depth + 1)?;
            continue;
        }
        if ft == FileType::RegularFile {
            let f = open_nofollow(dir, os, OFlags::RDONLY, &child)?;
            let xattrs = fsx::get_xattrs(XattrTarget::Fd(f.as_fd()))
                .map_err(|e| LayerError::fs("read xattrs of", child.display(), e))?;
            check_redirect(&xattrs, &child)?;
            let data = if xattrs.iter().any(|(k, _)| k == "trusted.overlay.metacopy") {
                lower_data(lowers, &child)?
            } else {
                File::from(f)
            };
            em.file(&child, &st, &xattrs, data)?;
            continue;
        }
        em.other(dir, os, &child, &st)?;
    }
    Ok(())
}

fn check_redirect(xattrs: &[(String, Vec<u8>)], rel: &RelPath) -> Result<(), LayerError> {
    if xattrs.iter().any(|(k, _)| k == "trusted.overlay.redirect") {
        return Err(LayerError::Unsupported(format!(
            "overlay redirect on {:?}: mount without redirect_dir to diff",
            rel.display()
        )));
    }
    Ok(())
}

/// The data of a metacopy-only upper file: the same path in the topmost lower holding it.
fn lower_data(lowers: &[OwnedFd], rel: &RelPath) -> Result<File, LayerError> {
    for l in lowers {
        match fsx::openat2_in_root(l.as_fd(), rel, OFlags::RDONLY | OFlags::NOFOLLOW) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(LayerError::fs("open lower data of", rel.display(), e)),
        }
    }
    Err(LayerError::fs(
        "find lower data of metacopy file",
        rel.display(),
        io::Error::from(io::ErrorKind::NotFound),
    ))
}

fn open_nofollow(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
    rel: &RelPath,
) -> Result<OwnedFd, LayerError> {
    rfs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::fs("open", rel.display(), e))
}

fn walk_pair<W: Write>(
    em: &mut Emitter<W>,
    old: Option<BorrowedFd<'_>>,
    new: BorrowedFd<'_>,
    rel: &RelPath,
    depth: usize,
) -> Result<(), LayerError> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(rel));
    }
    let new_names = fsx::list_dir(new).map_err(|e| LayerError::fs("list", rel.display(), e))?;
    let old_names = match old {
        Some(o) => fsx::list_dir(o).map_err(|e| LayerError::fs("list old", rel.display(), e))?,
        None => Vec::new(),
    };
    // Removed names, then the new tree, both in sorted order.
    for n in &old_names {
        if new_names.binary_search(n).is_err() {
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(n);
            em.marker(rel, &wh)?;
        }
    }
    for name in new_names {
        let child = rel.join(&name);
        let os = OsStr::from_bytes(&name);
        let Some(st) =
            fsx::lstat_at(new, os).map_err(|e| LayerError::fs("stat", child.display(), e))?
        else {
            continue;
        };
        let ost = match old {
            Some(o) if old_names.binary_search(&name).is_ok() => {
                fsx::lstat_at(o, os).map_err(|e| LayerError::fs("stat old", child.display(), e))?
            }
            _ => None,
        };
        let ft = fsx::file_type(&st);
        let same_type = ost.as_ref().is_some_and(|o| fsx::file_type(o) == ft);
        let new_x = xattrs_at(new, os, ft, &child)?;
        let changed = match &ost {
            None => true,
            Some(o) => {
                !same_type
                    || o.st_mode != st.st_mode
                    || o.st_uid != st.st_uid
                    || o.st_gid != st.st_gid
                    || o.st_mtime != st.st_mtime
                    || o.st_mtime_nsec != st.st_mtime_nsec
                    || (ft != FileType::Directory && o.st_size != st.st_size)
                    || (ft == FileType::RegularFile && o.st_nlink != st.st_nlink)
                    || o.st_rdev != st.st_rdev
                    || (ft == FileType::Symlink
                        && read_link(old.unwrap_or(new), os, &child)?
                            != read_link(new, os, &child)?)
                    || xattrs_at(old.unwrap_or(new), os, ft, &child)? != new_x
            }
        };
        if ft == FileType::Directory {
            let sub = open_nofollow(new, os, OFlags::RDONLY | OFlags::DIRECTORY, &child)?;
            if changed {
                em.dir(&child, &st, &new_x)?;
            } else {
                // Written only if something below it is: the applier then restores its
                // metadata (mtime) after changing its children.
                em.pending.push(PendingDir {
                    rel: child.clone(),
                    st,
                    xattrs: new_x.clone(),
                    written: false,
                });
            }
            let old_sub = match (old, same_type) {
                (Some(o), true) => Some(open_nofollow(
                    o,
                    os,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    &child,
                )?),
                _ => None,
            };
            walk_pair(
                em,
                old_sub.as_ref().map(|f| f.as_fd()),
                sub.as_fd(),
                &child,
                depth + 1,
            )?;
            if !changed {
                em.pending.pop();
            }
            continue;
        }
        if !changed {
            continue;
        }
        if ft == FileType::RegularFile {
            let f = open_nofollow(new, os, OFlags::RDONLY, &child)?;
            em.file(&child, &st, &new_x, File::from(f))?;
        } else {
            em.other(new, os, &child, &st)?;
        }
    }
    Ok(())
}

fn xattrs_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    ft: FileType,
    rel: &RelPath,
) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
    let r = if ft == FileType::Directory || ft == FileType::RegularFile {
        let fd = open_nofollow(dir, name, OFlags::RDONLY, rel)?;
        fsx::get_xattrs(XattrTarget::Fd(fd.as_fd()))
    } else {
        fsx::get_xattrs(XattrTarget::At(dir, name))
    };
    r.map_err(|e| LayerError::fs("read xattrs of", rel.display(), e))
}

fn read_link(dir: BorrowedFd<'_>, name: &OsStr, rel: &RelPath) -> Result<Vec<u8>, LayerError> {
    rfs::readlinkat(dir, name, Vec::new())
        .map(|c| c.into_bytes())
        .map_err(|e| LayerError::fs("readlink", rel.display(), e))
}

/// A `Write` adapter that hashes and counts what passes through.
struct HashWrite<W> {
    inner: W,
    digester: Digester,
    count: u64,
}

impl<W: Write> Write for HashWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hash_write<W: Write>(inner: W) -> HashWrite<W> {
    HashWrite {
        inner,
        digester: Digester::new(Algorithm::Sha256),
        count: 0,
    }
}

type Sink<W> = HashWrite<Encoder<HashWrite<W>>>;

/// Writes normalised tar entries: ustar headers with PAX records for long names, large ids and
/// xattrs; no atime/ctime, no user/group names; hardlinks to files already in the layer.
struct Emitter<W: Write> {
    tar: tar::Builder<Sink<W>>,
    /// Unchanged ancestor directories of the walk position, written before the first entry
    /// below them.
    pending: Vec<PendingDir>,
    /// Host ids to archive ids.
    unmap: Option<IdMap>,
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
}

#[derive(Clone)]
struct PendingDir {
    rel: RelPath,
    st: rfs::Stat,
    xattrs: Vec<(String, Vec<u8>)>,
    written: bool,
}

fn ustar_max(v: u64, digits: u32) -> bool {
    v < 8u64.pow(digits)
}

impl<W: Write> Emitter<W> {
    fn new(out: W, opts: &DiffOptions) -> Result<Self, LayerError> {
        let enc = Encoder::new(opts.compression, hash_write(out)).map_err(LayerError::Write)?;
        let mut tar = tar::Builder::new(hash_write(enc));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Emitter {
            tar,
            links: HashMap::new(),
            pending: Vec::new(),
            unmap: opts.id_map.as_ref().map(IdMap::inverse),
            entries: 0,
        })
    }

    fn finish(self) -> Result<DiffReport, LayerError> {
        let entries = self.entries;
        let sink = self.tar.into_inner().map_err(LayerError::Write)?;
        let diff_id = sink.digester.finish();
        let uncompressed_size = sink.count;
        let mut outer = sink.inner.finish().map_err(LayerError::Write)?;
        outer.flush().map_err(LayerError::Write)?;
        Ok(DiffReport {
            diff_id,
            compressed_digest: outer.digester.finish(),
            size: outer.count,
            uncompressed_size,
            entries,
        })
    }

    /// Write one header (preceded by a PAX header when needed) and its data.
    fn append(
        &mut self,
        name: &[u8],
        etype: EntryType,
        st: Option<&rfs::Stat>,
        link: &[u8],
        xattrs: &[(String, Vec<u8>)],
        data: Option<(File, u64)>,
    ) -> Result<(), LayerError> {
        let size = data.as_ref().map_or(0, |d| d.1);
        for i in 0..self.pending.len() {
            if !self.pending[i].written {
                self.pending[i].written = true;
                let d = self.pending[i].clone();
                self.dir(&d.rel, &d.st, &d.xattrs)?;
            }
        }
        let mut h = tar::Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let (mode, uid, gid, mtime) = match st {
            Some(st) => {
                let (mut uid, mut gid) = (st.st_uid, st.st_gid);
                if let Some(m) = &self.unmap {
                    let shown = || String::from_utf8_lossy(name).into_owned();
                    uid = m.uid(uid).ok_or_else(|| {
                        LayerError::Unsupported(format!(
                            "{}: uid {uid} is not in the id map",
                            shown()
                        ))
                    })?;
                    gid = m.gid(gid).ok_or_else(|| {
                        LayerError::Unsupported(format!(
                            "{}: gid {gid} is not in the id map",
                            shown()
                        ))
                    })?;
                }
                (
                    st.st_mode & 0o7777,
                    u64::from(uid),
                    u64::from(gid),
                    st.st_mtime.max(0) as u64,
                )
            }
            None => (0, 0, 0, 0),
        };
        h.set_entry_type(etype);
        h.set_mode(mode);
        if ustar_max(uid, 7) {
            h.set_uid(uid);
        } else {
            pax.push(("uid".into(), uid.to_string().into_bytes()));
        }
        if ustar_max(gid, 7) {
            h.set_gid(gid);
        } else {
            pax.push(("gid".into(), gid.to_string().into_bytes()));
        }
        h.set_mtime(mtime);
        if ustar_max(size, 11) {
            h.set_size(size);
        } else {
            pax.push(("size".into(), size.to_string().into_bytes()));
            h.set_size(0);
        }
        if name.len() <= 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
        } else {
            pax.push(("path".into(), name.to_vec()));
            h.as_old_mut().name.copy_from_slice(&name[..100]);
        }
        if link.len() <= 100 {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        } else {
            pax.push(("linkpath".into(), link.to_vec()));
            h.as_old_mut().linkname.copy_from_slice(&link[..100]);
        }
        if let Some(st) = st {
            if etype == EntryType::Char || etype == EntryType::Block {
                let dev = st.st_rdev;
                h.set_device_major(rfs::major(dev))
                    .map_err(LayerError::Write)?;
                h.set_device_minor(rfs::minor(dev))
                    .map_err(LayerError::Write)?;
            }
        }
        for (k, v) in xattrs {
            if exported_xattr(k) {
                pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
            }
        }
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            let pname = b"PaxHeader";
            ph.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            ph.set_mode(0o644);
            ph.set_size(records.len() as u64);
            ph.set_cksum();
            self.tar
                .append(&ph, &records[..])
                .map_err(LayerError::Write)?;
        }
        h.set_cksum();
        match data {
            Some((f, _)) => {
                // Exactly `size` bytes: a file that changed size under us is an error, not a
                // corrupt archive.
                let mut r = ExactReader { f, left: size };
                self.tar
                    .append(&h, &mut r)
                    .map_err(|e| LayerError::fs("read", String::from_utf8_lossy(name), e))?;
            }
            None => self
                .tar
                .append(&h, io::empty())
                .map_err(LayerError::Write)?,
        }
        self.entries += 1;
        Ok(())
    }

    /// A whiteout or opaque marker `name` in directory `dir`.
    fn marker(&mut self, dir: &RelPath, name: &[u8]) -> Result<(), LayerError> {
        let p = dir.join(name).to_bytes();
        self.append(&p, EntryType::Regular, None, b"", &[], None)
    }

    fn dir(
        &mut self,
        rel: &RelPath,
        st: &rfs::Stat,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), LayerError> {
        let mut p = rel.to_bytes();
        p.push(b'/');
        self.append(&p, EntryType::Directory, Some(st), b"", xattrs, None)
    }

    fn file(
        &mut self,
        rel: &RelPath,
        st: &rfs::Stat,
        xattrs: &[(String, Vec<u8>)],
        data: File,
    ) -> Result<(), LayerError> {
        let p = rel.to_bytes();
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                return self.append(&p, EntryType::Link, Some(st), &first, &[], None);
            }
            self.links.insert(key, p.clone());
        }
        self.append(
            &p,
            EntryType::Regular,
            Some(st),
            b"",
            xattrs,
            Some((data, st.st_size as u64)),
        )
    }

    /// Symlinks, devices and fifos (sockets are skipped: tar cannot hold them).
    fn other(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        rel: &RelPath,
        st: &rfs::Stat,
    ) -> Result<(), LayerError> {
        let ft = fsx::file_type(st);
        let etype = match ft {
            FileType::Symlink => EntryType::Symlink,
            FileType::CharacterDevice => EntryType::Char,
            FileType::BlockDevice => EntryType::Block,
            FileType::Fifo => EntryType::Fifo,
            _ => return Ok(()),
        };
        let xattrs = fsx::get_xattrs(XattrTarget::At(dir, name))
            .map_err(|e| LayerError::fs("read xattrs of", rel.display(), e))?;
        let link = if etype == EntryType::Symlink {
            read_link(dir, name, rel)?
        } else {
            Vec::new()
        };
        self.append(&rel.to_bytes(), etype, Some(st), &link, &xattrs, None)
    }
}

/// Extended attributes written into layers: not overlay's own, not the host's SELinux label.
fn exported_xattr(k: &str) -> bool {
    !(k.starts_with("trusted.overlay.")
        || k.starts_with("user.overlay.")
        || k == "security.selinux")
}

/// PAX extended header records: `"<len> <key>=<value>\n"`, len counting itself.
fn pax_records(recs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in recs {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Reads exactly `left` bytes from a file, failing if it is shorter.
struct ExactReader {
    f: File,
    left: u64,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let r = pax_records(&[("path".into(), b"a".to_vec())]);
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_records(&[("path".into(), long)]);
        let s = String::from_utf8(r).unwrap();
        let (n, _) = s.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), s.len());
    }
}
