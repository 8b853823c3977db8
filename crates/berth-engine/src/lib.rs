//! berth-engine: the daemon behind `berth daemon`.
//!
//! - [`Engine`] owns the services: images ([`berth_image::ImageService`]), containers
//!   ([`containers::ContainerManager`], the shim-based half), volumes ([`volumes::VolumeStore`]),
//!   the [`events::EventBus`] and the engine database ([`db::EngineDb`]).
//! - [`api`] is the Docker Engine API (axum router + shared helpers: errors, version prefixes,
//!   query parsing, JSON bodies and streams, hijacking, stdcopy).
//! - [`server`] serves the router over unix sockets with hyper (HTTP/1.1 with upgrades).
//!
//! HTTP parsing happens at the edge (api); typed calls go to the services.
//!
//! On disk: `<data-root>/berth.db`, `content/`, `snapshots/` (berth-image's), `engine.db`
//! (the engine's own tables: volumes, containers; see [`db`] for why it is a separate file),
//! `engine-id`, `volumes/<name>/_data`; the socket and pidfile wherever configured.
//!
//! Contract with the containers module ([`containers`]): it is opened with [`Services`]
//! inside the daemon's runtime, implements [`ContainerQueries`] (what `/info`, `/system/df`
//! and `DELETE /volumes` ask), publishes container events on [`EventBus`], takes metadata holds
//! on images it uses (so `rmi` answers 409), resolves named volumes with
//! [`volumes::VolumeStore::mount`]/[`unmount`](volumes::VolumeStore::unmount), exempts the
//! pids it waits for from the [`reaper`], and serves its routes from `api::containers` /
//! `api::exec` with the helpers in [`api`].
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod api;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod db;
mod error;
pub mod events;
pub mod filters;
pub mod reaper;
pub mod server;
pub mod volumes;

use std::path::Path;
use std::sync::Arc;

pub use config::Config;
pub use error::EngineError;
pub use events::{Event, EventBus};
pub use filters::Filters;

use berth_image::ImageService;

/// The engine version (`docker version` Server.Version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The highest API version berth announces (and implements).
pub const API_VERSION: (u32, u32) = (1, 44);
/// The oldest API version accepted in a `/vX.Y/` prefix.
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

/// Container counts for `/info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerCounts {
    /// All containers.
    pub total: usize,
    /// Running.
    pub running: usize,
    /// Paused.
    pub paused: usize,
    /// Neither running nor paused.
    pub stopped: usize,
}

/// What the non-container half of the engine asks the containers module.
pub trait ContainerQueries: Send + Sync {
    /// Container counts for `/info`.
    fn counts(&self) -> ContainerCounts;
    /// Ids of containers that mount the named volume (non-empty = `volume is in use`).
    fn volume_users(&self, volume: &str) -> Vec<String>;
    /// `/system/df` `Containers` rows (the `/containers/json` shape with `SizeRw`/`SizeRootFs`).
    fn df_rows(&self) -> Vec<serde_json::Value>;
}

/// The shared services handed to [`containers::ContainerManager::open`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    /// The daemon configuration (runtimes, roots).
    pub config: Arc<Config>,
    /// Images (blocking API: call through `spawn_blocking`). Containers take metadata holds
    /// (`berth_metadata::Holder { kind: "container", id }`) on the images they use; `rmi`
    /// consults them for Docker's conflict rules.
    pub images: Arc<ImageService>,
    /// Publish container events here.
    pub events: EventBus,
    /// Named volumes: resolve `-v name:/path` into bind mounts.
    pub volumes: Arc<volumes::VolumeStore>,
    /// The engine database (`<data-root>/engine.db`).
    pub db: Arc<db::EngineDb>,
    /// The orphan reaper: [`reaper::Reaper::exempt`] pids you spawn and wait for yourself.
    pub reaper: reaper::Reaper,
    /// Cancelled when the daemon stops serving: end endless streams (logs -f, stats, wait)
    /// so connections drain; do not stop containers.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The engine: every service, shared by the API handlers as `Arc<Engine>`.
pub struct Engine {
    /// Configuration.
    pub config: Arc<Config>,
    /// Images.
    pub images: Arc<ImageService>,
    /// Containers (the containers helper's module).
    pub containers: containers::ContainerManager,
    /// Events.
    pub events: EventBus,
    /// Volumes.
    pub volumes: Arc<volumes::VolumeStore>,
    /// Engine database.
    pub db: Arc<db::EngineDb>,
    /// The orphan reaper (started by [`daemon::run`]).
    pub reaper: reaper::Reaper,
    /// Cancelled when the daemon stops serving.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// A stable id for `/info` (kept in `<data-root>/engine-id`).
    pub id: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_root", &self.config.data_root)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Open every service under the configured roots (created if missing). Blocking; call it
    /// from inside the tokio runtime (the containers module may spawn tasks).
    pub fn open(config: Config) -> Result<Arc<Engine>, EngineError> {
        config.validate()?;
        for d in [&config.data_root, &config.exec_root] {
            std::fs::create_dir_all(d)
                .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
        }
        let config = Arc::new(config);
        let images = Arc::new(ImageService::open(&config.data_root)?);
        let db = Arc::new(db::EngineDb::open(&config.data_root.join("engine.db"))?);
        let events = EventBus::new();
        let volumes = Arc::new(volumes::VolumeStore::open(
            &config.data_root.join("volumes"),
            db.clone(),
            events.clone(),
        )?);
        let id = engine_id(&config.data_root)?;
        let reaper = reaper::Reaper::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let services = Services {
            config: config.clone(),
            images: images.clone(),
            events: events.clone(),
            volumes: volumes.clone(),
            db: db.clone(),
            reaper: reaper.clone(),
            shutdown: shutdown.clone(),
        };
        let containers = containers::ContainerManager::open(&services)?;
        Ok(Arc::new(Engine {
            config,
            images,
            containers,
            events,
            volumes,
            db,
            reaper,
            shutdown,
            id,
        }))
    }

    /// The services bundle (what the containers module was opened with).
    pub fn services(&self) -> Services {
        Services {
            config: self.config.clone(),
            images: self.images.clone(),
            events: self.events.clone(),
            volumes: self.volumes.clone(),
            db: self.db.clone(),
            reaper: self.reaper.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Read or create `<data-root>/engine-id` (Docker's `ID` in `/info`).
fn engine_id(root: &Path) -> Result<String, EngineError> {
    let p = root.join("engine-id");
    match std::fs::read_to_string(&p) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = random_hex(32)?;
            let tmp = root.join("engine-id.tmp");
            std::fs::write(&tmp, &id)
                .and_then(|_| std::fs::rename(&tmp, &p))
                .map_err(|e| EngineError::io(format!("write {}", p.display()), e))?;
            Ok(id)
        }
    }
}

/// `n` random bytes from the kernel, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, EngineError> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(k) => filled += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(EngineError::io("getrandom", e.into())),
        }
    }
    Ok(hex::encode(buf))
}
