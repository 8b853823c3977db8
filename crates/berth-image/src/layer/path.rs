//! Entry name normalisation: tar names to component lists relative to the root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::LayerError;

/// A cleaned relative path: no empty, `.` or `..` components. Empty means the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct RelPath {
    comps: Vec<Vec<u8>>,
}

impl RelPath {
    /// Clean a tar name: a leading `/` is dropped, `.` and empty components are dropped, `..`
    /// removes the previous component, and a `..` that would climb above the root is an error.
    /// NUL bytes and empty names are errors.
    pub(crate) fn clean(name: &[u8]) -> Result<Self, LayerError> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        if name.is_empty() {
            return Err(LayerError::unsafe_entry(shown(), "empty name"));
        }
        if name.contains(&0) {
            return Err(LayerError::unsafe_entry(
                shown(),
                "name contains a NUL byte",
            ));
        }
        let mut comps: Vec<Vec<u8>> = Vec::new();
        for c in name.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    if comps.pop().is_none() {
                        return Err(LayerError::unsafe_entry(
                            shown(),
                            "path climbs above the layer root",
                        ));
                    }
                }
                _ => comps.push(c.to_vec()),
            }
        }
        Ok(RelPath { comps })
    }

    /// True for the root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The components.
    pub(crate) fn comps(&self) -> &[Vec<u8>] {
        &self.comps
    }

    /// The last component (None for the root).
    pub(crate) fn file_name(&self) -> Option<&OsStr> {
        self.comps.last().map(|c| OsStr::from_bytes(c))
    }

    /// The parent path (the root for a single component; None for the root).
    pub(crate) fn parent(&self) -> Option<RelPath> {
        if self.comps.is_empty() {
            return None;
        }
        Some(RelPath {
            comps: self.comps[..self.comps.len() - 1].to_vec(),
        })
    }

    /// Build from components (each a single name).
    pub(crate) fn from_comps(comps: Vec<Vec<u8>>) -> Self {
        RelPath { comps }
    }

    /// A child path.
    pub(crate) fn join(&self, name: &[u8]) -> RelPath {
        let mut comps = self.comps.clone();
        comps.push(name.to_vec());
        RelPath { comps }
    }

    /// `a/b/c`, or `.` for the root: the form handed to openat2.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        if self.comps.is_empty() {
            return b".".to_vec();
        }
        self.comps.join(&b'/')
    }

    /// For messages.
    pub(crate) fn display(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    /// True when `self` is `other` or lies below it.
    pub(crate) fn starts_with(&self, other: &RelPath) -> bool {
        self.comps.starts_with(&other.comps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Result<String, ()> {
        RelPath::clean(s.as_bytes())
            .map(|p| p.display())
            .map_err(|_| ())
    }

    #[test]
    fn cleans_names() {
        assert_eq!(c("etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(c("/etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(c("./etc//passwd/"), Ok("etc/passwd".into()));
        assert_eq!(c("a/../b"), Ok("b".into()));
        assert_eq!(c("./"), Ok(".".into()));
        assert_eq!(c("/"), Ok(".".into()));
        assert_eq!(c("../x"), Err(()));
        assert_eq!(c("a/../../x"), Err(()));
        assert_eq!(c("/../x"), Err(()));
        assert_eq!(c(""), Err(()));
        assert_eq!(c("a\0b"), Err(()));
    }

    #[test]
    fn parents() {
        let p = RelPath::clean(b"a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().display(), "a/b");
        assert_eq!(p.file_name().unwrap(), "c");
        assert!(p.starts_with(&RelPath::clean(b"a").unwrap()));
        assert!(!p.starts_with(&RelPath::clean(b"b").unwrap()));
        assert_eq!(RelPath::default().parent(), None);
    }
}
