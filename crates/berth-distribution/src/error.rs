//! Errors of the registry client.

use berth_core::ErrorKind;

/// A registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest, blob or repository does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Authentication is required or failed.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Denied(String),
    /// The registry sent data that does not match its digest or size.
    #[error("{0}")]
    Corrupt(String),
    /// Bad input (a reference, a config file, a header).
    #[error("{0}")]
    Invalid(String),
    /// Something the client does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// Connecting or talking to the registry failed.
    #[error("{context}: {message}")]
    Transport {
        /// What was being done.
        context: String,
        /// The cause.
        message: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{context}: registry answered {status}: {message}")]
    Status {
        /// What was being done.
        context: String,
        /// HTTP status.
        status: u16,
        /// The registry's error message, when it sent one.
        message: String,
    },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
}

impl Error {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Denied(_) => ErrorKind::PermissionDenied,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Transport { .. } => ErrorKind::Internal,
            Error::Status { status, .. } => match status {
                400 => ErrorKind::InvalidInput,
                401 => ErrorKind::Unauthorized,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            },
            Error::Io { source, .. } => ErrorKind::from_io(source),
            Error::Image(e) => e.kind(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for berth_image::ImageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Image(i) => i,
            other => berth_image::ImageError::Store {
                kind: other.kind(),
                context: "registry".into(),
                message: other.to_string(),
            },
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The first error code of a registry's JSON error body in words (`MANIFEST_UNKNOWN` →
/// `manifest unknown`), as Docker prints it.
pub(crate) fn registry_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v.get("errors")?.get(0)?.get("code")?.as_str()?;
    Some(code.to_lowercase().replace('_', " "))
}

/// The first error of a registry's JSON error body (`{"errors":[{"code","message"}]}`):
/// its message, or its code in lower case, or the raw body.
pub(crate) fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<E>,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        if let Some(e) = b.errors.first() {
            if !e.message.is_empty() {
                return e.message.clone();
            }
            return e.code.to_lowercase().replace('_', " ");
        }
    }
    let s = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string();
    s
}
