//! The iptables fallback for hosts without `nft`: the same [`Ruleset`] rendered as
//! `iptables-restore --noflush` input into berth's own chains (`<table>-FWD`, `-PORTS`, …).
//!
//! The built-in chains only get one jump each (inserted first, once); the `<table>-USER` chain is
//! created once and never flushed (the host's policy goes there, like DOCKER-USER).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{NetError, Result};
use crate::firewall::Ruleset;
use crate::ports::Proto;

fn chain(table: &str, suffix: &str) -> String {
    format!("{table}-{suffix}")
}

/// The jumps from built-in chains: (iptables table, built-in chain, rule arguments).
pub fn jumps(table: &str) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let j = |c: &str| vec!["-j".to_string(), chain(table, c)];
    let local = |c: &str| {
        ["-m", "addrtype", "--dst-type", "LOCAL", "-j"]
            .iter()
            .map(|s| s.to_string())
            .chain([chain(table, c)])
            .collect()
    };
    vec![
        ("filter", "FORWARD", j("FWD")),
        ("nat", "PREROUTING", local("PORTS")),
        ("nat", "OUTPUT", local("PORTS")),
        ("nat", "POSTROUTING", j("POST")),
        ("raw", "PREROUTING", j("GUARD")),
    ]
}

/// Renders the `iptables-restore --noflush` input replacing berth's chains (not `-USER`).
pub fn render(table: &str, rules: &Ruleset) -> String {
    let (fwd, user, ports, post, guard) = (
        chain(table, "FWD"),
        chain(table, "USER"),
        chain(table, "PORTS"),
        chain(table, "POST"),
        chain(table, "GUARD"),
    );
    let bridges: Vec<&str> = rules.networks.iter().map(|n| n.bridge.as_str()).collect();
    let mut out = format!("*filter\n:{fwd} - [0:0]\n-A {fwd} -j {user}\n");
    for n in &rules.networks {
        let b = &n.bridge;
        if n.internal {
            out.push_str(&format!(
                "-A {fwd} -i {b} ! -o {b} -j DROP\n-A {fwd} -o {b} ! -i {b} -j DROP\n"
            ));
        }
        for o in bridges.iter().filter(|o| **o != b.as_str()) {
            out.push_str(&format!("-A {fwd} -i {b} -o {o} -j DROP\n"));
        }
    }
    out.push_str(&format!(
        "COMMIT\n*nat\n:{ports} - [0:0]\n:{post} - [0:0]\n"
    ));
    for p in &rules.ports {
        let m = &p.mapping;
        let dst = m
            .host_ip
            .map(|ip| format!("-d {ip}/32 "))
            .unwrap_or_default();
        let proto = match m.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        out.push_str(&format!(
            "-A {ports} {dst}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}\n",
            m.host_port, p.container_ip, m.container_port
        ));
    }
    for n in rules.networks.iter().filter(|n| !n.internal) {
        let (b, s) = (&n.bridge, n.subnet);
        out.push_str(&format!("-A {post} -s {s} ! -o {b} -j MASQUERADE\n"));
        out.push_str(&format!(
            "-A {post} -s {s} -o {b} -m conntrack --ctstate DNAT -j MASQUERADE\n"
        ));
        out.push_str(&format!(
            "-A {post} -s 127.0.0.0/8 -o {b} -m conntrack --ctstate DNAT -j MASQUERADE\n"
        ));
    }
    out.push_str(&format!("COMMIT\n*raw\n:{guard} - [0:0]\n"));
    for b in &bridges {
        out.push_str(&format!("-A {guard} -i {b} -d 127.0.0.0/8 -j DROP\n"));
    }
    out.push_str("COMMIT\n");
    out
}

fn run(table: &str, args: &[&str]) -> Result<bool> {
    let out = Command::new("iptables")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError::Firewall {
            table: table.into(),
            message: format!("spawn iptables: {e}"),
        })?;
    Ok(out.status.success())
}

/// Applies `rules`: user chain and jumps ensured, berth's chains replaced atomically per table.
pub fn apply(table: &str, rules: &Ruleset) -> Result<()> {
    let user = chain(table, "USER");
    if !run(table, &["-t", "filter", "-L", &user, "-n"])?
        && !run(table, &["-t", "filter", "-N", &user])?
    {
        return Err(NetError::Firewall {
            table: table.into(),
            message: format!("cannot create chain {user}"),
        });
    }
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Firewall {
            table: table.into(),
            message: format!("spawn iptables-restore: {e}"),
        })?;
    let body = render(table, rules);
    let write = child.stdin.take().map(|mut s| s.write_all(body.as_bytes()));
    let out = child.wait_with_output().map_err(|e| NetError::Firewall {
        table: table.into(),
        message: format!("wait for iptables-restore: {e}"),
    })?;
    if !out.status.success() || matches!(write, Some(Err(_))) {
        return Err(NetError::Firewall {
            table: table.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    for (t, builtin, rule) in jumps(table) {
        let mut check = vec!["-t", t, "-C", builtin];
        check.extend(rule.iter().map(String::as_str));
        if !run(table, &check)? {
            let mut insert = vec!["-t", t, "-I", builtin, "1"];
            insert.extend(rule.iter().map(String::as_str));
            if !run(table, &insert)? {
                return Err(NetError::Firewall {
                    table: table.into(),
                    message: format!("cannot insert the jump from {t}/{builtin}"),
                });
            }
        }
    }
    Ok(())
}

/// Removes the jumps and every berth chain (the user chain too); missing pieces are fine.
pub fn delete(table: &str) -> Result<()> {
    for (t, builtin, rule) in jumps(table) {
        let mut del = vec!["-t", t, "-D", builtin];
        del.extend(rule.iter().map(String::as_str));
        while run(table, &del)? {}
    }
    for (t, c) in [
        ("filter", "FWD"),
        ("filter", "USER"),
        ("nat", "PORTS"),
        ("nat", "POST"),
        ("raw", "GUARD"),
    ] {
        let name = chain(table, c);
        let _ = run(table, &["-t", t, "-F", &name])?;
        let _ = run(table, &["-t", t, "-X", &name])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{FwNetwork, FwPort};
    use crate::ports::PortMapping;
    use std::net::Ipv4Addr;

    #[test]
    fn render_rules() {
        let rules = Ruleset {
            networks: vec![
                FwNetwork {
                    bridge: "bta".into(),
                    subnet: "10.213.1.0/24".parse().unwrap(),
                    internal: false,
                },
                FwNetwork {
                    bridge: "btb".into(),
                    subnet: "10.213.2.0/24".parse().unwrap(),
                    internal: true,
                },
            ],
            ports: vec![FwPort {
                container_ip: Ipv4Addr::new(10, 213, 1, 2),
                mapping: PortMapping {
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80,
                    proto: Proto::Udp,
                },
            }],
        };
        let r = render("bt", &rules);
        assert!(r.starts_with("*filter\n:bt-FWD - [0:0]\n-A bt-FWD -j bt-USER\n"));
        assert!(!r.contains(":bt-USER"), "the user chain is never flushed");
        assert!(r.contains("-A bt-FWD -i btb ! -o btb -j DROP\n"));
        assert!(
            r.contains("-A bt-FWD -i bta -o btb -j DROP\n-A bt-FWD -i btb -o bta -j DROP\n")
                || r.contains("-A bt-FWD -i btb -o bta -j DROP\n")
        );
        assert!(r.contains(
            "-A bt-PORTS -p udp -m udp --dport 8080 -j DNAT --to-destination 10.213.1.2:80\n"
        ));
        assert!(r.contains("-A bt-POST -s 10.213.1.0/24 ! -o bta -j MASQUERADE\n"));
        assert!(
            !r.contains("-s 10.213.2.0/24 ! -o btb"),
            "internal networks are not masqueraded"
        );
        assert_eq!(r.matches("COMMIT\n").count(), 3);
        assert_eq!(jumps("bt").len(), 5);
    }
}
