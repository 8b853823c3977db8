//! Online garbage collection: mark from every manifest of every repository, sweep what no
//! manifest reaches and nobody used within the grace period. No stop-the-world: each blob is
//! decided in its own short transaction under its digest's stripe lock, which uploads and
//! manifest pushes of that digest also take.

use std::time::{Duration, SystemTime};

use berth_content::{Error as StoreError, Store as _};

use crate::error::Result;
use crate::meta::now_millis;
use crate::Inner;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Digests reachable from manifests.
    pub marked: usize,
    /// Blobs deleted.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_young: usize,
    /// Untagged referrers dropped because their subject is gone.
    pub referrers_dropped: usize,
    /// Upload sessions expired (idle longer than the grace period).
    pub uploads_expired: usize,
}

pub(crate) fn collect(inner: &Inner, grace: Duration, upload_idle: Duration) -> Result<GcReport> {
    let mut report = GcReport::default();
    let cutoff = now_millis().saturating_sub(grace.as_millis() as i64);
    let young = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let upload_cutoff = now_millis().saturating_sub(upload_idle.as_millis() as i64);
    let idle_since = SystemTime::now()
        .checked_sub(upload_idle)
        .unwrap_or(SystemTime::UNIX_EPOCH);

    // Stale upload sessions: idle (no data written) longer than `upload_idle`.
    for (id, started) in inner.meta.uploads()? {
        if started >= upload_cutoff {
            continue;
        }
        let reference = format!("upload-{id}");
        let idle = match inner.store.ingest_status(&reference) {
            Ok(s) => s.updated_at < idle_since,
            Err(StoreError::IngestNotFound(_)) => true,
            Err(e) => return Err(e.into()),
        };
        if !idle {
            continue;
        }
        // A parked writer holds the ingest's lock; an idle session's writer is let go first.
        drop(inner.take_writer(&id));
        match inner.store.abort(&reference) {
            Ok(()) | Err(StoreError::IngestNotFound(_)) => {
                inner.meta.delete_upload(&id)?;
                report.uploads_expired += 1;
            }
            Err(StoreError::Locked(_)) => {} // a request is writing right now
            Err(e) => return Err(e.into()),
        }
    }

    // Ingests of uploads that never got a session row (a monolithic POST cut off by a crash).
    let sessions: std::collections::HashSet<String> = inner
        .meta
        .uploads()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for ing in inner.store.ingests()? {
        let Some(id) = ing.reference.strip_prefix("upload-") else {
            continue;
        };
        if sessions.contains(id) || ing.updated_at >= idle_since {
            continue;
        }
        match inner.store.abort(&ing.reference) {
            Ok(()) => report.uploads_expired += 1,
            Err(StoreError::IngestNotFound(_)) | Err(StoreError::Locked(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    report.referrers_dropped = inner.meta.drop_orphan_referrers(cutoff)?;
    let marked = inner.meta.marked()?;
    report.marked = marked.len();
    for info in inner.store.list()? {
        let d = info.digest.to_string();
        if marked.contains(&d) {
            continue;
        }
        if info.created > young {
            report.kept_young += 1;
            continue;
        }
        let _g = inner.stripe(&info.digest);
        if inner.meta.sweep_blob(&d, cutoff)? {
            match inner.store.delete(&info.digest) {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            report.bytes_freed += info.size;
            report.deleted.push(d);
        } else {
            report.kept_young += 1;
        }
    }
    tracing::info!(
        target: "berth_registry::gc",
        marked = report.marked,
        deleted = report.deleted.len(),
        bytes_freed = report.bytes_freed,
        kept_young = report.kept_young,
        referrers_dropped = report.referrers_dropped,
        uploads_expired = report.uploads_expired,
        "garbage collection"
    );
    Ok(report)
}
