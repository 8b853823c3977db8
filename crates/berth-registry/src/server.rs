//! HTTP handlers: one dispatcher over [`crate::route::Route`], auth in front, an access log
//! around everything.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_content::{Error as StoreError, Store as _};
use berth_core::Digest;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::auth::{self, Access, Claims};
use crate::error::{ApiError, Code};
use crate::manifest;
use crate::meta::{self, NewManifest, PutRefused};
use crate::route::{self, Route};
use crate::Inner;

/// Manifests larger than this are refused with 413.
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

type ApiResult = Result<Response, ApiError>;

/// The authenticated user of a request, for the access log.
#[derive(Clone, Debug)]
struct User(String);

fn h(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = (status, Body::empty()).into_response();
    for (k, v) in headers {
        r.headers_mut().insert(*k, h(v));
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn query_pairs(req_query: Option<&str>) -> Vec<(String, String)> {
    req_query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn q<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task: {e}")))?
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::new(Code::DigestInvalid, format!("invalid digest {s}: {e}")))
}

/// The access-log middleware: one structured event per request, and the API version header.
pub(crate) async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(resp.body()).exact())
        .unwrap_or(0);
    let user = resp
        .extensions()
        .get::<User>()
        .map(|u| u.0.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "berth_registry::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        bytes,
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        user = %user,
        "request"
    );
    resp
}

/// What a request needs: (type, name, action).
fn required(
    route: &Route,
    method: &Method,
    pairs: &[(String, String)],
) -> Vec<(String, String, &'static str)> {
    let action = match *method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE => "delete",
        _ => "push",
    };
    match route {
        Route::Base => Vec::new(),
        Route::Catalog => vec![("registry".into(), "catalog".into(), "*")],
        other => {
            let name = other.name().unwrap_or_default().to_string();
            let mut v = vec![("repository".to_string(), name.clone(), action)];
            if matches!(other, Route::UploadStart(_)) {
                if let (Some(_), Some(from)) = (q(pairs, "mount"), q(pairs, "from")) {
                    if route::valid_name(from) && from != name {
                        v.push(("repository".into(), from.to_string(), "pull"));
                    }
                }
                // Pushing a blob implies reading it back.
                v.push(("repository".into(), name, "pull"));
            }
            v
        }
    }
}

fn unauthorized(inner: &Inner, need: &[(String, String, &'static str)], message: &str) -> ApiError {
    unauthorized_with(inner, need, message, None)
}

/// A 401 with the challenge for `need`; `bearer_error` is RFC 6750's `error=` parameter.
fn unauthorized_with(
    inner: &Inner,
    need: &[(String, String, &'static str)],
    message: &str,
    bearer_error: Option<&str>,
) -> ApiError {
    let challenge = match &inner.token {
        Some(t) => {
            let mut c = format!("Bearer realm=\"{}\",service=\"{}\"", t.realm, t.service);
            // Group actions per resource for the scope parameter.
            let mut scopes: Vec<Access> = Vec::new();
            for (k, n, a) in need {
                let act = if *a == "*" { "*" } else { a };
                match scopes.iter_mut().find(|s| s.kind == *k && s.name == *n) {
                    Some(s) => {
                        if !s.actions.iter().any(|x| x == act) {
                            s.actions.push(act.to_string());
                        }
                    }
                    None => scopes.push(Access {
                        kind: k.clone(),
                        name: n.clone(),
                        actions: vec![act.to_string()],
                    }),
                }
            }
            if !scopes.is_empty() {
                let s: Vec<String> = scopes.iter().map(Access::scope).collect();
                c.push_str(&format!(",scope=\"{}\"", s.join(" ")));
            }
            if let Some(e) = bearer_error {
                c.push_str(&format!(",error=\"{e}\""));
            }
            c
        }
        None => "Basic realm=\"berth-registry\"".to_string(),
    };
    let detail: Vec<serde_json::Value> = need
        .iter()
        .map(|(k, n, a)| serde_json::json!({"Type": k, "Name": n, "Action": a}))
        .collect();
    ApiError::new(Code::Unauthorized, message)
        .with_detail(serde_json::Value::Array(detail))
        .with_header(header::WWW_AUTHENTICATE, &challenge)
}

/// Authenticate and authorise; Ok(user) ("" for anonymous).
fn authorize(
    inner: &Inner,
    headers: &HeaderMap,
    need: &[(String, String, &'static str)],
) -> Result<String, ApiError> {
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(tcfg) = &inner.token {
        let Some(tok) = authz.and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        }) else {
            return Err(unauthorized(inner, need, "authentication required"));
        };
        let claims = auth::verify(tcfg, tok.trim(), meta::now_secs())
            .map_err(|e| unauthorized_with(inner, need, &e, Some("invalid_token")))?;
        for (k, n, a) in need {
            if !claims.access.iter().any(|g| g.allows(k, n, a)) {
                return Err(unauthorized_with(
                    inner,
                    need,
                    "insufficient scope",
                    Some("insufficient_scope"),
                ));
            }
        }
        return Ok(claims.sub);
    }
    if let Some(ht) = &inner.htpasswd {
        if let Some((u, p)) = authz.and_then(auth::parse_basic) {
            if ht.verify(&u, &p) {
                return Ok(u);
            }
            return Err(unauthorized(inner, need, "invalid username or password"));
        }
        // Anonymous pull also admits the /v2/ ping (so clients go on to pull without creds).
        let anonymous_ok = inner.cfg.anonymous_pull
            && need
                .iter()
                .all(|(k, _, a)| k == "repository" && *a == "pull");
        if !anonymous_ok {
            return Err(unauthorized(inner, need, "authentication required"));
        }
    }
    Ok(String::new())
}

/// The `/v2/...` dispatcher.
pub(crate) async fn dispatch(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let route = route::parse(req.uri().path());
    let pairs = query_pairs(req.uri().query());
    let Some(route) = route else {
        return ApiError::new(Code::NameUnknown, "no such endpoint").into_response();
    };
    if let Some(n) = route.name() {
        if !route::valid_name(n) {
            return ApiError::new(Code::NameInvalid, format!("invalid repository name {n:?}"))
                .with_detail(serde_json::json!({"name": n}))
                .into_response();
        }
    }
    let method = req.method().clone();
    let need = required(&route, &method, &pairs);
    let user = match authorize(&inner, req.headers(), &need) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let write = !matches!(method, Method::GET | Method::HEAD);
    let res = if write && inner.cfg.read_only && route != Route::Base {
        Err(ApiError::new(
            Code::Unsupported,
            "the registry is read-only",
        ))
    } else {
        handle(inner, route, method, pairs, req).await
    };
    let mut resp = res.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(User(user));
    resp
}

async fn handle(
    inner: Arc<Inner>,
    route: Route,
    method: Method,
    pairs: Vec<(String, String)>,
    req: Request,
) -> ApiResult {
    let head = method == Method::HEAD;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok((StatusCode::OK, axum::Json(serde_json::json!({}))).into_response())
        }
        (Route::Catalog, Method::GET) => catalog(inner, &pairs).await,
        (Route::Tags(n), Method::GET) => tags(inner, n, &pairs).await,
        (Route::Manifest(n, r), Method::GET | Method::HEAD) => {
            manifest_get(inner, n, r, head, req.headers()).await
        }
        (Route::Manifest(n, r), Method::PUT) => manifest_put(inner, n, r, &pairs, req).await,
        (Route::Manifest(n, r), Method::DELETE) => manifest_delete(inner, n, r).await,
        (Route::Blob(n, d), Method::GET | Method::HEAD) => {
            blob_get(inner, n, d, head, req.headers()).await
        }
        (Route::Blob(n, d), Method::DELETE) => blob_delete(inner, n, d).await,
        (Route::UploadStart(n), Method::POST) => upload_start(inner, n, &pairs, req).await,
        (Route::Upload(n, id), Method::GET) => upload_status(inner, n, id).await,
        (Route::Upload(n, id), Method::PATCH) => upload_patch(inner, n, id, req).await,
        (Route::Upload(n, id), Method::PUT) => upload_put(inner, n, id, &pairs, req).await,
        (Route::Upload(n, id), Method::DELETE) => upload_delete(inner, n, id).await,
        (Route::Referrers(n, d), Method::GET) => referrers(inner, n, d, &pairs).await,
        _ => Err(ApiError::new(
            Code::Unsupported,
            "method not allowed on this endpoint",
        )),
    }
}

// ---------- pagination ----------

/// The next page's (n, last), when there is one.
type NextPage = Option<(usize, String)>;

fn paginate(
    all: Vec<String>,
    pairs: &[(String, String)],
) -> Result<(Vec<String>, NextPage), ApiError> {
    let last = q(pairs, "last");
    let mut items: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|t| t.as_str() > l).collect(),
        None => all,
    };
    let n = match q(pairs, "n") {
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            ApiError::new(Code::Unsupported, format!("invalid page size n={s}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(l) = items.last() {
                next = Some((n, l.clone()));
            }
        }
    }
    Ok((items, next))
}

fn link(path: &str, next: NextPage) -> Vec<(&'static str, String)> {
    next.map(|(n, last)| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", &last)
            .finish();
        vec![("link", format!("<{path}?{q}>; rel=\"next\""))]
    })
    .unwrap_or_default()
}

fn json_response(
    status: StatusCode,
    content_type: &str,
    v: &serde_json::Value,
    extra: Vec<(&'static str, String)>,
) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, h(content_type));
    for (k, v) in extra {
        r.headers_mut().insert(k, h(&v));
    }
    r
}

async fn catalog(inner: Arc<Inner>, pairs: &[(String, String)]) -> ApiResult {
    let all = blocking(move || Ok(inner.meta.catalog()?)).await?;
    let (repos, next) = paginate(all, pairs)?;
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({ "repositories": repos }),
        link("/v2/_catalog", next),
    ))
}

async fn tags(inner: Arc<Inner>, name: String, pairs: &[(String, String)]) -> ApiResult {
    let n2 = name.clone();
    let all = blocking(move || Ok(inner.meta.tags(&n2)?)).await?;
    let Some(all) = all else {
        return Err(name_unknown(&name));
    };
    let (tags, next) = paginate(all, pairs)?;
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({ "name": name, "tags": tags }),
        link(&format!("/v2/{name}/tags/list"), next),
    ))
}

fn name_unknown(name: &str) -> ApiError {
    ApiError::new(
        Code::NameUnknown,
        format!("repository {name} not known to registry"),
    )
    .with_detail(serde_json::json!({ "name": name }))
}

// ---------- manifests ----------

async fn manifest_get(
    inner: Arc<Inner>,
    name: String,
    reference: String,
    head: bool,
    headers: &HeaderMap,
) -> ApiResult {
    let by_digest = reference.contains(':');
    if by_digest {
        parse_digest(&reference)?;
    } else if !route::valid_tag(&reference) {
        return Err(ApiError::new(
            Code::ManifestUnknown,
            format!("invalid tag {reference:?}"),
        ));
    }
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let (n2, r2) = (name.clone(), reference.clone());
    let st = inner.clone();
    let (row, data) = blocking(move || {
        let Some(mut row) = st.meta.manifest(&n2, &r2, by_digest)? else {
            if !st.meta.repo_exists(&n2)? {
                return Err(name_unknown(&n2));
            }
            return Err(ApiError::new(
                Code::ManifestUnknown,
                format!("manifest {r2} unknown to registry"),
            )
            .with_detail(serde_json::json!({ "reference": r2 })));
        };
        let read = |d: &str| -> Result<Vec<u8>, ApiError> {
            let dg = parse_digest(d)?;
            let mut b = st.store.reader(&dg).map_err(|e| match e {
                StoreError::NotFound(_) => ApiError::new(
                    Code::ManifestUnknown,
                    format!("manifest {d} content missing"),
                ),
                e => ApiError::internal(e),
            })?;
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut b, &mut v)
                .map_err(|e| ApiError::internal(format!("read manifest {d}: {e}")))?;
            Ok(v)
        };
        let mut data = read(&row.digest)?;
        // A client that cannot take an index gets the linux/amd64 image, as Docker Hub does.
        if manifest::is_index(&row.media_type) && !manifest::accepts(&accept, &row.media_type) {
            if let Ok(p) = manifest::parse(&data, Some(&row.media_type)) {
                let pick = p.platforms.iter().find(|(_, mt, os, arch)| {
                    os == "linux" && arch == "amd64" && manifest::accepts(&accept, mt)
                });
                if let Some((d, _, _, _)) = pick {
                    if let Some(child) = st.meta.manifest(&n2, d, true)? {
                        data = read(&child.digest)?;
                        row = child;
                    }
                }
            }
        }
        Ok((row, data))
    })
    .await?;
    let mut r = if head {
        (StatusCode::OK, Body::empty()).into_response()
    } else {
        (StatusCode::OK, data).into_response()
    };
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, h(&row.media_type));
    hs.insert(header::CONTENT_LENGTH, h(&row.size.to_string()));
    hs.insert("docker-content-digest", h(&row.digest));
    hs.insert(header::ETAG, h(&format!("\"{}\"", row.digest)));
    Ok(r)
}

async fn manifest_put(
    inner: Arc<Inner>,
    name: String,
    reference: String,
    pairs: &[(String, String)],
    req: Request,
) -> ApiResult {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let by_digest = reference.contains(':');
    let mut tags = Vec::new();
    let ref_digest = if by_digest {
        Some(parse_digest(&reference)?)
    } else {
        if !route::valid_tag(&reference) {
            return Err(ApiError::new(
                Code::ManifestInvalid,
                format!("invalid tag {reference:?}"),
            ));
        }
        tags.push(reference.clone());
        None
    };
    for (k, v) in pairs {
        if k == "tag" {
            if !route::valid_tag(v) {
                return Err(ApiError::new(
                    Code::ManifestInvalid,
                    format!("invalid tag {v:?}"),
                ));
            }
            if !tags.contains(v) {
                tags.push(v.clone());
            }
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_MANIFEST).await {
        Ok(b) => b,
        Err(_) => {
            return Err(ApiError::new(
                Code::SizeInvalid,
                format!("manifest larger than {MAX_MANIFEST} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
    };
    let digest = match &ref_digest {
        Some(d) => {
            let got = Digest::of(d.algorithm(), &body);
            if got != *d {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    format!("manifest digest {got} does not match {d}"),
                )
                .with_detail(
                    serde_json::json!({"expected": d.to_string(), "actual": got.to_string()}),
                ));
            }
            got
        }
        None => Digest::sha256_of(&body),
    };
    let parsed = manifest::parse(&body, content_type.as_deref())
        .map_err(|m| ApiError::new(Code::ManifestInvalid, m))?;
    let rec = NewManifest {
        row: meta::ManifestRow {
            digest: digest.to_string(),
            media_type: parsed.media_type.clone(),
            size: body.len() as u64,
        },
        subject: parsed.subject.clone(),
        artifact_type: parsed.artifact_type.clone(),
        annotations: parsed.annotations.clone(),
        blobs: parsed.blobs.clone(),
        manifests: parsed.manifests.clone(),
        tags,
    };
    let st = inner.clone();
    let n2 = name.clone();
    let dg = digest.clone();
    blocking(move || {
        let _g = st.stripe(&dg);
        st.store
            .write_blob(&body, Some(&dg))
            .map_err(ApiError::internal)?;
        match st.meta.put_manifest(&n2, &rec)? {
            Ok(()) => Ok(()),
            Err(PutRefused::Missing(d)) => Err(ApiError::new(
                Code::ManifestBlobUnknown,
                format!("manifest references {d}, unknown to repository {n2}"),
            )
            .with_detail(serde_json::json!({ "digest": d }))),
            Err(PutRefused::SizeMismatch(d, want, got)) => Err(ApiError::new(
                Code::ManifestInvalid,
                format!("descriptor of {d} says size {want}, the blob has {got}"),
            )),
        }
    })
    .await?;
    let mut hdrs = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(s) = &parsed.subject {
        hdrs.push(("oci-subject", s.clone()));
    }
    Ok(empty(StatusCode::CREATED, &hdrs))
}

async fn manifest_delete(inner: Arc<Inner>, name: String, reference: String) -> ApiResult {
    let by_digest = reference.contains(':');
    if by_digest {
        parse_digest(&reference)?;
    } else if !route::valid_tag(&reference) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("invalid tag {reference:?}"),
        ));
    }
    let r2 = reference.clone();
    let found = blocking(move || {
        Ok(if by_digest {
            inner.meta.delete_manifest(&name, &r2)?
        } else {
            inner.meta.delete_tag(&name, &r2)?
        })
    })
    .await?;
    if !found {
        return Err(ApiError::new(
            Code::ManifestUnknown,
            format!("manifest {reference} unknown to registry"),
        ));
    }
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

async fn referrers(
    inner: Arc<Inner>,
    name: String,
    digest: String,
    pairs: &[(String, String)],
) -> ApiResult {
    let d = parse_digest(&digest)?;
    let filter = q(pairs, "artifactType").map(str::to_string);
    let n2 = name.clone();
    // The spec forbids 404 here: an unknown repository simply has no referrers.
    let list = blocking(move || Ok(inner.meta.referrers(&n2, &d.to_string())?)).await?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|r| filter.is_none() || r.artifact_type == filter)
        .map(|r| {
            let mut v = serde_json::json!({
                "mediaType": r.row.media_type, "digest": r.row.digest, "size": r.row.size,
            });
            if let Some(a) = r.artifact_type {
                v["artifactType"] = a.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                v["annotations"] = a;
            }
            v
        })
        .collect();
    let extra = if filter.is_some() {
        vec![("oci-filters-applied", "artifactType".to_string())]
    } else {
        Vec::new()
    };
    Ok(json_response(
        StatusCode::OK,
        manifest::OCI_INDEX,
        &serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests}),
        extra,
    ))
}

// ---------- blobs ----------

/// Parse a single `Range: bytes=...` against `size` → (start, len); Err(()) when unsatisfiable.
pub(crate) fn parse_range(v: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        let n = n.min(size);
        return Ok((size - n, n));
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    if start >= size {
        return Err(());
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().map_err(|_| ())?.min(size - 1)
    };
    if end < start {
        return Err(());
    }
    Ok((start, end - start + 1))
}

async fn blob_get(
    inner: Arc<Inner>,
    name: String,
    digest: String,
    head: bool,
    headers: &HeaderMap,
) -> ApiResult {
    let d = parse_digest(&digest)?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let d2 = d.clone();
    let blob = blocking(move || {
        let unknown = || {
            ApiError::new(Code::BlobUnknown, format!("blob {d2} unknown to registry"))
                .with_detail(serde_json::json!({ "digest": d2.to_string() }))
        };
        if inner
            .meta
            .blob_in_repo(&name, &d2.to_string(), true)?
            .is_none()
        {
            return Err(unknown());
        }
        match inner.store.reader(&d2) {
            Ok(b) => Ok(b),
            Err(StoreError::NotFound(_)) => Err(unknown()),
            Err(e) => Err(ApiError::internal(e)),
        }
    })
    .await?;
    let size = blob.size();
    let (status, start, len) = match &range {
        None => (StatusCode::OK, 0, size),
        Some(r) => match parse_range(r, size) {
            Ok((s, l)) => (StatusCode::PARTIAL_CONTENT, s, l),
            Err(()) => {
                let mut r = empty(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("content-range", format!("bytes */{size}"))],
                );
                r.headers_mut()
                    .insert("docker-content-digest", h(&d.to_string()));
                return Ok(r);
            }
        },
    };
    let body = if head {
        Body::empty()
    } else {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = tokio::fs::File::from_std(blob.into_file());
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("seek blob {d}: {e}")))?;
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            256 * 1024,
        ))
    };
    let mut r = (status, body).into_response();
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    hs.insert(header::CONTENT_LENGTH, h(&len.to_string()));
    hs.insert("docker-content-digest", h(&d.to_string()));
    hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hs.insert(header::ETAG, h(&format!("\"{d}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        hs.insert(
            header::CONTENT_RANGE,
            h(&format!("bytes {}-{}/{}", start, start + len - 1, size)),
        );
    }
    Ok(r)
}

async fn blob_delete(inner: Arc<Inner>, name: String, digest: String) -> ApiResult {
    let d = parse_digest(&digest)?;
    let ds = d.to_string();
    let found = blocking(move || Ok(inner.meta.unlink_blob(&name, &ds)?)).await?;
    if !found {
        return Err(ApiError::new(
            Code::BlobUnknown,
            format!("blob {d} unknown to registry"),
        ));
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        &[("docker-content-digest", d.to_string())],
    ))
}

// ---------- uploads ----------

fn ingest_ref(id: &str) -> String {
    format!("upload-{id}")
}

fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn upload_unknown(id: &str) -> ApiError {
    ApiError::new(
        Code::BlobUploadUnknown,
        format!("upload {id} unknown to registry"),
    )
}

fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", range_header(offset)),
        ("docker-upload-uuid", id.to_string()),
    ]
}

/// Parse `Content-Range: <start>-<end>` (also with a `bytes ` prefix or `/total` suffix).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b >= a).then_some((a, b))
}

/// Open the upload's ingest, check a Content-Range against its offset, stream the body in.
/// Returns the writer (still open) and its offset.
async fn append(
    inner: &Arc<Inner>,
    name: &str,
    id: &str,
    req: Request,
) -> Result<berth_content::Writer, ApiError> {
    let content_range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let st = inner.clone();
    let reference = ingest_ref(id);
    let (n2, id2) = (name.to_string(), id.to_string());
    // A writer parked by the previous request continues without re-hashing the data so far.
    let parked = inner.take_writer(id);
    let w = match parked {
        Some(w) => w,
        None => {
            blocking(move || match st.store.writer(&reference, None) {
                Ok(w) => Ok(w),
                Err(StoreError::Locked(_)) => {
                    let off = st
                        .store
                        .ingest_status(&reference)
                        .map(|s| s.offset)
                        .unwrap_or(0);
                    Err(ApiError::new(
                        Code::BlobUploadInvalid,
                        format!("upload {id2} is busy with another request"),
                    )
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::RANGE, &range_header(off))
                    .with_header(header::LOCATION, &format!("/v2/{n2}/blobs/uploads/{id2}")))
                }
                Err(e) => Err(ApiError::internal(e)),
            })
            .await?
        }
    };
    let mut limit = None;
    match content_range.as_deref().map(parse_content_range) {
        Some(Some((start, end))) => {
            if start != w.offset() {
                let off = w.offset();
                inner.park_writer(id, w);
                return Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("chunk starts at {start}, the upload is at {off}"),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::RANGE, &range_header(off))
                .with_header(header::LOCATION, &format!("/v2/{name}/blobs/uploads/{id}"))
                .with_header(header::HeaderName::from_static("docker-upload-uuid"), id));
            }
            limit = Some(end - start + 1);
        }
        Some(None) => {
            let off = w.offset();
            inner.park_writer(id, w);
            return Err(
                ApiError::new(Code::BlobUploadInvalid, "malformed Content-Range")
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::RANGE, &range_header(off)),
            );
        }
        None => {}
    }
    write_body(w, req.into_body(), limit).await
}

/// Stream a request body into a writer in ~1 MiB batches on the blocking pool.
async fn write_body(
    mut w: berth_content::Writer,
    mut body: Body,
    limit: Option<u64>,
) -> Result<berth_content::Writer, ApiError> {
    let start = w.offset();
    let mut buf = BytesMut::new();
    let flush = |w: berth_content::Writer, data: Bytes| {
        blocking(move || {
            let mut w = w;
            std::io::Write::write_all(&mut w, &data)
                .map_err(|e| ApiError::internal(format!("write upload: {e}")))?;
            Ok(w)
        })
    };
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(Code::BlobUploadInvalid, format!("read request body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if limit.is_some_and(|l| received > l) {
                return Err(ApiError::new(
                    Code::SizeInvalid,
                    "chunk longer than its Content-Range",
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::RANGE, &range_header(start)));
            }
            buf.extend_from_slice(&data);
            if buf.len() >= 1024 * 1024 {
                w = flush(w, buf.split().freeze()).await?;
            }
        }
    }
    if !buf.is_empty() {
        w = flush(w, buf.freeze()).await?;
    }
    if limit.is_some_and(|l| received != l) {
        return Err(ApiError::new(
            Code::SizeInvalid,
            format!("chunk of {received} bytes does not match its Content-Range"),
        ));
    }
    Ok(w)
}

/// Verify and publish an upload's data as `digest`, linked into `name`.
async fn finish(
    inner: &Arc<Inner>,
    name: &str,
    w: berth_content::Writer,
    digest: Digest,
) -> Result<u64, ApiError> {
    let st = inner.clone();
    let n2 = name.to_string();
    blocking(move || {
        let size = w.offset();
        let _g = st.stripe(&digest);
        match w.commit(None, Some(&digest)) {
            Ok(_) => {}
            Err(StoreError::DigestMismatch {
                actual, expected, ..
            }) => return Err(ApiError::new(
                Code::DigestInvalid,
                format!("uploaded content has digest {actual}, not {expected}"),
            )
            .with_detail(
                serde_json::json!({"expected": expected.to_string(), "actual": actual.to_string()}),
            )),
            Err(e) => return Err(ApiError::internal(e)),
        }
        st.meta.link_blob(&n2, &digest.to_string(), size)?;
        Ok(size)
    })
    .await
}

async fn new_upload(inner: &Arc<Inner>, name: &str) -> Result<String, ApiError> {
    let id = auth::random_hex(16);
    let st = inner.clone();
    let (n2, id2) = (name.to_string(), id.clone());
    blocking(move || {
        st.meta.create_upload(&id2, &n2)?;
        // Create the ingest now so that its status (offset 0) can be asked at once.
        drop(
            st.store
                .writer(&ingest_ref(&id2), None)
                .map_err(ApiError::internal)?,
        );
        Ok(())
    })
    .await?;
    Ok(id)
}

async fn upload_start(
    inner: Arc<Inner>,
    name: String,
    pairs: &[(String, String)],
    req: Request,
) -> ApiResult {
    if let Some(m) = q(pairs, "mount") {
        let d = parse_digest(m)?;
        if let Some(from) = q(pairs, "from").filter(|f| route::valid_name(f)) {
            let st = inner.clone();
            let (from, n2, ds) = (from.to_string(), name.clone(), d.to_string());
            let mounted = blocking(move || {
                let _g = st.stripe(&d);
                match st.meta.blob_in_repo(&from, &ds, true)? {
                    Some(size) => {
                        st.meta.link_blob(&n2, &ds, size)?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
            if mounted {
                let d = m.to_string();
                return Ok(empty(
                    StatusCode::CREATED,
                    &[
                        ("location", format!("/v2/{name}/blobs/{d}")),
                        ("docker-content-digest", d),
                    ],
                ));
            }
        }
        // Not mountable: fall back to a regular upload session.
    } else if let Some(ds) = q(pairs, "digest") {
        let d = parse_digest(ds)?;
        let id = auth::random_hex(16);
        let st = inner.clone();
        let reference = ingest_ref(&id);
        let w = blocking(move || {
            st.store
                .writer(&reference, None)
                .map_err(ApiError::internal)
        })
        .await?;
        let w = match write_body(w, req.into_body(), None).await {
            Ok(w) => w,
            Err(e) => {
                let st = inner.clone();
                let _ = blocking(move || Ok(st.store.abort(&ingest_ref(&id)).ok())).await;
                return Err(e);
            }
        };
        finish(&inner, &name, w, d.clone()).await?;
        return Ok(empty(
            StatusCode::CREATED,
            &[
                ("location", format!("/v2/{name}/blobs/{d}")),
                ("docker-content-digest", d.to_string()),
            ],
        ));
    }
    let id = new_upload(&inner, &name).await?;
    Ok(empty(StatusCode::ACCEPTED, &upload_headers(&name, &id, 0)))
}

async fn check_upload(inner: &Arc<Inner>, name: &str, id: &str) -> Result<(), ApiError> {
    let st = inner.clone();
    let id2 = id.to_string();
    let repo = blocking(move || Ok(st.meta.upload_repo(&id2)?)).await?;
    if repo.as_deref() != Some(name) {
        return Err(upload_unknown(id));
    }
    Ok(())
}

async fn upload_status(inner: Arc<Inner>, name: String, id: String) -> ApiResult {
    check_upload(&inner, &name, &id).await?;
    let st = inner.clone();
    let reference = ingest_ref(&id);
    let off = blocking(move || match st.store.ingest_status(&reference) {
        Ok(s) => Ok(Some(s.offset)),
        Err(StoreError::IngestNotFound(_)) => Ok(None),
        Err(e) => Err(ApiError::internal(e)),
    })
    .await?
    .ok_or_else(|| upload_unknown(&id))?;
    Ok(empty(
        StatusCode::NO_CONTENT,
        &upload_headers(&name, &id, off),
    ))
}

async fn upload_patch(inner: Arc<Inner>, name: String, id: String, req: Request) -> ApiResult {
    check_upload(&inner, &name, &id).await?;
    let w = append(&inner, &name, &id, req).await?;
    let off = w.offset();
    inner.park_writer(&id, w);
    Ok(empty(
        StatusCode::ACCEPTED,
        &upload_headers(&name, &id, off),
    ))
}

async fn upload_put(
    inner: Arc<Inner>,
    name: String,
    id: String,
    pairs: &[(String, String)],
    req: Request,
) -> ApiResult {
    check_upload(&inner, &name, &id).await?;
    let ds = q(pairs, "digest")
        .ok_or_else(|| ApiError::new(Code::DigestInvalid, "digest parameter missing"))?;
    let d = parse_digest(ds)?;
    let w = append(&inner, &name, &id, req).await?;
    let res = finish(&inner, &name, w, d.clone()).await;
    if matches!(&res, Err(e) if e.code == Code::DigestInvalid) {
        // The store dropped the proven-wrong data; the session is over.
        let st = inner.clone();
        let id2 = id.clone();
        let _ = blocking(move || Ok(st.meta.delete_upload(&id2)?)).await;
    }
    res?;
    let st = inner.clone();
    let id2 = id.clone();
    blocking(move || Ok(st.meta.delete_upload(&id2)?)).await?;
    Ok(empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    ))
}

async fn upload_delete(inner: Arc<Inner>, name: String, id: String) -> ApiResult {
    check_upload(&inner, &name, &id).await?;
    let st = inner.clone();
    let id2 = id.clone();
    drop(inner.take_writer(&id));
    blocking(move || {
        match st.store.abort(&ingest_ref(&id2)) {
            Ok(()) | Err(StoreError::IngestNotFound(_)) => {}
            Err(StoreError::Locked(_)) => {
                return Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("upload {id2} is busy"),
                ))
            }
            Err(e) => return Err(ApiError::internal(e)),
        }
        st.meta.delete_upload(&id2)?;
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

// ---------- token endpoint ----------

/// `GET /token?service=...&scope=...`: a bearer token for the granted subset of the scopes.
/// `POST /token` takes the OAuth2 password grant (form: grant_type=password, username,
/// password, service, scope) as containerd sends it.
pub(crate) async fn token(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let Some(tcfg) = inner.token.clone() else {
        return ApiError::new(Code::Unsupported, "token authentication is not enabled")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    let (pairs, creds) = if req.method() == Method::POST {
        let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
            return oauth_error("invalid_request", "form body too large");
        };
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let creds = match q(&pairs, "grant_type") {
            Some("password") => match (q(&pairs, "username"), q(&pairs, "password")) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => return oauth_error("invalid_request", "username and password required"),
            },
            Some(g) => {
                return oauth_error(
                    "unsupported_grant_type",
                    &format!("grant type {g} is not supported"),
                )
            }
            None => return oauth_error("invalid_request", "grant_type required"),
        };
        (pairs, creds)
    } else {
        let creds = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_basic);
        (query_pairs(req.uri().query()), creds)
    };
    let inner2 = inner.clone();
    let who = tokio::task::spawn_blocking(move || match (creds, &inner2.htpasswd) {
        (Some((u, p)), Some(ht)) => {
            if ht.verify(&u, &p) {
                Ok(Some(u))
            } else {
                Err(())
            }
        }
        // Without an htpasswd file everyone is trusted with what they ask for.
        (Some((u, _)), None) => Ok(Some(u)),
        (None, Some(_)) => Ok(None),
        (None, None) => Ok(Some(String::new())),
    })
    .await
    .unwrap_or(Err(()));
    let user = match who {
        Ok(u) => u,
        Err(()) => {
            return ApiError::new(Code::Unauthorized, "invalid username or password")
                .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth-registry\"")
                .into_response()
        }
    };
    let mut access: Vec<Access> = Vec::new();
    for (k, v) in &pairs {
        if k != "scope" {
            continue;
        }
        for s in v.split(' ') {
            let Some(mut a) = Access::parse_scope(s) else {
                continue;
            };
            a.actions.retain(|x| match &user {
                Some(_) => ["pull", "push", "delete", "*"].contains(&x.as_str()),
                None => inner.cfg.anonymous_pull && x == "pull" && a.kind == "repository",
            });
            if !a.actions.is_empty() {
                access.push(a);
            }
        }
    }
    let now = meta::now_secs();
    let claims = Claims {
        iss: tcfg.issuer.clone(),
        sub: user.clone().unwrap_or_default(),
        aud: q(&pairs, "service").unwrap_or(&tcfg.service).to_string(),
        exp: now + tcfg.ttl_secs as i64,
        nbf: now - 1,
        iat: now,
        jti: auth::random_hex(12),
        access,
    };
    let tok = auth::issue(&tcfg, &claims);
    let mut r = json_response(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({
            "token": tok, "access_token": tok, "expires_in": tcfg.ttl_secs,
            "issued_at": iso8601(now),
        }),
        Vec::new(),
    );
    r.extensions_mut().insert(User(user.unwrap_or_default()));
    r
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        "application/json",
        &serde_json::json!({"error": error, "error_description": description}),
        Vec::new(),
    )
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 10)));
        assert_eq!(parse_range("bytes=-5", 100), Ok((95, 5)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok((50, 50)));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-1", 100).is_err());
        assert!(parse_range("bytes=0-1,3-4", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, 19)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
