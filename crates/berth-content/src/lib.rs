//! berth-content: the content-addressable blob store.
//!
//! Blobs are addressed by their [`Digest`] and written through an *ingest*:
//! a [`Writer`] opened under a caller-chosen reference (for a pull, e.g. `pull-<digest>`), which
//! hashes while it streams, and whose [`Writer::commit`] verifies size and digest, fsyncs, renames
//! the data into `blobs/<alg>/<hex>`, fsyncs the directory and leaves the blob read-only (0444).
//! A process killed mid-ingest leaves data only under `ingest/`, never a partial blob; reopening
//! the same reference resumes at the existing offset (see [`Writer::offset`]).
//!
//! - [`Store`]: the object-safe interface the engine and the registry server share.
//! - [`LocalStore`]: its filesystem implementation, `LocalStore::open(root)`.
//! - [`Blob`]: a verified blob opened for reading (`Read + Seek`, [`Blob::read_at`], [`Blob::range`]).
//!
//! On disk under the root:
//! ```text
//! blobs/sha256/<hex>                              committed blobs, mode 0444
//! ingest/<sha256(ref)>/{data,ref,startedat,total,expected}   in-progress ingests
//! ```
//! ```
//! use std::io::Write;
//! use berth_content::{Expected, LocalStore, Store};
//! use berth_core::Digest;
//!
//! let dir = tempfile::tempdir()?;
//! let store = LocalStore::open(dir.path())?;
//! let data = b"layer bytes";
//! let digest = Digest::sha256_of(data);
//! let mut w = store.writer("pull-example", Some(Expected::new(digest.clone(), data.len() as u64)))?;
//! w.write_all(&data[w.offset() as usize..])?; // resume-aware
//! assert!(w.commit(None, None)?.is_new());
//! assert_eq!(store.info(&digest)?.size, data.len() as u64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Concurrency: one writer per reference at a time (an exclusive `flock` on the ingest
//! directory; a second writer gets [`Error::Locked`], kind `Conflict`). Two ingests of the same
//! digest under different references store it once: the second commit returns
//! [`Committed::Existing`].
#![forbid(unsafe_code)]

mod blob;
mod error;
mod local;
mod writer;

pub use blob::{Blob, Range};
pub use error::{Error, Result};
pub use local::LocalStore;
pub use writer::Writer;

use std::time::SystemTime;

use berth_core::Digest;

/// What the store knows about one committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was committed (the file's inode change time: commit chmods and renames it).
    pub created: SystemTime,
}

/// The digest and size a writer expects to receive (a descriptor's identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The expected digest.
    pub digest: Digest,
    /// The expected size in bytes.
    pub size: u64,
}

impl Expected {
    /// Build an expectation.
    pub fn new(digest: Digest, size: u64) -> Self {
        Expected { digest, size }
    }
}

/// The outcome of a successful commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The blob was written by this commit.
    New(Digest),
    /// The blob already existed (another ingest committed it first); this ingest was dropped.
    Existing(Digest),
}

impl Committed {
    /// The committed digest.
    pub fn digest(&self) -> &Digest {
        match self {
            Committed::New(d) | Committed::Existing(d) => d,
        }
    }

    /// Whether this commit wrote the blob.
    pub fn is_new(&self) -> bool {
        matches!(self, Committed::New(_))
    }
}

/// An ingest in progress (or interrupted), as listed by [`Store::ingests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The reference the ingest was opened under.
    pub reference: String,
    /// Bytes written so far (where a resumed writer continues).
    pub offset: u64,
    /// The expected total size, when the writer declared one.
    pub total: Option<u64>,
    /// The expected digest, when the writer declared one.
    pub expected: Option<Digest>,
    /// When the ingest was started.
    pub started_at: SystemTime,
    /// When data was last written.
    pub updated_at: SystemTime,
}

/// A content store: the interface the engine, the image service and the registry server share.
///
/// Object-safe: hold it as `Arc<dyn Store>`.
pub trait Store: Send + Sync {
    /// Size and creation time of a committed blob; [`Error::NotFound`] when absent.
    fn info(&self, digest: &Digest) -> Result<Info>;

    /// Open a committed blob for reading.
    fn reader(&self, digest: &Digest) -> Result<Blob>;

    /// Open (or resume) the ingest `reference`. With `expected`, the writer refuses data beyond
    /// the expected size, commit verifies against it, and [`Error::AlreadyExists`] is returned
    /// at once when that blob is already stored. A reference held by another writer (in any
    /// process) gives [`Error::Locked`].
    fn writer(&self, reference: &str, expected: Option<Expected>) -> Result<Writer>;

    /// Drop the ingest `reference` and its data. [`Error::Locked`] while a writer holds it;
    /// [`Error::IngestNotFound`] when there is none.
    fn abort(&self, reference: &str) -> Result<()>;

    /// Delete a committed blob.
    fn delete(&self, digest: &Digest) -> Result<()>;

    /// All committed blobs.
    fn list(&self) -> Result<Vec<Info>>;

    /// All ingests on disk (active or interrupted).
    fn ingests(&self) -> Result<Vec<IngestStatus>>;

    /// The status of one ingest (e.g. a registry upload's offset) without taking its lock.
    fn ingest_status(&self, reference: &str) -> Result<IngestStatus> {
        self.ingests()?
            .into_iter()
            .find(|i| i.reference == reference)
            .ok_or_else(|| Error::IngestNotFound(reference.to_string()))
    }

    /// Whether a blob is stored.
    fn exists(&self, digest: &Digest) -> Result<bool> {
        match self.info(digest) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Store `data` in one call, verifying it against `expected` when given.
    fn write_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Committed> {
        use std::io::Write as _;
        let digest = match expected {
            Some(d) => d.clone(),
            None => Digest::sha256_of(data),
        };
        if self.exists(&digest)? {
            return Ok(Committed::Existing(digest));
        }
        let reference = writer::unique_ref("write-blob");
        let exp = Expected::new(digest.clone(), data.len() as u64);
        let mut w = match self.writer(&reference, Some(exp)) {
            Ok(w) => w,
            Err(Error::AlreadyExists(d)) => return Ok(Committed::Existing(d)),
            Err(e) => return Err(e),
        };
        if let Err(e) = w.write_all(data) {
            let _ = w.abort();
            return Err(Error::io(format!("write ingest {reference}"), e));
        }
        w.commit(Some(data.len() as u64), Some(&digest))
    }
}
