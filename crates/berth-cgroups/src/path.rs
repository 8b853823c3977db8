//! Turning the OCI `cgroupsPath` into a cgroup path.

use crate::error::{invalid, CgroupError};

/// Where the container's cgroup lives, relative to what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupPath {
    /// Relative to the root of each hierarchy (the OCI "absolute" form).
    Absolute(Vec<String>),
    /// Relative to the caller's own cgroup in each hierarchy.
    Relative(Vec<String>),
}

impl CgroupPath {
    /// The path components.
    pub fn components(&self) -> &[String] {
        match self {
            CgroupPath::Absolute(c) | CgroupPath::Relative(c) => c,
        }
    }
}

/// Resolve an OCI `cgroupsPath`: absolute paths are taken from each hierarchy's root, relative
/// ones from the caller's cgroup, and `None` means `/berth/<id>`. systemd's `slice:prefix:name`
/// form is refused with [`CgroupError::Unsupported`].
pub fn resolve(cgroups_path: Option<&str>, container_id: &str) -> Result<CgroupPath, CgroupError> {
    if container_id.is_empty()
        || container_id.contains('/')
        || container_id == "."
        || container_id == ".."
        || container_id.contains('\0')
    {
        return Err(invalid(
            format!("container id {container_id:?}"),
            "must be a non-empty name without '/'",
        ));
    }
    let p = match cgroups_path {
        None | Some("") => {
            return Ok(CgroupPath::Absolute(vec![
                "berth".into(),
                container_id.into(),
            ]))
        }
        Some(p) => p,
    };
    if !p.starts_with('/') && p.split(':').count() == 3 {
        return Err(CgroupError::Unsupported(format!(
            "systemd cgroup path {p:?} (slice:prefix:name): berth manages cgroupfs directly; \
             give a path such as /berth/{container_id}"
        )));
    }
    let mut comps = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(invalid(format!("cgroupsPath {p:?}"), "'..' is not allowed")),
            c if c.contains('\0') => {
                return Err(invalid(format!("cgroupsPath {p:?}"), "NUL byte"));
            }
            c => comps.push(c.to_string()),
        }
    }
    if comps.is_empty() {
        return Err(invalid(
            format!("cgroupsPath {p:?}"),
            "must name a cgroup below the root",
        ));
    }
    Ok(if p.starts_with('/') {
        CgroupPath::Absolute(comps)
    } else {
        CgroupPath::Relative(comps)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_is_berth_id() {
        assert_eq!(
            resolve(None, "abc").unwrap(),
            CgroupPath::Absolute(v(&["berth", "abc"]))
        );
        assert_eq!(
            resolve(Some(""), "abc").unwrap(),
            CgroupPath::Absolute(v(&["berth", "abc"]))
        );
    }

    #[test]
    fn absolute_and_relative() {
        assert_eq!(
            resolve(Some("/a//b/./c/"), "x").unwrap(),
            CgroupPath::Absolute(v(&["a", "b", "c"]))
        );
        assert_eq!(
            resolve(Some("a/b"), "x").unwrap(),
            CgroupPath::Relative(v(&["a", "b"]))
        );
    }

    #[test]
    fn rejects_escapes_and_bad_ids() {
        assert!(matches!(
            resolve(Some("/a/../b"), "x"),
            Err(CgroupError::Invalid { .. })
        ));
        assert!(matches!(
            resolve(Some("/"), "x"),
            Err(CgroupError::Invalid { .. })
        ));
        assert!(resolve(None, "a/b").is_err());
        assert!(resolve(None, "..").is_err());
        assert!(resolve(None, "").is_err());
    }

    #[test]
    fn systemd_form_is_unsupported() {
        let e = resolve(Some("system.slice:berth:abc"), "abc").unwrap_err();
        assert!(matches!(e, CgroupError::Unsupported(_)));
        assert_eq!(e.kind(), berth_core::ErrorKind::Unsupported);
        assert!(e.to_string().contains("slice:prefix:name"), "{e}");
    }
}
