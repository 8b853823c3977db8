//! The filesystem implementation of [`Store`].

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::os::unix::fs::MetadataExt;

use berth_core::{Algorithm, Digest};
use sha2::Digest as _;

use crate::writer::{lock_dir, recorded_expected, still_linked};
use crate::{Blob, Error, Expected, Info, IngestStatus, Result, Store, Writer};

/// When a blob was committed: its inode change time (commit chmods and renames it).
fn commit_time(m: &fs::Metadata) -> SystemTime {
    let (s, ns) = (m.ctime(), m.ctime_nsec());
    if s < 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::new(s as u64, ns.clamp(0, 999_999_999) as u32)
}

/// A content store in a directory: `blobs/<alg>/<hex>` and `ingest/<sha256(ref)>/`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
}

impl LocalStore {
    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<LocalStore> {
        let root = root.as_ref().to_path_buf();
        let blobs = root.join("blobs");
        let ingest = root.join("ingest");
        let sha256 = blobs.join(Algorithm::Sha256.as_str());
        for d in [&sha256, &ingest] {
            if !d.is_dir() {
                fs::create_dir_all(d)
                    .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
                // Make the new directories durable before blobs are renamed into them.
                for p in [d.as_path(), blobs.as_path(), root.as_path()] {
                    let _ = crate::writer::sync_dir(p);
                }
            }
        }
        Ok(LocalStore {
            root,
            blobs,
            ingest,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a committed blob (for zero-copy consumers); [`Error::NotFound`] when absent.
    /// The file is read-only; never write through it.
    pub fn path(&self, digest: &Digest) -> Result<PathBuf> {
        let p = self.blob_path(digest);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => Ok(p),
            Ok(_) => Err(Error::NotFound(digest.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            Err(e) => Err(Error::io(format!("stat blob {digest}"), e)),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.ingest
            .join(hex::encode(sha2::Sha256::digest(reference.as_bytes())))
    }

    /// Remove interrupted ingests whose data was last written more than `older_than` ago and
    /// that no writer holds. Returns the references removed.
    pub fn cleanup_stale_ingests(&self, older_than: Duration) -> Result<Vec<String>> {
        self.cleanup_ingests(|st| {
            SystemTime::now()
                .duration_since(st.updated_at)
                .map(|age| age >= older_than)
                .unwrap_or(false)
        })
    }

    /// Remove every unlocked ingest for which `pred` holds. Returns the references removed.
    pub fn cleanup_ingests(&self, pred: impl Fn(&IngestStatus) -> bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for (dir, st) in self.ingest_entries()? {
            if !pred(&st) {
                continue;
            }
            let Ok(lock) = lock_dir(&dir, &st.reference) else {
                continue;
            };
            if !still_linked(&lock) {
                continue;
            }
            fs::remove_dir_all(&dir)
                .map_err(|e| Error::io(format!("remove ingest {}", st.reference), e))?;
            removed.push(st.reference);
        }
        Ok(removed)
    }

    fn ingest_entries(&self) -> Result<Vec<(PathBuf, IngestStatus)>> {
        let rd = fs::read_dir(&self.ingest)
            .map_err(|e| Error::io(format!("list {}", self.ingest.display()), e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("list {}", self.ingest.display()), e))?;
            let dir = ent.path();
            let Ok(reference) = fs::read_to_string(dir.join("ref")) else {
                // Being created, or left by a crash before its ref was written.
                let reference = ent.file_name().to_string_lossy().into_owned();
                let t = fs::symlink_metadata(&dir)
                    .and_then(|m| m.modified())
                    .unwrap_or(UNIX_EPOCH);
                out.push((
                    dir,
                    IngestStatus {
                        reference,
                        offset: 0,
                        total: None,
                        expected: None,
                        started_at: t,
                        updated_at: t,
                    },
                ));
                continue;
            };
            let (total, expected) = recorded_expected(&dir);
            let data = fs::symlink_metadata(dir.join("data")).ok();
            let started_at = fs::read_to_string(dir.join("startedat"))
                .ok()
                .and_then(|s| s.trim().parse::<u128>().ok())
                .map(|n| UNIX_EPOCH + Duration::from_nanos(n.min(u64::MAX as u128) as u64))
                .unwrap_or(UNIX_EPOCH);
            out.push((
                dir,
                IngestStatus {
                    reference,
                    offset: data.as_ref().map(|m| m.len()).unwrap_or(0),
                    total,
                    expected,
                    started_at,
                    updated_at: data.and_then(|m| m.modified().ok()).unwrap_or(started_at),
                },
            ));
        }
        Ok(out)
    }
}

impl Store for LocalStore {
    fn info(&self, digest: &Digest) -> Result<Info> {
        let p = self.blob_path(digest);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => Ok(Info {
                digest: digest.clone(),
                size: m.len(),
                created: commit_time(&m),
            }),
            Ok(_) => Err(Error::NotFound(digest.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            Err(e) => Err(Error::io(format!("stat blob {digest}"), e)),
        }
    }

    fn reader(&self, digest: &Digest) -> Result<Blob> {
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => Error::io(format!("open blob {digest}"), e),
        })?;
        let m = f
            .metadata()
            .map_err(|e| Error::io(format!("stat blob {digest}"), e))?;
        if !m.is_file() {
            return Err(Error::NotFound(digest.clone()));
        }
        Ok(Blob::new(f, digest.clone(), m.len()))
    }

    fn writer(&self, reference: &str, expected: Option<Expected>) -> Result<Writer> {
        if reference.is_empty() {
            return Err(Error::InvalidInput("open ingest: empty reference".into()));
        }
        if let Some(e) = &expected {
            if self.exists(&e.digest)? {
                return Err(Error::AlreadyExists(e.digest.clone()));
            }
        }
        let dir = self.ingest_dir(reference);
        // A committer may remove the directory between our mkdir and our lock: retry then.
        let mut last = None;
        for _ in 0..5 {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("create ingest {reference}"), e)),
            }
            match Writer::open(reference, dir.clone(), self.blobs.clone(), expected.clone()) {
                Err(Error::IngestNotFound(_)) => continue,
                Err(Error::Locked(r)) if !dir.exists() => last = Some(Error::Locked(r)),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Locked(reference.to_string())))
    }

    fn abort(&self, reference: &str) -> Result<()> {
        let dir = self.ingest_dir(reference);
        let lock = lock_dir(&dir, reference)?;
        if !still_linked(&lock) {
            return Err(Error::IngestNotFound(reference.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove ingest {reference}"), e))
    }

    fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        fs::remove_file(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => Error::io(format!("delete blob {digest}"), e),
        })
    }

    fn list(&self) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let d = self.blobs.join(alg.as_str());
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("list {}", d.display()), e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(format!("list {}", d.display()), e))?;
                let name = ent.file_name();
                // Ignore anything that is not a well-formed digest (stray files).
                let Ok(digest) = Digest::new(alg, &name.to_string_lossy()) else {
                    continue;
                };
                let Ok(m) = ent.metadata() else { continue };
                if m.is_file() {
                    out.push(Info {
                        digest,
                        size: m.len(),
                        created: commit_time(&m),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let mut v: Vec<IngestStatus> = self.ingest_entries()?.into_iter().map(|(_, s)| s).collect();
        v.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(v)
    }
}
