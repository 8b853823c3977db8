//! Registry routes through `berth-distribution`: `POST /images/create?fromImage=` (pull),
//! `POST /images/{name}/push`, `POST /auth`. Pull and push stream Docker's JSON progress; the
//! client's `X-Registry-Auth` header (base64url JSON) supplies credentials (as dockerd, no
//! config.json is read on the daemon's side). `berth_distribution::pull`/`push` block: they run on
//! `spawn_blocking` threads driving the client on the runtime handle.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_core::{ErrorKind, Reference};
use berth_distribution::{Client, ClientConfig, Credentials, Progress};
use serde::Deserialize;
use serde_json::json;

use super::stream::{self, LineEnd};
use super::AppState;
use crate::events::Event;
use crate::EngineError;

/// The `X-Registry-Auth` / `POST /auth` body (Docker's `AuthConfig`).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// Registry address (`https://index.docker.io/v1/`, `host:port`).
    #[serde(default)]
    pub serveraddress: String,
    /// An identity token (used as the password, with `<token>` as user).
    #[serde(default)]
    pub identitytoken: String,
}

impl AuthConfig {
    /// Decode an `X-Registry-Auth` value: base64url (padding optional, standard alphabet
    /// accepted) of the JSON. Empty or `{}` gives `None`.
    pub fn from_header(v: &str) -> Result<Option<AuthConfig>, EngineError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let t = v.trim_end_matches('=');
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
            .map_err(|e| EngineError::invalid(format!("decode X-Registry-Auth: {e}")))?;
        let a: AuthConfig = serde_json::from_slice(&raw)
            .map_err(|e| EngineError::invalid(format!("parse X-Registry-Auth: {e}")))?;
        Ok(a.credentials().map(|_| a))
    }

    /// The credentials, if any were given.
    pub fn credentials(&self) -> Option<Credentials> {
        if !self.identitytoken.is_empty() {
            return Some(Credentials::new("<token>", self.identitytoken.clone()));
        }
        (!self.username.is_empty()).then(|| Credentials::new(&self.username, &self.password))
    }
}

/// The registry host of a login `serveraddress` as references spell it (`docker.io` for Docker
/// Hub's aliases).
pub fn login_registry(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

fn client_for(e: &AppState, creds: Option<(String, Credentials)>) -> Client {
    let mut credentials = HashMap::new();
    if let Some((reg, c)) = creds {
        credentials.insert(reg, c);
    }
    // As dockerd: credentials come only from the client (X-Registry-Auth), never from a
    // config.json on the daemon's side.
    Client::new(ClientConfig {
        insecure: e.config.insecure_registries.clone(),
        credentials,
        docker_config: None,
        ..ClientConfig::default()
    })
}

fn header_auth(h: &HeaderMap) -> Result<Option<AuthConfig>, EngineError> {
    match h.get("x-registry-auth") {
        Some(v) => AuthConfig::from_header(v.to_str().unwrap_or("")),
        None => Ok(None),
    }
}

fn parse_ref(s: &str) -> Result<Reference, EngineError> {
    let r = Reference::parse(s)
        .map_err(|err| EngineError::invalid(format!("invalid reference format {s:?}: {err}")))?;
    if r.tag().is_none() && r.digest().is_none() {
        return r
            .with_tag("latest")
            .map_err(|err| EngineError::invalid(format!("{s}: {err}")));
    }
    Ok(r)
}

/// A non-blocking sender into the response stream: the registry client reports progress from
/// inside `block_on` (a runtime context, where `blocking_send` would panic), so messages go
/// through an unbounded queue forwarded by an async task, in order.
fn pipe(tx: stream::StreamSender) -> Pipe {
    let (q, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if !tx.json(&v).await {
                break;
            }
        }
    });
    Pipe(q)
}

struct Pipe(tokio::sync::mpsc::UnboundedSender<serde_json::Value>);

impl Pipe {
    fn blocking_json(&self, v: &serde_json::Value) {
        let _ = self.0.send(v.clone());
    }
}

fn error_json(msg: &str) -> serde_json::Value {
    json!({"errorDetail": {"message": msg}, "error": msg})
}

/// `POST /images/create?fromImage=NAME&tag=TAG[&platform=]`.
pub async fn pull(
    e: AppState,
    image: &str,
    tag: &str,
    platform: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, EngineError> {
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        let want = berth_core::Platform::parse(p)
            .ok_or_else(|| EngineError::invalid(format!("invalid platform {p:?}")))?;
        let host = berth_core::Platform::host();
        if want.os != host.os || want.architecture != host.architecture {
            return Err(EngineError::unsupported(format!(
                "pulling for platform {p} is not supported: only the host platform {host}"
            )));
        }
    }
    let what = if tag.is_empty() {
        image.to_string()
    } else if tag.starts_with("sha256:") {
        format!("{image}@{tag}")
    } else {
        format!("{image}:{tag}")
    };
    let reference = parse_ref(&what)?;
    let auth = header_auth(headers)?;
    let creds = auth
        .and_then(|a| a.credentials())
        .map(|c| (reference.domain().to_string(), c));
    let client = client_for(&e, creds);
    let handle = tokio::runtime::Handle::current();
    let (tx, resp) = stream::json_channel(LineEnd::CrLf);
    let tx = pipe(tx);
    tokio::task::spawn_blocking(move || {
        let shown = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".into(),
        };
        tx.blocking_json(&json!({
            "status": format!("Pulling from {}", reference.path()),
            "id": shown,
        }));
        let name = reference.to_string();
        let before = e.images.resolve(&name).ok().map(|i| i.target.digest);
        let cb = |p: Progress| {
            tx.blocking_json(&p.to_json());
        };
        match berth_distribution::pull(&e.images, &client, &handle, &reference, &cb) {
            Ok(r) => {
                tx.blocking_json(&json!({"status": format!("Digest: {}", r.target)}));
                let familiar = reference.familiar();
                let status = if before.as_ref() == Some(&r.target) {
                    format!("Status: Image is up to date for {familiar}")
                } else {
                    format!("Status: Downloaded newer image for {familiar}")
                };
                tx.blocking_json(&json!({ "status": status }));
                e.events
                    .publish(Event::new("image", "pull", &familiar).attr("name", familiar.clone()));
            }
            Err(err) => {
                tracing::info!("pull {reference}: {err}");
                tx.blocking_json(&error_json(&pull_message(&reference, &err)));
            }
        }
    });
    Ok(resp)
}

/// Docker's wording for the common pull failures.
fn pull_message(r: &Reference, err: &berth_distribution::Error) -> String {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::NotFound if msg.contains("manifest") => {
            let name = r.familiar();
            format!("manifest for {name} not found: manifest unknown: {msg}")
        }
        ErrorKind::Unauthorized | ErrorKind::PermissionDenied => {
            let name = r.familiar_name();
            format!(
                "pull access denied for {name}, repository does not exist or may require \
                 'docker login': {msg}"
            )
        }
        _ => msg,
    }
}

/// `POST /images/{name}/push?tag=`.
pub async fn push(
    e: AppState,
    name: &str,
    tag: &str,
    headers: &HeaderMap,
) -> Result<Response, EngineError> {
    let repo = Reference::parse(name)
        .map_err(|err| EngineError::invalid(format!("invalid reference format {name:?}: {err}")))?;
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        return Err(EngineError::invalid(format!(
            "push {name}: give the tag in the tag parameter"
        )));
    }
    // the references to push: the one tag, or (no tag: Docker's --all-tags) every local tag of
    // the repository; none is a plain 404, before the stream starts
    let refs: Vec<Reference> = {
        let imgs = e.images.clone();
        let tag = tag.to_string();
        let repo = repo.clone();
        super::blocking(move || {
            let missing = |shown: String| {
                EngineError::not_found(format!(
                    "An image does not exist locally with the tag: {shown}"
                ))
            };
            if !tag.is_empty() {
                let r = parse_ref(&format!("{}:{tag}", repo.name()))?;
                imgs.resolve(&r.to_string())
                    .map_err(|_| missing(r.familiar()))?;
                return Ok(vec![r]);
            }
            let mut out: Vec<Reference> = imgs
                .list()?
                .into_iter()
                .flat_map(|s| s.repo_tags)
                .filter_map(|t| Reference::parse(&t).ok())
                .filter(|r| r.name() == repo.name() && r.tag().is_some())
                .collect();
            out.sort_by_key(|r| r.to_string());
            out.dedup();
            if out.is_empty() {
                return Err(missing(repo.familiar()));
            }
            Ok(out)
        })
        .await?
    };
    let auth = header_auth(headers)?;
    let creds = auth
        .and_then(|a| a.credentials())
        .map(|c| (repo.domain().to_string(), c));
    let client = client_for(&e, creds);
    let handle = tokio::runtime::Handle::current();
    let (tx, resp) = stream::json_channel(LineEnd::CrLf);
    let tx = pipe(tx);
    tokio::task::spawn_blocking(move || {
        tx.blocking_json(&json!({
            "status": format!("The push refers to repository [{}]", repo.name()),
        }));
        let cb = |p: Progress| {
            tx.blocking_json(&p.to_json());
        };
        for reference in refs {
            let local = reference.to_string();
            match berth_distribution::push(&e.images, &client, &handle, &local, &reference, &cb) {
                Ok(r) => {
                    let t = reference.tag().unwrap_or("latest").to_string();
                    tx.blocking_json(&json!({
                        "status": format!("{t}: digest: {} size: {}", r.digest, r.size),
                    }));
                    tx.blocking_json(&json!({
                        "progressDetail": {},
                        "aux": {"Tag": t, "Digest": r.digest.to_string(), "Size": r.size},
                    }));
                    let familiar = reference.familiar();
                    e.events.publish(
                        Event::new("image", "push", &familiar).attr("name", familiar.clone()),
                    );
                }
                Err(err) => {
                    tracing::info!("push {reference}: {err}");
                    tx.blocking_json(&error_json(&err.to_string()));
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// `POST /auth`: check the credentials against the registry (nothing is stored).
pub async fn auth(e: AppState, body: &[u8]) -> Result<Response, EngineError> {
    let a: AuthConfig = serde_json::from_slice(body)
        .map_err(|err| EngineError::invalid(format!("parse auth config: {err}")))?;
    let registry = login_registry(&a.serveraddress);
    let Some(creds) = a.credentials() else {
        return Err(EngineError::new(
            ErrorKind::Unauthorized,
            "login: a username and password are required",
        ));
    };
    let mut cfg = ClientConfig {
        insecure: e.config.insecure_registries.clone(),
        ..ClientConfig::default()
    };
    cfg.docker_config = None;
    let client = Client::new(cfg);
    match client.verify_login(&registry, &creds).await {
        Ok(()) => {
            Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
        }
        Err(err) => {
            let kind = match err.kind() {
                ErrorKind::Unauthorized | ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
                k => k,
            };
            Err(EngineError::new(
                kind,
                format!("login to {registry}: {err}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header() {
        let raw = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        for enc in [
            base64::engine::general_purpose::URL_SAFE.encode(raw),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            base64::engine::general_purpose::STANDARD.encode(raw),
        ] {
            let a = AuthConfig::from_header(&enc).unwrap().unwrap();
            assert_eq!(a.credentials(), Some(Credentials::new("u", "p?>")));
        }
        let empty = base64::engine::general_purpose::URL_SAFE.encode("{}");
        assert!(AuthConfig::from_header(&empty).unwrap().is_none());
        assert!(AuthConfig::from_header("").unwrap().is_none());
        assert!(AuthConfig::from_header("!!!").is_err());
    }

    #[test]
    fn login_registries() {
        assert_eq!(login_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_registry(""), "docker.io");
        assert_eq!(login_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            login_registry("http://localhost:5000/v2/"),
            "localhost:5000"
        );
    }
}
