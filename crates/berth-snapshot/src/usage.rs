//! Disk usage of snapshot directories.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result, Usage};

/// Sum `st_blocks * 512` and count inodes under `roots` (missing roots count as empty),
/// without following symlinks; hard-linked inodes count once.
pub(crate) fn disk_usage(roots: &[PathBuf]) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut u = Usage::default();
    for root in roots {
        match fs::symlink_metadata(root) {
            Ok(_) => walk(root, &mut seen, &mut u)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("stat {}", root.display()), e)),
        }
    }
    Ok(u)
}

fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>, u: &mut Usage) -> Result<()> {
    let m = fs::symlink_metadata(p).map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
    if seen.insert((m.dev(), m.ino())) {
        u.inodes += 1;
        u.size += m.blocks() * 512;
    }
    if m.is_dir() {
        let rd = fs::read_dir(p).map_err(|e| Error::io(format!("list {}", p.display()), e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("list {}", p.display()), e))?;
            walk(&ent.path(), seen, u)?;
        }
    }
    Ok(())
}
