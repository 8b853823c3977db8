//! The overlayfs snapshotter.

use std::fs;
use std::path::{Path, PathBuf};

use berth_core::Mount;

use crate::db::{Db, Row};
use crate::{usage, Error, Info, Kind, Result, Snapshotter, Usage};

/// Snapshots as overlayfs layers: `<root>/<id>/fs` holds a snapshot's own changes (the upper
/// directory while active, a lower layer once committed), `<root>/<id>/work` is overlay's
/// work directory.
pub struct OverlaySnapshotter {
    db: Db,
}

impl OverlaySnapshotter {
    /// Open (creating if needed) an overlay snapshotter at `root`. Does not check that overlay
    /// works; see [`crate::overlay_supported`] and [`crate::open`].
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let db = Db::open(root.as_ref())?;
        db.remove_orphans()?;
        Ok(OverlaySnapshotter { db })
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let row = self.db.create(key, parent, kind)?;
        let dir = self.db.dir(row.id);
        let made = fs::create_dir(&dir)
            .and_then(|_| fs::create_dir(dir.join("fs")))
            .and_then(|_| {
                if kind == Kind::Active {
                    fs::create_dir(dir.join("work"))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            self.db.delete_id(row.id);
            return Err(Error::io(
                format!("create snapshot {key} in {}", dir.display()),
                e,
            ));
        }
        self.mounts_of(&row)
    }

    fn mounts_of(&self, row: &Row) -> Result<Vec<Mount>> {
        let lowers: Vec<PathBuf> = self
            .db
            .ancestors(row)?
            .iter()
            .map(|p| self.db.dir(p.id).join("fs"))
            .collect();
        let dir = self.db.dir(row.id);
        match row.kind {
            Kind::Committed => Err(Error::InvalidState(format!(
                "mounts of snapshot {}: it is committed; prepare or view it",
                row.key
            ))),
            Kind::Active => Ok(active_mounts(&dir.join("fs"), &dir.join("work"), &lowers)),
            Kind::View => Ok(view_mounts(&dir.join("fs"), &lowers)),
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn bind(source: &Path, ro: bool) -> Mount {
    Mount {
        kind: "bind".into(),
        source: path_str(source),
        options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
    }
}

fn lowerdir(lowers: &[PathBuf]) -> String {
    let v: Vec<String> = lowers.iter().map(|p| path_str(p)).collect();
    format!("lowerdir={}", v.join(":"))
}

/// Mounts of an active snapshot with upper `fs`, overlay work dir `work` and lower layers
/// `lowers` (nearest first).
pub(crate) fn active_mounts(fs: &Path, work: &Path, lowers: &[PathBuf]) -> Vec<Mount> {
    if lowers.is_empty() {
        return vec![bind(fs, false)];
    }
    vec![Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", path_str(work)),
            format!("upperdir={}", path_str(fs)),
            lowerdir(lowers),
        ],
    }]
}

/// Mounts of a read-only view over `lowers` (nearest first); `empty` is used when there are none.
pub(crate) fn view_mounts(empty: &Path, lowers: &[PathBuf]) -> Vec<Mount> {
    match lowers {
        [] => vec![bind(empty, true)],
        [one] => vec![bind(one, true)],
        _ => vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec!["ro".into(), "index=off".into(), lowerdir(lowers)],
        }],
    }
}

impl Snapshotter for OverlaySnapshotter {
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
        // The work directory stays: the snapshot may still be mounted; remove() deletes it.
        self.db.commit(name, key).map(|_| ())
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
        usage::disk_usage(&[self.db.dir(row.id).join("fs")])
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
        Ok(self.db.dir(row.id).join("fs"))
    }

    fn name(&self) -> &'static str {
        "overlay"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_as_data() {
        let fs = Path::new("/s/3/fs");
        let work = Path::new("/s/3/work");
        let m = active_mounts(fs, work, &[]);
        assert_eq!(m[0].kind, "bind");
        assert_eq!(m[0].source, "/s/3/fs");
        assert!(!m[0].is_readonly());
        let lowers = vec![PathBuf::from("/s/2/fs"), PathBuf::from("/s/1/fs")];
        let m = active_mounts(fs, work, &lowers);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].kind, "overlay");
        assert!(m[0].options.contains(&"upperdir=/s/3/fs".to_string()));
        assert!(m[0].options.contains(&"workdir=/s/3/work".to_string()));
        assert!(m[0]
            .options
            .contains(&"lowerdir=/s/2/fs:/s/1/fs".to_string()));
        let v = view_mounts(fs, &lowers[..1]);
        assert_eq!(v[0].kind, "bind");
        assert_eq!(v[0].source, "/s/2/fs");
        assert!(v[0].is_readonly());
        let v = view_mounts(fs, &lowers);
        assert_eq!(v[0].kind, "overlay");
        assert!(v[0].is_readonly());
        assert!(!v[0].options.iter().any(|o| o.starts_with("upperdir")));
    }
}
