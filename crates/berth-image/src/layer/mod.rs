//! Layer application and diff: the safe tar applier and its inverse.
//!
//! - [`apply_layer`] / [`apply_layer_at`] stream a (plain, gzip or zstd; detected from the
//!   magic bytes) layer tar into a root directory in one pass, hashing the uncompressed stream
//!   (the diff_id) and the stream as given (the blob digest) while extracting.
//!   [`apply_layer_verified`] also checks the diff_id (mismatch: kind Corrupt, discard the root).
//! - [`diff`] turns an overlayfs upper directory back into a layer tar (0/0 char devices become
//!   `.wh.<name>`, opaque directories get `.wh..wh..opq`, metacopy files read their data from
//!   the lowers), and [`diff_dirs`] compares two full trees (copy snapshotter, commit without
//!   overlay). Both write deterministic tars: sorted names, ustar headers with PAX records only
//!   for long names, large ids and xattrs, no atime/ctime/user names, hardlinks to the first
//!   path of an inode in the layer.
//!
//! # Containment (the threat model)
//! A layer is untrusted. Every entry's parent directory is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the root's fd, so `..` and
//! symlinks met on the way (from lower layers or created earlier in the same archive) stay
//! inside the root; the final component is created with `*at` calls on that parent fd that never
//! follow it (`O_CREAT|O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`). An existing entry is replaced, never written through: a file over a
//! directory removes the directory (recursively, fd-relative, not following symlinks), a
//! directory over a directory merges, anything over a symlink removes the symlink.
//! Extended attributes on symlinks/devices/fifos go through `/proc/self/fd/<parent>/<name>`
//! with the `l*xattr` calls (the parent fd is the contained one).
//!
//! Names: a leading `/` is dropped (absolute names are taken relative to the root), `.` and
//! empty components are dropped, `..` is resolved lexically, and a name or hardlink target
//! climbing above the root is **rejected** ([`LayerError::Unsafe`], naming the entry), which
//! aborts the apply: the caller discards the snapshot. Also rejected: NUL bytes, empty names,
//! non-directories replacing the root, hardlinks to directories/themselves/missing targets,
//! `.wh.` with nothing after it, device nodes when `allow_devices` is off. Limits
//! ([`ApplyOptions`]): file size, entry count, total uncompressed size, and a fixed 16 MiB cap on
//! the headers, long names and PAX records of one entry (the tar parser buffers those).
//! Dropped silently (counted in [`ApplyReport::dropped_xattrs`]): `trusted.overlay.*`,
//! `user.overlay.*` and xattrs outside `user.`/`security.`/`trusted.`/POSIX ACLs.
//!
//! Modes ([`WhiteoutMode`]): `Overlay` (0/0 char devices and `trusted.overlay.opaque`, for an
//! overlay upper dir), `Remove` (delete in place: copy snapshotter, flattening), `Literal`
//! (`.wh.` names are plain files: `docker cp`, `ADD` of a tar). Owners can be translated with
//! an [`IdMap`] (user-namespace remapping; [`DiffOptions::id_map`] maps back) or replaced
//! (`ApplyOptions::owner`, `ADD --chown`).
//!
//! Metadata order per entry: data, chown, chmod (chown clears setuid), xattrs (chown clears
//! `security.capability`), times. Directory modes and times are set after the last entry, so
//! read-only directories and children added later do not disturb them.

mod apply;
mod compression;
mod diff;
mod error;
mod fsx;
mod path;

pub use apply::{
    apply_layer, apply_layer_at, apply_layer_verified, ApplyOptions, ApplyReport, IdMap,
    WhiteoutMode,
};
pub use compression::{detect, Compression};
pub use diff::{diff, diff_dirs, DiffOptions, DiffReport};
pub use error::LayerError;

/// Prefix of a whiteout entry's file name (`.wh.<name>` hides `<name>`).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of whiteout meta entries (`.wh..wh.*`), which are not whiteouts themselves.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The entry that marks its directory opaque.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
