//! `RUN --mount=...` specifications, `EXPOSE` port specifications and Go-style durations.

use std::fmt;
use std::time::Duration;

use crate::error::{suggest, Detail};
use crate::shell::ExpandError;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory of the context or of another stage/image (read-only by default).
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// A fresh tmpfs.
    Tmpfs,
    /// A secret file (or environment variable) provided by the client.
    Secret,
    /// The client's SSH agent socket.
    Ssh,
}

impl MountType {
    fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Used concurrently by several writers (the default).
    Shared,
    /// A new copy per concurrent writer.
    Private,
    /// One writer at a time; others wait.
    Locked,
}

/// A typed `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// `type=` (bind when absent).
    pub kind: MountType,
    /// `target=`/`dst=`/`destination=`; filled with the default for secret and ssh mounts.
    pub target: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `from=`: stage or image to mount from.
    pub from: Option<String>,
    /// `id=`: cache id, secret id, ssh id; defaulted for secret and ssh mounts.
    pub id: Option<String>,
    /// `sharing=` (cache mounts only; `Shared` by default for them).
    pub sharing: Option<Sharing>,
    /// Read-only; defaults to true for bind, secret and ssh, false for cache and tmpfs.
    pub readonly: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required`: fail when the secret or ssh socket is not provided.
    pub required: bool,
    /// `size=` of a tmpfs, in bytes.
    pub size: Option<u64>,
    /// `env=`: expose a secret as an environment variable.
    pub env: Option<String>,
}

const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
];

fn invalid(msg: String) -> Detail {
    Detail::Invalid(msg)
}

/// Split a CSV record (fields separated by commas; a field may be double-quoted, with `""` for a
/// quote inside).
fn csv_fields(value: &str) -> Result<Vec<String>, Detail> {
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(invalid(format!("unterminated quote in mount {value}"))),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "extraneous text after a quoted field in mount {value}"
                    )))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, Detail> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(invalid(format!(
            "invalid value for {key}: {value:?}: expected true or false"
        ))),
    }
}

fn parse_u32(key: &str, value: &str, radix: u32) -> Result<u32, Detail> {
    u32::from_str_radix(value, radix).map_err(|_| {
        let what = if radix == 8 {
            "an octal number"
        } else {
            "a number"
        };
        invalid(format!(
            "invalid value for {key}: {value:?}: expected {what}"
        ))
    })
}

impl MountSpec {
    /// Parse a `--mount` value; `expand` is applied to every value (not to the keys).
    pub fn parse(
        value: &str,
        expand: &mut dyn FnMut(&str) -> Result<String, ExpandError>,
    ) -> Result<MountSpec, Detail> {
        let fields = csv_fields(value)?;
        let mut kind = MountType::Bind;
        for field in &fields {
            if let Some((k, v)) = field.split_once('=') {
                if k.eq_ignore_ascii_case("type") {
                    kind = match expand(v)?.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        other => {
                            return Err(invalid(format!(
                                "unsupported mount type {other:?}: expected bind, cache, tmpfs, secret or ssh"
                            )))
                        }
                    };
                }
            }
        }
        let mut m = MountSpec {
            kind,
            target: None,
            source: None,
            from: None,
            id: None,
            sharing: None,
            readonly: false,
            mode: None,
            uid: None,
            gid: None,
            required: false,
            size: None,
            env: None,
        };
        let mut ro_auto = true;
        let secretish = matches!(kind, MountType::Secret | MountType::Ssh);
        for field in &fields {
            let Some((key, raw)) = field.split_once('=') else {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if secretish => m.required = true,
                    "required" => {
                        return Err(invalid(format!(
                            "unexpected key 'required' for mount type {kind}"
                        )))
                    }
                    _ => {
                        return Err(invalid(format!(
                            "invalid field '{field}' in mount: expected a key=value pair"
                        )))
                    }
                }
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = expand(raw)?;
            match key.as_str() {
                "type" => {}
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "required" if secretish => m.required = parse_bool(&key, &value)?,
                "size" if kind == MountType::Tmpfs => m.size = Some(parse_size(&value)?),
                "required" | "size" => {
                    return Err(invalid(format!(
                        "unexpected key '{key}' for mount type {kind}"
                    )))
                }
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => {
                            return Err(invalid(format!(
                        "unsupported sharing value {value:?}: expected shared, private or locked"
                    )))
                        }
                    })
                }
                "mode" => m.mode = Some(parse_u32(&key, &value, 8)?),
                "uid" => m.uid = Some(parse_u32(&key, &value, 10)?),
                "gid" => m.gid = Some(parse_u32(&key, &value, 10)?),
                "env" => m.env = Some(value),
                _ => {
                    let hint = suggest(&key, MOUNT_KEYS)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default();
                    return Err(invalid(format!(
                        "unexpected key '{key}' in '{field}'{hint}"
                    )));
                }
            }
        }
        m.finish(ro_auto)?;
        Ok(m)
    }

    fn finish(&mut self, ro_auto: bool) -> Result<(), Detail> {
        let kind = self.kind;
        if !matches!(kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
            for (name, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return Err(invalid(format!("{name} not allowed for {kind} mounts")));
                }
            }
        }
        if ro_auto {
            self.readonly = !matches!(kind, MountType::Cache | MountType::Tmpfs);
        }
        if self.sharing.is_some() && kind != MountType::Cache {
            return Err(invalid(format!(
                "sharing is only valid for cache mounts, not {kind}"
            )));
        }
        match kind {
            MountType::Bind | MountType::Cache | MountType::Tmpfs => {
                if self.target.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(format!("{kind} mount requires a target")));
                }
                if kind == MountType::Cache && self.sharing.is_none() {
                    self.sharing = Some(Sharing::Shared);
                }
            }
            MountType::Secret => {
                if self.from.is_some() {
                    return Err(invalid("secret mount should not have a from".into()));
                }
                if self.source.is_some() && self.id.is_some() {
                    return Err(invalid("secret mount can't set both source and id".into()));
                }
                if self.id.is_none() {
                    self.id = match (&self.source, &self.target) {
                        (Some(s), _) => Some(s.clone()),
                        (None, Some(t)) => t.rsplit('/').next().map(str::to_owned),
                        (None, None) if self.env.is_some() => self.env.clone(),
                        (None, None) => return Err(invalid(
                            "invalid secret mount: one of id, source, target or env is required"
                                .into(),
                        )),
                    };
                }
                if self.target.is_none() && self.env.is_none() {
                    self.target =
                        Some(format!("/run/secrets/{}", self.id.as_deref().unwrap_or("")));
                }
                self.mode.get_or_insert(0o400);
            }
            MountType::Ssh => {
                self.id.get_or_insert_with(|| "default".into());
                self.mode.get_or_insert(0o600);
            }
        }
        Ok(())
    }
}

/// Parse a size such as `64m`, `1g`, `512k`, `100` (bytes; binary units like Docker's).
pub fn parse_size(value: &str) -> Result<u64, Detail> {
    let bad = || {
        invalid(format!(
            "invalid size {value:?}: expected a number with an optional unit (k, m, g, t)"
        ))
    };
    let v = value.trim().to_ascii_lowercase();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let number: f64 = v[..digits_end].parse().map_err(|_| bad())?;
    let unit = v[digits_end..].trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    let bytes = number * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// One `EXPOSE` word: a port or a range, with its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// First port.
    pub start: u16,
    /// Last port (equal to `start` for a single port).
    pub end: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl PortSpec {
    /// Parse `80`, `80/tcp`, `53/udp`, `8000-8010/tcp`.
    pub fn parse(word: &str) -> Result<PortSpec, Detail> {
        let bad = |why: &str| invalid(format!("invalid port {word:?}: {why}"));
        let (ports, proto) = match word.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (word, "tcp"),
        };
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => return Err(bad("expected the protocol tcp, udp or sctp")),
        };
        if ports.contains(':') {
            return Err(bad(
                "EXPOSE takes container ports only, not host:container mappings",
            ));
        }
        let num = |s: &str| -> Result<u16, Detail> {
            match s.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(bad("expected a port number from 1 to 65535")),
            }
        };
        let (start, end) = match ports.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(ports)?;
                (p, p)
            }
        };
        if end < start {
            return Err(bad("the range ends before it starts"));
        }
        Ok(PortSpec {
            start,
            end,
            protocol,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        if self.start == self.end {
            write!(f, "{}/{}", self.start, proto)
        } else {
            write!(f, "{}-{}/{}", self.start, self.end, proto)
        }
    }
}

/// Parse a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_duration(value: &str) -> Result<Duration, Detail> {
    let bad = || {
        invalid(format!(
            "invalid duration {value:?}: expected a number with a unit, like 30s or 1m30s"
        ))
    };
    let s = value.strip_prefix('+').unwrap_or(value);
    if s.starts_with('-') {
        return Err(invalid(format!("duration {value:?} cannot be negative")));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos: f64 = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += number * nanos;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}
