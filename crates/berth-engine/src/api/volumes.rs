//! Volume routes over [`crate::volumes::VolumeStore`].

use axum::Router;

use super::AppState;

/// Volume routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
