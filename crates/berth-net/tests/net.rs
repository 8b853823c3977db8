//! Integration tests on real netns, bridges, veths and nftables (root required).
//!
//! Isolation: each test has its own random suffix, nft table `berthtest<sfx>`, bridges
//! `bt<sfx><n>`, namespaces `berthtest<sfx>-<n>` and /24 subnets of 10.213.0.0/16 claimed through
//! exclusive files under /run/berth-net-test-subnets. Traffic flows only between the host and these
//! namespaces. The fixture's Drop tears everything down and the leak check runs on every test.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_net::ipam::Subnet;
use berth_net::{
    netlink, Config, EndpointSpec, HostPort, IpamRequest, Manager, NetworkSpec, PortRequest, Proto,
};

fn rand_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Fixture {
    sfx: String,
    table: String,
    dir: tempfile::TempDir,
    mgr: Option<Manager>,
    netns: Vec<String>,
    claims: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        for tool in ["ip", "nft", "busybox"] {
            assert!(
                Command::new(tool)
                    .arg("--help")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok(),
                "{tool} is required"
            );
        }
        let sfx = rand_hex(3);
        let table = format!("berthtest{sfx}");
        let dir = tempfile::tempdir().unwrap();
        let mut f = Fixture {
            sfx,
            table,
            dir,
            mgr: None,
            netns: vec![],
            claims: vec![],
            children: vec![],
        };
        let mgr = Manager::open(f.config()).expect("open manager");
        f.mgr = Some(mgr);
        f
    }

    fn config(&self) -> Config {
        let mut c = Config::new(self.dir.path());
        c.table = self.table.clone();
        c.default_bridge = self.bridge(0);
        c.enable_ip_forward = false;
        c.dns_upstreams = Some(vec![]);
        c.pools = vec![];
        c
    }

    fn mgr(&self) -> &Manager {
        self.mgr.as_ref().unwrap()
    }

    fn bridge(&self, n: u32) -> String {
        format!("bt{}{n}", self.sfx)
    }

    /// Claims a free 10.213.X.0/24 across concurrently running tests.
    fn subnet(&mut self) -> Subnet {
        let dir = PathBuf::from("/run/berth-net-test-subnets");
        std::fs::create_dir_all(&dir).unwrap();
        let routes = ok(&["ip", "-4", "route", "show", "table", "all"]);
        let start = u8::from_str_radix(&rand_hex(1), 16).unwrap();
        for i in 0..=255u16 {
            let x = (u16::from(start) + i) % 250 + 2;
            let claim = dir.join(x.to_string());
            if routes.contains(&format!("10.213.{x}.")) {
                continue;
            }
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim)
                .is_ok()
            {
                self.claims.push(claim);
                return format!("10.213.{x}.0/24").parse().unwrap();
            }
        }
        panic!("no free test subnet in 10.213.0.0/16");
    }

    fn network(&mut self, n: u32, internal: bool, dns: bool) -> berth_net::Network {
        let subnet = self.subnet();
        let mut options = BTreeMap::new();
        options.insert("com.docker.network.bridge.name".to_string(), self.bridge(n));
        let spec = NetworkSpec {
            name: format!("net{}{n}", self.sfx),
            ipam: IpamRequest {
                subnet: Some(subnet),
                ..Default::default()
            },
            internal,
            options,
            dns,
            ..Default::default()
        };
        self.mgr().create_network(&spec).expect("create network")
    }

    fn netns(&mut self) -> (String, PathBuf) {
        let name = format!("berthtest{}-{}", self.sfx, self.netns.len());
        ok(&["ip", "netns", "add", &name]);
        self.netns.push(name.clone());
        (name.clone(), PathBuf::from(format!("/run/netns/{name}")))
    }

    fn spec(&self, id: &str, name: &str, ns: &std::path::Path) -> EndpointSpec {
        EndpointSpec {
            container_id: format!("{id}{}", self.sfx),
            name: name.into(),
            netns: ns.to_path_buf(),
            ..Default::default()
        }
    }

    /// Devices carrying this instance's ownership mark.
    fn owned_links(&self) -> Vec<String> {
        let prefix = format!("berth:{}:", self.table);
        let links = netlink::run_in(None, |h| async move { netlink::links(&h).await }).unwrap();
        links
            .into_iter()
            .filter(|l| {
                l.alias.as_deref().is_some_and(|a| a.starts_with(&prefix))
                    || l.name.starts_with(&format!("bt{}", self.sfx))
                    || l.name.starts_with(&format!("berthtest{}", self.sfx))
            })
            .map(|l| l.name)
            .collect()
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.children.push(cmd.spawn().expect("spawn in netns"));
    }

    /// Tears everything down and checks nothing is left.
    fn finish(mut self) {
        let mgr = self.mgr.take().unwrap();
        mgr.destroy().expect("destroy");
        for ns in std::mem::take(&mut self.netns) {
            ok(&["ip", "netns", "del", &ns]);
        }
        self.leak_check();
        let left = ok(&["ip", "netns", "list"]);
        assert!(
            !left.contains(&format!("berthtest{}", self.sfx)),
            "leaked netns: {left}"
        );
    }

    fn leak_check(&self) {
        assert!(
            self.owned_links().is_empty(),
            "leaked links: {:?}",
            self.owned_links()
        );
        assert!(
            !berth_net::firewall::table_exists(&self.table),
            "leaked nft table {}",
            self.table
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(m) = self.mgr.take() {
            let _ = m.destroy();
        }
        for ns in &self.netns {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        for l in self.owned_links() {
            let _ = sh(&["ip", "link", "del", &l]);
        }
        let _ = sh(&["nft", "delete", "table", "inet", &self.table]);
        for c in &self.claims {
            let _ = std::fs::remove_file(c);
        }
    }
}

fn ping(ns: &str, ip: Ipv4Addr) -> bool {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        &ip.to_string(),
    ])
    .status
    .success()
}

fn dns_query(server: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::new();
    m.set_id(7)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(&m.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 1500];
    let n = c.recv(&mut buf).expect("dns reply");
    let r = Message::from_vec(&buf[..n]).unwrap();
    r.answers()
        .iter()
        .filter_map(|a| {
            if let RData::A(ip) = a.data() {
                Some(ip.0)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn bridge_endpoints_ping_dns_disconnect() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let (ns1, p1) = f.netns();
    let (ns2, p2) = f.netns();
    let mut s1 = f.spec("c1", "web", &p1);
    s1.aliases = vec!["frontend".into()];
    s1.mac = Some("02:42:0a:d5:00:99".parse().unwrap());
    let e1 = f.mgr().connect(&net.name, &s1).expect("connect 1");
    let e2 = f
        .mgr()
        .connect(&net.id[..12], &f.spec("c2", "db", &p2))
        .expect("connect 2");
    assert_ne!(e1.ip, e2.ip);
    assert!(net.ipam.subnet.contains(e1.ip));

    // inside: eth0 with our MAC and address, lo up, default route via the gateway
    let addr = ok(&["ip", "-n", &ns1, "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("{}/24", e1.ip)), "{addr}");
    let link = ok(&["ip", "-n", &ns1, "link", "show", "eth0"]);
    assert!(link.contains("02:42:0a:d5:00:99"), "{link}");
    let route = ok(&["ip", "-n", &ns1, "route"]);
    assert!(
        route.contains(&format!("default via {}", net.ipam.gateway)),
        "{route}"
    );

    assert!(ping(&ns1, e2.ip), "container to container");
    assert!(ping(&ns2, net.ipam.gateway), "container to gateway");

    // DNS: names and aliases on the gateway, from the host and from inside a namespace
    let dns = SocketAddr::from((net.ipam.gateway, 53));
    assert_eq!(dns_query(dns, "web"), vec![e1.ip]);
    assert_eq!(dns_query(dns, "FRONTEND."), vec![e1.ip]);
    assert_eq!(dns_query(dns, "db"), vec![e2.ip]);
    assert_eq!(
        dns_query(dns, &format!("db.{}", net.name)),
        vec![e2.ip],
        "network-qualified name"
    );
    assert_eq!(
        dns_query(dns, &e2.container_id),
        vec![e2.ip],
        "(short) container id"
    );
    let out = ok(&[
        "ip",
        "netns",
        "exec",
        &ns2,
        "busybox",
        "nslookup",
        "frontend",
        &net.ipam.gateway.to_string(),
    ]);
    assert!(out.contains(&e1.ip.to_string()), "{out}");
    assert_eq!(f.mgr().dns_entries(&net.name).unwrap(), 2);

    // a second network on the same container: eth1, default route unchanged
    let net2 = f.network(2, false, true);
    let e3 = f
        .mgr()
        .connect(&net2.name, &f.spec("c1", "web", &p1))
        .expect("connect second network");
    assert_eq!(e3.ifname, "eth1");
    // names are network-scoped: net2's resolver knows web (on both) but not db (net1 only)
    let dns2 = SocketAddr::from((net2.ipam.gateway, 53));
    assert_eq!(dns_query(dns2, "web"), vec![e3.ip]);
    assert!(dns_query(dns2, "db").is_empty());
    let route = ok(&["ip", "-n", &ns1, "route"]);
    assert!(
        route.contains(&format!("default via {}", net.ipam.gateway)),
        "{route}"
    );
    assert!(
        f.mgr()
            .connect(&net2.name, &f.spec("c1", "web", &p1))
            .is_err(),
        "twice on one network"
    );

    // disconnect removes reachability, the veth, the name and the address
    f.mgr()
        .disconnect(&net.name, &e2.container_id)
        .expect("disconnect");
    assert!(!ping(&ns1, e2.ip));
    assert!(!ok(&["ip", "link"]).contains(&e2.host_veth));
    assert!(!ok(&["ip", "-n", &ns2, "link"]).contains("eth0"));
    assert!(dns_query(dns, "db").is_empty());
    assert!(!f
        .mgr()
        .network(&net.name)
        .unwrap()
        .ipam
        .allocated
        .contains(&e2.ip));
    assert!(f.mgr().remove_network(&net.name).is_err(), "network in use");
    f.mgr().disconnect_all(&e1.container_id).unwrap();
    f.mgr().remove_network(&net.name).unwrap();
    assert!(!ok(&["ip", "link"]).contains(&net.bridge));
    f.finish();
}

fn wget(ns: Option<&str>, url: &str) -> Option<String> {
    let mut args: Vec<&str> = vec![];
    if let Some(ns) = ns {
        args.extend(["ip", "netns", "exec", ns]);
    }
    args.extend([
        "busybox", "timeout", "5", "busybox", "wget", "-q", "-O", "-", url,
    ]);
    let o = sh(&args);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn published_ports_loopback_host_address_hairpin() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let (ns1, p1) = f.netns();
    let (ns2, p2) = f.netns();
    let www = f.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("hello {}\n", f.sfx)).unwrap();
    let mut s1 = f.spec("c1", "web", &p1);
    s1.ports = vec![
        PortRequest {
            host_ip: None,
            host_port: HostPort::Ephemeral,
            container_port: 80,
            proto: Proto::Tcp,
        },
        PortRequest {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: HostPort::Ephemeral,
            container_port: 80,
            proto: Proto::Tcp,
        },
    ];
    let e1 = f.mgr().connect(&net.name, &s1).expect("connect");
    f.mgr()
        .connect(&net.name, &f.spec("c2", "client", &p2))
        .expect("connect 2");
    let www_s = www.to_str().unwrap().to_string();
    f.spawn_in(&ns1, &["busybox", "httpd", "-f", "-p", "80", "-h", &www_s]);
    let want = format!("hello {}\n", f.sfx);
    assert!(
        wait_for(
            || wget(Some(&ns2), &format!("http://{}/", e1.ip)).as_deref() == Some(want.as_str())
        ),
        "httpd up"
    );

    let (all, lo) = (e1.ports[0].host_port, e1.ports[1].host_port);
    // from the host's loopback (route_localnet + masquerade)
    assert_eq!(
        wget(None, &format!("http://127.0.0.1:{all}/")).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(
        wget(None, &format!("http://127.0.0.1:{lo}/")).as_deref(),
        Some(want.as_str())
    );
    // from the host's bridge-facing address; the 127.0.0.1-only mapping is not published there
    let gw = net.ipam.gateway;
    assert_eq!(
        wget(None, &format!("http://{gw}:{all}/")).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(wget(None, &format!("http://{gw}:{lo}/")), None);
    // hairpin: the container reaches its own published port, and a neighbour does too
    assert_eq!(
        wget(Some(&ns1), &format!("http://{gw}:{all}/")).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(
        wget(Some(&ns2), &format!("http://{gw}:{all}/")).as_deref(),
        Some(want.as_str())
    );
    // the port is held: a fixed request for it conflicts
    let mut s3 = f.spec("c3", "other", &p2);
    s3.ports = vec![PortRequest {
        host_ip: None,
        host_port: HostPort::Fixed(all),
        container_port: 80,
        proto: Proto::Tcp,
    }];
    let err = f.mgr().connect(&net.name, &s3).unwrap_err();
    assert_eq!(err.kind(), berth_core::ErrorKind::Conflict, "{err}");
    // after disconnect the rule is gone
    f.mgr().disconnect(&net.name, &e1.container_id).unwrap();
    assert_eq!(wget(None, &format!("http://127.0.0.1:{all}/")), None);
    let rules = ok(&["nft", "list", "chain", "inet", &f.table, "ports"]);
    assert!(!rules.contains("dnat"), "{rules}");
    f.finish();
}

#[test]
fn isolation_between_networks_and_internal() {
    let mut f = Fixture::new();
    let a = f.network(1, false, false);
    let c = f.network(2, false, false);
    let b = f.network(3, true, true);
    let (nsa, pa) = f.netns();
    let (nsc, pc) = f.netns();
    let (nsb, pb) = f.netns();
    let ea = f.mgr().connect(&a.name, &f.spec("ca", "a", &pa)).unwrap();
    let ec = f.mgr().connect(&c.name, &f.spec("cc", "c", &pc)).unwrap();
    let eb = f.mgr().connect(&b.name, &f.spec("cb", "b", &pb)).unwrap();
    // routing works (the other bridge's gateway is a host address) ...
    assert!(ping(&nsa, c.ipam.gateway));
    // ... but forwarding between berth bridges is dropped
    assert!(!ping(&nsa, ec.ip), "isolation a -> c");
    assert!(!ping(&nsc, ea.ip), "isolation c -> a");
    // internal: no default route, nothing forwarded out even with a route
    assert_eq!(eb.gateway, None);
    assert!(!ok(&["ip", "-n", &nsb, "route"]).contains("default"));
    let (_nsd, pd) = f.netns();
    let mut sd = f.spec("cd", "d", &pd);
    sd.ports = berth_net::ports::parse_publish("127.0.0.1::80").unwrap();
    let ed = f
        .mgr()
        .connect(&b.name, &sd)
        .expect("-p on an internal network is accepted");
    assert!(ed.ports.is_empty(), "and publishes nothing");
    assert!(!ping(&nsb, ea.ip), "internal -> other bridge");
    ok(&[
        "ip",
        "-n",
        &nsb,
        "route",
        "add",
        "default",
        "via",
        &b.ipam.gateway.to_string(),
    ]);
    assert!(!ping(&nsb, ea.ip), "internal -> other bridge with a route");
    // internal networks still resolve names through the gateway resolver
    assert_eq!(
        dns_query(SocketAddr::from((b.ipam.gateway, 53)), "b"),
        vec![eb.ip]
    );
    // control: without berth's forward rules, a reaches c, so the drop was ours
    ok(&["nft", "flush", "chain", "inet", &f.table, "forward"]);
    assert!(
        ping(&nsa, ec.ip),
        "control: forwarding works without isolation rules"
    );
    f.finish();
}

#[test]
fn rollback_on_failure_leaves_nothing() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let (_ns, p) = f.netns();
    // the namespace is missing
    let mut bad = f.spec(
        "c1",
        "x",
        &PathBuf::from(format!("/run/netns/berthtest{}-missing", f.sfx)),
    );
    assert_eq!(
        f.mgr().connect(&net.name, &bad).unwrap_err().kind(),
        berth_core::ErrorKind::NotFound
    );
    // failure inside the namespace (rename onto an existing "lo") after the veth exists
    bad = f.spec("c1", "x", &p);
    bad.ifname = Some("lo".into());
    assert!(f.mgr().connect(&net.name, &bad).is_err());
    // a static address outside the subnet
    bad = f.spec("c1", "x", &p);
    bad.ip = Some(Ipv4Addr::new(10, 212, 0, 5));
    assert_eq!(
        f.mgr().connect(&net.name, &bad).unwrap_err().kind(),
        berth_core::ErrorKind::InvalidInput
    );
    let n = f.mgr().network(&net.name).unwrap();
    assert!(
        n.ipam.allocated.is_empty(),
        "addresses released: {:?}",
        n.ipam.allocated
    );
    let links = f.owned_links();
    assert_eq!(links, vec![net.bridge.clone()], "only the bridge remains");
    assert_eq!(f.mgr().dns_entries(&net.name).unwrap(), 0);
    // the good path still works afterwards with the static address
    let mut good = f.spec("c1", "x", &p);
    good.ip = Some(n.ipam.subnet.nth(10).unwrap());
    assert_eq!(
        f.mgr().connect(&net.name, &good).unwrap().ip,
        n.ipam.subnet.nth(10).unwrap()
    );
    // duplicate network name, overlapping subnet
    let dup = NetworkSpec {
        name: net.name.clone(),
        ..Default::default()
    };
    assert_eq!(
        f.mgr().create_network(&dup).unwrap_err().kind(),
        berth_core::ErrorKind::Conflict
    );
    let overlap = NetworkSpec {
        name: format!("ov{}", f.sfx),
        ipam: IpamRequest {
            subnet: Some(net.ipam.subnet),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        f.mgr().create_network(&overlap).unwrap_err().kind(),
        berth_core::ErrorKind::Conflict
    );
    f.finish();
}

#[test]
fn reconcile_after_crash() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let (ns1, p1) = f.netns();
    let (_ns2, p2) = f.netns();
    let mut s1 = f.spec("c1", "a", &p1);
    s1.ports = vec![PortRequest {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: HostPort::Ephemeral,
        container_port: 80,
        proto: Proto::Tcp,
    }];
    let e1 = f.mgr().connect(&net.name, &s1).unwrap();
    let e2 = f.mgr().connect(&net.name, &f.spec("c2", "b", &p2)).unwrap();
    // "crash": the manager goes away without teardown; container 1 dies meanwhile
    drop(f.mgr.take());
    ok(&["ip", "netns", "del", &ns1]);
    f.netns.retain(|n| n != &ns1);
    // a stray device carrying our mark for an endpoint the store never knew
    let stray = format!("bt{}s", f.sfx);
    ok(&["ip", "link", "add", &stray, "type", "bridge"]);
    ok(&[
        "ip",
        "link",
        "set",
        &stray,
        "alias",
        &format!("berth:{}:ep:{}", f.table, "0".repeat(64)),
    ]);
    f.mgr = Some(Manager::open(f.config()).expect("reopen"));
    assert!(
        f.mgr().startup_errors().is_empty(),
        "{:?}",
        f.mgr().startup_errors()
    );
    let eps = f.mgr().endpoints(&net.name).unwrap();
    assert_eq!(
        eps.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![e2.id.clone()],
        "dead endpoint released"
    );
    assert!(!f
        .mgr()
        .network(&net.name)
        .unwrap()
        .ipam
        .allocated
        .contains(&e1.ip));
    assert!(
        !ok(&["ip", "link"]).contains(&stray),
        "stray device removed"
    );
    let rules = ok(&["nft", "list", "chain", "inet", &f.table, "ports"]);
    assert!(
        !rules.contains(&e1.ip.to_string()),
        "dead endpoint's rule removed: {rules}"
    );
    assert_eq!(
        dns_query(SocketAddr::from((net.ipam.gateway, 53)), "b"),
        vec![e2.ip],
        "resolver restarted with survivors"
    );
    assert!(dns_query(SocketAddr::from((net.ipam.gateway, 53)), "a").is_empty());
    // the store lost (e.g. a new data root): the network's bridge is an orphan and goes
    drop(f.mgr.take());
    std::fs::remove_file(f.dir.path().join("networks.json")).unwrap();
    f.mgr = Some(Manager::open(f.config()).expect("reopen empty"));
    assert!(
        f.owned_links().is_empty(),
        "orphans removed: {:?}",
        f.owned_links()
    );
    f.finish();
}

/// Create/remove cycles for the leak test; every other cycle publishes a port. The issue asks
/// 1000: a cycle costs 35-80 ms on a loaded 2-core machine (veth deletion waits for an RCU grace
/// period), so the default stays under a minute; `BERTH_NET_STRESS_CYCLES=1000` runs the full count.
const CYCLES: usize = 200;

#[test]
fn stress_endpoint_cycles_leak_nothing() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let (_ns, p) = f.netns();
    let cycles: usize = std::env::var("BERTH_NET_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES);
    let t = Instant::now();
    let (mut with_ports, mut without, mut disc): (Vec<Duration>, Vec<Duration>, Vec<Duration>) =
        (vec![], vec![], vec![]);
    for i in 0..cycles {
        let mut s = f.spec("c", "svc", &p);
        s.aliases = vec!["alias".into()];
        if i % 2 == 0 {
            s.ports = vec![PortRequest {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: HostPort::Ephemeral,
                container_port: 80,
                proto: Proto::Tcp,
            }];
        }
        let t0 = Instant::now();
        let e = f
            .mgr()
            .connect(&net.name, &s)
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        if s.ports.is_empty() {
            &mut without
        } else {
            &mut with_ports
        }
        .push(t0.elapsed());
        assert_eq!(f.mgr().dns_entries(&net.name).unwrap(), 1);
        let t1 = Instant::now();
        f.mgr()
            .disconnect(&net.name, &e.container_id)
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        disc.push(t1.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "median connect without ports {:?}, with a published port {:?}, disconnect {:?}",
        median(&mut without),
        median(&mut with_ports),
        median(&mut disc)
    );
    let per = t.elapsed() / cycles as u32;
    eprintln!(
        "{cycles} connect/disconnect cycles in {:?} ({per:?} per cycle)",
        t.elapsed()
    );
    assert_eq!(f.owned_links(), vec![net.bridge.clone()]);
    assert_eq!(f.mgr().dns_entries(&net.name).unwrap(), 0);
    assert!(f
        .mgr()
        .network(&net.name)
        .unwrap()
        .ipam
        .allocated
        .is_empty());
    assert!(!ok(&["nft", "list", "chain", "inet", &f.table, "ports"]).contains("dnat"));
    let addrs = ok(&["ip", "-n", &f.netns[0], "-o", "addr"]);
    assert!(
        !addrs.contains("10.213."),
        "no address left in the namespace: {addrs}"
    );
    f.finish();
}

#[test]
fn dns_relays_unknown_names_upstream_with_deadline() {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let mut f = Fixture::new();
    // the "host's resolver": a fake upstream on another test bridge's gateway (not loopback)
    let up = f.network(2, false, false);
    let upstream = UdpSocket::bind((up.ipam.gateway, 53)).expect("bind fake upstream");
    let answer = Ipv4Addr::new(10, 213, 250, 250);
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        upstream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // answer the first query, stay silent on the second
        let (n, peer) = upstream.recv_from(&mut buf).expect("relayed query");
        let q = Message::from_vec(&buf[..n]).unwrap();
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .add_query(q.queries()[0].clone());
        r.add_answer(Record::from_rdata(
            q.queries()[0].name().clone(),
            60,
            RData::A(A(answer)),
        ));
        upstream.send_to(&r.to_vec().unwrap(), peer).unwrap();
        let _ = upstream.recv_from(&mut buf);
    });
    let mut cfg = f.config();
    cfg.dns_upstreams = Some(vec![up.ipam.gateway.into(), "127.0.0.1".parse().unwrap()]);
    drop(f.mgr.take());
    f.mgr = Some(Manager::open(cfg).unwrap());
    let net = f.network(1, false, true);
    let dns = SocketAddr::from((net.ipam.gateway, 53));
    assert_eq!(
        dns_query(dns, "example.test"),
        vec![answer],
        "relayed through the upstream"
    );
    // a silent upstream: SERVFAIL after the 2 s deadline, before a client's 5 s timeout
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new();
    m.set_id(9).add_query(Query::query(
        Name::from_ascii("silent.test").unwrap(),
        RecordType::A,
    ));
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    c.send_to(&m.to_vec().unwrap(), dns).unwrap();
    let mut buf = [0u8; 1500];
    let n = c
        .recv(&mut buf)
        .expect("an answer before the client's timeout");
    assert_eq!(
        Message::from_vec(&buf[..n]).unwrap().response_code(),
        ResponseCode::ServFail
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4500),
        "{took:?}"
    );
    server.join().unwrap();
    f.finish();
}

#[test]
fn udp_port_and_teardown_after_namespace_died() {
    let mut f = Fixture::new();
    let net = f.network(1, false, false);
    let (ns1, p1) = f.netns();
    let mut s = f.spec("c1", "u", &p1);
    s.ports = berth_net::ports::parse_publish("127.0.0.1::5353/udp").unwrap();
    let e = f.mgr().connect(&net.name, &s).unwrap();
    assert_eq!(e.ports[0].proto, Proto::Udp);
    // a UDP sink inside the namespace (Debian's busybox nc has no -u): a thread that joined it
    let (tx, rx) = std::sync::mpsc::channel();
    let nspath = p1.clone();
    let sink = std::thread::spawn(move || {
        let fd = std::fs::File::open(&nspath).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        tx.send(()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        s.recv_from(&mut buf)
            .map(|(n, from)| (buf[..n].to_vec(), from))
    });
    rx.recv().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"ping-udp", ("127.0.0.1", e.ports[0].host_port))
        .unwrap();
    let (data, from) = sink
        .join()
        .unwrap()
        .expect("UDP datagram reached the container through 127.0.0.1");
    assert_eq!(data, b"ping-udp");
    assert_eq!(
        from.ip(),
        std::net::IpAddr::V4(net.ipam.gateway),
        "loopback clients are masqueraded to the gateway"
    );
    // the container dies first; teardown must not need its namespace
    ok(&["ip", "netns", "del", &ns1]);
    f.netns.clear();
    f.mgr()
        .disconnect_all(&e.container_id)
        .expect("disconnect after the namespace died");
    assert!(f
        .mgr()
        .network(&net.name)
        .unwrap()
        .ipam
        .allocated
        .is_empty());
    assert!(!ok(&["nft", "list", "chain", "inet", &f.table, "ports"]).contains("dnat"));
    f.finish();
}

#[test]
fn default_bridge_mtu_labels_prune() {
    let mut f = Fixture::new();
    let sub = f.subnet();
    let mut cfg = f.config();
    cfg.default_subnet = Some(sub);
    drop(f.mgr.take());
    f.mgr = Some(Manager::open(cfg).unwrap());
    let def = f.mgr().ensure_default().expect("default bridge");
    assert_eq!(
        (
            def.name.as_str(),
            def.bridge.clone(),
            def.ipam.subnet,
            def.dns
        ),
        ("bridge", f.bridge(0), sub, false)
    );
    assert_eq!(f.mgr().ensure_default().unwrap().id, def.id, "idempotent");
    let link = ok(&["ip", "-o", "addr", "show", "dev", &f.bridge(0)]);
    assert!(link.contains(&format!("{}/24", def.ipam.gateway)), "{link}");

    // MTU and labels through Docker's options
    let subnet = f.subnet();
    let mut options = BTreeMap::new();
    options.insert("com.docker.network.bridge.name".to_string(), f.bridge(1));
    options.insert(
        "com.docker.network.driver.mtu".to_string(),
        "1280".to_string(),
    );
    let mut labels = BTreeMap::new();
    labels.insert("com.example.team".to_string(), "net".to_string());
    let spec = NetworkSpec {
        name: format!("mtu{}", f.sfx),
        ipam: IpamRequest {
            subnet: Some(subnet),
            gateway: Some(subnet.nth(254).unwrap()),
            ip_range: Some(format!("{}/28", subnet.nth(32).unwrap()).parse().unwrap()),
        },
        labels: labels.clone(),
        options,
        dns: true,
        ..Default::default()
    };
    let net = f.mgr().create_network(&spec).unwrap();
    assert_eq!((net.mtu, net.labels.clone()), (Some(1280), labels));
    assert!(ok(&["ip", "link", "show", &f.bridge(1)]).contains("mtu 1280"));
    let (ns, p) = f.netns();
    let e = f.mgr().connect(&net.name, &f.spec("c1", "m", &p)).unwrap();
    assert_eq!(e.ip, subnet.nth(32).unwrap(), "first address of --ip-range");
    assert_eq!(e.gateway, Some(subnet.nth(254).unwrap()));
    assert!(ok(&["ip", "-n", &ns, "link", "show", "eth0"]).contains("mtu 1280"));
    assert!(ok(&["ip", "link", "show", &e.host_veth]).contains("mtu 1280"));
    assert!(ping(&ns, subnet.nth(254).unwrap()));
    // the state survives a reopen as data
    drop(f.mgr.take());
    let mut cfg = f.config();
    cfg.default_subnet = Some(sub);
    f.mgr = Some(Manager::open(cfg).unwrap());
    assert_eq!(f.mgr().network(&net.name).unwrap(), {
        let mut n = net.clone();
        n.ipam.allocated.insert(e.ip);
        n
    });
    // prune keeps the default bridge and networks in use
    let empty = f.network(2, false, false);
    let pruned = f.mgr().prune().unwrap();
    assert_eq!(pruned, vec![empty.name.clone()]);
    assert!(f.mgr().network("bridge").is_ok() && f.mgr().network(&net.name).is_ok());
    f.finish();
}

/// The iptables fallback, exercised inside a test namespace (its tables are the namespace's own,
/// so the host's firewall is never touched).
#[test]
fn iptables_fallback_in_a_namespace() {
    use berth_net::firewall::{FwNetwork, FwPort, Ruleset};
    use berth_net::PortMapping;
    let mut f = Fixture::new();
    let (_ns, p) = f.netns();
    let table = f.table.clone();
    let res = std::thread::spawn(move || -> Result<(), String> {
        let fd = std::fs::File::open(&p).unwrap();
        rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&fd), Some(rustix::thread::LinkNameSpaceType::Network)).unwrap();
        let rules = Ruleset {
            networks: vec![
                FwNetwork { bridge: "bta".into(), subnet: "10.213.1.0/24".parse().unwrap(), internal: false },
                FwNetwork { bridge: "btb".into(), subnet: "10.213.2.0/24".parse().unwrap(), internal: true },
            ],
            ports: vec![FwPort {
                container_ip: Ipv4Addr::new(10, 213, 1, 2),
                mapping: PortMapping { host_ip: Some(Ipv4Addr::LOCALHOST), host_port: 8080, container_port: 80, proto: Proto::Tcp },
            }],
        };
        let save = || String::from_utf8_lossy(&Command::new("iptables-save").output().unwrap().stdout).into_owned();
        berth_net::iptables::apply(&table, &rules).map_err(|e| e.to_string())?;
        // a rule the host's admin put into the user chain survives re-applies
        assert!(Command::new("iptables").args(["-A", &format!("{table}-USER"), "-s", "10.213.9.9/32", "-j", "DROP"]).status().unwrap().success());
        berth_net::iptables::apply(&table, &rules).map_err(|e| e.to_string())?;
        let s = save();
        assert_eq!(s.matches(&format!("-A FORWARD -j {table}-FWD")).count(), 1, "one jump after two applies:\n{s}");
        assert!(s.contains(&format!("-A {table}-PORTS -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.213.1.2:80")), "{s}");
        assert!(s.contains(&format!("-A {table}-USER -s 10.213.9.9/32 -j DROP")), "user rule kept:\n{s}");
        assert!(s.contains(&format!("-A {table}-FWD -i btb ! -o btb -j DROP")), "{s}");
        berth_net::iptables::apply(&table, &Ruleset::default()).map_err(|e| e.to_string())?;
        assert!(!save().contains("DNAT"), "rules replaced");
        berth_net::iptables::delete(&table).map_err(|e| e.to_string())?;
        let s = save();
        assert!(!s.contains(&table), "nothing left:\n{s}");
        Ok(())
    })
    .join()
    .unwrap();
    res.expect("iptables fallback");
    f.finish();
}

/// Cost of networking per container start, measured as the engine would pay it: 20 containers
/// (fresh namespaces) connected one after another, none torn down in between.
#[test]
fn connect_cost_per_container() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let mut plain = vec![];
    let mut ported = vec![];
    for i in 0..20 {
        let (_ns, p) = f.netns();
        let mut s = f.spec(&format!("k{i}"), &format!("n{i}"), &p);
        if i % 2 == 1 {
            s.ports = berth_net::ports::parse_publish("127.0.0.1::80").unwrap();
        }
        let t = Instant::now();
        f.mgr().connect(&net.name, &s).unwrap();
        if i % 2 == 1 { &mut ported } else { &mut plain }.push(t.elapsed());
    }
    plain.sort();
    ported.sort();
    eprintln!(
        "connect per container: median {:?} without ports, {:?} with one published port",
        plain[plain.len() / 2],
        ported[ported.len() / 2]
    );
    assert_eq!(f.mgr().endpoints(&net.name).unwrap().len(), 20);
    f.finish();
}

/// A published port reached from another interface: a namespace standing for an outside
/// machine, wired to the host by its own veth (prerouting DNAT and forwarding); a
/// 127.0.0.1-only mapping stays unreachable from there.
#[test]
fn published_port_from_another_interface() {
    let mut f = Fixture::new();
    let net = f.network(1, false, false);
    let (ns1, p1) = f.netns();
    let (ext, _) = f.netns();
    let link = f.subnet();
    let (host_ip, ext_ip) = (link.nth(1).unwrap(), link.nth(2).unwrap());
    let (hx, ey) = (format!("bt{}x", f.sfx), format!("bt{}y", f.sfx));
    ok(&[
        "ip", "link", "add", &hx, "type", "veth", "peer", "name", &ey, "netns", &ext,
    ]);
    ok(&["ip", "addr", "add", &format!("{host_ip}/24"), "dev", &hx]);
    ok(&["ip", "link", "set", &hx, "up"]);
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{hx}/forwarding"), "1").unwrap();
    ok(&[
        "ip",
        "-n",
        &ext,
        "addr",
        "add",
        &format!("{ext_ip}/24"),
        "dev",
        &ey,
    ]);
    ok(&["ip", "-n", &ext, "link", "set", &ey, "up"]);
    ok(&["ip", "-n", &ext, "link", "set", "lo", "up"]);

    let www = f.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "outside\n").unwrap();
    let mut s1 = f.spec("c1", "web", &p1);
    s1.ports = berth_net::ports::parse_publish("80").unwrap();
    s1.ports
        .extend(berth_net::ports::parse_publish("127.0.0.1::80").unwrap());
    let e1 = f.mgr().connect(&net.name, &s1).unwrap();
    let www_s = www.to_str().unwrap().to_string();
    f.spawn_in(
        &ns1,
        &["busybox", "httpd", "-f", "-vv", "-p", "80", "-h", &www_s],
    );
    let url = format!("http://{host_ip}:{}/", e1.ports[0].host_port);
    assert!(
        wait_for(|| wget(Some(&ext), &url).as_deref() == Some("outside\n")),
        "published port reachable from another interface"
    );
    assert_eq!(
        wget(
            Some(&ext),
            &format!("http://{host_ip}:{}/", e1.ports[1].host_port)
        ),
        None,
        "loopback-only mapping"
    );
    ok(&["ip", "link", "del", &hx]);
    f.finish();
}

/// Containers connecting at the same time: the links are set up outside the manager's lock,
/// so addresses and interface names must still never collide.
#[test]
fn concurrent_connects_and_disconnects() {
    let mut f = Fixture::new();
    let net = f.network(1, false, true);
    let specs: Vec<EndpointSpec> = (0..8)
        .map(|i| {
            let (_ns, p) = f.netns();
            let mut s = f.spec(&format!("p{i}"), &format!("par{i}"), &p);
            if i % 2 == 0 {
                s.ports = berth_net::ports::parse_publish("127.0.0.1::80").unwrap();
            }
            s
        })
        .collect();
    let mgr = f.mgr();
    let eps: Vec<berth_net::Endpoint> = std::thread::scope(|sc| {
        let hs: Vec<_> = specs
            .iter()
            .map(|s| sc.spawn(|| mgr.connect(&net.name, s)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().expect("parallel connect"))
            .collect()
    });
    let mut ips: Vec<Ipv4Addr> = eps.iter().map(|e| e.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "distinct addresses");
    assert_eq!(f.mgr().dns_entries(&net.name).unwrap(), 8);
    let rules = ok(&["nft", "list", "chain", "inet", &f.table, "ports"]);
    assert_eq!(rules.matches("dnat").count(), 4, "{rules}");
    assert!(ping(&f.netns[0].clone(), eps[7].ip));
    std::thread::scope(|sc| {
        for e in &eps {
            sc.spawn(|| {
                mgr.disconnect(&net.name, &e.container_id)
                    .expect("parallel disconnect")
            });
        }
    });
    assert_eq!(f.owned_links(), vec![net.bridge.clone()]);
    assert!(f
        .mgr()
        .network(&net.name)
        .unwrap()
        .ipam
        .allocated
        .is_empty());
    assert!(!ok(&["nft", "list", "chain", "inet", &f.table, "ports"]).contains("dnat"));
    f.finish();
}

/// A container's own `--dns` servers: the resolver relays that container's queries there,
/// while everybody else gets the network's upstreams (none here: SERVFAIL at once).
#[test]
fn dns_relays_to_the_containers_own_servers() {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let mut f = Fixture::new();
    let up = f.network(2, false, false);
    let upstream = UdpSocket::bind((up.ipam.gateway, 53)).expect("bind fake upstream");
    let answer = Ipv4Addr::new(10, 213, 251, 251);
    let server = std::thread::spawn(move || {
        // answer every query (A with `answer`, others empty) until idle for a second
        let mut buf = [0u8; 1500];
        upstream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut answered = 0;
        while let Ok((n, peer)) = upstream.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .add_query(q.queries()[0].clone());
            if q.queries()[0].query_type() == hickory_proto::rr::RecordType::A {
                r.add_answer(Record::from_rdata(
                    q.queries()[0].name().clone(),
                    60,
                    RData::A(A(answer)),
                ));
            }
            upstream.send_to(&r.to_vec().unwrap(), peer).unwrap();
            answered += 1;
        }
        answered
    });
    let net = f.network(1, false, true);
    let (ns, p) = f.netns();
    let mut s = f.spec("c1", "own", &p);
    s.dns_servers = vec![up.ipam.gateway.into()];
    f.mgr().connect(&net.name, &s).unwrap();
    let out = ok(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "busybox",
        "nslookup",
        "example.test",
        &net.ipam.gateway.to_string(),
    ]);
    assert!(out.contains(&answer.to_string()), "{out}");
    assert!(server.join().unwrap() >= 1);
    let t = Instant::now();
    assert!(dns_query(SocketAddr::from((net.ipam.gateway, 53)), "example.test").is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "no upstream: immediate SERVFAIL"
    );
    f.finish();
}

/// A network whose last setup step fails (its resolver cannot bind) is rolled back entirely:
/// no bridge, no rules, nothing in the store.
#[test]
fn create_network_rolls_back_when_dns_cannot_bind() {
    let mut f = Fixture::new();
    let taken = UdpSocket::bind("0.0.0.0:0").unwrap();
    let mut cfg = f.config();
    cfg.dns_port = taken.local_addr().unwrap().port();
    drop(f.mgr.take());
    f.mgr = Some(Manager::open(cfg).unwrap());
    let subnet = f.subnet();
    let mut options = BTreeMap::new();
    options.insert("com.docker.network.bridge.name".to_string(), f.bridge(1));
    let spec = NetworkSpec {
        name: format!("rb{}", f.sfx),
        ipam: IpamRequest {
            subnet: Some(subnet),
            ..Default::default()
        },
        options,
        dns: true,
        ..Default::default()
    };
    let err = f.mgr().create_network(&spec).unwrap_err();
    assert!(err.to_string().contains("bind DNS resolver"), "{err}");
    assert!(f.mgr().networks().is_empty());
    assert!(f.owned_links().is_empty(), "{:?}", f.owned_links());
    let table = ok(&["nft", "list", "table", "inet", &f.table]);
    assert!(!table.contains(&f.bridge(1)), "{table}");
    // the same request without DNS goes through afterwards
    let net = f
        .mgr()
        .create_network(&NetworkSpec { dns: false, ..spec })
        .unwrap();
    assert_eq!(net.ipam.subnet, subnet);
    f.finish();
}
