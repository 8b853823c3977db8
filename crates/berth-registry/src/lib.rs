//! berth-registry: an OCI Distribution Specification v1.1 registry server.
//!
//! - [`Registry`]: the registry over a root directory — blobs in berth-content's
//!   [`LocalStore`] under `<root>/content` (stored once across
//!   repositories), metadata (repositories, blob links, manifests, tags, referrers, uploads) in
//!   SQLite at `<root>/registry.db`. [`Registry::router`] is its axum router; [`Registry::gc`]
//!   its online garbage collection.
//! - [`Server`]: a running listener (plain or TLS) with the periodic GC; [`Server::start`].
//! - Auth ([`Config::htpasswd`], [`Config::token`]): htpasswd (bcrypt) basic auth, or bearer
//!   tokens from this server's own `/token` endpoint (HS256 JWTs with per-repository scopes).
//!
//! Request flow: path → [`route::Route`] (names have slashes, so parsed from the right) → name
//! validation → auth → read-only check → handler. Blocking work (SQLite, file I/O, hashing)
//! runs on tokio's blocking pool; request bodies stream into the content store's ingest.
//!
//! GC safety while pushes run: every blob commit, mount, manifest push and GC deletion of a
//! digest holds that digest's stripe lock, and the sweep re-checks "unreferenced and unused
//! since the grace cutoff" in one SQLite write transaction. HEAD/GET of a blob marks it used,
//! so a client's "exists? then push manifest" cannot race a sweep within the grace period.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
mod gc;
pub mod manifest;
mod meta;
pub mod route;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use berth_content::LocalStore;
use berth_core::Digest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{Htpasswd, TokenConfig};
pub use error::{ApiError, Code, Error, Result};
pub use gc::GcReport;

/// Registry settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (`content/`, `registry.db`).
    pub root: PathBuf,
    /// Listen address (port 0 picks one).
    pub addr: SocketAddr,
    /// htpasswd file: basic auth (or, with `token`, the token endpoint's users).
    pub htpasswd: Option<PathBuf>,
    /// Bearer-token auth; an empty `realm` becomes `http(s)://<addr>/token`.
    pub token: Option<TokenConfig>,
    /// PEM certificate chain and key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse every write with 405 UNSUPPORTED.
    pub read_only: bool,
    /// Allow pulls without credentials when auth is on.
    pub anonymous_pull: bool,
    /// Run GC this often (None: never automatically).
    pub gc_interval: Option<Duration>,
    /// Unreferenced blobs and idle uploads younger than this are kept.
    pub gc_grace: Duration,
}

impl Config {
    /// Defaults: no auth, no TLS, GC every hour with a one-hour grace.
    pub fn new(root: impl Into<PathBuf>, addr: SocketAddr) -> Config {
        Config {
            root: root.into(),
            addr,
            htpasswd: None,
            token: None,
            tls: None,
            read_only: false,
            anonymous_pull: false,
            gc_interval: Some(Duration::from_secs(3600)),
            gc_grace: Duration::from_secs(3600),
        }
    }
}

const STRIPES: usize = 64;

/// Upload sessions whose writers stay open between requests.
pub const MAX_PARKED: usize = 1024;

pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) store: LocalStore,
    pub(crate) meta: meta::Meta,
    pub(crate) htpasswd: Option<Htpasswd>,
    pub(crate) token: Option<TokenConfig>,
    stripes: Vec<Mutex<()>>,
    /// Open writers of upload sessions between requests (keeps their hash state and lock).
    writers: Mutex<HashMap<String, berth_content::Writer>>,
}

impl Inner {
    /// Take the parked writer of upload `id`, if any.
    pub(crate) fn take_writer(&self, id: &str) -> Option<berth_content::Writer> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Park upload `id`'s writer until its next request. Past [`MAX_PARKED`] open sessions
    /// the writer is closed instead (its next request re-hashes): sessions cannot exhaust fds.
    pub(crate) fn park_writer(&self, id: &str, w: berth_content::Writer) {
        let mut map = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() < MAX_PARKED {
            map.insert(id.to_string(), w);
        }
    }

    /// The lock serialising commits, mounts, manifest pushes and GC deletion of `d`.
    pub(crate) fn stripe(&self, d: &Digest) -> MutexGuard<'_, ()> {
        let e = d.encoded().as_bytes();
        let i = e
            .iter()
            .take(4)
            .fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(b as usize));
        self.stripes[i % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A registry over a root directory.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.inner.cfg.root)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Open (creating) the registry described by `cfg`. `cfg.token.realm` must be set here
    /// (see [`Server::start`], which derives it from the bound address when empty).
    pub fn open(cfg: Config) -> Result<Registry> {
        std::fs::create_dir_all(&cfg.root)
            .map_err(|e| Error::io(format!("create {}", cfg.root.display()), e))?;
        let store = LocalStore::open(cfg.root.join("content"))?;
        let meta = meta::Meta::open(&cfg.root.join("registry.db"))?;
        let htpasswd = cfg.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
        Ok(Registry {
            inner: Arc::new(Inner {
                token: cfg.token.clone(),
                cfg,
                store,
                meta,
                htpasswd,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                writers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The HTTP router: `/v2/...` and `/token`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/token",
                axum::routing::get(server::token).post(server::token),
            )
            .fallback(server::dispatch)
            .layer(axum::middleware::from_fn(server::access_log))
            .with_state(self.inner.clone())
    }

    /// Collect garbage now (blocking; call from a blocking context): unreferenced blobs
    /// unused for `grace`, and upload sessions idle for `grace`.
    pub fn gc(&self, grace: Duration) -> Result<GcReport> {
        gc::collect(&self.inner, grace, grace)
    }

    /// [`Registry::gc`] with separate limits for blobs and for idle upload sessions.
    pub fn gc_with(&self, blob_grace: Duration, upload_idle: Duration) -> Result<GcReport> {
        gc::collect(&self.inner, blob_grace, upload_idle)
    }

    /// The content store holding blobs and manifests.
    pub fn store(&self) -> &LocalStore {
        &self.inner.store
    }
}

fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::Config(format!("read certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Config(format!("read private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("tls certificate/key: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// A running registry server. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Bind, open the registry and serve in the background (on the current tokio runtime).
    pub async fn start(mut cfg: Config) -> Result<Server> {
        let listener = TcpListener::bind(cfg.addr)
            .await
            .map_err(|e| Error::io(format!("listen on {}", cfg.addr), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        cfg.addr = addr;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        if let Some(t) = cfg.token.as_mut() {
            if t.realm.is_empty() {
                t.realm = format!("{scheme}://{addr}/token");
            }
        }
        let tls = match &cfg.tls {
            Some((c, k)) => Some(load_tls(c, k)?),
            None => None,
        };
        let gc_every = cfg.gc_interval.filter(|_| !cfg.read_only);
        let grace = cfg.gc_grace;
        let registry = tokio::task::spawn_blocking(move || Registry::open(cfg))
            .await
            .map_err(|e| Error::Config(format!("open registry: {e}")))??;
        let (stop, mut stopped) = watch::channel(false);
        let router = registry.router();
        let reg = registry.clone();
        let gc_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(async move {
            let mut gc_tick = gc_every.map(|d| {
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            loop {
                let gc_next = async {
                    match gc_tick.as_mut() {
                        Some(i) => {
                            i.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = gc_next => {
                        // One collection at a time: a slow one makes the next tick skip.
                        if gc_running.swap(true, std::sync::atomic::Ordering::AcqRel) {
                            continue;
                        }
                        let (r, running) = (reg.clone(), gc_running.clone());
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = r.gc(grace) {
                                tracing::error!(target: "berth_registry::gc", error = %e, "garbage collection failed");
                            }
                            running.store(false, std::sync::atomic::Ordering::Release);
                        });
                    }
                    acc = listener.accept() => {
                        let tcp = match acc {
                            Ok((tcp, _peer)) => tcp,
                            Err(e) => {
                                // Out of fds or similar: back off instead of spinning.
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let _ = tcp.set_nodelay(true);
                        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let mut builder = hyper::server::conn::http1::Builder::new();
                            // Drop clients that trickle their headers (slowloris).
                            builder
                                .timer(hyper_util::rt::TokioTimer::new())
                                .header_read_timeout(std::time::Duration::from_secs(30));
                            let res = match tls {
                                Some(acceptor) => match acceptor.accept(tcp).await {
                                    Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                                    Err(e) => {
                                        tracing::debug!(error = %e, "tls handshake failed");
                                        return;
                                    }
                                },
                                None => builder.serve_connection(TokioIo::new(tcp), svc).await,
                            };
                            if let Err(e) = res {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                }
            }
        });
        Ok(Server {
            addr,
            registry,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry behind the server.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Stop accepting and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Serve until the accept loop ends (it ends only on shutdown).
    pub async fn wait(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
