//! Container state under the runtime root: one directory per id holding `state.json` (written
//! atomically: temp file + rename) and, until `start`, the `exec.fifo` the init waits on.
//! Operations on one container serialise on an exclusive `flock` of its directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the state file inside a container's directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the fifo the init waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Lifecycle status (OCI runtime spec, plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; the init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// The init exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The state as `runc state` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// OCI runtime spec version of the state.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init (0 once stopped, as runc prints).
    pub pid: i32,
    /// Current status.
    pub status: Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// Owner (empty for a root runtime, like runc).
    pub owner: String,
    /// Annotations from config.json.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What is persisted in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// Container id.
    pub id: String,
    /// Host pid of the init.
    pub pid: i32,
    /// Start time of the init (field 22 of /proc/PID/stat) to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// The spec the container was created from.
    pub spec: Spec,
    /// Serialized cgroup manager, if cgroups are in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<serde_json::Value>,
}

/// Validate a container id: runc's `^[\w+\-.]+$`, not starting with `.` (names starting
/// with a dot under the root are berth's own, e.g. the seccomp cache).
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// Liveness of a process, as far as /proc tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Alive with this start time.
    Alive(u64),
    /// A zombie (exited, not reaped yet).
    Zombie,
    /// No such process.
    Gone,
}

/// Parse state and start time from the contents of /proc/PID/stat.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    // after ')' fields are numbered from 3 (state); starttime is field 22
    let start = f.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// Liveness of `pid` from /proc.
pub fn liveness(pid: i32) -> Liveness {
    if pid <= 0 {
        return Liveness::Gone;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_stat)
    {
        Some(('Z', _)) | Some(('X', _)) => Liveness::Zombie,
        Some((_, start)) => Liveness::Alive(start),
        None => Liveness::Gone,
    }
}

/// Whether the init recorded in `p` still runs (same pid, same start time, not a zombie).
pub fn init_alive(p: &Persisted) -> bool {
    matches!(liveness(p.pid), Liveness::Alive(t) if t == p.pid_start_time)
}

/// The runtime root directory.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

/// An exclusive lock on one container's directory; released on drop.
pub struct Lock {
    _fd: OwnedFd,
}

impl Root {
    /// A root at `dir` (created on first use, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Create the directory of a new container; `Exists` if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir)
                .map_err(|e| Error::io(format!("create runtime root {}", self.dir.display()), e))?;
            let _ = rustix::fs::chmod(&self.dir, Mode::from_raw_mode(0o700));
        }
        let d = self.container_dir(id);
        match rustix::fs::mkdir(&d, Mode::from_raw_mode(0o711)) {
            Ok(()) => Ok(d),
            Err(rustix::io::Errno::EXIST) => Err(Error::Exists(id.to_string())),
            Err(e) => Err(Error::io(
                format!("create state directory {}", d.display()),
                e,
            )),
        }
    }

    /// Lock container `id`'s directory; `NotFound` if there is none.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let d = self.container_dir(id);
        let fd = rustix::fs::open(
            &d,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::NotFound(id.to_string()),
            e => Error::io(format!("open state directory {}", d.display()), e),
        })?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("lock state directory {}", d.display()), e))?;
        Ok(Lock { _fd: fd })
    }

    /// Read container `id`'s persisted state.
    pub fn load(&self, id: &str) -> Result<Persisted> {
        validate_id(id)?;
        let f = self.container_dir(id).join(STATE_FILE);
        let data = match fs::read(&f) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("read {}", f.display()), e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::io(format!("parse {}", f.display()), std::io::Error::other(e)))
    }

    /// Write container state atomically (temp file, fsync-free rename: state lives on tmpfs).
    pub fn save(&self, p: &Persisted) -> Result<()> {
        let d = self.container_dir(&p.id);
        let tmp = d.join(".state.json.tmp");
        let data = serde_json::to_vec(p)
            .map_err(|e| Error::io("serialize state", std::io::Error::other(e)))?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&data)?;
            fs::rename(&tmp, d.join(STATE_FILE))
        };
        write().map_err(|e| Error::io(format!("write {}", d.join(STATE_FILE).display()), e))
    }

    /// Remove container `id`'s directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let d = self.container_dir(id);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", d.display()), e)),
        }
    }

    /// Ids of all containers under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", self.dir.display()), e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && validate_id(n).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Write `contents` to `path` atomically (temp file in the same directory + rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_like_runc() {
        for ok in ["a", "abc-1_2+x.y", "A9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_proc_stat_with_spaces_in_comm() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(s), Some(('S', 123456)));
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&own).is_some());
    }

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Status::Running).unwrap(),
            "\"running\""
        );
    }
}
