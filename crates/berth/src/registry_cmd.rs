//! `berth registry ...`.

use clap::Args;

/// Arguments of `berth registry`.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Run `berth registry ...`; returns the exit code.
pub fn run(_args: RegistryArgs) -> anyhow::Result<i32> {
    anyhow::bail!("berth registry: not implemented yet")
}
