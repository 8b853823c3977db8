//! Published ports (`-p [ip:][host[-end]:]container[-end][/tcp|udp]`) as data.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

/// The transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl FromStr for Proto {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Err(NetError::Unsupported("sctp ports are not supported".into())),
            _ => Err(NetError::Invalid(format!("invalid protocol {s:?}"))),
        }
    }
}

/// Which host port to use for one container port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPort {
    /// Exactly this port.
    Fixed(u16),
    /// The first free port of this inclusive range.
    Range(u16, u16),
    /// Any free port (the kernel's ephemeral range), as for `-P` or `-p 80`.
    Ephemeral,
}

/// One container port to publish: what the engine hands to [`crate::Manager::connect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRequest {
    /// The host address to accept on; `None` means every address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port choice.
    pub host_port: HostPort,
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub proto: Proto,
}

/// A published port after allocation: the host port is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address; `None` means every address (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    /// `berth port` form: `80/tcp -> 0.0.0.0:32768`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port, self.proto, ip, self.host_port
        )
    }
}

/// One host binding in Docker's `NetworkSettings.Ports` / `HostConfig.PortBindings` shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerBinding {
    /// `HostIp`.
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    /// `HostPort`, a decimal string.
    #[serde(rename = "HostPort")]
    pub host_port: String,
}

/// Docker's `NetworkSettings.Ports` map (`"80/tcp" -> [{HostIp, HostPort}]`) for `inspect`
/// and `berth port`; `exposed` container ports without a binding map to an empty list
/// (Docker shows them as `null`).
pub fn docker_ports(
    mappings: &[PortMapping],
    exposed: &[(u16, Proto)],
) -> std::collections::BTreeMap<String, Vec<DockerBinding>> {
    let mut out = std::collections::BTreeMap::new();
    for (port, proto) in exposed {
        out.entry(format!("{port}/{proto}"))
            .or_insert_with(Vec::new);
    }
    for m in mappings {
        out.entry(format!("{}/{}", m.container_port, m.proto))
            .or_insert_with(Vec::new)
            .push(DockerBinding {
                host_ip: m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                host_port: m.host_port.to_string(),
            });
    }
    out
}

fn parse_range(s: &str, what: &str) -> Result<(u16, u16)> {
    let bad = || NetError::Invalid(format!("invalid {what} port {s:?}"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses one `-p` value into port requests (a range expands to one request per port).
///
/// Forms: `80`, `80/udp`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`,
/// `8000-8002:80-82`, `8000-8010:80` (first free host port of the range).
pub fn parse_publish(spec: &str) -> Result<Vec<PortRequest>> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.parse()?),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => {
            return Err(NetError::Invalid(format!(
                "invalid port spec {spec:?} (IPv6 host addresses are not supported)"
            )))
        }
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                NetError::Invalid(format!("invalid host address {ip:?} in {spec:?}"))
            })?)
        }
    };
    let host_ip = host_ip.filter(|ip| !ip.is_unspecified());
    let (c0, c1) = parse_range(cont, "container")?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(parse_range(h, "host")?),
    };
    let count = u32::from(c1 - c0) + 1;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let container_port = c0 + i as u16;
        let host_port = match host {
            None => HostPort::Ephemeral,
            Some((h0, h1)) if h0 == h1 => {
                if count > 1 {
                    return Err(NetError::Invalid(format!(
                        "invalid port spec {spec:?}: one host port for a container range"
                    )));
                }
                HostPort::Fixed(h0)
            }
            Some((h0, h1)) if count == 1 => HostPort::Range(h0, h1),
            Some((h0, h1)) => {
                if u32::from(h1 - h0) + 1 != count {
                    return Err(NetError::Invalid(format!(
                        "invalid port spec {spec:?}: host and container ranges differ in size"
                    )));
                }
                HostPort::Fixed(h0 + i as u16)
            }
        };
        out.push(PortRequest {
            host_ip,
            host_port,
            container_port,
            proto,
        });
    }
    Ok(out)
}

/// Parses an `EXPOSE`d port (`80`, `80/udp`, `8000-8002/tcp`) into ephemeral requests, for `-P`.
pub fn parse_expose(spec: &str) -> Result<Vec<PortRequest>> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.parse()?),
        None => (spec, Proto::Tcp),
    };
    let (c0, c1) = parse_range(body, "exposed")?;
    Ok((c0..=c1)
        .map(|p| PortRequest {
            host_ip: None,
            host_port: HostPort::Ephemeral,
            container_port: p,
            proto,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let r = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            r,
            vec![PortRequest {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: HostPort::Fixed(8080),
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        let r = parse_publish("53/udp").unwrap();
        assert_eq!(r[0].host_port, HostPort::Ephemeral);
        assert_eq!(r[0].proto, Proto::Udp);
        let r = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(
            (r[0].host_ip, r[0].host_port),
            (Some(Ipv4Addr::LOCALHOST), HostPort::Ephemeral)
        );
        let r = parse_publish("0.0.0.0:9000:90/UDP").unwrap();
        assert_eq!((r[0].host_ip, r[0].proto), (None, Proto::Udp));
        let r = parse_publish("8000-8002:80-82").unwrap();
        let pairs: Vec<_> = r.iter().map(|p| (p.host_port, p.container_port)).collect();
        assert_eq!(
            pairs,
            vec![
                (HostPort::Fixed(8000), 80),
                (HostPort::Fixed(8001), 81),
                (HostPort::Fixed(8002), 82)
            ]
        );
        assert_eq!(
            parse_publish("8000-8010:80").unwrap()[0].host_port,
            HostPort::Range(8000, 8010)
        );
        assert_eq!(parse_publish("80-81").unwrap().len(), 2);
    }

    #[test]
    fn publish_rejects() {
        for bad in [
            "",
            "0",
            "70000",
            "a:80",
            "1.2.3:80:80",
            "8000-8001:80-82",
            "8000:80-81",
            "80/icmp",
            "90-80",
            "1:2:3:4",
            "x/tcp",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_port_map() {
        let m = [
            PortMapping {
                host_ip: None,
                host_port: 32768,
                container_port: 80,
                proto: Proto::Tcp,
            },
            PortMapping {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp,
            },
        ];
        let map = docker_ports(&m, &[(80, Proto::Tcp), (53, Proto::Udp)]);
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "53/udp": [],
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}, {"HostIp": "127.0.0.1", "HostPort": "8080"}]
            })
        );
    }

    #[test]
    fn expose_forms() {
        assert_eq!(parse_expose("80").unwrap().len(), 1);
        assert_eq!(parse_expose("7000-7002/udp").unwrap().len(), 3);
        assert!(parse_expose("x").is_err());
        let m = PortMapping {
            host_ip: None,
            host_port: 32768,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(m.to_string(), "80/tcp -> 0.0.0.0:32768");
    }
}
