//! The image service: the library API the engine and the CLI call.
//!
//! It wires the content store (`<root>/content`), the snapshotter (`<root>/snapshots`) and the
//! metadata database (`<root>/berth.db`). Every write follows the same protocol: a lease is
//! created first and every blob or snapshot written is added to it (so a concurrent GC keeps
//! half-loaded content), image records are written last, then the lease is dropped.
//!
//! Lookup rules (Docker's): a full id (`sha256:<hex>` or 64 hex) names an image id; otherwise
//! the input is a reference (`busybox` = `docker.io/library/busybox:latest`, `name@digest`
//! matches the target digest); failing that, a hex prefix of an id (ambiguous prefixes fail).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use berth_content::{LocalStore, Store};
use berth_core::{Digest, ErrorKind, Platform, Reference};
use berth_metadata::{Db, Holder, Image, Resource, Target};
use berth_snapshot::Snapshotter;
use serde::Serialize;

use crate::archive::{self, read_blob, unique_ref, LoadedImage};
use crate::chain::chain_ids;
use crate::error::{KindedError, StoreContext};
use crate::export::{self, ExportImage, RefNameStyle};
use crate::import::{import_rootfs, ImportOptions};
use crate::layer::{apply_layer_verified, ApplyOptions, WhiteoutMode};
use crate::select::select_manifest;
use crate::spec::{
    media, Descriptor, ImageConfig, Manifest, ManifestKind, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::stage::{cleanup_dead, move_into, Staged, Stager};
use crate::ImageError;

impl KindedError for berth_metadata::Error {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

impl KindedError for berth_snapshot::Error {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

impl KindedError for crate::layer::LayerError {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

/// How long a load's lease lives if the process dies before dropping it.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Label on a config blob: the image's unpacked size in bytes.
const SIZE_LABEL: &str = "berth.layer.size";

/// Docker's layer size: apparent sizes of regular files and symlinks under `dir` (hard links
/// once), never following symlinks.
fn apparent_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(e.path());
            } else if (ft.is_file() || ft.is_symlink()) && (m.nlink() < 2 || seen.insert(m.ino())) {
                total += m.size();
            }
        }
    }
    total
}

/// A resolved image: its records, manifest and config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image id (config digest).
    pub id: Digest,
    /// What the records point at (a manifest or an index).
    pub target: Target,
    /// The platform manifest's descriptor.
    pub manifest_desc: Descriptor,
    /// The platform manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// Every record of this id (names, or the dangling id record).
    pub records: Vec<Image>,
}

impl ResolvedImage {
    /// References (not the dangling id record), sorted.
    pub fn references(&self) -> Vec<Reference> {
        let mut v: Vec<Reference> = self
            .records
            .iter()
            .filter(|r| r.name.parse::<Digest>().is_err())
            .filter_map(|r| Reference::parse(&r.name).ok())
            .collect();
        v.sort_by_key(|r| r.to_string());
        v
    }

    /// `RepoTags` in familiar form.
    pub fn repo_tags(&self) -> Vec<String> {
        self.references()
            .iter()
            .filter(|r| r.digest().is_none())
            .map(|r| r.familiar())
            .collect()
    }

    /// `RepoDigests`: each repository with the target digest.
    pub fn repo_digests(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .references()
            .iter()
            .map(|r| format!("{}@{}", r.familiar_name(), self.target.digest))
            .collect();
        set.into_iter().collect()
    }

    /// The chain ids of the image's layers, base first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.config.rootfs.diff_ids)
    }

    /// The chain id of the top layer: the snapshot a container's rootfs is prepared on.
    pub fn top_chain_id(&self) -> Option<Digest> {
        self.chain_ids().pop()
    }
}

/// A row of `docker images` (one per image; the CLI expands tags).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// Image id.
    pub id: String,
    /// Tags in familiar form.
    pub repo_tags: Vec<String>,
    /// Digests in familiar form.
    pub repo_digests: Vec<String>,
    /// Creation time (unix seconds).
    pub created: i64,
    /// Size in bytes.
    pub size: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Containers holding the image.
    pub containers: i64,
}

/// An entry of `docker history`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id on the top entry, `<missing>` below.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The command.
    pub created_by: String,
    /// Tags of the image (top entry only).
    pub tags: Option<Vec<String>>,
    /// Size of the layer this step made (0 for empty layers).
    pub size: u64,
    /// Comment.
    pub comment: String,
}

/// `docker image inspect` output (field order as Docker prints it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// Image id.
    pub id: String,
    /// Tags, familiar form.
    pub repo_tags: Vec<String>,
    /// Digests, familiar form.
    pub repo_digests: Vec<String>,
    /// Always empty (no parent chain for loaded images).
    pub parent: String,
    /// Comment.
    pub comment: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Docker version that built it.
    pub docker_version: String,
    /// Author.
    pub author: String,
    /// Runtime defaults.
    pub config: InspectConfig,
    /// Architecture.
    pub architecture: String,
    /// CPU variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS.
    pub os: String,
    /// Size in bytes.
    pub size: u64,
    /// Storage driver.
    pub graph_driver: GraphDriver,
    /// Layers.
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    /// Metadata.
    pub metadata: InspectMetadata,
    /// The platform manifest's descriptor (Docker ≥ 25 with the containerd store).
    pub descriptor: Descriptor,
}

/// The `Config` of an inspect (Docker's container-config shape).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct InspectConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, crate::spec::Empty>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::spec::HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, crate::spec::Empty>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// `GraphDriver` of an inspect.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// Driver data (none: snapshots are internal).
    pub data: Option<BTreeMap<String, String>>,
    /// `overlay` or `native`.
    pub name: String,
}

/// `RootFS` of an inspect.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Diff ids.
    pub layers: Vec<Digest>,
}

/// `Metadata` of an inspect.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InspectMetadata {
    /// When a name was last set.
    pub last_tag_time: String,
}

/// One line of an image removal, as the Docker API returns them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum DeleteResponse {
    /// A reference was removed.
    Untagged(String),
    /// An image (or layer) was deleted.
    Deleted(String),
}

/// What a load registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadResult {
    /// Image id.
    pub id: Digest,
    /// Names given to it (familiar form).
    pub names: Vec<String>,
    /// Names moved away from another image (which became dangling), familiar form, with the
    /// old id.
    pub renamed: Vec<(String, Digest)>,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Layers applied now.
    pub applied: usize,
    /// Layers already present as snapshots.
    pub reused: usize,
    /// Uncompressed bytes applied.
    pub bytes: u64,
    /// The top chain id.
    pub top: Option<Digest>,
}

/// Where `save` writes an OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciDest {
    /// A directory (`oci:`).
    Dir(PathBuf),
    /// A tar file (`oci-archive:`).
    Archive(PathBuf),
}

/// The image service over a data root.
pub struct ImageService {
    root: PathBuf,
    content: LocalStore,
    snapshots: Box<dyn Snapshotter>,
    db: Db,
    platform: Platform,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("root", &self.root)
            .field("snapshotter", &self.snapshots.name())
            .finish_non_exhaustive()
    }
}

pub(crate) struct LeaseGuard<'a> {
    db: &'a Db,
    id: String,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        let _ = self.db.delete_lease(&self.id);
    }
}

fn is_full_id(s: &str) -> Option<Digest> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() == 64 {
        Digest::new(berth_core::Algorithm::Sha256, hex).ok()
    } else {
        None
    }
}

fn is_id_prefix(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (!hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    .then_some(hex)
}

fn created_secs(cfg: &ImageConfig) -> i64 {
    cfg.created
        .as_deref()
        .and_then(crate::timefmt::parse_rfc3339)
        .unwrap_or(0)
}

impl ImageService {
    /// Open the service on `data_root` (created if needed) with the host platform.
    pub fn open(data_root: impl AsRef<Path>) -> Result<Self, ImageError> {
        let root = data_root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| ImageError::io(format!("create {}", root.display()), e))?;
        let content = LocalStore::open(root.join("content"))
            .ctx(|| format!("open content store in {}", root.display()))?;
        let snapshots = berth_snapshot::open(root.join("snapshots"))
            .ctx(|| format!("open snapshotter in {}", root.display()))?;
        let db = Db::open(root.join("berth.db"))
            .ctx(|| format!("open metadata in {}", root.display()))?;
        cleanup_dead(&root.join("tmp"));
        Ok(ImageService {
            root,
            content,
            snapshots,
            db,
            platform: Platform::host(),
        })
    }

    /// Use `platform` instead of the host's when choosing from indexes.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The platform indexes are resolved to.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store.
    pub fn content(&self) -> &LocalStore {
        &self.content
    }

    /// The snapshotter.
    pub fn snapshotter(&self) -> &dyn Snapshotter {
        self.snapshots.as_ref()
    }

    /// The metadata database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn lease(&self, what: &str) -> Result<LeaseGuard<'_>, ImageError> {
        let id = unique_ref(what);
        self.db
            .create_lease(&id, Some(LEASE_TTL))
            .ctx(|| format!("create lease {id}"))?;
        Ok(LeaseGuard { db: &self.db, id })
    }

    pub(crate) fn lease_add(&self, lease: &LeaseGuard<'_>, r: Resource) -> Result<(), ImageError> {
        self.db
            .add_lease_resource(&lease.id, &r)
            .ctx(|| format!("add {r:?} to lease {}", lease.id))
    }

    /// The platform manifest of a target (a manifest, or an index → host platform).
    pub(crate) fn platform_manifest(
        &self,
        target: &Descriptor,
    ) -> Result<(Descriptor, Manifest), ImageError> {
        let mut d = target.clone();
        for _ in 0..4 {
            let bytes = read_blob(&self.content, &d.digest, MAX_MANIFEST_SIZE)?;
            match ManifestKind::parse(Some(&d.media_type), &bytes)? {
                ManifestKind::Manifest(m) => {
                    if !m.is_image() {
                        return Err(ImageError::Unsupported(format!(
                            "{} is not an image (config media type {})",
                            d.digest, m.config.media_type
                        )));
                    }
                    return Ok((d, m));
                }
                ManifestKind::Index(i) => {
                    let sel = select_manifest(&i, &self.platform)?.clone();
                    d = Descriptor::new(&sel.media_type, sel.digest, sel.size);
                }
            }
        }
        Err(ImageError::Invalid(format!(
            "indexes nested too deeply under {}",
            target.digest
        )))
    }

    pub(crate) fn config_of(&self, m: &Manifest) -> Result<ImageConfig, ImageError> {
        ImageConfig::from_slice(&read_blob(
            &self.content,
            &m.config.digest,
            MAX_CONFIG_SIZE,
        )?)
    }

    fn resolve_records(&self, records: Vec<Image>) -> Result<ResolvedImage, ImageError> {
        let first = records
            .first()
            .ok_or_else(|| ImageError::NotFound("no such image".into()))?;
        let target = first.target.clone();
        let tdesc = Descriptor::new(&target.media_type, target.digest.clone(), target.size);
        let (manifest_desc, manifest) = self.platform_manifest(&tdesc)?;
        let config = self.config_of(&manifest)?;
        let id = manifest.config.digest.clone();
        let records = self
            .db
            .images_with_id(&id)
            .ctx(|| format!("list images of {id}"))?;
        let records = if records.is_empty() {
            vec![first.clone()]
        } else {
            records
        };
        Ok(ResolvedImage {
            id,
            target,
            manifest_desc,
            manifest,
            config,
            records,
        })
    }

    /// Find an image by id, id prefix, name or name@digest (Docker's rules).
    pub fn resolve(&self, name_or_id: &str) -> Result<ResolvedImage, ImageError> {
        let not_found = || ImageError::NotFound(format!("No such image: {name_or_id}"));
        if let Some(id) = is_full_id(name_or_id) {
            let recs = self
                .db
                .images_with_id(&id)
                .ctx(|| format!("find image {id}"))?;
            return if recs.is_empty() {
                Err(not_found())
            } else {
                self.resolve_records(recs)
            };
        }
        if let Ok(r) = Reference::parse(name_or_id) {
            if let Some(d) = r.digest() {
                let recs: Vec<Image> = self
                    .db
                    .images_with_target(d)
                    .ctx(|| format!("find image {name_or_id}"))?
                    .into_iter()
                    .filter(|i| Reference::parse(&i.name).is_ok_and(|n| n.name() == r.name()))
                    .collect();
                if !recs.is_empty() {
                    return self.resolve_records(recs);
                }
            } else {
                match self.db.get_image(&r.to_string()) {
                    Ok(img) => return self.resolve_records(vec![img]),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx(|| format!("find image {name_or_id}")),
                }
            }
        }
        if let Some(prefix) = is_id_prefix(name_or_id) {
            let all = self.db.list_images().ctx(|| "list images".into())?;
            let ids: BTreeSet<Digest> = all
                .iter()
                .filter_map(|i| i.id.clone())
                .filter(|id| id.encoded().starts_with(prefix))
                .collect();
            match ids.len() {
                0 => {}
                1 => {
                    let id = ids.into_iter().next().ok_or_else(not_found)?;
                    let recs = self
                        .db
                        .images_with_id(&id)
                        .ctx(|| format!("find image {id}"))?;
                    return self.resolve_records(recs);
                }
                _ => {
                    return Err(ImageError::Invalid(format!(
                        "ambiguous image id prefix {name_or_id:?}"
                    )))
                }
            }
        }
        Err(not_found())
    }

    /// Whether a snapshot is committed under `key`.
    fn has_snapshot(&self, key: &str) -> bool {
        self.snapshots
            .stat(key)
            .is_ok_and(|i| i.kind == berth_snapshot::Kind::Committed)
    }

    /// The image's size: the sum of its layers' sizes.
    fn image_size(&self, img: &ResolvedImage) -> u64 {
        self.layer_sizes(img).iter().sum()
    }

    /// Each layer's size as Docker reports it (apparent size of its files, recorded at
    /// unpack); the snapshot's disk usage or the blob size when unknown.
    fn layer_sizes(&self, img: &ResolvedImage) -> Vec<u64> {
        img.chain_ids()
            .iter()
            .zip(&img.manifest.layers)
            .map(|(c, l)| {
                let labelled = self
                    .db
                    .content_labels(&l.digest)
                    .ok()
                    .and_then(|m| m.get(SIZE_LABEL).and_then(|v| v.parse().ok()));
                labelled.unwrap_or_else(|| {
                    self.snapshots
                        .usage(&c.to_string())
                        .map(|u| u.size)
                        .unwrap_or(l.size)
                })
            })
            .collect()
    }

    /// Unpack the image's layers into snapshots keyed by chain id (layers already present are
    /// skipped), verifying each layer's diff id.
    pub fn unpack(&self, name_or_id: &str) -> Result<UnpackReport, ImageError> {
        let img = self.resolve(name_or_id)?;
        let lease = self.lease("unpack")?;
        self.unpack_resolved(&img, &lease, &mut HashMap::new())
    }

    pub(crate) fn unpack_resolved(
        &self,
        img: &ResolvedImage,
        lease: &LeaseGuard<'_>,
        staged: &mut HashMap<Digest, Staged>,
    ) -> Result<UnpackReport, ImageError> {
        let diff_ids = &img.config.rootfs.diff_ids;
        if diff_ids.len() != img.manifest.layers.len() {
            return Err(ImageError::Invalid(format!(
                "image {}: {} layers but {} diff ids",
                img.id,
                img.manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(diff_ids);
        let mut report = UnpackReport::default();
        let mut parent: Option<String> = None;
        for ((layer, diff_id), chain) in img.manifest.layers.iter().zip(diff_ids).zip(&chains) {
            let key = chain.to_string();
            if self.has_snapshot(&key) {
                report.reused += 1;
                parent = Some(key);
                continue;
            }
            if !media::is_layer(&layer.media_type) {
                return Err(ImageError::Unsupported(format!(
                    "layer {}: unsupported media type {}",
                    layer.digest, layer.media_type
                )));
            }
            let active = unique_ref(&format!("extract-{}", chain.encoded()));
            self.lease_add(lease, Resource::Snapshot(active.clone()))?;
            self.lease_add(lease, Resource::Snapshot(key.clone()))?;
            self.snapshots
                .prepare(&active, parent.as_deref())
                .ctx(|| format!("prepare snapshot for layer {}", layer.digest))?;
            let res = (|| -> Result<u64, ImageError> {
                let upper = self
                    .snapshots
                    .upper_dir(&active)
                    .ctx(|| format!("snapshot {active}"))?;
                // Applied while it streamed in: move the staged tree into place.
                if let Some(st) = staged.remove(&layer.digest) {
                    if st.report.diff_id == *diff_id && move_into(&st.dir, &upper).is_ok() {
                        return Ok(st.report.uncompressed_size);
                    }
                    // Wrong diff id or a failed move: start again from the blob.
                    let _ = std::fs::remove_dir_all(&st.dir);
                    let _ = std::fs::remove_dir_all(&upper);
                    std::fs::create_dir(&upper)
                        .map_err(|e| ImageError::io(format!("reset {}", upper.display()), e))?;
                }
                let blob = self
                    .content
                    .reader(&layer.digest)
                    .ctx(|| format!("open layer {}", layer.digest))?;
                let opts = ApplyOptions::with_whiteout(WhiteoutMode::Overlay);
                let rep = apply_layer_verified(&upper, blob, &opts, diff_id)
                    .ctx(|| format!("apply layer {}", layer.digest))?;
                Ok(rep.uncompressed_size)
            })();
            match res {
                Ok(n) => {
                    report.bytes += n;
                    if let Ok(upper) = self.snapshots.upper_dir(&active) {
                        let size = apparent_size(&upper).to_string();
                        self.db
                            .set_content_label(&layer.digest, SIZE_LABEL, Some(&size))
                            .ctx(|| format!("label {}", layer.digest))?;
                    }
                }
                Err(e) => {
                    let _ = self.snapshots.remove(&active);
                    return Err(e);
                }
            }
            match self.snapshots.commit(&key, &active) {
                Ok(()) => report.applied += 1,
                Err(e) if e.kind() == ErrorKind::Conflict && self.has_snapshot(&key) => {
                    // Another unpack committed the same layer first.
                    let _ = self.snapshots.remove(&active);
                    report.reused += 1;
                }
                Err(e) => {
                    let _ = self.snapshots.remove(&active);
                    return Err(e).ctx(|| format!("commit snapshot {key}"));
                }
            }
            parent = Some(key);
        }
        report.top = chains.last().cloned();
        Ok(report)
    }

    /// Register loaded images: names (moving them from other images, which become dangling
    /// when left without names) or a dangling record.
    pub(crate) fn register(
        &self,
        target: &Descriptor,
        id: &Digest,
        names: &[Reference],
    ) -> Result<LoadResult, ImageError> {
        let t = Target {
            digest: target.digest.clone(),
            media_type: target.media_type.clone(),
            size: target.size,
        };
        let mut result = LoadResult {
            id: id.clone(),
            names: Vec::new(),
            renamed: Vec::new(),
        };
        let mut orphans = Vec::new();
        for n in names {
            if let Ok(old) = self.db.get_image(&n.to_string()) {
                if let Some(old_id) = old.id.filter(|o| o != id) {
                    result.renamed.push((n.familiar(), old_id.clone()));
                    orphans.push((old.target, old_id));
                }
            }
            self.db
                .put_image(&Image::new(n.to_string(), t.clone(), Some(id.clone())))
                .ctx(|| format!("record image {n}"))?;
            result.names.push(n.familiar());
        }
        let dangling = id.to_string();
        if names.is_empty() {
            if self
                .db
                .images_with_id(id)
                .map(|v| v.is_empty())
                .unwrap_or(true)
            {
                self.db
                    .put_image(&Image::new(dangling, t, Some(id.clone())))
                    .ctx(|| format!("record image {id}"))?;
            }
        } else {
            let _ = self.db.delete_image(&dangling);
        }
        for (target, old_id) in orphans {
            if self
                .db
                .images_with_id(&old_id)
                .map(|v| v.is_empty())
                .unwrap_or(false)
            {
                self.db
                    .put_image(&Image::new(
                        old_id.to_string(),
                        target,
                        Some(old_id.clone()),
                    ))
                    .ctx(|| format!("record image {old_id}"))?;
            }
        }
        Ok(result)
    }

    fn finish_load(
        &self,
        loaded: Vec<LoadedImage>,
        lease: &LeaseGuard<'_>,
        staged: &mut HashMap<Digest, Staged>,
    ) -> Result<Vec<LoadResult>, ImageError> {
        // Unpack everything first, then write the records: a failed unpack registers nothing.
        let mut ready = Vec::new();
        for l in loaded {
            let (manifest_desc, manifest) = self.platform_manifest(&l.target)?;
            let config = self.config_of(&manifest)?;
            let img = ResolvedImage {
                id: manifest.config.digest.clone(),
                target: Target {
                    digest: l.target.digest.clone(),
                    media_type: l.target.media_type.clone(),
                    size: l.target.size,
                },
                manifest_desc,
                manifest,
                config,
                records: Vec::new(),
            };
            self.unpack_resolved(&img, lease, staged)?;
            ready.push((l, img.id));
        }
        ready
            .iter()
            .map(|(l, id)| self.register(&l.target, id, &l.names))
            .collect()
    }

    /// `docker load`: a Docker save archive or OCI layout tar, maybe compressed; images are
    /// unpacked and tagged.
    pub fn load(&self, reader: impl Read) -> Result<Vec<LoadResult>, ImageError> {
        let lease = self.lease("load")?;
        let mut stager = Stager::new(&self.root.join("tmp"))
            .map_err(|e| ImageError::io(format!("create staging in {}", self.root.display()), e))?;
        let loaded = {
            let mut hook = |d: &Digest| self.lease_add(&lease, Resource::Content(d.clone()));
            archive::load_archive_staged(&self.content, reader, &mut hook, Some(&mut stager))?
        };
        let mut staged = stager.finish();
        self.finish_load(loaded, &lease, &mut staged)
    }

    /// Load an OCI image layout directory (`oci:`).
    pub fn load_oci_dir(&self, dir: &Path) -> Result<Vec<LoadResult>, ImageError> {
        let lease = self.lease("load")?;
        let loaded = {
            let mut hook = |d: &Digest| self.lease_add(&lease, Resource::Content(d.clone()));
            archive::load_oci_dir(&self.content, dir, &mut hook)?
        };
        self.finish_load(loaded, &lease, &mut HashMap::new())
    }

    /// `docker import`: a rootfs tarball becomes an image, tagged `reference` when given.
    pub fn import(
        &self,
        reader: impl Read,
        reference: Option<&str>,
        opts: &ImportOptions,
    ) -> Result<LoadResult, ImageError> {
        let name = reference
            .map(Reference::parse)
            .transpose()
            .map_err(|e| ImageError::Invalid(e.to_string()))?;
        let lease = self.lease("import")?;
        let imported = {
            let mut hook = |d: &Digest| self.lease_add(&lease, Resource::Content(d.clone()));
            import_rootfs(&self.content, reader, opts, &mut hook)?
        };
        let mut res = self.finish_load(
            vec![LoadedImage {
                target: imported.manifest_desc,
                names: name.into_iter().collect(),
            }],
            &lease,
            &mut HashMap::new(),
        )?;
        res.pop()
            .ok_or_else(|| ImageError::Invalid("import produced no image".into()))
    }

    fn export_set(&self, names: &[String]) -> Result<Vec<ExportImage>, ImageError> {
        let mut out: Vec<ExportImage> = Vec::new();
        for n in names {
            let img = self.resolve(n)?;
            // By name: that name; by id: no names (as docker save does).
            let tag = match Reference::parse(n) {
                Ok(r)
                    if is_full_id(n).is_none()
                        && img.records.iter().any(|x| x.name == r.to_string()) =>
                {
                    Some(r)
                }
                _ => None,
            };
            match out
                .iter_mut()
                .find(|e| e.manifest_desc.digest == img.manifest_desc.digest)
            {
                Some(e) => {
                    if let Some(t) = tag {
                        if !e.names.contains(&t) {
                            e.names.push(t);
                        }
                    }
                }
                None => out.push(ExportImage {
                    manifest_desc: img.manifest_desc.clone(),
                    manifest: img.manifest.clone(),
                    names: tag.into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    /// `docker save`: a Docker archive (manifest.json + OCI index) of the named images.
    pub fn save(&self, names: &[String], w: impl Write) -> Result<(), ImageError> {
        let set = self.export_set(names)?;
        export::write_docker_archive(&self.content, &set, w)
    }

    /// Save as an OCI image layout (directory or tar) with full references as ref names.
    pub fn save_oci(&self, names: &[String], dest: &OciDest) -> Result<(), ImageError> {
        let set = self.export_set(names)?;
        match dest {
            OciDest::Dir(d) => export::write_oci_dir(&self.content, &set, RefNameStyle::Full, d),
            OciDest::Archive(p) => {
                let f = std::fs::File::create(p)
                    .map_err(|e| ImageError::io(format!("create {}", p.display()), e))?;
                let mut w = std::io::BufWriter::new(f);
                export::write_oci_archive(&self.content, &set, RefNameStyle::Full, &mut w)?;
                let f = w.into_inner().map_err(|e| {
                    ImageError::io(format!("write {}", p.display()), e.into_error())
                })?;
                f.sync_all()
                    .map_err(|e| ImageError::io(format!("fsync {}", p.display()), e))
            }
        }
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let all = self.db.list_images().ctx(|| "list images".into())?;
        let mut by_id: BTreeMap<Digest, Vec<Image>> = BTreeMap::new();
        for i in all {
            if let Some(id) = i.id.clone() {
                by_id.entry(id).or_default().push(i);
            }
        }
        let mut out = Vec::new();
        for (_, recs) in by_id {
            let img = match self.resolve_records(recs) {
                Ok(i) => i,
                Err(_) => continue, // a half-removed image: skip rather than fail the listing
            };
            let containers = self
                .db
                .holders_of(&Resource::Image(img.id.clone()))
                .map(|h| h.len() as i64)
                .unwrap_or(0);
            out.push(ImageSummary {
                id: img.id.to_string(),
                repo_tags: img.repo_tags(),
                repo_digests: img.repo_digests(),
                created: created_secs(&img.config),
                size: self.image_size(&img),
                labels: img
                    .config
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default(),
                containers,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `docker image inspect`, in Docker's JSON shape.
    pub fn inspect(&self, name_or_id: &str) -> Result<ImageInspect, ImageError> {
        let img = self.resolve(name_or_id)?;
        let c = &img.config;
        let rc = c.config.clone().unwrap_or_default();
        let config = InspectConfig {
            hostname: String::new(),
            domainname: String::new(),
            user: rc.user.clone().unwrap_or_default(),
            attach_stdin: false,
            attach_stdout: false,
            attach_stderr: false,
            exposed_ports: rc.exposed_ports.clone(),
            tty: false,
            open_stdin: false,
            stdin_once: false,
            env: rc.env.clone(),
            cmd: rc.cmd.clone(),
            healthcheck: rc.healthcheck.clone(),
            args_escaped: rc.args_escaped,
            image: String::new(),
            volumes: rc.volumes.clone(),
            working_dir: rc.working_dir.clone().unwrap_or_default(),
            entrypoint: rc.entrypoint.clone(),
            on_build: rc.on_build.clone(),
            labels: rc.labels.clone(),
            stop_signal: rc.stop_signal.clone(),
            shell: rc.shell.clone(),
        };
        let comment = c
            .comment
            .clone()
            .or_else(|| c.history.last().and_then(|h| h.comment.clone()))
            .unwrap_or_default();
        let last_tag = img
            .records
            .iter()
            .map(|r| r.updated)
            .max()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| crate::timefmt::format_rfc3339(d.as_secs() as i64, d.subsec_nanos()))
            .unwrap_or_default();
        Ok(ImageInspect {
            id: img.id.to_string(),
            repo_tags: img.repo_tags(),
            repo_digests: img.repo_digests(),
            parent: String::new(),
            comment,
            created: c.created.clone().unwrap_or_default(),
            docker_version: c.docker_version.clone().unwrap_or_default(),
            author: c.author.clone().unwrap_or_default(),
            config,
            architecture: c.architecture.clone(),
            variant: c.variant.clone(),
            os: c.os.clone(),
            size: self.image_size(&img),
            graph_driver: GraphDriver {
                data: None,
                name: self.snapshots.name().to_string(),
            },
            root_fs: InspectRootFs {
                kind: c.rootfs.kind.clone(),
                layers: c.rootfs.diff_ids.clone(),
            },
            metadata: InspectMetadata {
                last_tag_time: last_tag,
            },
            descriptor: img.manifest_desc.clone(),
        })
    }

    /// `docker history`, newest first.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryItem>, ImageError> {
        let img = self.resolve(name_or_id)?;
        let sizes = self.layer_sizes(&img);
        let mut layer = 0usize;
        let mut items = Vec::new();
        let hist = if img.config.history.is_empty() {
            // No history: one entry per layer.
            img.config
                .rootfs
                .diff_ids
                .iter()
                .map(|_| crate::spec::History::default())
                .collect()
        } else {
            img.config.history.clone()
        };
        for h in &hist {
            let size = if h.empty_layer {
                0
            } else {
                let s = sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            items.push(HistoryItem {
                id: "<missing>".into(),
                created: h
                    .created
                    .as_deref()
                    .and_then(crate::timefmt::parse_rfc3339)
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: None,
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        items.reverse();
        if let Some(top) = items.first_mut() {
            top.id = img.id.to_string();
            let tags = img.repo_tags();
            top.tags = (!tags.is_empty()).then_some(tags);
        }
        Ok(items)
    }

    /// `docker tag SRC DST`.
    pub fn tag(&self, src: &str, dst: &str) -> Result<(), ImageError> {
        let img = self.resolve(src)?;
        let r = Reference::parse(dst).map_err(|e| ImageError::Invalid(e.to_string()))?;
        if r.digest().is_some() {
            return Err(ImageError::Invalid(format!(
                "refusing to create a tag with a digest reference: {dst}"
            )));
        }
        let t = Descriptor::new(
            &img.target.media_type,
            img.target.digest.clone(),
            img.target.size,
        );
        self.register(&t, &img.id, &[r]).map(|_| ())
    }

    /// Remove one reference; the image stays (dangling) if nothing else names it.
    pub fn untag(&self, name: &str) -> Result<DeleteResponse, ImageError> {
        let r = Reference::parse(name).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let old = self
            .db
            .delete_image(&r.to_string())
            .ctx(|| format!("untag {name}"))?;
        if let Some(id) = &old.id {
            if self
                .db
                .images_with_id(id)
                .map(|v| v.is_empty())
                .unwrap_or(false)
            {
                self.db
                    .put_image(&Image::new(
                        id.to_string(),
                        old.target.clone(),
                        Some(id.clone()),
                    ))
                    .ctx(|| format!("record image {id}"))?;
            }
        }
        Ok(DeleteResponse::Untagged(r.familiar()))
    }

    fn holders(&self, id: &Digest) -> Result<Vec<Holder>, ImageError> {
        self.db
            .holders_of(&Resource::Image(id.clone()))
            .ctx(|| format!("holders of {id}"))
    }

    /// `docker rmi`, with Docker's conflict rules:
    /// - by reference while other references name the image: untag only;
    /// - the last reference of an image a container holds: conflict unless `force`;
    /// - by id with references in several repositories: conflict unless `force`;
    /// - by id of a held image: conflict unless `force` (content stays held either way).
    ///
    /// `prune` runs garbage collection afterwards so unreferenced blobs and layers go.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        prune: bool,
    ) -> Result<Vec<DeleteResponse>, ImageError> {
        let img = self.resolve(name_or_id)?;
        let short = img.id.short().to_string();
        let by_ref = is_full_id(name_or_id).is_none()
            && Reference::parse(name_or_id)
                .is_ok_and(|r| img.records.iter().any(|x| x.name == r.to_string()));
        let refs = img.references();
        let holders = self.holders(&img.id)?;
        let mut out = Vec::new();
        if by_ref {
            let r = Reference::parse(name_or_id).map_err(|e| ImageError::Invalid(e.to_string()))?;
            if refs.len() > 1 {
                out.push(self.untag(name_or_id)?);
                return Ok(out);
            }
            if let Some(h) = holders.first() {
                if !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{}\" (must force) - {} {} is using its referenced image {}",
                        name_or_id, h.kind, h.id, short
                    )));
                }
            }
            let _ = r;
        } else {
            let repos: BTreeSet<String> = refs.iter().map(|r| r.name()).collect();
            if repos.len() > 1 && !force {
                return Err(ImageError::Conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                )));
            }
            if let Some(h) = holders.first() {
                if !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is being used by {} {}",
                        h.kind, h.id
                    )));
                }
            }
        }
        for r in &refs {
            self.db
                .delete_image(&r.to_string())
                .ctx(|| format!("untag {r}"))?;
            out.push(DeleteResponse::Untagged(r.familiar()));
        }
        for rec in self
            .db
            .images_with_id(&img.id)
            .ctx(|| format!("list images of {}", img.id))?
        {
            self.db
                .delete_image(&rec.name)
                .ctx(|| format!("delete image {}", rec.name))?;
        }
        out.push(DeleteResponse::Deleted(img.id.to_string()));
        if prune {
            self.gc()?;
        }
        Ok(out)
    }

    /// Garbage-collect blobs and snapshots no image, lease or hold reaches.
    pub fn gc(&self) -> Result<berth_metadata::GcReport, ImageError> {
        berth_metadata::gc(&self.content, self.snapshots.as_ref(), &self.db)
            .ctx(|| "garbage collection".into())
    }
}
