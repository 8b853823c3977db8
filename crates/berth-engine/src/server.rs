//! Serving the API: hyper HTTP/1.1 (keep-alive, upgrades, chunked requests) on unix sockets.
//!
//! Every request goes through [`dispatch`]: the `/vX.Y/` prefix is checked and stripped (the
//! version travels as an [`ApiVersion`] request extension), the router runs, and the headers
//! Docker sends on every response (`Api-Version`, `Docker-Experimental`, `Ostype`, `Server`)
//! are added (except on `101 UPGRADED`).

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::version::split_version;
use crate::api::ApiVersion;
use crate::config::{parse_host, Listen, TlsConfig};
use crate::{Engine, EngineError, API_VERSION, VERSION};

/// The `Server` header value.
pub fn server_header() -> String {
    format!("Docker/berth-{VERSION} (linux)")
}

/// Route one request: version prefix, router, common headers.
pub async fn dispatch<B>(router: Router, mut req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let mut resp = match split_version(&path) {
        Err(e) => axum::response::IntoResponse::into_response(e),
        Ok(v) => {
            let version = match v {
                Some((ver, tail)) => {
                    let pq = match req.uri().query() {
                        Some(q) => format!("{tail}?{q}"),
                        None => tail.to_string(),
                    };
                    match pq.parse::<Uri>() {
                        Ok(u) => *req.uri_mut() = u,
                        Err(_) => {
                            return finish(axum::response::IntoResponse::into_response(
                                EngineError::invalid(format!("bad request path {path:?}")),
                            ))
                        }
                    }
                    ver
                }
                None => ApiVersion::CURRENT,
            };
            req.extensions_mut().insert(version);
            match router.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    resp = finish(resp);
    tracing::debug!(
        "{method} {path} -> {} in {:?}",
        resp.status().as_u16(),
        started.elapsed()
    );
    resp
}

fn finish(mut resp: Response<Body>) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    let h = resp.headers_mut();
    let api = format!("{}.{}", API_VERSION.0, API_VERSION.1);
    if let Ok(v) = HeaderValue::from_str(&api) {
        h.insert("Api-Version", v);
    }
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(v) = HeaderValue::from_str(&server_header()) {
        h.insert(axum::http::header::SERVER, v);
    }
    resp
}

/// A bound unix listener that removes its socket file when dropped.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl UnixSocket {
    /// Bind `path` (mode 0660, owner root:root as we run as root). A stale socket nobody
    /// listens on is replaced; a live one is an error.
    pub fn bind(path: &Path) -> Result<Self, EngineError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        }
        if let Ok(md) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                return Err(EngineError::conflict(format!(
                    "listen on {}: the path exists and is not a socket",
                    path.display()
                )));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(EngineError::conflict(format!(
                    "listen on {}: another daemon is already serving it",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(|e| {
                EngineError::io(format!("remove stale socket {}", path.display()), e)
            })?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| EngineError::io(format!("listen on {}", path.display()), e))?;
        let sock = UnixSocket {
            listener,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| EngineError::io(format!("chmod {}", path.display()), e))?;
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::ROOT))
            .map_err(|e| EngineError::io(format!("chown {}", path.display()), e.into()))?;
        Ok(sock)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A bound listener: a unix socket, or TCP with mutual TLS.
pub enum Listener {
    /// `unix://`.
    Unix(UnixSocket),
    /// `tcp://` (client certificates required).
    Tls {
        /// The TCP listener.
        listener: TcpListener,
        /// The TLS acceptor (verifies client certificates against the CA).
        acceptor: TlsAcceptor,
    },
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Unix(u) => write!(f, "unix://{}", u.path.display()),
            Listener::Tls { listener, .. } => match listener.local_addr() {
                Ok(a) => write!(f, "tcp://{a} (tls)"),
                Err(_) => f.write_str("tcp (tls)"),
            },
        }
    }
}

impl From<UnixSocket> for Listener {
    fn from(u: UnixSocket) -> Self {
        Listener::Unix(u)
    }
}

/// Build the TLS acceptor for `--tlsverify --tlscacert --tlscert --tlskey`.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, EngineError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let need = |p: &Option<PathBuf>, flag: &str| {
        p.clone()
            .ok_or_else(|| EngineError::invalid(format!("tcp listener needs {flag}")))
    };
    if !tls.verify {
        return Err(EngineError::invalid("tcp listener needs --tlsverify"));
    }
    let ca = need(&tls.ca_cert, "--tlscacert")?;
    let cert = need(&tls.cert, "--tlscert")?;
    let key = need(&tls.key, "--tlskey")?;
    let bad = |what: &str, p: &Path, e: String| {
        EngineError::invalid(format!("load {what} {}: {e}", p.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| bad("certificate", &cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", &cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("certificate", &cert, "no certificate found".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| bad("key", &key, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).map_err(|e| bad("CA", &ca, e.to_string()))? {
        let c = c.map_err(|e| bad("CA", &ca, e.to_string()))?;
        roots.add(c).map_err(|e| bad("CA", &ca, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("CA", &ca, "no certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad("CA", &ca, e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::internal(format!("tls setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate/key pair", &cert, e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Bind every configured host: unix sockets, and tcp with mutual TLS.
pub async fn bind_all(engine: &Engine) -> Result<Vec<Listener>, EngineError> {
    let mut out = Vec::new();
    for h in &engine.config.hosts {
        match parse_host(h)? {
            Listen::Unix(p) => out.push(Listener::Unix(UnixSocket::bind(&p)?)),
            Listen::Tcp(a) => {
                let acceptor = tls_acceptor(&engine.config.tls)?;
                let listener = TcpListener::bind(&a)
                    .await
                    .map_err(|e| EngineError::io(format!("listen on tcp://{a}"), e))?;
                out.push(Listener::Tls { listener, acceptor });
            }
        }
    }
    Ok(out)
}

/// Serve the engine's API on `listeners` until `shutdown` resolves. Connections in flight are
/// dropped when the runtime stops (containers are unaffected: their shims hold their state).
pub async fn serve(
    engine: Arc<Engine>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EngineError> {
    let token = engine.shutdown.clone();
    let shutdown = async move {
        shutdown.await;
        // endless streams (events, logs -f, stats) end so connections can drain
        token.cancel();
    };
    serve_router(crate::api::router(engine), listeners, shutdown).await
}

/// Connection bookkeeping for a graceful stop.
#[derive(Clone)]
struct Conns {
    tracker: TaskTracker,
    stopping: CancellationToken,
}

fn serve_conn<S>(conns: &Conns, router: Router, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stopping = conns.stopping.clone();
    conns.tracker.spawn(async move {
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(dispatch(router, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let res = tokio::select! {
            r = conn.as_mut() => r,
            _ = stopping.cancelled() => {
                // finish the request in flight, then close (idle keep-alives close at once)
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = res {
            tracing::debug!("connection: {e}");
        }
    });
}

/// How long a stop waits for requests in flight.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve any router through [`dispatch`] (version prefixes, common headers, upgrades).
pub async fn serve_router<L: Into<Listener>>(
    router: Router,
    listeners: Vec<L>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EngineError> {
    let conns = Conns {
        tracker: TaskTracker::new(),
        stopping: CancellationToken::new(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let conns = conns.clone();
        let router = router.clone();
        let l: Listener = l.into();
        tasks.spawn(async move {
            match l {
                Listener::Unix(sock) => loop {
                    match sock.listener.accept().await {
                        Ok((stream, _)) => serve_conn(&conns, router.clone(), stream),
                        Err(e) => {
                            tracing::warn!("accept on {}: {e}", sock.path.display());
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                },
                Listener::Tls { listener, acceptor } => loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let acceptor = acceptor.clone();
                            let router = router.clone();
                            let conns = conns.clone();
                            tokio::spawn(async move {
                                match tokio::time::timeout(
                                    std::time::Duration::from_secs(10),
                                    acceptor.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(tls)) => serve_conn(&conns, router, tls),
                                    Ok(Err(e)) => tracing::info!("tls handshake with {peer}: {e}"),
                                    Err(_) => {
                                        tracing::info!("tls handshake with {peer}: timed out")
                                    }
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!("accept on tcp: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                },
            }
        });
    }
    shutdown.await;
    // Stop accepting: dropping the accept tasks drops the listeners (and removes the socket
    // files). Then let requests in flight finish, up to DRAIN_TIMEOUT. Hijacked streams are
    // not waited for (their containers outlive us anyway).
    tasks.shutdown().await;
    conns.stopping.cancel();
    conns.tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, conns.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still busy after {DRAIN_TIMEOUT:?}; dropping them",
            conns.tracker.len()
        );
    }
    Ok(())
}
