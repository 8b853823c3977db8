//! The snapshot registry: one SQLite database per snapshotter root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{Error, Info, Kind, Result};

const SCHEMA_VERSION: i64 = 1;

/// One registered snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: i64,
    pub key: String,
    pub parent_id: Option<i64>,
    pub parent_key: Option<String>,
    pub kind: Kind,
    pub created: SystemTime,
}

impl Row {
    pub fn info(&self) -> Info {
        Info {
            key: self.key.clone(),
            parent: self.parent_key.clone(),
            kind: self.kind,
            created: self.created,
        }
    }
}

fn kind_to_i(k: Kind) -> i64 {
    match k {
        Kind::View => 0,
        Kind::Active => 1,
        Kind::Committed => 2,
    }
}

fn kind_from_i(i: i64) -> Kind {
    match i {
        0 => Kind::View,
        1 => Kind::Active,
        _ => Kind::Committed,
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The registry and the directory layout of a snapshotter root.
pub(crate) struct Db {
    conn: Mutex<Connection>,
    root: PathBuf,
}

const SELECT: &str = "SELECT s.id, s.key, s.parent, p.key, s.kind, s.created
     FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        key: r.get(1)?,
        parent_id: r.get(2)?,
        parent_key: r.get(3)?,
        kind: kind_from_i(r.get(4)?),
        created: UNIX_EPOCH + Duration::from_nanos(r.get::<_, i64>(5)?.max(0) as u64),
    })
}

impl Db {
    /// Open (creating and migrating) `root/metadata.db`.
    pub fn open(root: &Path) -> Result<Db> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        let path = root.join("metadata.db");
        let ctx = || format!("open snapshot registry {}", path.display());
        let conn = Connection::open(&path).map_err(|e| Error::db(ctx(), e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| Error::db(ctx(), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::db(ctx(), e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| Error::db(ctx(), e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| Error::db(ctx(), e))?;
        if version < 1 {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS snapshots (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    key TEXT NOT NULL UNIQUE,
                    parent INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
                    kind INTEGER NOT NULL,
                    created INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(|e| Error::db(ctx(), e))?;
        } else if version > SCHEMA_VERSION {
            return Err(Error::InvalidState(format!(
                "open snapshot registry {}: schema version {version} is newer than {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(Db {
            conn: Mutex::new(conn),
            root: root.to_path_buf(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory of snapshot `id`.
    pub fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    pub fn get(&self, key: &str) -> Result<Row> {
        let c = self.conn();
        c.query_row(&format!("{SELECT} WHERE s.key = ?1"), [key], row)
            .optional()
            .map_err(|e| Error::db(format!("look up snapshot {key}"), e))?
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    /// Register a new snapshot; returns its row (the directory is the caller's to create).
    pub fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Row> {
        if key.is_empty() {
            return Err(Error::InvalidInput("create snapshot: empty key".into()));
        }
        let mut c = self.conn();
        let ctx = || format!("create snapshot {key}");
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::db(ctx(), e))?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM snapshots WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| Error::db(ctx(), e))?;
        if exists.is_some() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let parent_id = match parent {
            None => None,
            Some(p) => {
                let (pid, pkind): (i64, i64) = tx
                    .query_row("SELECT id, kind FROM snapshots WHERE key = ?1", [p], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .map_err(|e| Error::db(ctx(), e))?
                    .ok_or_else(|| Error::NotFound(p.to_string()))?;
                if kind_from_i(pkind) != Kind::Committed {
                    return Err(Error::InvalidState(format!(
                        "create snapshot {key}: parent {p} is not committed"
                    )));
                }
                Some(pid)
            }
        };
        tx.execute(
            "INSERT INTO snapshots (key, parent, kind, created) VALUES (?1, ?2, ?3, ?4)",
            params![key, parent_id, kind_to_i(kind), now_nanos()],
        )
        .map_err(|e| Error::db(ctx(), e))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(|e| Error::db(ctx(), e))?;
        drop(c);
        self.get_id(id)
    }

    pub fn get_id(&self, id: i64) -> Result<Row> {
        let c = self.conn();
        c.query_row(&format!("{SELECT} WHERE s.id = ?1"), [id], row)
            .optional()
            .map_err(|e| Error::db(format!("look up snapshot #{id}"), e))?
            .ok_or_else(|| Error::NotFound(format!("#{id}")))
    }

    /// The ancestors of a snapshot, nearest first.
    pub fn ancestors(&self, r: &Row) -> Result<Vec<Row>> {
        let mut out: Vec<Row> = Vec::new();
        let mut next = r.parent_id;
        while let Some(id) = next {
            if out.len() > 10_000 {
                return Err(Error::InvalidState(format!(
                    "snapshot {}: parent chain too long or cyclic",
                    r.key
                )));
            }
            let p = self.get_id(id)?;
            next = p.parent_id;
            out.push(p);
        }
        Ok(out)
    }

    /// Turn the active snapshot `key` into the committed snapshot `name`.
    pub fn commit(&self, name: &str, key: &str) -> Result<Row> {
        if name.is_empty() {
            return Err(Error::InvalidInput("commit snapshot: empty name".into()));
        }
        let mut c = self.conn();
        let ctx = || format!("commit snapshot {key} as {name}");
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::db(ctx(), e))?;
        let (id, kind): (i64, i64) = tx
            .query_row(
                "SELECT id, kind FROM snapshots WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| Error::db(ctx(), e))?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        if kind_from_i(kind) != Kind::Active {
            return Err(Error::InvalidState(format!(
                "commit snapshot {key}: it is {}, not active",
                kind_from_i(kind).as_str()
            )));
        }
        if name != key {
            let taken: Option<i64> = tx
                .query_row("SELECT id FROM snapshots WHERE key = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| Error::db(ctx(), e))?;
            if taken.is_some() {
                return Err(Error::AlreadyExists(name.to_string()));
            }
        }
        tx.execute(
            "UPDATE snapshots SET key = ?1, kind = ?2, created = ?3 WHERE id = ?4",
            params![name, kind_to_i(Kind::Committed), now_nanos(), id],
        )
        .map_err(|e| Error::db(ctx(), e))?;
        tx.commit().map_err(|e| Error::db(ctx(), e))?;
        drop(c);
        self.get_id(id)
    }

    /// Unregister `key` (refused while it has children); returns the removed row.
    pub fn remove(&self, key: &str) -> Result<Row> {
        let r = self.get(key)?;
        let mut c = self.conn();
        let ctx = || format!("remove snapshot {key}");
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::db(ctx(), e))?;
        let children: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM snapshots WHERE parent = ?1",
                [r.id],
                |x| x.get(0),
            )
            .map_err(|e| Error::db(ctx(), e))?;
        if children > 0 {
            return Err(Error::HasChildren(key.to_string()));
        }
        let n = tx
            .execute("DELETE FROM snapshots WHERE id = ?1", [r.id])
            .map_err(|e| Error::db(ctx(), e))?;
        if n == 0 {
            return Err(Error::NotFound(key.to_string()));
        }
        tx.commit().map_err(|e| Error::db(ctx(), e))?;
        Ok(r)
    }

    /// Unregister by id, ignoring children (rollback of a failed create).
    pub fn delete_id(&self, id: i64) {
        let _ = self
            .conn()
            .execute("DELETE FROM snapshots WHERE id = ?1", [id]);
    }

    /// All snapshots in creation order (parents before children).
    pub fn list(&self) -> Result<Vec<Row>> {
        let c = self.conn();
        let mut st = c
            .prepare(&format!("{SELECT} ORDER BY s.id"))
            .map_err(|e| Error::db("list snapshots", e))?;
        let rows = st
            .query_map([], row)
            .map_err(|e| Error::db("list snapshots", e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| Error::db("list snapshots", e))?;
        Ok(rows)
    }

    /// Remove directories under the root that no registered snapshot owns (left by a crash
    /// between unregistering and deleting, or by a failed create).
    ///
    /// Also unregisters active snapshots and views whose directory is missing (a crash between
    /// registering and creating it) when nothing builds on them.
    pub fn remove_orphans(&self) -> Result<()> {
        let rows = self.list()?;
        let parents: HashSet<i64> = rows.iter().filter_map(|r| r.parent_id).collect();
        for r in &rows {
            if r.kind != Kind::Committed && !parents.contains(&r.id) && !self.dir(r.id).exists() {
                self.delete_id(r.id);
            }
        }
        let ids: HashSet<i64> = self.list()?.into_iter().map(|r| r.id).collect();
        let rd = std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("list {}", self.root.display()), e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(id) = name.to_str().and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            // Re-check: another process may have registered it since we listed.
            if !ids.contains(&id) && self.get_id(id).is_err() {
                let _ = std::fs::remove_dir_all(ent.path());
            }
        }
        Ok(())
    }
}
