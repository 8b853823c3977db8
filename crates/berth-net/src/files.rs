//! Content builders for a container's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
//!
//! Pure functions: the engine writes the results into the container's directory.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::{NetError, Result};

/// `--add-host name:ip` (or `name=ip`); `host-gateway` resolves to the host's gateway address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraHost {
    /// The host name(s) as given.
    pub name: String,
    /// The address, or `None` for `host-gateway`.
    pub ip: Option<IpAddr>,
}

impl ExtraHost {
    /// Parses `name:ip`, `name=ip`, `name:host-gateway`; IPv6 may be bracketed or bare.
    pub fn parse(s: &str) -> Result<ExtraHost> {
        let bad = || NetError::Invalid(format!("invalid extra host {s:?}: expected name:ip"));
        let (name, ip) = match s.split_once('=') {
            Some(p) => p,
            None => s.split_once(':').ok_or_else(bad)?,
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(bad());
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = if ip == "host-gateway" {
            None
        } else {
            Some(ip.parse::<IpAddr>().map_err(|_| bad())?)
        };
        Ok(ExtraHost {
            name: name.to_string(),
            ip,
        })
    }
}

/// Inputs for `/etc/hosts`.
#[derive(Clone, Debug, Default)]
pub struct HostsSpec<'a> {
    /// The container's host name.
    pub hostname: &'a str,
    /// `--domainname`, if any.
    pub domainname: Option<&'a str>,
    /// The container's addresses (one line each); empty for `--network none`/host.
    pub addresses: Vec<Ipv4Addr>,
    /// `--add-host` entries.
    pub extra: Vec<ExtraHost>,
    /// What `host-gateway` stands for (the default bridge's gateway, or a daemon setting).
    pub host_gateway: Option<IpAddr>,
}

/// Builds `/etc/hosts` like Docker: localhost lines, extra hosts, then the container itself.
pub fn hosts(spec: &HostsSpec<'_>) -> Result<String> {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for e in &spec.extra {
        let ip = match e.ip.or(spec.host_gateway) {
            Some(ip) => ip,
            None => {
                return Err(NetError::Invalid(format!(
                    "cannot resolve host-gateway for {}: no gateway configured",
                    e.name
                )))
            }
        };
        out.push_str(&format!("{ip}\t{}\n", e.name));
    }
    let names = match spec.domainname {
        Some(d) if !d.is_empty() => format!("{}.{d} {}", spec.hostname, spec.hostname),
        _ => spec.hostname.to_string(),
    };
    for ip in &spec.addresses {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    Ok(out)
}

/// `/etc/hostname`: the name and a newline.
pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

/// The parts of a resolv.conf that matter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// `options` entries.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines and bad addresses are skipped like libc does.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
                        rc.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => rc.search = words.map(str::to_string).collect(),
                Some("options") => rc.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        rc
    }

    /// The nameservers a container (or the embedded resolver) can use: loopback ones dropped.
    pub fn upstreams(&self) -> Vec<IpAddr> {
        self.nameservers
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .collect()
    }

    /// Renders the file.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The user's `--dns`, `--dns-search`, `--dns-option`.
#[derive(Clone, Debug, Default)]
pub struct DnsSettings {
    /// `--dns`.
    pub servers: Vec<IpAddr>,
    /// `--dns-search` (`.` alone clears the search list).
    pub search: Vec<String>,
    /// `--dns-option`.
    pub options: Vec<String>,
}

/// Builds the container's `/etc/resolv.conf` from the host's and the user's settings.
///
/// With `embedded` (a user-defined network's resolver address) the container asks it, and it
/// forwards to `--dns` or the host's servers; otherwise the servers are written directly, with
/// the host's loopback resolvers dropped (unreachable from the container) and Google's public
/// resolvers as Docker's fallback.
pub fn resolv_conf(host: &ResolvConf, user: &DnsSettings, embedded: Option<Ipv4Addr>) -> String {
    let mut rc = ResolvConf {
        nameservers: vec![],
        search: if user.search.is_empty() {
            host.search.clone()
        } else {
            user.search.clone()
        },
        options: if user.options.is_empty() {
            host.options.clone()
        } else {
            user.options.clone()
        },
    };
    if rc.search == ["."] {
        rc.search.clear();
    }
    rc.nameservers = match embedded {
        Some(ip) => vec![IpAddr::V4(ip)],
        None if !user.servers.is_empty() => user.servers.clone(),
        None => {
            let up = host.upstreams();
            if up.is_empty() {
                vec![
                    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
                    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
                ]
            } else {
                up
            }
        }
    };
    rc.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file() {
        let spec = HostsSpec {
            hostname: "abc123",
            domainname: Some("example.org"),
            addresses: vec![Ipv4Addr::new(10, 213, 1, 2)],
            extra: vec![
                ExtraHost::parse("db:10.0.0.9").unwrap(),
                ExtraHost::parse("gw=host-gateway").unwrap(),
            ],
            host_gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 213, 1, 1))),
        };
        let h = hosts(&spec).unwrap();
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.9\tdb\n"));
        assert!(h.contains("10.213.1.1\tgw\n"));
        assert!(h.ends_with("10.213.1.2\tabc123.example.org abc123\n"));
        let no_gw = HostsSpec {
            extra: vec![ExtraHost::parse("x:host-gateway").unwrap()],
            ..Default::default()
        };
        assert!(hosts(&no_gw).is_err());
        assert_eq!(
            ExtraHost::parse("v6:[::1]").unwrap().ip,
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            ExtraHost::parse("v6:2001:db8::1").unwrap().ip,
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(ExtraHost::parse("nohost").is_err());
        assert!(ExtraHost::parse("a:notanip").is_err());
        assert_eq!(hostname("abc"), "abc\n");
    }

    #[test]
    fn resolv() {
        let host = ResolvConf::parse("# c\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch a.example b.example\noptions ndots:2 edns0\nnameserver bogus\n");
        assert_eq!(
            host.upstreams(),
            vec!["10.255.255.53".parse::<IpAddr>().unwrap()]
        );
        let plain = resolv_conf(&host, &DnsSettings::default(), None);
        assert_eq!(
            plain,
            "search a.example b.example\nnameserver 10.255.255.53\noptions ndots:2 edns0\n"
        );
        let emb = resolv_conf(
            &host,
            &DnsSettings::default(),
            Some(Ipv4Addr::new(10, 213, 1, 1)),
        );
        assert!(emb.contains("nameserver 10.213.1.1\n") && !emb.contains("10.255.255.53"));
        let user = DnsSettings {
            servers: vec!["1.1.1.1".parse().unwrap()],
            search: vec![".".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&host, &user, None),
            "nameserver 1.1.1.1\noptions ndots:5\n"
        );
        let only_lo = ResolvConf::parse("nameserver 127.0.0.1\n");
        assert!(resolv_conf(&only_lo, &DnsSettings::default(), None).contains("nameserver 8.8.8.8"));
    }
}
