//! Exec routes — OWNED BY THE CONTAINERS HELPER; this placeholder is replaced wholesale.
//! Keep `pub fn routes() -> Router<AppState>` (paths without the version prefix).

use axum::Router;

use super::AppState;

/// Exec routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
