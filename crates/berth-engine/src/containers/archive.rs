//! Filesystem views of a container: `changes` (the upper directory against the image's
//! layers) and `export` (a tar of the rootfs).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::EngineError;

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

/// `GET /containers/{id}/changes`: Kind 0 modified, 1 added, 2 deleted. `lowers` are the
/// image's layer directories (empty: everything in the upper directory counts as added).
pub fn changes_with(upper: &Path, lowers: &[PathBuf]) -> Result<Value, EngineError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| EngineError::io(format!("read {}", dir.display()), e))?;
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let md = match std::fs::symlink_metadata(upper.join(&r)) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let shown = format!("/{}", r.display());
            if is_whiteout(&md) {
                out.push(json!({"Path": shown, "Kind": 2}));
                continue;
            }
            let in_lower = lowers
                .iter()
                .any(|l| std::fs::symlink_metadata(l.join(&r)).is_ok());
            out.push(json!({"Path": shown, "Kind": if in_lower { 0 } else { 1 }}));
            if md.is_dir() {
                stack.push(r);
            }
        }
    }
    out.sort_by(|a, b| a["Path"].as_str().cmp(&b["Path"].as_str()));
    Ok(Value::Array(out))
}

/// The lower directories of an overlay mount's options.
pub fn lowers_of(mounts: &[berth_core::Mount]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for m in mounts {
        for o in &m.options {
            if let Some(l) = o.strip_prefix("lowerdir=") {
                v.extend(l.split(':').map(PathBuf::from));
            } else if let Some(l) = o.strip_prefix("lowerdir+=") {
                v.push(PathBuf::from(l));
            }
        }
    }
    v
}

/// A tar of `root` (symlinks archived as links, never followed).
pub fn tar_dir(root: &Path, w: impl std::io::Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", root)?;
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "x").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/passwd"), "y").unwrap();
        std::fs::write(upper.join("new"), "n").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &upper.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        let v = changes_with(&upper, &[lower]).unwrap();
        assert_eq!(
            v,
            json!([
                {"Path": "/etc", "Kind": 0},
                {"Path": "/etc/passwd", "Kind": 0},
                {"Path": "/gone", "Kind": 2},
                {"Path": "/new", "Kind": 1},
            ])
        );
    }
}
