//! Image references with Docker's normalisation rules.
//!
//! `busybox` -> `docker.io/library/busybox:latest`, `localhost:5000/a/b@sha256:...` stays as is,
//! `index.docker.io/x/y` -> `docker.io/x/y:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::ErrorKind;

/// The registry Docker Hub references resolve to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The repository namespace of Docker Hub's official images.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// A reference parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// The repository name contains uppercase characters.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// Something else about the format is wrong.
    #[error("invalid reference format: {0:?}")]
    Format(String),
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid reference format: bad tag {0:?}")]
    Tag(String),
    /// The repository name is longer than 255 characters.
    #[error("invalid reference format: repository name must not be more than 255 characters")]
    TooLong,
    /// The digest part is invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl ReferenceError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// A normalised image reference: domain, repository path, optional tag, optional digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2
            && host[1..host.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

impl Reference {
    /// Parse and normalise a reference the way the docker CLI does.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag(t.to_string()));
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Format(s.to_string()));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(ReferenceError::Format(s.to_string()));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        if !path.split('/').all(valid_component) {
            return Err(ReferenceError::Format(s.to_string()));
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any (a reference without tag or digest gets `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// A copy with the given tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag(tag.to_string()));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// A copy with the given digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The short name as the docker CLI prints it: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The familiar form with tag and digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "index.docker.io/user/app:v1",
                "docker.io/user/app:v1",
                "user/app:v1",
            ),
            (
                "docker.io/library/alpine",
                "docker.io/library/alpine:latest",
                "alpine:latest",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            (
                "quay.io/x/y_z.w-v__u",
                "quay.io/x/y_z.w-v__u:latest",
                "quay.io/x/y_z.w-v__u:latest",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        let r = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{D}"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "-a",
            "a-",
            "a:",
            "a:-x",
            "a@sha256:00",
            "UPPER.io/x/Y",
            "a b",
            "x/.y",
            "a___b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            Reference::parse("Busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
        let long = "a".repeat(300);
        assert!(Reference::parse(&long).is_err());
    }
}
