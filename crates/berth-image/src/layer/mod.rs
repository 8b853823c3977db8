//! Layer application and diff: the safe tar applier and its inverse.
//!
//! - [`apply_layer`] streams a (gzip/zstd/plain) layer tar into a root directory, hashing the
//!   uncompressed stream as it goes (the diff_id) and refusing or containing every hostile entry:
//!   each parent directory is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   relative to the root's fd, and the final component is created with `*at` calls that never
//!   follow a symlink.
//! - [`diff`] turns an overlayfs upper directory back into a layer tar (0/0 char devices become
//!   `.wh.<name>`, opaque directories get `.wh..wh..opq`), and [`diff_dirs`] compares two full
//!   trees (for the copy snapshotter).
//!
//! Path policy: a leading `/` is dropped (absolute names are taken relative to the root), `.`
//! components are dropped, and `..` is resolved lexically; a name (or hardlink target) that would
//! climb above the root is **rejected** with [`LayerError::Unsafe`] naming the entry, which aborts
//! the whole apply (the caller discards the snapshot). Symlinks met while resolving parents are
//! contained in the root by the kernel.

mod apply;
mod compression;
mod diff;
mod error;
mod fsx;
mod path;

pub use apply::{apply_layer, apply_layer_verified, ApplyOptions, ApplyReport, WhiteoutMode};
pub use compression::{detect, Compression};
pub use diff::{diff, diff_dirs, DiffOptions, DiffReport};
pub use error::LayerError;

/// Prefix of a whiteout entry's file name (`.wh.<name>` hides `<name>`).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of whiteout meta entries (`.wh..wh.*`), which are not whiteouts themselves.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The entry that marks its directory opaque.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
