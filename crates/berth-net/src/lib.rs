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
//!
//! # How the engine uses it
//! ```text
//! Manager::open(Config { state_dir, table, default_bridge, pools, .. })   // reconciles
//! Manager::ensure_default()                          // network "bridge" on berth0
//! Manager::create_network(&NetworkSpec) / remove_network / network / networks
//! Manager::connect(net, &EndpointSpec { container_id, name, aliases, netns: /proc/<pid>/ns/net,
//!                                       ip, mac, ports: parse_publish("-p")/parse_expose(-P) })
//!     -> Endpoint { ip, mac, gateway, ifname, ports: [PortMapping] }   // inspect, `berth port`
//! Manager::disconnect(net, container_id) / disconnect_all(container_id)   // stop, rm
//! files::{hosts, resolv_conf, hostname}               // written into the container's dir
//! ```
//! Modes: [`NetworkMode`] parses `--network`; `host` and `container:<id>` need no endpoint,
//! `none` needs a fresh namespace and nothing else.
//!
//! # Decisions
//! - **Netlink** through rtnetlink, each request on a short-lived thread that joined the target
//!   namespace (`setns` is per thread), so the daemon's threads never switch namespace. The
//!   container end of a veth is created directly inside the container's namespace with its final
//!   name and MAC (no move between namespaces, no rename): a connect without ports costs ~2 ms.
//! - **Firewall**: `nft -j -f -` with JSON rendered from data ([`firewall::Ruleset`]); network
//!   changes replace the whole table in one transaction, endpoint port changes only the `ports`
//!   chain. A `user` chain, never flushed, is jumped to first from `forward` (DOCKER-USER).
//!   Loopback publishing uses `route_localnet=1` on berth's bridges plus a guard dropping
//!   127.0.0.0/8 arriving from them; no userland proxy. Hairpin uses masquerade of DNATed
//!   traffic plus `hairpin_mode` on bridge ports (br_netfilter bridges it back out the same port).
//!   Host ports are reserved by binding (not listening) a socket while published.
//!   Where `nft` is missing, [`iptables`] renders the same [`firewall::Ruleset`] into berth's own
//!   chains through `iptables-restore --noflush`.
//! - **DNS** listens on each user-defined network's gateway, port 53, in the host namespace;
//!   containers get `nameserver <gateway>`. Unknown names are relayed to the host's non-loopback
//!   resolvers with a 2 s deadline (SERVFAIL after it), below the clients' 5 s.
//! - **State**: `networks.json` in `state_dir`, written atomically (temp, fsync, rename, fsync dir).
//!   Devices carry `ifalias` `berth:<table>:net|ep:<id>`; [`Manager::open`] removes marked devices
//!   the store does not know, releases endpoints whose namespace died (veth gone, namespace file
//!   gone or with another inode), recreates missing bridges, re-applies rules, restarts resolvers.
//! - **Forwarding**: `forwarding=1` on berth's bridges; the host-wide `net.ipv4.ip_forward=1` only
//!   when [`Config::enable_ip_forward`] (the daemon's default; tests leave the host alone).
//! - IPv4 only for now.
#![forbid(unsafe_code)]

pub mod dns;
pub mod error;
pub mod files;
pub mod firewall;
pub mod ipam;
pub mod iptables;
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
