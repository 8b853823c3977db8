//! Loading image archives into the content store: Docker's `save` format (legacy layout and the
//! OCI-layout flavour docker ≥ 25 writes), OCI image layout tars (`oci-archive:`) and
//! directories (`oci:`).
//!
//! The archive is streamed once: every blob-sized entry goes straight into the content store's
//! verified ingest (expected digest when its path names one), small entries are kept in memory
//! until `manifest.json` / `index.json` (which docker writes last) say what they are. Nothing
//! is registered here: the caller gets [`LoadedImage`]s and records them in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use berth_content::{Committed, Expected, Store};
use berth_core::{Digest, Reference};

use crate::error::StoreContext;
use crate::spec::{
    media, ArchiveManifestEntry, Descriptor, ImageConfig, Index, Manifest, ManifestKind,
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::stage::{looks_like_layer, Job, Stager, STAGE_MIN_SIZE};
use crate::ImageError;

/// Entries up to this size (other than `*/layer.tar`) are buffered in memory.
const SMALL_ENTRY: u64 = 1 << 20;
/// Total memory for buffered entries.
const SMALL_BUDGET: u64 = 64 << 20;
/// Copy buffer.
const BUF: usize = 1 << 20;
/// Most entries an archive may have.
const MAX_ENTRIES: usize = 1 << 20;

/// An image found in an archive: its root descriptor (a manifest or an index) and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The manifest or index, stored in the content store.
    pub target: Descriptor,
    /// Names to tag it with (may be empty: a dangling image).
    pub names: Vec<Reference>,
}

/// Called with every blob committed (or found present) during a load, so the caller can add it
/// to a lease before the next step.
pub type BlobHook<'a> = &'a mut dyn FnMut(&Digest) -> Result<(), ImageError>;

#[derive(Debug, Clone)]
enum Stored {
    Blob(Digest, u64),
    Mem(Vec<u8>),
    Link(String),
}

/// Normalise a path inside an archive: no leading `/` or `./`, no `.` or empty components;
/// `..` is refused (archive paths are names, never walked on disk).
fn clean_path(raw: &str) -> Result<String, ImageError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(ImageError::Invalid(format!(
                    "archive entry {raw:?}: path escapes the archive"
                )))
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Resolve a link target relative to the entry's directory (as docker's symlinked layers are).
fn link_target(entry: &str, target: &str, hard: bool) -> Result<String, ImageError> {
    if hard || target.starts_with('/') {
        return clean_path(target);
    }
    let mut parts: Vec<&str> = entry.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ImageError::Invalid(format!(
                        "archive link {entry:?} -> {target:?} escapes the archive"
                    )));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn blob_path_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// Wrap `r` in a decompressor when it starts with gzip or zstd magic.
pub(crate) fn maybe_decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(BUF, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// Copy `r` into a fresh ingest and commit it; returns the digest and size.
pub(crate) fn ingest(
    store: &dyn Store,
    prefix: &str,
    r: impl Read,
    expected: Option<Expected>,
) -> Result<(Digest, u64), ImageError> {
    ingest_with(store, prefix, r, expected, None, 0)
}

/// [`ingest`], also feeding a speculative layer apply when the data looks like a layer and
/// `size_hint` is large enough.
pub(crate) fn ingest_with(
    store: &dyn Store,
    prefix: &str,
    mut r: impl Read,
    expected: Option<Expected>,
    mut stager: Option<&mut Stager>,
    size_hint: u64,
) -> Result<(Digest, u64), ImageError> {
    let reference = unique_ref(prefix);
    let mut w = match store.writer(&reference, expected.clone()) {
        Ok(w) => w,
        Err(berth_content::Error::AlreadyExists(d)) => {
            let size = expected.map(|e| e.size).unwrap_or(0);
            io::copy(&mut r, &mut io::sink()).map_err(|e| ImageError::io("skip entry", e))?;
            return Ok((d, size));
        }
        Err(e) => return Err(e).ctx(|| format!("open ingest {reference}")),
    };
    if w.offset() > 0 {
        w.reset().ctx(|| format!("reset ingest {reference}"))?;
    }
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    let mut job: Option<Job> = None;
    let res = (|| -> Result<(), ImageError> {
        loop {
            let k = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ImageError::io(
                        format!("read data for ingest {reference}"),
                        e,
                    ));
                }
            };
            if n == 0 && size_hint >= STAGE_MIN_SIZE && looks_like_layer(&buf[..k]) {
                job = stager.as_deref_mut().and_then(Stager::start);
            }
            if let Some(j) = job.as_mut() {
                j.feed(&buf[..k]);
            }
            w.write_all(&buf[..k])
                .map_err(|e| ImageError::io(format!("write ingest {reference}"), e))?;
            n += k as u64;
        }
    })();
    if let Err(e) = res {
        let _ = w.abort();
        if let (Some(s), Some(j)) = (stager, job) {
            s.discard(j);
        }
        return Err(e);
    }
    let exp_digest = expected.as_ref().map(|e| e.digest.clone());
    let c: Result<Committed, ImageError> = w
        .commit(Some(n), exp_digest.as_ref())
        .ctx(|| format!("commit ingest {reference}"));
    match (c, stager, job) {
        (Ok(c), Some(s), Some(j)) => {
            s.done(c.digest().clone(), j);
            Ok((c.digest().clone(), n))
        }
        (Ok(c), _, _) => Ok((c.digest().clone(), n)),
        (Err(e), Some(s), Some(j)) => {
            s.discard(j);
            Err(e)
        }
        (Err(e), _, _) => Err(e),
    }
}

pub(crate) fn unique_ref(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Read a whole blob with a size limit.
pub(crate) fn read_blob(store: &dyn Store, d: &Digest, max: usize) -> Result<Vec<u8>, ImageError> {
    let mut b = store.reader(d).ctx(|| format!("open blob {d}"))?;
    if b.size() > max as u64 {
        return Err(ImageError::Invalid(format!(
            "blob {d} of {} bytes exceeds the limit of {max} bytes",
            b.size()
        )));
    }
    let mut v = Vec::with_capacity(b.size() as usize);
    b.read_to_end(&mut v)
        .map_err(|e| ImageError::io(format!("read blob {d}"), e))?;
    if Digest::of(d.algorithm(), &v) != *d {
        return Err(ImageError::Corrupt(format!(
            "blob {d} does not match its digest"
        )));
    }
    Ok(v)
}

/// The layer media type for stored content, by its magic bytes.
pub(crate) fn sniff_layer_media_type(
    store: &dyn Store,
    d: &Digest,
) -> Result<&'static str, ImageError> {
    let b = store.reader(d).ctx(|| format!("open blob {d}"))?;
    let mut head = [0u8; 4];
    let n = b
        .read_at(&mut head, 0)
        .map_err(|e| ImageError::io(format!("read blob {d}"), e))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        media::OCI_LAYER_GZIP
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        media::OCI_LAYER_ZSTD
    } else {
        media::OCI_LAYER
    })
}

struct Loader<'a> {
    store: &'a dyn Store,
    hook: BlobHook<'a>,
    stager: Option<&'a mut Stager>,
    files: HashMap<String, Stored>,
    mem_used: u64,
}

impl<'a> Loader<'a> {
    fn add_entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let path = clean_path(&raw)?;
        let kind = e.header().entry_type();
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let t = link_target(&path, &target, kind == tar::EntryType::Link)?;
                self.files.insert(path, Stored::Link(t));
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => return Ok(()),
        }
        let size = e.size();
        let is_meta = matches!(
            path.as_str(),
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        );
        if let Some(d) = blob_path_digest(&path) {
            if self.store.exists(&d).ctx(|| format!("stat blob {d}"))? {
                (self.hook)(&d)?;
                self.files.insert(path, Stored::Blob(d, size));
                return Ok(());
            }
            let (d, n) = ingest_with(
                self.store,
                "load",
                &mut e,
                Some(Expected::new(d, size)),
                self.stager.as_deref_mut(),
                size,
            )?;
            (self.hook)(&d)?;
            self.files.insert(path, Stored::Blob(d, n));
            return Ok(());
        }
        if is_meta || (size <= SMALL_ENTRY && !path.ends_with("layer.tar")) {
            if is_meta && size > MAX_CONFIG_SIZE as u64 {
                return Err(ImageError::Invalid(format!(
                    "archive entry {path} of {size} bytes is too large"
                )));
            }
            self.mem_used += size;
            if self.mem_used > SMALL_BUDGET {
                return Err(ImageError::Invalid(
                    "archive has too many small entries".into(),
                ));
            }
            let mut v = Vec::with_capacity(size as usize);
            e.read_to_end(&mut v)
                .map_err(|err| ImageError::io(format!("read archive entry {path}"), err))?;
            self.files.insert(path, Stored::Mem(v));
            return Ok(());
        }
        let (d, n) = ingest_with(
            self.store,
            "load",
            &mut e,
            None,
            self.stager.as_deref_mut(),
            size,
        )?;
        (self.hook)(&d)?;
        self.files.insert(path, Stored::Blob(d, n));
        Ok(())
    }

    fn resolve(&self, path: &str) -> Result<&Stored, ImageError> {
        let mut p = clean_path(path)?;
        for _ in 0..16 {
            match self.files.get(&p) {
                Some(Stored::Link(t)) => p = t.clone(),
                Some(s) => return Ok(s),
                None => {
                    return Err(ImageError::Invalid(format!(
                        "archive has no entry {path:?}"
                    )))
                }
            }
        }
        Err(ImageError::Invalid(format!(
            "archive entry {path:?}: too many links"
        )))
    }

    /// The entry as a stored blob.
    fn materialize(&mut self, path: &str) -> Result<(Digest, u64), ImageError> {
        match self.resolve(path)?.clone() {
            Stored::Blob(d, n) => Ok((d, n)),
            Stored::Mem(v) => {
                let c = self
                    .store
                    .write_blob(&v, None)
                    .ctx(|| format!("store archive entry {path}"))?;
                (self.hook)(c.digest())?;
                Ok((c.digest().clone(), v.len() as u64))
            }
            Stored::Link(_) => unreachable_link(path),
        }
    }

    fn small(&self, path: &str, max: usize) -> Result<Vec<u8>, ImageError> {
        match self.resolve(path)? {
            Stored::Mem(v) if v.len() <= max => Ok(v.clone()),
            Stored::Mem(_) => Err(ImageError::Invalid(format!(
                "archive entry {path} too large"
            ))),
            Stored::Blob(d, _) => read_blob(self.store, d, max),
            Stored::Link(_) => unreachable_link(path),
        }
    }

    fn has(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }
}

fn unreachable_link<T>(path: &str) -> Result<T, ImageError> {
    Err(ImageError::Invalid(format!(
        "archive entry {path:?}: unresolved link"
    )))
}

/// Names from an OCI index entry's annotations: containerd's full image name wins; else
/// `org.opencontainers.image.ref.name` when it is a full reference (a bare tag names nothing).
pub(crate) fn names_from_annotations(d: &Descriptor) -> Vec<Reference> {
    if let Some(n) = d.annotations.get(ANNOTATION_IMAGE_NAME) {
        if let Ok(r) = Reference::parse(n) {
            return vec![r];
        }
    }
    if let Some(n) = d.annotations.get(ANNOTATION_REF_NAME) {
        if n.contains('/') || n.contains(':') {
            if let Ok(r) = Reference::parse(n) {
                return vec![r];
            }
        }
    }
    Vec::new()
}

/// A descriptor stripped of index-entry decorations.
fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest.clone(), d.size)
}

/// Check that a manifest's (or index's) blobs are present; for an index, the children that
/// are present must be complete and at least one must be.
pub(crate) fn check_complete(store: &dyn Store, target: &Descriptor) -> Result<(), ImageError> {
    let bytes = read_blob(store, &target.digest, MAX_MANIFEST_SIZE)?;
    match ManifestKind::parse(Some(&target.media_type), &bytes)? {
        ManifestKind::Manifest(m) => {
            for d in std::iter::once(&m.config).chain(&m.layers) {
                if !store
                    .exists(&d.digest)
                    .ctx(|| format!("stat blob {}", d.digest))?
                {
                    return Err(ImageError::Invalid(format!(
                        "image {} is incomplete: blob {} is missing",
                        target.digest, d.digest
                    )));
                }
            }
            Ok(())
        }
        ManifestKind::Index(i) => {
            let mut any = false;
            for c in &i.manifests {
                if store
                    .exists(&c.digest)
                    .ctx(|| format!("stat blob {}", c.digest))?
                {
                    check_complete(store, c)?;
                    any = true;
                }
            }
            if any {
                Ok(())
            } else {
                Err(ImageError::Invalid(format!(
                    "index {} has none of its manifests",
                    target.digest
                )))
            }
        }
    }
}

/// Load a Docker save archive or an OCI layout tar (optionally gzip/zstd compressed).
pub fn load_archive(
    store: &dyn Store,
    reader: impl Read,
    hook: BlobHook<'_>,
) -> Result<Vec<LoadedImage>, ImageError> {
    load_archive_staged(store, reader, hook, None)
}

/// [`load_archive`], applying layer-like blobs speculatively into `stager` as they stream.
pub(crate) fn load_archive_staged<'a>(
    store: &'a dyn Store,
    reader: impl Read,
    hook: BlobHook<'a>,
    stager: Option<&'a mut Stager>,
) -> Result<Vec<LoadedImage>, ImageError> {
    let r = maybe_decompress(reader).map_err(|e| ImageError::io("read archive", e))?;
    let mut ar = tar::Archive::new(r);
    let mut loader = Loader {
        store,
        hook,
        stager,
        files: HashMap::new(),
        mem_used: 0,
    };
    let entries = ar
        .entries()
        .map_err(|e| ImageError::io("read archive", e))?;
    for (i, e) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(ImageError::Invalid("archive has too many entries".into()));
        }
        let e = e.map_err(|e| ImageError::io("read archive entry", e))?;
        loader.add_entry(e)?;
    }
    if loader.has("manifest.json") {
        load_docker(&mut loader)
    } else if loader.has("index.json") {
        let idx = Index::from_slice(&loader.small("index.json", MAX_MANIFEST_SIZE)?)?;
        let mut out = Vec::new();
        for d in &idx.manifests {
            check_complete(store, d)?;
            out.push(LoadedImage {
                target: bare(d),
                names: names_from_annotations(d),
            });
        }
        Ok(out)
    } else if loader.has("repositories") {
        Err(ImageError::Unsupported(
            "archive predates manifest.json (docker < 1.10): not supported".into(),
        ))
    } else {
        Err(ImageError::Invalid(
            "not an image archive: no manifest.json or index.json".into(),
        ))
    }
}

fn load_docker(l: &mut Loader<'_>) -> Result<Vec<LoadedImage>, ImageError> {
    let entries: Vec<ArchiveManifestEntry> =
        serde_json::from_slice(&l.small("manifest.json", MAX_CONFIG_SIZE)?)
            .map_err(|e| ImageError::Invalid(format!("parse manifest.json: {e}")))?;
    // Manifests of the OCI flavour, by config digest, to keep their digests.
    let mut by_config: HashMap<Digest, (Descriptor, Manifest)> = HashMap::new();
    if l.has("index.json") {
        if let Ok(idx) = Index::from_slice(&l.small("index.json", MAX_MANIFEST_SIZE)?) {
            for d in &idx.manifests {
                if !media::is_manifest(&d.media_type) {
                    continue;
                }
                if let Ok(bytes) = read_blob(l.store, &d.digest, MAX_MANIFEST_SIZE) {
                    if let Ok(m) = Manifest::from_slice(&bytes) {
                        by_config.insert(m.config.digest.clone(), (bare(d), m));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for e in entries {
        let (cfg_digest, cfg_size) = l.materialize(&e.config)?;
        let cfg_bytes = l.small(&e.config, MAX_CONFIG_SIZE)?;
        let cfg = ImageConfig::from_slice(&cfg_bytes)?;
        if cfg.rootfs.diff_ids.len() != e.layers.len() {
            return Err(ImageError::Invalid(format!(
                "config {cfg_digest} names {} layers but manifest.json lists {}",
                cfg.rootfs.diff_ids.len(),
                e.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let (d, n) = l.materialize(path)?;
            let mt = sniff_layer_media_type(l.store, &d)?;
            if mt == media::OCI_LAYER && d != *diff_id {
                return Err(ImageError::Corrupt(format!(
                    "layer {path}: digest {d} does not match diff id {diff_id}"
                )));
            }
            layers.push(Descriptor::new(mt, d, n));
        }
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| {
                Reference::parse(t)
                    .map_err(|err| ImageError::Invalid(format!("RepoTags {t:?}: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = match by_config.get(&cfg_digest) {
            Some((d, m))
                if m.layers
                    .iter()
                    .map(|x| &x.digest)
                    .eq(layers.iter().map(|x| &x.digest)) =>
            {
                d.clone()
            }
            _ => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(media::OCI_MANIFEST.into()),
                    artifact_type: None,
                    config: Descriptor::new(media::OCI_CONFIG, cfg_digest, cfg_size),
                    layers,
                    subject: None,
                    annotations: BTreeMap::new(),
                };
                let bytes = serde_json::to_vec(&m)
                    .map_err(|e| ImageError::Invalid(format!("encode manifest: {e}")))?;
                let c = l
                    .store
                    .write_blob(&bytes, None)
                    .ctx(|| "store manifest".into())?;
                (l.hook)(c.digest())?;
                Descriptor::new(media::OCI_MANIFEST, c.digest().clone(), bytes.len() as u64)
            }
        };
        out.push(LoadedImage { target, names });
    }
    Ok(out)
}

/// Copy the blobs an OCI layout directory's index reaches into the store and return its images.
/// Children of an index missing from the layout (other platforms) are skipped.
pub fn load_oci_dir(
    store: &dyn Store,
    dir: &Path,
    hook: BlobHook<'_>,
) -> Result<Vec<LoadedImage>, ImageError> {
    let read_small = |p: &Path, max: u64| -> Result<Vec<u8>, ImageError> {
        let f = std::fs::File::open(p)
            .map_err(|e| ImageError::io(format!("open {}", p.display()), e))?;
        let mut v = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut v)
            .map_err(|e| ImageError::io(format!("read {}", p.display()), e))?;
        if v.len() as u64 > max {
            return Err(ImageError::Invalid(format!("{} is too large", p.display())));
        }
        Ok(v)
    };
    let layout = read_small(&dir.join("oci-layout"), 4096)?;
    let v: serde_json::Value = serde_json::from_slice(&layout)
        .map_err(|e| ImageError::Invalid(format!("parse oci-layout: {e}")))?;
    if v.get("imageLayoutVersion")
        .and_then(|x| x.as_str())
        .is_none()
    {
        return Err(ImageError::Invalid(
            "oci-layout has no imageLayoutVersion".into(),
        ));
    }
    let idx = Index::from_slice(&read_small(
        &dir.join("index.json"),
        MAX_MANIFEST_SIZE as u64,
    )?)?;
    let copy = |d: &Descriptor,
                hook: &mut dyn FnMut(&Digest) -> Result<(), ImageError>|
     -> Result<bool, ImageError> {
        // The digest was validated: algorithm and hex only, so the join stays inside `dir`.
        let p = dir
            .join("blobs")
            .join(d.digest.algorithm().as_str())
            .join(d.digest.encoded());
        if !store
            .exists(&d.digest)
            .ctx(|| format!("stat blob {}", d.digest))?
        {
            let f = match std::fs::File::open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(ImageError::io(format!("open {}", p.display()), e)),
            };
            ingest(
                store,
                "load-oci",
                f,
                Some(Expected::new(d.digest.clone(), d.size)),
            )?;
        }
        hook(&d.digest)?;
        Ok(true)
    };
    let mut out = Vec::new();
    for top in &idx.manifests {
        let mut stack = vec![top.clone()];
        while let Some(d) = stack.pop() {
            if !copy(&d, hook)? {
                if d == *top {
                    return Err(ImageError::Invalid(format!(
                        "oci layout lacks blob {}",
                        d.digest
                    )));
                }
                continue;
            }
            let bytes = read_blob(store, &d.digest, MAX_MANIFEST_SIZE)?;
            match ManifestKind::parse(Some(&d.media_type), &bytes)? {
                ManifestKind::Index(i) => stack.extend(i.manifests.iter().cloned()),
                ManifestKind::Manifest(m) => {
                    for b in std::iter::once(&m.config).chain(&m.layers) {
                        if !copy(b, hook)? {
                            return Err(ImageError::Invalid(format!(
                                "oci layout lacks blob {}",
                                b.digest
                            )));
                        }
                    }
                }
            }
        }
        out.push(LoadedImage {
            target: bare(top),
            names: names_from_annotations(top),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean_path("./blobs/sha256/x").unwrap(), "blobs/sha256/x");
        assert_eq!(clean_path("/manifest.json").unwrap(), "manifest.json");
        assert!(clean_path("a/../../etc").is_err());
        assert_eq!(
            link_target("abc/layer.tar", "../def/layer.tar", false).unwrap(),
            "def/layer.tar"
        );
        assert!(link_target("abc/layer.tar", "../../x", false).is_err());
        assert_eq!(link_target("a/b", "c/d", true).unwrap(), "c/d");
        assert!(blob_path_digest("blobs/sha256/00").is_none());
        let d = Digest::sha256_of(b"");
        assert_eq!(
            blob_path_digest(&format!("blobs/sha256/{}", d.encoded())),
            Some(d)
        );
    }
}
