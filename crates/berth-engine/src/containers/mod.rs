//! Containers — OWNED BY THE CONTAINERS HELPER. This is a placeholder that they replace
//! wholesale (keep the names used by the rest of the engine):
//!
//! - `ContainerManager::open(&Services) -> Result<ContainerManager, EngineError>`, called once
//!   by [`crate::Engine::open`] inside the daemon's tokio runtime (so `tokio::spawn` works);
//! - `impl crate::ContainerQueries for ContainerManager` (counts for /info, volume users for
//!   `DELETE /volumes`, container rows for /system/df);
//! - `ContainerManager::shutdown(&self)`: called when the daemon stops; containers keep running.

use crate::{ContainerCounts, ContainerQueries, EngineError, Services};

/// Placeholder until the containers module lands: knows no containers.
#[derive(Debug)]
pub struct ContainerManager;

impl ContainerManager {
    /// Open the manager (recover state, reattach to live shims).
    pub fn open(_services: &Services) -> Result<Self, EngineError> {
        Ok(ContainerManager)
    }

    /// The daemon is stopping: stop watching, leave containers running.
    pub fn shutdown(&self) {}
}

impl ContainerQueries for ContainerManager {
    fn counts(&self) -> ContainerCounts {
        ContainerCounts::default()
    }

    fn volume_users(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }

    fn df_rows(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}
