//! The executor: stage DAG, steps, layers, cache, image record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use berth_content::Store;
use berth_core::{Digest, Mount, Platform, Reference};
use berth_dockerfile::{
    CommandLine, DockerIgnore, Dockerfile, Healthcheck, Instruction, MountType, RunScript, Sharing,
    Source, Stage,
};
use berth_image::chain::chain_id_step;
use berth_image::layer::{diff, DiffOptions};
use berth_image::spec::{media, History, RunConfig};
use berth_image::{Descriptor, ImageConfig, ImageService, Manifest, ResolvedImage};
use berth_metadata::{Image, Resource, Target};
use sha2::{Digest as _, Sha256};

use crate::cache::{self, Cache, CachedLayer, Entry};
use crate::copy::{self, CopyOpts, SourceTree, Src};
use crate::error::BuildError;
use crate::fsutil;
use crate::runner::{RunRequest, StepMount, StepNetwork, StepRunner};
use crate::{BuildOptions, BuildResult, Event};

/// Finds base images (FROM, `COPY --from=<image>`). The engine's implementation pulls.
pub trait ImageResolver: Send + Sync {
    /// The image `name`, present locally when this returns; `pull`: refresh it first.
    fn resolve(
        &self,
        images: &ImageService,
        name: &str,
        pull: bool,
    ) -> Result<ResolvedImage, BuildError>;
}

/// Resolves base images from the local store only (`pull` is refused for missing images).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalResolver;

impl ImageResolver for LocalResolver {
    fn resolve(
        &self,
        images: &ImageService,
        name: &str,
        _pull: bool,
    ) -> Result<ResolvedImage, BuildError> {
        images.resolve(name).map_err(|e| match e.kind() {
            berth_core::ErrorKind::NotFound => BuildError::NotFound(format!(
                "pull access denied for {name}: image not found locally and this builder does not pull"
            )),
            _ => BuildError::Image(e),
        })
    }
}

/// The builder over an image service.
pub struct Builder<'a> {
    images: &'a ImageService,
    runner: &'a dyn StepRunner,
    resolver: &'a dyn ImageResolver,
    cache: Cache,
    work: PathBuf,
    limit: Option<u64>,
    prefix: String,
}

/// Rows kept in the per-file hash cache.
const MAX_FILE_HASHES: u64 = 200_000;
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    hex::encode(b)
}

fn now_rfc3339() -> String {
    berth_image::timefmt::now_rfc3339()
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn parse_err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Parse(e.to_string())
}

/// The state of a stage after some steps.
#[derive(Debug, Clone)]
struct State {
    chain: Option<Digest>,
    layers: Vec<Descriptor>,
    config: ImageConfig,
    key: String,
    args: Vec<(String, String)>,
    cmd_set: bool,
}

impl State {
    fn run(&mut self) -> &mut RunConfig {
        self.config.config.get_or_insert_with(RunConfig::default)
    }

    fn env(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// Variables for substitution: ARGs, then ENV (ENV wins).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        for e in self.env() {
            if let Some((k, val)) = e.split_once('=') {
                v.push((k.to_owned(), val.to_owned()));
            }
        }
        v
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let run = self.run();
        let env = run.env.get_or_insert_with(Vec::new);
        let item = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = item,
            None => env.push(item),
        }
    }

    fn history(&mut self, created: &str, created_by: String, empty: bool) {
        self.config.history.push(History {
            created: Some(created.to_owned()),
            created_by: Some(created_by),
            empty_layer: empty,
            ..Default::default()
        });
        self.config.created = Some(created.to_owned());
    }
}

/// A finished stage, shared with the stages that depend on it.
type StageResult = Result<Arc<State>, String>;

struct Shared {
    results: Mutex<BTreeMap<usize, StageResult>>,
    cv: Condvar,
    cancel: AtomicBool,
    hits: AtomicUsize,
    executed: AtomicUsize,
    first_error: Mutex<Option<BuildError>>,
}

/// Unmounts a directory and removes it on drop.
struct MountGuard {
    dir: PathBuf,
    mounted: bool,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = berth_snapshot::unmount(&self.dir);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A read-only view of a stage or image, mounted; unmounted before the view is removed
/// (fields drop in order).
struct SourceMount<'a> {
    mount: MountGuard,
    _view: Option<ActiveGuard<'a>>,
}

/// Removes an uncommitted snapshot on drop.
struct ActiveGuard<'a> {
    images: &'a ImageService,
    key: String,
    armed: bool,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.images.snapshotter().remove(&self.key);
        }
    }
}

fn lowers_of(mounts: &[Mount]) -> Vec<PathBuf> {
    mounts
        .iter()
        .flat_map(|m| m.options.iter())
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|l| l.split(':').map(PathBuf::from).collect::<Vec<_>>())
        .collect()
}

/// A metadata lease protecting what a build creates from a concurrent GC until the image
/// record (or a cache hold) references it; deleted on drop. Resources are added *before* they
/// are created, following the GC protocol of berth-metadata.
struct Lease<'a> {
    images: &'a ImageService,
    id: String,
}

impl<'a> Lease<'a> {
    fn new(images: &'a ImageService, what: &str) -> Result<Self, BuildError> {
        let id = format!("{what}-{}", rand_suffix());
        images
            .db()
            .create_lease(&id, Some(std::time::Duration::from_secs(24 * 3600)))
            .map_err(|e| BuildError::Store(format!("create lease {id}: {e}")))?;
        Ok(Lease { images, id })
    }

    fn add(&self, r: Resource) -> Result<(), BuildError> {
        self.images
            .db()
            .add_lease_resource(&self.id, &r)
            .map_err(|e| BuildError::Store(format!("add {r:?} to lease {}: {e}", self.id)))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.images.db().delete_lease(&self.id);
    }
}

/// Options of [`commit_upper`].
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The config of the new image (its rootfs and history are extended).
    pub config: ImageConfig,
    /// The layers of the parent image.
    pub parent_layers: Vec<Descriptor>,
    /// The parent's top chain id.
    pub parent_chain: Option<Digest>,
    /// History `created_by`.
    pub created_by: String,
    /// History comment (`docker commit -m`).
    pub comment: Option<String>,
    /// Author (`docker commit -a`).
    pub author: Option<String>,
    /// Names to tag.
    pub tags: Vec<String>,
}

/// `docker commit`: turn an overlay upper dir (with its lower dirs, top first) into a new image
/// on top of the parent described in `opts`. Returns the image id.
pub fn commit_upper(
    images: &ImageService,
    lowers: &[&Path],
    upper: &Path,
    opts: &CommitOptions,
) -> Result<Digest, BuildError> {
    let lease = Lease::new(images, "berth-commit")?;
    let reference = format!("berth-commit-{}", rand_suffix());
    lease.add(Resource::Ingest(reference.clone()))?;
    let mut w = images
        .content()
        .writer(&reference, None)
        .map_err(|e| BuildError::Store(format!("open ingest {reference}: {e}")))?;
    let rep = diff(lowers, upper, &mut w, &DiffOptions::default())?;
    lease.add(Resource::Content(rep.compressed_digest.clone()))?;
    commit_blob(w, &rep.compressed_digest, rep.size)?;
    let mut config = opts.config.clone();
    config.rootfs.diff_ids.push(rep.diff_id.clone());
    let created = now_rfc3339();
    config.created = Some(created.clone());
    if opts.author.is_some() {
        config.author = opts.author.clone();
    }
    config.history.push(History {
        created: Some(created),
        created_by: Some(opts.created_by.clone()),
        comment: opts.comment.clone(),
        author: opts.author.clone(),
        ..Default::default()
    });
    let mut layers = opts.parent_layers.clone();
    layers.push(Descriptor::new(
        media::OCI_LAYER,
        rep.compressed_digest.clone(),
        rep.size,
    ));
    // Unpack the new layer into its snapshot so the image can run at once.
    let chain = chain_id_step(opts.parent_chain.as_ref(), &rep.diff_id);
    let snaps = images.snapshotter();
    lease.add(Resource::Snapshot(chain.to_string()))?;
    if snaps.stat(&chain.to_string()).is_err() {
        let key = format!("berth-commit-{}", rand_suffix());
        lease.add(Resource::Snapshot(key.clone()))?;
        let parent = opts.parent_chain.as_ref().map(|c| c.to_string());
        snaps
            .prepare(&key, parent.as_deref())
            .map_err(|e| BuildError::Snapshot(format!("prepare {key}: {e}")))?;
        let mut g = ActiveGuard {
            images,
            key: key.clone(),
            armed: true,
        };
        let dst = snaps
            .upper_dir(&key)
            .map_err(|e| BuildError::Snapshot(format!("snapshot {key}: {e}")))?;
        let blob = images
            .content()
            .reader(&rep.compressed_digest)
            .map_err(|e| BuildError::Store(format!("read layer: {e}")))?;
        berth_image::layer::apply_layer(&dst, blob, &berth_image::layer::ApplyOptions::default())?;
        match snaps.commit(&chain.to_string(), &key) {
            Ok(()) => g.armed = false,
            Err(e) if e.kind() == berth_core::ErrorKind::Conflict => {}
            Err(e) => {
                return Err(BuildError::Snapshot(format!(
                    "commit snapshot {chain}: {e}"
                )))
            }
        }
    }
    let (id, _) = write_image(images, &lease, &config, &layers, &opts.tags)?;
    Ok(id)
}

fn commit_blob(w: berth_content::Writer, digest: &Digest, size: u64) -> Result<(), BuildError> {
    match w.commit(Some(size), Some(digest)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == berth_core::ErrorKind::Conflict => Ok(()),
        Err(e) => Err(BuildError::Store(format!(
            "commit layer blob {digest}: {e}"
        ))),
    }
}

/// Store config + manifest and record the names (dangling when none). Returns (id, manifest).
fn write_image(
    images: &ImageService,
    lease: &Lease<'_>,
    config: &ImageConfig,
    layers: &[Descriptor],
    tags: &[String],
) -> Result<(Digest, Descriptor), BuildError> {
    let cfg =
        serde_json::to_vec(config).map_err(|e| BuildError::Store(format!("encode config: {e}")))?;
    lease.add(Resource::Content(Digest::sha256_of(&cfg)))?;
    let c = images
        .content()
        .write_blob(&cfg, None)
        .map_err(|e| BuildError::Store(format!("store image config: {e}")))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, c.digest().clone(), cfg.len() as u64),
        layers: layers.to_vec(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mb = serde_json::to_vec(&manifest)
        .map_err(|e| BuildError::Store(format!("encode manifest: {e}")))?;
    lease.add(Resource::Content(Digest::sha256_of(&mb)))?;
    let m = images
        .content()
        .write_blob(&mb, None)
        .map_err(|e| BuildError::Store(format!("store manifest: {e}")))?;
    let id = c.digest().clone();
    let target = Target {
        digest: m.digest().clone(),
        media_type: media::OCI_MANIFEST.into(),
        size: mb.len() as u64,
    };
    let db = images.db();
    if tags.is_empty() {
        if db.images_with_id(&id).map(|v| v.is_empty()).unwrap_or(true) {
            db.put_image(&Image::new(
                id.to_string(),
                target.clone(),
                Some(id.clone()),
            ))
            .map_err(|e| BuildError::Store(format!("record image {id}: {e}")))?;
        }
    } else {
        for t in tags {
            let r = Reference::parse(t)
                .map_err(|e| BuildError::Invalid(format!("invalid tag {t:?}: {e}")))?;
            db.put_image(&Image::new(r.to_string(), target.clone(), Some(id.clone())))
                .map_err(|e| BuildError::Store(format!("record image {t}: {e}")))?;
        }
        let _ = db.delete_image(&id.to_string());
    }
    Ok((
        id,
        Descriptor::new(media::OCI_MANIFEST, m.digest().clone(), mb.len() as u64),
    ))
}

fn platform_args(p: &Platform) -> Vec<(String, String)> {
    let plat = match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    };
    let v = p.variant.clone().unwrap_or_default();
    let mut out = Vec::new();
    for pre in ["TARGET", "BUILD"] {
        out.push((format!("{pre}PLATFORM"), plat.clone()));
        out.push((format!("{pre}OS"), p.os.clone()));
        out.push((format!("{pre}ARCH"), p.architecture.clone()));
        out.push((format!("{pre}VARIANT"), v.clone()));
    }
    out
}

fn quote_args(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

fn nop(s: String) -> String {
    format!("/bin/sh -c #(nop)  {s}")
}

/// Stages a stage depends on (indexes of earlier stages).
fn deps(df: &Dockerfile, idx: usize, globals: &[(String, String)]) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let find = |name: &str| df.stage(name).map(|(i, _)| i).filter(|&i| i < idx);
    let stage = &df.stages[idx];
    if let Ok(b) = stage.expand_base(&globals.to_vec(), df.escape) {
        if let Some(i) = find(&b) {
            out.insert(i);
        }
    }
    for step in &stage.instructions {
        match &step.instruction {
            Instruction::Copy(c) => {
                if let Some(f) = &c.from {
                    if let Some(i) = find(f) {
                        out.insert(i);
                    }
                }
            }
            Instruction::Run(r) => {
                for m in &r.mounts {
                    for part in m.split(',') {
                        if let Some(f) = part.trim().strip_prefix("from=") {
                            if let Some(i) = find(f) {
                                out.insert(i);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

impl<'a> Builder<'a> {
    /// A builder storing its cache and scratch space under `<data root>/build`.
    pub fn new(images: &'a ImageService, runner: &'a dyn StepRunner) -> Result<Self, BuildError> {
        let work = images.root().join("build");
        let cache = Cache::open(&work.join("cache.db"))?;
        Ok(Builder {
            images,
            runner,
            resolver: &LocalResolver,
            cache,
            work,
            limit: None,
            prefix: "berthbuild".into(),
        })
    }

    /// Use `resolver` for base images (the engine's pulls).
    pub fn with_resolver(mut self, resolver: &'a dyn ImageResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Prefix of the step containers' ids (and so of their cgroups); `berthbuild` by default.
    pub fn with_name_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Cache size limit enforced after each build (default: [`cache::default_limit`]).
    pub fn with_cache_limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// `builder prune`: see [`Cache::prune`].
    pub fn prune(
        &self,
        keep_storage: Option<u64>,
        all: bool,
    ) -> Result<cache::PruneReport, BuildError> {
        self.cache.prune(self.images, keep_storage, all)
    }

    /// Where RUN cache mounts live.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.work.join("cache-mounts")
    }

    /// Build. Events go to `progress` (called from several threads).
    pub fn build(
        &self,
        opts: &BuildOptions,
        progress: &(dyn Fn(&Event) + Sync),
    ) -> Result<BuildResult, BuildError> {
        let host = self.images.platform().clone();
        if let Some(p) = &opts.platform {
            let want = Platform::parse(p)
                .ok_or_else(|| BuildError::Invalid(format!("invalid platform {p:?}")))?;
            if !want.matches(&host) && !host.matches(&want) {
                return Err(BuildError::Unsupported(format!(
                    "platform {p} is not supported: this builder only builds for the host's platform {}/{}",
                    host.os, host.architecture
                )));
            }
        }
        let name = if opts.dockerfile_name.is_empty() {
            "Dockerfile"
        } else {
            &opts.dockerfile_name
        };
        let text = match &opts.dockerfile {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(opts.context.join(name))
                .map_err(|e| BuildError::io(format!("read {name} in the build context"), e))?,
        };
        let df = berth_dockerfile::parse(&text).map_err(parse_err)?;
        if df.stages.is_empty() {
            return Err(BuildError::Parse("the Dockerfile has no FROM".into()));
        }
        let mut build_args: BTreeMap<String, String> = platform_args(&host).into_iter().collect();
        build_args.extend(opts.build_args.clone());
        let globals = df.global_args(&build_args).map_err(parse_err)?;
        let target = match &opts.target {
            Some(t) => df.stage(t).map(|(i, _)| i).ok_or_else(|| {
                BuildError::NotFound(format!("failed to reach build target {t} in Dockerfile"))
            })?,
            None => df.stages.len() - 1,
        };
        // Stages the target needs.
        let all_deps: Vec<BTreeSet<usize>> = (0..df.stages.len())
            .map(|i| deps(&df, i, &globals))
            .collect();
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(all_deps[i].iter().copied());
            }
        }
        let mut offsets = BTreeMap::new();
        let mut total = 0;
        for &i in &needed {
            offsets.insert(i, total);
            total += 1 + df.stages[i].instructions.len();
        }
        let ignore = if opts.apply_dockerignore {
            DockerIgnore::load(&opts.context, name)
                .map_err(|e| BuildError::Invalid(format!("read .dockerignore: {e}")))?
        } else {
            DockerIgnore::default()
        };
        let context = SourceTree::walk(&opts.context, &ignore, true)?;
        std::fs::create_dir_all(&self.work)
            .map_err(|e| BuildError::io(format!("create {}", self.work.display()), e))?;
        let shared = Shared {
            results: Mutex::new(BTreeMap::new()),
            cv: Condvar::new(),
            cancel: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            executed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        };
        let lease = Lease::new(self.images, "berth-build")?;
        let ctx = Ctx {
            lease: &lease,
            df: &df,
            opts,
            build_args: &build_args,
            globals: &globals,
            context: &context,
            shared: &shared,
            progress,
            total,
        };
        std::thread::scope(|s| {
            for &i in &needed {
                let ctx = &ctx;
                let deps = &all_deps[i];
                let off = offsets[&i];
                s.spawn(move || {
                    let r = self.stage_thread(ctx, i, deps, off);
                    let stored = match r {
                        Ok(st) => Ok(Arc::new(st)),
                        Err(e) => {
                            let msg = e.to_string();
                            ctx.shared.cancel.store(true, Ordering::SeqCst);
                            let mut fe = ctx
                                .shared
                                .first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner());
                            if fe.is_none() {
                                *fe = Some(e);
                            }
                            Err(msg)
                        }
                    };
                    let mut res = ctx.shared.results.lock().unwrap_or_else(|p| p.into_inner());
                    res.insert(i, stored);
                    ctx.shared.cv.notify_all();
                });
            }
        });
        if let Some(e) = shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        let final_state = shared
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&target)
            .and_then(|r| r.ok())
            .ok_or_else(|| BuildError::Store("target stage produced no result".into()))?;
        let mut st = (*final_state).clone();
        if !opts.labels.is_empty() {
            let labels = st.run().labels.get_or_insert_with(BTreeMap::new);
            labels.extend(opts.labels.clone());
        }
        let mut declared: BTreeSet<String> =
            df.args_before_from.iter().map(|a| a.name.clone()).collect();
        for stage in &df.stages {
            for step in &stage.instructions {
                if let Instruction::Arg(args) = &step.instruction {
                    declared.extend(args.iter().map(|a| a.name.clone()));
                }
            }
        }
        let unused: Vec<&str> = opts
            .build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            progress(&Event::Output {
                step: total,
                line: format!(
                    "[Warning] One or more build-args [{}] were not consumed\n",
                    unused.join(" ")
                ),
            });
        }
        let (id, manifest) = write_image(self.images, &lease, &st.config, &st.layers, &opts.tags)?;
        progress(&Event::Built { id: id.clone() });
        let mut tags = Vec::new();
        for t in &opts.tags {
            let n = Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.clone());
            progress(&Event::Tagged { name: n.clone() });
            tags.push(n);
        }
        self.cache.trim_files(MAX_FILE_HASHES)?;
        let limit = self
            .limit
            .unwrap_or_else(|| cache::default_limit(self.images.root()));
        if self.cache.size()? > limit {
            self.cache.prune(self.images, Some(limit), false)?;
        }
        Ok(BuildResult {
            id,
            manifest: manifest.digest,
            tags,
            cache_hits: shared.hits.load(Ordering::SeqCst),
            executed: shared.executed.load(Ordering::SeqCst),
        })
    }

    fn stage_thread(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        deps: &BTreeSet<usize>,
        off: usize,
    ) -> Result<State, BuildError> {
        // Wait for the stages this one needs.
        {
            let mut res = ctx.shared.results.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if deps.iter().all(|d| res.contains_key(d)) {
                    break;
                }
                res = ctx.shared.cv.wait(res).unwrap_or_else(|p| p.into_inner());
            }
            for d in deps {
                if let Some(Err(m)) = res.get(d) {
                    return Err(BuildError::Invalid(format!("stage {d} failed: {m}")));
                }
            }
        }
        self.run_stage(ctx, idx, off)
    }

    fn stage_result(&self, ctx: &Ctx<'_>, idx: usize) -> Option<Arc<State>> {
        ctx.shared
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&idx)
            .and_then(|r| r.as_ref().ok().cloned())
    }

    fn base_state(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        stage: &Stage,
    ) -> Result<(State, Vec<String>), BuildError> {
        let base = stage
            .expand_base(&ctx.globals.to_vec(), ctx.df.escape)
            .map_err(parse_err)?;
        if let Some(p) = stage
            .expand_platform(&ctx.globals.to_vec(), ctx.df.escape)
            .map_err(parse_err)?
        {
            let host = self.images.platform();
            match Platform::parse(&p) {
                Some(want) if want.matches(host) || host.matches(&want) => {}
                _ => {
                    return Err(BuildError::Unsupported(format!(
                        "FROM --platform={p}: only the host's platform {}/{} is supported",
                        host.os, host.architecture
                    )))
                }
            }
        }
        if let Some((i, _)) = ctx.df.stage(&base).filter(|(i, _)| *i < idx) {
            let st = self
                .stage_result(ctx, i)
                .ok_or_else(|| BuildError::Invalid(format!("stage {base} has no result")))?;
            let mut s = (*st).clone();
            s.args.clear();
            s.cmd_set = false;
            return Ok((s, Vec::new()));
        }
        let host = self.images.platform();
        if base == "scratch" {
            let config = ImageConfig {
                architecture: host.architecture.clone(),
                os: host.os.clone(),
                variant: host.variant.clone(),
                config: Some(RunConfig {
                    env: Some(vec![DEFAULT_PATH.to_owned()]),
                    ..Default::default()
                }),
                rootfs: berth_image::spec::RootFs {
                    kind: "layers".into(),
                    diff_ids: Vec::new(),
                },
                ..Default::default()
            };
            return Ok((
                State {
                    chain: None,
                    layers: Vec::new(),
                    config,
                    key: sha(&["scratch"]),
                    args: Vec::new(),
                    cmd_set: false,
                },
                Vec::new(),
            ));
        }
        let img = self.resolver.resolve(self.images, &base, ctx.opts.pull)?;
        self.images.unpack(&img.id.to_string())?;
        let mut config = img.config.clone();
        let triggers = config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        if config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .is_none()
        {
            config.config.get_or_insert_with(RunConfig::default).env =
                Some(vec![DEFAULT_PATH.to_owned()]);
        }
        Ok((
            State {
                chain: img.top_chain_id(),
                layers: img.manifest.layers.clone(),
                config,
                key: sha(&["image", &img.id.to_string()]),
                args: Vec::new(),
                cmd_set: false,
            },
            triggers,
        ))
    }

    fn run_stage(&self, ctx: &Ctx<'_>, idx: usize, off: usize) -> Result<State, BuildError> {
        let stage = &ctx.df.stages[idx];
        let t0 = Instant::now();
        (ctx.progress)(&Event::Step {
            step: off + 1,
            total: ctx.total,
            stage: idx,
            instruction: stage.original.trim().to_owned(),
        });
        let (mut st, triggers) = self.base_state(ctx, idx, stage)?;
        (ctx.progress)(&Event::StepDone {
            step: off + 1,
            id: st.key[..12].to_owned(),
            duration: t0.elapsed(),
        });
        // ONBUILD triggers of the base run first.
        if !triggers.is_empty() {
            let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
            let tdf = berth_dockerfile::parse(&text)
                .map_err(|e| BuildError::Parse(format!("ONBUILD trigger: {e}")))?;
            let n = tdf.stages[0].instructions.len();
            (ctx.progress)(&Event::Output {
                step: off + 1,
                line: format!(
                    "# Executing {n} build trigger{}\n",
                    if n == 1 { "" } else { "s" }
                ),
            });
            for step in &tdf.stages[0].instructions {
                self.step(
                    ctx,
                    idx,
                    off + 1,
                    &mut st,
                    &step.instruction,
                    &step.original,
                )?;
            }
        }
        for (n, step) in stage.instructions.iter().enumerate() {
            if ctx.shared.cancel.load(Ordering::SeqCst) {
                return Err(BuildError::Invalid(
                    "build cancelled: another stage failed".into(),
                ));
            }
            let num = off + 2 + n;
            let t = Instant::now();
            (ctx.progress)(&Event::Step {
                step: num,
                total: ctx.total,
                stage: idx,
                instruction: step.original.trim().to_owned(),
            });
            self.step(ctx, idx, num, &mut st, &step.instruction, &step.original)?;
            (ctx.progress)(&Event::StepDone {
                step: num,
                id: st.key[..12].to_owned(),
                duration: t.elapsed(),
            });
        }
        Ok(st)
    }

    /// One instruction.
    fn step(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        num: usize,
        st: &mut State,
        ins: &Instruction,
        original: &str,
    ) -> Result<(), BuildError> {
        let esc = ctx.df.escape;
        let vars = st.vars();
        let expanded = match ins {
            Instruction::Arg(_) | Instruction::Run(_) => ins.clone(),
            _ => ins
                .expand(&vars, esc)
                .map_err(|e| BuildError::Parse(format!("{original}: {e}")))?,
        };
        // Config-only steps.
        let config_change: Option<String> = match &expanded {
            Instruction::Arg(args) => {
                let mut shown = Vec::new();
                for a in args {
                    let v = berth_dockerfile::resolve_arg(
                        a,
                        ctx.build_args,
                        &ctx.globals.to_vec(),
                        &vars,
                        esc,
                    )
                    .map_err(|e| BuildError::Parse(format!("{original}: {e}")))?;
                    match v {
                        Some(v) => {
                            shown.push(format!("{}={}", a.name, v));
                            st.args.push((a.name.clone(), v));
                        }
                        None => shown.push(a.name.clone()),
                    }
                }
                Some(nop(format!("ARG {}", shown.join(" "))))
            }
            Instruction::Env(kvs) => {
                for kv in kvs {
                    st.set_env(&kv.key, &kv.value);
                }
                let s: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                Some(nop(format!("ENV {}", s.join(" "))))
            }
            Instruction::Label(kvs) => {
                let labels = st.run().labels.get_or_insert_with(BTreeMap::new);
                for kv in kvs {
                    labels.insert(kv.key.clone(), kv.value.clone());
                }
                let s: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                Some(nop(format!("LABEL {}", s.join(" "))))
            }
            Instruction::Expose(ports) => {
                let ep = st.run().exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports {
                    ep.insert(p.clone(), Default::default());
                }
                // Docker's history shows the words as written (after substitution), sorted
                let mut raw: Vec<String> = match ins {
                    Instruction::Expose(words) => words
                        .iter()
                        .flat_map(|w| {
                            berth_dockerfile::expand_words(w, &vars, esc).unwrap_or_default()
                        })
                        .collect(),
                    _ => ports.clone(),
                };
                raw.sort();
                Some(nop(format!("EXPOSE {}", raw.join(" "))))
            }
            Instruction::Volume(v) => {
                let vols = st.run().volumes.get_or_insert_with(BTreeMap::new);
                for p in v {
                    vols.insert(p.clone(), Default::default());
                }
                Some(nop(format!("VOLUME [{}]", v.join(" "))))
            }
            Instruction::User(u) => {
                st.run().user = Some(u.clone());
                Some(nop(format!("USER {u}")))
            }
            Instruction::Workdir(w) => {
                let cur = st.workdir();
                let p = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{}", cur.trim_end_matches('/'), w)
                };
                let p = berth_dockerfile::clean_path(&p);
                st.run().working_dir = Some(p.clone());
                Some(format!("/bin/sh -c #(nop) WORKDIR {p}"))
            }
            Instruction::Cmd(c) => {
                let shell = st.shell();
                let args = c.as_ref().map(|c| c.to_args(&shell));
                st.run().cmd = args.clone();
                st.cmd_set = true;
                Some(nop(format!(
                    "CMD {}",
                    quote_args(&args.unwrap_or_default())
                )))
            }
            Instruction::Entrypoint(e) => {
                let shell = st.shell();
                let args = e.as_ref().map(|c| c.to_args(&shell));
                st.run().entrypoint = args.clone();
                if !st.cmd_set {
                    st.run().cmd = None;
                }
                Some(nop(format!(
                    "ENTRYPOINT {}",
                    quote_args(&args.unwrap_or_default())
                )))
            }
            Instruction::Shell(s) => {
                st.run().shell = Some(s.clone());
                Some(nop(format!("SHELL {}", quote_args(s))))
            }
            Instruction::Stopsignal(s) => {
                st.run().stop_signal = Some(s.clone());
                Some(nop(format!("STOPSIGNAL {s}")))
            }
            Instruction::Maintainer(m) => {
                st.config.author = Some(m.clone());
                Some(nop(format!("MAINTAINER {m}")))
            }
            Instruction::Onbuild(o) => {
                st.run()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                Some(nop(format!("ONBUILD {}", o.expression)))
            }
            Instruction::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => berth_image::spec::HealthConfig {
                        test: Some(h.test()),
                        ..Default::default()
                    },
                    Healthcheck::Check {
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                        ..
                    } => {
                        let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
                        berth_image::spec::HealthConfig {
                            test: Some(h.test()),
                            interval: ns(interval),
                            timeout: ns(timeout),
                            start_period: ns(start_period),
                            start_interval: ns(start_interval),
                            retries: retries.map(i64::from),
                        }
                    }
                };
                let t = quote_args(&h.test());
                st.run().healthcheck = Some(hc);
                Some(nop(format!("HEALTHCHECK &{{{t}}}")))
            }
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => None,
        };
        if let (Some(created_by), Instruction::Workdir(_)) = (&config_change, &expanded) {
            let dir = st.workdir();
            return self.workdir_step(ctx, num, st, &dir, &expanded, created_by.clone());
        }
        if let Some(created_by) = config_change {
            let key = sha(&[&st.key, &format!("{expanded:?}")]);
            let created = self.cached_created(&key, ctx)?;
            st.key = key;
            st.history(&created, created_by, true);
            return Ok(());
        }
        match &expanded {
            Instruction::Run(r) => self.run_step(ctx, idx, num, st, r, &vars),
            Instruction::Copy(c) => {
                let srcs = c.sources.clone();
                let co = CopyOpts {
                    parents: c.parents,
                    exclude: c.exclude.clone(),
                    ..Default::default()
                };
                self.copy_step(
                    ctx,
                    idx,
                    num,
                    st,
                    "COPY",
                    &srcs,
                    &c.dest,
                    c.from.as_deref(),
                    c.chown.as_deref(),
                    c.chmod.as_deref(),
                    co,
                    original,
                )
            }
            Instruction::Add(a) => {
                for s in &a.sources {
                    if let Source::Path(p) = s {
                        if p.starts_with("http://")
                            || p.starts_with("https://")
                            || p.starts_with("git@")
                        {
                            return Err(BuildError::Unsupported(format!(
                                "ADD {p}: remote sources are not supported by this builder yet"
                            )));
                        }
                    }
                }
                let co = CopyOpts {
                    exclude: a.exclude.clone(),
                    unpack_archives: a.unpack != Some(false),
                    ..Default::default()
                };
                self.copy_step(
                    ctx,
                    idx,
                    num,
                    st,
                    "ADD",
                    &a.sources,
                    &a.dest,
                    None,
                    a.chown.as_deref(),
                    a.chmod.as_deref(),
                    co,
                    original,
                )
            }
            _ => Ok(()),
        }
    }

    /// WORKDIR: a config change, plus a layer creating the directory when it is missing.
    fn workdir_step(
        &self,
        ctx: &Ctx<'_>,
        num: usize,
        st: &mut State,
        dir: &str,
        expanded: &Instruction,
        created_by: String,
    ) -> Result<(), BuildError> {
        let key = sha(&[&st.key, &format!("{expanded:?}")]);
        if !ctx.opts.no_cache {
            if let Some(e) = self.cache.get(&key)? {
                if e.layer.is_none() {
                    st.key = key;
                    st.history(&e.created, created_by, true);
                    return Ok(());
                }
            }
        }
        if let Some((l, created)) = self.lookup(ctx, &key)? {
            ctx.shared.hits.fetch_add(1, Ordering::SeqCst);
            (ctx.progress)(&Event::CacheHit { step: num });
            self.apply_layer_result(st, key, &l, &created, created_by);
            return Ok(());
        }
        let (active, mounts) = self.prepare(ctx, st)?;
        let mp = self.work.join(format!("mnt-{}", rand_suffix()));
        std::fs::create_dir_all(&mp)
            .map_err(|e| BuildError::io(format!("create {}", mp.display()), e))?;
        let mut mg = MountGuard {
            dir: mp.clone(),
            mounted: false,
        };
        berth_snapshot::mount_all(&mounts, &mp)
            .map_err(|e| BuildError::Snapshot(format!("mount rootfs: {e}")))?;
        mg.mounted = true;
        let root = fsutil::open_root(&mp)?;
        if fsutil::is_dir_in(&root, dir) {
            drop(root);
            drop(mg);
            drop(active);
            let created = now_rfc3339();
            self.cache.put(
                self.images,
                &key,
                &Entry {
                    layer: None,
                    created: created.clone(),
                },
            )?;
            st.key = key;
            st.history(&created, created_by, true);
            return Ok(());
        }
        fsutil::mkdir_all_fd(&root, dir)?;
        drop(root);
        drop(mg);
        let (l, created) = self.finish_layer(ctx, st, active, &mounts, &key)?;
        ctx.shared.executed.fetch_add(1, Ordering::SeqCst);
        self.apply_layer_result(st, key, &l, &created, created_by);
        Ok(())
    }

    /// The creation time recorded for a config-only step (stable across cached rebuilds).
    fn cached_created(&self, key: &str, ctx: &Ctx<'_>) -> Result<String, BuildError> {
        if !ctx.opts.no_cache {
            if let Some(e) = self.cache.get(key)? {
                return Ok(e.created);
            }
        }
        let created = now_rfc3339();
        self.cache.put(
            self.images,
            key,
            &Entry {
                layer: None,
                created: created.clone(),
            },
        )?;
        Ok(created)
    }

    /// A cache hit for `key` whose blob and snapshot still exist.
    fn lookup(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
    ) -> Result<Option<(CachedLayer, String)>, BuildError> {
        if ctx.opts.no_cache {
            return Ok(None);
        }
        let Some(e) = self.cache.get(key)? else {
            return Ok(None);
        };
        let Some(l) = e.layer else { return Ok(None) };
        let snap_ok = self
            .images
            .snapshotter()
            .stat(&l.chain_id.to_string())
            .is_ok();
        let blob_ok = self.images.content().info(&l.blob).is_ok();
        if snap_ok && blob_ok {
            Ok(Some((l, e.created)))
        } else {
            self.cache.forget(self.images, key)?;
            Ok(None)
        }
    }

    fn apply_layer_result(
        &self,
        st: &mut State,
        key: String,
        l: &CachedLayer,
        created: &str,
        created_by: String,
    ) {
        st.chain = Some(l.chain_id.clone());
        st.layers
            .push(Descriptor::new(&l.media_type, l.blob.clone(), l.size));
        st.config.rootfs.diff_ids.push(l.diff_id.clone());
        st.key = key;
        st.history(created, created_by, false);
    }

    fn prepare(
        &self,
        ctx: &Ctx<'_>,
        st: &State,
    ) -> Result<(ActiveGuard<'_>, Vec<Mount>), BuildError> {
        let snaps = self.images.snapshotter();
        if snaps.name() != "overlay" {
            return Err(BuildError::Unsupported(format!(
                "building needs the overlay snapshotter (this data root uses {})",
                snaps.name()
            )));
        }
        let key = format!("berth-build-{}", rand_suffix());
        ctx.lease.add(Resource::Snapshot(key.clone()))?;
        let parent = st.chain.as_ref().map(|c| c.to_string());
        let mounts = snaps
            .prepare(&key, parent.as_deref())
            .map_err(|e| BuildError::Snapshot(format!("prepare snapshot on {parent:?}: {e}")))?;
        Ok((
            ActiveGuard {
                images: self.images,
                key,
                armed: true,
            },
            mounts,
        ))
    }

    /// Diff the active snapshot into a blob, commit it under its chain id, record the cache.
    fn finish_layer(
        &self,
        ctx: &Ctx<'_>,
        st: &State,
        mut active: ActiveGuard<'_>,
        mounts: &[Mount],
        key: &str,
    ) -> Result<(CachedLayer, String), BuildError> {
        let snaps = self.images.snapshotter();
        let upper = snaps
            .upper_dir(&active.key)
            .map_err(|e| BuildError::Snapshot(format!("snapshot {}: {e}", active.key)))?;
        let lowers = lowers_of(mounts);
        let lower_refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
        let reference = format!("berth-build-{}", rand_suffix());
        ctx.lease.add(Resource::Ingest(reference.clone()))?;
        let mut w = self
            .images
            .content()
            .writer(&reference, None)
            .map_err(|e| BuildError::Store(format!("open ingest {reference}: {e}")))?;
        let rep = diff(&lower_refs, &upper, &mut w, &DiffOptions::default())?;
        ctx.lease
            .add(Resource::Content(rep.compressed_digest.clone()))?;
        commit_blob(w, &rep.compressed_digest, rep.size)?;
        let chain = chain_id_step(st.chain.as_ref(), &rep.diff_id);
        ctx.lease.add(Resource::Snapshot(chain.to_string()))?;
        match snaps.commit(&chain.to_string(), &active.key) {
            Ok(()) => active.armed = false,
            Err(e) if e.kind() == berth_core::ErrorKind::Conflict => {} // same layer exists: drop ours
            Err(e) => {
                return Err(BuildError::Snapshot(format!(
                    "commit snapshot {chain}: {e}"
                )))
            }
        }
        drop(active);
        let layer = CachedLayer {
            diff_id: rep.diff_id,
            blob: rep.compressed_digest,
            size: rep.size,
            media_type: media::OCI_LAYER.into(),
            chain_id: chain,
        };
        let created = now_rfc3339();
        self.cache.put(
            self.images,
            key,
            &Entry {
                layer: Some(layer.clone()),
                created: created.clone(),
            },
        )?;
        Ok((layer, created))
    }

    /// A stage's (or image's) rootfs mounted read-only, for COPY --from and RUN --mount from=.
    fn mount_source(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        from: &str,
    ) -> Result<(SourceMount<'_>, Option<Digest>), BuildError> {
        let chain = match ctx.df.stage(from).filter(|(i, _)| *i < idx) {
            Some((i, _)) => self
                .stage_result(ctx, i)
                .ok_or_else(|| BuildError::Invalid(format!("stage {from} has no result")))?
                .chain
                .clone(),
            None => {
                let img = self.resolver.resolve(self.images, from, ctx.opts.pull)?;
                self.images.unpack(&img.id.to_string())?;
                img.top_chain_id()
            }
        };
        let dir = self.work.join(format!("src-{}", rand_suffix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
        let mut g = MountGuard {
            dir: dir.clone(),
            mounted: false,
        };
        let Some(c) = &chain else {
            return Ok((
                SourceMount {
                    mount: g,
                    _view: None,
                },
                None,
            ));
        };
        let key = format!("berth-build-view-{}", rand_suffix());
        ctx.lease.add(Resource::Snapshot(key.clone()))?;
        let mounts = self
            .images
            .snapshotter()
            .view(&key, Some(&c.to_string()))
            .map_err(|e| BuildError::Snapshot(format!("view {c}: {e}")))?;
        let view = ActiveGuard {
            images: self.images,
            key,
            armed: true,
        };
        berth_snapshot::mount_all(&mounts, &dir)
            .map_err(|e| BuildError::Snapshot(format!("mount {from}: {e}")))?;
        g.mounted = true;
        Ok((
            SourceMount {
                mount: g,
                _view: Some(view),
            },
            chain,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        num: usize,
        st: &mut State,
        cmd: &str,
        sources: &[Source],
        dest: &str,
        from: Option<&str>,
        chown: Option<&str>,
        chmod: Option<&str>,
        mut co: CopyOpts,
        original: &str,
    ) -> Result<(), BuildError> {
        let (active, mounts) = self.prepare(ctx, st)?;
        let mp = self.work.join(format!("mnt-{}", rand_suffix()));
        std::fs::create_dir_all(&mp)
            .map_err(|e| BuildError::io(format!("create {}", mp.display()), e))?;
        let mut mg = MountGuard {
            dir: mp.clone(),
            mounted: false,
        };
        berth_snapshot::mount_all(&mounts, &mp)
            .map_err(|e| BuildError::Snapshot(format!("mount rootfs: {e}")))?;
        mg.mounted = true;
        if let Some(c) = chown {
            co.owner = Some(fsutil::resolve_user(Some(&mp), c)?);
        }
        if let Some(m) = chmod {
            co.chmod =
                Some(u32::from_str_radix(m, 8).map_err(|_| {
                    BuildError::Invalid(format!("{cmd} --chmod={m}: invalid mode"))
                })?);
        }
        let dest_abs = if dest.starts_with('/') {
            dest.to_owned()
        } else {
            let w = st.workdir();
            let mut d = format!("{}/{}", w.trim_end_matches('/'), dest);
            if dest.ends_with('/') && !d.ends_with('/') {
                d.push('/');
            }
            d
        };
        let srcs: Vec<Src> = sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Src::Path(p.clone()),
                Source::Heredoc(h) => Src::Inline(h.name.clone(), h.content.clone().into_bytes()),
            })
            .collect();
        let stage_tree;
        let (src_guard, src_chain, tree) = match from {
            Some(f) => {
                let (g, chain) = self.mount_source(ctx, idx, f)?;
                stage_tree = SourceTree::walk(&g.mount.dir, &DockerIgnore::default(), false)?;
                (Some(g), chain, &stage_tree)
            }
            None => (None, None, ctx.context),
        };
        let plan = copy::plan(Some(tree), &srcs, &dest_abs, &mp, &co, cmd)?;
        let content = plan.cache_key(Some(&self.cache))?;
        let key = sha(&[
            &st.key,
            cmd,
            &format!("{:?}", src_chain.map(|c| c.to_string())),
            &dest_abs,
            &content,
            &st.workdir(),
        ]);
        let kind = plan.source_kind();
        let created_by = format!("/bin/sh -c #(nop) {cmd} {kind}:{content} in {dest_abs} ");
        let _ = original;
        if let Some((l, created)) = self.lookup(ctx, &key)? {
            drop(mg);
            drop(active);
            drop(src_guard);
            ctx.shared.hits.fetch_add(1, Ordering::SeqCst);
            (ctx.progress)(&Event::CacheHit { step: num });
            self.apply_layer_result(st, key, &l, &created, created_by);
            return Ok(());
        }
        plan.apply(&mp)?;
        drop(mg);
        drop(src_guard);
        let (l, created) = self.finish_layer(ctx, st, active, &mounts, &key)?;
        ctx.shared.executed.fetch_add(1, Ordering::SeqCst);
        self.apply_layer_result(st, key, &l, &created, created_by);
        Ok(())
    }

    fn run_step(
        &self,
        ctx: &Ctx<'_>,
        idx: usize,
        num: usize,
        st: &mut State,
        run: &berth_dockerfile::Run,
        vars: &[(String, String)],
    ) -> Result<(), BuildError> {
        let esc = ctx.df.escape;
        if run.security == Some(berth_dockerfile::Security::Insecure) {
            return Err(BuildError::Unsupported(
                "RUN --security=insecure needs the security.insecure entitlement, which this builder does not grant".into(),
            ));
        }
        let shell = st.shell();
        let mut extra_files: Vec<(String, Vec<u8>)> = Vec::new();
        let args = match run.script() {
            RunScript::Command(c) => match &c {
                CommandLine::Shell(_) => {
                    // substitution happens in the shell, as Docker does
                    c.to_args(&shell)
                }
                CommandLine::Exec(_) => c.to_args(&shell),
            },
            RunScript::Executable(body) => {
                let path = format!("/dev/pipes/berth-heredoc-{num}");
                extra_files.push((path.clone(), body.into_bytes()));
                vec![path]
            }
        };
        let mut env = st.env();
        // Build args in scope reach RUN's environment (ENV wins); so do the proxy args.
        let env_keys: BTreeSet<String> = env
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, _)| k.to_owned()))
            .collect();
        let mut arg_env: Vec<String> = Vec::new();
        for (k, v) in &st.args {
            if !env_keys.contains(k) {
                arg_env.push(format!("{k}={v}"));
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = ctx.opts.build_args.get(*p) {
                if !st.args.iter().any(|(k, _)| k == p) {
                    arg_env.push(format!("{p}={v}"));
                }
            }
        }
        env.extend(arg_env.iter().cloned());
        let specs = run
            .mount_specs(&vars.to_vec(), esc)
            .map_err(|e| BuildError::Parse(format!("RUN --mount: {e}")))?;
        let network = match run.network {
            Some(berth_dockerfile::NetworkMode::Host) => StepNetwork::Host,
            Some(berth_dockerfile::NetworkMode::None) => StepNetwork::None,
            _ => ctx.opts.network,
        };
        let user = st
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty());
        let workdir = st.workdir();
        let mut secret_ids: Vec<String> = Vec::new();
        for s in &specs {
            if s.kind == MountType::Secret {
                secret_ids.push(s.id.clone().unwrap_or_default());
            }
        }
        let key = sha(&[
            &st.key,
            "RUN",
            &format!("{:?}", run.command),
            &format!("{:?}", run.heredocs),
            &format!("{:?}", run.mounts),
            &format!("{:?}", network),
            &env.join("\0"),
            &secret_ids.join(","),
            &format!("{user:?}"),
            &workdir,
        ]);
        let created_by = {
            let cmdline = args.join(" ");
            if arg_env.is_empty() {
                format!("RUN {cmdline}")
            } else {
                format!("RUN |{} {} {cmdline}", arg_env.len(), arg_env.join(" "))
            }
        };
        if let Some((l, created)) = self.lookup(ctx, &key)? {
            ctx.shared.hits.fetch_add(1, Ordering::SeqCst);
            (ctx.progress)(&Event::CacheHit { step: num });
            self.apply_layer_result(st, key, &l, &created, created_by);
            return Ok(());
        }
        let (active, mounts) = self.prepare(ctx, st)?;
        // Which mount destinations exist before the run (stubs created for the others are
        // removed from the layer afterwards).
        let mut step_mounts: Vec<StepMount> = Vec::new();
        let mut guards: Vec<SourceMount<'_>> = Vec::new();
        let mut locks: Vec<std::fs::File> = Vec::new();
        let mut temp_files: Vec<PathBuf> = Vec::new();
        let tmp_dir = self.work.join(format!("run-{}", rand_suffix()));
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| BuildError::io(format!("create {}", tmp_dir.display()), e))?;
        let _tmp_clean = DirCleanup(tmp_dir.clone());
        for (path, data) in &extra_files {
            let f = tmp_dir.join(format!("heredoc-{}", temp_files.len()));
            std::fs::write(&f, data)
                .map_err(|e| BuildError::io(format!("write {}", f.display()), e))?;
            let _ =
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755));
            temp_files.push(f.clone());
            step_mounts.push(StepMount {
                destination: path.clone(),
                kind: "bind".into(),
                source: f,
                options: vec!["rbind".into(), "ro".into()],
            });
        }
        let mut secret_env: Vec<String> = Vec::new();
        for s in &specs {
            let target = s.target.clone().unwrap_or_default();
            let target = if target.starts_with('/') {
                target
            } else {
                format!("{}/{}", workdir.trim_end_matches('/'), target)
            };
            let ro = if s.readonly { "ro" } else { "rw" };
            match s.kind {
                MountType::Tmpfs => {
                    let mut o = vec!["nosuid".to_string(), "nodev".into()];
                    if let Some(sz) = s.size {
                        o.push(format!("size={sz}"));
                    }
                    step_mounts.push(StepMount {
                        destination: target,
                        kind: "tmpfs".into(),
                        source: "tmpfs".into(),
                        options: o,
                    });
                }
                MountType::Secret => {
                    let id = s.id.clone().unwrap_or_default();
                    match ctx.opts.secrets.get(&id) {
                        Some(src) => {
                            let dst = if s.target.is_some() {
                                target
                            } else {
                                format!("/run/secrets/{id}")
                            };
                            step_mounts.push(StepMount {
                                destination: dst,
                                kind: "bind".into(),
                                source: src.clone(),
                                options: vec!["rbind".into(), "ro".into()],
                            });
                            if let Some(var) = &s.env {
                                // the value reaches the process only, never the cache key
                                let v = std::fs::read(src)
                                    .map_err(|e| BuildError::io(format!("read secret {id}"), e))?;
                                secret_env.push(format!(
                                    "{var}={}",
                                    String::from_utf8_lossy(&v).trim_end_matches('\n')
                                ));
                            }
                        }
                        None if s.required => {
                            return Err(BuildError::NotFound(format!(
                                "secret {id} not found: it is required by RUN --mount=type=secret"
                            )))
                        }
                        None => {}
                    }
                }
                MountType::Ssh => {
                    (ctx.progress)(&Event::Output {
                        step: num,
                        line: "warning: RUN --mount=type=ssh is not supported; ignored\n".into(),
                    });
                }
                MountType::Cache => {
                    let id = s.id.clone().unwrap_or_else(|| target.clone());
                    let base = self
                        .cache_mounts_dir()
                        .join(hex::encode(Sha256::digest(id.as_bytes())));
                    let sharing = s.sharing.unwrap_or(Sharing::Shared);
                    let dir = {
                        std::fs::create_dir_all(&base)
                            .map_err(|e| BuildError::io(format!("create {}", base.display()), e))?;
                        if sharing == Sharing::Shared {
                            base
                        } else {
                            let lf = std::fs::File::options()
                                .create(true)
                                .truncate(false)
                                .write(true)
                                .open(base.with_extension("lock"))
                                .map_err(|e| BuildError::io("open cache mount lock", e))?;
                            // locked: wait for the other writer; private: use a fresh
                            // directory while another writer holds the shared one
                            let op = if sharing == Sharing::Locked {
                                rustix::fs::FlockOperation::LockExclusive
                            } else {
                                rustix::fs::FlockOperation::NonBlockingLockExclusive
                            };
                            match rustix::fs::flock(&lf, op) {
                                Ok(()) => {
                                    locks.push(lf);
                                    base
                                }
                                Err(rustix::io::Errno::WOULDBLOCK) => {
                                    let d = tmp_dir.join(format!("cache-{}", step_mounts.len()));
                                    std::fs::create_dir_all(&d).map_err(|e| {
                                        BuildError::io(format!("create {}", d.display()), e)
                                    })?;
                                    d
                                }
                                Err(e) => {
                                    return Err(BuildError::io(
                                        "lock cache mount",
                                        std::io::Error::from_raw_os_error(e.raw_os_error()),
                                    ))
                                }
                            }
                        }
                    };
                    if let (Some(uid), gid) = (s.uid, s.gid) {
                        let _ = rustix::fs::chown(
                            &dir,
                            Some(rustix::fs::Uid::from_raw(uid)),
                            gid.map(rustix::fs::Gid::from_raw),
                        );
                    }
                    if let Some(m) = s.mode {
                        let _ = std::fs::set_permissions(
                            &dir,
                            std::os::unix::fs::PermissionsExt::from_mode(m),
                        );
                    }
                    step_mounts.push(StepMount {
                        destination: target,
                        kind: "bind".into(),
                        source: dir,
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
                MountType::Bind => {
                    let src_rel = s.source.clone().unwrap_or_default();
                    let root = match &s.from {
                        Some(f) => {
                            let (g, _) = self.mount_source(ctx, idx, f)?;
                            let r = g.mount.dir.clone();
                            guards.push(g);
                            r
                        }
                        None => ctx.opts.context.clone(),
                    };
                    // resolve the source inside its root, then bind the resolved fd's path
                    let rfd = fsutil::open_root(&root)?;
                    let fd =
                        fsutil::open_in(&rfd, &src_rel, rustix::fs::OFlags::PATH).map_err(|e| {
                            BuildError::NotFound(format!("RUN --mount source {src_rel}: {e}"))
                        })?;
                    let real = std::fs::read_link(format!(
                        "/proc/self/fd/{}",
                        std::os::fd::AsRawFd::as_raw_fd(&fd)
                    ))
                    .map_err(|e| BuildError::io("resolve bind source", e))?;
                    // a private copy when writable, so the context is never changed
                    let source = if s.readonly {
                        real
                    } else {
                        let d = tmp_dir.join(format!("bind-{}", step_mounts.len()));
                        copy_tree(&real, &d)?;
                        d
                    };
                    step_mounts.push(StepMount {
                        destination: target,
                        kind: "bind".into(),
                        source,
                        options: vec!["rbind".into(), ro.into()],
                    });
                }
            }
        }
        let (uid, gid) = match &user {
            Some(u) => {
                let mp = self.work.join(format!("mnt-{}", rand_suffix()));
                std::fs::create_dir_all(&mp)
                    .map_err(|e| BuildError::io(format!("create {}", mp.display()), e))?;
                let mut g = MountGuard {
                    dir: mp.clone(),
                    mounted: false,
                };
                berth_snapshot::mount_all(&mounts, &mp)
                    .map_err(|e| BuildError::Snapshot(format!("mount rootfs: {e}")))?;
                g.mounted = true;
                fsutil::resolve_user(Some(&mp), u)?
            }
            None => (0, 0),
        };
        // Mount points that do not exist yet: remembered to drop their stubs from the layer.
        let stubs = self.missing_paths(&mounts, &step_mounts)?;
        let req = RunRequest {
            id: format!("{}-{}", self.prefix, rand_suffix()),
            rootfs: mounts.clone(),
            args: args.clone(),
            env: env.into_iter().chain(secret_env).collect(),
            user: (uid, gid),
            additional_gids: Vec::new(),
            workdir,
            network,
            mounts: step_mounts,
        };
        let mut out = |line: &str| {
            (ctx.progress)(&Event::Output {
                step: num,
                line: line.to_owned(),
            })
        };
        (ctx.progress)(&Event::Running {
            step: num,
            container: req.id.clone(),
        });
        let code = self.runner.run(&req, &mut out)?;
        drop(guards);
        drop(locks);
        if code != 0 {
            return Err(BuildError::StepFailed {
                command: args.join(" "),
                code,
            });
        }
        let upper = self
            .images
            .snapshotter()
            .upper_dir(&active.key)
            .map_err(|e| BuildError::Snapshot(format!("snapshot {}: {e}", active.key)))?;
        remove_stubs(&upper, &stubs);
        let (l, created) = self.finish_layer(ctx, st, active, &mounts, &key)?;
        ctx.shared.executed.fetch_add(1, Ordering::SeqCst);
        self.apply_layer_result(st, key, &l, &created, created_by);
        Ok(())
    }

    /// For each extra mount, the destination and its ancestors that do not exist in the rootfs
    /// (deepest first).
    fn missing_paths(
        &self,
        mounts: &[Mount],
        extra: &[StepMount],
    ) -> Result<Vec<String>, BuildError> {
        if extra.is_empty() {
            return Ok(Vec::new());
        }
        let mp = self.work.join(format!("mnt-{}", rand_suffix()));
        std::fs::create_dir_all(&mp)
            .map_err(|e| BuildError::io(format!("create {}", mp.display()), e))?;
        let mut g = MountGuard {
            dir: mp.clone(),
            mounted: false,
        };
        berth_snapshot::mount_all(mounts, &mp)
            .map_err(|e| BuildError::Snapshot(format!("mount rootfs: {e}")))?;
        g.mounted = true;
        let root = fsutil::open_root(&mp)?;
        let mut out = Vec::new();
        for m in extra {
            let clean = berth_dockerfile::clean_path(m.destination.trim_start_matches('/'));
            let comps: Vec<&str> = clean
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            let mut acc = String::new();
            let mut missing = Vec::new();
            for c in comps {
                acc = if acc.is_empty() {
                    c.to_owned()
                } else {
                    format!("{acc}/{c}")
                };
                if fsutil::open_in(
                    &root,
                    &acc,
                    rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW,
                )
                .is_err()
                {
                    missing.push(acc.clone());
                }
            }
            missing.reverse();
            out.extend(missing);
        }
        Ok(out)
    }
}

/// Remove mount-point stubs (empty files or directories the runtime created) from an upper
/// dir, fd-relative; anything the step put there with content stays.
fn remove_stubs(upper: &Path, stubs: &[String]) {
    let Ok(root) = fsutil::open_root(upper) else {
        return;
    };
    for s in stubs {
        let (parent, name) = match s.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => (".", s.as_str()),
        };
        let Ok(dir) = fsutil::open_in(
            &root,
            parent,
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        ) else {
            continue;
        };
        match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory =>
            {
                let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::REMOVEDIR);
            }
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::RegularFile
                    && st.st_size == 0 =>
            {
                let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
            }
            _ => {}
        }
    }
}

struct DirCleanup(PathBuf);

impl Drop for DirCleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy a tree without following symlinks (a writable bind mount's private copy).
fn copy_tree(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let md = std::fs::symlink_metadata(src)
        .map_err(|e| BuildError::io(format!("stat {}", src.display()), e))?;
    if md.is_dir() {
        std::fs::create_dir_all(dst)
            .map_err(|e| BuildError::io(format!("create {}", dst.display()), e))?;
        for e in std::fs::read_dir(src)
            .map_err(|e| BuildError::io(format!("read {}", src.display()), e))?
        {
            let e = e.map_err(|e| BuildError::io(format!("read {}", src.display()), e))?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if md.file_type().is_symlink() {
        let t = std::fs::read_link(src)
            .map_err(|e| BuildError::io(format!("readlink {}", src.display()), e))?;
        std::os::unix::fs::symlink(t, dst)
            .map_err(|e| BuildError::io(format!("symlink {}", dst.display()), e))?;
    } else {
        std::fs::copy(src, dst)
            .map_err(|e| BuildError::io(format!("copy {}", src.display()), e))?;
    }
    Ok(())
}

struct Ctx<'c> {
    lease: &'c Lease<'c>,
    df: &'c Dockerfile,
    opts: &'c BuildOptions,
    build_args: &'c BTreeMap<String, String>,
    globals: &'c [(String, String)],
    context: &'c SourceTree,
    shared: &'c Shared,
    progress: &'c (dyn Fn(&Event) + Sync),
    total: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_dependencies_come_from_from_copy_and_run_mounts() {
        let df = berth_dockerfile::parse(
            "ARG B=base\nFROM busybox AS base\nFROM busybox AS other\nFROM ${B} AS a\n\
             FROM busybox AS b\nCOPY --from=other /x /x\nRUN --mount=type=bind,from=a,target=/a true\n\
             COPY --from=alpine /y /y\nFROM b\n",
        )
        .unwrap();
        let g = df.global_args(&BTreeMap::new()).unwrap();
        assert_eq!(deps(&df, 0, &g), BTreeSet::new());
        assert_eq!(deps(&df, 2, &g), BTreeSet::from([0]));
        assert_eq!(
            deps(&df, 3, &g),
            BTreeSet::from([1, 2]),
            "images are not stages"
        );
        assert_eq!(deps(&df, 4, &g), BTreeSet::from([3]));
    }

    #[test]
    fn history_formats() {
        assert_eq!(quote_args(&["sh".into()]), "[\"sh\"]");
        assert_eq!(
            nop(format!(
                "CMD {}",
                quote_args(&["/bin/sh".into(), "-c".into(), "a b".into()])
            )),
            "/bin/sh -c #(nop)  CMD [\"/bin/sh\" \"-c\" \"a b\"]"
        );
    }

    #[test]
    fn platform_args_name_both_platforms() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        let a: BTreeMap<String, String> = platform_args(&p).into_iter().collect();
        assert_eq!(a["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(a["BUILDARCH"], "arm");
        assert_eq!(a["TARGETVARIANT"], "v7");
    }

    #[test]
    fn lowers_come_from_overlay_options() {
        let m = vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "workdir=/w".into(),
                "upperdir=/u".into(),
                "lowerdir=/l2:/l1".into(),
            ],
        }];
        assert_eq!(
            lowers_of(&m),
            vec![PathBuf::from("/l2"), PathBuf::from("/l1")]
        );
        assert!(lowers_of(&[]).is_empty());
    }
}
