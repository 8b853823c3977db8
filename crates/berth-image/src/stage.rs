//! Speculative unpacking during a load: a blob that looks like a layer is applied into a
//! private staging directory by a worker thread *while* it streams into the content store, so
//! ingest (read, hash, write, fsync) and apply (parse, create files) run on two cores and the
//! archive is read once.
//!
//! Docker's archives name the layer order only in `manifest.json`, written last, so a layer's
//! parent is unknown while it streams. Overlay-form layer content does not depend on the parent
//! (whiteouts are 0/0 devices, opaque dirs an xattr), so the staged tree is moved into the
//! snapshot's upper dir once the chain is known (`rename` of the top-level entries: same
//! filesystem, O(entries at the root)). A staged layer is only used when its computed diff id
//! equals the config's; anything else is discarded and applied from the stored blob as usual.
//!
//! Staging lives under `<data_root>/tmp/load-<pid>-<nanos>/` (mode 0700); it is removed when the
//! load ends, and at open for loads whose process is gone.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use berth_core::Digest;

use crate::layer::{apply_layer, ApplyOptions, ApplyReport, WhiteoutMode};

/// Blobs smaller than this are not worth a worker thread.
pub(crate) const STAGE_MIN_SIZE: u64 = 1 << 20;
/// Chunks in flight per worker (each up to the copy buffer size).
const CHANNEL_DEPTH: usize = 16;

/// Whether the first bytes of a blob look like a layer: gzip, zstd, or a tar header.
pub(crate) fn looks_like_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    /// Spent buffers go back to the feeder for reuse.
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    let spent = std::mem::replace(&mut self.cur, v);
                    let _ = self.back.try_send(spent);
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // sender gone: end of stream
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One speculative apply in progress.
pub(crate) struct Job {
    tx: Option<SyncSender<Vec<u8>>>,
    pool: Receiver<Vec<u8>>,
    handle: JoinHandle<Option<ApplyReport>>,
    dir: PathBuf,
}

impl Job {
    /// Hand the worker the next bytes of the blob; a worker that gave up is ignored.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if let Some(tx) = &self.tx {
            let mut buf = self.pool.try_recv().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(data);
            if tx.send(buf).is_err() {
                self.tx = None;
            }
        }
    }
}

/// A layer applied into staging.
#[derive(Debug)]
pub(crate) struct Staged {
    pub dir: PathBuf,
    pub report: ApplyReport,
}

/// The staging area of one load.
pub(crate) struct Stager {
    dir: PathBuf,
    next: u64,
    pending: Vec<(Digest, Job)>,
}

fn pid_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Remove staging directories of loads whose process no longer exists.
pub(crate) fn cleanup_dead(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("load-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Stager {
    /// A new staging area under `tmp`.
    pub(crate) fn new(tmp: &Path) -> io::Result<Stager> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(tmp)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = tmp.join(format!("load-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Stager {
            dir,
            next: 0,
            pending: Vec::new(),
        })
    }

    /// Start applying a blob whose bytes will be fed to the returned job.
    pub(crate) fn start(&mut self) -> Option<Job> {
        let dir = self.dir.join(self.next.to_string());
        self.next += 1;
        std::fs::DirBuilder::new().mode(0o755).create(&dir).ok()?;
        let (tx, rx) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH);
        let (back, pool) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
        let root = dir.clone();
        let handle = std::thread::Builder::new()
            .name("berth-stage".into())
            .spawn(move || {
                let mut r = ChannelReader {
                    rx,
                    back,
                    cur: Vec::new(),
                    pos: 0,
                };
                let opts = ApplyOptions::with_whiteout(WhiteoutMode::Overlay);
                let res = apply_layer(&root, &mut r, &opts).ok();
                // Drain so the feeder never blocks on a worker that stopped early.
                let _ = io::copy(&mut r, &mut io::sink());
                res
            })
            .ok()?;
        Some(Job {
            tx: Some(tx),
            pool,
            handle,
            dir,
        })
    }

    /// The job's blob was committed as `digest`.
    pub(crate) fn done(&mut self, digest: Digest, mut job: Job) {
        job.tx = None;
        self.pending.push((digest, job));
    }

    /// A job whose blob was not committed.
    pub(crate) fn discard(&mut self, mut job: Job) {
        job.tx = None;
        let _ = job.handle.join();
        let _ = std::fs::remove_dir_all(&job.dir);
    }

    /// Wait for every worker; successful applies by blob digest.
    pub(crate) fn finish(&mut self) -> HashMap<Digest, Staged> {
        let mut out = HashMap::new();
        for (d, job) in self.pending.drain(..) {
            match job.handle.join() {
                Ok(Some(report)) if !out.contains_key(&d) => {
                    out.insert(
                        d,
                        Staged {
                            dir: job.dir,
                            report,
                        },
                    );
                }
                _ => {
                    let _ = std::fs::remove_dir_all(&job.dir);
                }
            }
        }
        out
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        for (_, job) in self.pending.drain(..) {
            drop(job.tx);
            let _ = job.handle.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Move a staged tree's top-level entries into an (empty) upper dir and copy the root's owner,
/// mode, times and overlay opaque marker.
pub(crate) fn move_into(staged: &Path, upper: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(staged)? {
        let e = e?;
        // A readdir name is one component: the join cannot leave either directory.
        std::fs::rename(e.path(), upper.join(e.file_name()))?;
    }
    let m = std::fs::symlink_metadata(staged)?;
    std::os::unix::fs::chown(upper, Some(m.uid()), Some(m.gid()))?;
    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    if let Ok(v) = rustix::fs::lgetxattr(staged, "trusted.overlay.opaque", &mut [0u8; 8]) {
        if v > 0 {
            rustix::fs::lsetxattr(
                upper,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )?;
        }
    }
    let f = std::fs::File::open(upper)?;
    let times = std::fs::FileTimes::new()
        .set_modified(m.modified()?)
        .set_accessed(m.accessed()?);
    f.set_times(times)?;
    Ok(())
}
