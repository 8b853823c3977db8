//! The error type of berth-image's image-level operations.

use berth_core::ErrorKind;

/// An image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Input (a manifest, an archive, a reference, a --change) is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A format or feature berth does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// No such image, blob or entry.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the current state (e.g. image in use).
    #[error("{0}")]
    Conflict(String),
    /// Data does not match its digest or declared size.
    #[error("{0}")]
    Corrupt(String),
    /// An I/O operation failed; the context names what and on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A lower layer (content store, snapshotter, metadata, layer applier) failed.
    #[error("{context}: {message}")]
    Store {
        /// What was being done.
        context: String,
        /// The cause's message.
        message: String,
        /// The cause's kind.
        kind: ErrorKind,
    },
}

impl ImageError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_) => ErrorKind::InvalidInput,
            ImageError::Unsupported(_) => ErrorKind::Unsupported,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::Corrupt(_) => ErrorKind::Corrupt,
            ImageError::Io { source, .. } => ErrorKind::from_io(source),
            ImageError::Store { kind, .. } => *kind,
        }
    }

    /// Wrap an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach context to results of lower crates whose errors have `kind()`.
pub(crate) trait StoreContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError>;
}

/// Errors of lower layers: a message and a kind.
pub(crate) trait KindedError: std::fmt::Display {
    fn error_kind(&self) -> ErrorKind;
}

impl<T, E: KindedError> StoreContext<T> for Result<T, E> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::Store {
            context: context(),
            message: e.to_string(),
            kind: e.error_kind(),
        })
    }
}

impl KindedError for std::io::Error {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::from_io(self)
    }
}

impl KindedError for berth_core::reference::ReferenceError {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

impl KindedError for berth_content::Error {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}
