//! Image routes over [`berth_image::ImageService`] (blocking: every call goes through
//! [`blocking`]). Image names in paths are not percent-encoded and may contain `/` and `:`, so
//! `/images/{name}/json|history|get|tag|push` and `DELETE /images/{name}` are matched by a
//! catch-all and split on the last segment.

use std::io::{Read, Write};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_image::service::{DeleteResponse, ImageSummary};
use berth_image::{ImageService, ImportOptions};
use futures_util::TryStreamExt;
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::stream::{self, LineEnd, StreamSender};
use super::{blocking, ApiVersion, AppState, Query};
use crate::events::Event;
use crate::filters::Filters;
use crate::EngineError;

/// Image routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/load", post(load))
        .route("/images/get", get(save_many))
        .route("/images/prune", post(prune))
        .route("/images/search", get(search))
        .route(
            "/images/{*rest}",
            get(get_named).post(post_named).delete(delete_named),
        )
        .route("/auth", post(auth))
}

/// Split `name/json` into (`name`, `json`).
fn split_op(rest: &str) -> Option<(&str, &str)> {
    let (name, op) = rest.rsplit_once('/')?;
    (!name.is_empty()).then_some((name, op))
}

async fn get_named(
    State(e): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, EngineError> {
    let Some((name, op)) = split_op(&rest) else {
        return Err(EngineError::not_found("page not found"));
    };
    let name = name.to_string();
    match op {
        "json" => {
            let imgs = e.images.clone();
            let v = blocking(move || Ok(imgs.inspect(&name)?)).await?;
            Ok(Json(v).into_response())
        }
        "history" => {
            let imgs = e.images.clone();
            let v = blocking(move || Ok(imgs.history(&name)?)).await?;
            Ok(Json(v).into_response())
        }
        "get" => save(e, vec![name]).await,
        _ => Err(EngineError::not_found("page not found")),
    }
}

async fn post_named(
    State(e): State<AppState>,
    Path(rest): Path<String>,
    q: Query,
    headers: axum::http::HeaderMap,
) -> Result<Response, EngineError> {
    let Some((name, op)) = split_op(&rest) else {
        return Err(EngineError::not_found("page not found"));
    };
    let name = name.to_string();
    match op {
        "tag" => {
            let repo = q.get("repo").unwrap_or("").to_string();
            if repo.is_empty() {
                return Err(EngineError::invalid(
                    "repository name must have at least one component",
                ));
            }
            let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            let dst = if repo.contains('@') {
                repo.clone()
            } else {
                format!("{repo}:{tag}")
            };
            let imgs = e.images.clone();
            let dst2 = dst.clone();
            let id = blocking(move || {
                imgs.tag(&name, &dst2)?;
                Ok(imgs.resolve(&dst2)?.id.to_string())
            })
            .await?;
            e.events
                .publish(Event::new("image", "tag", &id).attr("name", familiar(&dst)));
            Ok(StatusCode::CREATED.into_response())
        }
        "push" => {
            let tag = q.get("tag").unwrap_or("");
            super::registry::push(e, &name, tag, &headers).await
        }
        _ => Err(EngineError::not_found("page not found")),
    }
}

fn familiar(name: &str) -> String {
    berth_core::Reference::parse(name)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| name.to_string())
}

async fn delete_named(
    State(e): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<Response, EngineError> {
    let force = q.bool("force")?;
    let noprune = q.bool("noprune")?;
    let imgs = e.images.clone();
    let out = blocking(move || Ok(imgs.remove(&name, force, !noprune)?)).await?;
    publish_deletes(&e, &out);
    Ok(Json(out).into_response())
}

fn publish_deletes(e: &AppState, out: &[DeleteResponse]) {
    for d in out {
        match d {
            DeleteResponse::Untagged(n) => e
                .events
                .publish(Event::new("image", "untag", n).attr("name", n.clone())),
            DeleteResponse::Deleted(id) => e
                .events
                .publish(Event::new("image", "delete", id).attr("name", id.clone())),
        }
    }
}

/// A summary in the `/images/json` shape for `version`.
fn summary_json(s: &ImageSummary, v: ApiVersion) -> serde_json::Value {
    let mut j = json!({
        "Containers": if s.containers > 0 { s.containers } else { -1 },
        "Created": s.created,
        "Id": s.id,
        "Labels": s.labels,
        "ParentId": "",
        "RepoDigests": s.repo_digests,
        "RepoTags": s.repo_tags,
        "SharedSize": -1,
        "Size": s.size,
    });
    if !v.at_least(44) {
        j["VirtualSize"] = s.size.into();
    }
    if !v.at_least(43) && s.repo_tags.is_empty() {
        // older clients expect the placeholders
        j["RepoTags"] = json!(["<none>:<none>"]);
        if s.repo_digests.is_empty() {
            j["RepoDigests"] = json!(["<none>@<none>"]);
        }
    }
    j
}

/// Go's `path.Match` (`*`, `?`, `[...]`; `*` does not cross `/`).
pub fn glob_match(pattern: &str, s: &str) -> bool {
    fn m(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => {
                for i in 0..=s.len() {
                    if i > 0 && s[i - 1] == '/' {
                        return false;
                    }
                    if m(&p[1..], &s[i..]) {
                        return true;
                    }
                }
                false
            }
            Some('?') => !s.is_empty() && s[0] != '/' && m(&p[1..], &s[1..]),
            Some('[') => {
                let Some(c) = s.first() else { return false };
                let Some(end) = p.iter().skip(1).position(|&x| x == ']').map(|i| i + 1) else {
                    return false;
                };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        if class[i] <= *c && *c <= class[i + 2] {
                            hit = true;
                        }
                        i += 3;
                    } else {
                        if class[i] == *c {
                            hit = true;
                        }
                        i += 1;
                    }
                }
                hit != neg && m(&p[end + 1..], &s[1..])
            }
            Some('\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && m(&p[2..], &s[1..]),
            Some(c) => !s.is_empty() && s[0] == *c && m(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    m(&p, &s)
}

/// Docker's `reference` filter: the pattern matches a tag's familiar form (`busybox:latest`)
/// or its familiar name (`busybox`).
fn reference_matches(pattern: &str, repo_tags: &[String]) -> bool {
    repo_tags.iter().any(|t| {
        let name = t
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map(|(n, _)| n)
            .unwrap_or(t);
        glob_match(pattern, t) || glob_match(pattern, name)
    })
}

/// Apply `/images/json` filters (`reference`, `dangling`, `label`, `before`, `since`, `until`).
pub fn filter_images(
    images: Vec<ImageSummary>,
    f: &Filters,
    resolve_created: &dyn Fn(&str) -> Result<i64, EngineError>,
) -> Result<Vec<ImageSummary>, EngineError> {
    f.validate(&["reference", "dangling", "label", "before", "since", "until"])?;
    let dangling = f.bool("dangling")?;
    let before = f
        .values("before")
        .map(resolve_created)
        .collect::<Result<Vec<_>, _>>()?;
    let since = f
        .values("since")
        .map(resolve_created)
        .collect::<Result<Vec<_>, _>>()?;
    let now = crate::events::now_nanos();
    let until = f
        .values("until")
        .map(|u| {
            crate::events::parse_time_nanos(u, now)
                .map(|n| n.div_euclid(1_000_000_000))
                .ok_or_else(|| EngineError::invalid(format!("invalid filter 'until={u}'")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = f.values("reference").collect();
    Ok(images
        .into_iter()
        .map(|mut s| {
            let was_dangling = s.repo_tags.is_empty();
            // as Docker: with a reference filter, show only the matching names
            if !refs.is_empty() {
                s.repo_tags.retain(|t| {
                    refs.iter()
                        .any(|p| reference_matches(p, std::slice::from_ref(t)))
                });
                s.repo_digests.retain(|d| {
                    let name = d.split('@').next().unwrap_or(d);
                    refs.iter().any(|p| glob_match(p, name) || glob_match(p, d))
                });
            }
            (s, was_dangling)
        })
        .filter(|(s, was_dangling)| {
            if let Some(d) = dangling {
                if d != *was_dangling {
                    return false;
                }
            }
            if f.has("reference")
                && !f
                    .values("reference")
                    .any(|p| reference_matches(p, &s.repo_tags))
            {
                return false;
            }
            if !f.match_labels("label", &s.labels) {
                return false;
            }
            before.iter().all(|b| s.created < *b)
                && since.iter().all(|b| s.created > *b)
                && until.iter().all(|u| s.created <= *u)
        })
        .map(|(s, _)| s)
        .collect())
}

fn created_of(imgs: &ImageService, name: &str) -> Result<i64, EngineError> {
    let i = imgs.inspect(name)?;
    Ok(berth_image::timefmt::parse_rfc3339(&i.created).unwrap_or(0))
}

async fn list(State(e): State<AppState>, v: ApiVersion, q: Query) -> Result<Response, EngineError> {
    let f = q.filters()?;
    // legacy `filter=` (API < 1.41): a reference pattern
    let mut f = f;
    if let Some(p) = q.get("filter").filter(|p| !p.is_empty()) {
        f.insert("reference", p);
    }
    let imgs = e.images.clone();
    let list = blocking(move || {
        let all = imgs.list()?;
        filter_images(all, &f, &|n| created_of(&imgs, n))
    })
    .await?;
    let out: Vec<_> = list.iter().map(|s| summary_json(s, v)).collect();
    Ok(Json(out).into_response())
}

async fn search() -> Json<Vec<serde_json::Value>> {
    Json(Vec::new())
}

async fn auth(State(e): State<AppState>, body: Bytes) -> Result<Response, EngineError> {
    super::registry::auth(e, &body).await
}

/// Errors reading an uploaded archive (truncated, not a tar) are the client's, not ours.
fn upload_error(e: berth_image::ImageError) -> EngineError {
    if let berth_image::ImageError::Io { source, context } = &e {
        if context.starts_with("read")
            || matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            )
        {
            return EngineError::invalid(e.to_string());
        }
    }
    e.into()
}

/// A sync reader over a request body (for blocking consumers); build it on an async thread.
fn body_reader(req: Request) -> impl Read + Send + 'static {
    let s = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(format!("read request body: {e}")));
    SyncIoBridge::new(StreamReader::new(s))
}

async fn load(State(e): State<AppState>, q: Query, req: Request) -> Result<Response, EngineError> {
    let quiet = q.bool("quiet")?;
    let _ = quiet; // berth prints no progress bars either way
    let reader = body_reader(req);
    let imgs = e.images.clone();
    let results = blocking(move || imgs.load(reader).map_err(upload_error)).await?;
    let mut lines = Vec::new();
    for r in &results {
        for (name, old) in &r.renamed {
            lines.push(format!(
                "The image {name} already exists, renaming the old one with ID {old} to empty string\n"
            ));
        }
        if r.names.is_empty() {
            lines.push(format!("Loaded image ID: {}\n", r.id));
        }
        for n in &r.names {
            lines.push(format!("Loaded image: {n}\n"));
        }
        e.events
            .publish(Event::new("image", "load", &r.id.to_string()).attr(
                "name",
                r.names.first().cloned().unwrap_or_else(|| r.id.to_string()),
            ));
    }
    // chunked like Docker's: docker-py decodes a non-chunked body as one JSON document
    let (tx, resp) = stream::json_channel(LineEnd::CrLf);
    tokio::spawn(async move {
        for l in lines {
            if !tx.json(&json!({ "stream": l })).await {
                return;
            }
        }
    });
    Ok(resp)
}

async fn save_many(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let names: Vec<String> = q.all("names").into_iter().map(String::from).collect();
    if names.is_empty() {
        return Err(EngineError::invalid("no images to save: give names="));
    }
    save(e, names).await
}

/// A `Write` that sends 64 KiB chunks into a streamed response (blocking side).
struct ChunkWriter {
    tx: StreamSender,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        if self.tx.blocking_bytes(chunk) {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client went away",
            ))
        }
    }
}

/// `docker save`: resolve first (errors as normal HTTP errors), then stream the tar.
async fn save(e: AppState, names: Vec<String>) -> Result<Response, EngineError> {
    let imgs = e.images.clone();
    let check = names.clone();
    blocking(move || {
        for n in &check {
            imgs.resolve(n)?;
        }
        Ok(())
    })
    .await?;
    let (tx, resp) = stream::channel(Some("application/x-tar"), LineEnd::Lf);
    let imgs: Arc<ImageService> = e.images.clone();
    let events = e.events.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx,
            buf: Vec::new(),
        };
        let res = imgs
            .save(&names, &mut w)
            .map_err(EngineError::from)
            .and_then(|_| {
                w.flush()
                    .map_err(|e| EngineError::io("send image archive", e))
            });
        match res {
            Ok(()) => {
                for n in &names {
                    events.publish(Event::new("image", "save", n).attr("name", n.clone()));
                }
            }
            // The 200 is out: dropping the sender truncates the body, which the client sees
            // as an unexpected EOF.
            Err(err) => tracing::warn!("save {names:?}: {err}"),
        }
    });
    Ok(resp)
}

async fn create(
    State(e): State<AppState>,
    q: Query,
    req: Request,
) -> Result<Response, EngineError> {
    if let Some(src) = q.get("fromSrc") {
        if src != "-" {
            return Err(EngineError::unsupported(
                "import from a URL is not supported: send the tarball in the request body (fromSrc=-)",
            ));
        }
        let repo = q.get("repo").unwrap_or("").to_string();
        let tag = q.get("tag").unwrap_or("").to_string();
        let reference = match (repo.is_empty(), tag.is_empty()) {
            (true, _) => None,
            (false, true) => Some(repo.clone()),
            (false, false) => Some(format!("{repo}:{tag}")),
        };
        let mut opts = ImportOptions {
            changes: q.all("changes").into_iter().map(String::from).collect(),
            message: q.get("message").filter(|m| !m.is_empty()).map(String::from),
            ..ImportOptions::default()
        };
        if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
            opts.platform = berth_core::Platform::parse(p)
                .ok_or_else(|| EngineError::invalid(format!("invalid platform {p:?}")))?;
        }
        let reader = body_reader(req);
        let imgs = e.images.clone();
        let r = blocking(move || {
            imgs.import(reader, reference.as_deref(), &opts)
                .map_err(upload_error)
        })
        .await?;
        e.events.publish(
            Event::new("image", "import", &r.id.to_string())
                .attr("name", r.names.first().cloned().unwrap_or_default()),
        );
        let (tx, resp) = stream::json_channel(LineEnd::CrLf);
        tokio::spawn(async move {
            tx.json(&json!({ "status": r.id.to_string() })).await;
        });
        return Ok(resp);
    }
    if let Some(img) = q.get("fromImage") {
        let tag = q.get("tag").unwrap_or("");
        return super::registry::pull(e, img, tag, q.get("platform"), req.headers()).await;
    }
    Err(EngineError::invalid("give fromImage or fromSrc"))
}

async fn prune(State(e): State<AppState>, q: Query) -> Result<Response, EngineError> {
    let f = q.filters()?;
    f.validate(&["dangling", "label", "until", "label!"])?;
    let dangling = f.bool("dangling")?.unwrap_or(true);
    let imgs = e.images.clone();
    let (deleted, reclaimed) = blocking(move || {
        let mut sel = Filters::default();
        for l in f.values("label") {
            sel.insert("label", l);
        }
        for u in f.values("until") {
            sel.insert("until", u);
        }
        let all = imgs.list()?;
        let mut cands = filter_images(all, &sel, &|_| Ok(0))?;
        cands.retain(|s| {
            (!dangling || s.repo_tags.is_empty())
                && s.containers <= 0
                && !f.values("label!").any(|l| match l.split_once('=') {
                    Some((k, v)) => s.labels.get(k).is_some_and(|x| x == v),
                    None => s.labels.contains_key(l),
                })
        });
        let mut deleted: Vec<DeleteResponse> = Vec::new();
        for c in cands {
            match imgs.remove(&c.id, false, false) {
                Ok(mut d) => deleted.append(&mut d),
                Err(err) => tracing::debug!("prune skips {}: {err}", c.id),
            }
        }
        let report = imgs.gc()?;
        Ok((deleted, report.bytes_freed))
    })
    .await?;
    publish_deletes(&e, &deleted);
    e.events
        .publish(Event::new("image", "prune", "").attr("reclaimed", reclaimed.to_string()));
    let deleted_json = if deleted.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(&deleted).unwrap_or(serde_json::Value::Null)
    };
    Ok(Json(json!({ "ImagesDeleted": deleted_json, "SpaceReclaimed": reclaimed })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "library/busybox"));
        assert!(glob_match("*/busybox", "library/busybox"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^a-c]usybox", "busybox"));
        assert!(!glob_match("busy", "busybox"));
    }

    #[test]
    fn reference_filter() {
        let tags = vec![
            "localhost:5000/app:1".to_string(),
            "busybox:latest".to_string(),
        ];
        assert!(reference_matches("busybox", &tags));
        assert!(reference_matches("busybox:latest", &tags));
        assert!(!reference_matches("busybox:1", &tags));
        assert!(reference_matches("localhost:5000/app", &tags));
        assert!(reference_matches("localhost:5000/*:1", &tags));
    }

    fn summ(id: &str, tags: &[&str], created: i64, labels: &[(&str, &str)]) -> ImageSummary {
        ImageSummary {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            created,
            size: 1,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: 0,
        }
    }

    #[test]
    fn image_filters() {
        let imgs = vec![
            summ("a", &["busybox:latest"], 100, &[("x", "1")]),
            summ("b", &[], 200, &[]),
            summ("c", &["alpine:3"], 300, &[]),
        ];
        let run = |s: &str| {
            let f = Filters::parse(s).unwrap();
            filter_images(imgs.clone(), &f, &|n| match n {
                "busybox" => Ok(100),
                "alpine:3" => Ok(300),
                _ => Err(EngineError::not_found(format!("No such image: {n}"))),
            })
            .map(|v| v.into_iter().map(|s| s.id).collect::<Vec<_>>())
        };
        assert_eq!(run(r#"{"dangling":["true"]}"#).unwrap(), vec!["b"]);
        assert_eq!(
            run(r#"{"dangling":{"false":true}}"#).unwrap(),
            vec!["a", "c"]
        );
        assert_eq!(run(r#"{"reference":["busy*"]}"#).unwrap(), vec!["a"]);
        assert_eq!(run(r#"{"label":["x=1"]}"#).unwrap(), vec!["a"]);
        assert_eq!(run(r#"{"before":["alpine:3"]}"#).unwrap(), vec!["a", "b"]);
        assert_eq!(run(r#"{"since":["busybox"]}"#).unwrap(), vec!["b", "c"]);
        assert_eq!(run(r#"{"since":["nope"]}"#).unwrap_err().http_status(), 404);
        assert_eq!(run(r#"{"bogus":["x"]}"#).unwrap_err().http_status(), 400);
    }
}
