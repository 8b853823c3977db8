//! `berth shim DIR` (internal, hidden): the per-container monitor the daemon spawns. See the
//! berth-shim crate.

use std::path::PathBuf;

/// Arguments of `berth shim`.
#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The container's state directory (holds shim.json).
    pub dir: PathBuf,
}

/// Run the shim launcher; prints one JSON ready line.
pub fn run(a: ShimArgs) -> anyhow::Result<i32> {
    Ok(berth_shim::main(&a.dir))
}
