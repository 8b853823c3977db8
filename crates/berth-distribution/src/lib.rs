//! berth-distribution: the OCI distribution client.
//!
//! - [`Client`] (with [`ClientConfig`]): endpoints per registry (HTTPS with system roots plus
//!   `/etc/docker/certs.d/<host:port>/` CAs and client certificates; plain HTTP only for
//!   localhost and configured insecure registries, after HTTPS failed; docker.io mirrors;
//!   `docker.io` → `registry-1.docker.io`), auth (anonymous, basic, bearer tokens cached per
//!   scope and refreshed on 401; credentials from Docker's `config.json` and credential helpers),
//!   bounded retries with backoff on connection failures and 5xx.
//! - [`Repository`]: resolve, blob GET with Range, HEAD, cross-repository mount, monolithic and
//!   chunked uploads, manifest PUT.
//! - [`pull`] / [`push`]: images between a registry and a [`berth_image::ImageService`], with
//!   [`Progress`] events per layer (Docker's JSON via [`Progress::to_json`]).
//! - [`login`] / [`logout`]: `docker login` semantics on a `config.json`.
//!
//! The client is async (tokio); [`pull`] and [`push`] are blocking calls that drive it on a
//! runtime [`tokio::runtime::Handle`] — call them from a plain thread (e.g. `spawn_blocking`),
//! never from inside an async task.
#![forbid(unsafe_code)]

pub mod auth;
mod client;
mod error;

use std::io::Read;

use berth_content::Store as _;
use berth_core::{Digest, Reference};
use berth_image::pull::{BlobFetcher, PullOptions as ImagePullOptions};
use berth_image::{Descriptor, ImageError, ImageService, ManifestKind};
use bytes::Bytes;
use tokio::runtime::Handle;

pub use auth::{Credentials, DockerConfig};
pub use berth_image::pull::{Progress, ProgressStatus, PullResult};
pub use client::{
    registry_host, BlobStream, Client, ClientConfig, MountOutcome, Repository, DOCKER_HUB_HOST,
    MANIFEST_ACCEPT,
};
pub use error::{Error, Result};

/// Content label naming the repository a blob was pulled from or pushed to, per registry
/// (`berth.distribution.source.<registry>` = repository path): the source of cross-repo mounts.
pub const SOURCE_LABEL_PREFIX: &str = "berth.distribution.source.";

fn source_label(registry: &str) -> String {
    format!("{SOURCE_LABEL_PREFIX}{registry}")
}

/// A blocking reader over a [`BlobStream`], driven on a runtime handle.
struct BlockingBody {
    handle: Handle,
    stream: BlobStream,
    cur: Bytes,
}

impl Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// A [`BlobFetcher`] over a registry repository.
pub struct RegistryFetcher {
    repo: Repository,
    handle: Handle,
}

impl RegistryFetcher {
    /// Fetch from `repo`, driving requests on `handle`.
    pub fn new(repo: Repository, handle: Handle) -> Self {
        RegistryFetcher { repo, handle }
    }
}

impl BlobFetcher for RegistryFetcher {
    fn fetch(&self, desc: &Descriptor, offset: u64) -> Result<Box<dyn Read + Send>, ImageError> {
        let stream = self
            .handle
            .block_on(self.repo.fetch_blob(desc, offset))
            .map_err(ImageError::from)?;
        Ok(Box::new(BlockingBody {
            handle: self.handle.clone(),
            stream,
            cur: Bytes::new(),
        }))
    }
}

/// Pull `reference` into `svc`: resolve (mirrors first for docker.io), then
/// [`ImageService::pull_with`] over the registry. Blocking; see the crate docs.
pub fn pull(
    svc: &ImageService,
    client: &Client,
    handle: &Handle,
    reference: &Reference,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<PullResult> {
    let tag_or_digest = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let repos = handle.block_on(client.pull_repositories(reference))?;
    let mut last_err = None;
    for repo in repos {
        let (desc, body) = match handle.block_on(repo.resolve(&tag_or_digest)) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("resolve {reference} on {}: {e}", repo.base());
                last_err = Some(e);
                continue;
            }
        };
        let registry = reference.domain().to_string();
        let repo_name = reference.path().to_string();
        let db = svc.db();
        let label = source_label(&registry);
        let on_blob = |d: &Digest| {
            let _ = db.set_content_label(d, &label, Some(&repo_name));
        };
        let fetcher = RegistryFetcher::new(repo, handle.clone());
        let opts = ImagePullOptions {
            concurrency: client.config().concurrency,
            progress,
            on_blob: &on_blob,
            ..Default::default()
        };
        return Ok(svc.pull_with(reference, &desc, &body, &fetcher, &opts)?);
    }
    Err(last_err.unwrap_or_else(|| Error::NotFound(format!("no endpoint for {reference}"))))
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// The digest of the pushed manifest or index.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

struct PushCounts {
    uploaded: std::sync::atomic::AtomicUsize,
    mounted: std::sync::atomic::AtomicUsize,
    existing: std::sync::atomic::AtomicUsize,
}

/// Push the local image `local` (a name or id) as `dest` (tag or digest reference). Blobs go
/// first (HEAD; mount from the repository a blob came from when it is on the same registry;
/// monolithic upload up to `chunk_size`, chunked above), manifests last (an index's children
/// by digest, then the top one under the tag or digest). Blocking; see the crate docs.
pub fn push(
    svc: &ImageService,
    client: &Client,
    handle: &Handle,
    local: &str,
    dest: &Reference,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<PushResult> {
    let img = svc.resolve(local)?;
    let top = Descriptor::new(
        &img.target.media_type,
        img.target.digest.clone(),
        img.target.size,
    );
    let read = |d: &Digest| -> Result<Vec<u8>> {
        let mut b = svc
            .content()
            .reader(d)
            .map_err(|e| Error::NotFound(format!("blob {d} is not stored locally: {e}")))?;
        let mut v = Vec::new();
        b.read_to_end(&mut v)
            .map_err(|e| Error::io(format!("read blob {d}"), e))?;
        Ok(v)
    };
    // Manifests to put (children first) and the blobs they need.
    let top_bytes = read(&top.digest)?;
    let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    match ManifestKind::parse(Some(&top.media_type), &top_bytes)? {
        ManifestKind::Manifest(m) => {
            blobs.push(m.config.clone());
            blobs.extend(m.layers.iter().cloned());
        }
        ManifestKind::Index(i) => {
            for c in &i.manifests {
                let bytes = read(&c.digest).map_err(|_| {
                    Error::NotFound(format!(
                        "index {} entry {} is not stored locally (pull all platforms first)",
                        top.digest, c.digest
                    ))
                })?;
                if let ManifestKind::Manifest(m) = ManifestKind::parse(Some(&c.media_type), &bytes)?
                {
                    blobs.push(m.config.clone());
                    blobs.extend(m.layers.iter().cloned());
                }
                manifests.push((c.clone(), bytes));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.digest.clone()));
    let repo = handle.block_on(client.repository(dest))?;
    let label = source_label(dest.domain());
    let counts = PushCounts {
        uploaded: 0.into(),
        mounted: 0.into(),
        existing: 0.into(),
    };
    for b in &blobs {
        progress(Progress::new(&b.digest, ProgressStatus::Preparing));
    }
    let chunk = client.config().chunk_size.max(1);
    let sem = tokio::sync::Semaphore::new(client.config().concurrency.max(1));
    let push_one = |b: &Descriptor| {
        let repo = &repo;
        let sem = &sem;
        let counts = &counts;
        let label = &label;
        let b = b.clone();
        async move {
            let _permit = sem
                .acquire()
                .await
                .map_err(|_| Error::Invalid("closed".into()))?;
            let ev = |s| progress(Progress::new(&b.digest, s));
            if repo.blob_exists(&b.digest).await? {
                counts
                    .existing
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ev(ProgressStatus::LayerAlreadyExists);
                return Ok::<(), Error>(());
            }
            let from = svc
                .db()
                .content_labels(&b.digest)
                .ok()
                .and_then(|l| l.get(label.as_str()).cloned())
                .filter(|f| f != repo.name());
            let mut location = None;
            if let Some(from) = from {
                match repo.mount_blob(&b.digest, &from).await {
                    Ok(MountOutcome::Mounted) => {
                        counts
                            .mounted
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        ev(ProgressStatus::MountedFrom(from));
                        return Ok(());
                    }
                    Ok(MountOutcome::Upload(loc)) => location = Some(loc),
                    Err(e) => tracing::debug!("mount {} from {from}: {e}", b.digest),
                }
            }
            let mut location = match location {
                Some(l) => l,
                None => repo.start_upload().await?,
            };
            let mut blob = svc.content().reader(&b.digest).map_err(|e| {
                Error::NotFound(format!("blob {} is not stored locally: {e}", b.digest))
            })?;
            let total = blob.size();
            ev(ProgressStatus::Pushing { current: 0, total });
            if total <= chunk {
                let mut v = Vec::with_capacity(total as usize);
                blob.read_to_end(&mut v)
                    .map_err(|e| Error::io(format!("read blob {}", b.digest), e))?;
                repo.finish_upload(&location, &b.digest, Bytes::from(v))
                    .await?;
            } else {
                let mut off = 0u64;
                while off < total {
                    let n = chunk.min(total - off) as usize;
                    let mut v = vec![0u8; n];
                    blob.read_exact(&mut v)
                        .map_err(|e| Error::io(format!("read blob {}", b.digest), e))?;
                    location = repo.upload_chunk(&location, off, Bytes::from(v)).await?;
                    off += n as u64;
                    ev(ProgressStatus::Pushing {
                        current: off,
                        total,
                    });
                }
                repo.finish_upload(&location, &b.digest, Bytes::new())
                    .await?;
            }
            ev(ProgressStatus::Pushing {
                current: total,
                total,
            });
            counts
                .uploaded
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ev(ProgressStatus::Pushed);
            Ok(())
        }
    };
    handle.block_on(async {
        let futs: Vec<_> = blobs.iter().map(push_one).collect();
        let results = futures_util::future::join_all(futs).await;
        results.into_iter().collect::<Result<Vec<()>>>()
    })?;
    for b in &blobs {
        let _ = svc
            .db()
            .set_content_label(&b.digest, &label, Some(repo.name()));
    }
    for (d, bytes) in &manifests {
        handle.block_on(repo.put_manifest(
            &d.digest.to_string(),
            &d.media_type,
            Bytes::from(bytes.clone()),
        ))?;
    }
    let reference = match (dest.digest(), dest.tag()) {
        (Some(d), _) => {
            if *d != top.digest {
                return Err(Error::Invalid(format!(
                    "push {dest}: the local image's manifest is {}",
                    top.digest
                )));
            }
            d.to_string()
        }
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".into(),
    };
    let digest = handle.block_on(repo.put_manifest(
        &reference,
        &top.media_type,
        Bytes::from(top_bytes.clone()),
    ))?;
    use std::sync::atomic::Ordering::SeqCst;
    Ok(PushResult {
        digest,
        size: top_bytes.len() as u64,
        uploaded: counts.uploaded.load(SeqCst),
        mounted: counts.mounted.load(SeqCst),
        existing: counts.existing.load(SeqCst),
    })
}

/// `docker login`: verify `creds` against `registry`'s `/v2/`, then store them in the
/// `config.json` at `config_path` (atomic write, mode 0600).
pub async fn login(
    client: &Client,
    registry: &str,
    creds: &Credentials,
    config_path: &std::path::Path,
) -> Result<()> {
    client.verify_login(registry, creds).await?;
    let mut cfg = DockerConfig::load(config_path)?;
    cfg.set_credentials(registry, creds);
    cfg.save()
}

/// `docker logout`: remove `registry`'s credentials from `config_path`; whether there were any.
pub fn logout(registry: &str, config_path: &std::path::Path) -> Result<bool> {
    let mut cfg = DockerConfig::load(config_path)?;
    let had = cfg.remove_credentials(registry);
    if had {
        cfg.save()?;
    }
    Ok(had)
}
