//! The daemon's side of the shim protocol ([`berth_shim::protocol`]): spawning `berth shim`
//! and talking to its control socket with tokio.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use berth_shim::protocol::{Reply, Request, SOCKET_NAME};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::reaper::Reaper;
use crate::EngineError;

/// Spawn `<bin> shim <dir>` and return its ready line (the create result).
pub async fn spawn(bin: &Path, dir: &Path, reaper: &Reaper) -> Result<Reply, EngineError> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("shim")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    let child = cmd
        .spawn()
        .map_err(|e| EngineError::io(format!("spawn {} shim", bin.display()), e))?;
    let pid = child.id().map(|p| p as i32);
    if let Some(p) = pid {
        reaper.exempt(p);
    }
    let out = child.wait_with_output().await;
    if let Some(p) = pid {
        reaper.release(p);
    }
    let out = out.map_err(|e| EngineError::io("wait for shim", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(EngineError::internal(format!(
            "shim exited with {} without reporting (see {}/shim.log)",
            out.status,
            dir.display()
        )));
    }
    serde_json::from_str(line)
        .map_err(|e| EngineError::internal(format!("shim ready line {line:?}: {e}")))
}

/// A reply as a result.
pub fn check(r: Reply) -> Result<Reply, EngineError> {
    if r.ok {
        Ok(r)
    } else {
        Err(EngineError::new(
            r.error_kind(),
            r.error
                .clone()
                .unwrap_or_else(|| "shim request failed".into()),
        ))
    }
}

/// A client of one shim.
#[derive(Debug, Clone)]
pub struct ShimClient {
    sock: PathBuf,
}

/// An open stream after the reply line: read frames from `rd`, write stdin to `wr`.
pub struct ShimStream {
    /// Buffered read side (frames, or the exit line of `wait`).
    pub rd: BufReader<OwnedReadHalf>,
    /// Write side (stdin bytes).
    pub wr: OwnedWriteHalf,
}

impl ShimClient {
    /// The shim whose state directory is `dir`.
    pub fn new(dir: &Path) -> Self {
        ShimClient {
            sock: dir.join(SOCKET_NAME),
        }
    }

    /// Whether a shim answers on the socket (blocking; for start-up recovery).
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// Send `req`, read the reply line; the stream stays open.
    pub async fn open(&self, req: &Request) -> Result<(Reply, ShimStream), EngineError> {
        let s = UnixStream::connect(&self.sock)
            .await
            .map_err(|e| EngineError::io(format!("connect to shim {}", self.sock.display()), e))?;
        let (r, mut w) = s.into_split();
        let mut line = serde_json::to_vec(req)
            .map_err(|e| EngineError::internal(format!("encode shim request: {e}")))?;
        line.push(b'\n');
        w.write_all(&line)
            .await
            .map_err(|e| EngineError::io("send shim request", e))?;
        let mut rd = BufReader::new(r);
        let reply = read_reply(&mut rd).await?;
        Ok((reply, ShimStream { rd, wr: w }))
    }

    /// One request, one reply.
    pub async fn call(&self, req: &Request) -> Result<Reply, EngineError> {
        let (r, _) = self.open(req).await?;
        check(r)
    }
}

/// Read one JSON reply line.
pub async fn read_reply(rd: &mut BufReader<OwnedReadHalf>) -> Result<Reply, EngineError> {
    let mut s = String::new();
    let n = rd
        .read_line(&mut s)
        .await
        .map_err(|e| EngineError::io("read shim reply", e))?;
    if n == 0 {
        return Err(EngineError::internal("shim closed the connection"));
    }
    serde_json::from_str(s.trim())
        .map_err(|e| EngineError::internal(format!("shim reply {s:?}: {e}")))
}

/// Read one frame: (stream, payload); None at EOF.
pub async fn read_frame(rd: &mut BufReader<OwnedReadHalf>) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    rd.read_exact(&mut h).await.ok()?;
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut p = vec![0u8; len];
    rd.read_exact(&mut p).await.ok()?;
    Some((h[0], p))
}
