//! Merging an overlay-form upper directory into a full tree (the native snapshotter's commit).
//!
//! Overlay form: a whiteout is a 0/0 character device (the path is deleted below), an opaque
//! directory carries `trusted.overlay.opaque=y` (the directory's lower contents are hidden).
//! The merge walks the upper tree top-down, deleting in the full tree what whiteouts, opaque
//! directories and type changes hide (never following symlinks: a path component is only
//! descended into after it was checked to be a real directory on both sides), then copies the
//! remaining upper entries over with `cp -a`.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::native::copy_tree;
use crate::{Error, Result};

const OPAQUE: &str = "trusted.overlay.opaque";

/// Whether `m` describes an overlay whiteout (a character device 0/0).
pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(p, OPAQUE, &mut buf[..]), Ok(n) if n >= 1 && buf[0] == b'y')
}

/// Remove `p` whatever it is, without following symlinks; absent is fine.
fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Apply the changes in `upper` (overlay form) onto the full tree `lower`.
pub(crate) fn apply_upper(upper: &Path, lower: &Path) -> Result<()> {
    prune(upper, lower)?;
    copy_tree(upper, lower)
}

/// Delete in `lower` what entries of `upper` hide; drop whiteouts and opaque markers from
/// `upper` so that only entries to copy remain.
fn prune(upper: &Path, lower: &Path) -> Result<()> {
    let rd = fs::read_dir(upper).map_err(|e| Error::io(format!("list {}", upper.display()), e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("list {}", upper.display()), e))?;
        let name = ent.file_name();
        let up = upper.join(&name);
        let lo = lower.join(&name);
        let m = fs::symlink_metadata(&up)
            .map_err(|e| Error::io(format!("stat {}", up.display()), e))?;
        let ctx = |what: &str, p: &Path| format!("merge layer: {what} {}", p.display());
        if is_whiteout(&m) {
            remove_any(&lo).map_err(|e| Error::io(ctx("delete", &lo), e))?;
            fs::remove_file(&up).map_err(|e| Error::io(ctx("drop whiteout", &up), e))?;
        } else if m.is_dir() {
            let opaque = is_opaque(&up);
            let lo_is_dir = fs::symlink_metadata(&lo)
                .map(|l| l.is_dir())
                .unwrap_or(false);
            if opaque || !lo_is_dir {
                remove_any(&lo).map_err(|e| Error::io(ctx("replace", &lo), e))?;
            }
            if opaque {
                rustix::fs::lremovexattr(&up, OPAQUE)
                    .map_err(|e| Error::io(ctx("drop opaque marker of", &up), e.into()))?;
            }
            prune(&up, &lo)?;
        } else {
            remove_any(&lo).map_err(|e| Error::io(ctx("replace", &lo), e))?;
        }
    }
    Ok(())
}
