//! Errors of the snapshotters.

use berth_core::ErrorKind;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A snapshotter failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot with this key.
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    /// The snapshot still has children.
    #[error("remove snapshot {0}: it has children")]
    HasChildren(String),
    /// The operation does not fit the snapshot's state (commit of a view, parent not committed).
    #[error("{0}")]
    InvalidState(String),
    /// The caller's input is unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// The snapshot registry failed.
    #[error("{context}: {source}")]
    Db {
        /// What failed.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
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
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) | Error::HasChildren(_) => ErrorKind::Conflict,
            Error::InvalidState(_) | Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Db { source, .. } => match source {
                rusqlite::Error::SqliteFailure(e, _)
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) =>
                {
                    ErrorKind::Conflict
                }
                _ => ErrorKind::Internal,
            },
            Error::Io { source, .. } => ErrorKind::from_io(source),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }
}
