//! The shim's control protocol, spoken over the unix stream socket `sock` in the container's
//! state directory.
//!
//! Every connection starts with ONE request: a JSON object on one line (`{"op":"start"}\n`).
//! The shim answers with one JSON [`Reply`] line. What follows depends on the request:
//!
//! | request | after the reply |
//! |---|---|
//! | `start`, `state`, `kill`, `resize`, `exec_state`, `close_stdin` | the shim closes the connection |
//! | `wait` | one more line, the [`ExitStatus`], when the container exits; then close |
//! | `attach` | shim → client: [`frame`]s (stream 1 stdout, 2 stderr; with a TTY everything is stream 1); client → shim: raw stdin bytes, a half-close (EOF) closes the container's stdin when `stdin_once` is configured. The shim closes the connection once the container's output has ended. |
//! | `exec` | like `attach` for the exec'd process, and a last frame on stream [`STREAM_EXIT`] carrying its [`ExitStatus`] as JSON |
//!
//! Frames are Docker's stdcopy frames: `[stream, 0, 0, 0, len_be32]` + payload, so the daemon
//! forwards them to a non-TTY client unchanged.

use serde::{Deserialize, Serialize};

/// Frame stream id: stdout.
pub const STREAM_STDOUT: u8 = 1;
/// Frame stream id: stderr.
pub const STREAM_STDERR: u8 = 2;
/// Frame stream id: the exit status of an exec'd process (JSON [`ExitStatus`]).
pub const STREAM_EXIT: u8 = 3;

/// The name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "sock";
/// The name of the configuration file inside the state directory.
pub const CONFIG_NAME: &str = "shim.json";
/// The name of the exit-status file inside the state directory (written atomically once the
/// container has exited; it outlives the shim so a restarted daemon can read it).
pub const EXIT_NAME: &str = "exit.json";
/// The shim's pid file inside the state directory.
pub const PID_NAME: &str = "shim.pid";

/// A request (the first line of a connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the created container's process.
    Start,
    /// Stream the container's stdio.
    Attach {
        /// Forward the client's bytes to the container's stdin.
        #[serde(default)]
        stdin: bool,
        /// Send stdout.
        #[serde(default)]
        stdout: bool,
        /// Send stderr.
        #[serde(default)]
        stderr: bool,
    },
    /// Answer with the exit status once the container has exited.
    Wait,
    /// The container's state.
    State,
    /// Send a signal to the init (`all`: to every process of the container).
    Kill {
        /// Signal number.
        signal: i32,
        /// Every process.
        #[serde(default)]
        all: bool,
    },
    /// Set the terminal size of the container (or of exec `exec`).
    Resize {
        /// An exec id, or the container.
        #[serde(default)]
        exec: Option<String>,
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Run a process in the container; the connection becomes its stdio stream.
    Exec {
        /// The exec id (chosen by the daemon).
        id: String,
        /// The OCI process (args, env, cwd, user, terminal, capabilities...).
        process: serde_json::Value,
        /// Forward stdin.
        #[serde(default)]
        stdin: bool,
        /// Send stdout.
        #[serde(default = "yes")]
        stdout: bool,
        /// Send stderr.
        #[serde(default = "yes")]
        stderr: bool,
    },
    /// The state of exec `id`.
    ExecState {
        /// Exec id.
        id: String,
    },
    /// Close the container's stdin.
    CloseStdin,
}

fn yes() -> bool {
    true
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// When it exited (RFC 3339 with nanoseconds).
    pub finished_at: String,
    /// Whether the kernel OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
}

/// The shim's answer to a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure's [`berth_core::ErrorKind`] name (`NotFound`, `Conflict`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `created`, `running`, `exited` (state), or `running`/`exited` for an exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Host pid of the container's init (or of the exec'd process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// When the process was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The exit status, once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

impl Reply {
    /// A success.
    pub fn ok() -> Self {
        Reply {
            ok: true,
            ..Default::default()
        }
    }

    /// A failure.
    pub fn err(kind: berth_core::ErrorKind, msg: impl Into<String>) -> Self {
        Reply {
            ok: false,
            error: Some(msg.into()),
            kind: Some(format!("{kind:?}")),
            ..Default::default()
        }
    }

    /// The failure's kind.
    pub fn error_kind(&self) -> berth_core::ErrorKind {
        kind_from_name(self.kind.as_deref().unwrap_or(""))
    }
}

/// An [`berth_core::ErrorKind`] from its `Debug` name (unknown names are `Internal`).
pub fn kind_from_name(s: &str) -> berth_core::ErrorKind {
    use berth_core::ErrorKind as K;
    match s {
        "NotFound" => K::NotFound,
        "Conflict" => K::Conflict,
        "InvalidInput" => K::InvalidInput,
        "PermissionDenied" => K::PermissionDenied,
        "Unauthorized" => K::Unauthorized,
        "Unsupported" => K::Unsupported,
        "Corrupt" => K::Corrupt,
        _ => K::Internal,
    }
}

/// One frame: header + payload (payloads are at most 32 KiB here).
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let l = (data.len() as u32).to_be_bytes();
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0, l[0], l[1], l[2], l[3]]);
    v.extend_from_slice(data);
    v
}

/// Split a complete frame off the front of `buf`: (stream, payload, bytes consumed).
pub fn parse_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    Some((buf[0], &buf[8..8 + len], 8 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r: Request =
            serde_json::from_str(r#"{"op":"attach","stdin":true,"stdout":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Start).unwrap(),
            r#"{"op":"start"}"#
        );
        let k: Request = serde_json::from_str(r#"{"op":"kill","signal":9}"#).unwrap();
        assert_eq!(
            k,
            Request::Kill {
                signal: 9,
                all: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"bogus"}"#).is_err());
    }

    #[test]
    fn frames_round_trip() {
        let mut b = frame(STREAM_STDOUT, b"hello\n");
        assert_eq!(&b[..8], b"\x01\x00\x00\x00\x00\x00\x00\x06");
        b.extend(frame(STREAM_EXIT, b"{}"));
        let (s, p, n) = parse_frame(&b).unwrap();
        assert_eq!((s, p), (1, &b"hello\n"[..]));
        let (s, p, _) = parse_frame(&b[n..]).unwrap();
        assert_eq!((s, p), (3, &b"{}"[..]));
        assert!(parse_frame(&b[..5]).is_none());
    }

    #[test]
    fn reply_kinds() {
        let r = Reply::err(berth_core::ErrorKind::NotFound, "no");
        let s = serde_json::to_string(&r).unwrap();
        let back: Reply = serde_json::from_str(&s).unwrap();
        assert_eq!(back.error_kind(), berth_core::ErrorKind::NotFound);
        assert!(!back.ok);
    }
}
