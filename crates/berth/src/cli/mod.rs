//! The Docker-compatible client commands (`berth run`, `berth ps`, ...): a client of the Docker
//! Engine API, so they drive `berth daemon` and a real dockerd alike.
//!
//! Layout: [`http`] (a blocking HTTP/1.1 client: unix, tcp), [`client`] (endpoint selection,
//! version negotiation, errors), [`template`] + [`output`] (Go templates, tabwriter tables,
//! inspect JSON), [`stream`] (hijacked attach/exec, raw tty), and one module per command group.

pub mod client;
pub mod container;
pub mod cp;
pub mod http;
pub mod image;
pub mod output;
pub mod progress;
pub mod stream;
pub mod system;
pub mod template;
pub mod tls;

use std::sync::OnceLock;

use clap::{Args, Subcommand};

use client::{ApiError, Client, ConnectError};

/// Options before the subcommand (`berth -H unix:///x.sock ps`).
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Daemon socket to connect to (also BERTH_HOST, DOCKER_HOST; default unix:///run/berth/berth.sock).
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Location of client config files (credentials): default ~/.docker.
    #[arg(long = "config", value_name = "DIR")]
    pub config: Option<std::path::PathBuf>,
    /// Use TLS; implied by --tlsverify.
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and verify the remote.
    #[arg(long)]
    pub tlsverify: bool,
    /// Trust certs signed only by this CA.
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<std::path::PathBuf>,
    /// Path to TLS certificate file.
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<std::path::PathBuf>,
    /// Path to TLS key file.
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<std::path::PathBuf>,
    /// Enable debug mode.
    #[arg(short = 'D', long)]
    pub debug: bool,
}

static GLOBAL: OnceLock<GlobalOpts> = OnceLock::new();

/// Remember the global options (for `berth image`, which is parsed separately).
pub fn set_global(g: GlobalOpts) {
    let _ = GLOBAL.set(g);
}

fn global() -> GlobalOpts {
    GLOBAL.get().cloned().unwrap_or_default()
}

/// Connect to the daemon chosen by the global options.
pub fn connect() -> anyhow::Result<Client> {
    let g = global();
    let host = client::pick_host(g.host.as_deref());
    let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(system::config_dir);
    let opts = tls::TlsOptions {
        tls: g.tls,
        verify: g.tlsverify || std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()),
        ca: g.tlscacert,
        cert: g.tlscert,
        key: g.tlskey,
        cert_dir,
    };
    let cfg = tls::client_config(&opts)?;
    Client::connect(&host, cfg)
}

/// Client commands in Docker's syntax.
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Create and run a new container from an image.
    #[command(
        after_help = "Examples:\n  berth run --rm busybox echo hello\n  berth run -it --name web -p 8080:80 -v data:/data busybox sh\n  berth run -d --restart unless-stopped busybox sleep 1000"
    )]
    Run(Box<container::RunArgs>),
    /// Create a new container.
    #[command(after_help = "Example:\n  berth create --name web busybox sleep 100")]
    Create(Box<container::RunArgs>),
    /// Start one or more stopped containers.
    #[command(after_help = "Example:\n  berth start -a web")]
    Start(container::StartArgs),
    /// Stop one or more running containers.
    #[command(after_help = "Example:\n  berth stop -t 2 web")]
    Stop(container::StopArgs),
    /// Restart one or more containers.
    #[command(after_help = "Example:\n  berth restart web")]
    Restart(container::StopArgs),
    /// Kill one or more running containers.
    #[command(after_help = "Example:\n  berth kill -s HUP web")]
    Kill(container::KillArgs),
    /// Remove one or more containers.
    #[command(after_help = "Example:\n  berth rm -f web")]
    Rm(container::RmArgs),
    /// List containers.
    #[command(
        after_help = "Examples:\n  berth ps -a\n  berth ps --format '{{.ID}} {{.Names}}'\n  berth ps -q --filter status=exited"
    )]
    Ps(container::PsArgs),
    /// Fetch the logs of a container.
    #[command(after_help = "Example:\n  berth logs -f --tail 10 web")]
    Logs(container::LogsArgs),
    /// Execute a command in a running container.
    #[command(after_help = "Example:\n  berth exec -it web sh")]
    Exec(container::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container.
    #[command(after_help = "Example:\n  berth attach web")]
    Attach(container::AttachArgs),
    /// Block until one or more containers stop, then print their exit codes.
    #[command(after_help = "Example:\n  berth wait web")]
    Wait(container::NamesArgs),
    /// Return low-level information on Docker objects.
    #[command(
        after_help = "Examples:\n  berth inspect web\n  berth inspect -f '{{.State.Status}}' web"
    )]
    Inspect(system::InspectArgs),
    /// Display the running processes of a container.
    #[command(after_help = "Example:\n  berth top web")]
    Top(container::TopArgs),
    /// Display a live stream of container(s) resource usage statistics.
    #[command(after_help = "Example:\n  berth stats --no-stream")]
    Stats(container::StatsArgs),
    /// Copy files/folders between a container and the local filesystem.
    #[command(
        after_help = "Examples:\n  berth cp web:/etc/hosts ./hosts\n  berth cp ./config web:/etc/app/\n  berth cp web:/var/log - > logs.tar"
    )]
    Cp(cp::CpArgs),
    /// Pause all processes within one or more containers.
    #[command(after_help = "Example:\n  berth pause web")]
    Pause(container::NamesArgs),
    /// Unpause all processes within one or more containers.
    #[command(after_help = "Example:\n  berth unpause web")]
    Unpause(container::NamesArgs),
    /// Rename a container.
    #[command(after_help = "Example:\n  berth rename web web2")]
    Rename(container::RenameArgs),
    /// Update configuration of one or more containers.
    #[command(after_help = "Example:\n  berth update --memory 256m --pids-limit 100 web")]
    Update(container::UpdateArgs),
    /// List port mappings or a specific mapping for the container.
    #[command(after_help = "Example:\n  berth port web 80/tcp")]
    Port(container::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    #[command(after_help = "Example:\n  berth diff web")]
    Diff(container::OneArg),
    /// Create a new image from a container's changes.
    #[command(after_help = "Example:\n  berth commit -m 'add files' web myimage:v2")]
    Commit(container::CommitArgs),
    /// Export a container's filesystem as a tar archive.
    #[command(after_help = "Example:\n  berth export -o web.tar web")]
    Export(container::ExportArgs),
    /// List images.
    #[command(
        after_help = "Examples:\n  berth images\n  berth images -q\n  berth images --format '{{.Repository}}:{{.Tag}}'"
    )]
    Images(image::ImagesArgs),
    /// Download an image from a registry.
    #[command(after_help = "Example:\n  berth pull localhost:5000/busybox:latest")]
    Pull(image::PullArgs),
    /// Upload an image to a registry.
    #[command(after_help = "Example:\n  berth push localhost:5000/busybox:latest")]
    Push(image::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    #[command(after_help = "Example:\n  berth tag busybox localhost:5000/busybox:v1")]
    Tag(image::TagArgs),
    /// Remove one or more images.
    #[command(after_help = "Example:\n  berth rmi busybox:old")]
    Rmi(image::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    #[command(after_help = "Example:\n  berth save -o busybox.tar busybox")]
    Save(image::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    #[command(after_help = "Example:\n  berth load -i busybox.tar")]
    Load(image::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image.
    #[command(after_help = "Example:\n  berth import rootfs.tar mybase:latest")]
    Import(image::ImportArgs),
    /// Show the history of an image.
    #[command(after_help = "Example:\n  berth history busybox")]
    History(image::HistoryArgs),
    /// Log in to a registry.
    #[command(after_help = "Example:\n  berth login -u me --password-stdin localhost:5000")]
    Login(system::LoginArgs),
    /// Log out from a registry.
    #[command(after_help = "Example:\n  berth logout localhost:5000")]
    Logout(system::LogoutArgs),
    /// Show the berth version information.
    #[command(after_help = "Example:\n  berth version --format '{{.Server.Version}}'")]
    Version(system::FormatArgs),
    /// Display system-wide information.
    #[command(after_help = "Example:\n  berth info --format '{{json .}}'")]
    Info(system::FormatArgs),
    /// Manage containers.
    #[command(subcommand, after_help = "Example:\n  berth container ls -a")]
    Container(ContainerCmd),
    /// Manage networks.
    #[command(subcommand, after_help = "Example:\n  berth network create mynet")]
    Network(system::NetworkCmd),
    /// Manage volumes.
    #[command(subcommand, after_help = "Example:\n  berth volume create data")]
    Volume(system::VolumeCmd),
    /// Manage the daemon's system.
    #[command(subcommand, after_help = "Example:\n  berth system df")]
    System(system::SystemCmd),
    /// Manage builds.
    #[command(subcommand, after_help = "Example:\n  berth builder prune -f")]
    Builder(system::BuilderCmd),
    /// Get real time events from the server.
    #[command(after_help = "Example:\n  berth events --since 10m --until 0s")]
    Events(system::EventsArgs),
    /// Generate a shell completion script.
    #[command(after_help = "Example:\n  berth completion bash > /etc/bash_completion.d/berth")]
    Completion(system::CompletionArgs),
}

/// `berth container …`.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create and run a new container from an image.
    #[command(after_help = "Example:\n  berth container run --rm -it busybox sh")]
    Run(Box<container::RunArgs>),
    /// Create a new container.
    #[command(after_help = "Example:\n  berth container create --name web busybox sleep 100")]
    Create(Box<container::RunArgs>),
    /// Start one or more stopped containers.
    #[command(after_help = "Example:\n  berth container start web")]
    Start(container::StartArgs),
    /// Stop one or more running containers.
    #[command(after_help = "Example:\n  berth container stop -t 2 web")]
    Stop(container::StopArgs),
    /// Restart one or more containers.
    #[command(after_help = "Example:\n  berth container restart web")]
    Restart(container::StopArgs),
    /// Kill one or more running containers.
    #[command(after_help = "Example:\n  berth container kill -s HUP web")]
    Kill(container::KillArgs),
    /// Remove one or more containers.
    #[command(alias = "remove")]
    #[command(after_help = "Example:\n  berth container rm -f web")]
    Rm(container::RmArgs),
    /// List containers.
    #[command(alias = "ps", alias = "list")]
    #[command(after_help = "Example:\n  berth container ls -a --format {{.Names}}")]
    Ls(container::PsArgs),
    /// Fetch the logs of a container.
    #[command(after_help = "Example:\n  berth container logs -f web")]
    Logs(container::LogsArgs),
    /// Execute a command in a running container.
    #[command(after_help = "Example:\n  berth container exec -it web sh")]
    Exec(container::ExecArgs),
    /// Attach to a running container.
    #[command(after_help = "Example:\n  berth container attach web")]
    Attach(container::AttachArgs),
    /// Block until containers stop, then print their exit codes.
    #[command(after_help = "Example:\n  berth container wait web")]
    Wait(container::NamesArgs),
    /// Display detailed information on one or more containers.
    #[command(after_help = "Example:\n  berth container inspect -f {{.State.Status}} web")]
    Inspect(system::InspectArgs),
    /// Display the running processes of a container.
    #[command(after_help = "Example:\n  berth container top web")]
    Top(container::TopArgs),
    /// Display resource usage statistics.
    #[command(after_help = "Example:\n  berth container stats --no-stream")]
    Stats(container::StatsArgs),
    /// Copy files/folders between a container and the local filesystem.
    #[command(after_help = "Example:\n  berth container cp web:/etc/hosts ./hosts")]
    Cp(cp::CpArgs),
    /// Pause all processes within one or more containers.
    #[command(after_help = "Example:\n  berth container pause web")]
    Pause(container::NamesArgs),
    /// Unpause all processes within one or more containers.
    #[command(after_help = "Example:\n  berth container unpause web")]
    Unpause(container::NamesArgs),
    /// Rename a container.
    #[command(after_help = "Example:\n  berth container rename web web2")]
    Rename(container::RenameArgs),
    /// Update configuration of one or more containers.
    #[command(after_help = "Example:\n  berth container update --memory 256m web")]
    Update(container::UpdateArgs),
    /// List port mappings.
    #[command(after_help = "Example:\n  berth container port web 80/tcp")]
    Port(container::PortArgs),
    /// Inspect changes on a container's filesystem.
    #[command(after_help = "Example:\n  berth container diff web")]
    Diff(container::OneArg),
    /// Create a new image from a container's changes.
    #[command(after_help = "Example:\n  berth container commit web myimage:v2")]
    Commit(container::CommitArgs),
    /// Export a container's filesystem as a tar archive.
    #[command(after_help = "Example:\n  berth container export -o web.tar web")]
    Export(container::ExportArgs),
    /// Remove all stopped containers.
    #[command(after_help = "Example:\n  berth container prune -f")]
    Prune(system::PruneArgs),
}

/// Run a client command; returns the process exit code. Errors are printed here, as Docker
/// prints them (`Error response from daemon: …`), never as a panic.
pub fn run(cmd: ClientCmd) -> i32 {
    quiet_panics();
    let is_run = matches!(
        cmd,
        ClientCmd::Run(_) | ClientCmd::Container(ContainerCmd::Run(_))
    );
    match dispatch(cmd) {
        Ok(code) => code,
        Err(e) => report(&e, is_run),
    }
}

/// Report a command-line parse error and exit: for client commands help/version exit 0 and usage
/// errors 125, as the docker CLI's do; the other roles keep clap's codes.
pub fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind as K;
    let client = match subcommand_word(std::env::args().skip(1)) {
        Some(w) => !matches!(w.as_str(), "runtime" | "daemon" | "registry" | "shim"),
        None => true,
    };
    let _ = e.print();
    let code = if !client {
        e.exit_code()
    } else if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        0
    } else {
        125
    };
    std::process::exit(code);
}

/// The first word after the global options (`-H x`, `--config x`, `--tlscacert x` …).
fn subcommand_word(args: impl Iterator<Item = String>) -> Option<String> {
    let takes_value = [
        "-H",
        "--host",
        "--config",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
    ];
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if takes_value.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return Some(a);
    }
    None
}

/// No Rust panic reaches the user: a closed stdout (`berth ps | head -1`) ends the process as
/// SIGPIPE would (status 141, silently); anything else is one line without a backtrace.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        eprintln!("berth: internal error: {msg}");
    }));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print an error and choose the exit code (`run`: 125 for daemon/client errors, as Docker).
pub fn report(e: &anyhow::Error, is_run: bool) -> i32 {
    if let Some(c) = e.downcast_ref::<container::ExitCode>() {
        return c.0;
    }
    if is_broken_pipe(e) {
        return 141;
    }
    if let Some(a) = e.downcast_ref::<ApiError>() {
        eprintln!("{a}");
    } else if let Some(c) = e.downcast_ref::<ConnectError>() {
        eprintln!("{c}");
    } else {
        eprintln!("{e:#}");
    }
    if is_run {
        125
    } else {
        1
    }
}

fn dispatch(cmd: ClientCmd) -> anyhow::Result<i32> {
    use ClientCmd as C;
    match cmd {
        C::Run(a) => container::run(*a),
        C::Create(a) => container::create_cmd(*a),
        C::Start(a) => container::start(a),
        C::Stop(a) => container::stop(a, false),
        C::Restart(a) => container::stop(a, true),
        C::Kill(a) => container::kill(a),
        C::Rm(a) => container::rm(a),
        C::Ps(a) => container::ps(a),
        C::Logs(a) => container::logs(a),
        C::Exec(a) => container::exec(a),
        C::Attach(a) => container::attach(a),
        C::Wait(a) => container::wait(a),
        C::Inspect(a) => system::inspect(a, None),
        C::Top(a) => container::top(a),
        C::Stats(a) => container::stats(a),
        C::Cp(a) => cp::cp(a),
        C::Pause(a) => container::simple(a, "pause"),
        C::Unpause(a) => container::simple(a, "unpause"),
        C::Rename(a) => container::rename(a),
        C::Update(a) => container::update(a),
        C::Port(a) => container::port(a),
        C::Diff(a) => container::diff(a),
        C::Commit(a) => container::commit(a),
        C::Export(a) => container::export(a),
        C::Images(a) => image::images(a),
        C::Pull(a) => image::pull(a),
        C::Push(a) => image::push(a),
        C::Tag(a) => image::tag(a),
        C::Rmi(a) => image::rmi(a),
        C::Save(a) => image::save(a),
        C::Load(a) => image::load(a),
        C::Import(a) => image::import(a),
        C::History(a) => image::history(a),
        C::Login(a) => system::login(a),
        C::Logout(a) => system::logout(a),
        C::Version(a) => system::version(a),
        C::Info(a) => system::info(a),
        C::Network(c) => system::network(c),
        C::Volume(c) => system::volume(c),
        C::System(c) => system::system(c),
        C::Builder(c) => system::builder(c),
        C::Events(a) => system::events(a),
        C::Completion(a) => system::completion(a),
        C::Container(c) => {
            use ContainerCmd as K;
            dispatch(match c {
                K::Run(a) => C::Run(a),
                K::Create(a) => C::Create(a),
                K::Start(a) => C::Start(a),
                K::Stop(a) => C::Stop(a),
                K::Restart(a) => C::Restart(a),
                K::Kill(a) => C::Kill(a),
                K::Rm(a) => C::Rm(a),
                K::Ls(a) => C::Ps(a),
                K::Logs(a) => C::Logs(a),
                K::Exec(a) => C::Exec(a),
                K::Attach(a) => C::Attach(a),
                K::Wait(a) => C::Wait(a),
                K::Inspect(a) => return system::inspect(a, Some("container")),
                K::Top(a) => C::Top(a),
                K::Stats(a) => C::Stats(a),
                K::Cp(a) => C::Cp(a),
                K::Pause(a) => C::Pause(a),
                K::Unpause(a) => C::Unpause(a),
                K::Rename(a) => C::Rename(a),
                K::Update(a) => C::Update(a),
                K::Port(a) => C::Port(a),
                K::Diff(a) => C::Diff(a),
                K::Commit(a) => C::Commit(a),
                K::Export(a) => C::Export(a),
                K::Prune(a) => return system::prune("containers", a),
            })
        }
    }
}
