//! berth-image: OCI and Docker images on top of the content store and snapshotter.
#![forbid(unsafe_code)]

pub mod layer;
