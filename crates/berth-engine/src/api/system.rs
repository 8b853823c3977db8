//! System routes: `/_ping`, `/version`, `/info`, `/system/df`, `/events`, `/auth`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use crate::{API_VERSION, MIN_API_VERSION, VERSION};

/// System routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping_head))
        .route("/version", get(version))
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
