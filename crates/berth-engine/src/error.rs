//! The engine's error type. Every error carries an [`ErrorKind`], which maps to the HTTP status
//! the Docker Engine API answers with (`{"message": ...}` bodies, see [`crate::api`]).

use berth_core::ErrorKind;

/// An engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A failure of a given kind with a message that says what failed and on what.
    #[error("{message}")]
    Msg {
        /// The class (drives the HTTP status).
        kind: ErrorKind,
        /// The message shown to the user (`Error response from daemon: <message>`).
        message: String,
    },
    /// An image-service failure.
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    /// A database failure.
    #[error("{context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The cause.
        source: rusqlite::Error,
    },
    /// An I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on what.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl EngineError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EngineError::Msg {
            kind,
            message: message.into(),
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// 501.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Wrap an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
    /// Wrap a database error with context.
    pub fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        EngineError::Db {
            context: context.into(),
            source,
        }
    }

    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Msg { kind, .. } => *kind,
            EngineError::Image(e) => e.kind(),
            EngineError::Db { .. } => ErrorKind::Internal,
            EngineError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }

    /// The HTTP status of this error in the Docker Engine API.
    pub fn http_status(&self) -> u16 {
        self.kind().http_status()
    }
}
