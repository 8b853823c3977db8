//! A small synchronous HTTP/1.1 client for the Docker Engine API over a unix socket or TCP.
//!
//! Why not hyper or bollard: a CLI command makes a handful of requests, then exits. A blocking
//! client needs no async runtime (start-up stays in the low milliseconds), and a hijacked
//! attach/exec stream is simply the socket itself after the `101 UPGRADED` head.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

/// A connected transport.
pub enum Conn {
    /// `unix://PATH`.
    Unix(UnixStream),
    /// `tcp://HOST:PORT` (plain).
    Tcp(TcpStream),
    /// `tcp://HOST:PORT` with TLS.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// A second handle on the same socket (for writing while another thread reads).
    /// Not available for TLS, whose session state cannot be shared between threads.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Tls(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "interactive streams (stdin) are not supported over TLS yet",
                ))
            }
        })
    }

    /// Half-close: no more bytes from us.
    pub fn shutdown_write(&mut self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tls(s) => {
                s.conn.send_close_notify();
                s.flush()
            }
        };
    }

    /// Close both directions (wakes a blocked reader).
    pub fn shutdown_both(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Tls(s) => s.sock.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(b),
            Conn::Tcp(s) => s.read(b),
            Conn::Tls(s) => match s.read(b) {
                // a peer closing without close_notify ends the stream, as Go's client treats it
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(b),
            Conn::Tcp(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// host:port.
    Tcp(String),
}

impl Endpoint {
    /// Parse `unix:///path`, `/path`, `tcp://host:port`, `host:port`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("invalid host {s:?}: empty socket path"));
            }
            Ok(Endpoint::Unix(p.to_string()))
        } else if s.starts_with('/') {
            Ok(Endpoint::Unix(s.to_string()))
        } else if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            if a.is_empty() {
                return Err(format!("invalid host {s:?}"));
            }
            Ok(Endpoint::Tcp(if a.contains(':') {
                a.to_string()
            } else {
                format!("{a}:2375")
            }))
        } else if s.contains("://") {
            Err(format!("invalid host {s:?}: unsupported protocol"))
        } else {
            Ok(Endpoint::Tcp(s.to_string()))
        }
    }

    /// The URL form, as shown in messages.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{p}"),
            Endpoint::Tcp(a) => format!("tcp://{a}"),
        }
    }

    /// Open a connection (TLS over tcp when `tls` is given).
    pub fn connect(&self, tls: Option<&std::sync::Arc<rustls::ClientConfig>>) -> io::Result<Conn> {
        match self {
            Endpoint::Unix(p) => UnixStream::connect(p).map(Conn::Unix),
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                let _ = s.set_nodelay(true);
                match tls {
                    None => Ok(Conn::Tcp(s)),
                    Some(cfg) => {
                        let host = a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a);
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        let name = rustls::pki_types::ServerName::try_from(host.to_string())
                            .map_err(|e| {
                                io::Error::new(
                                    io::ErrorKind::InvalidInput,
                                    format!("server name {host:?}: {e}"),
                                )
                            })?;
                        let c = rustls::ClientConnection::new(cfg.clone(), name)
                            .map_err(io::Error::other)?;
                        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(c, s))))
                    }
                }
            }
        }
    }
}

/// A request body.
pub enum Body {
    /// No body (Content-Length: 0 for POST/PUT).
    None,
    /// Bytes with a content type.
    Bytes(&'static str, Vec<u8>),
    /// A stream sent with chunked encoding.
    Stream(&'static str, Box<dyn Read>),
}

/// A parsed response head plus a body reader.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header (lowercased name, value) pairs.
    pub headers: Vec<(String, String)>,
    reader: BufReader<Conn>,
    kind: BodyKind,
}

enum BodyKind {
    Length(u64),
    Chunked { left: u64, done: bool },
    Eof,
}

impl Response {
    /// First header value with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Read the whole body.
    pub fn bytes(mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        Ok(v)
    }

    /// The raw reader after a 101 upgrade, keeping buffered bytes.
    pub fn into_upgraded(self) -> BufReader<Conn> {
        self.reader
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.kind {
            BodyKind::Length(0) => Ok(0),
            BodyKind::Length(n) => {
                let max = (*n).min(buf.len() as u64) as usize;
                let r = self.reader.read(&mut buf[..max])?;
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the end of the response body",
                    ));
                }
                *n -= r as u64;
                Ok(r)
            }
            BodyKind::Eof => self.reader.read(buf),
            BodyKind::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    self.reader.read_line(&mut line)?;
                    if line.trim().is_empty() {
                        // the CRLF after the previous chunk
                        line.clear();
                        self.reader.read_line(&mut line)?;
                    }
                    if line.is_empty() {
                        *done = true;
                        return Ok(0);
                    }
                    let hex = line.trim().split(';').next().unwrap_or("");
                    let size = u64::from_str_radix(hex, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")
                    })?;
                    if size == 0 {
                        *done = true;
                        // trailers until the empty line
                        loop {
                            let mut t = String::new();
                            if self.reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                                break;
                            }
                        }
                        return Ok(0);
                    }
                    *left = size;
                }
                let max = (*left).min(buf.len() as u64) as usize;
                let r = self.reader.read(&mut buf[..max])?;
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunk",
                    ));
                }
                *left -= r as u64;
                Ok(r)
            }
        }
    }
}

/// Percent-encode a query component.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Send one request on a fresh connection and parse the response head.
pub fn send(
    conn: Conn,
    method: &str,
    path: &str,
    extra_headers: &[(&str, String)],
    body: Body,
    upgrade: bool,
) -> io::Result<Response> {
    let mut w = conn;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: berth-cli/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if upgrade {
        head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
    } else {
        head.push_str("Connection: close\r\n");
    }
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &body {
        Body::None => {
            if method == "POST" || method == "PUT" {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        Body::Bytes(ct, b) => head.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        )),
        Body::Stream(ct, _) => head.push_str(&format!(
            "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n"
        )),
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    match body {
        Body::None => {}
        Body::Bytes(_, b) => w.write_all(&b)?,
        Body::Stream(_, mut r) => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                w.write_all(format!("{n:x}\r\n").as_bytes())?;
                w.write_all(&buf[..n])?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()?;
    read_head(w, method == "HEAD")
}

fn read_head(conn: Conn, head_only: bool) -> io::Result<Response> {
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            let msg = if line.as_bytes().first() == Some(&0x15) {
                "the daemon answered with TLS: connect with --tls or --tlsverify".to_string()
            } else {
                format!("malformed HTTP status line {:?}", line.trim_end())
            };
            io::Error::new(io::ErrorKind::InvalidData, msg)
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let kind = if head_only || status == 204 || status == 304 {
        BodyKind::Length(0)
    } else if status == 101 {
        BodyKind::Eof
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        BodyKind::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse().ok()) {
        BodyKind::Length(n)
    } else {
        BodyKind::Eof
    };
    Ok(Response {
        status,
        headers,
        reader,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:///run/x.sock").unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1").unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!(Endpoint::parse("ssh://x").is_err());
        assert_eq!(enc("a b/c:d"), "a%20b%2Fc%3Ad");
    }

    #[test]
    fn chunked_body() {
        let (a, mut b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut req = [0u8; 4096];
            let _ = b.read(&mut req);
            b.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                .unwrap();
        });
        let r = send(Conn::Unix(a), "GET", "/x", &[], Body::None, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes().unwrap(), b"hello world");
    }
}
