//! The error type of berth-net.

use berth_core::ErrorKind;

/// Everything that can fail in berth-net.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Malformed or out-of-range input (a subnet, a port spec, a name).
    #[error("{0}")]
    Invalid(String),
    /// A named network or endpoint does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists already or is in use.
    #[error("{0}")]
    Conflict(String),
    /// The address pools are exhausted.
    #[error("{0}")]
    Exhausted(String),
    /// A netlink request failed.
    #[error("netlink {op}: {source}")]
    Netlink {
        /// What was being done ("add bridge bt1234").
        op: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Applying the nftables ruleset failed.
    #[error("nftables on table {table}: {message}")]
    Firewall {
        /// The table name.
        table: String,
        /// What nft said.
        message: String,
    },
    /// A local I/O failure (state file, sysctl, socket).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The feature is unavailable on this host.
    #[error("{0}")]
    Unsupported(String),
    /// Several errors collected during a teardown.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<NetError>),
}

impl NetError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::Invalid(_) => ErrorKind::InvalidInput,
            NetError::NotFound(_) => ErrorKind::NotFound,
            NetError::Conflict(_) | NetError::Exhausted(_) => ErrorKind::Conflict,
            NetError::Unsupported(_) => ErrorKind::Unsupported,
            NetError::Netlink { source, .. } | NetError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::PermissionDenied
            }
            NetError::Many(v) => v.first().map_or(ErrorKind::Internal, NetError::kind),
            _ => ErrorKind::Internal,
        }
    }

    #[allow(dead_code)]
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io {
            op: op.into(),
            source,
        }
    }

    /// Folds collected teardown errors into one result.
    pub fn collect(mut errs: Vec<NetError>) -> Result<(), NetError> {
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(NetError::Many(errs)),
        }
    }
}

/// Shorthand result.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
