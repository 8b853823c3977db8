//! OCI resources -> cgroup file writes.

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::Manager;

pub(crate) fn apply(_m: &Manager, _r: &LinuxResources) -> Result<(), CgroupError> {
    Err(CgroupError::Unsupported("resources: not yet implemented".into()))
}
