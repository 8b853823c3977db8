//! berth-net: container networking for berth.
//!
//! - [`ipam`]: subnets, Docker's default pools, address allocation (pure).
//! - [`ports`]: `-p`/`-P` parsing into [`PortRequest`]s (pure).
//! - [`mode`]: `--network` modes as data.
//! - [`files`]: `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` builders (pure).
//! - [`manager`]: the [`Manager`]: networks and endpoints kept in step with a persisted store.
//! - [`netlink`]: links, addresses and routes in the host's or a container's namespace.
//! - [`dns`]: the embedded resolver of user-defined networks.
//! - [`firewall`]: berth's nftables table rendered from data and applied atomically.
#![forbid(unsafe_code)]

pub mod dns;
pub mod error;
pub mod files;
pub mod firewall;
pub mod ipam;
pub mod manager;
pub mod mode;
pub mod netlink;
pub mod ports;

pub use error::{NetError, Result};
pub use ipam::{IpamRequest, Mac, Pool, Subnet};
pub use manager::{Config, Endpoint, EndpointSpec, Manager, Network, NetworkSpec};
pub use mode::NetworkMode;
pub use ports::{HostPort, PortMapping, PortRequest, Proto};

/// Validates a network or container name like Docker: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && name.len() <= 255 {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "invalid name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// Validates a Linux interface name (1–15 bytes, no `/`, whitespace or `:`).
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "invalid interface name {name:?} (1-15 characters, no '/', ':' or spaces)"
        )))
    }
}
