//! The Docker Engine API: the axum router and the helpers every route module uses.
//!
//! Route modules: [`system`] (ping, version, info, df, events, auth), [`images`], [`volumes`],
//! and — owned by the containers helper — [`containers`] and [`exec`]. Each exposes
//! `routes() -> Router<AppState>`; [`router`] merges them.
//!
//! Version prefixes (`/v1.41/...`) are stripped before routing by [`crate::server`] (see
//! [`version`]); handlers read the negotiated version with the [`ApiVersion`] extractor.
//! Helpers: [`EngineError`] is an `IntoResponse` (`{"message"}` + status from
//! its `ErrorKind`); [`Query`] (bools in every spelling, both `filters` shapes); [`JsonBody`] /
//! [`OptJsonBody`] (unknown fields ignored, no Content-Type required); [`stream`] (chunked JSON
//! streams); [`hijack`] (101 UPGRADED raw streams) and [`stdcopy`] framing.

pub mod containers;
pub mod exec;
pub mod hijack;
mod http;
pub mod images;
pub mod registry;
pub mod stdcopy;
pub mod stream;
pub mod system;
pub mod version;
pub mod volumes;

use std::sync::Arc;

use axum::Router;

pub use http::{JsonBody, OptJsonBody, Query};
pub use version::ApiVersion;

use crate::{Engine, EngineError};

/// The router state: the engine.
pub type AppState = Arc<Engine>;

/// The whole API (paths without a version prefix).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(volumes::routes())
        .merge(containers::routes())
        .merge(exec::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

async fn not_found() -> EngineError {
    EngineError::not_found("page not found")
}

/// Run blocking work (the image service, SQLite) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::internal(format!("blocking task failed: {e}")))?
}
