//! Container routes (Docker Engine API 1.44): typed calls into
//! [`crate::containers::ContainerManager`]; attach streams pumped between the hijacked client
//! connection and the container's shim.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use berth_shim::protocol::{Request as ShimReq, STREAM_EXIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::hijack::{self, Hijacked, MULTIPLEXED_STREAM, RAW_STREAM};
use super::stream::{self, LineEnd};
use super::{ApiVersion, AppState, JsonBody, OptJsonBody, Query};
use crate::containers::shim::{read_frame, ShimStream};
use crate::containers::types::CreateBody;
use crate::containers::{archive, fmt_time, now_ns, parse_time, Ctr};
use crate::EngineError;

/// Container routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}", delete(remove))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

async fn create(
    State(e): State<AppState>,
    q: Query,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, EngineError> {
    let name = q.get("name").map(String::from);
    let (id, warnings) = e.containers.create(name, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warnings": warnings})),
    )
        .into_response())
}

fn matches_filters(e: &AppState, c: &Ctr, f: &crate::Filters) -> Result<bool, EngineError> {
    let r = c.record();
    for key in f.keys() {
        let ok = match key {
            "id" => f.values("id").any(|v| r.id.starts_with(v)),
            "name" => f.values("name").any(|v| {
                let v = v.trim_start_matches('/');
                r.name.contains(v)
            }),
            "status" => f.values("status").any(|v| v == r.state.status),
            "label" => f.match_labels("label", &r.config.labels),
            "exited" => {
                !r.state.running
                    && r.finished_ns > 0
                    && f.values("exited")
                        .any(|v| v.parse::<i64>().ok() == Some(r.state.exit_code))
            }
            "ancestor" => f.values("ancestor").any(|v| {
                v == r.image
                    || r.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || e.images
                        .resolve(v)
                        .map(|i| i.id.to_string() == r.image_id)
                        .unwrap_or(false)
            }),
            "before" | "since" => {
                let mut ok = true;
                for v in f.values(key) {
                    let other = e.containers.find(v)?.record();
                    ok &= if key == "before" {
                        r.created_ns < other.created_ns
                    } else {
                        r.created_ns > other.created_ns
                    };
                }
                ok
            }
            "volume" => f.values("volume").any(|v| {
                r.mounts
                    .iter()
                    .any(|m| m.name == v || m.destination == v || m.source == v)
            }),
            "is-task" => f.values("is-task").all(|v| v == "false"),
            "health" => f.values("health").any(|v| v == "none"),
            "network" => f.values("network").any(|v| v == r.host_config.network_mode),
            "publish" | "expose" => false,
            k => return Err(EngineError::invalid(format!("invalid filter '{k}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let all = q.bool("all")?;
    let size = q.bool("size")?;
    let limit: Option<i64> = q.num("limit")?;
    let filters = q.filters()?;
    let e2 = e.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, EngineError> {
        let mut out = Vec::new();
        let show_all =
            all || limit.is_some_and(|l| l > 0) || filters.has("status") || filters.has("exited");
        for c in e2.containers.all() {
            let r = c.record();
            if !show_all && !r.state.running {
                continue;
            }
            if !matches_filters(&e2, &c, &filters)? {
                continue;
            }
            out.push(e2.containers.summary(&c, size));
            if limit.is_some_and(|l| l > 0 && out.len() as i64 >= l) {
                break;
            }
        }
        Ok(out)
    })
    .await
    .map_err(|err| EngineError::internal(err.to_string()))??;
    Ok(Json(rows).into_response())
}

async fn inspect(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let size = q.bool("size")?;
    let e2 = e.clone();
    let v = tokio::task::spawn_blocking(move || e2.containers.inspect(&c, size))
        .await
        .map_err(|err| EngineError::internal(err.to_string()))?;
    Ok(Json(v).into_response())
}

async fn start(State(e): State<AppState>, Path(id): Path<String>) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    if e.containers.start(&c).await? {
        Ok(no_content())
    } else {
        Ok(not_modified())
    }
}

async fn stop(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let t: Option<i64> = q.num("t")?;
    let sig = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    if e.containers.stop(&c, t, sig).await? {
        Ok(no_content())
    } else {
        Ok(not_modified())
    }
}

async fn kill(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    e.containers.kill(&c, q.get("signal")).await?;
    Ok(no_content())
}

async fn restart(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let t: Option<i64> = q.num("t")?;
    let sig = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    e.containers.stop(&c, t, sig).await?;
    e.containers.start(&c).await?;
    e.events.publish(
        crate::Event::new("container", "restart", &c.id)
            .attr("name", c.record().name)
            .attr("image", c.record().image),
    );
    Ok(no_content())
}

async fn pause(State(e): State<AppState>, Path(id): Path<String>) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    e.containers.pause(&c).await?;
    Ok(no_content())
}

async fn unpause(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    e.containers.unpause(&c).await?;
    Ok(no_content())
}

async fn rename(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| EngineError::invalid("Neither old nor new names may be empty"))?;
    e.containers.rename(&c, name)?;
    Ok(no_content())
}

async fn update(
    State(e): State<AppState>,
    Path(id): Path<String>,
    OptJsonBody(body): OptJsonBody<Value>,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let warnings = e.containers.update_resources(&c, &body).await?;
    Ok(Json(json!({"Warnings": warnings})).into_response())
}

async fn wait(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let cond = q.get("condition").unwrap_or("not-running").to_string();
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(EngineError::invalid(format!("invalid condition: {cond:?}")));
    }
    let mut rx = c.subscribe();
    let start = rx.borrow().clone();
    let (tx, resp) = stream::json_channel(LineEnd::Lf);
    tokio::spawn(async move {
        let res = match cond.as_str() {
            "next-exit" => rx
                .wait_for(|g| g.exits > start.exits || g.removed)
                .await
                .map(|g| g.clone()),
            "removed" => rx.wait_for(|g| g.removed).await.map(|g| g.clone()),
            _ => rx
                .wait_for(|g| !g.running || g.removed)
                .await
                .map(|g| g.clone()),
        };
        let code = match res {
            Ok(g) => g.exit_code,
            Err(_) => c.record().state.exit_code,
        };
        let _ = tx.json(&json!({"StatusCode": code, "Error": null})).await;
    });
    Ok(resp)
}

/// Pump a shim stream to a hijacked client (stdin the other way). Frames stay framed unless
/// `raw` (TTY). An exit frame (exec) is passed to `on_exit` before the client sees EOF.
pub(crate) async fn pump(
    client: Hijacked,
    s: ShimStream,
    raw: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
    mut on_exit: impl FnMut(i64) + Send + 'static,
) {
    let ShimStream { mut rd, mut wr } = s;
    let (mut cr, mut cw) = tokio::io::split(client);
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let stdin_task = tokio::spawn(async move {
        if !stdin {
            // keep the shim connection's write side open until the output ends
            std::future::pending::<()>().await;
        }
        let mut buf = vec![0u8; 32 * 1024];
        let mut matched = 0usize;
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = wr.shutdown().await;
                    std::future::pending::<()>().await;
                }
                Ok(n) => {
                    if !detach_keys.is_empty() {
                        for &b in &buf[..n] {
                            if b == detach_keys[matched] {
                                matched += 1;
                                if matched == detach_keys.len() {
                                    let _ = detach_tx.send(());
                                    return;
                                }
                            } else {
                                matched = usize::from(b == detach_keys[0]);
                            }
                        }
                    }
                    if wr.write_all(&buf[..n]).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    });
    loop {
        let f = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = &mut detach_rx => None,
        };
        let Some((stream, payload)) = f else { break };
        if stream == STREAM_EXIT {
            let code = serde_json::from_slice::<berth_shim::ExitStatus>(&payload)
                .map(|e| e.exit_code as i64)
                .unwrap_or(-1);
            on_exit(code);
            continue;
        }
        let res = if raw {
            cw.write_all(&payload).await
        } else {
            cw.write_all(&berth_shim::protocol::frame(stream, &payload))
                .await
        };
        if res.is_err() {
            break;
        }
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    stdin_task.abort();
}

/// Parse Docker's detach keys (`ctrl-p,ctrl-q`).
pub(crate) fn detach_keys(s: &str) -> Vec<u8> {
    let s = if s.is_empty() { "ctrl-p,ctrl-q" } else { s };
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            if c.len() == 1 {
                match c[0] {
                    b'a'..=b'z' => out.push(c[0] - b'a' + 1),
                    b'@' => out.push(0),
                    b'[' => out.push(27),
                    b'\\' => out.push(28),
                    b']' => out.push(29),
                    b'^' => out.push(30),
                    b'_' => out.push(31),
                    _ => {}
                }
            }
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        }
    }
    out
}

/// The stream content type for a version and TTY.
pub(crate) fn stream_type(v: ApiVersion, tty: bool) -> &'static str {
    if !tty && v.at_least(42) {
        MULTIPLEXED_STREAM
    } else {
        RAW_STREAM
    }
}

async fn attach(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    v: ApiVersion,
    mut req: Request,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let r = c.record();
    let stdin = q.bool("stdin")?;
    let stdout = q.bool("stdout")?;
    let stderr = q.bool("stderr")?;
    let logs = q.bool("logs")?;
    let stream_ = q.bool("stream")?;
    let keys = detach_keys(q.get("detachKeys").unwrap_or(""));
    let tty = r.config.tty;
    // registered before the 101 goes out: the CLI sends start right after it
    let waiter = if stream_ {
        let sreq = ShimReq::Attach {
            stdin,
            stdout,
            stderr,
        };
        Some(e.containers.attach(&c, sreq).await?)
    } else {
        None
    };
    let (resp, pending) = hijack::hijack(&mut req, stream_type(v, tty));
    let log_path = e.containers.log_path(&c.id);
    e.events.publish(
        crate::Event::new("container", "attach", &c.id)
            .attr("name", r.name.clone())
            .attr("image", r.image.clone()),
    );
    tokio::spawn(async move {
        let Ok(mut client) = pending.await else {
            return;
        };
        if logs {
            let entries = tokio::task::spawn_blocking(move || {
                berth_shim::logfile::read_all(&log_path, 10).unwrap_or_default()
            })
            .await
            .unwrap_or_default();
            for en in entries {
                let s = if en.stream == "stderr" { 2 } else { 1 };
                if (s == 1 && !stdout) || (s == 2 && !stderr) {
                    continue;
                }
                let b = if tty {
                    en.log.into_bytes()
                } else {
                    berth_shim::protocol::frame(s, en.log.as_bytes())
                };
                if client.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
        let stream = match waiter {
            Some(w) => w.stream().await,
            None => None,
        };
        match stream {
            Some(s) => {
                let keys = if tty && stdin { keys } else { Vec::new() };
                pump(client, s, tty, stdin, keys, |_| {}).await
            }
            None => {
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
    let c = e.containers.find(&id)?;
    let h: u16 = q.num("h")?.unwrap_or(0);
    let w: u16 = q.num("w")?.unwrap_or(0);
    e.containers.resize(&c, None, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

/// Parse `since`/`until`: unix seconds with an optional fraction, or RFC 3339.
fn parse_ts(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1e9) as i64);
    }
    parse_time(s)
}

async fn logs(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let r = c.record();
    if r.host_config.log_config.kind == "none" {
        return Err(EngineError::invalid(
            "configured logging driver does not support reading",
        ));
    }
    let follow = q.bool("follow")?;
    let stdout = q.bool("stdout")?;
    let stderr = q.bool("stderr")?;
    if !stdout && !stderr {
        return Err(EngineError::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let timestamps = q.bool("timestamps")?;
    let since = q.get("since").and_then(parse_ts).unwrap_or(0);
    let until = q.get("until").and_then(parse_ts);
    let tail: Option<usize> = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse()
                .map_err(|_| EngineError::invalid(format!("invalid tail value {t:?}")))?,
        ),
    };
    let tty = r.config.tty;
    let path = e.containers.log_path(&c.id);
    let max_files = r
        .host_config
        .log_config
        .config
        .get("max-file")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u32);
    let (tx, resp) = stream::channel(None, LineEnd::Lf);
    let mut rx = c.subscribe();
    tokio::spawn(async move {
        let emit = |en: &berth_shim::logfile::Entry| -> Option<Vec<u8>> {
            let s = if en.stream == "stderr" { 2 } else { 1 };
            if (s == 1 && !stdout) || (s == 2 && !stderr) {
                return None;
            }
            let t = parse_time(&en.time).unwrap_or(0);
            if t < since || until.is_some_and(|u| t > u) {
                return None;
            }
            let mut line = Vec::new();
            if timestamps {
                line.extend_from_slice(en.time.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(en.log.as_bytes());
            Some(if tty {
                line
            } else {
                berth_shim::protocol::frame(s, &line)
            })
        };
        let p2 = path.clone();
        let entries = tokio::task::spawn_blocking(move || {
            berth_shim::logfile::read_all(&p2, max_files).unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        let skip = match tail {
            Some(n) => entries.len().saturating_sub(n),
            None => 0,
        };
        for en in &entries[skip..] {
            if let Some(b) = emit(en) {
                if !tx.bytes(b).await {
                    return;
                }
            }
        }
        if !follow || until.is_some() {
            return;
        }
        // follow: tail the current file from its end (rotation: reopen when it shrinks)
        let mut offset = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        loop {
            let running = rx.borrow().running;
            let len = tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            if len < offset {
                offset = 0;
            }
            if len > offset {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    use tokio::io::AsyncSeekExt;
                    let _ = f.seek(std::io::SeekFrom::Start(offset)).await;
                    let mut buf = Vec::new();
                    let _ = f.read_to_end(&mut buf).await;
                    let mut out = Vec::new();
                    let used = berth_shim::logfile::read_from(&buf[..], &mut out).unwrap_or(0);
                    offset += used;
                    for en in &out {
                        if let Some(b) = emit(en) {
                            if !tx.bytes(b).await {
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            if !running {
                return;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}

async fn top(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let pids = e.containers.pids(&c)?;
    let args = q.get("ps_args").unwrap_or("-ef").to_string();
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await;
    let (titles, procs) = match out {
        Ok(o) if o.status.success() => parse_ps(&String::from_utf8_lossy(&o.stdout), &pids)?,
        _ => {
            // no ps(1): read /proc ourselves
            let mut procs = Vec::new();
            for p in &pids {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|b| {
                        b.split(|&c| c == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                procs.push(vec![p.to_string(), cmd]);
            }
            (vec!["PID".to_string(), "CMD".to_string()], procs)
        }
    };
    Ok(Json(json!({"Titles": titles, "Processes": procs})).into_response())
}

/// Keep the rows of `ps` output whose PID column is one of `pids`.
fn parse_ps(out: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>), EngineError> {
    let mut lines = out.lines();
    let head = lines.next().unwrap_or("");
    let titles: Vec<String> = head.split_whitespace().map(String::from).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::invalid("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < titles.len() {
            continue;
        }
        let Ok(p) = f[pid_col].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&p) {
            continue;
        }
        let mut row: Vec<String> = f[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(f[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    Ok((titles, procs))
}

fn host_cpu_ns() -> u64 {
    // /proc/stat "cpu" line in USER_HZ ticks -> ns
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .map(|ticks| ticks * 10_000_000)
        .unwrap_or(0)
}

fn stats_json(e: &AppState, c: &Ctr, prev: &Value) -> Value {
    let r = c.record();
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match e.containers.stats(c) {
        None => json!({
            "read": crate::containers::ZERO_TIME, "preread": crate::containers::ZERO_TIME,
            "pids_stats": {}, "blkio_stats": {"io_service_bytes_recursive": null},
            "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory_stats": {}, "name": format!("/{}", r.name), "id": r.id,
        }),
        Some(s) => {
            let blk: Vec<Value> = s
                .blkio
                .io_service_bytes_recursive
                .iter()
                .map(|b| json!({"major": b.major, "minor": b.minor, "op": b.op, "value": b.value}))
                .collect();
            let limit = if s.memory.usage.limit == 0 || s.memory.usage.limit > (1 << 62) {
                host_mem()
            } else {
                s.memory.usage.limit
            };
            json!({
                "read": fmt_time(now_ns()),
                "preread": prev.get("read").cloned().unwrap_or(json!(crate::containers::ZERO_TIME)),
                "pids_stats": {"current": s.pids.current, "limit": if s.pids.limit == 0 { Value::Null } else { json!(s.pids.limit) }},
                "blkio_stats": {"io_service_bytes_recursive": blk},
                "num_procs": 0,
                "storage_stats": {},
                "cpu_stats": {
                    "cpu_usage": {
                        "total_usage": s.cpu.usage.total,
                        "percpu_usage": if s.cpu.usage.percpu.is_empty() { Value::Null } else { json!(s.cpu.usage.percpu) },
                        "usage_in_kernelmode": s.cpu.usage.kernel,
                        "usage_in_usermode": s.cpu.usage.user,
                    },
                    "system_cpu_usage": host_cpu_ns(),
                    "online_cpus": online,
                    "throttling_data": {"periods": s.cpu.throttling.periods, "throttled_periods": s.cpu.throttling.throttled_periods, "throttled_time": s.cpu.throttling.throttled_time},
                },
                "precpu_stats": prev.get("cpu_stats").cloned().unwrap_or(json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}})),
                "memory_stats": {"usage": s.memory.usage.usage, "max_usage": s.memory.usage.max, "stats": s.memory.raw, "limit": limit},
                "name": format!("/{}", r.name),
                "id": r.id,
            })
        }
    }
}

fn host_mem() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

async fn stats(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let stream_ = q.bool_or("stream", true)?;
    let one_shot = q.bool("one-shot")?;
    if !stream_ {
        let e2 = e.clone();
        let v = tokio::task::spawn_blocking(move || {
            let first = if one_shot {
                json!({})
            } else {
                stats_json(&e2, &c, &json!({}))
            };
            if !one_shot {
                std::thread::sleep(Duration::from_millis(100));
            }
            stats_json(&e2, &c, &first)
        })
        .await
        .map_err(|err| EngineError::internal(err.to_string()))?;
        return Ok(Json(v).into_response());
    }
    let (tx, resp) = stream::json_channel(LineEnd::Lf);
    tokio::spawn(async move {
        let mut prev = json!({});
        loop {
            let e2 = e.clone();
            let c2 = c.clone();
            let p = prev.clone();
            let Ok(v) = tokio::task::spawn_blocking(move || stats_json(&e2, &c2, &p)).await else {
                return;
            };
            if !tx.json(&v).await {
                return;
            }
            prev = v;
            if !c.is_running() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(resp)
}

async fn changes(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let r = c.record();
    let mgr = e.containers.clone();
    let v = tokio::task::spawn_blocking(move || mgr.changes(&r))
        .await
        .map_err(|err| EngineError::internal(err.to_string()))??;
    Ok(Json(v).into_response())
}

async fn export(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let r = c.record();
    let mgr = e.containers.clone();
    let rootfs = tokio::task::spawn_blocking(move || mgr.mount_rootfs(&r))
        .await
        .map_err(|err| EngineError::internal(err.to_string()))??;
    let (tx, rx) = tokio::io::duplex(64 * 1024);
    tokio::task::spawn_blocking(move || {
        let w = tokio_util::io::SyncIoBridge::new(tx);
        if let Err(err) = crate::containers::archive::tar_dir(&rootfs, w) {
            tracing::warn!("export: {err}");
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(rx)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

fn path_stat_header(v: &Value) -> HeaderValue {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(v.to_string());
    HeaderValue::from_str(&b).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn archive_stat(
    e: &AppState,
    id: &str,
    q: &Query,
) -> Result<(std::path::PathBuf, String, Value, String), EngineError> {
    let c = e.containers.find(id)?;
    let path = q
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| EngineError::invalid("path is required"))?
        .to_string();
    let root = e.containers.cp_root(&c).await?;
    let (r2, p2, cid) = (root.clone(), path.clone(), c.id.clone());
    let st = tokio::task::spawn_blocking(move || {
        let fd = archive::cp::open_root(&r2)?;
        archive::cp::stat(&fd, &p2, &cid)
    })
    .await
    .map_err(|err| EngineError::internal(err.to_string()))??;
    Ok((root, path, st, c.id.clone()))
}

async fn archive_head(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let (_, _, st, _) = archive_stat(&e, &id, &q).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert("X-Docker-Container-Path-Stat", path_stat_header(&st));
    Ok(resp)
}

async fn archive_get(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let (root, path, st, _) = archive_stat(&e, &id, &q).await?;
    let (tx, rx) = tokio::io::duplex(64 * 1024);
    tokio::task::spawn_blocking(move || {
        let w = tokio_util::io::SyncIoBridge::new(tx);
        let res = archive::cp::open_root(&root)
            .map_err(|err| std::io::Error::other(err.to_string()))
            .and_then(|fd| archive::cp::get(&fd, &path, w));
        if let Err(err) = res {
            tracing::warn!("archive {path}: {err}");
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(rx)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    resp.headers_mut()
        .insert("X-Docker-Container-Path-Stat", path_stat_header(&st));
    Ok(resp)
}

async fn archive_put(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<Response, EngineError> {
    use futures_util::TryStreamExt;
    let c = e.containers.find(&id)?;
    let path = q
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| EngineError::invalid("path is required"))?
        .to_string();
    let root = e.containers.cp_root(&c).await?;
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|err| std::io::Error::other(err.to_string()));
    let reader = tokio_util::io::StreamReader::new(stream);
    let cid = c.id.clone();
    tokio::task::spawn_blocking(move || {
        let r = tokio_util::io::SyncIoBridge::new(reader);
        let fd = archive::cp::open_root(&root)?;
        archive::cp::put(&fd, &path, r, &cid)
    })
    .await
    .map_err(|err| EngineError::internal(err.to_string()))??;
    Ok(StatusCode::OK.into_response())
}

async fn remove(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let c = e.containers.find(&id)?;
    let force = q.bool("force")?;
    let v = q.bool("v")?;
    if q.bool("link")? {
        return Err(EngineError::invalid("links are not supported"));
    }
    e.containers.remove(&c, force, v).await?;
    Ok(no_content())
}

async fn prune(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let f = q.filters()?;
    let until = f.values("until").filter_map(parse_ts).min();
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in e.containers.all() {
        let r = c.record();
        if r.state.running || r.state.restarting {
            continue;
        }
        if until.is_some_and(|u| r.created_ns >= u) {
            continue;
        }
        if f.has("label") && !f.match_labels("label", &r.config.labels) {
            continue;
        }
        if f.has("label!") && f.match_labels("label!", &r.config.labels) {
            continue;
        }
        let size = e
            .containers
            .upper_dir(&r)
            .map(|p| crate::volumes::dir_size(&p))
            .unwrap_or(0);
        if e.containers.remove(&c, false, false).await.is_ok() {
            deleted.push(r.id.clone());
            reclaimed += size;
        }
    }
    e.events.publish(
        crate::Event::new("container", "prune", "").attr("reclaimed", reclaimed.to_string()),
    );
    Ok(Json(json!({
        "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": reclaimed,
    }))
    .into_response())
}

#[allow(dead_code)]
fn _assert_send(_: Arc<Ctr>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(detach_keys(""), vec![16, 17]);
        assert_eq!(detach_keys("ctrl-a,x"), vec![1, b'x']);
    }

    #[test]
    fn ps_rows() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 10 1 0 10:00 ? 00:00:00 sleep 100\nroot 11 1 0 10:00 ? 00:00:00 other\n";
        let (t, p) = parse_ps(out, &[10]).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(
            p,
            vec![vec![
                "root",
                "10",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000_000_000_000));
        assert!(parse_ts("2023-11-14T22:13:20Z").is_some());
        assert_eq!(parse_ts(""), None);
    }
}
