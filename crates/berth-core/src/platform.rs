//! Platforms (os/architecture/variant) as used by image indexes.

use serde::{Deserialize, Serialize};

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// GOARCH-style architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v8` for arm64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in Go's naming.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty())?.to_string();
        let architecture = it.next().filter(|x| !x.is_empty())?.to_string();
        let variant = it.next().map(str::to_string);
        if it.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an image for `other` runs here: same os and architecture, and the variant matches
    /// when both name one (arm64 images without a variant are v8).
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_parse() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        let p = Platform::parse(&h.to_string()).unwrap();
        assert!(h.matches(&p));
        assert!(Platform::parse("linux").is_none());
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert!(arm.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(!arm.matches(&Platform::parse("linux/arm/v7").unwrap()));
    }
}
