//! COPY and ADD with Docker's semantics, as a plan (data) then an apply.
//!
//! [`plan`] expands the sources against a source tree (the build context filtered by
//! `.dockerignore`, or a stage's rootfs) into destination entries: a directory source copies
//! its *contents*; globs match paths component by component; several sources (or a glob) need
//! a destination ending in `/`; a destination ending in `/` (or an existing directory) receives
//! sources by their base name; `--parents` keeps the source's path; `--exclude` drops matches.
//! [`Plan::cache_key`] hashes what lands in the image (paths, types, modes, owners, contents)
//! but not mtimes, reusing content hashes from the per-file cache. [`Plan::apply`] streams the
//! entries as a tar into berth-image's applier (Literal whiteouts), which resolves every parent
//! inside the target root: nothing is written outside it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_dockerfile::DockerIgnore;
use berth_image::layer::{apply_layer_at, ApplyOptions, WhiteoutMode};
use rustix::fs::OFlags;
use sha2::{Digest as _, Sha256};

use crate::cache::Cache;
use crate::error::BuildError;
use crate::fsutil;

/// Where COPY reads from.
#[derive(Debug, Clone)]
pub struct SourceTree {
    /// The root directory.
    pub root: PathBuf,
    /// Paths under the root that may be copied (relative, `/`-separated, parents first):
    /// the context after `.dockerignore`, or every path of a stage.
    pub paths: Vec<String>,
    /// Whether this is the build context (errors say so; file hashes are cached).
    pub is_context: bool,
}

impl SourceTree {
    /// The tree at `root`, filtered by `ignore`.
    pub fn walk(root: &Path, ignore: &DockerIgnore, is_context: bool) -> Result<Self, BuildError> {
        let paths = ignore
            .walk(root)
            .map_err(|e| {
                BuildError::io(
                    format!("walk {}", root.display()),
                    std::io::Error::other(e.to_string()),
                )
            })?
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        Ok(SourceTree {
            root: root.to_path_buf(),
            paths,
            is_context,
        })
    }
}

/// A source of COPY/ADD after substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Src {
    /// A path (maybe a glob) in the source tree.
    Path(String),
    /// An inline file (heredoc): name and content.
    Inline(String, Vec<u8>),
}

/// COPY/ADD options.
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    /// Owner of everything copied (`--chown`, resolved); default root.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` mode bits.
    pub chmod: Option<u32>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD: extract local tar archives.
    pub unpack_archives: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir {
        mode: u32,
        mtime: u64,
    },
    File {
        src: String,
        size: u64,
        mode: u32,
        mtime: u64,
    },
    Symlink {
        target: String,
        mtime: u64,
    },
    Inline {
        data: Vec<u8>,
        mode: u32,
    },
    Archive {
        src: String,
    },
}

/// One destination entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    dest: String,
    item: Item,
}

/// What a COPY/ADD writes.
#[derive(Debug, Clone)]
pub struct Plan {
    root: PathBuf,
    is_context: bool,
    entries: Vec<Entry>,
    owner: (u32, u32),
    kind: &'static str,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn clean(p: &str) -> String {
    let c = berth_dockerfile::clean_path(p.trim_start_matches('/'));
    if c == "." || c.is_empty() {
        String::new()
    } else {
        c
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    if n < 6 {
        return false;
    }
    match berth_image::layer::detect(&head[..n]) {
        berth_image::layer::Compression::None => n >= 262 && &head[257..262] == b"ustar",
        _ => true,
    }
}

/// Plan a COPY/ADD of `srcs` to `dest` (already made absolute against WORKDIR) into the root
/// `target` (the mounted rootfs, used to see whether `dest` is an existing directory).
pub fn plan(
    tree: Option<&SourceTree>,
    srcs: &[Src],
    dest: &str,
    target: &Path,
    opts: &CopyOpts,
    cmd: &str,
) -> Result<Plan, BuildError> {
    let target_fd = fsutil::open_root(target)?;
    let dest_clean = clean(dest);
    let dest_slash = dest.ends_with('/') || dest.ends_with("/.") || dest_clean.is_empty();
    let exclude = DockerIgnore::from_patterns(opts.exclude.iter().map(String::as_str))
        .map_err(|e| BuildError::Invalid(format!("{cmd} --exclude: {e}")))?;
    // Expand the sources.
    let mut matched: Vec<(String, Option<Src>)> = Vec::new();
    for s in srcs {
        match s {
            Src::Inline(name, _) => matched.push((name.clone(), Some(s.clone()))),
            Src::Path(p) => {
                let tree =
                    tree.ok_or_else(|| BuildError::Invalid(format!("{cmd}: no source tree")))?;
                let pat = clean(p);
                if has_glob(&pat) {
                    let m = DockerIgnore::from_patterns([pat.as_str()])
                        .map_err(|e| BuildError::Invalid(format!("{cmd} {p}: {e}")))?;
                    let depth = pat.split('/').count();
                    let hits: Vec<String> = tree
                        .paths
                        .iter()
                        .filter(|c| c.split('/').count() == depth && m.is_excluded(c))
                        .cloned()
                        .collect();
                    if hits.is_empty() {
                        return Err(BuildError::NotFound(format!(
                            "{cmd} failed: no source files were specified: {p}"
                        )));
                    }
                    matched.extend(hits.into_iter().map(|h| (h, None)));
                } else if pat.is_empty() || tree.paths.contains(&pat) {
                    matched.push((pat, None));
                } else {
                    let what = if tree.is_context {
                        "file not found in build context or excluded by .dockerignore"
                    } else {
                        "file not found in source stage or image"
                    };
                    return Err(BuildError::NotFound(format!(
                        "{cmd} failed: {what}: stat {p}: file does not exist"
                    )));
                }
            }
        }
    }
    // How Docker's history names the source: one file, one directory, or several.
    let kind = match matched.as_slice() {
        [(_, Some(_))] => "file",
        [(p, None)] => match tree.map(|t| std::fs::metadata(t.root.join(p))) {
            Some(Ok(m)) if m.is_dir() => "dir",
            _ => "file",
        },
        _ => "multi",
    };
    let dest_is_existing_dir = fsutil::is_dir_in(&target_fd, &dest_clean);
    let multi = matched.len() > 1
        || srcs
            .iter()
            .any(|s| matches!(s, Src::Path(p) if has_glob(p)));
    if matched.len() > 1 && !dest_slash && !dest_is_existing_dir {
        return Err(BuildError::Invalid(format!(
            "When using {cmd} with more than one source file, the destination must be a directory and end with a /"
        )));
    }
    let into_dir = dest_slash || dest_is_existing_dir || multi;
    let mut entries = Vec::new();
    let mut made: BTreeSet<String> = BTreeSet::new();
    let chmod = opts.chmod;
    let push_dir = |entries: &mut Vec<Entry>,
                    made: &mut BTreeSet<String>,
                    d: String,
                    mode: u32,
                    mtime: u64| {
        if !d.is_empty() && made.insert(d.clone()) {
            entries.push(Entry {
                dest: d,
                item: Item::Dir { mode, mtime },
            });
        }
    };
    // The destination directory itself, when it has to be created.
    if into_dir && !dest_is_existing_dir {
        push_dir(&mut entries, &mut made, dest_clean.clone(), 0o755, 0);
    }
    for (src, inline) in matched {
        if let Some(Src::Inline(name, data)) = inline {
            let d = if into_dir {
                join(&dest_clean, base(&name))
            } else {
                dest_clean.clone()
            };
            entries.push(Entry {
                dest: d,
                item: Item::Inline {
                    data,
                    mode: chmod.unwrap_or(0o644),
                },
            });
            continue;
        }
        let Some(tree) = tree else { continue };
        if exclude.is_excluded(&src) {
            continue;
        }
        let named = src.clone();
        let (src, md) = resolve_top(tree, &src, cmd)?;
        let abs = tree.root.join(&src);
        let dest_top = if opts.parents {
            join(&dest_clean, &named)
        } else if md.is_dir() {
            dest_clean.clone()
        } else if into_dir {
            join(&dest_clean, base(&named))
        } else {
            dest_clean.clone()
        };
        if opts.parents {
            // keep the source's parent directories under the destination
            let mut acc = dest_clean.clone();
            let comps: Vec<&str> = named.split('/').collect();
            for c in &comps[..comps.len().saturating_sub(1)] {
                acc = join(&acc, c);
                push_dir(&mut entries, &mut made, acc.clone(), 0o755, 0);
            }
        }
        if md.is_dir() {
            if !fsutil::is_dir_in(&target_fd, &dest_top) {
                push_dir(
                    &mut entries,
                    &mut made,
                    dest_top.clone(),
                    chmod.unwrap_or(md.mode() & 0o7777),
                    md.mtime().max(0) as u64,
                );
            }
            let prefix = if src.is_empty() {
                String::new()
            } else {
                format!("{src}/")
            };
            for p in tree
                .paths
                .iter()
                .filter(|p| p.starts_with(&prefix) && **p != src)
            {
                if exclude.is_excluded(p) || exclude.is_excluded(&p[prefix.len()..]) {
                    continue;
                }
                let rel = &p[prefix.len()..];
                let d = join(&dest_top, rel);
                let m = std::fs::symlink_metadata(tree.root.join(p))
                    .map_err(|e| BuildError::io(format!("{cmd}: stat {p}"), e))?;
                entries.push(item_for(p, d, &m, chmod, &tree.root)?);
            }
        } else if opts.unpack_archives && md.is_file() && is_archive(&abs) {
            let d = dest_clean.clone();
            if !fsutil::is_dir_in(&target_fd, &d) {
                push_dir(&mut entries, &mut made, d.clone(), 0o755, 0);
            }
            entries.push(Entry {
                dest: d,
                item: Item::Archive { src: src.clone() },
            });
        } else {
            entries.push(item_for(&src, dest_top, &md, chmod, &tree.root)?);
        }
    }
    Ok(Plan {
        root: tree.map(|t| t.root.clone()).unwrap_or_default(),
        is_context: tree.is_some_and(|t| t.is_context),
        entries,
        owner: opts.owner.unwrap_or((0, 0)),
        kind,
    })
}

/// A source named by the Dockerfile is followed when it is a symlink, as Docker does, but
/// resolved inside the tree's root (`RESOLVE_IN_ROOT`): the result is a path of the tree.
fn resolve_top(
    tree: &SourceTree,
    src: &str,
    cmd: &str,
) -> Result<(String, std::fs::Metadata), BuildError> {
    let md = std::fs::symlink_metadata(tree.root.join(src))
        .map_err(|e| BuildError::io(format!("{cmd}: stat {src}"), e))?;
    if !md.file_type().is_symlink() {
        return Ok((src.to_owned(), md));
    }
    let missing = || {
        BuildError::NotFound(format!(
            "{cmd} failed: {src} is a symlink to a file that is not in the build tree"
        ))
    };
    let root_fd = fsutil::open_root(&tree.root)?;
    let fd = fsutil::open_in(&root_fd, src, OFlags::PATH).map_err(|_| missing())?;
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(|e| BuildError::io(format!("{cmd}: resolve {src}"), e))?;
    let root_real = std::fs::canonicalize(&tree.root)
        .map_err(|e| BuildError::io(format!("resolve {}", tree.root.display()), e))?;
    let rel = real
        .strip_prefix(&root_real)
        .map_err(|_| missing())?
        .to_string_lossy()
        .into_owned();
    if !rel.is_empty() && !tree.paths.contains(&rel) {
        return Err(missing());
    }
    let md = std::fs::symlink_metadata(tree.root.join(&rel))
        .map_err(|e| BuildError::io(format!("{cmd}: stat {rel}"), e))?;
    Ok((rel, md))
}

fn item_for(
    src: &str,
    dest: String,
    m: &std::fs::Metadata,
    chmod: Option<u32>,
    root: &Path,
) -> Result<Entry, BuildError> {
    let mtime = m.mtime().max(0) as u64;
    let ft = m.file_type();
    let item = if ft.is_dir() {
        Item::Dir {
            mode: chmod.unwrap_or(m.mode() & 0o7777),
            mtime,
        }
    } else if ft.is_symlink() {
        let t = std::fs::read_link(root.join(src))
            .map_err(|e| BuildError::io(format!("readlink {src}"), e))?;
        Item::Symlink {
            target: t.to_string_lossy().into_owned(),
            mtime,
        }
    } else if ft.is_file() {
        Item::File {
            src: src.to_owned(),
            size: m.len(),
            mode: chmod.unwrap_or(m.mode() & 0o7777),
            mtime,
        }
    } else {
        return Err(BuildError::Unsupported(format!(
            "copy {src}: special files are not supported"
        )));
    };
    Ok(Entry { dest, item })
}

impl Plan {
    /// Number of destination entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `file`, `dir` or `multi`: how the history names the source.
    pub fn source_kind(&self) -> &'static str {
        self.kind
    }

    /// Whether nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A digest of what the copy writes: paths, types, modes, owner and contents, not mtimes.
    pub fn cache_key(&self, cache: Option<&Cache>) -> Result<String, BuildError> {
        let root_fd = fsutil::open_root(&self.root).ok();
        let mut h = Sha256::new();
        h.update(format!("owner {}:{}\n", self.owner.0, self.owner.1));
        for e in &self.entries {
            h.update(e.dest.as_bytes());
            h.update(b"\0");
            match &e.item {
                Item::Dir { mode, .. } => h.update(format!("dir {mode:o}\n")),
                Item::Symlink { target, .. } => h.update(format!("symlink {target}\n")),
                Item::Inline { data, mode } => h.update(format!(
                    "inline {mode:o} {}\n",
                    hex::encode(Sha256::digest(data))
                )),
                Item::File { src, mode, .. } => {
                    let d = self.file_hash(root_fd.as_ref(), src, cache)?;
                    h.update(format!("file {mode:o} {d}\n"))
                }
                Item::Archive { src } => {
                    let d = self.file_hash(root_fd.as_ref(), src, cache)?;
                    h.update(format!("archive {d}\n"))
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    fn file_hash(
        &self,
        root_fd: Option<&OwnedFd>,
        src: &str,
        cache: Option<&Cache>,
    ) -> Result<String, BuildError> {
        let root_fd = root_fd.ok_or_else(|| BuildError::NotFound(format!("source of {src}")))?;
        let fd = fsutil::open_in(root_fd, src, OFlags::RDONLY | OFlags::NOFOLLOW).map_err(|e| {
            BuildError::io(
                format!("open {src}"),
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )
        })?;
        let f = std::fs::File::from(fd);
        let md = f
            .metadata()
            .map_err(|e| BuildError::io(format!("stat {src}"), e))?;
        let stat = (
            md.len(),
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.ino(),
            md.dev(),
        );
        let key = self.root.join(src).to_string_lossy().into_owned();
        let cache = if self.is_context { cache } else { None };
        if let Some(d) = cache.and_then(|c| c.file_digest(&key, stat)) {
            return Ok(d);
        }
        let mut h = Sha256::new();
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        std::io::copy(&mut r, &mut HashWriter(&mut h))
            .map_err(|e| BuildError::io(format!("read {src}"), e))?;
        let d = hex::encode(h.finalize());
        if let Some(c) = cache {
            c.put_file_digest(&key, stat, &d);
        }
        Ok(d)
    }

    /// Write the entries into the root directory `target`.
    pub fn apply(&self, target: &Path) -> Result<(), BuildError> {
        let target_fd = fsutil::open_root(target)?;
        let src_fd = if self.root.as_os_str().is_empty() {
            None
        } else {
            Some(fsutil::open_root(&self.root)?)
        };
        // Plain entries go through one tar stream; archives are applied where they land.
        let (reader, writer) = std::io::pipe().map_err(|e| BuildError::io("create pipe", e))?;
        let owner = self.owner;
        let entries = &self.entries;
        let res = std::thread::scope(|s| {
            let producer = s.spawn(move || write_tar(writer, entries, src_fd.as_ref(), owner));
            let mut opts = ApplyOptions::with_whiteout(WhiteoutMode::Literal);
            opts.allow_devices = false;
            let applied = apply_layer_at(target_fd.as_fd(), reader, &opts);
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(BuildError::Store("copy: writer panicked".into())));
            produced?;
            applied.map(|_| ()).map_err(BuildError::from)
        });
        res?;
        for e in &self.entries {
            if let Item::Archive { src } = &e.item {
                let Some(sfd) = self.src_fd_opt()? else {
                    continue;
                };
                let fd = fsutil::open_in(&sfd, src, OFlags::RDONLY | OFlags::NOFOLLOW).map_err(
                    |er| {
                        BuildError::io(
                            format!("open {src}"),
                            std::io::Error::from_raw_os_error(er.raw_os_error()),
                        )
                    },
                )?;
                fsutil::mkdir_all_fd(&target_fd, &e.dest)?;
                let dir = fsutil::open_in(&target_fd, &e.dest, OFlags::DIRECTORY | OFlags::RDONLY)
                    .map_err(|er| {
                        BuildError::io(
                            format!("open {} in rootfs", e.dest),
                            std::io::Error::from_raw_os_error(er.raw_os_error()),
                        )
                    })?;
                let mut opts = ApplyOptions::with_whiteout(WhiteoutMode::Literal);
                opts.allow_devices = false;
                if owner != (0, 0) {
                    opts.owner = Some(owner);
                }
                apply_layer_at(dir.as_fd(), std::fs::File::from(fd), &opts)?;
            }
        }
        Ok(())
    }

    fn src_fd_opt(&self) -> Result<Option<OwnedFd>, BuildError> {
        if self.root.as_os_str().is_empty() {
            Ok(None)
        } else {
            fsutil::open_root(&self.root).map(Some)
        }
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    owner: (u32, u32),
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner.0 as u64);
    h.set_gid(owner.1 as u64);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

fn write_tar(
    w: std::io::PipeWriter,
    entries: &[Entry],
    src_fd: Option<&OwnedFd>,
    owner: (u32, u32),
) -> Result<(), BuildError> {
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 16, w));
    let err = |e: std::io::Error| BuildError::io("write copy stream", e);
    for e in entries {
        let name = if e.dest.is_empty() {
            "."
        } else {
            e.dest.as_str()
        };
        match &e.item {
            Item::Dir { mode, mtime } => {
                let mut h = header(tar::EntryType::Directory, *mode, owner, *mtime, 0);
                b.append_data(&mut h, name, std::io::empty()).map_err(err)?;
            }
            Item::Symlink { target, mtime } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, owner, *mtime, 0);
                b.append_link(&mut h, name, target).map_err(err)?;
            }
            Item::Inline { data, mode } => {
                let mut h = header(tar::EntryType::Regular, *mode, owner, 0, data.len() as u64);
                b.append_data(&mut h, name, data.as_slice()).map_err(err)?;
            }
            Item::File {
                src,
                size,
                mode,
                mtime,
            } => {
                let sfd = src_fd.ok_or_else(|| BuildError::NotFound(format!("source of {src}")))?;
                let fd =
                    fsutil::open_in(sfd, src, OFlags::RDONLY | OFlags::NOFOLLOW).map_err(|er| {
                        BuildError::io(
                            format!("open {src}"),
                            std::io::Error::from_raw_os_error(er.raw_os_error()),
                        )
                    })?;
                let mut h = header(tar::EntryType::Regular, *mode, owner, *mtime, *size);
                // the file may change size meanwhile: never write more or less than declared
                let f = std::fs::File::from(fd).take(*size);
                let mut r = PadTo {
                    inner: f,
                    left: *size,
                };
                b.append_data(&mut h, name, &mut r).map_err(err)?;
            }
            Item::Archive { .. } => {}
        }
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(err)?;
    Ok(())
}

/// A reader that yields exactly `left` bytes, padding with zeros when the file shrank.
struct PadTo<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        let n = if n == 0 {
            buf[..max].fill(0);
            max
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Extract a build context tar (plain, gzip or zstd, as `POST /build` receives it) into the
/// empty directory `dir`, safely: entries never land outside `dir`, device nodes are refused,
/// `.wh.` names are plain files and owners are the caller's.
pub fn unpack_context(reader: impl Read, dir: &Path) -> Result<u64, BuildError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
    let mut opts = ApplyOptions::with_whiteout(WhiteoutMode::Literal);
    opts.allow_devices = false;
    opts.same_owner = false;
    let rep = berth_image::layer::apply_layer(dir, reader, &opts)?;
    Ok(rep.uncompressed_size)
}
