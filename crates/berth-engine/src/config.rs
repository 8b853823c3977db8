//! Daemon configuration: the values of `berth daemon` flags and `/etc/berth/daemon.json`.
//!
//! [`FileConfig`] is the JSON file (Docker's `daemon.json` key names; unknown keys are an
//! error naming the key); [`Config`] is the merged result the engine runs with (flags win).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The name of berth's own in-process runtime (the default).
pub const BUILTIN_RUNTIME: &str = "berth";

/// An OCI runtime the containers module can run containers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// The executable (runc's command line). Empty for [`BUILTIN_RUNTIME`].
    pub path: PathBuf,
    /// Extra arguments passed before the subcommand.
    #[serde(default, rename = "runtimeArgs")]
    pub runtime_args: Vec<String>,
}

/// TLS material for a `tcp://` listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `--tlsverify`.
    pub verify: bool,
    /// `--tlscacert`.
    pub ca_cert: Option<PathBuf>,
    /// `--tlscert`.
    pub cert: Option<PathBuf>,
    /// `--tlskey`.
    pub key: Option<PathBuf>,
}

/// The engine's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Persistent state (`/var/lib/berth`): berth.db, content, snapshots, containers, volumes.
    pub data_root: PathBuf,
    /// Runtime state (`/run/berth`): shim sockets, container state, the default socket.
    pub exec_root: PathBuf,
    /// Listen addresses (`unix:///run/berth/berth.sock`, `tcp://host:port` with TLS).
    pub hosts: Vec<String>,
    /// `--log-level` (error, warn, info, debug, trace).
    pub log_level: String,
    /// Runtime containers use unless they ask for another one.
    pub default_runtime: String,
    /// Known runtimes by name, [`BUILTIN_RUNTIME`] included.
    pub runtimes: BTreeMap<String, RuntimeSpec>,
    /// `--pidfile`.
    pub pidfile: Option<PathBuf>,
    /// TLS for tcp listeners.
    pub tls: TlsConfig,
    /// Daemon name shown in `docker info` (the hostname by default).
    pub name: String,
    /// `--insecure-registry`: registries (host[:port]) pulls and pushes may reach over plain
    /// HTTP (localhost always may).
    pub insecure_registries: Vec<String>,
}

impl Config {
    /// Defaults rooted at `data_root` and `exec_root`, listening on `<exec_root>/berth.sock`.
    pub fn with_roots(data_root: impl Into<PathBuf>, exec_root: impl Into<PathBuf>) -> Self {
        let exec_root = exec_root.into();
        let sock = exec_root.join("berth.sock");
        let mut runtimes = BTreeMap::new();
        runtimes.insert(
            BUILTIN_RUNTIME.to_string(),
            RuntimeSpec {
                path: PathBuf::new(),
                runtime_args: Vec::new(),
            },
        );
        Config {
            data_root: data_root.into(),
            exec_root,
            hosts: vec![format!("unix://{}", sock.display())],
            log_level: "info".into(),
            default_runtime: BUILTIN_RUNTIME.into(),
            runtimes,
            pidfile: None,
            tls: TlsConfig::default(),
            name: hostname(),
            insecure_registries: Vec::new(),
        }
    }

    /// Check the configuration: the default runtime exists; tcp only with full TLS.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(EngineError::invalid(format!(
                "default runtime {:?} is not a known runtime (known: {})",
                self.default_runtime,
                self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if self.hosts.is_empty() {
            return Err(EngineError::invalid("no listen address (-H) given"));
        }
        for h in &self.hosts {
            match parse_host(h)? {
                Listen::Unix(_) => {}
                Listen::Tcp(_) => {
                    let t = &self.tls;
                    if !(t.verify && t.ca_cert.is_some() && t.cert.is_some() && t.key.is_some()) {
                        return Err(EngineError::invalid(format!(
                            "refusing to listen on {h}: tcp requires --tlsverify --tlscacert --tlscert --tlskey (an unauthenticated tcp socket gives root to anyone who can reach it)"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The first unix socket path, if any.
    pub fn unix_socket(&self) -> Option<PathBuf> {
        self.hosts.iter().find_map(|h| match parse_host(h) {
            Ok(Listen::Unix(p)) => Some(p),
            _ => None,
        })
    }
}

/// A parsed `-H` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `unix:///path` (or a bare absolute path).
    Unix(PathBuf),
    /// `tcp://host:port`.
    Tcp(String),
}

/// Parse a `-H` value: `unix:///path`, `/path`, `tcp://host:port` (`fd://` is not supported).
pub fn parse_host(h: &str) -> Result<Listen, EngineError> {
    if let Some(p) = h.strip_prefix("unix://") {
        if p.is_empty() || !p.starts_with('/') {
            return Err(EngineError::invalid(format!(
                "invalid host {h:?}: unix socket path must be absolute"
            )));
        }
        Ok(Listen::Unix(PathBuf::from(p)))
    } else if h.starts_with('/') {
        Ok(Listen::Unix(PathBuf::from(h)))
    } else if let Some(a) = h.strip_prefix("tcp://") {
        let a = a.trim_end_matches('/');
        if a.is_empty() || !a.contains(':') {
            return Err(EngineError::invalid(format!(
                "invalid host {h:?}: tcp address must be host:port"
            )));
        }
        Ok(Listen::Tcp(a.to_string()))
    } else {
        Err(EngineError::invalid(format!(
            "invalid host {h:?}: expected unix:///path or tcp://host:port"
        )))
    }
}

/// `daemon.json`: the same keys as the flags (Docker's spelling). Unknown keys are an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `data-root`.
    #[serde(rename = "data-root")]
    pub data_root: Option<PathBuf>,
    /// `exec-root`.
    #[serde(rename = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// `hosts`.
    pub hosts: Option<Vec<String>>,
    /// `log-level`.
    #[serde(rename = "log-level")]
    pub log_level: Option<String>,
    /// `default-runtime`.
    #[serde(rename = "default-runtime")]
    pub default_runtime: Option<String>,
    /// `runtimes`: name -> {path, runtimeArgs}.
    pub runtimes: Option<BTreeMap<String, RuntimeSpec>>,
    /// `pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `tlsverify`.
    pub tlsverify: Option<bool>,
    /// `tlscacert`.
    pub tlscacert: Option<PathBuf>,
    /// `tlscert`.
    pub tlscert: Option<PathBuf>,
    /// `tlskey`.
    pub tlskey: Option<PathBuf>,
    /// `live-restore` (always on in berth; accepted for compatibility, `false` is refused).
    #[serde(rename = "live-restore")]
    pub live_restore: Option<bool>,
    /// `insecure-registries`.
    #[serde(rename = "insecure-registries")]
    pub insecure_registries: Option<Vec<String>>,
}

impl FileConfig {
    /// Parse daemon.json text. Errors name the unknown key or the bad value.
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let fc: FileConfig = serde_json::from_str(text)
            .map_err(|e| EngineError::invalid(format!("daemon config: {e}")))?;
        if fc.live_restore == Some(false) {
            return Err(EngineError::invalid(
                "daemon config: live-restore cannot be disabled: berth containers always outlive the daemon",
            ));
        }
        Ok(fc)
    }
}

/// The machine's hostname (empty if it cannot be read).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let e = FileConfig::parse(r#"{"data-root":"/x","bogus-key":1}"#).unwrap_err();
        assert!(e.to_string().contains("bogus-key"), "{e}");
        assert_eq!(e.kind(), berth_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn file_keys_parse() {
        let fc = FileConfig::parse(
            r#"{"data-root":"/d","exec-root":"/e","hosts":["unix:///s"],"log-level":"debug",
                "default-runtime":"runc","runtimes":{"runc":{"path":"/usr/bin/runc"}},"pidfile":"/p"}"#,
        )
        .unwrap();
        assert_eq!(fc.data_root.as_deref(), Some(std::path::Path::new("/d")));
        assert_eq!(
            fc.runtimes.unwrap()["runc"].path,
            PathBuf::from("/usr/bin/runc")
        );
        assert_eq!(fc.default_runtime.as_deref(), Some("runc"));
    }

    #[test]
    fn tcp_needs_tls() {
        let mut c = Config::with_roots("/d", "/e");
        c.hosts = vec!["tcp://127.0.0.1:2376".into()];
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("--tlsverify"), "{e}");
        c.tls = TlsConfig {
            verify: true,
            ca_cert: Some("/ca".into()),
            cert: Some("/c".into()),
            key: Some("/k".into()),
        };
        c.validate().unwrap();
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            parse_host("unix:///run/x.sock").unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse_host("/run/x.sock").unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse_host("tcp://0.0.0.0:2376").unwrap(),
            Listen::Tcp("0.0.0.0:2376".into())
        );
        assert!(parse_host("fd://").is_err());
        assert!(parse_host("unix://rel").is_err());
    }

    #[test]
    fn unknown_default_runtime() {
        let mut c = Config::with_roots("/d", "/e");
        c.default_runtime = "nope".into();
        assert!(c.validate().unwrap_err().to_string().contains("nope"));
    }
}
