//! Errors of the builder.

use berth_core::ErrorKind;

/// A build error. Messages say what failed and on what.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile did not parse, or an instruction's words did not expand.
    #[error("dockerfile parse error: {0}")]
    Parse(String),
    /// Invalid options or instruction arguments.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist (image, stage, file in the context).
    #[error("{0}")]
    NotFound(String),
    /// A feature berth does not support yet.
    #[error("{0}")]
    Unsupported(String),
    /// A RUN step exited with a non-zero code.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    StepFailed {
        /// The command as Docker prints it (`/bin/sh -c exit 3`).
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// An image service error.
    #[error("{0}")]
    Image(#[from] berth_image::ImageError),
    /// A snapshot error.
    #[error("{0}")]
    Snapshot(String),
    /// A content store or metadata error.
    #[error("{0}")]
    Store(String),
    /// A layer error (apply or diff).
    #[error("{0}")]
    Layer(#[from] berth_image::layer::LayerError),
    /// The build cache database.
    #[error("build cache: {0}")]
    Cache(#[from] rusqlite::Error),
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What failed, on what.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        BuildError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Parse(_) | BuildError::Invalid(_) => ErrorKind::InvalidInput,
            BuildError::NotFound(_) => ErrorKind::NotFound,
            BuildError::Unsupported(_) => ErrorKind::Unsupported,
            BuildError::StepFailed { .. } => ErrorKind::InvalidInput,
            BuildError::Image(e) => e.kind(),
            BuildError::Layer(e) => e.kind(),
            BuildError::Snapshot(_) | BuildError::Store(_) | BuildError::Cache(_) => {
                ErrorKind::Internal
            }
            BuildError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
        }
    }
}
