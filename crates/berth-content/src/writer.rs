//! Ingest writers: stream, hash, verify, commit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::{Algorithm, Digest, Digester};
use rustix::fs::{FlockOperation, RenameFlags};

use crate::{Committed, Error, Expected, Result};

/// An open ingest: `Write` appends at [`Writer::offset`], [`Writer::commit`] publishes the blob.
///
/// Dropping a writer without committing keeps its data on disk so that reopening the same
/// reference resumes; call [`Writer::abort`] to discard it.
pub struct Writer {
    reference: String,
    dir: PathBuf,
    blobs: PathBuf,
    /// The ingest directory, flocked exclusively for this writer's lifetime.
    _lock: File,
    data: File,
    digester: Digester,
    offset: u64,
    expected: Option<Expected>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("reference", &self.reference)
            .field("offset", &self.offset)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// A reference unique to this process and call, for one-shot ingests.
pub(crate) fn unique_ref(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Take the exclusive, non-blocking lock of an ingest directory.
pub(crate) fn lock_dir(dir: &Path, reference: &str) -> Result<File> {
    let f = File::open(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::IngestNotFound(reference.to_string()),
        _ => Error::io(format!("open ingest {reference}"), e),
    })?;
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked(reference.to_string())),
        Err(e) => Err(Error::io(format!("lock ingest {reference}"), e.into())),
    }
}

/// Whether a locked directory fd still names a live directory (not removed by a committer).
pub(crate) fn still_linked(f: &File) -> bool {
    rustix::fs::fstat(f)
        .map(|st| st.st_nlink > 0)
        .unwrap_or(false)
}

fn read_meta(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Expectation recorded in an ingest directory.
pub(crate) fn recorded_expected(dir: &Path) -> (Option<u64>, Option<Digest>) {
    let total = read_meta(dir, "total").and_then(|s| s.parse().ok());
    let expected = read_meta(dir, "expected").and_then(|s| s.parse().ok());
    (total, expected)
}

fn write_meta(dir: &Path, name: &str, value: &str, reference: &str) -> Result<()> {
    fs::write(dir.join(name), value)
        .map_err(|e| Error::io(format!("write ingest {reference} {name}"), e))
}

impl Writer {
    /// Open or resume the ingest whose directory is `dir` (already created by the store).
    pub(crate) fn open(
        reference: &str,
        dir: PathBuf,
        blobs: PathBuf,
        expected: Option<Expected>,
    ) -> Result<Writer> {
        let lock = lock_dir(&dir, reference)?;
        if !still_linked(&lock) {
            // A committer removed the directory between our mkdir and our lock.
            return Err(Error::Locked(reference.to_string()));
        }
        let ctx = |what: &str| format!("{what} ingest {reference}");
        let stored_ref = read_meta(&dir, "ref");
        let (total, exp_digest) = recorded_expected(&dir);
        let stored_expected = match (total, exp_digest) {
            (Some(t), Some(d)) => Some(Expected::new(d, t)),
            _ => None,
        };
        let fresh = match &stored_ref {
            None => true,
            Some(r) if r != reference => true,
            // A different expectation than the interrupted ingest had: start over.
            Some(_) => expected.is_some() && expected != stored_expected,
        };
        let expected = expected.or(if fresh { None } else { stored_expected });
        let algorithm = expected
            .as_ref()
            .map(|e| e.digest.algorithm())
            .unwrap_or(Algorithm::Sha256);
        let data_path = dir.join("data");
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .open(&data_path)
            .map_err(|e| Error::io(ctx("open data of"), e))?;
        let mut digester = Digester::new(algorithm);
        let offset;
        if fresh {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            for name in ["total", "expected"] {
                let _ = fs::remove_file(dir.join(name));
            }
            write_meta(&dir, "startedat", &now.to_string(), reference)?;
            if let Some(e) = &expected {
                write_meta(&dir, "total", &e.size.to_string(), reference)?;
                write_meta(&dir, "expected", &e.digest.to_string(), reference)?;
            }
            write_meta(&dir, "ref", reference, reference)?;
            offset = 0;
        } else {
            // Resume: re-hash what an earlier writer left.
            offset =
                hash_file(&mut data, &mut digester).map_err(|e| Error::io(ctx("rehash"), e))?;
            if let Some(e) = &expected {
                if offset > e.size {
                    data.set_len(0).map_err(|e| Error::io(ctx("truncate"), e))?;
                    return Writer::finish_open(
                        reference,
                        dir,
                        blobs,
                        lock,
                        data,
                        Digester::new(algorithm),
                        0,
                        expected,
                    );
                }
            }
        }
        Writer::finish_open(
            reference, dir, blobs, lock, data, digester, offset, expected,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_open(
        reference: &str,
        dir: PathBuf,
        blobs: PathBuf,
        lock: File,
        mut data: File,
        digester: Digester,
        offset: u64,
        expected: Option<Expected>,
    ) -> Result<Writer> {
        data.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(format!("seek ingest {reference}"), e))?;
        Ok(Writer {
            reference: reference.to_string(),
            dir,
            blobs,
            _lock: lock,
            data,
            digester,
            offset,
            expected,
        })
    }

    /// The ingest reference.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Bytes written so far; a resumed writer starts here, so the caller continues its source
    /// from this offset (e.g. an HTTP Range request).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// What this writer expects, if declared.
    pub fn expected(&self) -> Option<&Expected> {
        self.expected.as_ref()
    }

    /// Discard the data written so far and restart at offset 0.
    pub fn reset(&mut self) -> Result<()> {
        self.data
            .set_len(0)
            .and_then(|_| self.data.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| Error::io(format!("truncate ingest {}", self.reference), e))?;
        let alg = self
            .expected
            .as_ref()
            .map(|e| e.digest.algorithm())
            .unwrap_or(Algorithm::Sha256);
        self.digester = Digester::new(alg);
        self.offset = 0;
        Ok(())
    }

    /// Verify and publish the blob.
    ///
    /// `size` and `expected` override what the writer was opened with. On success the data is
    /// fsynced, renamed into `blobs/<alg>/<hex>` (never replacing an existing blob), the
    /// directory fsynced and the ingest removed. A size or digest mismatch drops the ingest
    /// (its data is proven wrong) and returns [`Error::SizeMismatch`] / [`Error::DigestMismatch`].
    pub fn commit(mut self, size: Option<u64>, expected: Option<&Digest>) -> Result<Committed> {
        let reference = self.reference.clone();
        let want_size = size.or(self.expected.as_ref().map(|e| e.size));
        let want_digest = expected
            .cloned()
            .or_else(|| self.expected.as_ref().map(|e| e.digest.clone()));
        if let Some(s) = want_size {
            if s != self.offset {
                let actual = self.offset;
                let _ = self.remove_dir();
                return Err(Error::SizeMismatch {
                    reference,
                    actual,
                    expected: s,
                });
            }
        }
        self.data
            .flush()
            .and_then(|_| self.data.sync_all())
            .map_err(|e| Error::io(format!("fsync ingest {reference}"), e))?;
        let mut actual = self.digester.clone().finish();
        if let Some(w) = &want_digest {
            if w.algorithm() != actual.algorithm() {
                let mut d = Digester::new(w.algorithm());
                hash_file(&mut self.data, &mut d)
                    .map_err(|e| Error::io(format!("rehash ingest {reference}"), e))?;
                actual = d.finish();
            }
            if *w != actual {
                let _ = self.remove_dir();
                return Err(Error::DigestMismatch {
                    reference,
                    actual,
                    expected: w.clone(),
                });
            }
        }
        let alg_dir = self.blobs.join(actual.algorithm().as_str());
        fs::create_dir_all(&alg_dir)
            .map_err(|e| Error::io(format!("create {}", alg_dir.display()), e))?;
        let target = alg_dir.join(actual.encoded());
        self.data
            .set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io(format!("chmod ingest {reference}"), e))?;
        let data_path = self.dir.join("data");
        let outcome = match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &data_path,
            rustix::fs::CWD,
            &target,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Committed::New(actual.clone()),
            Err(rustix::io::Errno::EXIST) => Committed::Existing(actual.clone()),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // The filesystem lacks RENAME_NOREPLACE: an identical blob may be replaced.
                if target.exists() {
                    Committed::Existing(actual.clone())
                } else {
                    fs::rename(&data_path, &target)
                        .map_err(|e| Error::io(format!("commit ingest {reference}"), e))?;
                    Committed::New(actual.clone())
                }
            }
            Err(e) => return Err(Error::io(format!("commit ingest {reference}"), e.into())),
        };
        if outcome.is_new() {
            sync_dir(&alg_dir).map_err(|e| Error::io(format!("fsync {}", alg_dir.display()), e))?;
        }
        self.remove_dir()?;
        Ok(outcome)
    }

    /// Discard this ingest and its data.
    pub fn abort(self) -> Result<()> {
        self.remove_dir()
    }

    fn remove_dir(&self) -> Result<()> {
        fs::remove_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("remove ingest {}", self.reference), e))
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.expected {
            if self.offset + buf.len() as u64 > e.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "write ingest {}: data exceeds expected size {}",
                        self.reference, e.size
                    ),
                ));
            }
        }
        let n = self.data.write(buf)?;
        self.digester.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()
    }
}

/// Hash a whole file from its start; returns its length and leaves the cursor at the end.
fn hash_file(f: &mut File, d: &mut Digester) -> io::Result<u64> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok(n);
        }
        d.update(&buf[..r]);
        n += r as u64;
    }
}

/// fsync a directory so that a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
