//! `berth runtime ...`: runc's command line over berth-runtime.

use clap::Args;

/// Arguments of `berth runtime`.
#[derive(Args, Debug)]
pub struct RuntimeArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Run `berth runtime ...`; returns the exit code.
pub fn run(_args: RuntimeArgs) -> anyhow::Result<i32> {
    anyhow::bail!("berth runtime: not implemented yet")
}

/// Entry point when invoked as `berth-runc`.
pub fn main_as_runc() -> i32 {
    eprintln!("berth-runc: not implemented yet");
    1
}
