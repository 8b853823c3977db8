//! IPv4 address management as pure data: subnets, pools, allocation.
//!
//! Nothing here touches the system: the caller passes in the host's routes and the subnets
//! already in use, so the logic is unit-tested without root.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

/// An IPv4 network in CIDR form; the address is always the network address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// Builds a subnet, masking `addr` to its network address.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        if prefix > 32 {
            return Err(NetError::Invalid(format!(
                "invalid prefix length /{prefix}"
            )));
        }
        Ok(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The number of addresses covered (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` lies inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// Whether `other` lies entirely inside this subnet.
    pub fn covers(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The `n`th address of the subnet (0 is the network address), if inside.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + n as u32))
    }

    /// The first usable host address (network + 1), Docker's default gateway.
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        if self.prefix >= 31 {
            return None;
        }
        self.nth(1)
    }

    /// Splits into consecutive subnets of prefix `size`.
    pub fn split(&self, size: u8) -> impl Iterator<Item = Subnet> + '_ {
        let count = if size < self.prefix || size > 32 {
            0
        } else {
            1u64 << (size - self.prefix)
        };
        let step = 1u64 << (32 - u32::from(size.min(32)));
        (0..count).map(move |i| Subnet {
            addr: Ipv4Addr::from((u64::from(u32::from(self.addr)) + i * step) as u32),
            prefix: size,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Subnet {
    type Err = NetError;
    /// Parses `a.b.c.d/n`; host bits must be zero, like Docker's check.
    fn from_str(s: &str) -> Result<Subnet> {
        let bad = || NetError::Invalid(format!("invalid subnet {s:?}: expected a.b.c.d/len"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let net = Subnet::new(addr, prefix)?;
        if net.addr != addr {
            return Err(NetError::Invalid(format!(
                "invalid subnet {s}: host bits set, did you mean {net}?"
            )));
        }
        Ok(net)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A pool from which network subnets of one size are carved (Docker's `default-address-pools`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The range to carve from.
    pub base: Subnet,
    /// The prefix length of each network.
    pub size: u8,
}

/// Docker's default pools: 172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut pools = vec![Pool {
        base: sn([172, 17, 0, 0], 16),
        size: 16,
    }];
    pools.extend((18..=31).map(|b| Pool {
        base: sn([172, b, 0, 0], 16),
        size: 16,
    }));
    pools.push(Pool {
        base: sn([192, 168, 0, 0], 16),
        size: 20,
    });
    pools
}

fn sn(o: [u8; 4], p: u8) -> Subnet {
    Subnet {
        addr: Ipv4Addr::from(o),
        prefix: p,
    }
}

/// Picks the first pool subnet overlapping neither `in_use` (other networks) nor `routes`
/// (destinations of the host's routing table, default routes excluded by the caller).
pub fn pick_subnet(pools: &[Pool], in_use: &[Subnet], routes: &[Subnet]) -> Result<Subnet> {
    for pool in pools {
        for cand in pool.base.split(pool.size) {
            if !in_use.iter().chain(routes).any(|u| u.overlaps(&cand)) {
                return Ok(cand);
            }
        }
    }
    Err(NetError::Exhausted(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
    ))
}

/// The user's IPAM request for one network (`--subnet`, `--gateway`, `--ip-range`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamRequest {
    /// `--subnet`; picked from the pools when absent.
    pub subnet: Option<Subnet>,
    /// `--gateway`; the subnet's first host when absent.
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`: dynamic allocations come only from here.
    pub ip_range: Option<Subnet>,
}

/// The address state of one network: its subnet, gateway and allocated addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkIpam {
    /// The network's subnet.
    pub subnet: Subnet,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Where dynamic addresses come from (the subnet by default).
    pub range: Subnet,
    /// Addresses handed out to endpoints.
    pub allocated: BTreeSet<Ipv4Addr>,
}

impl NetworkIpam {
    /// Validates a request against a chosen subnet (`subnet` is the request's or a picked one).
    pub fn new(req: &IpamRequest, subnet: Subnet) -> Result<NetworkIpam> {
        if subnet.prefix > 30 {
            return Err(NetError::Invalid(format!(
                "subnet {subnet} is too small (at most /30)"
            )));
        }
        let gateway = match req.gateway {
            Some(g) => g,
            None => subnet
                .first_host()
                .ok_or_else(|| NetError::Invalid(format!("subnet {subnet} has no host address")))?,
        };
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(NetError::Invalid(format!(
                "gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
        let range = req.ip_range.unwrap_or(subnet);
        if !subnet.covers(&range) {
            return Err(NetError::Invalid(format!(
                "ip-range {range} is not inside subnet {subnet}"
            )));
        }
        Ok(NetworkIpam {
            subnet,
            gateway,
            range,
            allocated: BTreeSet::new(),
        })
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.addr
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Allocates `want` (a static `--ip`) or the lowest free address of the range.
    pub fn allocate(&mut self, want: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        if let Some(ip) = want {
            if !self.usable(ip) {
                return Err(NetError::Invalid(format!(
                    "address {ip} is not a usable host address of subnet {}",
                    self.subnet
                )));
            }
            if !self.allocated.insert(ip) {
                return Err(NetError::Conflict(format!(
                    "address {ip} is already in use"
                )));
            }
            return Ok(ip);
        }
        for n in 0..self.range.size() {
            let Some(ip) = self.range.nth(n) else { break };
            if self.usable(ip) && !self.allocated.contains(&ip) {
                self.allocated.insert(ip);
                return Ok(ip);
            }
        }
        Err(NetError::Exhausted(format!(
            "no free address left in {}",
            self.range
        )))
    }

    /// Returns an address to the pool; releasing an unknown address is a no-op.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Docker's scheme: locally administered `02:42` followed by the IPv4 address.
    pub fn from_ip(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = NetError;
    /// Parses `aa:bb:cc:dd:ee:ff`; rejects multicast addresses (unusable on an interface).
    fn from_str(s: &str) -> Result<Mac> {
        let bad = || NetError::Invalid(format!("invalid MAC address {s:?}"));
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        if out[0] & 1 == 1 {
            return Err(NetError::Invalid(format!(
                "MAC address {s} is a multicast address"
            )));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Mac, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn subnet_parse_and_math() {
        let n = s("10.213.4.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 213, 4, 255));
        assert_eq!(n.first_host(), Some(Ipv4Addr::new(10, 213, 4, 1)));
        assert!(n.contains(Ipv4Addr::new(10, 213, 4, 77)));
        assert!(!n.contains(Ipv4Addr::new(10, 213, 5, 1)));
        assert!(s("10.213.0.0/16").overlaps(&n) && n.overlaps(&s("10.213.0.0/16")));
        assert!(!n.overlaps(&s("10.213.5.0/24")));
        assert!("10.213.4.1/24".parse::<Subnet>().is_err());
        assert!("10.213.4.0/33".parse::<Subnet>().is_err());
        assert!("10.213.4.0".parse::<Subnet>().is_err());
        assert_eq!(s("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"10.213.4.0/24\"");
    }

    #[test]
    fn default_pools_follow_docker() {
        let p = default_pools();
        assert_eq!(pick_subnet(&p, &[], &[]).unwrap(), s("172.17.0.0/16"));
        // 172.17 taken by a network, 172.18 by a host route: next is 172.19.
        let got = pick_subnet(&p, &[s("172.17.0.0/16")], &[s("172.18.5.0/24")]).unwrap();
        assert_eq!(got, s("172.19.0.0/16"));
        let all: Vec<Subnet> = (17..=31).map(|b| sn([172, b, 0, 0], 16)).collect();
        assert_eq!(pick_subnet(&p, &all, &[]).unwrap(), s("192.168.0.0/20"));
        assert_eq!(
            pick_subnet(&p, &all, &[s("192.168.0.0/24")]).unwrap(),
            s("192.168.16.0/20")
        );
        assert!(pick_subnet(&p, &[s("0.0.0.0/0")], &[]).is_err());
    }

    #[test]
    fn allocation_static_range_release() {
        let req = IpamRequest {
            subnet: Some(s("10.213.9.0/29")),
            gateway: None,
            ip_range: None,
        };
        let mut ip = NetworkIpam::new(&req, s("10.213.9.0/29")).unwrap();
        assert_eq!(ip.gateway, Ipv4Addr::new(10, 213, 9, 1));
        let a = ip.allocate(None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 213, 9, 2));
        assert!(ip.allocate(Some(Ipv4Addr::new(10, 213, 9, 2))).is_err());
        assert!(
            ip.allocate(Some(Ipv4Addr::new(10, 213, 9, 1))).is_err(),
            "gateway"
        );
        assert!(
            ip.allocate(Some(Ipv4Addr::new(10, 213, 9, 7))).is_err(),
            "broadcast"
        );
        assert_eq!(
            ip.allocate(Some(Ipv4Addr::new(10, 213, 9, 5))).unwrap(),
            Ipv4Addr::new(10, 213, 9, 5)
        );
        let mut got = vec![];
        while let Ok(x) = ip.allocate(None) {
            got.push(x.octets()[3]);
        }
        assert_eq!(got, vec![3, 4, 6]);
        ip.release(Ipv4Addr::new(10, 213, 9, 4));
        assert_eq!(ip.allocate(None).unwrap(), Ipv4Addr::new(10, 213, 9, 4));
    }

    #[test]
    fn gateway_and_range_validation() {
        let net = s("10.213.9.0/24");
        let bad_gw = IpamRequest {
            gateway: Some(Ipv4Addr::new(10, 213, 8, 1)),
            ..Default::default()
        };
        assert!(NetworkIpam::new(&bad_gw, net).is_err());
        let bad_range = IpamRequest {
            ip_range: Some(s("10.213.0.0/16")),
            ..Default::default()
        };
        assert!(NetworkIpam::new(&bad_range, net).is_err());
        let ok = IpamRequest {
            gateway: Some(Ipv4Addr::new(10, 213, 9, 254)),
            ip_range: Some(s("10.213.9.128/25")),
            ..Default::default()
        };
        let mut ip = NetworkIpam::new(&ok, net).unwrap();
        assert_eq!(ip.allocate(None).unwrap(), Ipv4Addr::new(10, 213, 9, 128));
        // a static address outside the range but inside the subnet is allowed, like Docker
        assert!(ip.allocate(Some(Ipv4Addr::new(10, 213, 9, 3))).is_ok());
    }

    #[test]
    fn mac_parse_and_derive() {
        assert_eq!(
            Mac::from_ip(Ipv4Addr::new(172, 17, 0, 2)).to_string(),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            "02:42:AC:11:00:02".parse::<Mac>().unwrap().0,
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        for bad in [
            "01:00:5e:00:00:01",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
