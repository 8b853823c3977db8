//! Error kinds shared by all berth crates.

use std::fmt;

/// The class of an error. Every library error exposes one through a `kind()` method so that
/// front ends (the Docker API, the CLI) can map it to a status code or an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named object does not exist (HTTP 404).
    NotFound,
    /// The object exists or is in a state that forbids the operation (HTTP 409).
    Conflict,
    /// The caller's input is malformed or out of range (HTTP 400).
    InvalidInput,
    /// The caller is not allowed to do this (HTTP 403).
    PermissionDenied,
    /// Authentication is required or failed (HTTP 401).
    Unauthorized,
    /// The operation is not supported on this host or by this implementation (HTTP 501).
    Unsupported,
    /// Stored or received data is corrupt, e.g. a digest mismatch (HTTP 400 when it came from the
    /// caller, 500 otherwise).
    Corrupt,
    /// An operating-system or other internal failure (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the Docker Engine API uses for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::InvalidInput => 400,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Unsupported => 501,
            ErrorKind::Corrupt => 400,
            ErrorKind::Internal => 500,
        }
    }

    /// Classify an `std::io::Error`.
    pub fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::AlreadyExists => ErrorKind::Conflict,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::InvalidInput | K::InvalidData => ErrorKind::InvalidInput,
            K::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::Conflict.http_status(), 409);
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(ErrorKind::from_io(&e), ErrorKind::NotFound);
    }
}
