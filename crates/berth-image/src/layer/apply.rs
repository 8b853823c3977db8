//! The layer applier.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;

use berth_core::Digest;
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use tar::EntryType;

use super::compression::{LayerStream, BUF_SIZE};
use super::fsx::{self, XattrTarget};
use super::path::RelPath;
use super::{Compression, LayerError, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// Copy buffer for file data.
const COPY_BUF: usize = 1024 * 1024;
/// Most bytes of headers, long names and PAX records read for one entry.
const MAX_META_BYTES: u64 = 16 * 1024 * 1024;

/// How whiteout entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// The root is an overlayfs upper dir: `.wh.<name>` becomes a 0/0 char device `<name>`,
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
    #[default]
    Overlay,
    /// The root holds the lower layers' content already (copy snapshotter, flattening):
    /// `.wh.<name>` deletes `<name>`, `.wh..wh..opq` empties its directory of everything this
    /// layer did not itself create.
    Remove,
    /// Not a layer (`docker cp`, `ADD` of a local tar): `.wh.*` names are ordinary files.
    Literal,
}

/// A user-namespace id mapping (like `/proc/<pid>/uid_map`): ids from the archive are
/// translated through `(inside, outside, count)` ranges; an id outside every range is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// `(inside, outside, count)` ranges for user ids.
    pub uids: Vec<(u32, u32, u32)>,
    /// `(inside, outside, count)` ranges for group ids.
    pub gids: Vec<(u32, u32, u32)>,
}

impl IdMap {
    fn map(ranges: &[(u32, u32, u32)], id: u32) -> Option<u32> {
        ranges.iter().find_map(|&(inside, outside, count)| {
            let off = id.checked_sub(inside)?;
            (off < count).then(|| outside.checked_add(off)).flatten()
        })
    }

    /// The host uid for an archive uid.
    pub fn uid(&self, id: u32) -> Option<u32> {
        Self::map(&self.uids, id)
    }

    /// The host gid for an archive gid.
    pub fn gid(&self, id: u32) -> Option<u32> {
        Self::map(&self.gids, id)
    }

    /// The mapping the other way round (host ids to archive ids), for diffs.
    pub fn inverse(&self) -> IdMap {
        let flip = |r: &[(u32, u32, u32)]| r.iter().map(|&(i, o, c)| (o, i, c)).collect();
        IdMap {
            uids: flip(&self.uids),
            gids: flip(&self.gids),
        }
    }
}

/// Options of [`apply_layer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// How whiteouts are written.
    pub whiteout: WhiteoutMode,
    /// Set owners from the tar headers (uid/gid); otherwise files belong to the caller.
    pub same_owner: bool,
    /// Ignore EPERM/EINVAL from chown (rootless, unmapped ids).
    pub ignore_chown_errors: bool,
    /// Translate owners (user-namespace remapping); applied before `owner`.
    pub id_map: Option<IdMap>,
    /// Give every entry this `(uid, gid)` instead of the archive's (`ADD --chown`).
    pub owner: Option<(u32, u32)>,
    /// Create char/block device nodes; when false such entries are refused.
    pub allow_devices: bool,
    /// Largest size of one file entry.
    pub max_file_size: Option<u64>,
    /// Largest number of entries (of every kind) in the layer.
    pub max_entries: Option<u64>,
    /// Largest uncompressed stream size (decompression bombs).
    pub max_total_size: Option<u64>,
    /// Decompress and hash on the calling thread while a scoped worker thread parses and
    /// writes. Off by default: on the shared 2-core test machine it measured 0-20% slower than
    /// one thread (layers are better parallelised by unpacking several at once); worth
    /// re-measuring on idle many-core hosts.
    pub pipeline: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteout: WhiteoutMode::Overlay,
            same_owner: true,
            ignore_chown_errors: false,
            id_map: None,
            owner: None,
            allow_devices: true,
            max_file_size: None,
            max_entries: None,
            max_total_size: None,
            pipeline: false,
        }
    }
}

impl ApplyOptions {
    /// Defaults with the given whiteout mode.
    pub fn with_whiteout(whiteout: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteout,
            ..Default::default()
        }
    }
}

/// What [`apply_layer`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// sha256 of the uncompressed tar stream (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// sha256 of the stream as given (equal to `diff_id` for a plain tar).
    pub compressed_digest: Digest,
    /// Bytes of the stream as given.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries processed (including skipped ones).
    pub entries: u64,
    /// The detected compression.
    pub compression: Compression,
    /// Entries skipped (unknown types, `.wh..wh.*` meta entries, PAX global headers).
    pub skipped_entries: u64,
    /// Extended attributes dropped (overlay namespaces, unknown namespaces, unsupported).
    pub dropped_xattrs: u64,
}

/// Apply a layer (plain, gzip or zstd tar; detected from the magic bytes) into `root`.
///
/// On error the root may hold part of the layer: the caller discards the snapshot.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyReport, LayerError> {
    let root_fd = fsx::open_root(root)
        .map_err(|e| LayerError::fs("open layer root", root.display().to_string(), e))?;
    apply_layer_owned(root_fd, reader, opts)
}

/// [`apply_layer`] into an already open root directory (e.g. a snapshot's upper dir fd).
pub fn apply_layer_at(
    root: BorrowedFd<'_>,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyReport, LayerError> {
    let root_fd = root
        .try_clone_to_owned()
        .map_err(|e| LayerError::fs("duplicate layer root fd", "", e))?;
    apply_layer_owned(root_fd, reader, opts)
}

fn apply_layer_owned(
    root_fd: OwnedFd,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyReport, LayerError> {
    let buffered = BufReader::with_capacity(BUF_SIZE, reader);
    let (compression, mut stream) = LayerStream::open(buffered)?;
    let counts = if opts.pipeline {
        pipelined(root_fd, &mut stream, opts)?
    } else {
        let counts = extract(root_fd, &mut stream, opts)?;
        io::copy(&mut stream, &mut io::sink()).map_err(LayerError::Read)?;
        counts
    };
    let sums = stream.finish().map_err(LayerError::Read)?;
    Ok(ApplyReport {
        diff_id: sums.diff_id,
        compressed_digest: sums.compressed_digest,
        size: sums.size,
        uncompressed_size: sums.uncompressed_size,
        entries: counts.entries,
        compression,
        skipped_entries: counts.skipped,
        dropped_xattrs: counts.dropped_xattrs,
    })
}

/// Chunks handed from the reading thread to the extracting one.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Read, decompress and hash on the calling thread; parse and write on a scoped worker, so
/// that decompression and hashing overlap with the filesystem work.
fn pipelined<R: Read>(
    root: OwnedFd,
    stream: &mut R,
    opts: &ApplyOptions,
) -> Result<Counts, LayerError> {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (ret_tx, ret_rx) = mpsc::channel::<Vec<u8>>();
        let worker = std::thread::Builder::new()
            .name("berth-layer-apply".into())
            .spawn_scoped(s, move || {
                let reader = ChanReader {
                    rx,
                    ret: ret_tx,
                    cur: Vec::new(),
                    pos: 0,
                };
                extract(root, reader, opts)
            })
            .map_err(|e| LayerError::fs("start layer worker", "", e))?;
        let mut read_err = None;
        loop {
            let mut buf = ret_rx.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            match read_full(stream, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    // The worker hung up: it failed (its error is returned below).
                    if tx.send(buf).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let res = worker
            .join()
            .map_err(|_| LayerError::Read(io::Error::other("layer worker panicked")))?;
        match (read_err, res) {
            (Some(e), _) => Err(LayerError::Read(e)),
            (None, r) => r,
        }
    })
}

/// Fill `buf` as far as the stream allows; 0 only at its end.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The worker's end of the chunk channel; returns spent chunks for reuse.
struct ChanReader {
    rx: mpsc::Receiver<Vec<u8>>,
    ret: mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(next) => {
                    let spent = std::mem::replace(&mut self.cur, next);
                    let _ = self.ret.send(spent);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Entry counts of one extraction.
struct Counts {
    entries: u64,
    skipped: u64,
    dropped_xattrs: u64,
}

/// Parse the uncompressed tar from `reader` and apply it under `root`; reads `reader` to
/// its end (within the limits).
fn extract<R: Read>(root: OwnedFd, reader: R, opts: &ApplyOptions) -> Result<Counts, LayerError> {
    let state = Rc::new(GuardState {
        meta_budget: Cell::new(None),
        total: Cell::new(0),
        max_total: opts.max_total_size,
        tripped: Cell::new(None),
    });
    let guard = Guard {
        inner: reader,
        state: state.clone(),
    };
    let mut archive = tar::Archive::new(guard);
    let mut ap = Applier {
        root,
        opts,
        state: state.clone(),
        parent_cache: None,
        dirs: Vec::new(),
        created: HashSet::new(),
        buf: vec![0u8; COPY_BUF],
        entries: 0,
        skipped: 0,
        dropped_xattrs: 0,
    };
    {
        let mut entries = archive.entries().map_err(|e| ap.read_err(e))?;
        loop {
            state.meta_budget.set(Some(MAX_META_BYTES));
            let next = entries.next();
            state.meta_budget.set(None);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| ap.read_err(e))?;
            ap.entry(&mut entry)?;
            // Consume whatever the handler left, so the next header read only reads metadata.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| ap.read_err(e))?;
        }
    }
    ap.finish_dirs()?;
    // The rest (end-of-archive blocks, padding) still counts against the limits.
    let mut guard = archive.into_inner();
    io::copy(&mut guard, &mut io::sink()).map_err(|e| ap.read_err(e))?;
    Ok(Counts {
        entries: ap.entries,
        skipped: ap.skipped,
        dropped_xattrs: ap.dropped_xattrs,
    })
}

/// [`apply_layer`], then check the uncompressed stream's digest against `expected_diff_id`;
/// a mismatch is [`LayerError::DigestMismatch`] (kind Corrupt) and the caller discards the root.
pub fn apply_layer_verified(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
    expected_diff_id: &Digest,
) -> Result<ApplyReport, LayerError> {
    let report = apply_layer(root, reader, opts)?;
    if &report.diff_id != expected_diff_id {
        return Err(LayerError::DigestMismatch {
            expected: expected_diff_id.clone(),
            actual: report.diff_id,
        });
    }
    Ok(report)
}

/// Limits shared between the reader handed to the tar parser and the apply loop.
struct GuardState {
    /// While reading headers: how many more bytes may be read (None: no header limit).
    meta_budget: Cell<Option<u64>>,
    total: Cell<u64>,
    max_total: Option<u64>,
    tripped: Cell<Option<String>>,
}

/// The reader under the tar parser: enforces the metadata budget (the tar crate reads long
/// names and PAX records into memory) and the total size limit.
struct Guard<R: Read> {
    inner: R,
    state: Rc<GuardState>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let st = &self.state;
        let total = st.total.get() + n as u64;
        st.total.set(total);
        if let Some(max) = st.max_total {
            if total > max {
                let msg = format!("uncompressed layer larger than {max} bytes");
                st.tripped.set(Some(msg.clone()));
                return Err(io::Error::other(msg));
            }
        }
        if let Some(budget) = st.meta_budget.get() {
            if n as u64 > budget {
                let msg = format!(
                    "entry headers (long names, PAX records) larger than {MAX_META_BYTES} bytes"
                );
                st.tripped.set(Some(msg.clone()));
                return Err(io::Error::other(msg));
            }
            st.meta_budget.set(Some(budget - n as u64));
        }
        Ok(n)
    }
}

/// Metadata of a directory applied after all entries (mode and times).
struct DirMeta {
    path: RelPath,
    mode: u32,
    times: Timestamps,
}

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Applier<'o> {
    root: OwnedFd,
    opts: &'o ApplyOptions,
    state: Rc<GuardState>,
    /// The last parent directory resolved, reused by its following siblings.
    parent_cache: Option<(RelPath, OwnedFd)>,
    dirs: Vec<DirMeta>,
    /// Paths this layer created (Remove mode: an opaque marker keeps them).
    created: HashSet<RelPath>,
    buf: Vec<u8>,
    entries: u64,
    skipped: u64,
    dropped_xattrs: u64,
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Parse a PAX time (`1700000000.123456789`, maybe negative).
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        nsec += i64::from(c - b'0') * 10i64.pow(8 - i as u32);
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(if neg {
        if nsec > 0 {
            ts(-sec - 1, 1_000_000_000 - nsec)
        } else {
            ts(-sec, 0)
        }
    } else {
        ts(sec, nsec)
    })
}

/// True for extended attributes a layer may set. Overlay's own namespaces are refused: they
/// would forge whiteouts, opaque directories and redirects.
pub(crate) fn xattr_allowed(key: &str) -> bool {
    if key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.") {
        return false;
    }
    let ns_ok = ["user.", "security.", "trusted."]
        .iter()
        .any(|p| key.len() > p.len() && key.starts_with(p))
        || key == "system.posix_acl_access"
        || key == "system.posix_acl_default";
    ns_ok && !key.contains('\0')
}

impl Applier<'_> {
    fn read_err(&self, e: io::Error) -> LayerError {
        if let Some(msg) = self.state.tripped.take() {
            return LayerError::Limit(msg);
        }
        match e.kind() {
            io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                LayerError::Malformed(e.to_string())
            }
            _ => LayerError::Read(e),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        self.entries += 1;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        if let Some(max) = self.opts.max_entries {
            if self.entries > max {
                return Err(LayerError::Limit(format!("more than {max} entries")));
            }
        }
        let etype = entry.header().entry_type();
        if etype == EntryType::XGlobalHeader {
            self.skipped += 1;
            return Ok(());
        }
        let size = entry.size();
        if let Some(max) = self.opts.max_file_size {
            if size > max {
                return Err(LayerError::Limit(format!(
                    "entry {shown:?} is {size} bytes, more than {max}"
                )));
            }
        }
        let path = RelPath::clean(&raw_name)?;

        // Whiteouts.
        let name = match self.opts.whiteout {
            WhiteoutMode::Literal => None,
            _ => path.file_name(),
        };
        if let Some(name) = name {
            let name = name.as_bytes();
            if name == WHITEOUT_OPAQUE.as_bytes() {
                let dir = path.parent().unwrap_or_default();
                return self.opaque(&dir, &shown);
            }
            if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
                self.skipped += 1;
                return Ok(());
            }
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(LayerError::unsafe_entry(shown, "whiteout of nothing"));
                }
                let dir = path.parent().unwrap_or_default();
                return self.whiteout(&dir, target, &shown);
            }
        }

        let meta = self.meta(entry, &shown)?;
        // Pre-POSIX archives mark directories with a trailing slash on a regular entry.
        let old_style_dir = etype == EntryType::Regular && raw_name.ends_with(b"/") && size == 0;
        if old_style_dir {
            return self.directory(&path, meta, &shown);
        }
        match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(entry, &path, &meta, &shown)
            }
            EntryType::Directory => self.directory(&path, meta, &shown),
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.symlink(&path, &target, &meta, &shown)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.hardlink(&path, &target, &shown)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                self.special(&path, etype, major, minor, &meta, &shown)
            }
            _ => {
                self.skipped += 1;
                Ok(())
            }
        }
    }

    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Meta, LayerError> {
        let h = entry.header();
        let bad = |what: &str| LayerError::Malformed(format!("entry {shown:?}: bad {what}"));
        // An empty numeric field (all NUL or spaces, as some writers leave them) reads as 0.
        let old = h.as_old();
        let num = |r: io::Result<u64>, raw: &[u8], what: &str| match r {
            Ok(v) => Ok(v),
            Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
            Err(_) => Err(bad(what)),
        };
        let mode = num(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
        let mut uid = num(h.uid(), &old.uid, "uid")?;
        let mut gid = num(h.gid(), &old.gid, "gid")?;
        let mtime = num(h.mtime(), &old.mtime, "mtime")?;
        let mut mtime = ts(i64::try_from(mtime).map_err(|_| bad("mtime"))?, 0);
        let mut atime = h
            .as_gnu()
            .and_then(|g| g.atime().ok())
            .filter(|&a| a != 0)
            .and_then(|a| i64::try_from(a).ok())
            .map(|a| ts(a, 0));
        let mut xattrs = Vec::new();
        let mut dropped = 0;
        if let Some(pax) = entry.pax_extensions().map_err(|e| self.read_err(e))? {
            for ext in pax {
                let ext = ext.map_err(|_| bad("PAX record"))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match key {
                    "uid" => uid = num().ok_or_else(|| bad("PAX uid"))?,
                    "gid" => gid = num().ok_or_else(|| bad("PAX gid"))?,
                    "mtime" => mtime = parse_pax_time(value).ok_or_else(|| bad("PAX mtime"))?,
                    "atime" => atime = Some(parse_pax_time(value).ok_or_else(|| bad("PAX atime"))?),
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            if xattr_allowed(name) {
                                xattrs.push((name.to_string(), value.to_vec()));
                            } else {
                                dropped += 1;
                            }
                        }
                    }
                }
            }
        }
        self.dropped_xattrs += dropped;
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| bad(what))
        };
        let (mut uid, mut gid) = (id(uid, "uid")?, id(gid, "gid")?);
        if let Some(m) = &self.opts.id_map {
            uid = m.uid(uid).ok_or_else(|| {
                LayerError::unsafe_entry(shown, format!("uid {uid} is not in the id map"))
            })?;
            gid = m.gid(gid).ok_or_else(|| {
                LayerError::unsafe_entry(shown, format!("gid {gid} is not in the id map"))
            })?;
        }
        if let Some((u, g)) = self.opts.owner {
            (uid, gid) = (u, g);
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Timestamps {
                last_access: atime.unwrap_or(mtime),
                last_modification: mtime,
            },
            xattrs,
        })
    }

    /// The parent directory of `path`, created if missing, resolved inside the root. Give it
    /// back with [`Self::keep_parent`] unless something was removed meanwhile.
    fn take_parent(
        &mut self,
        path: &RelPath,
        shown: &str,
    ) -> Result<(RelPath, OwnedFd), LayerError> {
        let parent = path.parent().unwrap_or_default();
        if let Some((p, fd)) = self.parent_cache.take() {
            if p == parent {
                return Ok((p, fd));
            }
        }
        let fd = fsx::mkdir_all(self.root.as_fd(), &parent)
            .map_err(|e| LayerError::fs("resolve parent directory of", shown, e))?;
        Ok((parent, fd))
    }

    fn keep_parent(&mut self, parent: RelPath, fd: OwnedFd) {
        self.parent_cache = Some((parent, fd));
    }

    /// Make room for a new entry `name` in `dir`: returns true when an existing directory is
    /// kept (only when `want_dir`). Anything else there is removed; symlinks are removed, never
    /// followed.
    fn make_room(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        want_dir: bool,
        shown: &str,
    ) -> Result<bool, LayerError> {
        let existing = fsx::lstat_at(dir, name).map_err(|e| LayerError::fs("stat", shown, e))?;
        let Some(st) = existing else { return Ok(false) };
        if fsx::file_type(&st) == FileType::Directory {
            if want_dir {
                return Ok(true);
            }
            fsx::remove_all_at(dir, name)
                .map_err(|e| LayerError::fs("remove directory", shown, e))?;
            self.parent_cache = None;
            return Ok(false);
        }
        rfs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|e| LayerError::fs("remove", shown, e))?;
        Ok(false)
    }

    /// Remember (Remove mode) that this layer wrote `path`, and so also its ancestors, which
    /// an opaque marker later in the layer must keep.
    fn mark_created(&mut self, path: &RelPath) {
        if self.opts.whiteout != WhiteoutMode::Remove {
            return;
        }
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if cur.is_root() || !self.created.insert(cur.clone()) {
                break;
            }
            p = cur.parent();
        }
    }

    fn chown(&self, t: ChownTarget<'_>, meta: &Meta, shown: &str) -> Result<(), LayerError> {
        if !self.opts.same_owner {
            return Ok(());
        }
        let uid = Some(Uid::from_raw(meta.uid));
        let gid = Some(Gid::from_raw(meta.gid));
        let r = match t {
            ChownTarget::Fd(fd) => rfs::fchown(fd, uid, gid),
            ChownTarget::At(dir, name) => {
                rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err(Errno::PERM | Errno::INVAL) if self.opts.ignore_chown_errors => Ok(()),
            Err(e) => Err(LayerError::fs("chown", shown, e)),
        }
    }

    fn set_xattrs(
        &mut self,
        t: XattrTarget<'_>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), LayerError> {
        for (k, v) in &meta.xattrs {
            match fsx::set_xattr(t, k, v) {
                Ok(()) => {}
                // Not every filesystem or file type takes every namespace (user.* on symlinks).
                Err(Errno::NOTSUP | Errno::PERM) => self.dropped_xattrs += 1,
                Err(e) => return Err(LayerError::fs("set xattr on", format!("{shown} ({k})"), e)),
            }
        }
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &RelPath,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), LayerError> {
        let Some(name) = path.file_name() else {
            return Err(LayerError::unsafe_entry(
                shown,
                "a file cannot replace the layer root",
            ));
        };
        let (pp, dir) = self.take_parent(path, shown)?;
        self.make_room(dir.as_fd(), name, false, shown)?;
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| LayerError::fs("create file", shown, e))?;
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| LayerError::fs("write file", shown, e))?;
        }
        // chown before chmod (chown clears setuid/setgid), xattrs after chown (it clears
        // security.capability), times last.
        self.chown(ChownTarget::Fd(file.as_fd()), meta, shown)?;
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| LayerError::fs("chmod", shown, e))?;
        self.set_xattrs(XattrTarget::Fd(file.as_fd()), meta, shown)?;
        rfs::futimens(&file, &meta.times).map_err(|e| LayerError::fs("set times of", shown, e))?;
        self.mark_created(path);
        self.keep_parent(pp, dir);
        Ok(())
    }

    fn directory(&mut self, path: &RelPath, meta: Meta, shown: &str) -> Result<(), LayerError> {
        let fd = match path.file_name() {
            None => fsx::open_dir_nofollow(self.root.as_fd(), path)
                .map_err(|e| LayerError::fs("open", shown, e))?,
            Some(name) => {
                let (pp, dir) = self.take_parent(path, shown)?;
                if !self.make_room(dir.as_fd(), name, true, shown)? {
                    rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| LayerError::fs("mkdir", shown, e))?;
                }
                let fd = rfs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| LayerError::fs("open directory", shown, e))?;
                if self.parent_cache.is_none() {
                    self.keep_parent(pp, dir);
                }
                fd
            }
        };
        self.chown(ChownTarget::Fd(fd.as_fd()), &meta, shown)?;
        self.set_xattrs(XattrTarget::Fd(fd.as_fd()), &meta, shown)?;
        self.mark_created(path);
        self.dirs.push(DirMeta {
            path: path.clone(),
            mode: meta.mode,
            times: meta.times,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &RelPath,
        target: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), LayerError> {
        let Some(name) = path.file_name() else {
            return Err(LayerError::unsafe_entry(
                shown,
                "a symlink cannot replace the layer root",
            ));
        };
        if target.is_empty() || target.contains(&0) {
            return Err(LayerError::unsafe_entry(
                shown,
                "empty symlink target or NUL in it",
            ));
        }
        let (pp, dir) = self.take_parent(path, shown)?;
        self.make_room(dir.as_fd(), name, false, shown)?;
        rfs::symlinkat(OsStr::from_bytes(target), &dir, name)
            .map_err(|e| LayerError::fs("symlink", shown, e))?;
        self.chown(ChownTarget::At(dir.as_fd(), name), meta, shown)?;
        self.set_xattrs(XattrTarget::At(dir.as_fd(), name), meta, shown)?;
        rfs::utimensat(&dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::fs("set times of", shown, e))?;
        self.mark_created(path);
        self.keep_parent(pp, dir);
        Ok(())
    }

    fn hardlink(&mut self, path: &RelPath, target: &[u8], shown: &str) -> Result<(), LayerError> {
        let Some(name) = path.file_name() else {
            return Err(LayerError::unsafe_entry(
                shown,
                "a hardlink cannot replace the layer root",
            ));
        };
        let tpath = RelPath::clean(target).map_err(|e| match e {
            LayerError::Unsafe { reason, .. } => {
                LayerError::unsafe_entry(shown, format!("hardlink target: {reason}"))
            }
            e => e,
        })?;
        let Some(tname) = tpath.file_name() else {
            return Err(LayerError::unsafe_entry(
                shown,
                "hardlink to the layer root",
            ));
        };
        if tpath == *path {
            return Err(LayerError::unsafe_entry(shown, "hardlink to itself"));
        }
        let tdir =
            fsx::open_dir(self.root.as_fd(), &tpath.parent().unwrap_or_default()).map_err(|e| {
                LayerError::fs(
                    "resolve hardlink target",
                    String::from_utf8_lossy(target),
                    e,
                )
            })?;
        match fsx::lstat_at(tdir.as_fd(), tname) {
            Ok(Some(st)) if fsx::file_type(&st) == FileType::Directory => {
                return Err(LayerError::unsafe_entry(shown, "hardlink to a directory"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(LayerError::unsafe_entry(
                    shown,
                    "hardlink target does not exist in the layer",
                ));
            }
            Err(e) => {
                return Err(LayerError::fs(
                    "stat hardlink target",
                    String::from_utf8_lossy(target),
                    e,
                ))
            }
        }
        if path.starts_with(&tpath) {
            return Err(LayerError::unsafe_entry(
                shown,
                "hardlink below its own target",
            ));
        }
        let (pp, dir) = self.take_parent(path, shown)?;
        self.make_room(dir.as_fd(), name, false, shown)?;
        // Flags 0: a symlink target is linked itself, never followed.
        rfs::linkat(&tdir, tname, &dir, name, AtFlags::empty())
            .map_err(|e| LayerError::fs("hardlink", shown, e))?;
        self.mark_created(path);
        self.keep_parent(pp, dir);
        Ok(())
    }

    fn special(
        &mut self,
        path: &RelPath,
        etype: EntryType,
        major: u32,
        minor: u32,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), LayerError> {
        let Some(name) = path.file_name() else {
            return Err(LayerError::unsafe_entry(
                shown,
                "a special file cannot replace the layer root",
            ));
        };
        let ft = match etype {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if ft != FileType::Fifo && !self.opts.allow_devices {
            return Err(LayerError::unsafe_entry(
                shown,
                "device nodes are not allowed",
            ));
        }
        let (pp, dir) = self.take_parent(path, shown)?;
        self.make_room(dir.as_fd(), name, false, shown)?;
        rfs::mknodat(
            &dir,
            name,
            ft,
            Mode::from_raw_mode(meta.mode & 0o777),
            rfs::makedev(major, minor),
        )
        .map_err(|e| LayerError::fs("mknod", shown, e))?;
        self.chown(ChownTarget::At(dir.as_fd(), name), meta, shown)?;
        // fchmodat follows a final symlink, but `name` is the node we just made.
        rfs::chmodat(&dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| LayerError::fs("chmod", shown, e))?;
        self.set_xattrs(XattrTarget::At(dir.as_fd(), name), meta, shown)?;
        rfs::utimensat(&dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::fs("set times of", shown, e))?;
        self.mark_created(path);
        self.keep_parent(pp, dir);
        Ok(())
    }

    fn whiteout(&mut self, dir: &RelPath, target: &[u8], shown: &str) -> Result<(), LayerError> {
        let name = OsStr::from_bytes(target);
        let path = dir.join(target);
        match self.opts.whiteout {
            WhiteoutMode::Remove => {
                self.parent_cache = None;
                let dfd = match fsx::open_dir(self.root.as_fd(), dir) {
                    Ok(fd) => fd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                        return Ok(())
                    }
                    Err(e) => {
                        return Err(LayerError::fs("resolve whiteout directory of", shown, e))
                    }
                };
                fsx::remove_all_at(dfd.as_fd(), name)
                    .map_err(|e| LayerError::fs("remove whited-out", shown, e))?;
            }
            WhiteoutMode::Literal => {}
            WhiteoutMode::Overlay => {
                let (pp, dfd) = self.take_parent(&path, shown)?;
                self.make_room(dfd.as_fd(), name, false, shown)?;
                rfs::mknodat(
                    &dfd,
                    name,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(|e| LayerError::fs("create whiteout for", shown, e))?;
                if self.parent_cache.is_none() {
                    self.keep_parent(pp, dfd);
                }
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &RelPath, shown: &str) -> Result<(), LayerError> {
        self.parent_cache = None;
        if !dir.is_root() {
            fsx::mkdir_all(self.root.as_fd(), &dir.parent().unwrap_or_default())
                .and_then(|p| {
                    match rfs::mkdirat(
                        &p,
                        dir.file_name().unwrap_or_default(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => Ok(()),
                        Err(e) => Err(e.into()),
                    }
                })
                .map_err(|e| LayerError::fs("create opaque directory of", shown, e))?;
        }
        let fd = fsx::open_dir_nofollow(self.root.as_fd(), dir)
            .map_err(|e| LayerError::fs("open opaque directory of", shown, e))?;
        match self.opts.whiteout {
            WhiteoutMode::Literal => Ok(()),
            WhiteoutMode::Overlay => {
                fsx::set_xattr(XattrTarget::Fd(fd.as_fd()), "trusted.overlay.opaque", b"y")
                    .map_err(|e| LayerError::fs("mark opaque", dir.display(), e))
            }
            WhiteoutMode::Remove => {
                let names = fsx::list_dir(fd.as_fd())
                    .map_err(|e| LayerError::fs("list", dir.display(), e))?;
                for n in names {
                    let child = dir.join(&n);
                    if self.created.contains(&child) {
                        continue;
                    }
                    fsx::remove_all_at(fd.as_fd(), OsStr::from_bytes(&n))
                        .map_err(|e| LayerError::fs("remove", child.display(), e))?;
                }
                Ok(())
            }
        }
    }

    /// Set directory modes and times, last entry first, once all children exist.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        self.parent_cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        let mut done: HashSet<&RelPath> = HashSet::new();
        for d in dirs.iter().rev() {
            if !done.insert(&d.path) {
                continue;
            }
            let fd = match fsx::open_dir_nofollow(self.root.as_fd(), &d.path) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(LayerError::fs("open", d.path.display(), e)),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))
                .map_err(|e| LayerError::fs("chmod", d.path.display(), e))?;
            rfs::futimens(&fd, &d.times)
                .map_err(|e| LayerError::fs("set times of", d.path.display(), e))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum ChownTarget<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time(b"1x").is_none());
        assert!(parse_pax_time(b"1.2x").is_none());
    }

    #[test]
    fn xattr_filter() {
        assert!(xattr_allowed("security.capability"));
        assert!(xattr_allowed("user.foo"));
        assert!(!xattr_allowed("trusted.overlay.opaque"));
        assert!(!xattr_allowed("user.overlay.redirect"));
        assert!(!xattr_allowed("system.foo"));
        assert!(!xattr_allowed("user."));
        assert!(!xattr_allowed("bogus"));
    }
}
