//! The registry's metadata in SQLite: repositories, blob links, manifests (with their
//! references, subject and artifact type), tags and uploads. Blob *bytes* live in the content
//! store; a blob is "in" a repository when linked here. Every multi-row change is one
//! transaction; writers take SQLite's write lock up front (`BEGIN IMMEDIATE`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};

/// Times (`last_used`, `created`, `started`) are milliseconds since the epoch.
const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS repos(name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL, last_used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS repo_blobs(repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, digest));
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE IF NOT EXISTS manifests(
  repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
  subject TEXT, artifact_type TEXT, annotations TEXT, created INTEGER NOT NULL,
  PRIMARY KEY(repo, digest));
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject);
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests(digest);
CREATE TABLE IF NOT EXISTS manifest_refs(repo TEXT NOT NULL, digest TEXT NOT NULL, child TEXT NOT NULL,
  PRIMARY KEY(repo, digest, child));
CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs(child);
CREATE TABLE IF NOT EXISTS tags(repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, tag));
CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo, digest);
CREATE TABLE IF NOT EXISTS uploads(id TEXT PRIMARY KEY, repo TEXT NOT NULL, started INTEGER NOT NULL);
";

/// How recent a blob's `last_used` may be before a read refreshes it.
pub const TOUCH_EVERY_MS: i64 = 1000;

/// Seconds since the epoch (token times).
pub(crate) fn now_secs() -> i64 {
    now_millis() / 1000
}

/// Milliseconds since the epoch (all times stored in the database).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored manifest's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// Its digest.
    pub digest: String,
    /// The media type it was pushed with.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A manifest with a subject, as the referrers API lists it.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The referrer's descriptor fields.
    pub row: ManifestRow,
    /// Its artifact type (artifactType, else config.mediaType).
    pub artifact_type: Option<String>,
    /// Its annotations (JSON object) if any.
    pub annotations: Option<String>,
}

/// A manifest to record.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Identity.
    pub row: ManifestRow,
    /// The subject digest, if any.
    pub subject: Option<String>,
    /// Artifact type for the referrers API.
    pub artifact_type: Option<String>,
    /// Annotations JSON.
    pub annotations: Option<String>,
    /// Blobs it references: (digest, declared size).
    pub blobs: Vec<(String, u64)>,
    /// Manifests it references (an index's children).
    pub manifests: Vec<String>,
    /// Tags to point at it.
    pub tags: Vec<String>,
}

/// Why a manifest was refused.
#[derive(Debug)]
pub enum PutRefused {
    /// A referenced blob or manifest is not in the repository.
    Missing(String),
    /// A referenced blob's declared size is not its stored size.
    SizeMismatch(String, u64, u64),
}

/// The metadata database.
pub struct Meta {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta").finish_non_exhaustive()
    }
}

fn ensure_repo(tx: &rusqlite::Transaction<'_>, repo: &str) -> rusqlite::Result<()> {
    tx.execute("INSERT OR IGNORE INTO repos(name) VALUES (?1)", [repo])?;
    Ok(())
}

impl Meta {
    /// Open (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Meta> {
        let ctx = format!("open registry database {}", path.display());
        let conn = Connection::open(path).map_err(Error::db(ctx.clone()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(Error::db(ctx.clone()))?;
        conn.execute_batch(SCHEMA).map_err(Error::db(ctx))?;
        Ok(Meta {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(Error::db(what.to_string()))
    }

    fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.with(what, |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Whether the repository is known (anything was ever pushed to it and not all deleted).
    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        self.with("look up repository", |c| {
            c.query_row("SELECT 1 FROM repos WHERE name=?1", [repo], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    /// The size of `digest` if linked into `repo`; with `touch`, marks the blob as used now
    /// (so a GC grace period protects it between a client's HEAD and its manifest PUT).
    ///
    /// A blob used in the last [`TOUCH_EVERY_MS`] is not written again (pull-heavy loads do
    /// not turn every GET into a write); the grace period is meant to be far longer.
    pub fn blob_in_repo(&self, repo: &str, digest: &str, touch: bool) -> Result<Option<u64>> {
        let found = self.with("look up blob", |c| {
            // A manifest of the repository is also one of its blobs (as in the CNCF registry).
            c.query_row(
                "SELECT b.size, b.last_used FROM blobs b WHERE b.digest=?2 AND (
                   EXISTS (SELECT 1 FROM repo_blobs r WHERE r.repo=?1 AND r.digest=?2)
                   OR EXISTS (SELECT 1 FROM manifests m WHERE m.repo=?1 AND m.digest=?2))",
                params![repo, digest],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
        })?;
        let size = found.map(|(s, _)| s);
        let stale = found.is_some_and(|(_, t)| now_millis() - t > TOUCH_EVERY_MS);
        if stale && touch {
            self.write("touch blob", |tx| {
                tx.execute(
                    "UPDATE blobs SET last_used=?2 WHERE digest=?1",
                    params![digest, now_millis()],
                )
            })?;
        }
        Ok(size.map(|s| s as u64))
    }

    /// Record a committed blob and link it into `repo`.
    pub fn link_blob(&self, repo: &str, digest: &str, size: u64) -> Result<()> {
        self.write("link blob", |tx| {
            ensure_repo(tx, repo)?;
            tx.execute(
                "INSERT INTO blobs(digest, size, last_used) VALUES (?1, ?2, ?3)
                 ON CONFLICT(digest) DO UPDATE SET last_used=excluded.last_used",
                params![digest, size as i64, now_millis()],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO repo_blobs(repo, digest) VALUES (?1, ?2)",
                params![repo, digest],
            )?;
            Ok(())
        })
    }

    /// Unlink a blob from `repo`; false when it was not linked.
    pub fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        self.write("unlink blob", |tx| {
            let n = tx.execute(
                "DELETE FROM repo_blobs WHERE repo=?1 AND digest=?2",
                params![repo, digest],
            )?;
            Ok(n > 0)
        })
    }

    /// Record a manifest after checking, in the same transaction, that everything it
    /// references is in the repository.
    pub fn put_manifest(
        &self,
        repo: &str,
        m: &NewManifest,
    ) -> Result<std::result::Result<(), PutRefused>> {
        self.write("record manifest", |tx| {
            for (d, size) in &m.blobs {
                let got: Option<i64> = tx
                    .query_row(
                        "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest=r.digest
                         WHERE r.repo=?1 AND r.digest=?2",
                        params![repo, d],
                        |r| r.get(0),
                    )
                    .optional()?;
                match got {
                    None => return Ok(Err(PutRefused::Missing(d.clone()))),
                    Some(s) if s as u64 != *size => {
                        return Ok(Err(PutRefused::SizeMismatch(d.clone(), *size, s as u64)))
                    }
                    Some(_) => {}
                }
            }
            for d in &m.manifests {
                let found = tx
                    .query_row(
                        "SELECT 1 FROM manifests WHERE repo=?1 AND digest=?2",
                        params![repo, d],
                        |_| Ok(()),
                    )
                    .optional()?;
                if found.is_none() {
                    return Ok(Err(PutRefused::Missing(d.clone())));
                }
            }
            ensure_repo(tx, repo)?;
            let now = now_millis();
            tx.execute(
                "INSERT INTO blobs(digest, size, last_used) VALUES (?1, ?2, ?3)
                 ON CONFLICT(digest) DO UPDATE SET last_used=excluded.last_used",
                params![m.row.digest, m.row.size as i64, now],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO manifests(repo, digest, media_type, size, subject,
                   artifact_type, annotations, created) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![
                    repo,
                    m.row.digest,
                    m.row.media_type,
                    m.row.size as i64,
                    m.subject,
                    m.artifact_type,
                    m.annotations,
                    now
                ],
            )?;
            tx.execute(
                "DELETE FROM manifest_refs WHERE repo=?1 AND digest=?2",
                params![repo, m.row.digest],
            )?;
            for child in m.blobs.iter().map(|(d, _)| d).chain(m.manifests.iter()) {
                tx.execute(
                    "INSERT OR IGNORE INTO manifest_refs(repo, digest, child) VALUES (?1,?2,?3)",
                    params![repo, m.row.digest, child],
                )?;
            }
            for t in &m.tags {
                tx.execute(
                    "INSERT OR REPLACE INTO tags(repo, tag, digest) VALUES (?1,?2,?3)",
                    params![repo, t, m.row.digest],
                )?;
            }
            Ok(Ok(()))
        })
    }

    /// Resolve a tag or digest in `repo`.
    pub fn manifest(
        &self,
        repo: &str,
        reference: &str,
        by_digest: bool,
    ) -> Result<Option<ManifestRow>> {
        let sql = if by_digest {
            "SELECT digest, media_type, size FROM manifests WHERE repo=?1 AND digest=?2"
        } else {
            "SELECT m.digest, m.media_type, m.size FROM tags t JOIN manifests m
             ON m.repo=t.repo AND m.digest=t.digest WHERE t.repo=?1 AND t.tag=?2"
        };
        self.with("look up manifest", |c| {
            c.query_row(sql, params![repo, reference], |r| {
                Ok(ManifestRow {
                    digest: r.get(0)?,
                    media_type: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()
        })
    }

    /// Delete a manifest by digest with the tags pointing at it; false when absent.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool> {
        self.write("delete manifest", |tx| {
            let n = tx.execute(
                "DELETE FROM manifests WHERE repo=?1 AND digest=?2",
                params![repo, digest],
            )?;
            tx.execute(
                "DELETE FROM manifest_refs WHERE repo=?1 AND digest=?2",
                params![repo, digest],
            )?;
            tx.execute(
                "DELETE FROM tags WHERE repo=?1 AND digest=?2",
                params![repo, digest],
            )?;
            Ok(n > 0)
        })
    }

    /// Delete a tag; false when absent.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.write("delete tag", |tx| {
            Ok(tx.execute(
                "DELETE FROM tags WHERE repo=?1 AND tag=?2",
                params![repo, tag],
            )? > 0)
        })
    }

    /// All tags of `repo`, sorted; `None` when the repository is unknown.
    pub fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        if !self.repo_exists(repo)? {
            return Ok(None);
        }
        self.with("list tags", |c| {
            let mut st = c.prepare("SELECT tag FROM tags WHERE repo=?1")?;
            let mut v: Vec<String> = st
                .query_map([repo], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            v.sort();
            Ok(Some(v))
        })
    }

    /// All repository names, sorted.
    pub fn catalog(&self) -> Result<Vec<String>> {
        self.with("list repositories", |c| {
            let mut st = c.prepare("SELECT name FROM repos")?;
            let mut v: Vec<String> = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            v.sort();
            Ok(v)
        })
    }

    /// Manifests of `repo` whose subject is `subject`, sorted by digest.
    pub fn referrers(&self, repo: &str, subject: &str) -> Result<Vec<Referrer>> {
        self.with("list referrers", |c| {
            let mut st = c.prepare(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo=?1 AND subject=?2 ORDER BY digest",
            )?;
            let v = st
                .query_map(params![repo, subject], |r| {
                    Ok(Referrer {
                        row: ManifestRow {
                            digest: r.get(0)?,
                            media_type: r.get(1)?,
                            size: r.get::<_, i64>(2)? as u64,
                        },
                        artifact_type: r.get(3)?,
                        annotations: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(v)
        })
    }

    /// Record a new upload session.
    pub fn create_upload(&self, id: &str, repo: &str) -> Result<()> {
        self.write("record upload", |tx| {
            ensure_repo(tx, repo)?;
            tx.execute(
                "INSERT INTO uploads(id, repo, started) VALUES (?1, ?2, ?3)",
                params![id, repo, now_millis()],
            )?;
            Ok(())
        })
    }

    /// The repository of an upload session.
    pub fn upload_repo(&self, id: &str) -> Result<Option<String>> {
        self.with("look up upload", |c| {
            c.query_row("SELECT repo FROM uploads WHERE id=?1", [id], |r| r.get(0))
                .optional()
        })
    }

    /// Forget an upload session.
    pub fn delete_upload(&self, id: &str) -> Result<bool> {
        self.write("delete upload", |tx| {
            Ok(tx.execute("DELETE FROM uploads WHERE id=?1", [id])? > 0)
        })
    }

    /// Upload sessions: (id, started).
    pub fn uploads(&self) -> Result<Vec<(String, i64)>> {
        self.with("list uploads", |c| {
            let mut st = c.prepare("SELECT id, started FROM uploads")?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(v)
        })
    }

    // ---- garbage collection ----

    /// Delete untagged manifests whose subject is absent from their repository and that are
    /// older than `cutoff` (referrers live as long as their subject). Returns how many.
    pub fn drop_orphan_referrers(&self, cutoff: i64) -> Result<usize> {
        self.write("drop orphaned referrers", |tx| {
            let mut total = 0;
            loop {
                let orphans: Vec<(String, String)> = {
                    let mut st = tx.prepare(
                        "SELECT m.repo, m.digest FROM manifests m
                         WHERE m.subject IS NOT NULL AND m.created < ?1
                           AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo=m.repo AND s.digest=m.subject)
                           AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo=m.repo AND t.digest=m.digest)",
                    )?;
                    let v = st
                        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    v
                };
                if orphans.is_empty() {
                    return Ok(total);
                }
                for (repo, d) in &orphans {
                    tx.execute("DELETE FROM manifests WHERE repo=?1 AND digest=?2", params![repo, d])?;
                    tx.execute("DELETE FROM manifest_refs WHERE repo=?1 AND digest=?2", params![repo, d])?;
                }
                total += orphans.len();
            }
        })
    }

    /// Every digest reachable from a manifest (the manifests themselves and their children).
    pub fn marked(&self) -> Result<HashSet<String>> {
        self.with("mark reachable blobs", |c| {
            let mut set = HashSet::new();
            let mut st =
                c.prepare("SELECT digest FROM manifests UNION SELECT child FROM manifest_refs")?;
            for d in st.query_map([], |r| r.get::<_, String>(0))? {
                set.insert(d?);
            }
            Ok(set)
        })
    }

    /// Forget `digest` if it is still unreferenced and unused since `cutoff`; true when the
    /// blob may now be deleted from the store. Decided in one write transaction, so a manifest
    /// PUT either committed before (the blob is referenced: kept) or sees the blob gone.
    pub fn sweep_blob(&self, digest: &str, cutoff: i64) -> Result<bool> {
        self.write("sweep blob", |tx| {
            let referenced = tx
                .query_row(
                    "SELECT 1 WHERE EXISTS (SELECT 1 FROM manifests WHERE digest=?1)
                       OR EXISTS (SELECT 1 FROM manifest_refs WHERE child=?1)",
                    [digest],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if referenced {
                return Ok(false);
            }
            let last_used: Option<i64> = tx
                .query_row(
                    "SELECT last_used FROM blobs WHERE digest=?1",
                    [digest],
                    |r| r.get(0),
                )
                .optional()?;
            if last_used.is_some_and(|t| t >= cutoff) {
                return Ok(false);
            }
            tx.execute("DELETE FROM blobs WHERE digest=?1", [digest])?;
            tx.execute("DELETE FROM repo_blobs WHERE digest=?1", [digest])?;
            Ok(true)
        })
    }
}
