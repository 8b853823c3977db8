//! The embedded DNS resolver of a user-defined network.
//!
//! Where it listens: on the network's gateway address, port 53, in the host's namespace (one
//! resolver per network, like podman's aardvark-dns), chosen over Docker's 127.0.0.11 inside each
//! container: no thread or socket per container, no per-container NAT rules, and it keeps working
//! for `--internal` networks since the gateway is on the bridge itself. Containers get
//! `nameserver <gateway>` in their resolv.conf.
//!
//! It answers A queries for the names, aliases and short ids of the network's endpoints (AAAA
//! for those names gets an empty answer, so clients do not wait), and relays everything else to
//! the upstream servers with a 2 s deadline, shorter than the clients' 5 s default, so a dead
//! upstream yields SERVFAIL before the client gives up.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::error::{NetError, Result};

/// Upstream deadline (shorter than glibc's 5 s default).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Relayed queries in flight at once; beyond that queries are dropped (clients retry).
const MAX_INFLIGHT: usize = 64;
const TTL: u32 = 600;

/// Names served by one resolver: endpoint id -> (names, address).
#[derive(Default, Debug)]
pub struct Records {
    entries: HashMap<String, (Vec<String>, Ipv4Addr)>,
    /// Per-endpoint upstreams (the container's `--dns`), keyed like `entries`.
    servers: HashMap<String, Vec<SocketAddr>>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Records {
    /// Adds or replaces the names of endpoint `key`.
    pub fn set(&mut self, key: &str, names: &[String], ip: Ipv4Addr) {
        let names = names
            .iter()
            .map(|n| norm(n))
            .filter(|n| !n.is_empty())
            .collect();
        self.entries.insert(key.to_string(), (names, ip));
    }

    /// Removes endpoint `key`'s names.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.servers.remove(key);
    }

    /// Sets endpoint `key`'s own upstream servers (its `--dns`); loopback ones are ignored.
    pub fn set_upstreams(&mut self, key: &str, servers: &[IpAddr]) {
        let v: Vec<SocketAddr> = servers
            .iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        if v.is_empty() {
            self.servers.remove(key);
        } else {
            self.servers.insert(key.to_string(), v);
        }
    }

    /// The upstreams for a query from `client`: its endpoint's own, if it has some.
    pub fn upstreams_for(&self, client: IpAddr) -> Option<Vec<SocketAddr>> {
        let IpAddr::V4(c) = client else { return None };
        self.entries
            .iter()
            .find(|(k, (_, ip))| *ip == c && self.servers.contains_key(*k))
            .and_then(|(k, _)| self.servers.get(k).cloned())
    }

    /// Number of endpoints with names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no endpoint has names.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses for `name` (case-insensitive, trailing dot ignored), sorted.
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        let n = norm(name);
        let mut ips: Vec<Ipv4Addr> = self
            .entries
            .values()
            .filter(|(names, _)| names.contains(&n))
            .map(|(_, ip)| *ip)
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send this reply.
    Reply(Vec<u8>),
    /// Relay the query upstream.
    Forward,
    /// Ignore (not a query, or unparsable).
    Drop,
}

/// Decides on one query packet against `records` (pure; unit-tested).
pub fn decide(packet: &[u8], records: &Records) -> Decision {
    let Ok(req) = Message::from_vec(packet) else {
        return Decision::Drop;
    };
    if req.message_type() != MessageType::Query {
        return Decision::Drop;
    }
    let Some(q) = req.queries().first() else {
        return Decision::Drop;
    };
    let ips = records.lookup(&q.name().to_ascii());
    if ips.is_empty() {
        return Decision::Forward;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(q.clone());
    if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
        for ip in ips {
            resp.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
        }
    }
    match resp.to_vec() {
        Ok(v) => Decision::Reply(v),
        Err(_) => Decision::Drop,
    }
}

fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::ServFail);
    for q in req.queries() {
        resp.add_query(q.clone());
    }
    resp.to_vec().ok()
}

/// A running resolver; dropping it stops it.
pub struct DnsServer {
    records: Arc<RwLock<Records>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    tcp_thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl DnsServer {
    /// Binds `bind` (UDP, and TCP on the same port for clients retrying truncated answers) and
    /// starts serving; `upstreams` get everything not known locally.
    pub fn start(bind: SocketAddrV4, upstreams: Vec<IpAddr>) -> Result<DnsServer> {
        let sock = UdpSocket::bind(bind)
            .map_err(|e| NetError::io(format!("bind DNS resolver on {bind}"), e))?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| NetError::io("set DNS socket timeout", e))?;
        let addr = sock
            .local_addr()
            .map_err(|e| NetError::io("DNS socket address", e))?;
        let records = Arc::new(RwLock::new(Records::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        let upstreams: Vec<SocketAddr> = upstreams
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let listener = TcpListener::bind(addr)
            .map_err(|e| NetError::io(format!("bind DNS resolver on tcp {addr}"), e))?;
        let upstreams = Arc::new(upstreams);
        let (tr, ts, tu) = (records.clone(), stop.clone(), upstreams.clone());
        let tcp_thread = std::thread::Builder::new()
            .name(format!("berth-dns-tcp-{bind}"))
            .spawn(move || serve_tcp(listener, tr, ts, tu))
            .map_err(|e| NetError::io("spawn DNS thread", e))?;
        let mut srv = DnsServer {
            records,
            stop,
            thread: None,
            tcp_thread: Some(tcp_thread),
            addr,
        };
        let thread = std::thread::Builder::new()
            .name(format!("berth-dns-{bind}"))
            .spawn(move || serve(sock, r, s, upstreams))
            .map_err(|e| NetError::io("spawn DNS thread", e))?;
        srv.thread = Some(thread);
        Ok(srv)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds or replaces an endpoint's names.
    pub fn set(&self, key: &str, names: &[String], ip: Ipv4Addr) {
        if let Ok(mut r) = self.records.write() {
            r.set(key, names, ip);
        }
    }

    /// Sets an endpoint's own upstream servers (its `--dns`), used for its queries.
    pub fn set_upstreams(&self, key: &str, servers: &[IpAddr]) {
        if let Ok(mut r) = self.records.write() {
            r.set_upstreams(key, servers);
        }
    }

    /// Removes an endpoint's names.
    pub fn remove(&self, key: &str) {
        if let Ok(mut r) = self.records.write() {
            r.remove(key);
        }
    }

    /// Number of endpoints with names.
    pub fn len(&self) -> usize {
        self.records.read().map(|r| r.len()).unwrap_or(0)
    }

    /// Whether no endpoint has names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the receiver now rather than at its next read timeout
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0)) {
            let _ = s.send_to(&[], self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in [self.thread.take(), self.tcp_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

fn serve_tcp(
    listener: TcpListener,
    records: Arc<RwLock<Records>>,
    stop: Arc<AtomicBool>,
    upstreams: Arc<Vec<SocketAddr>>,
) {
    let inflight = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        if inflight.load(Ordering::SeqCst) >= MAX_INFLIGHT {
            continue;
        }
        inflight.fetch_add(1, Ordering::SeqCst);
        let (r, u, counter) = (records.clone(), upstreams.clone(), inflight.clone());
        let spawned = std::thread::Builder::new()
            .name("berth-dns-tcp-conn".into())
            .spawn(move || {
                let _ = tcp_conn(conn, &r, u);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            inflight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_frame(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len =
        u16::try_from(msg.len()).map_err(|_| std::io::Error::other("DNS message too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out)
}

/// Serves DNS-over-TCP queries on one connection until the client closes it.
fn tcp_conn(
    mut conn: TcpStream,
    records: &RwLock<Records>,
    default: Arc<Vec<SocketAddr>>,
) -> std::io::Result<()> {
    let peer = conn.peer_addr()?;
    let upstreams = match records.read().ok().and_then(|r| r.upstreams_for(peer.ip())) {
        Some(v) => Arc::new(v),
        None => default,
    };
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    loop {
        let query = read_frame(&mut conn)?;
        let decision = match records.read() {
            Ok(r) => decide(&query, &r),
            Err(_) => Decision::Drop,
        };
        let reply = match decision {
            Decision::Reply(v) => Some(v),
            Decision::Drop => None,
            Decision::Forward => relay_tcp(&query, &upstreams).or_else(|| servfail(&query)),
        };
        match reply {
            Some(r) => write_frame(&mut conn, &r)?,
            None => return Ok(()),
        }
    }
}

/// Relays over TCP to the upstreams in turn within [`UPSTREAM_TIMEOUT`] overall.
fn relay_tcp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    for up in upstreams {
        let left = deadline.checked_duration_since(Instant::now())?;
        let Ok(mut s) = TcpStream::connect_timeout(up, left) else {
            continue;
        };
        let left = deadline.checked_duration_since(Instant::now())?;
        let _ = s.set_read_timeout(Some(left));
        let _ = s.set_write_timeout(Some(left));
        if write_frame(&mut s, query).is_ok() {
            if let Ok(r) = read_frame(&mut s) {
                if r.get(..2) == query.get(..2) {
                    return Some(r);
                }
            }
        }
    }
    None
}

fn serve(
    sock: UdpSocket,
    records: Arc<RwLock<Records>>,
    stop: Arc<AtomicBool>,
    upstreams: Arc<Vec<SocketAddr>>,
) {
    let sock = Arc::new(sock);
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let packet = &buf[..n];
        let (decision, own) = match records.read() {
            Ok(r) => (decide(packet, &r), r.upstreams_for(peer.ip())),
            Err(_) => (Decision::Drop, None),
        };
        match decision {
            Decision::Reply(v) => {
                let _ = sock.send_to(&v, peer);
            }
            Decision::Drop => {}
            Decision::Forward => {
                if inflight.load(Ordering::SeqCst) >= MAX_INFLIGHT {
                    tracing::debug!(%peer, "DNS relay saturated, query dropped");
                    continue;
                }
                inflight.fetch_add(1, Ordering::SeqCst);
                let (sock, upstreams, counter, packet) = (
                    sock.clone(),
                    own.map(Arc::new).unwrap_or_else(|| upstreams.clone()),
                    inflight.clone(),
                    packet.to_vec(),
                );
                let spawned = std::thread::Builder::new()
                    .name("berth-dns-relay".into())
                    .spawn(move || {
                        let reply = relay(&packet, &upstreams).or_else(|| servfail(&packet));
                        if let Some(r) = reply {
                            let _ = sock.send_to(&r, peer);
                        }
                        counter.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    inflight.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Sends `packet` to the upstreams in turn within [`UPSTREAM_TIMEOUT`] overall.
fn relay(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let id = packet.get(..2)?;
    for up in upstreams {
        let left = deadline.checked_duration_since(Instant::now())?;
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        if s.connect(up).is_err() || s.send(packet).is_err() {
            continue;
        }
        let per = left / (upstreams.len() as u32).max(1);
        let _ = s.set_read_timeout(Some(per.max(Duration::from_millis(100))));
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = s.recv(&mut buf) {
            if n >= 2 && &buf[..2] == id {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    pub(crate) fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_names_and_aliases_forwards_rest() {
        let mut r = Records::default();
        r.set(
            "ep1",
            &["web".into(), "Frontend".into(), "abcdef123456".into()],
            Ipv4Addr::new(10, 213, 1, 2),
        );
        r.set("ep2", &["web".into()], Ipv4Addr::new(10, 213, 1, 3));
        let Decision::Reply(v) = decide(&query("FRONTEND.", RecordType::A), &r) else {
            panic!("no reply")
        };
        let m = Message::from_vec(&v).unwrap();
        assert_eq!(m.id(), 0x4242);
        assert_eq!(m.answers().len(), 1);
        let Decision::Reply(v) = decide(&query("web", RecordType::A), &r) else {
            panic!("no reply")
        };
        assert_eq!(
            Message::from_vec(&v).unwrap().answers().len(),
            2,
            "both endpoints behind the alias"
        );
        let Decision::Reply(v) = decide(&query("web", RecordType::AAAA), &r) else {
            panic!("no reply")
        };
        let m = Message::from_vec(&v).unwrap();
        assert!(m.answers().is_empty() && m.response_code() == ResponseCode::NoError);
        assert_eq!(
            decide(&query("example.org", RecordType::A), &r),
            Decision::Forward
        );
        assert_eq!(decide(b"garbage", &r), Decision::Drop);
        r.set_upstreams(
            "ep2",
            &[
                "10.213.250.1".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
        );
        assert_eq!(
            r.upstreams_for("10.213.1.3".parse().unwrap()),
            Some(vec!["10.213.250.1:53".parse().unwrap()])
        );
        assert_eq!(
            r.upstreams_for("10.213.1.2".parse().unwrap()),
            None,
            "ep1 uses the network's"
        );
        r.remove("ep1");
        assert_eq!(
            decide(&query("frontend", RecordType::A), &r),
            Decision::Forward
        );
        r.remove("ep2");
        assert_eq!(r.upstreams_for("10.213.1.3".parse().unwrap()), None);
    }

    #[test]
    fn serves_over_udp_and_servfails_without_upstream() {
        let srv = DnsServer::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), vec![]).unwrap();
        srv.set("e", &["db".into()], Ipv4Addr::new(10, 213, 7, 9));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.send_to(&query("db", RecordType::A), srv.local_addr())
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c.recv(&mut buf).unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 213, 7, 9)))
        );
        // the same over TCP (length-prefixed), as clients do after a truncated answer
        let mut tcp = TcpStream::connect(srv.local_addr()).unwrap();
        write_frame(&mut tcp, &query("DB", RecordType::A)).unwrap();
        let m = Message::from_vec(&read_frame(&mut tcp).unwrap()).unwrap();
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 213, 7, 9)))
        );
        write_frame(&mut tcp, &query("nowhere.invalid", RecordType::A)).unwrap();
        let m = Message::from_vec(&read_frame(&mut tcp).unwrap()).unwrap();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        let t = Instant::now();
        c.send_to(&query("unknown.invalid", RecordType::A), srv.local_addr())
            .unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().response_code(),
            ResponseCode::ServFail
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
