//! berth-image: OCI and Docker images on top of the content store and snapshotter.
//!
//! The engine and the CLI call [`ImageService`] (`ImageService::open(data_root)`): it wires the
//! content store (`<root>/content`), the snapshotter (`<root>/snapshots`) and the metadata
//! database (`<root>/berth.db`), and offers `load`, `load_oci_dir`, `import`, `save`,
//! `save_oci`, `list`, `resolve`, `inspect`, `history`, `tag`, `untag`, `remove`, `unpack`
//! and `gc`. An image's id is its config digest; its layers are unpacked into snapshots keyed
//! by chain id ([`ResolvedImage::top_chain_id`] is the parent of a container's rootfs).
//!
//! - [`spec`]: manifests, indexes, configs, descriptors, media types (serde, validated).
//! - [`select`]: choosing a platform's manifest from an index.
//! - [`chain`]: chain ids of layer stacks (snapshot keys).
//! - [`archive`]: loading Docker save archives and OCI layouts (tar or directory), streamed
//!   into the content store's verified ingest.
//! - [`export`]: writing Docker save archives and OCI layouts, deterministically.
//! - [`import`]: a rootfs tarball to a one-layer image (`docker import`), with [`changes`].
//! - [`layer`]: the safe layer applier and diff.
//! - [`timefmt`]: RFC 3339 and Docker's human sizes and durations.
#![forbid(unsafe_code)]

pub mod archive;
pub mod chain;
pub mod changes;
mod error;
pub mod export;
pub mod import;
pub mod layer;
pub mod pull;
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
