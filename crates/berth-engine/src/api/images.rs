//! Image routes over [`berth_image::ImageService`].

use axum::Router;

use super::AppState;

/// Image routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
