//! Layer diff: a directory (overlay upper, or two full trees) back to a layer tar.

use std::io::Write;
use std::path::Path;

use berth_core::Digest;

use super::{Compression, LayerError};

/// Options of [`diff`] and [`diff_dirs`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// Compression of the written stream.
    pub compression: Compression,
}

impl DiffOptions {
    /// Defaults with the given output compression.
    pub fn with_compression(compression: Compression) -> Self {
        DiffOptions { compression }
    }
}

/// What a diff wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffReport {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the written (possibly compressed) stream: the layer blob's digest.
    pub compressed_digest: Digest,
    /// Bytes written (the blob's size).
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries written.
    pub entries: u64,
}

/// Write the layer tar of an overlayfs upper dir. `lowers` are the lower dirs, top first; they
/// supply data of metacopy-only upper files. 0/0 char devices become `.wh.<name>` entries and
/// opaque directories get a `.wh..wh..opq` entry. Output is deterministic (sorted names,
/// normalised headers).
pub fn diff(
    lowers: &[&Path],
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffReport, LayerError> {
    let _ = (lowers, upper, out, opts);
    Err(LayerError::Unsupported("diff not implemented yet".into()))
}

/// Write the layer tar that turns the full tree `old` into `new` (for the copy snapshotter and
/// commits without overlay): changed and added entries, and `.wh.<name>` for removed ones.
pub fn diff_dirs(
    old: &Path,
    new: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffReport, LayerError> {
    let _ = (old, new, out, opts);
    Err(LayerError::Unsupported("diff_dirs not implemented yet".into()))
}
