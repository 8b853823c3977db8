//! The native (copy) snapshotter, for hosts without overlayfs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::Mount;

use crate::db::{Db, Row};
use crate::{merge, usage, Error, Info, Kind, Result, Snapshotter, Usage};

/// Snapshots as full copies: `<root>/<id>/fs` is the complete tree. An active snapshot also
/// has `<root>/<id>/upper`, where appliers write changes in overlay form; commit merges them
/// into `fs`, turning whiteouts into deletions.
pub struct NativeSnapshotter {
    db: Db,
}

/// Copy the tree `src` into the existing empty directory `dst`, preserving ownership, modes,
/// times, xattrs, hard links and special files (`cp -a`, reflinks where the filesystem can).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut from = src.as_os_str().to_owned();
    from.push("/.");
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg("--")
        .arg(&from)
        .arg(dst)
        .output()
        .map_err(|e| {
            Error::io(
                format!("copy {} to {}: run cp", src.display(), dst.display()),
                e,
            )
        })?;
    if !out.status.success() {
        return Err(Error::io(
            format!("copy {} to {}", src.display(), dst.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

impl NativeSnapshotter {
    /// Open (creating if needed) a native snapshotter at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let db = Db::open(root.as_ref())?;
        db.remove_orphans()?;
        Ok(NativeSnapshotter { db })
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let row = self.db.create(key, parent, kind)?;
        let dir = self.db.dir(row.id);
        let made = (|| {
            fs::create_dir(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
            let fsdir = dir.join("fs");
            fs::create_dir(&fsdir)
                .map_err(|e| Error::io(format!("create {}", fsdir.display()), e))?;
            if let Some(pid) = row.parent_id {
                copy_tree(&self.db.dir(pid).join("fs"), &fsdir)?;
            }
            if kind == Kind::Active {
                fs::create_dir(dir.join("upper"))
                    .map_err(|e| Error::io(format!("create {}/upper", dir.display()), e))?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            self.db.delete_id(row.id);
            return Err(e);
        }
        self.mounts_of(&row)
    }

    fn mounts_of(&self, row: &Row) -> Result<Vec<Mount>> {
        let ro = match row.kind {
            Kind::Committed => {
                return Err(Error::InvalidState(format!(
                    "mounts of snapshot {}: it is committed; prepare or view it",
                    row.key
                )))
            }
            Kind::Active => false,
            Kind::View => true,
        };
        Ok(vec![Mount {
            kind: "bind".into(),
            source: self
                .db
                .dir(row.id)
                .join("fs")
                .to_string_lossy()
                .into_owned(),
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        }])
    }
}

impl Snapshotter for NativeSnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let row = self.db.get(key)?;
        self.mounts_of(&row)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let row = self.db.get(key)?;
        if row.kind != Kind::Active {
            return Err(Error::InvalidState(format!(
                "commit snapshot {key}: it is {}, not active",
                row.kind.as_str()
            )));
        }
        let dir = self.db.dir(row.id);
        let upper = dir.join("upper");
        if upper.exists() {
            merge::apply_upper(&upper, &dir.join("fs"))?;
        }
        self.db.commit(name, key)?;
        let _ = fs::remove_dir_all(&upper);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        let row = self.db.remove(key)?;
        let dir = self.db.dir(row.id);
        fs::remove_dir_all(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| Error::io(format!("remove snapshot {key} ({})", dir.display()), e))
    }

    fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.db.get(key)?.info())
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let row = self.db.get(key)?;
        let dir = self.db.dir(row.id);
        usage::disk_usage(&[dir.join("fs"), dir.join("upper")])
    }

    fn list(&self) -> Result<Vec<Info>> {
        Ok(self.db.list()?.iter().map(Row::info).collect())
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        let row = self.db.get(key)?;
        if row.kind != Kind::Active {
            return Err(Error::InvalidState(format!(
                "upper dir of snapshot {key}: it is {}, not active",
                row.kind.as_str()
            )));
        }
        Ok(self.db.dir(row.id).join("upper"))
    }

    fn name(&self) -> &'static str {
        "native"
    }
}
