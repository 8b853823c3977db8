//! The `berth` binary: one executable for every role (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

mod cli;
mod daemon_cmd;
mod distribution_cmd;
mod image_cmd;
mod registry_cmd;
mod runtime_cmd;
mod shim_cmd;

use clap::{Parser, Subcommand};

/// berth: a container engine.
#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "berth: a container engine",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// OCI runtime with runc's command line (also reachable as `berth-runc`).
    Runtime(runtime_cmd::RuntimeArgs),
    /// The engine: serve the Docker Engine API.
    Daemon(daemon_cmd::DaemonArgs),
    /// Manage images in a local data root.
    Image(image_cmd::ImageArgs),
    /// OCI Distribution registry.
    Registry(registry_cmd::RegistryArgs),
    /// Per-container monitor (internal; spawned by the daemon).
    #[command(hide = true)]
    Shim(shim_cmd::ShimArgs),
    /// Client commands in Docker's syntax (run, ps, images, ...).
    #[command(flatten)]
    Client(cli::ClientCmd),
}

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if prog == "berth-runc" || prog == "runc" {
        runtime_cmd::main_as_runc()
    } else {
        let cli = Cli::try_parse().unwrap_or_else(|e| cli::usage_error(e));
        cli::set_global(cli.global.clone());
        let res = match cli.command {
            Command::Runtime(a) => runtime_cmd::run(a),
            Command::Daemon(a) => daemon_cmd::run(a),
            Command::Image(a) => image_cmd::run(a),
            Command::Registry(a) => registry_cmd::run(a),
            Command::Shim(a) => shim_cmd::run(a),
            Command::Client(c) => Ok(cli::run(c)),
        };
        match res {
            Ok(code) => code,
            Err(e) => {
                eprintln!("berth: {e:#}");
                1
            }
        }
    };
    std::process::exit(code);
}
