//! berth-core: the vocabulary every other berth crate shares.
//!
//! - [`ErrorKind`]: the class of every error, which the Docker API maps to an HTTP status.
//! - [`Digest`]: validated content digests (`sha256:<64 hex>`, `sha512:<128 hex>`).
//! - [`Reference`]: image references with Docker's normalisation
//!   (`busybox` -> `docker.io/library/busybox:latest`).
//! - [`Platform`]: os/architecture/variant, with the host's platform.
//!
//! No I/O happens here.
#![forbid(unsafe_code)]

pub mod digest;
pub mod error;
pub mod mount;
pub mod platform;
pub mod reference;

pub use digest::{Algorithm, Digest, Digester};
pub use error::ErrorKind;
pub use mount::Mount;
pub use platform::Platform;
pub use reference::Reference;
