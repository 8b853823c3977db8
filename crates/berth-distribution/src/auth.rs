//! Registry authentication: `WWW-Authenticate` challenges, credentials from Docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`), and `login`/`logout` edits of that file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::{Error, Result};

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Build credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`
    Basic,
    /// `Bearer realm=...,service=...,scope=...`
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service parameter, when given.
        service: Option<String>,
        /// The scope the registry asked for, when given.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value (one challenge; quoted or token parameters).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or('\0');
                val.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            out.insert(key, val);
        }
    }
    out
}

/// The key Docker uses for a registry in `config.json` (Docker Hub's is its v1 index URL).
pub fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// Docker's client configuration file (`~/.docker/config.json`), kept as JSON so that fields
/// berth does not know survive a login.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: serde_json::Value,
}

impl DockerConfig {
    /// The default location: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            return PathBuf::from(d).join("config.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".docker").join("config.json")
    }

    /// Load `path` (an absent file is an empty configuration).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let doc = match std::fs::read(&path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Invalid(format!("parse {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        if !doc.is_object() {
            return Err(Error::Invalid(format!(
                "{}: not a JSON object",
                path.display()
            )));
        }
        Ok(DockerConfig { path, doc })
    }

    /// The file this configuration came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn helper_for(&self, key: &str, registry: &str) -> Option<String> {
        let helpers = self.doc.get("credHelpers");
        helpers
            .and_then(|h| h.get(registry).or_else(|| h.get(key)))
            .and_then(|v| v.as_str())
            .or_else(|| self.doc.get("credsStore").and_then(|v| v.as_str()))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Credentials for `registry` (a host[:port], or `docker.io`): a credential helper first
    /// (`credHelpers`, then `credsStore`), else the base64 `auth` of `auths`.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(&key, registry) {
            if let Some(c) = helper_get(&helper, &key)? {
                return Ok(Some(c));
            }
        }
        let auths = self.doc.get("auths");
        let entry = auths.and_then(|a| {
            a.get(&key)
                .or_else(|| a.get(registry))
                .or_else(|| a.get(format!("https://{registry}").as_str()))
                .or_else(|| a.get(format!("http://{registry}").as_str()))
        });
        let Some(entry) = entry else { return Ok(None) };
        if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| Error::Invalid(format!("auths.{key}.auth: {e}")))?;
            let s = String::from_utf8(raw)
                .map_err(|_| Error::Invalid(format!("auths.{key}.auth: not UTF-8")))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| Error::Invalid(format!("auths.{key}.auth: no user:password")))?;
            return Ok(Some(Credentials::new(u, p)));
        }
        match (
            entry.get("username").and_then(|v| v.as_str()),
            entry.get("password").and_then(|v| v.as_str()),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credentials::new(u, p))),
            _ => Ok(None),
        }
    }

    /// Record credentials for `registry` in `auths` (what `docker login` does without a
    /// credential store).
    pub fn set_credentials(&mut self, registry: &str, creds: &Credentials) {
        let key = config_key(registry);
        let raw = format!("{}:{}", creds.username, creds.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(raw);
        if let Some(obj) = self.doc.as_object_mut() {
            let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
            if !auths.is_object() {
                *auths = serde_json::json!({});
            }
            if let Some(a) = auths.as_object_mut() {
                a.insert(key, serde_json::json!({ "auth": auth }));
            }
        }
    }

    /// Forget `registry`'s credentials; whether there were any.
    pub fn remove_credentials(&mut self, registry: &str) -> bool {
        let key = config_key(registry);
        self.doc
            .get_mut("auths")
            .and_then(|a| a.as_object_mut())
            .map(|a| a.remove(&key).is_some() | a.remove(registry).is_some())
            .unwrap_or(false)
    }

    /// Write the file atomically (temp file in the same directory, fsync, rename), mode 0600.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self
            .path
            .parent()
            .ok_or_else(|| Error::Invalid(format!("{}: no parent", self.path.display())))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
        let body = serde_json::to_vec_pretty(&self.doc)
            .map_err(|e| Error::Invalid(format!("encode config: {e}")))?;
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(format!("write {}", self.path.display()), e));
        }
        Ok(())
    }
}

/// `docker-credential-<helper> get` with the server URL on stdin.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::Invalid(format!(
            "invalid credential helper name {helper:?}"
        )));
    }
    let prog = format!("docker-credential-{helper}");
    let mut child = match Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "credential helper {prog} not found in PATH"
            )))
        }
        Err(e) => return Err(Error::io(format!("run {prog}"), e)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("run {prog}"), e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Unauthorized(format!("{prog} get {server}: {msg}")));
    }
    #[derive(serde::Deserialize)]
    struct Out {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let o: Out = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("{prog} get: bad output: {e}")))?;
    Ok(Some(Credentials::new(o.username, o.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn config_round_trip_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"auths":{},"psFormat":"x"}"#).unwrap();
        let mut c = DockerConfig::load(&p).unwrap();
        c.set_credentials("localhost:5000", &Credentials::new("u", "p:w"));
        c.set_credentials("docker.io", &Credentials::new("hub", "s"));
        c.save().unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(raw["auths"]["localhost:5000"]["auth"], "dTpwOnc=");
        assert_eq!(raw["psFormat"], "x");
        assert!(raw["auths"]["https://index.docker.io/v1/"].is_object());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let c = DockerConfig::load(&p).unwrap();
        assert_eq!(
            c.credentials("localhost:5000").unwrap(),
            Some(Credentials::new("u", "p:w"))
        );
        let mut c = c;
        assert!(c.remove_credentials("localhost:5000"));
        assert_eq!(c.credentials("localhost:5000").unwrap(), None);
    }
}
