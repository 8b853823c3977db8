//! System routes: `/_ping`, `/version`, `/info`, `/system/df`, `/events`, `/auth`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::stream::{self, LineEnd};
use super::{blocking, AppState, Query};
use crate::events::{now_nanos, parse_time_nanos};
use crate::{ContainerQueries, EngineError, API_VERSION, MIN_API_VERSION, VERSION};

/// System routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping_head))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(df))
        .route("/events", get(events))
        .route("/build/prune", axum::routing::post(build_prune))
}

/// `docker builder prune` / `system prune`: berth has no build cache yet, so nothing to free.
async fn build_prune() -> Json<serde_json::Value> {
    Json(json!({ "CachesDeleted": null, "SpaceReclaimed": 0 }))
}

fn ping_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
}

async fn ping() -> Response {
    let mut r = "OK".into_response();
    ping_headers(&mut r);
    r
}

async fn ping_head() -> Response {
    let mut r = ().into_response();
    ping_headers(&mut r);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// The kernel release (`uname -r`).
pub fn kernel_version() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Docker's GOARCH name for this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

async fn version() -> Json<serde_json::Value> {
    let api = format!("{}.{}", API_VERSION.0, API_VERSION.1);
    let min = format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1);
    Json(serde_json::json!({
        "Platform": { "Name": "berth" },
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": api,
                "MinAPIVersion": min,
                "GitCommit": "",
                "GoVersion": "none (rust)",
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel_version(),
                "Experimental": "false",
                "BuildTime": "",
            }
        }],
        "Version": VERSION,
        "ApiVersion": api,
        "MinAPIVersion": min,
        "GitCommit": "",
        "GoVersion": "none (rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

/// `1` or `2`: the cgroup version mounted at /sys/fs/cgroup.
pub fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn info(State(e): State<AppState>) -> Result<Json<serde_json::Value>, EngineError> {
    let e2 = e.clone();
    let (images, driver) = blocking(move || {
        Ok((
            e2.images.list()?.len(),
            e2.images.snapshotter().name().to_string(),
        ))
    })
    .await?;
    let c = e.containers.counts();
    let cfg = &e.config;
    let runtimes: serde_json::Map<String, serde_json::Value> = cfg
        .runtimes
        .iter()
        .map(|(k, v)| {
            let path = if k == crate::config::BUILTIN_RUNTIME {
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "berth".into())
            } else {
                v.path.display().to_string()
            };
            let mut r = json!({ "path": path });
            if !v.runtime_args.is_empty() {
                r["runtimeArgs"] = json!(v.runtime_args);
            }
            (k.clone(), r)
        })
        .collect();
    let uname = rustix::system::uname();
    let cg = cgroup_version();
    Ok(Json(json!({
        "ID": e.id,
        "Containers": c.total,
        "ContainersRunning": c.running,
        "ContainersPaused": c.paused,
        "ContainersStopped": c.stopped,
        "Images": images,
        "Driver": driver,
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Snapshotter", driver]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["host", "none"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": cg == "1",
        "IPv4Forwarding": true,
        "Debug": cfg.log_level == "debug" || cfg.log_level == "trace",
        "NFd": count_fds(),
        "NGoroutines": 0,
        "SystemTime": berth_image::timefmt::now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cg,
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": os_release(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine().to_string_lossy(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "IndexConfigs": {
                "docker.io": { "Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true }
            },
            "Mirrors": null,
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": cfg.data_root,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": cfg.name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": runtimes,
        "DefaultRuntime": cfg.default_runtime,
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "" },
        "RuncCommit": { "ID": "" },
        "InitCommit": { "ID": "" },
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "CDISpecDirs": [],
        "Warnings": [],
    })))
}

async fn df(State(e): State<AppState>) -> Result<Json<serde_json::Value>, EngineError> {
    let e2 = e.clone();
    let (images, volumes) = blocking(move || {
        let imgs = e2.images.list()?;
        let vols = e2.volumes.list()?;
        let mut vj = Vec::new();
        for v in vols {
            let users = super::volumes::volume_users(&e2, &v.name).len();
            let size = e2.volumes.usage(&v);
            let mut j = serde_json::to_value(&v).unwrap_or_default();
            j["UsageData"] = json!({ "Size": size, "RefCount": users });
            vj.push(j);
        }
        Ok((imgs, vj))
    })
    .await?;
    let layers: u64 = images.iter().map(|i| i.size).sum();
    let images: Vec<_> = images
        .iter()
        .map(|s| {
            json!({
                "Containers": s.containers.max(0),
                "Created": s.created,
                "Id": s.id,
                "Labels": s.labels,
                "ParentId": "",
                "RepoDigests": s.repo_digests,
                "RepoTags": s.repo_tags,
                "SharedSize": 0,
                "Size": s.size,
            })
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": e.containers.df_rows(),
        "Volumes": volumes,
        "BuildCache": [],
    })))
}

async fn events(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let f = q.filters()?;
    f.validate(&[
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "type",
        "volume",
        "scope",
        "config",
        "node",
        "plugin",
        "secret",
        "service",
    ])?;
    let now = now_nanos();
    let since = match q.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            parse_time_nanos(s, now)
                .ok_or_else(|| EngineError::invalid(format!("invalid value for since: {s:?}")))?,
        ),
        None => None,
    };
    let until = match q.get("until").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            parse_time_nanos(s, now)
                .ok_or_else(|| EngineError::invalid(format!("invalid value for until: {s:?}")))?,
        ),
        None => None,
    };
    let (past, mut rx) = e.events.subscribe_since(since);
    let stopping = e.shutdown.clone();
    let (tx, resp) = stream::json_channel(LineEnd::Lf);
    tokio::spawn(async move {
        for ev in past {
            if until.is_some_and(|u| ev.time_nano > u) {
                break;
            }
            if ev.matches(&f) && !tx.json(&ev.to_json()).await {
                return;
            }
        }
        // an `until` too far ahead to represent means "no deadline"
        let deadline = until.and_then(|u| {
            let wait = u.saturating_sub(now_nanos()).max(0) as u64;
            tokio::time::Instant::now().checked_add(Duration::from_nanos(wait))
        });
        if let Some(d) = deadline {
            if d <= tokio::time::Instant::now() {
                return;
            }
        }
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None => return, // until reached
                    Some(Ok(ev)) => {
                        if until.is_some_and(|u| ev.time_nano > u) {
                            return;
                        }
                        if since.is_some_and(|s| ev.time_nano < s) {
                            continue; // `since` in the future: skip until then
                        }
                        if ev.matches(&f) && !tx.json(&ev.to_json()).await {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        tracing::warn!("events subscriber lagged; {n} events dropped");
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                },
                _ = tx.closed() => return,
                _ = stopping.cancelled() => return,
            }
        }
    });
    Ok(resp)
}
