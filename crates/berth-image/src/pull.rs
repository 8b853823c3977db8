//! Pulling an image into the service from any blob source (a registry client, a mirror, a test
//! double), with per-layer progress events.
//!
//! The protocol: a lease is created before anything is written; the top manifest (or index)
//! is stored, an index resolved to the service's platform, the config fetched, then the layers
//! are fetched by `concurrency` worker threads, each streaming into a verified content-store
//! ingest (`pull-<digest>`; an interrupted stream is resumed from the ingest's offset, so a
//! [`BlobFetcher`] must honour `offset`) while a staging thread applies the layer as it
//! arrives (download and unpack overlap). The image record is written last; on any error
//! nothing is registered and the lease is dropped, so GC reclaims what was written.
//!
//! [`ImageService::pull_with`] is network-free: berth-distribution supplies the fetcher.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use berth_content::{Error as ContentError, Expected, Store};
use berth_core::{Digest, Reference};
use berth_metadata::{Resource, Target};

use crate::error::StoreContext;
use crate::service::ResolvedImage;
use crate::spec::{media, Descriptor, ImageConfig, ManifestKind, MAX_MANIFEST_SIZE};
use crate::stage::{Stager, STAGE_MIN_SIZE};
use crate::{select_manifest, ImageError, ImageService, LoadResult};

/// Where a pull gets blobs from.
pub trait BlobFetcher: Sync {
    /// A stream of `desc`'s bytes starting at `offset` (a resumed download asks for the rest).
    fn fetch(&self, desc: &Descriptor, offset: u64) -> Result<Box<dyn Read + Send>, ImageError>;
}

/// The state of one layer (or blob) in a pull or push, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressStatus {
    /// Queued behind other downloads or uploads.
    Waiting,
    /// Bytes received so far.
    Downloading {
        /// Bytes so far.
        current: u64,
        /// The blob's size.
        total: u64,
    },
    /// Download complete; checking the digest.
    Verifying,
    /// Downloaded and verified.
    DownloadComplete,
    /// Being applied into a snapshot.
    Extracting,
    /// Done.
    PullComplete,
    /// The layer was already present.
    AlreadyExists,
    /// Push: about to check the registry.
    Preparing,
    /// Push: bytes sent so far.
    Pushing {
        /// Bytes so far.
        current: u64,
        /// The blob's size.
        total: u64,
    },
    /// Push: uploaded.
    Pushed,
    /// Push: the registry already had it.
    LayerAlreadyExists,
    /// Push: mounted from another repository of the same registry.
    MountedFrom(String),
}

/// A progress event for one blob, identified like Docker does (12 hex digits of its digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The short digest.
    pub id: String,
    /// What happened.
    pub status: ProgressStatus,
}

impl Progress {
    /// An event for `digest`.
    pub fn new(digest: &Digest, status: ProgressStatus) -> Self {
        Progress {
            id: digest.short().to_string(),
            status,
        }
    }

    /// Docker's JSON progress message:
    /// `{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"0123456789ab"}`.
    pub fn to_json(&self) -> serde_json::Value {
        use ProgressStatus::*;
        let (status, detail) = match &self.status {
            Waiting => ("Waiting".to_string(), None),
            Downloading { current, total } => ("Downloading".into(), Some((*current, *total))),
            Verifying => ("Verifying Checksum".into(), None),
            DownloadComplete => ("Download complete".into(), None),
            Extracting => ("Extracting".into(), None),
            PullComplete => ("Pull complete".into(), None),
            AlreadyExists => ("Already exists".into(), None),
            Preparing => ("Preparing".into(), None),
            Pushing { current, total } => ("Pushing".into(), Some((*current, *total))),
            Pushed => ("Pushed".into(), None),
            LayerAlreadyExists => ("Layer already exists".into(), None),
            MountedFrom(r) => (format!("Mounted from {r}"), None),
        };
        let detail = match detail {
            Some((c, t)) => serde_json::json!({"current": c, "total": t}),
            None => serde_json::json!({}),
        };
        serde_json::json!({"status": status, "progressDetail": detail, "id": self.id})
    }
}

/// How to pull.
pub struct PullOptions<'a> {
    /// Layers fetched at once (default 3).
    pub concurrency: usize,
    /// Stream reopenings per blob after a broken connection before giving up (default 5).
    pub max_resumes: usize,
    /// Progress callback (called from worker threads).
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// Called for each blob fetched (e.g. to label where it came from, for cross-repo mounts).
    pub on_blob: &'a (dyn Fn(&Digest) + Sync),
}

impl Default for PullOptions<'_> {
    fn default() -> Self {
        PullOptions {
            concurrency: 3,
            max_resumes: 5,
            progress: &|_| {},
            on_blob: &|_| {},
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// The registered image.
    pub image: LoadResult,
    /// The digest of what the name points at (manifest or index): the `RepoDigest`.
    pub target: Digest,
    /// Layers downloaded now.
    pub downloaded: usize,
    /// Layers already present.
    pub already: usize,
}

const COPY_BUF: usize = 256 << 10;
/// How long a layer waits for another pull that holds its ingest.
const LOCKED_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl ImageService {
    /// Pull an image: `top` is the resolved manifest or index of `name` (already fetched and
    /// verified by the caller, `top_bytes` its body); everything else comes from `fetcher`.
    pub fn pull_with(
        &self,
        name: &Reference,
        top: &Descriptor,
        top_bytes: &[u8],
        fetcher: &dyn BlobFetcher,
        opts: &PullOptions<'_>,
    ) -> Result<PullResult, ImageError> {
        if Digest::of(top.digest.algorithm(), top_bytes) != top.digest {
            return Err(ImageError::Corrupt(format!(
                "manifest {}: body does not match its digest",
                top.digest
            )));
        }
        let lease = self.lease("pull")?;
        self.lease_add(&lease, Resource::Content(top.digest.clone()))?;
        self.content()
            .write_blob(top_bytes, Some(&top.digest))
            .ctx(|| format!("store manifest {}", top.digest))?;
        (opts.on_blob)(&top.digest);

        // Resolve an index to this platform's manifest, fetching (and storing) on the way.
        let mut desc = top.clone();
        let mut bytes = top_bytes.to_vec();
        let mut depth = 0;
        let manifest = loop {
            match ManifestKind::parse(Some(&desc.media_type), &bytes)? {
                ManifestKind::Manifest(m) => break m,
                ManifestKind::Index(i) => {
                    depth += 1;
                    if depth > 4 {
                        return Err(ImageError::Invalid(format!(
                            "indexes nested too deeply under {}",
                            top.digest
                        )));
                    }
                    let sel = select_manifest(&i, self.platform())?;
                    desc = Descriptor::new(&sel.media_type, sel.digest.clone(), sel.size);
                    self.lease_add(&lease, Resource::Content(desc.digest.clone()))?;
                    bytes = self.fetch_small(fetcher, &desc, MAX_MANIFEST_SIZE, opts)?;
                }
            }
        };
        if !manifest.is_image() {
            return Err(ImageError::Unsupported(format!(
                "{} is not an image (config media type {})",
                desc.digest, manifest.config.media_type
            )));
        }
        self.lease_add(&lease, Resource::Content(manifest.config.digest.clone()))?;
        let cfg_bytes = self.fetch_small(
            fetcher,
            &manifest.config,
            crate::spec::MAX_CONFIG_SIZE,
            opts,
        )?;
        let config = ImageConfig::from_slice(&cfg_bytes)?;
        for l in &manifest.layers {
            if !media::is_layer(&l.media_type) {
                return Err(ImageError::Unsupported(format!(
                    "layer {}: unsupported media type {}",
                    l.digest, l.media_type
                )));
            }
            self.lease_add(&lease, Resource::Content(l.digest.clone()))?;
        }

        // Layers: fetched concurrently, staged (applied) while they stream.
        let stager = Mutex::new(Stager::new(&self.root().join("tmp")).map_err(|e| {
            ImageError::io(format!("create staging in {}", self.root().display()), e)
        })?);
        let layers = &manifest.layers;
        let mut already = vec![false; layers.len()];
        for (i, l) in layers.iter().enumerate() {
            if self.content().exists(&l.digest).unwrap_or(false) {
                already[i] = true;
                (opts.progress)(Progress::new(&l.digest, ProgressStatus::AlreadyExists));
            } else {
                (opts.progress)(Progress::new(&l.digest, ProgressStatus::Waiting));
            }
        }
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<ImageError>> = Mutex::new(None);
        let workers = opts.concurrency.max(1).min(layers.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(l) = layers.get(i) else { return };
                    if already[i] {
                        continue;
                    }
                    if let Err(e) = self.fetch_layer(fetcher, l, &stager, opts) {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        let mut staged = match stager.lock() {
            Ok(mut s) => s.finish(),
            Err(_) => HashMap::new(),
        };

        let id = manifest.config.digest.clone();
        let target = Target {
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            size: top.size,
        };
        let img = ResolvedImage {
            id: id.clone(),
            target,
            manifest_desc: desc,
            manifest: manifest.clone(),
            config,
            records: Vec::new(),
        };
        for (i, l) in layers.iter().enumerate() {
            if !already[i] {
                (opts.progress)(Progress::new(&l.digest, ProgressStatus::Extracting));
            }
        }
        self.unpack_resolved(&img, &lease, &mut staged)?;
        for (i, l) in layers.iter().enumerate() {
            if !already[i] {
                (opts.progress)(Progress::new(&l.digest, ProgressStatus::PullComplete));
            }
        }
        let names: Vec<Reference> = vec![name.clone()];
        let image = self.register(top, &id, &names)?;
        let downloaded = already.iter().filter(|a| !**a).count();
        Ok(PullResult {
            image,
            target: top.digest.clone(),
            downloaded,
            already: layers.len() - downloaded,
        })
    }

    /// Fetch a small blob (manifest, config) into memory and the store, verified.
    fn fetch_small(
        &self,
        fetcher: &dyn BlobFetcher,
        desc: &Descriptor,
        max: usize,
        opts: &PullOptions<'_>,
    ) -> Result<Vec<u8>, ImageError> {
        if desc.size > max as u64 {
            return Err(ImageError::Invalid(format!(
                "blob {} of {} bytes exceeds the limit of {max} bytes",
                desc.digest, desc.size
            )));
        }
        if let Ok(mut b) = self.content().reader(&desc.digest) {
            let mut v = Vec::new();
            if b.read_to_end(&mut v).is_ok()
                && Digest::of(desc.digest.algorithm(), &v) == desc.digest
            {
                return Ok(v);
            }
        }
        let mut v = Vec::with_capacity(desc.size as usize);
        let mut attempts = 0;
        loop {
            let r = fetcher.fetch(desc, v.len() as u64)?;
            match r.take(desc.size - v.len() as u64 + 1).read_to_end(&mut v) {
                Ok(_) => break,
                Err(e) if attempts < opts.max_resumes => {
                    attempts += 1;
                    let _ = e;
                }
                Err(e) => return Err(ImageError::io(format!("fetch {}", desc.digest), e)),
            }
        }
        if v.len() as u64 != desc.size || Digest::of(desc.digest.algorithm(), &v) != desc.digest {
            return Err(ImageError::Corrupt(format!(
                "blob {}: received {} bytes that do not match the descriptor (size {})",
                desc.digest,
                v.len(),
                desc.size
            )));
        }
        self.content()
            .write_blob(&v, Some(&desc.digest))
            .ctx(|| format!("store {}", desc.digest))?;
        (opts.on_blob)(&desc.digest);
        Ok(v)
    }

    /// Stream one layer into the store (resuming on broken streams) and into staging.
    fn fetch_layer(
        &self,
        fetcher: &dyn BlobFetcher,
        l: &Descriptor,
        stager: &Mutex<Stager>,
        opts: &PullOptions<'_>,
    ) -> Result<(), ImageError> {
        let progress = |s| (opts.progress)(Progress::new(&l.digest, s));
        let reference = format!("pull-{}", l.digest);
        // Another pull (this process or another) may be fetching the same layer: wait for it.
        let started = std::time::Instant::now();
        let mut w = loop {
            match self
                .content()
                .writer(&reference, Some(Expected::new(l.digest.clone(), l.size)))
            {
                Ok(w) => break w,
                Err(ContentError::AlreadyExists(_)) => {
                    progress(ProgressStatus::DownloadComplete);
                    return Ok(());
                }
                Err(ContentError::Locked(_)) if started.elapsed() < LOCKED_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e).ctx(|| format!("open ingest for layer {}", l.digest)),
            }
        };
        // Staging needs the whole stream: only for a download that starts at 0.
        let mut job = if w.offset() == 0 && l.size >= STAGE_MIN_SIZE {
            stager.lock().ok().and_then(|mut s| s.start())
        } else {
            None
        };
        let mut buf = vec![0u8; COPY_BUF];
        let mut resumes = 0;
        let mut last_report = 0u64;
        'outer: while w.offset() < l.size {
            let mut r = fetcher.fetch(l, w.offset())?;
            loop {
                let want = (l.size - w.offset()).min(buf.len() as u64) as usize;
                if want == 0 {
                    break 'outer;
                }
                match r.read(&mut buf[..want]) {
                    Ok(0) => {
                        if w.offset() < l.size {
                            // Early end of stream: resume like a broken connection.
                            if resumes >= opts.max_resumes {
                                break 'outer;
                            }
                            resumes += 1;
                            continue 'outer;
                        }
                        break 'outer;
                    }
                    Ok(n) => {
                        w.write_all(&buf[..n])
                            .map_err(|e| ImageError::io(format!("write layer {}", l.digest), e))?;
                        if let Some(j) = job.as_mut() {
                            j.feed(&buf[..n]);
                        }
                        if w.offset() - last_report >= (512 << 10) || w.offset() == l.size {
                            last_report = w.offset();
                            progress(ProgressStatus::Downloading {
                                current: w.offset(),
                                total: l.size,
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if resumes >= opts.max_resumes {
                            if let Some(j) = job.take() {
                                if let Ok(mut s) = stager.lock() {
                                    s.discard(j);
                                }
                            }
                            return Err(ImageError::io(
                                format!(
                                    "download layer {} (at byte {} of {}, {resumes} resumes)",
                                    l.digest,
                                    w.offset(),
                                    l.size
                                ),
                                e,
                            ));
                        }
                        resumes += 1;

                        continue 'outer;
                    }
                }
            }
        }
        if w.offset() != l.size {
            let got = w.offset();
            if let Some(j) = job.take() {
                if let Ok(mut s) = stager.lock() {
                    s.discard(j);
                }
            }
            let _ = w.abort();
            return Err(ImageError::Corrupt(format!(
                "layer {}: the registry sent {got} of {} bytes ({resumes} resumes)",
                l.digest, l.size
            )));
        }
        progress(ProgressStatus::Verifying);
        match w.commit(None, None) {
            Ok(_) => {
                if let Some(j) = job {
                    if let Ok(mut s) = stager.lock() {
                        s.done(l.digest.clone(), j);
                    }
                }
                (opts.on_blob)(&l.digest);
                progress(ProgressStatus::DownloadComplete);
                Ok(())
            }
            Err(e) => {
                if let Some(j) = job {
                    if let Ok(mut s) = stager.lock() {
                        s.discard(j);
                    }
                }
                let kind = match e {
                    ContentError::SizeMismatch { .. } => berth_core::ErrorKind::Corrupt,
                    ref e => e.kind(),
                };
                Err(ImageError::Store {
                    context: format!("verify layer {}", l.digest),
                    message: e.to_string(),
                    kind,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_json_is_dockers() {
        let d = Digest::sha256_of(b"x");
        let p = Progress::new(
            &d,
            ProgressStatus::Downloading {
                current: 5,
                total: 10,
            },
        );
        assert_eq!(
            p.to_json(),
            serde_json::json!({"status": "Downloading", "progressDetail": {"current": 5, "total": 10}, "id": d.short()})
        );
        let s = |st| Progress::new(&d, st).to_json()["status"].clone();
        assert_eq!(s(ProgressStatus::PullComplete), "Pull complete");
        assert_eq!(s(ProgressStatus::AlreadyExists), "Already exists");
        assert_eq!(
            s(ProgressStatus::LayerAlreadyExists),
            "Layer already exists"
        );
        assert_eq!(
            s(ProgressStatus::MountedFrom("library/x".into())),
            "Mounted from library/x"
        );
        assert_eq!(s(ProgressStatus::Verifying), "Verifying Checksum");
    }
}
