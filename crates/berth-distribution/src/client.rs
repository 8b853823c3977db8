//! The HTTP side: endpoints (scheme, TLS, mirrors, Docker Hub naming), authenticated requests
//! with bounded retries, and the registry operations of one repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth_core::{Digest, Reference};
use berth_image::spec::media;
use berth_image::Descriptor;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::auth::{parse_challenge, Challenge, Credentials, DockerConfig};
use crate::error::registry_message;
use crate::{Error, Result};

type Http =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Accept header for manifests: OCI and Docker manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Docker Hub's registry host.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Mirrors for docker.io (`https://mirror.example`, `host:port`), tried in order for pulls.
    pub mirrors: Vec<String>,
    /// Registries (host[:port]) that may be reached over plain HTTP (localhost always may).
    pub insecure: Vec<String>,
    /// Per-registry CA and client certificates: `<dir>/<host:port>/{ca.crt,*.crt,client.cert,client.key}`.
    pub certs_dir: PathBuf,
    /// Docker's config.json for credentials (`None`: none are read).
    pub docker_config: Option<PathBuf>,
    /// Credentials given directly (by registry host), preferred over config.json.
    pub credentials: HashMap<String, Credentials>,
    /// Blobs larger than this are uploaded in chunks of this size (PATCH with Content-Range).
    pub chunk_size: u64,
    /// Blobs transferred at once (pull and push).
    pub concurrency: usize,
    /// Retries of a request after a connection failure or 5xx (bounded, with backoff).
    pub retries: u32,
    /// First backoff; doubled per retry.
    pub backoff: Duration,
    /// Longest wait for a connection, for response headers, or between two chunks of a body;
    /// a stalled blob download is then resumed like a broken one.
    pub io_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            mirrors: Vec::new(),
            insecure: Vec::new(),
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            docker_config: Some(DockerConfig::default_path()),
            credentials: HashMap::new(),
            chunk_size: 16 << 20,
            concurrency: 3,
            retries: 3,
            backoff: Duration::from_millis(200),
            io_timeout: Duration::from_secs(60),
        }
    }
}

/// The registry host serving a reference's domain (`docker.io` → `registry-1.docker.io`).
pub fn registry_host(domain: &str) -> &str {
    match domain {
        "docker.io" | "index.docker.io" => DOCKER_HUB_HOST,
        d => d,
    }
}

fn is_localhost(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() > 1 {
        host // a bare IPv6 address
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
    };
    matches!(h, "localhost" | "127.0.0.1" | "::1") || h.starts_with("127.")
}

fn native_roots() -> &'static Vec<rustls_pki_types::CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn tls_config(certs_dir: &Path, host: &str) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in native_roots() {
        let _ = roots.add(c.clone());
    }
    let dir = certs_dir.join(host);
    let mut client_cert = None;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".crt") {
                for c in CertificateDer::pem_file_iter(&p)
                    .map_err(|e| Error::Invalid(format!("read CA {}: {e}", p.display())))?
                {
                    let c =
                        c.map_err(|e| Error::Invalid(format!("parse CA {}: {e}", p.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| Error::Invalid(format!("add CA {}: {e}", p.display())))?;
                }
            } else if name.ends_with(".cert") {
                let key = dir.join(format!("{}.key", name.trim_end_matches(".cert")));
                client_cert = Some((p, key));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS for {host}: {e}")))?
        .with_root_certificates(roots);
    match client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .and_then(|i| i.collect::<std::result::Result<_, _>>())
                .map_err(|e| Error::Invalid(format!("read {}: {e}", cert.display())))?;
            let k = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| Error::Invalid(format!("read {}: {e}", key.display())))?;
            b.with_client_auth_cert(chain, k)
                .map_err(|e| Error::Invalid(format!("client certificate {}: {e}", cert.display())))
        }
        None => Ok(b.with_no_client_auth()),
    }
}

/// Credentials go to a token realm over HTTPS, or over plain HTTP only to the registry's own
/// host or localhost (a registry must not be able to send them elsewhere in clear text).
fn realm_may_see_credentials(realm: &str, registry_base: &str) -> bool {
    let host_of = |u: &str| {
        u.split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    if realm.starts_with("https://") {
        return true;
    }
    let h = host_of(realm);
    h == host_of(registry_base) || is_localhost(&h)
}

fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, String>,
}

/// One registry endpoint: a base URL, its HTTP client, credentials and auth state.
pub(crate) struct Endpoint {
    /// host[:port] as written in references (for credentials and messages).
    pub registry: String,
    /// `https://host[:port]` or `http://...`.
    pub base: String,
    http: Http,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    retries: u32,
    backoff: Duration,
    io_timeout: Duration,
    /// Token requests made (tests assert scope caching with it).
    pub token_requests: std::sync::atomic::AtomicU64,
}

/// A request to send (cloned per attempt).
#[derive(Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn new(method: Method, url: String) -> Req {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Req {
        self.headers.push((k, v.into()));
        self
    }
    pub fn body(mut self, b: Bytes) -> Req {
        self.body = b;
        self
    }
}

impl Endpoint {
    fn build(&self, r: &Req, auth: Option<&str>) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder().method(r.method.clone()).uri(&r.url);
        for (k, v) in &r.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        if !r.body.is_empty() || matches!(r.method, Method::PUT | Method::PATCH | Method::POST) {
            b = b.header(CONTENT_LENGTH, r.body.len());
        }
        b.body(Full::new(r.body.clone()))
            .map_err(|e| Error::Invalid(format!("build request {}: {e}", r.url)))
    }

    fn auth_header(&self, scopes: &[String]) -> Option<String> {
        let st = self.auth.lock().ok()?;
        match &st.challenge {
            Some(Challenge::Basic) => self.creds.as_ref().map(|c| c.basic_header()),
            Some(Challenge::Bearer { .. }) => st
                .tokens
                .get(&scopes.join(" "))
                .map(|t| format!("Bearer {t}")),
            None => None,
        }
    }

    async fn send_once(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        let uri = req.uri().to_string();
        let resp = tokio::time::timeout(self.io_timeout, self.http.request(req))
            .await
            .map_err(|_| Error::Transport {
                context: uri.clone(),
                message: format!("no response within {:?}", self.io_timeout),
            })?;
        resp.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            Error::Transport {
                context: uri,
                message: msg,
            }
        })
    }

    /// Fetch a bearer token for `scopes` from the challenge's realm (with basic credentials
    /// when known) and cache it.
    async fn fetch_token(&self, scopes: &[String]) -> Result<()> {
        let (realm, service, asked) = match self.auth.lock().ok().and_then(|s| s.challenge.clone())
        {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => (realm, service, scope),
            _ => return Ok(()),
        };
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = &service {
            url.push_str(&format!("{sep}service={}", pct(s)));
            sep = '&';
        }
        let scope_list: Vec<String> = if scopes.is_empty() {
            asked.into_iter().collect()
        } else {
            scopes.to_vec()
        };
        for s in &scope_list {
            url.push_str(&format!("{sep}scope={}", pct(s)));
            sep = '&';
        }
        self.token_requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let basic = if realm_may_see_credentials(&realm, &self.base) {
            self.creds.as_ref().map(|c| c.basic_header())
        } else {
            tracing::warn!(
                "not sending {} credentials to plain-HTTP token realm {realm}",
                self.registry
            );
            None
        };
        let mut attempt = 0;
        let resp = loop {
            let req = self.build(&Req::new(Method::GET, url.clone()), basic.as_deref())?;
            match self.send_once(req).await {
                Ok(r) if r.status().is_server_error() && attempt < self.retries => {}
                Ok(r) => break r,
                Err(e) if attempt < self.retries => tracing::debug!("token: {e}"),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(self.backoff * 2u32.pow(attempt)).await;
            attempt += 1;
        };
        let status = resp.status();
        let body = read_body(resp, 1 << 20).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized(format!(
                "get token for {} from {realm}: unauthorized: {}",
                self.registry,
                registry_message(&body)
            )));
        }
        if !status.is_success() {
            return Err(Error::Status {
                context: format!("get token from {realm}"),
                status: status.as_u16(),
                message: registry_message(&body),
            });
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Tok = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("token from {realm}: {e}")))?;
        let tok = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if tok.is_empty() {
            return Err(Error::Invalid(format!("token from {realm}: empty token")));
        }
        if let Ok(mut st) = self.auth.lock() {
            st.tokens.insert(scopes.join(" "), tok);
        }
        Ok(())
    }

    /// Send `r` with authentication for `scopes`: a cached token (or one fetched because the
    /// registry is known to want bearer tokens), a challenge answered once on 401 (which also
    /// refreshes an expired token), and retries with backoff on connection failures and 5xx.
    pub async fn send(&self, scopes: &[String], r: &Req) -> Result<Response<Incoming>> {
        let mut attempt = 0u32;
        let mut answered = false;
        loop {
            let bearer_known = matches!(
                self.auth.lock().ok().and_then(|s| s.challenge.clone()),
                Some(Challenge::Bearer { .. })
            );
            if bearer_known && self.auth_header(scopes).is_none() {
                self.fetch_token(scopes).await?;
            }
            let req = self.build(r, self.auth_header(scopes).as_deref())?;
            match self.send_once(req).await {
                Err(e) => {
                    if attempt >= self.retries {
                        return Err(e);
                    }
                    tracing::debug!("{e}; retrying");
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !answered => {
                    answered = true;
                    let ch = resp
                        .headers()
                        .get_all(hyper::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .filter_map(parse_challenge)
                        .next();
                    let Some(ch) = ch else { return Ok(resp) };
                    let had_token = self.auth_header(scopes).is_some();
                    if let Ok(mut st) = self.auth.lock() {
                        st.tokens.remove(&scopes.join(" "));
                        st.challenge = Some(ch.clone());
                    }
                    match ch {
                        Challenge::Basic if self.creds.is_none() => return Ok(resp),
                        Challenge::Basic => {}
                        Challenge::Bearer { .. } => {
                            let _ = had_token;
                            self.fetch_token(scopes).await?;
                        }
                    }
                    continue;
                }
                Ok(resp) if resp.status().is_server_error() && attempt < self.retries => {
                    tracing::debug!("{} {}: {}; retrying", r.method, r.url, resp.status());
                }
                Ok(resp) => return Ok(resp),
            }
            tokio::time::sleep(self.backoff * 2u32.pow(attempt)).await;
            attempt += 1;
        }
    }
}

pub(crate) async fn read_body(resp: Response<Incoming>, max: usize) -> Result<Bytes> {
    Limited::new(resp.into_body(), max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::Transport {
            context: "read response body".into(),
            message: e.to_string(),
        })
}

/// Map an unexpected response to an error (consuming its body for the message).
pub(crate) async fn fail(resp: Response<Incoming>, context: String, what: &str) -> Error {
    let status = resp.status();
    let body = read_body(resp, 64 << 10).await.unwrap_or_default();
    let msg = registry_message(&body);
    let msg = if msg.is_empty() {
        status.canonical_reason().unwrap_or("").to_lowercase()
    } else {
        msg
    };
    match status {
        StatusCode::NOT_FOUND => Error::NotFound(format!(
            "{what} not found: {}",
            crate::error::registry_code(&body).unwrap_or(msg)
        )),
        StatusCode::UNAUTHORIZED => Error::Unauthorized(format!("{context}: unauthorized: {msg}")),
        StatusCode::FORBIDDEN => Error::Denied(format!("{context}: denied: {msg}")),
        s => Error::Status {
            context,
            status: s.as_u16(),
            message: msg,
        },
    }
}

/// The registry client: endpoints and their auth state, shared by pulls and pushes.
pub struct Client {
    cfg: ClientConfig,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `cfg`.
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.cfg.credentials.get(registry) {
            return Ok(Some(c.clone()));
        }
        match &self.cfg.docker_config {
            Some(p) => DockerConfig::load(p)?.credentials(registry),
            None => Ok(None),
        }
    }

    fn plain_http_allowed(&self, host: &str) -> bool {
        is_localhost(host) || self.cfg.insecure.iter().any(|h| h == host)
    }

    /// The endpoint for `url_or_host` (a `scheme://host` mirror or a bare host); `registry` is
    /// the name credentials are stored under.
    pub(crate) async fn endpoint(
        &self,
        url_or_host: &str,
        registry: &str,
    ) -> Result<Arc<Endpoint>> {
        let key = format!("{url_or_host}|{registry}");
        if let Some(e) = self
            .endpoints
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(e);
        }
        let (scheme, host) = match url_or_host.split_once("://") {
            Some((s, h)) => (Some(s.to_string()), h.trim_end_matches('/').to_string()),
            None => (None, url_or_host.to_string()),
        };
        let tls = tls_config(&self.cfg.certs_dir, &host)?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.cfg.io_timeout));
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http: Http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        let creds = self.credentials(registry)?;
        let mk = |base: String| Endpoint {
            registry: registry.to_string(),
            base,
            http: http.clone(),
            creds: creds.clone(),
            auth: Mutex::new(AuthState::default()),
            retries: self.cfg.retries,
            backoff: self.cfg.backoff,
            io_timeout: self.cfg.io_timeout,
            token_requests: Default::default(),
        };
        let ep = match scheme {
            Some(s) => mk(format!("{s}://{host}")),
            None if self.plain_http_allowed(&host) => {
                // Docker's rule: try HTTPS, fall back to HTTP when TLS cannot be spoken.
                let ep = mk(format!("https://{host}"));
                let ping = ep.build(&Req::new(Method::GET, format!("{}/v2/", ep.base)), None)?;
                match tokio::time::timeout(Duration::from_secs(10), ep.send_once(ping)).await {
                    Ok(Ok(_)) => ep,
                    _ => mk(format!("http://{host}")),
                }
            }
            None => mk(format!("https://{host}")),
        };
        let ep = Arc::new(ep);
        if let Ok(mut m) = self.endpoints.lock() {
            m.insert(key, ep.clone());
        }
        Ok(ep)
    }

    /// The repository of `r` on its registry (no mirrors: for pushes and direct pulls).
    pub async fn repository(&self, r: &Reference) -> Result<Repository> {
        let registry = r.domain().to_string();
        let ep = self.endpoint(registry_host(&registry), &registry).await?;
        Ok(Repository {
            ep,
            name: r.path().to_string(),
            display: r.name(),
        })
    }

    /// Candidate repositories for pulling `r`: docker.io's mirrors first, then the registry.
    pub async fn pull_repositories(&self, r: &Reference) -> Result<Vec<Repository>> {
        let mut out = Vec::new();
        if r.domain() == "docker.io" {
            for m in &self.cfg.mirrors {
                match self.endpoint(m, m.split("://").last().unwrap_or(m)).await {
                    Ok(ep) => out.push(Repository {
                        ep,
                        name: r.path().to_string(),
                        display: r.name(),
                    }),
                    Err(e) => tracing::warn!("mirror {m}: {e}"),
                }
            }
        }
        out.push(self.repository(r).await?);
        Ok(out)
    }

    /// Check `creds` against `registry`'s `/v2/` (answering a basic or bearer challenge), as
    /// `docker login` does.
    pub async fn verify_login(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut cfg = self.cfg.clone();
        cfg.credentials.insert(registry.to_string(), creds.clone());
        cfg.docker_config = None;
        let c = Client::new(cfg);
        let ep = c.endpoint(registry_host(registry), registry).await?;
        let url = format!("{}/v2/", ep.base);
        let resp = ep.send(&[], &Req::new(Method::GET, url.clone())).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(fail(resp, format!("login to {registry}"), &url).await)
    }
}

/// What a cross-repository mount did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob was mounted (201).
    Mounted,
    /// The registry refused to mount and opened an upload instead (its location).
    Upload(String),
}

/// One repository on one registry endpoint.
#[derive(Clone)]
pub struct Repository {
    ep: Arc<Endpoint>,
    name: String,
    display: String,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({}/{})", self.ep.base, self.name)
    }
}

impl Repository {
    /// The repository path (`library/busybox`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry name it is reached under (`localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.ep.registry
    }

    /// The base URL (`http://127.0.0.1:5000`).
    pub fn base(&self) -> &str {
        &self.ep.base
    }

    /// Bearer token requests made on this endpoint so far.
    pub fn token_requests(&self) -> u64 {
        self.ep
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn pull_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.name)]
    }

    fn push_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.name)]
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.ep.base, self.name)
    }

    fn abs(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.ep.base)
        } else {
            format!("{}/{location}", self.ep.base)
        }
    }

    /// Resolve a tag or digest to its manifest or index: HEAD for the digest, then GET (by
    /// digest), checking `Docker-Content-Digest` and the requested digest against the body.
    pub async fn resolve(&self, reference: &str) -> Result<(Descriptor, Bytes)> {
        let what = if reference.contains(':') {
            format!("manifest for {}@{reference}", self.display_name())
        } else {
            format!("manifest for {}:{reference}", self.display_name())
        };
        let scopes = self.pull_scope();
        let head = Req::new(Method::HEAD, self.url(&format!("manifests/{reference}")))
            .header("accept", MANIFEST_ACCEPT);
        let resp = self.ep.send(&scopes, &head).await?;
        let mut by = reference.to_string();
        let mut head_digest: Option<Digest> = None;
        match resp.status() {
            StatusCode::OK => {
                head_digest = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                if let (Some(d), false) = (&head_digest, reference.contains(':')) {
                    by = d.to_string();
                }
            }
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                // HEAD has no body: GET for the registry's message.
            }
            StatusCode::METHOD_NOT_ALLOWED => {}
            _ => {}
        }
        let get = Req::new(Method::GET, self.url(&format!("manifests/{by}")))
            .header("accept", MANIFEST_ACCEPT);
        let resp = self.ep.send(&scopes, &get).await?;
        if !resp.status().is_success() {
            return Err(fail(resp, format!("get {what}"), &what).await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let hdr: Option<Digest> = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = read_body(resp, berth_image::spec::MAX_MANIFEST_SIZE).await?;
        let wanted: Option<Digest> = reference.parse().ok();
        let alg = wanted
            .as_ref()
            .or(hdr.as_ref())
            .map(|d| d.algorithm())
            .unwrap_or(berth_core::Algorithm::Sha256);
        let actual = Digest::of(alg, &body);
        for (src, d) in [
            ("requested", &wanted),
            ("Docker-Content-Digest", &hdr),
            ("HEAD", &head_digest),
        ] {
            if let Some(d) = d {
                if d.algorithm() == alg && *d != actual {
                    return Err(Error::Corrupt(format!(
                        "{what}: body digest {actual} does not match the {src} digest {d}"
                    )));
                }
            }
        }
        let mt = match ct.filter(|m| media::is_manifest(m) || media::is_index(m)) {
            Some(m) => m,
            None => match berth_image::ManifestKind::parse(None, &body)? {
                berth_image::ManifestKind::Index(i) => i.media_type().to_string(),
                berth_image::ManifestKind::Manifest(m) => m.media_type().to_string(),
            },
        };
        Ok((Descriptor::new(&mt, actual, body.len() as u64), body))
    }

    fn display_name(&self) -> String {
        self.display.clone()
    }

    /// GET a blob from `offset` (a Range request when non-zero), following redirects.
    /// Manifests and indexes (by their media type) come from the manifests endpoint.
    pub async fn fetch_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let is_manifest = media::is_manifest(&desc.media_type) || media::is_index(&desc.media_type);
        let mut req = if is_manifest {
            Req::new(Method::GET, self.url(&format!("manifests/{}", desc.digest)))
                .header("accept", desc.media_type.clone())
        } else {
            Req::new(Method::GET, self.url(&format!("blobs/{}", desc.digest)))
        };
        if offset > 0 {
            req = req.header("range", format!("bytes={offset}-"));
        }
        let mut resp = self.ep.send(&self.pull_scope(), &req).await?;
        let mut hops = 0;
        while resp.status().is_redirection() && hops < 5 {
            hops += 1;
            let loc = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.abs(l))
                .ok_or_else(|| {
                    Error::Invalid(format!("blob {}: redirect without Location", desc.digest))
                })?;
            let mut r = Req::new(Method::GET, loc);
            if offset > 0 {
                r = r.header("range", format!("bytes={offset}-"));
            }
            let built = self.ep.build(&r, None)?;
            resp = self.ep.send_once(built).await?;
        }
        let what = format!("blob {} in {}", desc.digest, self.display);
        let skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Error::Corrupt(format!(
                        "{what}: asked for bytes from {offset}, got a range starting at {start:?}"
                    )));
                }
                0
            }
            // The registry ignored the Range header: skip what we have.
            StatusCode::OK => offset,
            _ => return Err(fail(resp, format!("get {what}"), &what).await),
        };
        Ok(BlobStream {
            body: resp.into_body(),
            skip,
            timeout: self.ep.io_timeout,
        })
    }

    /// Whether the registry has the blob (HEAD).
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let req = Req::new(Method::HEAD, self.url(&format!("blobs/{digest}")));
        let resp = self.ep.send(&self.push_scope(), &req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(fail(resp, format!("check blob {digest}"), "blob").await),
        }
    }

    /// Ask the registry to mount `digest` from repository `from` (same registry).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<MountOutcome> {
        let url = self.url(&format!("blobs/uploads/?mount={digest}&from={}", pct(from)));
        let mut scopes = self.push_scope();
        scopes.push(format!("repository:{from}:pull"));
        let resp = self.ep.send(&scopes, &Req::new(Method::POST, url)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| self.abs(l))
                    .ok_or_else(|| Error::Invalid("upload without Location".into()))?;
                Ok(MountOutcome::Upload(loc))
            }
            _ => Err(fail(resp, format!("mount blob {digest} from {from}"), "blob").await),
        }
    }

    /// Open an upload session; its location.
    pub async fn start_upload(&self) -> Result<String> {
        let resp = self
            .ep
            .send(
                &self.push_scope(),
                &Req::new(Method::POST, self.url("blobs/uploads/")),
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(fail(resp, format!("start upload to {}", self.display), "upload").await);
        }
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.abs(l))
            .ok_or_else(|| Error::Invalid("upload without Location".into()))
    }

    /// Send one chunk (PATCH with Content-Range) at `offset`; the next location.
    pub async fn upload_chunk(&self, location: &str, offset: u64, data: Bytes) -> Result<String> {
        let end = offset + data.len() as u64 - 1;
        let req = Req::new(Method::PATCH, location.to_string())
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{end}"))
            .body(data);
        let resp = self.ep.send(&self.push_scope(), &req).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(fail(resp, format!("upload chunk {offset}-{end}"), "upload").await);
        }
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.abs(l))
            .ok_or_else(|| Error::Invalid("upload chunk without Location".into()))
    }

    /// Close an upload with `PUT ?digest=` (with the last data, or none).
    pub async fn finish_upload(&self, location: &str, digest: &Digest, data: Bytes) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let req = Req::new(Method::PUT, format!("{location}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data);
        let resp = self.ep.send(&self.push_scope(), &req).await?;
        if resp.status() != StatusCode::CREATED {
            let e = fail(resp, format!("finish upload of {digest}"), "upload").await;
            return Err(match e {
                Error::Status {
                    status: 400,
                    message,
                    ..
                } if message.contains("digest") => {
                    Error::Corrupt(format!("upload of {digest}: {message}"))
                }
                e => e,
            });
        }
        Ok(())
    }

    /// PUT a manifest under a tag or digest; the registry's digest for it (checked).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(&body);
        let req = Req::new(Method::PUT, self.url(&format!("manifests/{reference}")))
            .header("content-type", media_type.to_string())
            .body(body);
        let resp = self.ep.send(&self.push_scope(), &req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(fail(
                resp,
                format!("put manifest {}:{reference}", self.display),
                "manifest",
            )
            .await);
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if d != digest {
                return Err(Error::Corrupt(format!(
                    "put manifest {reference}: registry stored {d}, sent {digest}"
                )));
            }
        }
        Ok(digest)
    }
}

/// A blob body being received.
pub struct BlobStream {
    body: Incoming,
    skip: u64,
    timeout: Duration,
}

impl BlobStream {
    /// The next chunk of data; `None` at the end.
    pub async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Err(_) => {
                    return Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data for {:?}", self.timeout),
                    )))
                }
                Ok(None) => return None,
                Ok(Some(Ok(f))) => f,
                Ok(Some(Err(e))) => return Some(Err(std::io::Error::other(e))),
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data = data.slice(n..);
            }
            if !data.is_empty() {
                return Some(Ok(data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_naming_and_plain_http_rule() {
        assert_eq!(registry_host("docker.io"), DOCKER_HUB_HOST);
        assert_eq!(registry_host("index.docker.io"), DOCKER_HUB_HOST);
        assert_eq!(registry_host("localhost:5000"), "localhost:5000");
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!((r.domain(), r.path()), ("docker.io", "library/busybox"));
        assert_eq!(
            crate::auth::config_key("docker.io"),
            "https://index.docker.io/v1/"
        );
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:80",
            "127.0.0.5",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_localhost(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_localhost(h), "{h}");
        }
        let c = Client::new(ClientConfig {
            insecure: vec!["10.0.0.1:5000".into()],
            ..Default::default()
        });
        assert!(c.plain_http_allowed("10.0.0.1:5000"));
        assert!(!c.plain_http_allowed("10.0.0.1:5001"));
    }

    #[test]
    fn credentials_only_to_safe_realms() {
        assert!(realm_may_see_credentials(
            "https://auth.docker.io/token",
            "https://registry-1.docker.io"
        ));
        assert!(realm_may_see_credentials(
            "http://10.0.0.1:5000/token",
            "http://10.0.0.1:5000"
        ));
        assert!(realm_may_see_credentials(
            "http://127.0.0.1:9/token",
            "http://10.0.0.1:5000"
        ));
        assert!(!realm_may_see_credentials(
            "http://evil.example/token",
            "https://registry.example"
        ));
    }

    #[test]
    fn scope_encoding() {
        assert_eq!(
            pct("repository:a/b:pull,push"),
            "repository%3Aa/b%3Apull%2Cpush"
        );
    }
}
