//! `berth daemon`: the engine serving the Docker Engine API.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_engine::config::{FileConfig, RuntimeSpec, TlsConfig};
use berth_engine::Config;
use clap::Args;

const DEFAULT_CONFIG: &str = "/etc/berth/daemon.json";

/// `berth daemon` flags (flags win over the config file).
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Root of persistent state.
    #[arg(long = "data-root")]
    data_root: Option<PathBuf>,
    /// Root of runtime state.
    #[arg(long = "exec-root")]
    exec_root: Option<PathBuf>,
    /// Listen address: unix:///path (tcp://host:port only with --tlsverify and certificates).
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Daemon configuration file (daemon.json keys: data-root, exec-root, hosts, log-level,
    /// default-runtime, runtimes, pidfile, tlsverify, tlscacert, tlscert, tlskey).
    #[arg(long = "config-file", visible_alias = "config")]
    config: Option<PathBuf>,
    /// Runtime used by default (berth = the built-in runtime).
    #[arg(long = "default-runtime")]
    default_runtime: Option<String>,
    /// Another OCI runtime with runc's command line: name=path.
    #[arg(long = "add-runtime")]
    add_runtime: Vec<String>,
    /// Write the daemon's pid here.
    #[arg(short = 'p', long = "pidfile")]
    pidfile: Option<PathBuf>,
    /// Require client certificates (needed for tcp).
    #[arg(long = "tlsverify")]
    tlsverify: bool,
    /// CA that signs client certificates.
    #[arg(long = "tlscacert")]
    tlscacert: Option<PathBuf>,
    /// Server certificate.
    #[arg(long = "tlscert")]
    tlscert: Option<PathBuf>,
    /// Server key.
    #[arg(long = "tlskey")]
    tlskey: Option<PathBuf>,
}

/// Merge the config file (if any) and the flags into a Config.
fn build_config(a: DaemonArgs) -> Result<Config> {
    let file = match &a.config {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("read daemon config {}", p.display()))?;
            FileConfig::parse(&t).with_context(|| format!("daemon config {}", p.display()))?
        }
        None => match std::fs::read_to_string(DEFAULT_CONFIG) {
            Ok(t) => {
                FileConfig::parse(&t).with_context(|| format!("daemon config {DEFAULT_CONFIG}"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("read daemon config {DEFAULT_CONFIG}"))
            }
        },
    };
    let data_root = a
        .data_root
        .or(file.data_root)
        .unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let exec_root = a
        .exec_root
        .or(file.exec_root)
        .unwrap_or_else(|| PathBuf::from("/run/berth"));
    let mut c = Config::with_roots(data_root, exec_root);
    if !a.host.is_empty() {
        c.hosts = a.host;
    } else if let Some(h) = file.hosts.filter(|h| !h.is_empty()) {
        c.hosts = h;
    } else {
        c.hosts = vec!["unix:///run/berth/berth.sock".into()];
    }
    if let Some(l) = a.log_level.or(file.log_level) {
        c.log_level = l;
    }
    for (name, spec) in file.runtimes.unwrap_or_default() {
        c.runtimes.insert(name, spec);
    }
    for r in a.add_runtime {
        let Some((name, path)) = r.split_once('=') else {
            bail!("invalid --add-runtime {r:?}: expected name=path");
        };
        if name.is_empty() || path.is_empty() {
            bail!("invalid --add-runtime {r:?}: expected name=path");
        }
        c.runtimes.insert(
            name.to_string(),
            RuntimeSpec {
                path: PathBuf::from(path),
                runtime_args: Vec::new(),
            },
        );
    }
    if let Some(d) = a.default_runtime.or(file.default_runtime) {
        c.default_runtime = d;
    }
    c.pidfile = a.pidfile.or(file.pidfile);
    c.tls = TlsConfig {
        verify: a.tlsverify || file.tlsverify.unwrap_or(false),
        ca_cert: a.tlscacert.or(file.tlscacert),
        cert: a.tlscert.or(file.tlscert),
        key: a.tlskey.or(file.tlskey),
    };
    c.validate()?;
    Ok(c)
}

/// Run `berth daemon`.
pub fn run(a: DaemonArgs) -> Result<i32> {
    let config = build_config(a)?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("{},hyper=warn,h2=warn", config.log_level))
            .with_context(|| format!("invalid --log-level {:?}", config.log_level))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    berth_engine::daemon::run(config)?;
    Ok(0)
}
