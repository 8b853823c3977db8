//! Performing mounts returned as data.
//!
//! Overlay mounts go through the new mount API: `fsopen("overlay")`, one `fsconfig` call per
//! option and one `lowerdir+` per lower layer (Linux ≥ 6.8), so that no length limit applies to
//! the chain. Older kernels fall back to `mount(2)` with the joined option string, and, when
//! that exceeds a page, to `mount(8)` run in the layers' common parent directory with relative
//! layer paths (our snapshot ids are short numbers, so 128 layers fit).

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::Mount;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::{Error, Result};

/// The kernel accepts at most one page of mount data through `mount(2)`.
const MOUNT_DATA_MAX: usize = 4095;

/// Mount `mounts` in order on `target` (each on top of the previous). On failure, mounts
/// already made are undone.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let ctx = || format!("mount {} {} on {}", m.kind, m.source, target.display());
    let ro = m.is_readonly();
    match m.kind.as_str() {
        "bind" | "rbind" => {
            let recursive = m.kind == "rbind" || m.options.iter().any(|o| o == "rbind");
            let r = if recursive {
                rustix::mount::mount_bind_recursive(m.source.as_str(), target)
            } else {
                rustix::mount::mount_bind(m.source.as_str(), target)
            };
            r.map_err(|e| Error::io(ctx(), e.into()))?;
            if ro {
                if let Err(e) =
                    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
                {
                    let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
                    return Err(Error::io(format!("{}: remount read-only", ctx()), e.into()));
                }
            }
            Ok(())
        }
        "overlay" => mount_overlay(&m.options, target).map_err(|e| Error::io(ctx(), e)),
        _ => {
            let data: Vec<&str> = m
                .options
                .iter()
                .map(String::as_str)
                .filter(|o| *o != "ro" && *o != "rw")
                .collect();
            let data = CString::new(data.join(","))
                .map_err(|_| Error::InvalidInput(format!("{}: NUL in options", ctx())))?;
            let flags = if ro {
                MountFlags::RDONLY
            } else {
                MountFlags::empty()
            };
            rustix::mount::mount(
                m.source.as_str(),
                target,
                m.kind.as_str(),
                flags,
                Some(data.as_c_str()),
            )
            .map_err(|e| Error::io(ctx(), e.into()))
        }
    }
}

/// Split overlay options into (lower layers, other options, read-only).
fn split_overlay_options(options: &[String]) -> (Vec<String>, Vec<String>, bool) {
    let mut lowers = Vec::new();
    let mut rest = Vec::new();
    let mut ro = false;
    for o in options {
        if o == "ro" {
            ro = true;
        } else if o == "rw" {
        } else if let Some(v) = o.strip_prefix("lowerdir=") {
            lowers.extend(v.split(':').filter(|s| !s.is_empty()).map(str::to_string));
        } else {
            rest.push(o.clone());
        }
    }
    (lowers, rest, ro)
}

fn mount_overlay(options: &[String], target: &Path) -> io::Result<()> {
    let (lowers, rest, ro) = split_overlay_options(options);
    match mount_overlay_new_api(&lowers, &rest, ro, target) {
        Ok(()) => return Ok(()),
        // EINVAL: no "lowerdir+" (Linux < 6.8); ENOSYS: no fsopen.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(e.into()),
    }
    mount_overlay_legacy(&lowers, &rest, ro, target)
}

/// Kernels without `lowerdir+`: `mount(2)` with the joined options when they fit in a page,
/// otherwise [`mount_overlay_relative`].
fn mount_overlay_legacy(
    lowers: &[String],
    rest: &[String],
    ro: bool,
    target: &Path,
) -> io::Result<()> {
    let mut data = rest.to_vec();
    data.push(format!("lowerdir={}", lowers.join(":")));
    let data = data.join(",");
    let flags = if ro {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    if data.len() <= MOUNT_DATA_MAX {
        let c = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        return rustix::mount::mount("overlay", target, "overlay", flags, Some(c.as_c_str()))
            .map_err(Into::into);
    }
    mount_overlay_relative(lowers, rest, ro, target)
}

fn mount_overlay_new_api(
    lowers: &[String],
    rest: &[String],
    ro: bool,
    target: &Path,
) -> rustix::io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for o in rest {
        match o.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(&fs, k, v)?,
            None => rustix::mount::fsconfig_set_flag(&fs, o.as_str())?,
        }
    }
    for l in lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", l.as_str())?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    let attrs = if ro {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Old kernels, long chains: run `mount(8)` in the layers' common parent with relative paths.
fn mount_overlay_relative(
    lowers: &[String],
    rest: &[String],
    ro: bool,
    target: &Path,
) -> io::Result<()> {
    let mut dirs: Vec<PathBuf> = lowers.iter().map(PathBuf::from).collect();
    let mut keyed = Vec::new();
    for o in rest {
        if let Some((k, v)) = o.split_once('=') {
            if k == "upperdir" || k == "workdir" {
                dirs.push(PathBuf::from(v));
                keyed.push(k);
            }
        }
    }
    let base = common_parent(&dirs)
        .ok_or_else(|| io::Error::other("overlay layers have no common parent"))?;
    let rel = |p: &str| -> String {
        Path::new(p)
            .strip_prefix(&base)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string())
    };
    let mut opts: Vec<String> = rest
        .iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if k == "upperdir" || k == "workdir" => format!("{k}={}", rel(v)),
            _ => o.clone(),
        })
        .collect();
    let rel_lowers: Vec<String> = lowers.iter().map(|l| rel(l)).collect();
    opts.push(format!("lowerdir={}", rel_lowers.join(":")));
    if ro {
        opts.push("ro".into());
    }
    let target = std::path::absolute(target)?;
    let out = Command::new("mount")
        .current_dir(&base)
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(opts.join(","))
        .arg(&target)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mount(8): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn common_parent(dirs: &[PathBuf]) -> Option<PathBuf> {
    let first = dirs.first()?;
    let mut base = first.parent()?.to_path_buf();
    // Climb until every directory is beneath `base`.
    while !dirs.iter().all(|d| d.starts_with(&base)) {
        base = base.parent()?.to_path_buf();
    }
    Some(base)
}

/// Unmount everything mounted on `target` (stacked mounts included). Not mounted: Ok.
/// A busy mount is detached lazily.
pub fn unmount(target: &Path) -> Result<()> {
    for _ in 0..64 {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => continue,
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(target, UnmountFlags::DETACH)
                    .map_err(|e| Error::io(format!("unmount {}", target.display()), e.into()))?;
            }
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e.into())),
        }
    }
    Ok(())
}

/// Whether overlayfs mounts (with an upper layer and two lower layers) work in a scratch
/// directory under `dir`. The probe's mount is undone and its directory removed.
pub fn overlay_supported(dir: &Path) -> bool {
    let probe = dir.join(format!(".overlay-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&probe);
    let ok = (|| -> Result<bool> {
        for d in ["l1", "l2", "u", "w", "m"] {
            std::fs::create_dir_all(probe.join(d))
                .map_err(|e| Error::io(format!("create {}", probe.display()), e))?;
        }
        let p = |d: &str| probe.join(d).to_string_lossy().into_owned();
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("workdir={}", p("w")),
                format!("upperdir={}", p("u")),
                format!("lowerdir={}:{}", p("l1"), p("l2")),
            ],
        };
        let target = probe.join("m");
        if mount_all(std::slice::from_ref(&m), &target).is_err() {
            return Ok(false);
        }
        let _ = unmount(&target);
        Ok(true)
    })()
    .unwrap_or(false);
    let _ = std::fs::remove_dir_all(&probe);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_overlay_options() {
        let o: Vec<String> = ["ro", "index=off", "lowerdir=/a:/b", "upperdir=/u"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (l, r, ro) = split_overlay_options(&o);
        assert_eq!(l, vec!["/a", "/b"]);
        assert_eq!(r, vec!["index=off", "upperdir=/u"]);
        assert!(ro);
    }

    #[test]
    fn common_parent_of_layers() {
        let d: Vec<PathBuf> = ["/s/1/fs", "/s/22/fs", "/s/3/work"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(common_parent(&d), Some(PathBuf::from("/s")));
    }

    /// The old-kernel fallback (relative layer paths through mount(8) run in the layers'
    /// parent directory) mounts a 128-layer chain whose absolute option string exceeds a page.
    #[test]
    fn relative_fallback_mounts_long_chain() {
        let root = tempfile::Builder::new()
            .prefix("berthtest-mnt-")
            .tempdir()
            .unwrap();
        // A deliberately long base path.
        let base = root.path().join("x".repeat(120));
        let mut lowers = Vec::new();
        for i in 0..128 {
            let fs = base.join(i.to_string()).join("fs");
            std::fs::create_dir_all(&fs).unwrap();
            std::fs::write(fs.join(format!("f{i}")), i.to_string()).unwrap();
            lowers.push(fs.to_string_lossy().into_owned());
        }
        let up = base.join("200/fs");
        let work = base.join("200/work");
        let target = root.path().join("m");
        for d in [&up, &work, &target] {
            std::fs::create_dir_all(d).unwrap();
        }
        let rest = vec![
            "index=off".to_string(),
            format!("workdir={}", work.display()),
            format!("upperdir={}", up.display()),
        ];
        assert!(lowers.join(":").len() > MOUNT_DATA_MAX);
        mount_overlay_relative(&lowers, &rest, false, &target).unwrap();
        struct G<'a>(&'a Path);
        impl Drop for G<'_> {
            fn drop(&mut self) {
                let _ = unmount(self.0);
            }
        }
        let g = G(&target);
        for i in 0..128 {
            assert_eq!(
                std::fs::read_to_string(target.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        std::fs::write(target.join("new"), "x").unwrap();
        drop(g);
        assert!(up.join("new").exists());
    }

    /// The `mount(2)` fallback for short chains on kernels without `lowerdir+`.
    #[test]
    fn legacy_mount_of_a_short_chain() {
        let root = tempfile::Builder::new()
            .prefix("berthtest-mnt-")
            .tempdir()
            .unwrap();
        let p = |d: &str| root.path().join(d);
        for d in ["l1", "l2", "u", "w", "m"] {
            std::fs::create_dir(p(d)).unwrap();
        }
        std::fs::write(p("l1/a"), "l1").unwrap();
        std::fs::write(p("l2/a"), "l2").unwrap();
        std::fs::write(p("l2/b"), "l2").unwrap();
        let lowers = vec![
            p("l1").to_string_lossy().into_owned(),
            p("l2").to_string_lossy().into_owned(),
        ];
        let rest = vec![
            format!("workdir={}", p("w").display()),
            format!("upperdir={}", p("u").display()),
        ];
        mount_overlay_legacy(&lowers, &rest, true, &p("m")).unwrap();
        let target = p("m");
        struct G<'a>(&'a Path);
        impl Drop for G<'_> {
            fn drop(&mut self) {
                let _ = unmount(self.0);
            }
        }
        let _g = G(&target);
        // The nearest layer wins; read-only was applied.
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "l1");
        assert_eq!(std::fs::read_to_string(target.join("b")).unwrap(), "l2");
        assert!(std::fs::write(target.join("c"), "x").is_err());
    }
}
