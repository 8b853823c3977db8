//! The layer applier.

use std::io::{BufReader, Read};
use std::path::Path;

use berth_core::Digest;

use super::compression::{LayerStream, BUF_SIZE};
use super::{Compression, LayerError};

/// How whiteout entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// The root is an overlayfs upper dir: `.wh.<name>` becomes a 0/0 char device `<name>`,
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
    #[default]
    Overlay,
    /// The root holds the lower layers' content already (copy snapshotter, flattening):
    /// `.wh.<name>` deletes `<name>`, `.wh..wh..opq` empties its directory of everything this
    /// layer did not itself create.
    Remove,
}

/// Options of [`apply_layer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// How whiteouts are written.
    pub whiteout: WhiteoutMode,
    /// Set owners from the tar headers (uid/gid); otherwise files belong to the caller.
    pub same_owner: bool,
    /// Ignore EPERM/EINVAL from chown (rootless, unmapped ids).
    pub ignore_chown_errors: bool,
    /// Create char/block device nodes; when false such entries are refused.
    pub allow_devices: bool,
    /// Largest size of one file entry.
    pub max_file_size: Option<u64>,
    /// Largest number of entries (of every kind) in the layer.
    pub max_entries: Option<u64>,
    /// Largest uncompressed stream size (decompression bombs).
    pub max_total_size: Option<u64>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteout: WhiteoutMode::Overlay,
            same_owner: true,
            ignore_chown_errors: false,
            allow_devices: true,
            max_file_size: None,
            max_entries: None,
            max_total_size: None,
        }
    }
}

impl ApplyOptions {
    /// Defaults with the given whiteout mode.
    pub fn with_whiteout(whiteout: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteout,
            ..Default::default()
        }
    }
}

/// What [`apply_layer`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// sha256 of the uncompressed tar stream (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// sha256 of the stream as given (equal to `diff_id` for a plain tar).
    pub compressed_digest: Digest,
    /// Bytes of the stream as given.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries processed (including skipped ones).
    pub entries: u64,
    /// The detected compression.
    pub compression: Compression,
    /// Entries skipped (unknown types, `.wh..wh.*` meta entries, PAX global headers).
    pub skipped_entries: u64,
    /// Extended attributes dropped (overlay namespaces, unknown namespaces, unsupported).
    pub dropped_xattrs: u64,
}

/// Apply a layer (plain, gzip or zstd tar; detected from the magic bytes) into `root`.
///
/// On error the root may hold part of the layer: the caller discards the snapshot.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyReport, LayerError> {
    let buffered = BufReader::with_capacity(BUF_SIZE, reader);
    let (compression, stream) = LayerStream::open(buffered)?;
    let _ = (root, opts, stream, compression);
    Err(LayerError::Unsupported("layer applier not implemented yet".into()))
}

/// [`apply_layer`], then check the uncompressed stream's digest against `expected_diff_id`;
/// a mismatch is [`LayerError::DigestMismatch`] (kind Corrupt) and the caller discards the root.
pub fn apply_layer_verified(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
    expected_diff_id: &Digest,
) -> Result<ApplyReport, LayerError> {
    let report = apply_layer(root, reader, opts)?;
    if &report.diff_id != expected_diff_id {
        return Err(LayerError::DigestMismatch {
            expected: expected_diff_id.clone(),
            actual: report.diff_id,
        });
    }
    Ok(report)
}
