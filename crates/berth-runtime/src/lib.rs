//! berth-runtime: the OCI runtime spec (v1.2, Linux) turned into a running container.
//!
//! Synchronous code, no async runtime: everything here may fork or change namespaces.
#![forbid(unsafe_code)]

pub use oci_spec;

pub mod hooks;
pub mod rootfs;
pub mod seccomp;
