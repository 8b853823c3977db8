//! Errors of the metadata database and the garbage collector.

use berth_core::ErrorKind;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A metadata or GC failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named record does not exist ("image docker.io/library/x:latest not found").
    #[error("{0} not found")]
    NotFound(String),
    /// The record exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller's input is unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// A manifest, index or config reached by GC cannot be parsed; GC stops rather than guess.
    #[error("{0}")]
    Corrupt(String),
    /// The database failed.
    #[error("{context}: {source}")]
    Db {
        /// What failed.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] berth_content::Error),
    /// The snapshotter failed.
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::Error),
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
            Error::AlreadyExists(_) => ErrorKind::Conflict,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Corrupt(_) => ErrorKind::Corrupt,
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
            Error::Content(e) => e.kind(),
            Error::Snapshot(e) => e.kind(),
            Error::Io { source, .. } => ErrorKind::from_io(source),
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }
}
