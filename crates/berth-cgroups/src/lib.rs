//! berth-cgroups: create, limit, freeze, measure and remove the cgroups of a container on
//! cgroup v1, hybrid (v1 controllers plus a cgroup2 mount) and unified (v2) hosts.
//!
//! The layout is detected from `/proc/self/mountinfo` and the caller's cgroups from
//! `/proc/self/cgroup`; nothing is hard-coded. A [`Manager`] holds, for one container, the
//! directory of its cgroup in every mounted hierarchy ([`Hierarchy`]); it is serialisable and can
//! also be rebuilt from `(cgroups_path, id)` by a later process.
//!
//! Resource settings are first turned into data ([`resources::plan`]: a list of file writes),
//! then written, so the translation from the OCI spec is unit-tested without root.
//!
//! Semantics worth knowing:
//! - Hybrid hosts: each controller is used where it is bound: v1 hierarchies first, then the
//!   unified hierarchy for controllers listed in its `cgroup.controllers` (hugetlb on these
//!   machines). The container gets a directory in *every* mounted hierarchy, `name=systemd` and
//!   the unified one included, and [`Manager::add_task`] joins all of them.
//! - A resource the spec asks for whose controller is absent is an
//!   [`CgroupError::Unsupported`] error; absent controllers nobody asked for are skipped.
//!   Exceptions, as runc: realtime CPU budgets without `cpu.rt_runtime_us`, v1 swap without
//!   memsw accounting, v2 swappiness/disableOOMKiller, kernel memory: ignored.
//! - Devices: the list starts from deny-all; `a *:* rwm` rules reset it; later rules win. v1
//!   uses the devices controller, v2 an eBPF program ([`devices::bpf_program`]) attached with
//!   `BPF_F_ALLOW_MULTI`, replacing the previous one. Docker's default device rules are in
//!   [`devices::default_allowed`] for the runtime to append.
//! - [`Manager::destroy`] removes nested cgroups too and waits up to 1 s in total for
//!   processes to drain; [`Manager::kill_and_destroy`] kills leftovers first. The common
//!   parent (e.g. `/berth`) is left in place.
#![forbid(unsafe_code)]

pub mod devices;
mod error;
mod manager;
pub mod mountinfo;
mod oom;
pub mod path;
pub mod resources;
pub mod stats;

pub use error::CgroupError;
pub use manager::{FreezerState, Hierarchy, Manager};
pub use oci_spec;
pub use oom::OomWatcher;
pub use stats::Stats;

use serde::{Deserialize, Serialize};

/// How the host mounts its cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies (one per controller or comounted).
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// Only the unified (cgroup2) hierarchy.
    V2,
}

/// Detect the layout of this host from `/proc/self/mountinfo`.
pub fn detect() -> Result<Layout, CgroupError> {
    let mounts = manager::read_mounts()?;
    mountinfo::layout_of(&mounts)
}
