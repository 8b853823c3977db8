//! Volume routes over [`crate::volumes::VolumeStore`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{blocking, ApiVersion, AppState, OptJsonBody, Query};
use crate::volumes::CreateVolume;
use crate::{ContainerQueries, EngineError};

/// Containers using a volume: what the containers module says plus live mounts.
pub fn volume_users(e: &crate::Engine, name: &str) -> Vec<String> {
    let mut u = e.containers.volume_users(name);
    for m in e.volumes.mounted_by(name) {
        if !u.contains(&m) {
            u.push(m);
        }
    }
    u
}

/// Volume routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

async fn list(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let f = q.filters()?;
    let vols = blocking(move || e.volumes.filter(&f, &|n| !volume_users(&e, n).is_empty())).await?;
    Ok(Json(json!({ "Volumes": vols, "Warnings": null })).into_response())
}

async fn create(
    State(e): State<AppState>,
    OptJsonBody(req): OptJsonBody<CreateVolume>,
) -> Result<Response, EngineError> {
    let v = blocking(move || e.volumes.create(req)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn inspect(
    State(e): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, EngineError> {
    let v = blocking(move || e.volumes.get(&name)).await?;
    Ok(Json(v).into_response())
}

async fn remove(
    State(e): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let force = q.bool("force")?;
    blocking(move || {
        let users = volume_users(&e, &name);
        e.volumes.remove(&name, force, &users)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(
    State(e): State<AppState>,
    v: ApiVersion,
    q: Query,
) -> Result<Response, EngineError> {
    let f = q.filters()?;
    let r = blocking(move || {
        e.volumes
            .prune(&f, !v.at_least(42), &|n| !volume_users(&e, n).is_empty())
    })
    .await?;
    Ok(Json(json!({ "VolumesDeleted": r.deleted, "SpaceReclaimed": r.reclaimed })).into_response())
}
