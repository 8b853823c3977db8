//! Running the daemon: runtime, listeners, pidfile, signals, orphan reaping.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{server, Config, Engine, EngineError};

/// A pidfile that is removed when dropped. Refuses to start over a live daemon's pidfile.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Write our pid to `path`.
    pub fn create(path: &Path) -> Result<Self, EngineError> {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                if pid != std::process::id() as i32 && Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(EngineError::conflict(format!(
                        "pid file found, ensure berth is not running or delete {} (pid {pid})",
                        path.display()
                    )));
                }
            }
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| EngineError::io(format!("write pid file {}", path.display()), e))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Run the daemon until SIGTERM or SIGINT. Containers keep running afterwards.
pub fn run(config: Config) -> Result<(), EngineError> {
    config.validate()?;
    let rt = runtime()?;
    let res = rt.block_on(serve_until(config, None, shutdown_signal()));
    rt.shutdown_timeout(Duration::from_secs(2));
    res
}

fn runtime() -> Result<tokio::runtime::Runtime, EngineError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-daemon")
        .build()
        .map_err(|e| EngineError::io("start tokio runtime", e))
}

type Ready = std::sync::mpsc::Sender<Result<Arc<Engine>, EngineError>>;

/// Open the engine, bind, serve until `shutdown`, then stop (containers keep running).
/// `ready` receives the engine once the sockets listen (or the start-up error).
pub async fn serve_until(
    config: Config,
    ready: Option<Ready>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), EngineError> {
    let started = async {
        // PID 1 here does not reap: adopt our orphans (shims whose parent exited) and reap
        // them ourselves (see crate::reaper).
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| EngineError::io("set child subreaper", e.into()))?;
        let pidfile = config.pidfile.as_deref().map(PidFile::create).transpose()?;
        let engine = Engine::open(config)?;
        let sockets = server::bind_all(&engine).await?;
        Ok::<_, EngineError>((pidfile, engine, sockets))
    }
    .await;
    let (pidfile, engine, sockets) = match started {
        Ok(x) => x,
        Err(e) => {
            if let Some(r) = ready {
                let _ = r.send(Err(EngineError::new(e.kind(), e.to_string())));
            }
            return Err(e);
        }
    };
    engine.reaper.spawn();
    for s in &sockets {
        tracing::info!(
            "berth daemon {} serving API {}.{} on {s:?}",
            crate::VERSION,
            crate::API_VERSION.0,
            crate::API_VERSION.1,
        );
    }
    if let Some(r) = ready {
        let _ = r.send(Ok(engine.clone()));
    }
    let res = server::serve(engine.clone(), sockets, shutdown).await;
    tracing::info!("shutting down; containers keep running");
    engine.containers.shutdown();
    drop(pidfile);
    res
}

/// A daemon running on its own thread and runtime (for tests and embedding). Dropping it
/// stops serving (containers keep running) and removes the socket and pidfile.
#[derive(Debug)]
pub struct Daemon {
    /// The engine.
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), EngineError>>>,
}

impl Daemon {
    /// Start serving `config`; returns once the sockets listen.
    pub fn start(config: Config) -> Result<Daemon, EngineError> {
        config.validate()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("berth-daemon-main".into())
            .spawn(move || {
                let rt = runtime()?;
                let res = rt.block_on(serve_until(config, Some(ready_tx), async move {
                    let _ = stop_rx.await;
                }));
                rt.shutdown_timeout(Duration::from_secs(2));
                res
            })
            .map_err(|e| EngineError::io("spawn daemon thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(engine)) => Ok(Daemon {
                engine,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(EngineError::internal(
                    "daemon thread exited during start-up",
                )),
            },
        }
    }

    /// Stop serving and wait for the daemon thread.
    pub fn stop(mut self) -> Result<(), EngineError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), EngineError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(EngineError::internal("daemon thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("received SIGTERM"),
                _ = i.recv() => tracing::info!("received SIGINT"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}
