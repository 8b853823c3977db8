//! berth-runtime: the OCI runtime spec (v1.2, Linux) turned into a running container.
//!
//! Synchronous code, no async runtime: everything here may fork or change namespaces.
//!
//! Entry point: [`Runtime`] (create, start, state, kill, delete, exec, list), with container
//! state under a root directory so separate processes agree. See [`init`] for the process
//! model of a container's setup and the security measures taken there.
#![forbid(unsafe_code)]

pub use oci_spec;

pub mod console;
mod container;
mod error;
pub mod features;
pub mod hooks;
mod init;
mod process;
pub mod rootfs;
mod rootfs_compat;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
mod sync;
pub mod timefmt;

pub use container::{descendants, exit_code, CreateOptions, ExecOptions, Runtime, OCI_VERSION};
pub use error::{Error, Result};
pub use state::{State, Status};
