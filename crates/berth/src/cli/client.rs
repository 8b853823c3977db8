//! The Engine API client: endpoint selection, version negotiation, JSON calls, errors.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use super::http::{self, Body, Endpoint, Response};

/// The highest API version this client speaks.
pub const CLIENT_API_VERSION: &str = "1.45";
/// The default socket of `berth daemon`.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// An error answered by the daemon (`{"message": ...}`), printed as Docker prints it.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (0 for errors inside a stream, printed without the prefix).
    pub status: u16,
    /// The daemon's message.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            // errors inside a progress stream are printed bare, as the docker CLI does
            f.write_str(&self.message)
        } else {
            write!(f, "Error response from daemon: {}", self.message)
        }
    }
}
impl std::error::Error for ApiError {}

/// The daemon could not be reached.
#[derive(Debug)]
pub struct ConnectError {
    /// The URL tried.
    pub url: String,
    /// Why.
    pub cause: std::io::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cannot connect to the berth daemon at {} ({}). Is the daemon running? Start it with `berth daemon` (or point -H/BERTH_HOST/DOCKER_HOST at a running daemon).",
            self.url, self.cause
        )
    }
}
impl std::error::Error for ConnectError {}

/// A connected client (after version negotiation).
pub struct Client {
    /// Where the daemon is.
    pub endpoint: Endpoint,
    /// Negotiated API version ("1.41").
    pub version: String,
    /// The daemon's OS type header.
    pub os_type: String,
    /// TLS client configuration for tcp endpoints.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Compare "1.41" style versions.
pub fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| -> (u32, u32) {
        let mut it = s.split('.').map(|x| x.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    p(a) < p(b)
}

/// Choose the endpoint from `-H`, BERTH_HOST, DOCKER_HOST, or the default.
pub fn pick_host(flag: Option<&str>) -> String {
    if let Some(h) = flag {
        return h.to_string();
    }
    for var in ["BERTH_HOST", "DOCKER_HOST"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    DEFAULT_HOST.to_string()
}

impl Client {
    /// Connect to `host` and negotiate the API version with `HEAD /_ping`.
    pub fn connect(
        host: &str,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<Client> {
        let endpoint = Endpoint::parse(host).map_err(anyhow::Error::msg)?;
        let mut c = Client {
            endpoint,
            version: CLIENT_API_VERSION.to_string(),
            os_type: String::new(),
            tls,
        };
        let mut resp = c.raw("HEAD", "/_ping", &[], Body::None, false)?;
        if resp.status != 200 && resp.status != 500 {
            resp = c.raw("GET", "/_ping", &[], Body::None, false)?;
        }
        match resp.header("api-version") {
            Some(v) if version_lt(v, CLIENT_API_VERSION) => c.version = v.to_string(),
            Some(_) => {}
            None => c.version = "1.24".into(),
        }
        c.os_type = resp.header("ostype").unwrap_or("").to_string();
        // DOCKER_API_VERSION pins the version, as with the docker CLI
        if let Ok(v) = std::env::var("DOCKER_API_VERSION") {
            let v = v.trim_start_matches('v');
            if !v.is_empty() {
                c.version = v.to_string();
            }
        }
        Ok(c)
    }

    /// One request on a new connection, path without version prefix.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        upgrade: bool,
    ) -> anyhow::Result<Response> {
        let conn = self
            .endpoint
            .connect(self.tls.as_ref())
            .map_err(|cause| ConnectError {
                url: self.endpoint.url(),
                cause,
            })?;
        let r = http::send(conn, method, path, headers, body, upgrade)
            .map_err(|e| anyhow::anyhow!("{method} {path} on {}: {e}", self.endpoint.url()))?;
        Ok(r)
    }

    /// A versioned request; non-2xx/101 statuses become [`ApiError`].
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> anyhow::Result<Response> {
        let p = format!("/v{}{}", self.version, path);
        let r = self.raw(method, &p, headers, body, false)?;
        check(r)
    }

    /// GET returning JSON.
    pub fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.call("GET", path, &[], Body::None)?;
        parse_json(r)
    }

    /// POST a JSON body, returning JSON (or Null for an empty body).
    pub fn post_json(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let b = match body {
            Some(v) => Body::Bytes("application/json", serde_json::to_vec(v)?),
            None => Body::None,
        };
        let r = self.call("POST", path, &[], b)?;
        parse_json(r)
    }

    /// A simple call whose body is ignored.
    pub fn send_ok(&self, method: &str, path: &str) -> anyhow::Result<()> {
        let r = self.call(method, path, &[], Body::None)?;
        r.bytes()?;
        Ok(())
    }

    /// Start a hijacked stream (attach / exec start).
    pub fn upgrade(&self, path: &str, body: Body) -> anyhow::Result<Response> {
        let p = format!("/v{}{}", self.version, path);
        let r = self.raw("POST", &p, &[], body, true)?;
        if r.status == 101 || r.status == 200 {
            return Ok(r);
        }
        check(r)
    }
}

/// Turn an error status into [`ApiError`].
pub fn check(r: Response) -> anyhow::Result<Response> {
    if (200..300).contains(&r.status) || r.status == 101 {
        return Ok(r);
    }
    let status = r.status;
    let body = r.bytes().unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Err(ApiError { status, message }.into())
}

fn parse_json(r: Response) -> anyhow::Result<Value> {
    let b = r.bytes()?;
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&b)?)
}

/// Iterate a stream of JSON messages (pull/push/load/events), calling `f` for each.
pub fn json_stream(
    r: impl Read,
    mut f: impl FnMut(Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut br = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        if br.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let t = String::from_utf8_lossy(&line);
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        // several objects may share a line without separators
        let mut de = serde_json::Deserializer::from_str(t).into_iter::<Value>();
        for v in de.by_ref() {
            f(v?)?;
        }
    }
    Ok(())
}

/// The error carried inside a progress stream, if any.
pub fn stream_error(v: &Value) -> Option<ApiError> {
    let msg = v
        .get("errorDetail")
        .and_then(|d| d.get("message"))
        .or_else(|| v.get("error"))?
        .as_str()?
        .to_string();
    Some(ApiError {
        status: 0,
        message: msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_lt("1.41", "1.45"));
        assert!(!version_lt("1.45", "1.41"));
        assert!(version_lt("1.9", "1.10"));
    }
}
