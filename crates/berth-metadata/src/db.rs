//! The metadata database: images, content labels, leases, holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_core::{Digest, Reference};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::{Error, Result};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE images (
    name TEXT PRIMARY KEY,
    target_digest TEXT NOT NULL,
    target_media_type TEXT NOT NULL,
    target_size INTEGER NOT NULL,
    image_id TEXT,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX images_id ON images(image_id);
CREATE INDEX images_target ON images(target_digest);
CREATE TABLE content_labels (
    digest TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (digest, key)
);
CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    expires INTEGER
);
CREATE TABLE lease_resources (
    lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (lease, kind, value)
);
CREATE TABLE holds (
    holder_kind TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (holder_kind, holder_id, kind, value)
);
CREATE INDEX holds_resource ON holds(kind, value);
";

/// The descriptor an image name points at: a manifest or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Digest of the manifest or index blob.
    pub digest: Digest,
    /// Its media type (OCI or Docker v2s2 manifest / index / manifest list).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An image record: a name (reference) pointing at a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The normalised reference (`docker.io/library/busybox:latest`, `...@sha256:...`), or the
    /// image id (`sha256:...`) for a dangling image.
    pub name: String,
    /// The manifest or index the name resolves to.
    pub target: Target,
    /// The image id: the digest of the config of the (platform-selected) manifest.
    pub id: Option<Digest>,
    /// When the record was first created.
    pub created: SystemTime,
    /// When it was last changed.
    pub updated: SystemTime,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

impl Image {
    /// A new record named `name` for `target`, with the current time.
    pub fn new(name: impl Into<String>, target: Target, id: Option<Digest>) -> Self {
        let now = SystemTime::now();
        Image {
            name: name.into(),
            target,
            id,
            created: now,
            updated: now,
            labels: BTreeMap::new(),
        }
    }
}

/// Something GC must keep while a lease or a holder refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A blob (and, through manifests and labels, what it references).
    Content(Digest),
    /// A snapshot by key (and its parents).
    Snapshot(String),
    /// An ingest reference in the content store.
    Ingest(String),
    /// An image by id (config digest): its config, its layers' snapshots.
    Image(Digest),
}

impl Resource {
    fn encode(&self) -> (&'static str, String) {
        match self {
            Resource::Content(d) => ("content", d.to_string()),
            Resource::Snapshot(k) => ("snapshot", k.clone()),
            Resource::Ingest(r) => ("ingest", r.clone()),
            Resource::Image(d) => ("image", d.to_string()),
        }
    }

    fn decode(kind: &str, value: String) -> Result<Resource> {
        let digest = |v: &str| {
            v.parse::<Digest>()
                .map_err(|e| Error::Corrupt(format!("stored resource {kind} {v}: {e}")))
        };
        Ok(match kind {
            "content" => Resource::Content(digest(&value)?),
            "snapshot" => Resource::Snapshot(value),
            "ingest" => Resource::Ingest(value),
            "image" => Resource::Image(digest(&value)?),
            other => return Err(Error::Corrupt(format!("stored resource kind {other:?}"))),
        })
    }
}

/// A lease: resources kept from GC until it is deleted or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: String,
    /// When it was created.
    pub created: SystemTime,
    /// When it expires, if ever.
    pub expires: Option<SystemTime>,
    /// What it keeps.
    pub resources: Vec<Resource>,
}

/// Who holds a resource: e.g. `Holder::new("container", id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    /// The holder's kind (`container`, `build`...).
    pub kind: String,
    /// Its id.
    pub id: String,
}

impl Holder {
    /// Build a holder.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Holder {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

/// Normalise an image name: a reference in Docker's normal form, or an image id for a
/// dangling image.
pub fn normalize_name(name: &str) -> Result<String> {
    if name.starts_with("sha256:") || name.starts_with("sha512:") {
        return name
            .parse::<Digest>()
            .map(|d| d.to_string())
            .map_err(|e| Error::InvalidInput(format!("image name {name:?}: {e}")));
    }
    Reference::parse(name)
        .map(|r| r.to_string())
        .map_err(|e| Error::InvalidInput(format!("image name {name:?}: {e}")))
}

/// The metadata database. Every method is one transaction.
pub struct Db {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

const IMAGE_COLS: &str =
    "name, target_digest, target_media_type, target_size, image_id, created, updated, labels";

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Image, String, Option<String>, String)> {
    let digest: String = r.get(1)?;
    let id: Option<String> = r.get(4)?;
    let labels: String = r.get(7)?;
    Ok((
        Image {
            name: r.get(0)?,
            target: Target {
                // Placeholder, replaced after parsing in `finish_image`.
                digest: Digest::sha256_of(b""),
                media_type: r.get(2)?,
                size: r.get::<_, i64>(3)?.max(0) as u64,
            },
            id: None,
            created: from_nanos(r.get(5)?),
            updated: from_nanos(r.get(6)?),
            labels: BTreeMap::new(),
        },
        digest,
        id,
        labels,
    ))
}

fn finish_image(raw: (Image, String, Option<String>, String)) -> Result<Image> {
    let (mut img, digest, id, labels) = raw;
    let bad =
        |what: &str, e: String| Error::Corrupt(format!("image {}: stored {what}: {e}", img.name));
    img.target.digest = digest
        .parse()
        .map_err(|e: berth_core::digest::DigestError| bad("target", e.to_string()))?;
    img.id = match id {
        Some(s) => Some(
            s.parse()
                .map_err(|e: berth_core::digest::DigestError| bad("id", e.to_string()))?,
        ),
        None => None,
    };
    img.labels = serde_json::from_str(&labels).map_err(|e| bad("labels", e.to_string()))?;
    Ok(img)
}

impl Db {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref();
        let ctx = || format!("open metadata database {}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                context: format!("create {}", dir.display()),
                source: e,
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| Error::db(ctx(), e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| Error::db(ctx(), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::db(ctx(), e))?;
        // FULL: a committed image record survives power loss, like the blobs it names.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| Error::db(ctx(), e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| Error::db(ctx(), e))?;
        migrate(&mut conn).map_err(|e| match e {
            Error::Db { source, .. } => Error::db(ctx(), source),
            e => e,
        })?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn tx<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::db(what, e))?;
        let v = f(&tx)?;
        tx.commit().map_err(|e| Error::db(what, e))?;
        Ok(v)
    }

    // ---- images ----

    /// Create or replace the record `image.name` (normalised first). Returns the stored record.
    pub fn put_image(&self, image: &Image) -> Result<Image> {
        let name = normalize_name(&image.name)?;
        let what = format!("put image {name}");
        let labels = serde_json::to_string(&image.labels)
            .map_err(|e| Error::InvalidInput(format!("{what}: labels: {e}")))?;
        self.tx(&what, |tx| {
            let created: Option<i64> = tx
                .query_row("SELECT created FROM images WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| Error::db(&what, e))?;
            let now = to_nanos(SystemTime::now());
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO images ({IMAGE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
                ),
                params![
                    name,
                    image.target.digest.to_string(),
                    image.target.media_type,
                    image.target.size as i64,
                    image.id.as_ref().map(|d| d.to_string()),
                    created.unwrap_or_else(|| to_nanos(image.created)),
                    now,
                    labels
                ],
            )
            .map_err(|e| Error::db(&what, e))?;
            get_image_tx(tx, &name)
        })
    }

    /// The record named `name` (normalised first).
    pub fn get_image(&self, name: &str) -> Result<Image> {
        let name = normalize_name(name)?;
        self.tx(&format!("get image {name}"), |tx| get_image_tx(tx, &name))
    }

    /// All image records, by name.
    pub fn list_images(&self) -> Result<Vec<Image>> {
        self.query_images("list images", "ORDER BY name", [])
    }

    /// The records whose image id is `id`.
    pub fn images_with_id(&self, id: &Digest) -> Result<Vec<Image>> {
        self.query_images(
            &format!("list images of id {id}"),
            "WHERE image_id = ?1 ORDER BY name",
            [id.to_string()],
        )
    }

    /// The records whose target is `digest`.
    pub fn images_with_target(&self, digest: &Digest) -> Result<Vec<Image>> {
        self.query_images(
            &format!("list images of target {digest}"),
            "WHERE target_digest = ?1 ORDER BY name",
            [digest.to_string()],
        )
    }

    fn query_images<const N: usize>(
        &self,
        what: &str,
        tail: &str,
        args: [String; N],
    ) -> Result<Vec<Image>> {
        self.tx(what, |tx| query_images_tx(tx, what, tail, args))
    }

    /// Delete the record `name`; returns it.
    pub fn delete_image(&self, name: &str) -> Result<Image> {
        let name = normalize_name(name)?;
        let what = format!("delete image {name}");
        self.tx(&what, |tx| {
            let img = get_image_tx(tx, &name)?;
            tx.execute("DELETE FROM images WHERE name = ?1", [&name])
                .map_err(|e| Error::db(&what, e))?;
            Ok(img)
        })
    }

    /// Point `new_name` at the same target and id as `source` (moving `new_name` if it existed).
    pub fn tag(&self, source: &str, new_name: &str) -> Result<Image> {
        let source = normalize_name(source)?;
        let new_name = normalize_name(new_name)?;
        let what = format!("tag {source} as {new_name}");
        self.tx(&what, |tx| {
            let src = get_image_tx(tx, &source)?;
            let now = to_nanos(SystemTime::now());
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO images ({IMAGE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
                ),
                params![
                    new_name,
                    src.target.digest.to_string(),
                    src.target.media_type,
                    src.target.size as i64,
                    src.id.as_ref().map(|d| d.to_string()),
                    now,
                    now,
                    serde_json::to_string(&src.labels).unwrap_or_else(|_| "{}".into())
                ],
            )
            .map_err(|e| Error::db(&what, e))?;
            get_image_tx(tx, &new_name)
        })
    }

    // ---- content labels ----

    /// Set (`Some`) or remove (`None`) a label on a blob.
    pub fn set_content_label(&self, digest: &Digest, key: &str, value: Option<&str>) -> Result<()> {
        let what = format!("label blob {digest} {key}");
        self.tx(&what, |tx| {
            match value {
                Some(v) => tx.execute(
                    "INSERT OR REPLACE INTO content_labels (digest, key, value) VALUES (?1,?2,?3)",
                    params![digest.to_string(), key, v],
                ),
                None => tx.execute(
                    "DELETE FROM content_labels WHERE digest = ?1 AND key = ?2",
                    params![digest.to_string(), key],
                ),
            }
            .map_err(|e| Error::db(&what, e))?;
            Ok(())
        })
    }

    /// The labels of a blob.
    pub fn content_labels(&self, digest: &Digest) -> Result<BTreeMap<String, String>> {
        let what = format!("labels of blob {digest}");
        self.tx(&what, |tx| {
            let mut st = tx
                .prepare("SELECT key, value FROM content_labels WHERE digest = ?1")
                .map_err(|e| Error::db(&what, e))?;
            let v = st
                .query_map([digest.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| Error::db(&what, e))?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()
                .map_err(|e| Error::db(&what, e))?;
            Ok(v)
        })
    }

    /// Remove every label of a blob (when it is deleted).
    pub fn remove_content_labels(&self, digest: &Digest) -> Result<()> {
        self.tx(&format!("remove labels of blob {digest}"), |tx| {
            remove_content_labels_tx(tx, digest)
        })
    }

    /// All (digest, key, value) labels with keys starting with `prefix`.
    pub fn content_labels_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, String)>> {
        self.tx(&format!("list blob labels {prefix}*"), |tx| {
            labels_with_prefix_tx(tx, prefix)
        })
    }

    // ---- leases ----

    /// Create a lease that expires after `ttl` (never, with `None`).
    pub fn create_lease(&self, id: &str, ttl: Option<Duration>) -> Result<Lease> {
        if id.is_empty() {
            return Err(Error::InvalidInput("create lease: empty id".into()));
        }
        let what = format!("create lease {id}");
        let now = SystemTime::now();
        let expires = ttl.map(|t| now + t);
        self.tx(&what, |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO leases (id, created, expires) VALUES (?1, ?2, ?3)",
                    params![id, to_nanos(now), expires.map(to_nanos)],
                )
                .map_err(|e| Error::db(&what, e))?;
            if n == 0 {
                return Err(Error::AlreadyExists(format!("lease {id}")));
            }
            get_lease_tx(tx, id)
        })
    }

    /// A lease and its resources.
    pub fn get_lease(&self, id: &str) -> Result<Lease> {
        self.tx(&format!("get lease {id}"), |tx| get_lease_tx(tx, id))
    }

    /// All leases.
    pub fn list_leases(&self) -> Result<Vec<Lease>> {
        self.tx("list leases", list_leases_tx)
    }

    /// Add a resource to a lease (idempotent).
    pub fn add_lease_resource(&self, id: &str, resource: &Resource) -> Result<()> {
        let (k, v) = resource.encode();
        let what = format!("add {k} {v} to lease {id}");
        self.tx(&what, |tx| {
            get_lease_tx(tx, id)?;
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (lease, kind, value) VALUES (?1,?2,?3)",
                params![id, k, v],
            )
            .map_err(|e| Error::db(&what, e))?;
            Ok(())
        })
    }

    /// Remove a resource from a lease.
    pub fn remove_lease_resource(&self, id: &str, resource: &Resource) -> Result<()> {
        let (k, v) = resource.encode();
        let what = format!("remove {k} {v} from lease {id}");
        self.tx(&what, |tx| {
            tx.execute(
                "DELETE FROM lease_resources WHERE lease = ?1 AND kind = ?2 AND value = ?3",
                params![id, k, v],
            )
            .map_err(|e| Error::db(&what, e))?;
            Ok(())
        })
    }

    /// Delete a lease (its resources become collectable).
    pub fn delete_lease(&self, id: &str) -> Result<()> {
        let what = format!("delete lease {id}");
        self.tx(&what, |tx| {
            let n = tx
                .execute("DELETE FROM leases WHERE id = ?1", [id])
                .map_err(|e| Error::db(&what, e))?;
            if n == 0 {
                return Err(Error::NotFound(format!("lease {id}")));
            }
            Ok(())
        })
    }

    /// Delete expired leases; returns their ids.
    pub fn expire_leases(&self) -> Result<Vec<String>> {
        self.tx("expire leases", expire_leases_tx)
    }

    // ---- holds ----

    /// Record that `holder` holds `resource` (idempotent).
    pub fn add_hold(&self, holder: &Holder, resource: &Resource) -> Result<()> {
        let (k, v) = resource.encode();
        let what = format!("hold {k} {v} for {} {}", holder.kind, holder.id);
        self.tx(&what, |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO holds (holder_kind, holder_id, kind, value) VALUES (?1,?2,?3,?4)",
                params![holder.kind, holder.id, k, v],
            )
            .map_err(|e| Error::db(&what, e))?;
            Ok(())
        })
    }

    /// Drop one hold.
    pub fn remove_hold(&self, holder: &Holder, resource: &Resource) -> Result<()> {
        let (k, v) = resource.encode();
        let what = format!("release {k} {v} for {} {}", holder.kind, holder.id);
        self.tx(&what, |tx| {
            tx.execute(
                "DELETE FROM holds WHERE holder_kind = ?1 AND holder_id = ?2 AND kind = ?3 AND value = ?4",
                params![holder.kind, holder.id, k, v],
            )
            .map_err(|e| Error::db(&what, e))?;
            Ok(())
        })
    }

    /// Drop every hold of `holder` (a removed container); returns how many.
    pub fn release_holder(&self, holder: &Holder) -> Result<usize> {
        let what = format!("release holds of {} {}", holder.kind, holder.id);
        self.tx(&what, |tx| {
            tx.execute(
                "DELETE FROM holds WHERE holder_kind = ?1 AND holder_id = ?2",
                params![holder.kind, holder.id],
            )
            .map_err(|e| Error::db(&what, e))
        })
    }

    /// Who holds `resource` (e.g. the containers using an image id).
    pub fn holders_of(&self, resource: &Resource) -> Result<Vec<Holder>> {
        let (k, v) = resource.encode();
        let what = format!("holders of {k} {v}");
        self.tx(&what, |tx| {
            let mut st = tx
                .prepare("SELECT holder_kind, holder_id FROM holds WHERE kind = ?1 AND value = ?2 ORDER BY 1, 2")
                .map_err(|e| Error::db(&what, e))?;
            let v = st
                .query_map(params![k, v], |r| Ok(Holder::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| Error::db(&what, e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| Error::db(&what, e))?;
            Ok(v)
        })
    }

    /// Every hold.
    pub fn list_holds(&self) -> Result<Vec<(Holder, Resource)>> {
        self.tx("list holds", list_holds_tx)
    }

    /// Everything GC starts from, read in one transaction.
    pub fn gc_roots(&self, label_prefixes: &[&str]) -> Result<GcRoots> {
        self.tx("read gc roots", |tx| gc_roots_tx(tx, label_prefixes))
    }
}

pub(crate) fn gc_roots_tx(tx: &Transaction<'_>, label_prefixes: &[&str]) -> Result<GcRoots> {
    let mut labels = Vec::new();
    for p in label_prefixes {
        labels.extend(labels_with_prefix_tx(tx, p)?);
    }
    Ok(GcRoots {
        images: query_images_tx(tx, "list images", "", [])?,
        leases: list_leases_tx(tx)?,
        holds: list_holds_tx(tx)?,
        labels,
    })
}

pub(crate) fn expire_leases_tx(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let what = "expire leases";
    let now = to_nanos(SystemTime::now());
    let ids = {
        let mut st = tx
            .prepare("SELECT id FROM leases WHERE expires IS NOT NULL AND expires <= ?1")
            .map_err(|e| Error::db(what, e))?;
        let v = st
            .query_map([now], |r| r.get::<_, String>(0))
            .map_err(|e| Error::db(what, e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| Error::db(what, e))?;
        v
    };
    tx.execute(
        "DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?1",
        [now],
    )
    .map_err(|e| Error::db(what, e))?;
    Ok(ids)
}

pub(crate) fn remove_content_labels_tx(tx: &Transaction<'_>, digest: &Digest) -> Result<()> {
    tx.execute(
        "DELETE FROM content_labels WHERE digest = ?1",
        [digest.to_string()],
    )
    .map_err(|e| Error::db(format!("remove labels of blob {digest}"), e))?;
    Ok(())
}

/// GC roots as read by [`Db::gc_roots`].
#[derive(Debug, Clone)]
pub struct GcRoots {
    /// Every image record.
    pub images: Vec<Image>,
    /// Every (unexpired and expired) lease.
    pub leases: Vec<Lease>,
    /// Every hold.
    pub holds: Vec<(Holder, Resource)>,
    /// (digest, key, value) of blob labels with the requested prefixes.
    pub labels: Vec<(String, String, String)>,
}

fn query_images_tx<const N: usize>(
    tx: &Transaction<'_>,
    what: &str,
    tail: &str,
    args: [String; N],
) -> Result<Vec<Image>> {
    let mut st = tx
        .prepare(&format!("SELECT {IMAGE_COLS} FROM images {tail}"))
        .map_err(|e| Error::db(what, e))?;
    let raw = st
        .query_map(rusqlite::params_from_iter(args.iter()), image_row)
        .map_err(|e| Error::db(what, e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| Error::db(what, e))?;
    raw.into_iter().map(finish_image).collect()
}

fn labels_with_prefix_tx(
    tx: &Transaction<'_>,
    prefix: &str,
) -> Result<Vec<(String, String, String)>> {
    let what = format!("list blob labels {prefix}*");
    let mut st = tx
        .prepare("SELECT digest, key, value FROM content_labels WHERE substr(key, 1, ?2) = ?1")
        .map_err(|e| Error::db(&what, e))?;
    let v = st
        .query_map(params![prefix, prefix.len() as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| Error::db(&what, e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| Error::db(&what, e))?;
    Ok(v)
}

fn list_leases_tx(tx: &Transaction<'_>) -> Result<Vec<Lease>> {
    let what = "list leases";
    let ids = {
        let mut st = tx
            .prepare("SELECT id FROM leases ORDER BY id")
            .map_err(|e| Error::db(what, e))?;
        let v = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| Error::db(what, e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| Error::db(what, e))?;
        v
    };
    ids.iter().map(|id| get_lease_tx(tx, id)).collect()
}

fn list_holds_tx(tx: &Transaction<'_>) -> Result<Vec<(Holder, Resource)>> {
    let what = "list holds";
    let mut st = tx
        .prepare("SELECT holder_kind, holder_id, kind, value FROM holds ORDER BY 1, 2, 3, 4")
        .map_err(|e| Error::db(what, e))?;
    let raw = st
        .query_map([], |r| {
            Ok((
                Holder::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(|e| Error::db(what, e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| Error::db(what, e))?;
    raw.into_iter()
        .map(|(h, k, v)| Ok((h, Resource::decode(&k, v)?)))
        .collect()
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| Error::db("read schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(Error::InvalidInput(format!(
            "metadata schema version {version} is newer than this berth ({SCHEMA_VERSION})"
        )));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(|e| Error::db("migrate", e))?;
    // Re-read inside the transaction: another process may have migrated meanwhile.
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| Error::db("read schema version", e))?;
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(|e| Error::db("migrate to schema 1", e))?;
        tx.pragma_update(None, "user_version", 1)
            .map_err(|e| Error::db("migrate to schema 1", e))?;
    }
    tx.commit().map_err(|e| Error::db("migrate", e))
}

fn get_image_tx(tx: &Transaction<'_>, name: &str) -> Result<Image> {
    let what = format!("get image {name}");
    let raw = tx
        .query_row(
            &format!("SELECT {IMAGE_COLS} FROM images WHERE name = ?1"),
            [name],
            image_row,
        )
        .optional()
        .map_err(|e| Error::db(&what, e))?
        .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
    finish_image(raw)
}

fn get_lease_tx(tx: &Transaction<'_>, id: &str) -> Result<Lease> {
    let what = format!("get lease {id}");
    let (created, expires): (i64, Option<i64>) = tx
        .query_row(
            "SELECT created, expires FROM leases WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| Error::db(&what, e))?
        .ok_or_else(|| Error::NotFound(format!("lease {id}")))?;
    let mut st = tx
        .prepare("SELECT kind, value FROM lease_resources WHERE lease = ?1 ORDER BY kind, value")
        .map_err(|e| Error::db(&what, e))?;
    let raw = st
        .query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| Error::db(&what, e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| Error::db(&what, e))?;
    let resources = raw
        .into_iter()
        .map(|(k, v)| Resource::decode(&k, v))
        .collect::<Result<Vec<_>>>()?;
    Ok(Lease {
        id: id.to_string(),
        created: from_nanos(created),
        expires: expires.map(from_nanos),
        resources,
    })
}
