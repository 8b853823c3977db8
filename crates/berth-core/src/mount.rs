//! Mounts as data: what a snapshotter returns and a runtime performs.

use serde::{Deserialize, Serialize};

/// One mount to perform, in the shape of an OCI runtime-spec mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type, e.g. `overlay`, `bind`, `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source: a device, a path, or the filesystem name (`overlay`).
    pub source: String,
    /// Mount options, e.g. `lowerdir=...`, `ro`, `rbind`.
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the options ask for a read-only mount.
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_flag() {
        let m = Mount {
            kind: "bind".into(),
            source: "/x".into(),
            options: vec!["rbind".into(), "ro".into()],
        };
        assert!(m.is_readonly());
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec!["lowerdir=/a".into()],
        };
        assert!(!m.is_readonly());
    }
}
