//! berth-image: OCI and Docker images on top of the content store and snapshotter.
//!
//! - [`spec`]: manifests, indexes, configs, descriptors, media types (serde, validated).
//! - [`select`]: choosing a platform's manifest from an index.
//! - [`chain`]: chain ids of layer stacks (snapshot keys).
//! - [`layer`]: the safe layer applier and diff.
#![forbid(unsafe_code)]

pub mod archive;
pub mod chain;
pub mod changes;
mod error;
pub mod export;
pub mod import;
pub mod layer;
pub mod select;
pub mod service;
pub mod spec;
mod stage;
pub mod timefmt;

pub use chain::{chain_id, chain_ids};
pub use error::ImageError;
pub use import::ImportOptions;
pub use select::select_manifest;
pub use service::{
    DeleteResponse, HistoryItem, ImageInspect, ImageService, ImageSummary, LoadResult, OciDest,
    ResolvedImage, UnpackReport,
};
pub use spec::{Descriptor, ImageConfig, Index, Manifest, ManifestKind};
