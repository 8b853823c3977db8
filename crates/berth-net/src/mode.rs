//! Network modes (`--network`) as data; the engine maps them onto namespaces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

/// What `--network` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The default bridge network.
    Bridge,
    /// The host's network namespace (no new namespace).
    Host,
    /// A new namespace with only `lo`.
    None,
    /// Join another container's namespace.
    Container(String),
    /// A user-defined network by name or id.
    Named(String),
}

impl NetworkMode {
    /// Whether the container gets a fresh network namespace.
    pub fn new_namespace(&self) -> bool {
        !matches!(self, NetworkMode::Host | NetworkMode::Container(_))
    }

    /// Whether berth-net attaches an endpoint to a network.
    pub fn attaches(&self) -> bool {
        matches!(self, NetworkMode::Bridge | NetworkMode::Named(_))
    }

    /// Whether ports may be published (not for host, none or container:).
    pub fn publishes_ports(&self) -> bool {
        self.attaches()
    }
}

impl FromStr for NetworkMode {
    type Err = NetError;
    /// Parses Docker's `NetworkMode`: `""`/`default`/`bridge`, `host`, `none`, `container:<id>`, or a name.
    fn from_str(s: &str) -> Result<NetworkMode> {
        Ok(match s {
            "" | "default" | "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => match s.strip_prefix("container:") {
                Some("") => {
                    return Err(NetError::Invalid(
                        "invalid network mode \"container:\": no container given".into(),
                    ))
                }
                Some(id) => NetworkMode::Container(id.to_string()),
                None => {
                    crate::validate_name(s)?;
                    NetworkMode::Named(s.to_string())
                }
            },
        })
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(id) => write!(f, "container:{id}"),
            NetworkMode::Named(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!("".parse::<NetworkMode>().unwrap(), NetworkMode::Bridge);
        assert_eq!(
            "default".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge
        );
        assert_eq!("host".parse::<NetworkMode>().unwrap(), NetworkMode::Host);
        let c: NetworkMode = "container:abc".parse().unwrap();
        assert_eq!(c, NetworkMode::Container("abc".into()));
        assert!(!c.new_namespace() && !c.attaches());
        let n: NetworkMode = "my-net".parse().unwrap();
        assert!(n.attaches() && n.new_namespace());
        assert_eq!(n.to_string(), "my-net");
        assert!(NetworkMode::None.new_namespace() && !NetworkMode::None.attaches());
        assert!("container:".parse::<NetworkMode>().is_err());
        assert!("bad/name".parse::<NetworkMode>().is_err());
    }
}
