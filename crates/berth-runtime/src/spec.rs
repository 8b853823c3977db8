//! Loading and validating a bundle's config.json. Errors name the offending field
//! (`process.user.uid: invalid type: string "x", expected u32`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Parse config.json bytes into a spec, naming the field on type errors.
pub fn parse(data: &[u8]) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Error::Config(inner.to_string())
        } else {
            Error::Config(format!("{path}: {inner}"))
        }
    })
}

/// Load `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let f = bundle.join("config.json");
    let data = std::fs::read(&f).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Config(format!("{} does not exist", f.display()))
        } else {
            Error::io(format!("read {}", f.display()), e)
        }
    })?;
    parse(&data)
}

/// Check what the runtime needs before creating anything; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let bad = |m: String| Err(Error::Config(m));
    let Some(root) = spec.root() else {
        return bad("root: missing".into());
    };
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return bad(format!(
                "root.path: {} is not a directory",
                rootfs.display()
            ))
        }
        Err(_) => {
            return bad(format!(
                "root.path: rootfs ({}) does not exist",
                rootfs.display()
            ))
        }
    }
    let Some(process) = spec.process() else {
        return bad("process: missing".into());
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return bad("process.args: must not be empty".into());
    }
    if !process.cwd().is_absolute() {
        return bad(format!(
            "process.cwd: {} is not an absolute path",
            process.cwd().display()
        ));
    }
    let Some(linux) = spec.linux() else {
        return bad("linux: missing".into());
    };
    let mut seen = HashSet::new();
    let mut has_mnt = false;
    let mut has_user = false;
    for (i, ns) in linux
        .namespaces()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        if !seen.insert(ns.typ()) {
            return bad(format!(
                "linux.namespaces[{i}]: duplicate namespace {}",
                ns.typ()
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return bad(format!(
                    "linux.namespaces[{i}].path: {} is not absolute",
                    p.display()
                ));
            }
        }
        match ns.typ() {
            LinuxNamespaceType::Mount => has_mnt = true,
            LinuxNamespaceType::User => has_user = ns.path().is_none(),
            _ => {}
        }
    }
    if !has_mnt {
        return bad("linux.namespaces: a mount namespace is required".into());
    }
    let maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_ref().is_some_and(|v| !v.is_empty())
    };
    if has_user && (!maps(linux.uid_mappings()) || !maps(linux.gid_mappings())) {
        return bad(
            "linux.uidMappings: a new user namespace needs uidMappings and gidMappings".into(),
        );
    }
    if !has_user && (maps(linux.uid_mappings()) || maps(linux.gid_mappings())) {
        return bad("linux.uidMappings: mappings given without a new user namespace".into());
    }
    if linux.time_offsets().is_some() && !seen.contains(&LinuxNamespaceType::Time) {
        return bad("linux.timeOffsets: given without a time namespace".into());
    }
    if spec.hostname().is_some() && !seen.contains(&LinuxNamespaceType::Uts) {
        return bad("hostname: setting it needs a uts namespace".into());
    }
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","args":["sh"],"user":{"uid":"root","gid":0}},"root":{"path":"rootfs"}}"#;
        let e = parse(json).unwrap_err().to_string();
        assert!(e.contains("process.user.uid"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut spec = Spec::default();
        assert!(validate(&spec, dir.path()).is_ok());
        let mut p = spec.process().clone().unwrap();
        p.set_args(Some(vec![]));
        spec.set_process(Some(p));
        let e = validate(&spec, dir.path()).unwrap_err().to_string();
        assert!(e.contains("process.args"), "{e}");
        let e = validate(&Spec::default(), Path::new("/nonexistent-berthtest"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("root.path") && e.contains("does not exist"),
            "{e}"
        );
    }
}
