//! berth-snapshot: filesystem snapshots for image layers and container root filesystems.
//!
//! A snapshot is *active* (writable, from [`Snapshotter::prepare`]), a *view* (read-only, from
//! [`Snapshotter::view`]) or *committed* (immutable, from [`Snapshotter::commit`], usable as a
//! parent). Image layers are committed under their **chain ID** (`sha256:...`, see the OCI
//! image spec), so a layer shared by several images is stored once.
//!
//! Operations return mounts as data ([`berth_core::Mount`]); performing them is separate:
//! [`mount_all`] / [`unmount`]. Mounts of long overlay chains must be performed with
//! [`mount_all`] (or fsconfig `lowerdir+` per layer): the joined `lowerdir=` option of a
//! 128-layer chain exceeds what `mount(2)` accepts.
//!
//! Two implementations of [`Snapshotter`]:
//! - [`OverlaySnapshotter`]: overlayfs; each snapshot stores only its own changes.
//! - [`NativeSnapshotter`]: full copies, where overlayfs is unavailable.
//!
//! [`open`] picks overlay when an overlay mount works in a scratch directory under the root.
//!
//! Layer appliers write a layer's changes, in overlay form (whiteouts as 0/0 character devices,
//! opaque directories with `trusted.overlay.opaque=y`), into [`Snapshotter::upper_dir`] of an
//! active snapshot; the native snapshotter turns them into deletions at commit.
//!
//! ```
//! use berth_snapshot::{NativeSnapshotter, Snapshotter};
//!
//! let dir = tempfile::tempdir()?;
//! let snaps = NativeSnapshotter::open(dir.path())?; // or berth_snapshot::open(root)
//! snaps.prepare("extract-1", None)?;
//! std::fs::write(snaps.upper_dir("extract-1")?.join("hello"), "world")?; // the applier's job
//! let chain_id = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
//! snaps.commit(chain_id, "extract-1")?;
//! let mounts = snaps.prepare("container-rw", Some(chain_id))?; // perform with mount_all
//! assert_eq!(mounts.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On disk under the root: `metadata.db` (SQLite) and `<id>/{fs,work}` with short numeric ids
//! (native: `<id>/{fs,upper}`).
#![forbid(unsafe_code)]

mod db;
mod error;
mod merge;
mod mount;
mod native;
mod overlay;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod usage;

pub use error::{Error, Result};
pub use mount::{mount_all, overlay_supported, unmount};
pub use native::NativeSnapshotter;
pub use overlay::OverlaySnapshotter;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_core::Mount;

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Read-only, not committable.
    View,
    /// Writable; can be committed.
    Active,
    /// Immutable; can be a parent.
    Committed,
}

impl Kind {
    /// Lowercase name: `view`, `active`, `committed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key (the name, for a committed snapshot; the chain ID for an image layer).
    pub key: String,
    /// The key of its parent, if any.
    pub parent: Option<String>,
    /// Its state.
    pub kind: Kind,
    /// When it was created (or committed).
    pub created: SystemTime,
}

/// Disk use of a snapshot's own data (not its parents'). Hard links are counted once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes allocated on disk (`st_blocks * 512`).
    pub size: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// A snapshotter: the interface the image service and the engine use.
///
/// Object-safe: hold it as `Box<dyn Snapshotter>` / `Arc<dyn Snapshotter>`.
pub trait Snapshotter: Send + Sync {
    /// Create an active (writable) snapshot `key` on top of the committed snapshot `parent`
    /// and return the mounts that present it. `key` taken: `Conflict`; `parent` missing:
    /// `NotFound`; `parent` not committed: `InvalidInput`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// Create a read-only view `key` of `parent` (no upper layer) and return its mounts.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// The mounts of an existing active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Commit the active snapshot `key` under `name`; it becomes immutable and `key` ceases to
    /// exist. Commit a layer under its chain ID.
    fn commit(&self, name: &str, key: &str) -> Result<()>;

    /// Remove a snapshot. Refused (`Conflict`) while it has children. Unmount it first.
    fn remove(&self, key: &str) -> Result<()>;

    /// Information about a snapshot.
    fn stat(&self, key: &str) -> Result<Info>;

    /// Disk use of a snapshot's own data.
    fn usage(&self, key: &str) -> Result<Usage>;

    /// All snapshots, parents before children.
    fn list(&self) -> Result<Vec<Info>>;

    /// The directory into which a layer applier writes the changes of the active snapshot
    /// `key`, in overlay form (whiteouts as 0/0 char devices, `trusted.overlay.opaque=y`).
    /// Open it as a directory fd and resolve beneath it; never join untrusted paths to it.
    fn upper_dir(&self, key: &str) -> Result<PathBuf>;

    /// The implementation's name: `overlay` or `native`.
    fn name(&self) -> &'static str;
}

/// Open the snapshotter rooted at `root`: overlay when overlayfs mounts work there, otherwise
/// native copies.
pub fn open(root: impl AsRef<Path>) -> Result<Box<dyn Snapshotter>> {
    let root = root.as_ref();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
    if overlay_supported(root) {
        Ok(Box::new(OverlaySnapshotter::open(root)?))
    } else {
        Ok(Box::new(NativeSnapshotter::open(root)?))
    }
}
