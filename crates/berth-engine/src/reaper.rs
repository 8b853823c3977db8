//! Reaping adopted orphans. The daemon is a child subreaper (PID 1 here does not reap), so
//! processes whose parent died (e.g. a shim's intermediate fork) are re-parented to it.
//!
//! The reaper must not steal exit statuses from code that waits for its own children (tokio's
//! `Child::wait`, `std::process::Child::wait`). So it reaps only zombies that stayed zombies
//! over two consecutive scans (waiters reap their children promptly) and that nobody has
//! [`Reaper::exempt`]ed. Scans run on SIGCHLD and every 2 s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, WaitOptions};

/// Shared handle; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Reaper {
    exempt: Arc<Mutex<HashSet<i32>>>,
}

impl Reaper {
    /// A new reaper (not running until [`Reaper::spawn`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Never reap `pid`: its spawner waits for it.
    pub fn exempt(&self, pid: i32) {
        self.exempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid);
    }

    /// Undo [`Reaper::exempt`] (after the spawner reaped it).
    pub fn release(&self, pid: i32) {
        self.exempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    /// Start the reaping task on the current tokio runtime.
    pub fn spawn(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("reaper: SIGCHLD handler: {e}; polling only");
                    None
                }
            };
            let mut seen: HashSet<i32> = HashSet::new();
            loop {
                match sig.as_mut() {
                    Some(s) => {
                        tokio::select! {
                            _ = s.recv() => {}
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                    }
                    None => tokio::time::sleep(Duration::from_secs(2)).await,
                }
                // let direct waiters reap first
                tokio::time::sleep(Duration::from_millis(200)).await;
                seen = me.scan(&seen);
            }
        });
    }

    /// One pass: reap zombies present in `previous` too; return this pass's zombies.
    fn scan(&self, previous: &HashSet<i32>) -> HashSet<i32> {
        let zombies = zombie_children();
        let exempt = self
            .exempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut still = HashSet::new();
        for pid in zombies {
            if exempt.contains(&pid) {
                continue;
            }
            if previous.contains(&pid) {
                if let Some(p) = Pid::from_raw(pid) {
                    match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
                        Ok(Some((_, st))) => tracing::debug!("reaped orphan {pid}: {st:?}"),
                        Ok(None) => {
                            still.insert(pid);
                        }
                        Err(_) => {}
                    }
                }
            } else {
                still.insert(pid);
            }
        }
        still
    }
}

/// Our zombie children (from /proc/self/task/*/children and each child's stat).
fn zombie_children() -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                pids.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}
