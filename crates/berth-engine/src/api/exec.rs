//! Exec routes: create, start (hijacked or detached), resize, inspect.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::containers::{detach_keys, pump, stream_type};
use super::hijack;
use super::{ApiVersion, AppState, JsonBody, OptJsonBody, Query};
use crate::containers::shim::read_frame;
use crate::containers::types::ExecConfig;
use crate::EngineError;

/// Exec routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

async fn create(
    State(e): State<AppState>,
    Path(id): Path<String>,
    JsonBody(cfg): JsonBody<ExecConfig>,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let id = e.containers.exec_create(&c, cfg)?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id}))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default, deserialize_with = "crate::containers::types::nullable")]
    detach: bool,
    #[serde(default, deserialize_with = "crate::containers::types::nullable")]
    tty: bool,
    #[serde(default)]
    console_size: Option<[u16; 2]>,
}

async fn start(
    State(e): State<AppState>,
    Path(id): Path<String>,
    v: ApiVersion,
    mut req: Request,
) -> Result<Response, EngineError> {
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|err| EngineError::invalid(format!("read request body: {err}")))?;
    let sb: StartBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| EngineError::invalid(format!("invalid JSON: {err}")))?
    };
    let mgr = e.containers.clone();
    let (rec, res) = mgr.exec_start(&id).await?;
    let tty = rec.config.tty || sb.tty;
    let exec_id = id.clone();
    if let (Ok(_), Some([h, w])) = (&res, sb.console_size) {
        if tty && h > 0 {
            if let Ok(c) = mgr.find(&rec.container) {
                let _ = mgr.resize(&c, Some(exec_id.clone()), h, w).await;
            }
        }
    }
    if sb.detach {
        let s = res?;
        tokio::spawn(async move {
            let mut rd = s.rd;
            let _wr = s.wr;
            while let Some((stream, payload)) = read_frame(&mut rd).await {
                if stream == berth_shim::protocol::STREAM_EXIT {
                    let code = serde_json::from_slice::<berth_shim::ExitStatus>(&payload)
                        .map(|x| x.exit_code as i64)
                        .unwrap_or(-1);
                    mgr.exec_exited(&exec_id, code);
                }
            }
        });
        return Ok(StatusCode::OK.into_response());
    }
    let (resp, pending) = hijack::hijack(&mut req, stream_type(v, tty));
    tokio::spawn(async move {
        let Ok(mut client) = pending.await else {
            return;
        };
        match res {
            Ok(s) => {
                let m2 = mgr.clone();
                let id2 = exec_id.clone();
                let keys = if tty && rec.config.attach_stdin {
                    detach_keys(&rec.config.detach_keys)
                } else {
                    Vec::new()
                };
                pump(client, s, tty, rec.config.attach_stdin, keys, move |code| {
                    m2.exec_exited(&id2, code)
                })
                .await;
                // stream broke without an exit frame (container gone)
                if mgr.exec_get(&exec_id).is_ok_and(|x| x.running) {
                    mgr.exec_exited(&exec_id, 137);
                }
            }
            Err(err) => {
                let msg = format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {err}: unknown\r\n"
                );
                let b = if tty {
                    msg.into_bytes()
                } else {
                    berth_shim::protocol::frame(1, msg.as_bytes())
                };
                let _ = client.write_all(&b).await;
                let _ = client.shutdown().await;
            }
        }
    });
    Ok(resp)
}

async fn resize(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let x = e.containers.exec_get(&id)?;
    if !x.running {
        return Err(EngineError::internal("cannot resize a stopped container"));
    }
    let c = e.containers.find(&x.container)?;
    let h: u16 = q.num("h")?.unwrap_or(0);
    let w: u16 = q.num("w")?.unwrap_or(0);
    e.containers.resize(&c, Some(id), h, w).await?;
    Ok(StatusCode::OK.into_response())
}

async fn inspect(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let x = e.containers.exec_get(&id)?;
    let cmd = x.config.cmd.clone().unwrap_or_default();
    Ok(Json(json!({
        "ID": x.id,
        "Running": x.running,
        "ExitCode": x.exit_code,
        "ProcessConfig": {
            "tty": x.config.tty,
            "entrypoint": cmd.first().cloned().unwrap_or_default(),
            "arguments": cmd.iter().skip(1).collect::<Vec<_>>(),
            "privileged": x.config.privileged,
            "user": x.config.user,
        },
        "OpenStdin": x.config.attach_stdin,
        "OpenStderr": x.config.attach_stderr,
        "OpenStdout": x.config.attach_stdout,
        "CanRemove": false,
        "ContainerID": x.container,
        "DetachKeys": x.config.detach_keys,
        "Pid": x.pid,
    }))
    .into_response())
}

#[allow(dead_code)]
fn _unused(_: OptJsonBody<()>) {}
