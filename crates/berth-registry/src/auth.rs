//! Authentication and authorisation: htpasswd (bcrypt) users, HS256-signed bearer tokens with
//! per-repository scopes (the Docker token protocol), and the access a request needs.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Users and bcrypt hashes from an htpasswd file (`user:$2y$...` lines, as `htpasswd -B`
/// writes them).
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Read and parse an htpasswd file.
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read htpasswd {}", path.display()), e))?;
        Htpasswd::parse(&text)
            .map_err(|e| Error::Config(format!("htpasswd {}: {e}", path.display())))
    }

    /// Parse htpasswd text; only bcrypt hashes are accepted.
    pub fn parse(text: &str) -> std::result::Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
            if !["$2y$", "$2a$", "$2b$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p))
            {
                return Err(format!(
                    "line {}: user {user}: only bcrypt hashes are supported",
                    i + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd { users })
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(h) => bcrypt::verify(password, h).unwrap_or(false),
            None => {
                // Spend the same time for unknown users.
                let _ = bcrypt::verify(
                    password,
                    "$2y$05$abcdefghijklmnopqrstuuVEJ3o9MX/VUFjqh6Gx0CZ7sXqx8Ak9W",
                );
                false
            }
        }
    }
}

/// Bearer-token settings.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The HMAC-SHA256 secret.
    pub key: Vec<u8>,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Where clients fetch tokens (the `realm` of the challenge), e.g. `http://127.0.0.1:5000/token`.
    pub realm: String,
    /// The `service` (and token audience).
    pub service: String,
    /// Token lifetime in seconds.
    pub ttl_secs: u64,
}

/// One granted or requested access: `repository:<name>:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// Actions: pull, push, delete, *.
    pub actions: Vec<String>,
}

impl Access {
    /// Parse a scope string `type:name:actions` (the name may contain colons).
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// The scope string.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    /// Whether this grant allows `action` on (`kind`, `name`).
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// The claims of a berth registry token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (user name; empty for anonymous).
    pub sub: String,
    /// Audience (the service).
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// Granted access.
    pub access: Vec<Access>,
}

type HmacSha256 = Hmac<Sha256>;

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Issue an HS256 JWT for `claims`.
pub fn issue(cfg: &TokenConfig, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(sign(&cfg.key, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Verify a token's signature, issuer, audience and validity window at `now`.
pub fn verify(cfg: &TokenConfig, token: &str, now: i64) -> std::result::Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token".into());
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token header")?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err("unsupported token algorithm".into());
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "malformed token signature")?;
    let mut mac = HmacSha256::new_from_slice(&cfg.key).map_err(|_| "bad token key")?;
    mac.update(format!("{h}.{p}").as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| "invalid token signature")?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token claims")?;
    if claims.iss != cfg.issuer {
        return Err("token from another issuer".into());
    }
    if claims.aud != cfg.service {
        return Err("token for another service".into());
    }
    if now >= claims.exp {
        return Err("token expired".into());
    }
    if claims.nbf > now + 60 {
        return Err("token not yet valid".into());
    }
    Ok(claims)
}

/// Random hex (upload and token ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // Extremely unlikely; fall back to time and a counter (ids need uniqueness, not secrecy).
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return format!("{t:x}{n:x}");
            }
        }
    }
    hex::encode(buf)
}

/// Decode `Authorization: Basic ...` into (user, password).
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TokenConfig {
        TokenConfig {
            key: b"secret".to_vec(),
            issuer: "berth".into(),
            realm: "http://127.0.0.1/token".into(),
            service: "reg".into(),
            ttl_secs: 300,
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "reg".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "x".into(),
            access: vec![
                Access::parse_scope("repository:a/b:pull,push").unwrap_or_else(|| Access {
                    kind: String::new(),
                    name: String::new(),
                    actions: vec![],
                }),
            ],
        }
    }

    #[test]
    fn token_roundtrip_and_tamper() {
        let t = issue(&cfg(), &claims(1000));
        let c = verify(&cfg(), &t, 10).expect("valid");
        assert!(c.access[0].allows("repository", "a/b", "push"));
        assert!(!c.access[0].allows("repository", "a/b", "delete"));
        assert!(!c.access[0].allows("repository", "a/c", "pull"));
        assert_eq!(verify(&cfg(), &t, 1000).unwrap_err(), "token expired");
        let mut other = cfg();
        other.key = b"other".to_vec();
        assert_eq!(
            verify(&other, &t, 10).unwrap_err(),
            "invalid token signature"
        );
        // Swap the payload for one granting more: the signature no longer matches.
        let mut c2 = claims(1000);
        c2.access[0].actions.push("delete".into());
        let t2 = issue(&cfg(), &c2);
        let forged = format!(
            "{}.{}.{}",
            t.split('.').next().unwrap_or(""),
            t2.split('.').nth(1).unwrap_or(""),
            t.split('.').nth(2).unwrap_or("")
        );
        assert!(verify(&cfg(), &forged, 10).is_err());
        assert!(verify(&cfg(), "a.b", 10).is_err());
    }

    #[test]
    fn scopes() {
        let a = Access::parse_scope("repository:localhost:5000/x:pull").expect("scope");
        assert_eq!(a.name, "localhost:5000/x");
        assert_eq!(a.actions, vec!["pull"]);
        assert_eq!(a.scope(), "repository:localhost:5000/x:pull");
        assert!(Access::parse_scope("repository").is_none());
        let star = Access::parse_scope("registry:catalog:*").expect("scope");
        assert!(star.allows("registry", "catalog", "pull"));
    }

    #[test]
    fn htpasswd() {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let h = Htpasswd::parse(&format!("# c\nalice:{hash}\n")).expect("parse");
        assert!(h.verify("alice", "pw"));
        assert!(!h.verify("alice", "nope"));
        assert!(!h.verify("bob", "pw"));
        assert!(Htpasswd::parse("bob:{SHA}abc").is_err());
        assert!(Htpasswd::parse("nocolon").is_err());
        assert_eq!(
            parse_basic("Basic YWxpY2U6cHc6eA=="),
            Some(("alice".into(), "pw:x".into()))
        );
    }
}
