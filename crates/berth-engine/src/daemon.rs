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
    // PID 1 here does not reap: adopt our orphans and reap them ourselves.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| EngineError::io("set child subreaper", e.into()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-daemon")
        .build()
        .map_err(|e| EngineError::io("start tokio runtime", e))?;
    let res = rt.block_on(async move {
        let pidfile = config.pidfile.as_deref().map(PidFile::create).transpose()?;
        let engine = Engine::open(config)?;
        let sockets = server::bind_all(&engine)?;
        engine.reaper.spawn();
        for s in &sockets {
            tracing::info!(
                "berth daemon {} serving API {}.{} on unix://{}",
                crate::VERSION,
                crate::API_VERSION.0,
                crate::API_VERSION.1,
                s.path().display()
            );
        }
        server::serve(engine.clone(), sockets, shutdown_signal()).await?;
        tracing::info!("shutting down; containers keep running");
        engine.containers.shutdown();
        drop(pidfile);
        Ok::<Arc<Engine>, EngineError>(engine)
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    res.map(|_| ())
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
