//! The build cache: step results keyed by (parent, instruction after substitution, inputs'
//! content), persistent in SQLite (`<data root>/build/cache.db`), with a per-file hash cache
//! for COPY sources and LRU pruning.
//!
//! A cached layer's blob and snapshot are held in the metadata database
//! (`Holder("build-cache", key)`) so image GC keeps them; pruning releases the holds of the
//! least recently used entries and runs GC.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::Digest;
use berth_image::ImageService;
use berth_metadata::{Holder, Resource};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::BuildError;

/// Holder kind of cache entries in the metadata database.
pub const HOLDER_KIND: &str = "build-cache";

/// A cached step result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The layer the step produced (`None`: config-only step).
    pub layer: Option<CachedLayer>,
    /// When the step first ran (RFC 3339): reused so that cached rebuilds give the same id.
    pub created: String,
}

/// A cached layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLayer {
    /// diff id.
    pub diff_id: Digest,
    /// Blob digest in the content store.
    pub blob: Digest,
    /// Blob size.
    pub size: u64,
    /// Blob media type.
    pub media_type: String,
    /// The snapshot (chain id) it was committed as.
    pub chain_id: Digest,
}

/// What [`Cache::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed.
    pub entries: u64,
    /// Bytes of layer blobs whose cache entries were removed.
    pub reclaimed: u64,
}

/// The persistent build cache.
#[derive(Debug)]
pub struct Cache {
    conn: Mutex<Connection>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn digest(s: &str) -> Result<Digest, BuildError> {
    s.parse()
        .map_err(|e| BuildError::Store(format!("build cache: bad digest {s}: {e}")))
}

impl Cache {
    /// Open (or create) the cache database at `path`.
    pub fn open(path: &Path) -> Result<Cache, BuildError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS steps (
                key TEXT PRIMARY KEY,
                created TEXT NOT NULL,
                diff_id TEXT, blob TEXT, size INTEGER NOT NULL DEFAULT 0,
                media_type TEXT, chain_id TEXT,
                last_used INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS files (
                path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
                ino INTEGER NOT NULL, dev INTEGER NOT NULL, digest TEXT NOT NULL);",
        )?;
        Ok(Cache {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key`, marking it used.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, BuildError> {
        let c = self.conn();
        let row = c
            .query_row(
                "SELECT created, diff_id, blob, size, media_type, chain_id FROM steps WHERE key=?1",
                params![key],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((created, diff_id, blob, size, mt, chain)) = row else {
            return Ok(None);
        };
        c.execute(
            "UPDATE steps SET last_used=?2 WHERE key=?1",
            params![key, now_secs()],
        )?;
        let layer = match (diff_id, blob, mt, chain) {
            (Some(d), Some(b), Some(mt), Some(ch)) => Some(CachedLayer {
                diff_id: digest(&d)?,
                blob: digest(&b)?,
                size: size.max(0) as u64,
                media_type: mt,
                chain_id: digest(&ch)?,
            }),
            _ => None,
        };
        Ok(Some(Entry { layer, created }))
    }

    /// Record `entry` under `key`, holding its blob and snapshot against GC.
    pub fn put(&self, images: &ImageService, key: &str, entry: &Entry) -> Result<(), BuildError> {
        if let Some(l) = &entry.layer {
            let h = Holder::new(HOLDER_KIND, key);
            let db = images.db();
            db.add_hold(&h, &Resource::Content(l.blob.clone()))
                .map_err(|e| BuildError::Store(format!("hold cache blob {}: {e}", l.blob)))?;
            db.add_hold(&h, &Resource::Snapshot(l.chain_id.to_string()))
                .map_err(|e| BuildError::Store(format!("hold cache snapshot: {e}")))?;
        }
        let l = entry.layer.as_ref();
        self.conn().execute(
            "INSERT OR REPLACE INTO steps (key, created, diff_id, blob, size, media_type, chain_id, last_used)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            params![
                key,
                entry.created,
                l.map(|l| l.diff_id.to_string()),
                l.map(|l| l.blob.to_string()),
                l.map(|l| l.size as i64).unwrap_or(0),
                l.map(|l| l.media_type.clone()),
                l.map(|l| l.chain_id.to_string()),
                now_secs()
            ],
        )?;
        Ok(())
    }

    /// Forget `key` (e.g. its snapshot vanished).
    pub fn forget(&self, images: &ImageService, key: &str) -> Result<(), BuildError> {
        let _ = images.db().release_holder(&Holder::new(HOLDER_KIND, key));
        self.conn()
            .execute("DELETE FROM steps WHERE key=?1", params![key])?;
        Ok(())
    }

    /// Total bytes of cached layer blobs.
    pub fn size(&self) -> Result<u64, BuildError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COALESCE(SUM(size),0) FROM steps", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The hash of a file's content recorded for this (path, size, mtime, inode, device).
    pub fn file_digest(&self, path: &str, stat: (u64, i64, u64, u64)) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT digest FROM files WHERE path=?1 AND size=?2 AND mtime=?3 AND ino=?4 AND dev=?5",
                params![path, stat.0 as i64, stat.1, stat.2 as i64, stat.3 as i64],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
    }

    /// Remember a file's content hash.
    pub fn put_file_digest(&self, path: &str, stat: (u64, i64, u64, u64), digest: &str) {
        let _ = self.conn().execute(
            "INSERT OR REPLACE INTO files (path, size, mtime, ino, dev, digest) VALUES (?1,?2,?3,?4,?5,?6)",
            params![path, stat.0 as i64, stat.1, stat.2 as i64, stat.3 as i64, digest],
        );
    }

    /// Keep at most `max` rows of the per-file hash cache (the oldest written go first), so
    /// contexts extracted to fresh directories cannot grow it without bound.
    pub fn trim_files(&self, max: u64) -> Result<u64, BuildError> {
        let n = self.conn().execute(
            "DELETE FROM files WHERE rowid IN (SELECT rowid FROM files ORDER BY rowid ASC
             LIMIT MAX(0, (SELECT COUNT(*) FROM files) - ?1))",
            params![max as i64],
        )?;
        Ok(n as u64)
    }

    /// Remove least recently used entries until the cached layers take at most `keep_storage`
    /// bytes (`None`: remove everything when `all`, else only entries unused for 48 hours),
    /// then garbage-collect what nothing else holds.
    pub fn prune(
        &self,
        images: &ImageService,
        keep_storage: Option<u64>,
        all: bool,
    ) -> Result<PruneReport, BuildError> {
        let rows: Vec<(String, i64, i64)> = {
            let c = self.conn();
            let mut st = c.prepare(
                "SELECT key, size, last_used FROM steps ORDER BY last_used ASC, rowid ASC",
            )?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            v
        };
        let mut total: u64 = rows.iter().map(|r| r.1.max(0) as u64).sum();
        let cutoff = now_secs() - 48 * 3600;
        let mut report = PruneReport::default();
        for (key, size, last_used) in rows {
            let remove = match keep_storage {
                Some(keep) => total > keep,
                None => all || last_used < cutoff,
            };
            if !remove {
                continue;
            }
            self.forget(images, &key)?;
            total = total.saturating_sub(size.max(0) as u64);
            report.entries += 1;
            report.reclaimed += size.max(0) as u64;
        }
        if report.entries > 0 {
            images.gc()?;
        }
        Ok(report)
    }
}

/// The default cache size limit: 10% of the filesystem holding `root`, at most 20 GB.
pub fn default_limit(root: &Path) -> u64 {
    const MAX: u64 = 20_000_000_000;
    match rustix::fs::statvfs(root) {
        Ok(s) => (s.f_blocks.saturating_mul(s.f_frsize) / 10).min(MAX),
        Err(_) => MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_cache_is_bounded_and_exact() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(&d.path().join("c.db")).unwrap();
        for i in 0..10u64 {
            c.put_file_digest(&format!("/ctx/f{i}"), (i, 1, 2, 3), &format!("d{i}"));
        }
        assert_eq!(
            c.file_digest("/ctx/f3", (3, 1, 2, 3)).as_deref(),
            Some("d3")
        );
        // any change of size, mtime, inode or device misses
        assert_eq!(c.file_digest("/ctx/f3", (3, 9, 2, 3)), None);
        assert_eq!(c.file_digest("/ctx/f3", (3, 1, 9, 3)), None);
        assert_eq!(c.trim_files(4).unwrap(), 6);
        assert_eq!(c.file_digest("/ctx/f3", (3, 1, 2, 3)), None);
        assert_eq!(
            c.file_digest("/ctx/f9", (9, 1, 2, 3)).as_deref(),
            Some("d9")
        );
        assert_eq!(c.trim_files(4).unwrap(), 0);
    }
}
