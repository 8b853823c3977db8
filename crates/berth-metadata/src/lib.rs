//! berth-metadata: berth's metadata database and garbage collector.
//!
//! [`Db`] is one SQLite database (WAL, busy timeout, schema migrated by `user_version`) holding:
//! - **images**: one record per reference name (`docker.io/library/busybox:latest`, or a digest
//!   reference `docker.io/library/busybox@sha256:...`), each pointing at a target manifest or
//!   index descriptor and carrying the image id (config digest). Tagging copies a record under
//!   a new name; untagging deletes one name; the image (its id) lives while any name points
//!   at it. A dangling image (no name) is stored under its id, `sha256:<config hex>`.
//! - **content labels**: `key=value` per blob; labels `berth.gc.ref.*` whose value is a digest
//!   are GC edges to other blobs, `berth.gc.ref.snapshot.*` edges to snapshots.
//! - **leases**: named, optionally expiring sets of resources (blobs, snapshots, ingests) that
//!   GC keeps; a pull holds one from its first byte to its image record.
//! - **holds**: a holder (a container, a build) keeps a snapshot or an image id; GC keeps it,
//!   and the image service refuses to remove a held image without force.
//!
//! [`gc()`] marks from images, leases and holds through manifests, indexes, configs (to chain
//! IDs, i.e. snapshots) and snapshot parents, then sweeps blobs, snapshots and stale ingests.
//!
//! Snapshots are registered by the snapshotter itself (berth-snapshot keeps its own registry);
//! this database does not duplicate them.
#![forbid(unsafe_code)]

mod db;
mod error;
pub mod gc;

pub use db::{normalize_name, Db, GcRoots, Holder, Image, Lease, Resource, Target};
pub use error::{Error, Result};
pub use gc::{chain_ids, gc, gc_with, GcOptions, GcReport};

/// Label keys with this prefix on a blob, whose value is a digest, are GC edges to that blob.
pub const GC_REF_CONTENT_PREFIX: &str = "berth.gc.ref.content.";
/// Label keys with this prefix on a blob name a snapshot key GC must keep.
pub const GC_REF_SNAPSHOT_PREFIX: &str = "berth.gc.ref.snapshot.";
