//! Bridge to [`crate::rootfs`]: maps its errors into setup errors.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::process::{SetupError, SetupResult};
use crate::rootfs::{self, RootfsError, RootfsOptions};

fn conv(e: RootfsError) -> SetupError {
    SetupError::new(e.to_string(), e.kind())
}

pub(crate) fn finalize(spec: &Spec) -> SetupResult {
    rootfs::finalize_rootfs(spec).map_err(conv)
}

/// Whether `e` is the "not implemented yet" placeholder of the rootfs module.
fn unimplemented(e: &RootfsError) -> bool {
    e.to_string().contains("not implemented yet")
}

/// Prepare the rootfs, falling back to [`minimal`] while the rootfs module is a placeholder.
pub(crate) fn prepare_or_minimal(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> SetupResult {
    match rootfs::prepare_rootfs(spec, bundle, opts) {
        Ok(()) => Ok(()),
        Err(e) if unimplemented(&e) => minimal(spec, bundle),
        Err(e) => Err(conv(e)),
    }
}

/// Console, falling back to a pty from the container's /dev/ptmx.
pub(crate) fn console_or_minimal() -> SetupResult<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    match rootfs::setup_console() {
        Ok(c) => Ok((c.master, c.slave)),
        Err(e) if unimplemented(&e) => {
            crate::console::open_pty().map_err(|e| SetupError::io("open pty", e))
        }
        Err(e) => Err(conv(e)),
    }
}

/// Interim root filesystem setup (trusted bundles only: it joins paths as strings): private
/// propagation, rootfs bind, proc/tmpfs/sysfs/devpts/mqueue/bind mounts, pivot_root.
fn minimal(spec: &Spec, bundle: &Path) -> SetupResult {
    use rustix::mount::{self, MountFlags, MountPropagationFlags};
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let root = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| SetupError::io("make / private", e))?;
    mount::mount_bind_recursive(&root, &root)
        .map_err(|e| SetupError::io(format!("bind {}", root.display()), e))?;
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        let dest = root.join(m.destination().strip_prefix("/").unwrap_or(m.destination()));
        let typ = m.typ().clone().unwrap_or_default();
        let opts = m.options().clone().unwrap_or_default();
        let _ = std::fs::create_dir_all(&dest);
        let mut flags = MountFlags::empty();
        let mut data = Vec::new();
        let mut bind = typ == "bind";
        for o in &opts {
            match o.as_str() {
                "nosuid" => flags |= MountFlags::NOSUID,
                "nodev" => flags |= MountFlags::NODEV,
                "noexec" => flags |= MountFlags::NOEXEC,
                "ro" => flags |= MountFlags::RDONLY,
                "bind" | "rbind" => bind = true,
                "rw" | "private" | "rprivate" | "relatime" => {}
                o => data.push(o.to_string()),
            }
        }
        let src = m.source().clone().unwrap_or_default();
        let r = if bind {
            mount::mount_bind_recursive(&src, &dest)
        } else {
            mount::mount(
                src.as_os_str(),
                &dest,
                typ.as_str(),
                flags,
                std::ffi::CString::new(data.join(","))
                    .unwrap_or_default()
                    .as_c_str(),
            )
        };
        if let Err(e) = r {
            // The interim setup skips what this host refuses (e.g. sysfs in a user namespace).
            if typ == "sysfs" || typ == "cgroup" || typ == "mqueue" {
                continue;
            }
            return Err(SetupError::io(
                format!("mount {} on {}", typ, m.destination().display()),
                e,
            ));
        }
    }
    rustix::process::chdir(&root).map_err(|e| SetupError::io("chdir rootfs", e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| SetupError::io("pivot_root", e))?;
    mount::mount_change(
        ".",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| SetupError::io("make old root slave", e))?;
    mount::unmount(".", mount::UnmountFlags::DETACH)
        .map_err(|e| SetupError::io("unmount old root", e))?;
    rustix::process::chdir("/").map_err(|e| SetupError::io("chdir /", e))?;
    Ok(())
}
