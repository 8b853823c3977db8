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
    /// Registry (host[:port]) reachable over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
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
    c.insecure_registries = file.insecure_registries.unwrap_or_default();
    c.insecure_registries.extend(a.insecure_registry);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DaemonArgs,
    }

    fn cfg(file: &str, flags: &[&str]) -> Result<Config> {
        let dir = tempfile::Builder::new()
            .prefix("berthtest")
            .tempdir()
            .unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(&p, file).unwrap();
        let mut argv = vec!["x".to_string(), "--config".into(), p.display().to_string()];
        argv.extend(flags.iter().map(|s| s.to_string()));
        build_config(T::try_parse_from(argv).unwrap().a)
    }

    #[test]
    fn flags_win_over_file() {
        let c = cfg(
            r#"{"data-root":"/f/data","exec-root":"/f/exec","hosts":["unix:///f/s.sock"],"log-level":"debug","pidfile":"/f/pid"}"#,
            &["--data-root", "/x/data", "-H", "unix:///x/s.sock"],
        )
        .unwrap();
        assert_eq!(c.data_root, PathBuf::from("/x/data"));
        assert_eq!(c.exec_root, PathBuf::from("/f/exec"));
        assert_eq!(c.hosts, vec!["unix:///x/s.sock".to_string()]);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.pidfile, Some(PathBuf::from("/f/pid")));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = cfg(r#"{"data-root":"/d","storage-driver":"overlay2"}"#, &[]).unwrap_err();
        assert!(format!("{e:#}").contains("storage-driver"), "{e:#}");
    }

    #[test]
    fn runtimes() {
        let c = cfg(
            r#"{"runtimes":{"crun":{"path":"/usr/bin/crun"}}}"#,
            &[
                "--add-runtime",
                "runc=/usr/sbin/runc",
                "--default-runtime",
                "runc",
            ],
        )
        .unwrap();
        assert_eq!(c.default_runtime, "runc");
        assert_eq!(c.runtimes["runc"].path, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(c.runtimes["crun"].path, PathBuf::from("/usr/bin/crun"));
        assert!(c.runtimes.contains_key("berth"));
        assert!(cfg("{}", &["--add-runtime", "bad"]).is_err());
        let e = cfg("{}", &["--default-runtime", "nope"]).unwrap_err();
        assert!(format!("{e:#}").contains("nope"));
    }

    #[test]
    fn tcp_needs_tls_flags() {
        let e = cfg("{}", &["-H", "tcp://127.0.0.1:2376"]).unwrap_err();
        assert!(format!("{e:#}").contains("--tlsverify"), "{e:#}");
        let c = cfg(
            "{}",
            &[
                "-H",
                "tcp://127.0.0.1:2376",
                "--tlsverify",
                "--tlscacert",
                "/ca",
                "--tlscert",
                "/c",
                "--tlskey",
                "/k",
            ],
        )
        .unwrap();
        assert!(c.tls.verify);
    }

    #[test]
    fn defaults() {
        let c = cfg("{}", &[]).unwrap();
        assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.exec_root, PathBuf::from("/run/berth"));
        assert_eq!(c.hosts, vec!["unix:///run/berth/berth.sock".to_string()]);
        assert_eq!(c.default_runtime, "berth");
    }
}
