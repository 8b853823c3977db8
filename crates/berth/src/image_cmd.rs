//! `berth image ...`.

use clap::Args;

/// Arguments of `berth image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Run `berth image ...`; returns the exit code.
pub fn run(_args: ImageArgs) -> anyhow::Result<i32> {
    anyhow::bail!("berth image: not implemented yet")
}
