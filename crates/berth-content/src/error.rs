//! Errors of the content store.

use berth_core::{Digest, ErrorKind};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A content-store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No committed blob with this digest.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// No ingest under this reference.
    #[error("ingest {0} not found")]
    IngestNotFound(String),
    /// Another writer holds the reference.
    #[error("ref {0} locked")]
    Locked(String),
    /// The expected blob is already stored; nothing needs writing.
    #[error("blob {0} already exists")]
    AlreadyExists(Digest),
    /// The data's digest is not the expected one; the ingest was dropped.
    #[error("commit ingest {reference}: unexpected digest {actual} (expected {expected})")]
    DigestMismatch {
        /// The ingest reference.
        reference: String,
        /// What the data hashes to.
        actual: Digest,
        /// What the caller expected.
        expected: Digest,
    },
    /// The data's size is not the expected one; the ingest was dropped.
    #[error("commit ingest {reference}: unexpected size {actual} (expected {expected})")]
    SizeMismatch {
        /// The ingest reference.
        reference: String,
        /// Bytes written.
        actual: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// A read range lies outside the blob.
    #[error("read blob {digest}: range {offset}+{len} outside size {size}")]
    InvalidRange {
        /// The blob.
        digest: Digest,
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The blob's size.
        size: u64,
    },
    /// The caller passed something unusable (an empty reference...).
    #[error("{0}")]
    InvalidInput(String),
    /// An I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed, on what.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) | Error::IngestNotFound(_) => ErrorKind::NotFound,
            Error::Locked(_) | Error::AlreadyExists(_) => ErrorKind::Conflict,
            Error::DigestMismatch { .. } => ErrorKind::Corrupt,
            Error::SizeMismatch { .. } | Error::InvalidRange { .. } | Error::InvalidInput(_) => {
                ErrorKind::InvalidInput
            }
            Error::Io { source, .. } => ErrorKind::from_io(source),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
