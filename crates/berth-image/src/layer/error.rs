//! Errors of the layer applier and diff.

use berth_core::{Digest, ErrorKind};

/// An error applying or producing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or decompressing the layer stream failed.
    #[error("read layer: {0}")]
    Read(#[source] std::io::Error),
    /// The tar stream is malformed.
    #[error("malformed layer tar: {0}")]
    Malformed(String),
    /// An entry tried to escape the root or is otherwise hostile.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as found in the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A limit from [`super::ApplyOptions`] was exceeded.
    #[error("layer limit exceeded: {0}")]
    Limit(String),
    /// The layer uses something this implementation does not support.
    #[error("unsupported layer: {0}")]
    Unsupported(String),
    /// The uncompressed stream's digest is not the expected diff_id.
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The diff_id the caller expected.
        expected: Digest,
        /// The diff_id of the stream actually read.
        actual: Digest,
    },
    /// A filesystem operation failed.
    #[error("{op} {path:?}: {source}")]
    Fs {
        /// The operation ("create file", "mkdir", "open root"...).
        op: &'static str,
        /// The path concerned, relative to the root.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output tar failed.
    #[error("write layer: {0}")]
    Write(#[source] std::io::Error),
}

impl LayerError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LayerError::Read(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                ErrorKind::Corrupt
            }
            LayerError::Read(_) => ErrorKind::Internal,
            LayerError::Malformed(_) | LayerError::DigestMismatch { .. } => ErrorKind::Corrupt,
            LayerError::Unsafe { .. } | LayerError::Limit(_) => ErrorKind::InvalidInput,
            LayerError::Unsupported(_) => ErrorKind::Unsupported,
            LayerError::Fs { source, .. } => ErrorKind::from_io(source),
            LayerError::Write(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn fs(
        op: &'static str,
        path: impl Into<String>,
        err: impl Into<std::io::Error>,
    ) -> Self {
        LayerError::Fs {
            op,
            path: path.into(),
            source: err.into(),
        }
    }

    pub(crate) fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        LayerError::Unsafe {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}
