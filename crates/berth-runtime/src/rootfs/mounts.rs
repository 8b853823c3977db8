//! Performing a [`MountPlan`](super::plan::MountPlan) inside the rootfs.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, OFlags};

use super::fsops::{
    attach, clone_host_tree, copy_tree, mkdir_all_in_root, new_fs, open_in_root, set_attrs,
    set_propagation, Leaf,
};
use super::options::{AttrChange, MountOptions};
use super::plan::{
    cgroup_layout, cgroup_symlinks, parse_mountinfo, CgroupLayout, MountKind, PlannedMount,
    CGROUP_ATTRS,
};
use super::RootfsError;
use berth_sys::mount::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// What every mount needs to know.
pub struct Ctx<'a> {
    /// `O_PATH` fd of the rootfs (after its self-bind).
    pub root: BorrowedFd<'a>,
    /// Bundle directory, anchoring relative bind sources.
    pub bundle: &'a Path,
    /// In a user namespace: keep locked flags instead of failing.
    pub userns: bool,
    /// In a cgroup namespace: mount cgroup filesystems instead of binding host directories.
    pub cgroupns: bool,
}

/// Perform one planned mount.
pub fn perform(ctx: &Ctx<'_>, m: &PlannedMount) -> Result<(), RootfsError> {
    match &m.kind {
        MountKind::Bind => bind(ctx, m),
        MountKind::Fs(t) => {
            let op = format!("mount {} on {}", label(m, t), m.destination);
            fs(ctx, m, t, &m.options, &op)
        }
        MountKind::Sysfs => sysfs(ctx, m),
        MountKind::Cgroup { .. } => cgroup(ctx, m),
    }
}

fn label<'a>(m: &'a PlannedMount, fstype: &'a str) -> &'a str {
    match m.source.as_deref() {
        Some(s) if !s.is_empty() && s != "none" => s,
        _ => fstype,
    }
}

/// Apply `opts`' attributes on a detached tree. In a user namespace flags locked by the
/// parent namespace cannot be cleared: retry keeping them, as runc does.
fn apply_attrs(tree: BorrowedFd<'_>, opts: &MountOptions, userns: bool) -> io::Result<()> {
    for (change, rec) in [(opts.attrs, false), (opts.rec_attrs, true)] {
        match set_attrs(tree, change, rec) {
            Err(e) if userns && e.raw_os_error() == Some(libc::EPERM) && change.clr != 0 => {
                set_attrs(
                    tree,
                    AttrChange {
                        set: change.set,
                        clr: 0,
                    },
                    rec,
                )?
            }
            r => r?,
        }
    }
    Ok(())
}

fn apply_propagation(ctx: &Ctx<'_>, m: &PlannedMount, op: &str) -> Result<(), RootfsError> {
    if m.options.propagation.is_empty() {
        return Ok(());
    }
    let fd =
        open_in_root(ctx.root, &m.destination, OFlags::PATH).map_err(|e| RootfsError::os(op, e))?;
    for &(p, rec) in &m.options.propagation {
        set_propagation(fd.as_fd(), p, rec).map_err(|e| RootfsError::os(op, e))?;
    }
    Ok(())
}

fn bind_source(ctx: &Ctx<'_>, src: &str) -> String {
    if Path::new(src).is_absolute() {
        src.to_string()
    } else {
        ctx.bundle.join(src).to_string_lossy().into_owned()
    }
}

/// Bind `src` (a host path) on `dest` with `opts`.
fn bind_path(
    ctx: &Ctx<'_>,
    src: &str,
    dest: &str,
    opts: &MountOptions,
    op: &str,
) -> Result<OwnedFd, RootfsError> {
    let tree = clone_host_tree(src, opts.recursive_bind).map_err(|e| RootfsError::os(op, e))?;
    let st = rustix::fs::fstat(&tree).map_err(|e| RootfsError::os(op, e))?;
    let leaf = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        Leaf::Dir
    } else {
        Leaf::File
    };
    let target = mkdir_all_in_root(ctx.root, dest, leaf, "mount destination")?;
    apply_attrs(tree.as_fd(), opts, ctx.userns).map_err(|e| RootfsError::os(op, e))?;
    attach(tree.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(op, e))?;
    Ok(target)
}

fn bind(ctx: &Ctx<'_>, m: &PlannedMount) -> Result<(), RootfsError> {
    let src = bind_source(ctx, m.source.as_deref().unwrap_or_default());
    let op = format!("bind {} on {}", src, m.destination);
    bind_path(ctx, &src, &m.destination, &m.options, &op)?;
    apply_propagation(ctx, m, &op)
}

fn fs(
    ctx: &Ctx<'_>,
    m: &PlannedMount,
    fstype: &str,
    opts: &MountOptions,
    op: &str,
) -> Result<(), RootfsError> {
    let target = mkdir_all_in_root(ctx.root, &m.destination, Leaf::Dir, "mount destination")?;
    // tmpcopyup: fill the new tmpfs with what it hides, then make it read-only if asked
    let copy_up = opts.tmpcopyup && fstype == "tmpfs";
    let attrs = if copy_up {
        opts.attrs.set & !MOUNT_ATTR_RDONLY
    } else {
        opts.attrs.set
    };
    let mnt = match new_fs(fstype, m.source.as_deref(), &opts.data, attrs) {
        // a user namespace without that group mapped refuses devpts' gid=: drop it, as
        // rootless runtimes do
        Err((_, e))
            if fstype == "devpts"
                && e.raw_os_error() == Some(libc::EINVAL)
                && opts.data.iter().any(|d| d.starts_with("gid=")) =>
        {
            let data: Vec<String> = opts
                .data
                .iter()
                .filter(|d| !d.starts_with("gid="))
                .cloned()
                .collect();
            new_fs(fstype, m.source.as_deref(), &data, attrs)
        }
        r => r,
    }
    .map_err(|(step, e)| fs_err(op, &step, e))?;
    if copy_up {
        let copy_err = |e: io::Error| RootfsError::os(format!("{op}: tmpcopyup"), e);
        let src = open_in_root(ctx.root, &m.destination, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(copy_err)?;
        copy_tree(src.as_fd(), mnt.as_fd(), 0).map_err(copy_err)?;
        if opts.attrs.set & MOUNT_ATTR_RDONLY != 0 {
            let ro = AttrChange {
                set: MOUNT_ATTR_RDONLY,
                clr: 0,
            };
            set_attrs(mnt.as_fd(), ro, false).map_err(|e| RootfsError::os(op, e))?;
        }
    }
    set_attrs(mnt.as_fd(), opts.rec_attrs, true).map_err(|e| RootfsError::os(op, e))?;
    attach(mnt.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(op, e))?;
    apply_propagation(ctx, m, op)
}

/// "mount tmpfs on /x: option size=lots (tmpfs: Bad value for 'size'): invalid argument", or
/// just "mount proc on /proc: operation not permitted" when no option is to blame.
fn fs_err(op: &str, step: &str, e: io::Error) -> RootfsError {
    if step.starts_with("option ") || step.starts_with("source=") {
        RootfsError::os(format!("{op}: {step}"), e)
    } else {
        RootfsError::os(op, e)
    }
}

fn sysfs(ctx: &Ctx<'_>, m: &PlannedMount) -> Result<(), RootfsError> {
    let op = format!("mount {} on {}", label(m, "sysfs"), m.destination);
    match fs(ctx, m, "sysfs", &m.options, &op) {
        // Without its own network namespace a user namespace may not mount sysfs: bind the
        // host's, read-only (runc's fallback).
        Err(e) if e.errno() == Some(libc::EPERM) => {
            let mut opts = m.options.clone();
            opts.bind = true;
            opts.recursive_bind = true;
            opts.rec_attrs.set |=
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
            let op = format!("bind /sys on {}", m.destination);
            bind_path(ctx, "/sys", &m.destination, &opts, &op).map(drop)
        }
        r => r,
    }
}

fn read_host(path: &str, op: &str) -> Result<String, RootfsError> {
    std::fs::read_to_string(path).map_err(|e| RootfsError::os(format!("{op}: read {path}"), e))
}

fn cgroup(ctx: &Ctx<'_>, m: &PlannedMount) -> Result<(), RootfsError> {
    let fstype = match m.kind {
        MountKind::Cgroup { v2: true } => "cgroup2",
        _ => "cgroup",
    };
    let op = format!("mount cgroup on {}", m.destination);
    let mountinfo = parse_mountinfo(&read_host("/proc/self/mountinfo", &op)?);
    let layout = cgroup_layout(&mountinfo, &read_host("/proc/self/cgroup", &op)?);
    let mut opts = m.options.clone();
    opts.attrs.set |= CGROUP_ATTRS;
    opts.data.clear();

    let unified = match &layout {
        CgroupLayout::Unified { host_dir } => Some(host_dir.clone()),
        CgroupLayout::Legacy(h) if fstype == "cgroup2" => Some(
            h.iter()
                .find(|h| h.fstype == "cgroup2")
                .and_then(|h| h.host_dir.clone()),
        ),
        CgroupLayout::Legacy(_) => None,
    };
    if let Some(host_dir) = unified {
        let op = format!("mount cgroup2 on {}", m.destination);
        return match host_dir {
            Some(dir) if !ctx.cgroupns => {
                bind_path(ctx, &dir, &m.destination, &opts, &op)?;
                apply_propagation(ctx, m, &op)
            }
            _ => fs(ctx, m, "cgroup2", &opts, &op),
        };
    }
    let CgroupLayout::Legacy(hierarchies) = layout else {
        return Ok(());
    };
    // a tmpfs holding one directory per hierarchy, each the container's own cgroup
    let tmpfs_opts = MountOptions {
        attrs: AttrChange {
            set: CGROUP_ATTRS,
            clr: 0,
        },
        data: vec!["mode=755".into()],
        ..MountOptions::default()
    };
    let mut tmp_plan = m.clone();
    tmp_plan.source = Some("tmpfs".into());
    tmp_plan.options.propagation.clear();
    let op_tmpfs = format!("mount tmpfs on {}", m.destination);
    fs(ctx, &tmp_plan, "tmpfs", &tmpfs_opts, &op_tmpfs)?;
    for h in &hierarchies {
        let dest = format!("{}/{}", m.destination.trim_end_matches('/'), h.name);
        let op = format!("mount {} on {}", h.fstype, dest);
        let mut sub = m.clone();
        sub.destination = dest.clone();
        sub.options.propagation.clear();
        match (&h.host_dir, ctx.cgroupns) {
            (Some(dir), false) => bind_path(ctx, dir, &dest, &opts, &op).map(drop)?,
            _ => {
                let mut o = opts.clone();
                o.data = h.controllers.clone();
                fs(ctx, &sub, &h.fstype, &o, &op)?
            }
        }
    }
    let dir = open_in_root(ctx.root, &m.destination, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| RootfsError::os(&op_tmpfs, e))?;
    for (link, target) in cgroup_symlinks(&hierarchies) {
        match rustix::fs::symlinkat(target.as_str(), &dir, link.as_str()) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(RootfsError::os(
                    format!("symlink {}/{link}", m.destination),
                    e,
                ))
            }
        }
    }
    if m.options.readonly() {
        set_attrs(
            dir.as_fd(),
            AttrChange {
                set: MOUNT_ATTR_RDONLY,
                clr: 0,
            },
            false,
        )
        .map_err(|e| RootfsError::os(&op_tmpfs, e))?;
    }
    apply_propagation(ctx, m, &op)
}
