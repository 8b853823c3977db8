//! Bridge to [`crate::rootfs`]: maps its errors into setup errors.

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::process::{SetupError, SetupResult};
use crate::rootfs::{self, RootfsError, RootfsOptions};

fn conv(e: RootfsError) -> SetupError {
    SetupError::new(e.to_string(), e.kind())
}

/// Build the rootfs and switch into it.
pub(crate) fn prepare(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> SetupResult {
    rootfs::prepare_rootfs(spec, bundle, opts).map_err(conv)
}

/// A pty from the container's devpts, bound on /dev/console: (master, slave).
pub(crate) fn console() -> SetupResult<(OwnedFd, OwnedFd)> {
    rootfs::setup_console()
        .map(|c| (c.master, c.slave))
        .map_err(conv)
}

/// sysctl, readonly and masked paths, read-only root.
pub(crate) fn finalize(spec: &Spec) -> SetupResult {
    rootfs::finalize_rootfs(spec).map_err(conv)
}
