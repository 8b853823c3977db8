//! Waiting for OOM events of a cgroup (for `events`): v1 through an eventfd registered on
//! `memory.oom_control`, v2 through inotify on `memory.events`.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

use crate::error::CgroupError;
use crate::manager::{kv_lookup, read_text, write_text};
use crate::Manager;

enum Kind {
    /// The eventfd, and the memory.oom_control file it is registered on (kept open).
    V1 { _control: File },
    /// The last `oom` count of memory.events.
    V2 { last: u64 },
}

/// Reports OOM events of one cgroup. Obtain it with [`Manager::oom_watcher`].
pub struct OomWatcher {
    fd: OwnedFd,
    dir: PathBuf,
    kind: Kind,
}

fn io_err(path: &Path, op: &'static str, e: rustix::io::Errno) -> CgroupError {
    CgroupError::Dir {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

impl Manager {
    /// Start watching the memory controller of the cgroup for OOM events.
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        if let Some(d) = self.v1_dir("memory") {
            let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| io_err(d, "eventfd for", e))?;
            let cpath = d.join("memory.oom_control");
            let control = File::open(&cpath).map_err(|source| CgroupError::Read {
                path: cpath.clone(),
                source,
            })?;
            write_text(
                &d.join("cgroup.event_control"),
                &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
            )?;
            return Ok(OomWatcher {
                fd: efd,
                dir: d.to_path_buf(),
                kind: Kind::V1 { _control: control },
            });
        }
        if let Some(d) = self.v2_dir() {
            let events = d.join("memory.events");
            let last = kv_lookup(&read_text(&events)?, "oom").unwrap_or(0);
            let ifd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                .map_err(|e| io_err(d, "inotify for", e))?;
            inotify::add_watch(&ifd, &events, inotify::WatchFlags::MODIFY)
                .map_err(|e| io_err(&events, "inotify watch", e))?;
            return Ok(OomWatcher {
                fd: ifd,
                dir: d.to_path_buf(),
                kind: Kind::V2 { last },
            });
        }
        Err(CgroupError::Unsupported(
            "oom events: no memory controller".into(),
        ))
    }
}

impl OomWatcher {
    /// The pollable descriptor (readable when something happened), for callers that multiplex.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wait up to `timeout` (forever with `None`) for OOM events. Returns the number of new
    /// events (0 on timeout), or `None` once the cgroup has been removed.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<u64>, CgroupError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts = left.map(|l| Timespec {
                tv_sec: l.as_secs() as _,
                tv_nsec: l.subsec_nanos() as _,
            });
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err(&self.dir, "poll oom events of", e)),
            }
            let ready = fds[0].revents().contains(PollFlags::IN);
            let mut buf = [0u8; 4096];
            let got = if ready {
                match rustix::io::read(&self.fd, &mut buf) {
                    Ok(n) => n,
                    Err(rustix::io::Errno::AGAIN) => 0,
                    Err(e) => return Err(io_err(&self.dir, "read oom events of", e)),
                }
            } else {
                0
            };
            if !self.dir.exists() {
                return Ok(None);
            }
            match &mut self.kind {
                Kind::V1 { .. } => {
                    if got == 8 {
                        return Ok(Some(u64::from_ne_bytes(
                            buf[..8].try_into().unwrap_or([0; 8]),
                        )));
                    }
                }
                Kind::V2 { last } => {
                    if got > 0 {
                        let text = match std::fs::read_to_string(self.dir.join("memory.events")) {
                            Ok(t) => t,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                            Err(source) => {
                                return Err(CgroupError::Read {
                                    path: self.dir.join("memory.events"),
                                    source,
                                })
                            }
                        };
                        let now = kv_lookup(&text, "oom").unwrap_or(*last);
                        if now > *last {
                            let n = now - *last;
                            *last = now;
                            return Ok(Some(n));
                        }
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Some(0));
            }
        }
    }
}
