//! The engine's own SQLite database, `<data-root>/engine.db` (WAL).
//!
//! Separate from berth-metadata's `berth.db` on purpose: image garbage collection holds that
//! database's write lock for a whole sweep, and container/volume state changes must not wait
//! for it. Each module owns its tables and creates them with `CREATE TABLE IF NOT EXISTS` at
//! open (volumes: `volumes`; the containers module: its own).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

use crate::EngineError;

/// A shared connection to `engine.db`. Calls are blocking: from async code go through
/// `tokio::task::spawn_blocking` unless the statement is trivially short.
#[derive(Debug)]
pub struct EngineDb {
    conn: Mutex<Connection>,
}

impl EngineDb {
    /// Open (or create) `path` in WAL mode with a 10 s busy timeout.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let what = || format!("open database {}", path.display());
        let conn = Connection::open(path).map_err(|e| EngineError::db(what(), e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| EngineError::db(what(), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| EngineError::db(what(), e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| EngineError::db(what(), e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| EngineError::db(what(), e))?;
        Ok(EngineDb {
            conn: Mutex::new(conn),
        })
    }

    /// Run `f` on the connection; `what` names the operation in errors.
    pub fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, EngineError> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|e| EngineError::db(what, e))
    }

    /// Run `f` in a transaction (committed when `f` succeeds).
    pub fn tx<T>(
        &self,
        what: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, EngineError> {
        self.with(what, |c| {
            let tx = c.transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })
    }
}
