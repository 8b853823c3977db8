//! Garbage collection by reachability.
//!
//! Roots: image records (their targets and ids), leases, holds. Edges: index → manifests,
//! manifest → config + layers, config → snapshots by chain ID (from `rootfs.diff_ids`),
//! snapshot → parent, blob labels `berth.gc.ref.content.*` / `berth.gc.ref.snapshot.*`.
//! Sweep: unreachable snapshots (children first), blobs, and ingests that no lease names and
//! that were idle longer than [`GcOptions::ingest_grace`].
//!
//! Protocol for writers racing GC: a pull or build creates a lease first and adds each blob,
//! ingest and snapshot to it *before* creating it, and deletes the lease only after the image
//! record is written. A collection holds the database's write lock from reading its roots to
//! the end of its sweep, so a lease addition either precedes the collection (and is a root) or
//! waits until it is over (and the object is created after the sweep).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::time::{Duration, SystemTime};

use berth_content::{LocalStore, Store};
use berth_core::Digest;
use berth_snapshot::Snapshotter;
use serde_json::Value;

use crate::db;
use crate::{Db, Error, Resource, Result, GC_REF_CONTENT_PREFIX, GC_REF_SNAPSHOT_PREFIX};

/// OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Manifests, indexes and configs larger than this are not parsed (treated as corrupt).
const MAX_JSON: u64 = 16 << 20;

/// Tuning of a collection.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Ingests no lease names are removed once idle this long (so an interrupted pull can
    /// still resume for a while).
    pub ingest_grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            ingest_grace: Duration::from_secs(3600),
        }
    }
}

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Their total size.
    pub bytes_freed: u64,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Stale ingests removed.
    pub ingests_removed: usize,
    /// Expired leases deleted.
    pub leases_expired: usize,
}

/// The chain IDs of a layer stack (OCI image spec): `chain[0] = diff_ids[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff_ids[n])`. Committed layer snapshots are named by
/// these (their `Display` form, `sha256:...`).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Collect with default options. Run at start-up and on demand.
pub fn gc(content: &LocalStore, snapshots: &dyn Snapshotter, db: &Db) -> Result<GcReport> {
    gc_with(content, snapshots, db, &GcOptions::default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reached as an index or manifest (or of unknown type: parsed if it looks like one).
    Manifest,
    /// Reached as an image config: parsed for diff_ids.
    Config,
    /// A layer or other opaque blob.
    Leaf,
    /// Named by a lease or hold without a type: parsed when it is a manifest or index.
    Unknown,
}

fn role_of(media_type: Option<&str>) -> Role {
    match media_type {
        Some(MT_OCI_INDEX | MT_OCI_MANIFEST | MT_DOCKER_LIST | MT_DOCKER_MANIFEST) => {
            Role::Manifest
        }
        Some(MT_OCI_CONFIG | MT_DOCKER_CONFIG) => Role::Config,
        Some(_) => Role::Leaf,
        None => Role::Unknown,
    }
}

struct Marker<'a> {
    content: &'a LocalStore,
    blobs: HashSet<Digest>,
    snapshots: HashSet<String>,
    queue: VecDeque<(Digest, Role)>,
    labels: HashMap<String, Vec<(String, String)>>,
}

impl Marker<'_> {
    fn push(&mut self, d: Digest, role: Role) {
        if !self.blobs.contains(&d) {
            self.queue.push_back((d, role));
        }
    }

    fn resource(&mut self, r: &Resource) {
        match r {
            Resource::Content(d) => self.push(d.clone(), Role::Unknown),
            Resource::Image(d) => self.push(d.clone(), Role::Config),
            Resource::Snapshot(k) => {
                self.snapshots.insert(k.clone());
            }
            Resource::Ingest(_) => {}
        }
    }

    fn read_json(&self, d: &Digest) -> Result<Option<Value>> {
        let mut blob = match self.content.reader(d) {
            Ok(b) => b,
            Err(berth_content::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if blob.size() > MAX_JSON {
            return Err(Error::Corrupt(format!(
                "gc: blob {d} is too large ({} bytes) for a manifest or config",
                blob.size()
            )));
        }
        let mut buf = Vec::with_capacity(blob.size() as usize);
        blob.read_to_end(&mut buf).map_err(|e| Error::Io {
            context: format!("gc: read blob {d}"),
            source: e,
        })?;
        match serde_json::from_slice(&buf) {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(Error::Corrupt(format!("gc: parse blob {d}: {e}"))),
        }
    }

    fn run(&mut self) -> Result<()> {
        while let Some((d, role)) = self.queue.pop_front() {
            if !self.blobs.insert(d.clone()) {
                continue;
            }
            if let Some(labels) = self.labels.get(&d.to_string()).cloned() {
                for (k, v) in labels {
                    if k.starts_with(GC_REF_SNAPSHOT_PREFIX) {
                        self.snapshots.insert(v);
                    } else if let Ok(t) = v.parse::<Digest>() {
                        self.push(t, Role::Unknown);
                    }
                }
            }
            match role {
                Role::Leaf => {}
                Role::Manifest => {
                    if let Some(v) = self.read_json(&d)? {
                        self.manifest_edges(&d, &v)?;
                    }
                }
                Role::Config => {
                    if let Some(v) = self.read_json(&d)? {
                        self.config_edges(&d, &v)?;
                    }
                }
                Role::Unknown => {
                    // Untyped: follow it only if it parses as a manifest or index.
                    if let Ok(Some(v)) = self.read_json(&d) {
                        if v.get("manifests").is_some() || v.get("layers").is_some() {
                            self.manifest_edges(&d, &v)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn descriptor(&self, owner: &Digest, v: &Value) -> Result<(Digest, Option<String>)> {
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Corrupt(format!("gc: blob {owner}: descriptor without digest")))?
            .parse::<Digest>()
            .map_err(|e| Error::Corrupt(format!("gc: blob {owner}: {e}")))?;
        let mt = v
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((digest, mt))
    }

    fn manifest_edges(&mut self, d: &Digest, v: &Value) -> Result<()> {
        if let Some(list) = v.get("manifests") {
            let list = list
                .as_array()
                .ok_or_else(|| Error::Corrupt(format!("gc: index {d}: manifests is not a list")))?;
            for m in list {
                let (cd, mt) = self.descriptor(d, m)?;
                let role = match role_of(mt.as_deref()) {
                    Role::Unknown => Role::Manifest,
                    r => r,
                };
                self.push(cd, role);
            }
        }
        if let Some(c) = v.get("config") {
            let (cd, mt) = self.descriptor(d, c)?;
            let role = match role_of(mt.as_deref()) {
                Role::Manifest | Role::Unknown => Role::Config,
                r => r,
            };
            self.push(cd, role);
        }
        if let Some(layers) = v.get("layers") {
            let layers = layers
                .as_array()
                .ok_or_else(|| Error::Corrupt(format!("gc: manifest {d}: layers is not a list")))?;
            for l in layers {
                let (ld, _) = self.descriptor(d, l)?;
                self.push(ld, Role::Leaf);
            }
        }
        // OCI 1.1 artifacts may name a subject; it stays referenced by whoever references it.
        Ok(())
    }

    fn config_edges(&mut self, d: &Digest, v: &Value) -> Result<()> {
        let Some(ids) = v.pointer("/rootfs/diff_ids") else {
            return Ok(());
        };
        let ids = ids
            .as_array()
            .ok_or_else(|| Error::Corrupt(format!("gc: config {d}: diff_ids is not a list")))?;
        let diff_ids = ids
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| Error::Corrupt(format!("gc: config {d}: diff_id not a string")))?
                    .parse::<Digest>()
                    .map_err(|e| Error::Corrupt(format!("gc: config {d}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        for c in chain_ids(&diff_ids) {
            self.snapshots.insert(c.to_string());
        }
        Ok(())
    }
}

/// Collect with `opts`. Holds the metadata database's write lock throughout (other writers
/// of this database wait; readers do not).
pub fn gc_with(
    content: &LocalStore,
    snapshots: &dyn Snapshotter,
    db: &Db,
    opts: &GcOptions,
) -> Result<GcReport> {
    db.tx("garbage collection", |tx| {
        collect(content, snapshots, tx, opts)
    })
}

fn collect(
    content: &LocalStore,
    snapshots: &dyn Snapshotter,
    tx: &rusqlite::Transaction<'_>,
    opts: &GcOptions,
) -> Result<GcReport> {
    let mut report = GcReport {
        leases_expired: db::expire_leases_tx(tx)?.len(),
        ..GcReport::default()
    };

    let roots = db::gc_roots_tx(tx, &[GC_REF_CONTENT_PREFIX, GC_REF_SNAPSHOT_PREFIX])?;
    let mut labels: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (d, k, v) in roots.labels {
        labels.entry(d).or_default().push((k, v));
    }
    let mut m = Marker {
        content,
        blobs: HashSet::new(),
        snapshots: HashSet::new(),
        queue: VecDeque::new(),
        labels,
    };
    let mut leased_ingests = BTreeSet::new();
    for img in &roots.images {
        let role = match role_of(Some(&img.target.media_type)) {
            Role::Leaf => Role::Unknown,
            r => r,
        };
        m.push(img.target.digest.clone(), role);
        if let Some(id) = &img.id {
            m.push(id.clone(), Role::Config);
        }
    }
    for lease in &roots.leases {
        for r in &lease.resources {
            if let Resource::Ingest(i) = r {
                leased_ingests.insert(i.clone());
            }
            m.resource(r);
        }
    }
    for (_, r) in &roots.holds {
        m.resource(r);
    }
    m.run()?;

    // Snapshots: keep marked ones and their ancestors; remove the rest, children first.
    let all = snapshots.list()?;
    let parent: HashMap<&str, Option<&str>> = all
        .iter()
        .map(|i| (i.key.as_str(), i.parent.as_deref()))
        .collect();
    let mut keep: HashSet<String> = HashSet::new();
    for k in &m.snapshots {
        let mut cur = Some(k.as_str());
        while let Some(c) = cur {
            if !keep.insert(c.to_string()) {
                break;
            }
            cur = parent.get(c).copied().flatten();
        }
    }
    for info in all.iter().rev() {
        if keep.contains(&info.key) {
            continue;
        }
        match snapshots.remove(&info.key) {
            Ok(()) => report.snapshots_removed += 1,
            // Created or re-parented meanwhile: leave it for the next run.
            Err(berth_snapshot::Error::HasChildren(_))
            | Err(berth_snapshot::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Blobs.
    for info in content.list()? {
        if m.blobs.contains(&info.digest) {
            continue;
        }
        match content.delete(&info.digest) {
            Ok(()) => {
                report.blobs_removed += 1;
                report.bytes_freed += info.size;
                db::remove_content_labels_tx(tx, &info.digest)?;
            }
            Err(berth_content::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Ingests.
    let now = SystemTime::now();
    let removed = content.cleanup_ingests(|st| {
        !leased_ingests.contains(&st.reference)
            && now
                .duration_since(st.updated_at)
                .map(|age| age >= opts.ingest_grace)
                .unwrap_or(false)
    })?;
    report.ingests_removed = removed.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        let want = hex::encode(sha2::Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(c[1].encoded(), want);
        assert!(chain_ids(&[]).is_empty());
    }
}
