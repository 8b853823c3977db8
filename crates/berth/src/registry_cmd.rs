//! `berth registry ...`: `serve` (the OCI distribution server) and `gc` (one collection now).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Arguments of `berth registry`.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(name = "berth registry", about = "OCI Distribution v1.1 registry")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the registry.
    Serve(Box<ServeArgs>),
    /// Collect garbage once (offline or beside a running server) and print a JSON report.
    Gc {
        /// Data directory.
        #[arg(long)]
        root: PathBuf,
        /// Keep unreferenced blobs and idle uploads younger than this (e.g. 30s, 10m, 1h).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: Duration,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// Data directory (blobs under content/, metadata in registry.db).
    #[arg(long)]
    root: PathBuf,
    /// htpasswd file with bcrypt hashes: basic auth, or the token endpoint's users.
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// File holding the HMAC-SHA256 secret for bearer tokens: enables token auth.
    #[arg(long)]
    token_key: Option<PathBuf>,
    /// Issuer of tokens.
    #[arg(long, default_value = "berth-registry")]
    token_issuer: String,
    /// Token realm URL (default: this server's /token).
    #[arg(long)]
    token_realm: Option<String>,
    /// Token service name (audience).
    #[arg(long, default_value = "berth-registry")]
    token_service: String,
    /// Token lifetime.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    token_ttl: Duration,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse all writes.
    #[arg(long)]
    read_only: bool,
    /// With auth on, allow pulls without credentials.
    #[arg(long)]
    anonymous_pull: bool,
    /// Run garbage collection this often (0 disables).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    gc_interval: Duration,
    /// Grace period for unreferenced blobs and idle uploads.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    gc_grace: Duration,
}

/// `90`, `90s`, `15m`, `2h`, `1d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 10m, 1h)"))?;
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// Run `berth registry ...`; returns the exit code.
pub fn run(args: RegistryArgs) -> anyhow::Result<i32> {
    let cli = Cli::try_parse_from(std::iter::once("berth registry".to_string()).chain(args.args))
        .unwrap_or_else(|e| e.exit());
    match cli.cmd {
        Cmd::Gc { root, grace } => {
            let cfg = berth_registry::Config::new(root, "127.0.0.1:0".parse()?);
            let reg = berth_registry::Registry::open(cfg)?;
            let r = reg.gc(grace)?;
            println!(
                "{}",
                serde_json::json!({
                    "marked": r.marked, "deleted": r.deleted, "bytes_freed": r.bytes_freed,
                    "kept_young": r.kept_young, "referrers_dropped": r.referrers_dropped,
                    "uploads_expired": r.uploads_expired,
                })
            );
            Ok(0)
        }
        Cmd::Serve(a) => serve(*a),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<i32> {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let mut cfg = berth_registry::Config::new(a.root, a.addr);
    cfg.htpasswd = a.htpasswd;
    cfg.read_only = a.read_only;
    cfg.anonymous_pull = a.anonymous_pull;
    cfg.gc_interval = (!a.gc_interval.is_zero()).then_some(a.gc_interval);
    cfg.gc_grace = a.gc_grace;
    cfg.tls = a.tls_cert.zip(a.tls_key);
    if let Some(k) = a.token_key {
        let key = std::fs::read(&k).with_context(|| format!("read token key {}", k.display()))?;
        let key = key.trim_ascii().to_vec();
        anyhow::ensure!(!key.is_empty(), "token key {} is empty", k.display());
        cfg.token = Some(berth_registry::TokenConfig {
            key,
            issuer: a.token_issuer,
            realm: a.token_realm.unwrap_or_default(),
            service: a.token_service,
            ttl_secs: a.token_ttl.as_secs().max(1),
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(async move {
        let server = berth_registry::Server::start(cfg).await?;
        eprintln!("berth registry: listening on {}", server.addr());
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
        }
        server.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("1.5h").is_err());
    }

    #[test]
    fn serve_arguments() {
        let cli = Cli::try_parse_from([
            "berth registry",
            "serve",
            "--root",
            "/tmp/x",
            "--addr",
            "127.0.0.1:5001",
            "--read-only",
            "--gc-interval",
            "0",
            "--gc-grace",
            "10m",
        ])
        .expect("parse");
        let Cmd::Serve(a) = cli.cmd else {
            panic!("not serve")
        };
        assert_eq!(a.addr.port(), 5001);
        assert!(a.read_only);
        assert!(a.gc_interval.is_zero());
        assert_eq!(a.gc_grace, Duration::from_secs(600));
        // A certificate needs its key.
        assert!(Cli::try_parse_from([
            "berth registry",
            "serve",
            "--root",
            "/tmp/x",
            "--tls-cert",
            "c.pem"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["berth registry", "serve"]).is_err());
    }
}
