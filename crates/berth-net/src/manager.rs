//! The network manager: networks, endpoints, firewall and DNS kept in step with a persisted store.
//!
//! Every operation validates first, then sets up, and rolls back what it did when a later step
//! fails. Teardown runs in reverse (firewall rules, DNS names, links, addresses), collects every
//! error instead of stopping at the first, and never needs the container's namespace: deleting
//! the host end of a veth removes both ends.
//!
//! Ownership marks: every device berth creates carries an `ifalias` of
//! `berth:<instance>:net:<id>` (bridges) or `berth:<instance>:ep:<id>` (veths), where the
//! instance is the nftables table name. [`Manager::open`] uses them to reconcile after a crash.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::dns::DnsServer;
use crate::error::{NetError, Result};
use crate::files::ResolvConf;
use crate::firewall::{self, FwNetwork, FwPort, Ruleset};
use crate::ipam::{self, IpamRequest, Mac, NetworkIpam, Pool, Subnet};
use crate::netlink::{self, InsidePlan, VethPlan};
use crate::ports::{HostPort, PortMapping, PortRequest, Proto};

/// Docker's option naming the bridge device.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Docker's option setting the MTU.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

/// Settings of one berth-net instance (a daemon, or a test).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where `networks.json` lives.
    pub state_dir: PathBuf,
    /// The nftables table (family inet) and the device ownership mark.
    pub table: String,
    /// Pools for networks created without `--subnet`.
    pub pools: Vec<Pool>,
    /// The default bridge's device name (`berth0`).
    pub default_bridge: String,
    /// The default bridge's subnet (`--bip`); picked from the pools when `None`.
    pub default_subnet: Option<Subnet>,
    /// Set the host's global `net.ipv4.ip_forward=1` (the daemon does; tests must not).
    pub enable_ip_forward: bool,
    /// Upstream resolvers for the embedded DNS; the host's resolv.conf when `None`.
    pub dns_upstreams: Option<Vec<IpAddr>>,
    /// Port of the embedded resolvers (53).
    pub dns_port: u16,
}

impl Config {
    /// Defaults for a daemon rooted at `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            table: "berth".into(),
            pools: ipam::default_pools(),
            default_bridge: "berth0".into(),
            default_subnet: None,
            enable_ip_forward: true,
            dns_upstreams: None,
            dns_port: 53,
        }
    }
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default)]
pub struct NetworkSpec {
    /// The network's name.
    pub name: String,
    /// `--subnet`, `--gateway`, `--ip-range`.
    pub ipam: IpamRequest,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-o` options (bridge name and MTU are understood).
    pub options: BTreeMap<String, String>,
    /// Serve the embedded DNS (user-defined networks; not the default bridge).
    pub dns: bool,
}

/// A network as stored and inspected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Bridge device.
    pub bridge: String,
    /// Addresses.
    pub ipam: NetworkIpam,
    /// `--internal`.
    pub internal: bool,
    /// MTU of the bridge and its veths, if set.
    pub mtu: Option<u32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Options as given.
    pub options: BTreeMap<String, String>,
    /// Whether the embedded DNS serves it.
    pub dns: bool,
    /// Creation time, seconds since the Unix epoch.
    #[serde(default)]
    pub created: u64,
}

/// What `connect` (or container start) asks for.
#[derive(Clone, Debug, Default)]
pub struct EndpointSpec {
    /// The container's id.
    pub container_id: String,
    /// The container's name (a DNS name on the network).
    pub name: String,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// The container's namespace: `/proc/<pid>/ns/net` or `/run/netns/<name>`.
    pub netns: PathBuf,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address`.
    pub mac: Option<Mac>,
    /// `-p`/`-P`.
    pub ports: Vec<PortRequest>,
    /// Interface name inside; the lowest free `ethN` of the container when `None`.
    pub ifname: Option<String>,
    /// The container's `--dns`: the embedded resolver relays its queries there.
    pub dns_servers: Vec<IpAddr>,
}

/// An attached endpoint as stored and inspected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 hex characters.
    pub id: String,
    /// The network's id.
    pub network_id: String,
    /// The container's id.
    pub container_id: String,
    /// The container's name.
    pub name: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// The namespace it was attached in.
    pub netns: PathBuf,
    /// The namespace's inode at attach time: a reused pid's namespace is told apart.
    #[serde(default)]
    pub netns_ino: u64,
    /// Interface name inside.
    pub ifname: String,
    /// Host end of the veth.
    pub host_veth: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// MAC address.
    pub mac: Mac,
    /// Gateway (none on internal networks).
    pub gateway: Option<Ipv4Addr>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// The container's own upstream resolvers (`--dns`).
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
}

impl Endpoint {
    /// The DNS names of this endpoint on `network`: name, aliases, short container id, and each
    /// of them qualified with the network's name (`web.mynet`).
    pub fn dns_names(&self, network: &str) -> Vec<String> {
        let mut v = vec![self.name.clone()];
        v.extend(self.aliases.iter().cloned());
        v.push(self.container_id.chars().take(12).collect());
        v.retain(|n| !n.is_empty());
        let qualified: Vec<String> = v.iter().map(|n| format!("{n}.{network}")).collect();
        v.extend(qualified);
        v
    }
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    networks: BTreeMap<String, Network>,
    endpoints: BTreeMap<String, Endpoint>,
}

struct Inner {
    state: State,
    /// Endpoints whose links are being set up outside the lock.
    pending: HashMap<String, Endpoint>,
    dns: HashMap<String, DnsServer>,
    reservations: HashMap<String, Vec<OwnedFd>>,
}

/// The network manager of one berth instance.
pub struct Manager {
    cfg: Config,
    inner: Mutex<Inner>,
    startup_errors: Vec<String>,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| NetError::io("getrandom", e.into()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Manager {
    /// Opens the store, reconciles devices, rules and resolvers with it, and returns the manager.
    pub fn open(cfg: Config) -> Result<Manager> {
        crate::validate_name(&cfg.table)?;
        crate::validate_ifname(&cfg.default_bridge)?;
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| NetError::io(format!("create {}", cfg.state_dir.display()), e))?;
        let path = cfg.state_dir.join("networks.json");
        let state: State = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                NetError::io(
                    format!("parse {}", path.display()),
                    std::io::Error::other(e),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(NetError::io(format!("read {}", path.display()), e)),
        };
        if cfg.enable_ip_forward {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| NetError::io("enable net.ipv4.ip_forward", e))?;
        }
        let mut m = Manager {
            startup_errors: Vec::new(),
            cfg,
            inner: Mutex::new(Inner {
                state,
                pending: HashMap::new(),
                dns: HashMap::new(),
                reservations: HashMap::new(),
            }),
        };
        // Only an unreadable host (no netlink) is fatal; a network that cannot be restored is
        // reported and the others keep working.
        let errs = m.reconcile()?;
        for e in &errs {
            tracing::warn!("network reconciliation: {e}");
        }
        m.startup_errors = errs.iter().map(|e| e.to_string()).collect();
        Ok(m)
    }

    /// What reconciliation at [`Manager::open`] could not repair (also logged as warnings).
    pub fn startup_errors(&self) -> &[String] {
        &self.startup_errors
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, kind: &str, id: &str) -> String {
        format!("berth:{}:{kind}:{id}", self.cfg.table)
    }

    fn persist(&self, st: &State) -> Result<()> {
        let path = self.cfg.state_dir.join("networks.json");
        let tmp = self.cfg.state_dir.join(".networks.json.tmp");
        let body = serde_json::to_vec_pretty(st)
            .map_err(|e| NetError::io("encode network state", std::io::Error::other(e)))?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.cfg.state_dir)?.sync_all()
        };
        write().map_err(|e| NetError::io(format!("write {}", path.display()), e))
    }

    fn ruleset(st: &State) -> Ruleset {
        Ruleset {
            networks: st
                .networks
                .values()
                .map(|n| FwNetwork {
                    bridge: n.bridge.clone(),
                    subnet: n.ipam.subnet,
                    internal: n.internal,
                })
                .collect(),
            ports: st
                .endpoints
                .values()
                .flat_map(|e| {
                    e.ports.iter().map(|p| FwPort {
                        container_ip: e.ip,
                        mapping: *p,
                    })
                })
                .collect(),
        }
    }

    fn upstreams(&self) -> Vec<IpAddr> {
        match &self.cfg.dns_upstreams {
            Some(v) => v.clone(),
            None => {
                ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
                    .upstreams()
            }
        }
    }

    fn start_dns(&self, net: &Network) -> Result<DnsServer> {
        DnsServer::start(
            SocketAddrV4::new(net.ipam.gateway, self.cfg.dns_port),
            self.upstreams(),
        )
    }

    /// Brings devices, rules and resolvers in line with the store (run at start-up).
    fn reconcile(&self) -> Result<Vec<NetError>> {
        let mut g = self.lock();
        let inner = &mut *g;
        let prefix = format!("berth:{}:", self.cfg.table);
        let links = netlink::run_in(None, |h| async move { netlink::links(&h).await })?;
        let mut errs = Vec::new();
        // 1. devices we own that the store no longer knows
        for l in &links {
            let Some(rest) = l.alias.as_deref().and_then(|a| a.strip_prefix(&prefix)) else {
                continue;
            };
            let known = match rest.split_once(':') {
                Some(("net", id)) => inner
                    .state
                    .networks
                    .get(id)
                    .is_some_and(|n| n.bridge == l.name),
                Some(("ep", id)) => inner
                    .state
                    .endpoints
                    .get(id)
                    .is_some_and(|e| e.host_veth == l.name),
                _ => false,
            };
            if !known {
                let name = l.name.clone();
                if let Err(e) = netlink::run_in(None, move |h| async move {
                    netlink::delete_link(&h, &name).await
                }) {
                    errs.push(e);
                }
            }
        }
        // 2. endpoints whose namespace died (veth gone, namespace file gone or another one):
        //    release them and remove a veth the kernel has not reaped yet
        use std::os::unix::fs::MetadataExt;
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        let alive = |e: &Endpoint| {
            names.contains(&e.host_veth.as_str())
                && std::fs::metadata(&e.netns)
                    .is_ok_and(|m| e.netns_ino == 0 || m.ino() == e.netns_ino)
        };
        let dead: Vec<String> = inner
            .state
            .endpoints
            .values()
            .filter(|e| !alive(e))
            .map(|e| e.id.clone())
            .collect();
        for id in dead {
            if let Some(ep) = inner.state.endpoints.remove(&id) {
                let name = ep.host_veth.clone();
                if let Err(e) = netlink::run_in(None, move |h| async move {
                    netlink::delete_link(&h, &name).await
                }) {
                    errs.push(e);
                }
                if let Some(n) = inner.state.networks.get_mut(&ep.network_id) {
                    n.ipam.release(ep.ip);
                }
            }
        }
        // 3. networks whose bridge vanished (reboot): recreate
        for n in inner.state.networks.values() {
            if !names.contains(&n.bridge.as_str()) {
                if let Err(e) = self.create_bridge(n) {
                    errs.push(e);
                }
            }
        }
        // 4. rules, resolvers, port reservations
        if let Err(e) = firewall::apply(&self.cfg.table, &Self::ruleset(&inner.state)) {
            errs.push(e);
        }
        for n in inner.state.networks.values().filter(|n| n.dns) {
            match self.start_dns(n) {
                Ok(srv) => {
                    for e in inner
                        .state
                        .endpoints
                        .values()
                        .filter(|e| e.network_id == n.id)
                    {
                        srv.set(&e.id, &e.dns_names(&n.name), e.ip);
                        srv.set_upstreams(&e.id, &e.dns_servers);
                    }
                    inner.dns.insert(n.id.clone(), srv);
                }
                Err(e) => errs.push(e),
            }
        }
        for e in inner.state.endpoints.values() {
            let mut fds = Vec::new();
            for p in &e.ports {
                match reserve(p.host_ip, HostPort::Fixed(p.host_port), p.proto) {
                    Ok((fd, _)) => fds.push(fd),
                    Err(err) => tracing::warn!(endpoint = %e.id, "re-reserving {p}: {err}"),
                }
            }
            inner.reservations.insert(e.id.clone(), fds);
        }
        if let Err(e) = self.persist(&inner.state) {
            errs.push(e);
        }
        Ok(errs)
    }

    fn create_bridge(&self, n: &Network) -> Result<()> {
        let (name, alias, gw, subnet, mtu) = (
            n.bridge.clone(),
            self.mark("net", &n.id),
            n.ipam.gateway,
            n.ipam.subnet,
            n.mtu,
        );
        netlink::run_in(None, move |h| async move {
            netlink::create_bridge(&h, &name, &alias, gw, subnet, mtu)
                .await
                .map(|_| ())
        })?;
        let res = netlink::set_if_sysctl(&n.bridge, "route_localnet", "1")
            .and_then(|_| netlink::set_if_sysctl(&n.bridge, "forwarding", "1"));
        if let Err(e) = res {
            let name = n.bridge.clone();
            let _ = netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await
            });
            return Err(e);
        }
        Ok(())
    }

    /// Creates a bridge network.
    pub fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        crate::validate_name(&spec.name)?;
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.state.networks.values().any(|n| n.name == spec.name) {
            return Err(NetError::Conflict(format!(
                "network with name {} already exists",
                spec.name
            )));
        }
        let id = random_hex(32)?;
        let bridge = match spec.options.get(OPT_BRIDGE_NAME) {
            Some(b) => b.clone(),
            None => format!("br-{}", &id[..12]),
        };
        crate::validate_ifname(&bridge)?;
        let mtu = match spec.options.get(OPT_MTU) {
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| NetError::Invalid(format!("invalid MTU {v:?}")))?,
            ),
            None => None,
        };
        if inner.state.networks.values().any(|n| n.bridge == bridge) {
            return Err(NetError::Conflict(format!(
                "bridge {bridge} is already used by another network"
            )));
        }
        let b2 = bridge.clone();
        let (exists, routes) = netlink::run_in(None, move |h| async move {
            Ok((
                netlink::link_by_name(&h, &b2).await?.is_some(),
                netlink::routes_v4(&h).await?,
            ))
        })?;
        if exists {
            return Err(NetError::Conflict(format!(
                "a device named {bridge} already exists"
            )));
        }
        let in_use: Vec<Subnet> = inner
            .state
            .networks
            .values()
            .map(|n| n.ipam.subnet)
            .collect();
        let subnet = match spec.ipam.subnet {
            Some(s) => {
                if let Some(o) = in_use.iter().find(|u| u.overlaps(&s)) {
                    return Err(NetError::Conflict(format!("invalid pool request: pool {s} overlaps with other one {o} on this address space")));
                }
                s
            }
            None => {
                let host: Vec<Subnet> = routes
                    .iter()
                    .map(|r| r.dest)
                    .filter(|d| d.prefix() > 0)
                    .collect();
                ipam::pick_subnet(&self.cfg.pools, &in_use, &host)?
            }
        };
        let net = Network {
            id: id.clone(),
            name: spec.name.clone(),
            bridge,
            ipam: NetworkIpam::new(&spec.ipam, subnet)?,
            internal: spec.internal,
            mtu,
            labels: spec.labels.clone(),
            options: spec.options.clone(),
            dns: spec.dns,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        // set up, rolling back on failure
        self.create_bridge(&net)?;
        let undo_bridge = || {
            let name = net.bridge.clone();
            let _ = netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await
            });
        };
        inner.state.networks.insert(id.clone(), net.clone());
        let step = firewall::apply(&self.cfg.table, &Self::ruleset(&inner.state))
            .and_then(|_| {
                if net.dns {
                    self.start_dns(&net).map(Some)
                } else {
                    Ok(None)
                }
            })
            .and_then(|srv| self.persist(&inner.state).map(|_| srv));
        match step {
            Ok(srv) => {
                if let Some(srv) = srv {
                    inner.dns.insert(id, srv);
                }
                Ok(net)
            }
            Err(e) => {
                inner.state.networks.remove(&id);
                let _ = firewall::apply(&self.cfg.table, &Self::ruleset(&inner.state));
                undo_bridge();
                Err(e)
            }
        }
    }

    /// Creates the default bridge network `bridge` (device [`Config::default_bridge`]) if missing.
    pub fn ensure_default(&self) -> Result<Network> {
        if let Ok(n) = self.network("bridge") {
            return Ok(n);
        }
        let mut options = BTreeMap::new();
        options.insert(OPT_BRIDGE_NAME.to_string(), self.cfg.default_bridge.clone());
        self.create_network(&NetworkSpec {
            name: "bridge".into(),
            ipam: IpamRequest {
                subnet: self.cfg.default_subnet,
                ..Default::default()
            },
            options,
            ..Default::default()
        })
    }

    fn find<'a>(st: &'a State, key: &str) -> Result<&'a Network> {
        st.networks
            .get(key)
            .or_else(|| st.networks.values().find(|n| n.name == key))
            .or_else(|| {
                let mut it = st
                    .networks
                    .values()
                    .filter(|n| key.len() >= 3 && n.id.starts_with(key));
                let first = it.next();
                if it.next().is_some() {
                    None
                } else {
                    first
                }
            })
            .ok_or_else(|| NetError::NotFound(format!("network {key}")))
    }

    /// Looks a network up by id, name or unique id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        Self::find(&self.lock().state, key).cloned()
    }

    /// All networks.
    pub fn networks(&self) -> Vec<Network> {
        self.lock().state.networks.values().cloned().collect()
    }

    /// The endpoints on a network.
    pub fn endpoints(&self, network: &str) -> Result<Vec<Endpoint>> {
        let g = self.lock();
        let id = Self::find(&g.state, network)?.id.clone();
        Ok(g.state
            .endpoints
            .values()
            .filter(|e| e.network_id == id)
            .cloned()
            .collect())
    }

    /// The endpoints of a container on every network.
    pub fn container_endpoints(&self, container_id: &str) -> Vec<Endpoint> {
        self.lock()
            .state
            .endpoints
            .values()
            .filter(|e| e.container_id == container_id)
            .cloned()
            .collect()
    }

    /// Removes a network without endpoints.
    pub fn remove_network(&self, key: &str) -> Result<()> {
        let mut g = self.lock();
        let inner = &mut *g;
        let net = Self::find(&inner.state, key)?.clone();
        if inner
            .state
            .endpoints
            .values()
            .chain(inner.pending.values())
            .any(|e| e.network_id == net.id)
        {
            return Err(NetError::Conflict(format!(
                "error while removing network: network {} has active endpoints",
                net.name
            )));
        }
        let mut errs = Vec::new();
        inner.state.networks.remove(&net.id);
        if let Err(e) = firewall::apply(&self.cfg.table, &Self::ruleset(&inner.state)) {
            errs.push(e);
        }
        inner.dns.remove(&net.id);
        let name = net.bridge.clone();
        if let Err(e) = netlink::run_in(None, move |h| async move {
            netlink::delete_link(&h, &name).await
        }) {
            errs.push(e);
        }
        if let Err(e) = self.persist(&inner.state) {
            errs.push(e);
        }
        NetError::collect(errs)
    }

    /// Attaches a container's namespace to a network.
    pub fn connect(&self, network: &str, spec: &EndpointSpec) -> Result<Endpoint> {
        if !spec.name.is_empty() {
            crate::validate_name(spec.name.trim_start_matches('/'))?;
        }
        for a in &spec.aliases {
            crate::validate_name(a)?;
        }
        if let Some(i) = &spec.ifname {
            crate::validate_ifname(i)?;
        }
        if spec.container_id.is_empty() {
            return Err(NetError::Invalid("endpoint without a container id".into()));
        }
        if !spec.netns.exists() {
            return Err(NetError::NotFound(format!(
                "network namespace {}",
                spec.netns.display()
            )));
        }
        // phase 1, under the lock: validate against the store and allocate
        let mut g = self.lock();
        let inner = &mut *g;
        let net = Self::find(&inner.state, network)?.clone();
        let mine: Vec<&Endpoint> = inner
            .state
            .endpoints
            .values()
            .chain(inner.pending.values())
            .filter(|e| e.container_id == spec.container_id)
            .collect();
        if mine.iter().any(|e| e.network_id == net.id) {
            return Err(NetError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                spec.name, net.name
            )));
        }
        let ifname = match &spec.ifname {
            Some(i) => i.clone(),
            None => (0..)
                .map(|n| format!("eth{n}"))
                .find(|c| !mine.iter().any(|e| &e.ifname == c))
                .unwrap_or_default(),
        };
        if mine.iter().any(|e| e.ifname == ifname) {
            return Err(NetError::Conflict(format!(
                "interface {ifname} already exists in the container"
            )));
        }
        // Docker accepts -p on an internal network and publishes nothing: same here.
        let requested: &[PortRequest] = if net.internal {
            if !spec.ports.is_empty() {
                tracing::warn!(network = %net.name, "ports are not published on internal networks");
            }
            &[]
        } else {
            &spec.ports
        };
        use std::os::unix::fs::MetadataExt;
        let netns_ino = std::fs::metadata(&spec.netns)
            .map_err(|e| NetError::io(format!("stat {}", spec.netns.display()), e))?
            .ino();
        // allocate: address, MAC, host ports
        let id = random_hex(32)?;
        let ip = inner
            .state
            .networks
            .get_mut(&net.id)
            .map(|n| n.ipam.allocate(spec.ip))
            .unwrap_or_else(|| Err(NetError::NotFound(net.name.clone())))?;
        let release_ip = |inner: &mut Inner| {
            if let Some(n) = inner.state.networks.get_mut(&net.id) {
                n.ipam.release(ip);
            }
        };
        let mut fds = Vec::new();
        let mut ports = Vec::new();
        for p in requested {
            match reserve(p.host_ip, p.host_port, p.proto) {
                Ok((fd, port)) => {
                    fds.push(fd);
                    ports.push(PortMapping {
                        host_ip: p.host_ip,
                        host_port: port,
                        container_port: p.container_port,
                        proto: p.proto,
                    });
                }
                Err(e) => {
                    release_ip(inner);
                    return Err(e);
                }
            }
        }
        let hex = &id[..7];
        let ep = Endpoint {
            id: id.clone(),
            network_id: net.id.clone(),
            container_id: spec.container_id.clone(),
            name: spec.name.trim_start_matches('/').to_string(),
            aliases: spec.aliases.clone(),
            netns: spec.netns.clone(),
            netns_ino,
            ifname: ifname.clone(),
            host_veth: format!("veth{hex}"),
            ip,
            prefix: net.ipam.subnet.prefix(),
            mac: spec.mac.unwrap_or_else(|| Mac::from_ip(ip)),
            gateway: (!net.internal).then_some(net.ipam.gateway),
            ports,
            dns_servers: spec.dns_servers.clone(),
        };
        // set up: veth, inside, rules, DNS, store
        let plan = VethPlan {
            host_name: ep.host_veth.clone(),
            peer_name: ifname.clone(),
            peer_mac: ep.mac,
            alias: self.mark("ep", &id),
            bridge: net.bridge.clone(),
            mtu: net.mtu,
        };
        let inside = InsidePlan {
            ifname,
            ip,
            subnet: net.ipam.subnet,
            gateway: ep.gateway,
        };
        // phase 2, without the lock (other containers connect meanwhile): the links
        inner.pending.insert(id.clone(), ep.clone());
        drop(g);
        let nspath = spec.netns.clone();
        let res = netlink::run_in(None, move |h| async move {
            netlink::create_veth(&h, &plan, &nspath).await
        })
        .and_then(|_| {
            netlink::run_in(Some(&spec.netns), move |h| async move {
                netlink::configure_inside(&h, &inside).await
            })
        });
        let undo_link = |ep: &Endpoint| {
            let name = ep.host_veth.clone();
            let _ = netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await
            });
        };
        // phase 3, under the lock: rules, store, names
        let mut g = self.lock();
        let inner = &mut *g;
        inner.pending.remove(&id);
        if let Err(e) = res {
            undo_link(&ep);
            release_ip(inner);
            return Err(e);
        }
        inner.state.endpoints.insert(id.clone(), ep.clone());
        let res = if ep.ports.is_empty() {
            Ok(())
        } else {
            firewall::apply_ports(&self.cfg.table, &Self::ruleset(&inner.state))
        }
        .and_then(|_| self.persist(&inner.state));
        if let Err(e) = res {
            inner.state.endpoints.remove(&id);
            if !ep.ports.is_empty() {
                let _ = firewall::apply_ports(&self.cfg.table, &Self::ruleset(&inner.state));
            }
            undo_link(&ep);
            release_ip(inner);
            return Err(e);
        }
        if let Some(srv) = inner.dns.get(&net.id) {
            srv.set(&id, &ep.dns_names(&net.name), ip);
            srv.set_upstreams(&id, &ep.dns_servers);
        }
        inner.reservations.insert(id, fds);
        Ok(ep)
    }

    /// Detaches a container from a network: rules, DNS names, link, address, in that order.
    pub fn disconnect(&self, network: &str, container_id: &str) -> Result<()> {
        let g = self.lock();
        let net_id = Self::find(&g.state, network)?.id.clone();
        let ep = g
            .state
            .endpoints
            .values()
            .find(|e| e.network_id == net_id && e.container_id == container_id)
            .cloned()
            .ok_or_else(|| {
                NetError::NotFound(format!(
                    "container {container_id} is not connected to network {network}"
                ))
            })?;
        self.teardown(g, &ep).1
    }

    /// Detaches a container from every network (container stop or removal).
    pub fn disconnect_all(&self, container_id: &str) -> Result<()> {
        let mut g = self.lock();
        let eps: Vec<Endpoint> = g
            .state
            .endpoints
            .values()
            .filter(|e| e.container_id == container_id)
            .cloned()
            .collect();
        let mut errs = Vec::new();
        for ep in eps {
            let (back, res) = self.teardown(g, &ep);
            g = back;
            if let Err(e) = res {
                errs.push(e);
            }
        }
        NetError::collect(errs)
    }

    /// Tears one endpoint down: rules, names and port reservations under the lock, then the
    /// link without it (deleting a veth waits for an RCU grace period), then the address and the
    /// store under it again. The endpoint stays "pending" meanwhile, so neither its address nor
    /// its interface name is handed out before the link is gone.
    fn teardown<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        ep: &Endpoint,
    ) -> (MutexGuard<'a, Inner>, Result<()>) {
        let mut errs = Vec::new();
        g.state.endpoints.remove(&ep.id);
        if !ep.ports.is_empty() {
            if let Err(e) = firewall::apply_ports(&self.cfg.table, &Self::ruleset(&g.state)) {
                errs.push(e);
            }
        }
        if let Some(srv) = g.dns.get(&ep.network_id) {
            srv.remove(&ep.id);
        }
        g.reservations.remove(&ep.id);
        g.pending.insert(ep.id.clone(), ep.clone());
        drop(g);
        let name = ep.host_veth.clone();
        if let Err(e) = netlink::run_in(None, move |h| async move {
            netlink::delete_link(&h, &name).await
        }) {
            errs.push(e);
        }
        let mut g = self.lock();
        g.pending.remove(&ep.id);
        if let Some(n) = g.state.networks.get_mut(&ep.network_id) {
            n.ipam.release(ep.ip);
        }
        if let Err(e) = self.persist(&g.state) {
            errs.push(e);
        }
        (g, NetError::collect(errs))
    }

    /// Removes every network without endpoints except the default `bridge`; returns their names.
    pub fn prune(&self) -> Result<Vec<String>> {
        let unused: Vec<String> = {
            let g = self.lock();
            g.state
                .networks
                .values()
                .filter(|n| {
                    n.name != "bridge" && !g.state.endpoints.values().any(|e| e.network_id == n.id)
                })
                .map(|n| n.name.clone())
                .collect()
        };
        let mut removed = Vec::new();
        let mut errs = Vec::new();
        for name in unused {
            match self.remove_network(&name) {
                Ok(()) => removed.push(name),
                Err(NetError::Conflict(_)) => {}
                Err(e) => errs.push(e),
            }
        }
        NetError::collect(errs).map(|_| removed)
    }

    /// Number of names the resolver of `network` serves (0 without DNS).
    pub fn dns_entries(&self, network: &str) -> Result<usize> {
        let g = self.lock();
        let id = Self::find(&g.state, network)?.id.clone();
        Ok(g.dns.get(&id).map_or(0, |d| d.len()))
    }

    /// Tears everything down: endpoints, networks, the nftables table (tests, `system reset`).
    pub fn destroy(self) -> Result<()> {
        let mut g = self.lock();
        let mut errs = Vec::new();
        let eps: Vec<Endpoint> = g.state.endpoints.values().cloned().collect();
        for ep in eps {
            let (back, res) = self.teardown(g, &ep);
            g = back;
            if let Err(e) = res {
                errs.push(e);
            }
        }
        g.dns.clear();
        let nets: Vec<Network> = g.state.networks.values().cloned().collect();
        g.state.networks.clear();
        if let Err(e) = firewall::delete_table(&self.cfg.table) {
            errs.push(e);
        }
        for n in nets {
            let name = n.bridge.clone();
            if let Err(e) = netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await
            }) {
                errs.push(e);
            }
        }
        if let Err(e) = self.persist(&g.state) {
            errs.push(e);
        }
        NetError::collect(errs)
    }
}

/// Reserves a host port by binding (not listening on) a socket, so nothing else takes it.
fn reserve(ip: Option<Ipv4Addr>, want: HostPort, proto: Proto) -> Result<(OwnedFd, u16)> {
    use rustix::net::{AddressFamily, SocketType};
    let ip = ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ty = match proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let try_port = |port: u16| -> std::io::Result<(OwnedFd, u16)> {
        let fd = rustix::net::socket_with(
            AddressFamily::INET,
            ty,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&fd, &SocketAddrV4::new(ip, port))?;
        let local = rustix::net::getsockname(&fd)?;
        let port = SocketAddrV4::try_from(local)
            .map(|a| a.port())
            .map_err(|_| std::io::Error::other("not an IPv4 socket"))?;
        Ok((fd, port))
    };
    let busy = |p: u16| {
        NetError::Conflict(format!(
            "bind for {ip}:{p}/{proto} failed: port is already allocated"
        ))
    };
    match want {
        HostPort::Fixed(p) => try_port(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                busy(p)
            } else {
                NetError::io(format!("reserve {ip}:{p}/{proto}"), e)
            }
        }),
        HostPort::Ephemeral => try_port(0)
            .map_err(|e| NetError::io(format!("reserve an ephemeral port on {ip}/{proto}"), e)),
        HostPort::Range(a, b) => (a..=b).find_map(|p| try_port(p).ok()).ok_or_else(|| {
            NetError::Conflict(format!("no free host port in {a}-{b} on {ip}/{proto}"))
        }),
    }
}

impl Network {
    /// Docker's `GET /networks/{id}` body (without `Created`, which the engine formats from
    /// [`Network::created`]), with `Containers` built from `endpoints`.
    pub fn docker_json(&self, endpoints: &[Endpoint]) -> serde_json::Value {
        let mut ipam = serde_json::json!({"Subnet": self.ipam.subnet.to_string(), "Gateway": self.ipam.gateway.to_string()});
        if self.ipam.range != self.ipam.subnet {
            ipam["IPRange"] = self.ipam.range.to_string().into();
        }
        let containers: serde_json::Map<String, serde_json::Value> = endpoints
            .iter()
            .filter(|e| e.network_id == self.id)
            .map(|e| {
                (
                    e.container_id.clone(),
                    serde_json::json!({
                        "Name": e.name,
                        "EndpointID": e.id,
                        "MacAddress": e.mac.to_string(),
                        "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                        "IPv6Address": "",
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "Name": self.name,
            "Id": self.id,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [ipam]},
            "Internal": self.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": self.options,
            "Labels": self.labels,
        })
    }
}

impl Endpoint {
    /// Docker's `NetworkSettings.Networks[name]` entry for container inspect.
    pub fn docker_json(&self, network: &Network) -> serde_json::Value {
        serde_json::json!({
            "IPAMConfig": null,
            "Links": null,
            "Aliases": self.aliases,
            "MacAddress": self.mac.to_string(),
            "NetworkID": network.id,
            "EndpointID": self.id,
            "Gateway": self.gateway.map(|g| g.to_string()).unwrap_or_default(),
            "IPAddress": self.ip.to_string(),
            "IPPrefixLen": self.prefix,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": self.dns_names(&network.name).into_iter().filter(|n| !n.contains('.')).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_shapes() {
        let subnet: Subnet = "10.213.3.0/24".parse().unwrap();
        let net = Network {
            id: "a".repeat(64),
            name: "front".into(),
            bridge: "br-aaaaaaaaaaaa".into(),
            ipam: NetworkIpam::new(
                &IpamRequest {
                    ip_range: Some("10.213.3.128/25".parse().unwrap()),
                    ..Default::default()
                },
                subnet,
            )
            .unwrap(),
            internal: true,
            mtu: None,
            labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
            options: BTreeMap::new(),
            dns: true,
            created: 0,
        };
        let ep = Endpoint {
            id: "e".repeat(64),
            network_id: net.id.clone(),
            container_id: "c".repeat(64),
            name: "web".into(),
            aliases: vec!["www".into()],
            netns: "/proc/1/ns/net".into(),
            netns_ino: 0,
            ifname: "eth0".into(),
            host_veth: "vethaaaaaaa".into(),
            ip: "10.213.3.128".parse().unwrap(),
            prefix: 24,
            mac: Mac::from_ip("10.213.3.128".parse().unwrap()),
            gateway: None,
            ports: vec![],
            dns_servers: vec![],
        };
        let j = net.docker_json(std::slice::from_ref(&ep));
        assert_eq!(
            j["IPAM"]["Config"][0],
            serde_json::json!({"Subnet": "10.213.3.0/24", "Gateway": "10.213.3.1", "IPRange": "10.213.3.128/25"})
        );
        assert_eq!(
            j["Containers"]["c".repeat(64)]["IPv4Address"],
            "10.213.3.128/24"
        );
        assert_eq!(j["Internal"], true);
        assert_eq!(j["Labels"]["k"], "v");
        let e = ep.docker_json(&net);
        assert_eq!(e["IPAddress"], "10.213.3.128");
        assert_eq!(e["Gateway"], "");
        assert_eq!(e["MacAddress"], "02:42:0a:d5:03:80");
        assert_eq!(
            e["DNSNames"],
            serde_json::json!(["web", "www", "cccccccccccc"])
        );
    }
}
