//! Metadata database and garbage collection against a real content store and snapshotter.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use berth_content::{LocalStore, Store};
use berth_core::{Digest, ErrorKind};
use berth_metadata::{
    chain_ids, gc_with, Db, GcOptions, Holder, Image, Resource, Target, GC_REF_CONTENT_PREFIX,
};
use berth_snapshot::Snapshotter;

struct Env {
    _dir: tempfile::TempDir,
    content: LocalStore,
    snaps: Box<dyn Snapshotter>,
    db: Db,
}

fn env() -> Env {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-meta-")
        .tempdir()
        .unwrap();
    let content = LocalStore::open(dir.path().join("content")).unwrap();
    let snaps = berth_snapshot::open(dir.path().join("snapshots")).unwrap();
    let db = Db::open(dir.path().join("berth.db")).unwrap();
    Env {
        _dir: dir,
        content,
        snaps,
        db,
    }
}

fn target(d: &Digest, mt: &str, size: usize) -> Target {
    Target {
        digest: d.clone(),
        media_type: mt.into(),
        size: size as u64,
    }
}

#[test]
fn images_are_normalised_tagged_and_deleted() {
    let e = env();
    let t = target(
        &Digest::sha256_of(b"m"),
        "application/vnd.oci.image.manifest.v1+json",
        1,
    );
    let id = Digest::sha256_of(b"config");
    let img =
        e.db.put_image(&Image::new("busybox", t.clone(), Some(id.clone())))
            .unwrap();
    assert_eq!(img.name, "docker.io/library/busybox:latest");
    assert_eq!(
        e.db.get_image("docker.io/library/busybox").unwrap().target,
        t
    );
    e.db.tag("busybox", "localhost:5000/bb:v1").unwrap();
    let names: Vec<String> =
        e.db.images_with_id(&id)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
    assert_eq!(
        names,
        vec!["docker.io/library/busybox:latest", "localhost:5000/bb:v1"]
    );
    assert_eq!(e.db.images_with_target(&t.digest).unwrap().len(), 2);
    // Untag keeps the other reference.
    e.db.delete_image("busybox:latest").unwrap();
    assert_eq!(
        e.db.get_image("busybox").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(e.db.list_images().unwrap().len(), 1);
    // Dangling images are named by their id.
    let dangling =
        e.db.put_image(&Image::new(id.to_string(), t.clone(), Some(id.clone())))
            .unwrap();
    assert_eq!(dangling.name, id.to_string());
    assert_eq!(
        e.db.put_image(&Image::new("Bad:Name", t.clone(), None))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // Labels and created time survive a replace.
    let mut again = Image::new("localhost:5000/bb:v1", t, Some(id));
    again.labels.insert("k".into(), "v".into());
    let stored = e.db.put_image(&again).unwrap();
    assert_eq!(stored.labels.get("k").map(String::as_str), Some("v"));
    assert!(stored.created <= stored.updated);
}

#[test]
fn leases_holds_and_labels() {
    let e = env();
    let l = e.db.create_lease("pull-1", None).unwrap();
    assert!(l.expires.is_none());
    assert_eq!(
        e.db.create_lease("pull-1", None).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let d = Digest::sha256_of(b"x");
    e.db.add_lease_resource("pull-1", &Resource::Content(d.clone()))
        .unwrap();
    e.db.add_lease_resource("pull-1", &Resource::Snapshot("s".into()))
        .unwrap();
    e.db.add_lease_resource("pull-1", &Resource::Content(d.clone()))
        .unwrap();
    assert_eq!(e.db.get_lease("pull-1").unwrap().resources.len(), 2);
    e.db.remove_lease_resource("pull-1", &Resource::Snapshot("s".into()))
        .unwrap();
    assert_eq!(
        e.db.get_lease("pull-1").unwrap().resources,
        vec![Resource::Content(d.clone())]
    );
    assert_eq!(
        e.db.add_lease_resource("nope", &Resource::Ingest("i".into()))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    e.db.create_lease("short", Some(Duration::ZERO)).unwrap();
    assert_eq!(e.db.expire_leases().unwrap(), vec!["short".to_string()]);
    assert_eq!(e.db.list_leases().unwrap().len(), 1);
    e.db.delete_lease("pull-1").unwrap();
    assert_eq!(
        e.db.delete_lease("pull-1").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let c1 = Holder::new("container", "c1");
    let c2 = Holder::new("container", "c2");
    let img = Resource::Image(Digest::sha256_of(b"cfg"));
    e.db.add_hold(&c1, &img).unwrap();
    e.db.add_hold(&c2, &img).unwrap();
    e.db.add_hold(&c1, &Resource::Snapshot("c1-rw".into()))
        .unwrap();
    assert_eq!(e.db.holders_of(&img).unwrap(), vec![c1.clone(), c2.clone()]);
    assert_eq!(e.db.release_holder(&c1).unwrap(), 2);
    assert_eq!(e.db.holders_of(&img).unwrap(), vec![c2.clone()]);
    e.db.remove_hold(&c2, &img).unwrap();
    assert!(e.db.list_holds().unwrap().is_empty());

    e.db.set_content_label(&d, "a", Some("1")).unwrap();
    e.db.set_content_label(&d, "b", Some("2")).unwrap();
    e.db.set_content_label(&d, "a", None).unwrap();
    let labels = e.db.content_labels(&d).unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels["b"], "2");
}

#[test]
fn database_persists_across_reopen() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-meta-")
        .tempdir()
        .unwrap();
    let p = dir.path().join("berth.db");
    {
        let db = Db::open(&p).unwrap();
        db.put_image(&Image::new(
            "alpine:3",
            target(&Digest::sha256_of(b"m"), "x", 3),
            None,
        ))
        .unwrap();
        db.create_lease("l", None).unwrap();
    }
    let db = Db::open(&p).unwrap();
    assert_eq!(db.get_image("alpine:3").unwrap().target.size, 3);
    assert_eq!(db.list_leases().unwrap().len(), 1);
}

/// Writes a fake image: layers (random-ish blobs), config with diff_ids, manifest, optionally
/// an index; commits its layer snapshots under their chain IDs. Returns (target, config
/// digest, layer digests, chain ids).
fn make_image(
    e: &Env,
    layers: &[&[u8]],
    docker: bool,
    index: bool,
) -> (Target, Digest, Vec<Digest>, Vec<Digest>) {
    let layer_digests: Vec<Digest> = layers
        .iter()
        .map(|l| e.content.write_blob(l, None).unwrap().digest().clone())
        .collect();
    // diff_ids: digests of the "uncompressed" layers; any distinct digests do here.
    let diff_ids: Vec<Digest> = layers
        .iter()
        .map(|l| Digest::sha256_of(&[b"diff:".as_slice(), l].concat()))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    })
    .to_string();
    let config_d = e
        .content
        .write_blob(config.as_bytes(), None)
        .unwrap()
        .digest()
        .clone();
    let (mt_manifest, mt_config, mt_layer) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt_manifest,
        "config": {"mediaType": mt_config, "digest": config_d.to_string(), "size": config.len()},
        "layers": layer_digests.iter().zip(layers).map(|(d, l)| serde_json::json!({
            "mediaType": mt_layer, "digest": d.to_string(), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string();
    let manifest_d = e
        .content
        .write_blob(manifest.as_bytes(), None)
        .unwrap()
        .digest()
        .clone();
    let chains = chain_ids(&diff_ids);
    let mut parent: Option<String> = None;
    for c in &chains {
        let name = c.to_string();
        if e.snaps.stat(&name).is_err() {
            let key = format!("extract-{name}");
            e.snaps.prepare(&key, parent.as_deref()).unwrap();
            let mut f =
                std::fs::File::create(e.snaps.upper_dir(&key).unwrap().join(c.encoded())).unwrap();
            f.write_all(b"layer").unwrap();
            e.snaps.commit(&name, &key).unwrap();
        }
        parent = Some(name);
    }
    let mut t = target(&manifest_d, mt_manifest, manifest.len());
    if index {
        let idx = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": mt_manifest, "digest": manifest_d.to_string(), "size": manifest.len(),
                           "platform": {"os": "linux", "architecture": "amd64"}}],
        })
        .to_string();
        let idx_d = e
            .content
            .write_blob(idx.as_bytes(), None)
            .unwrap()
            .digest()
            .clone();
        t = target(&idx_d, "application/vnd.oci.image.index.v1+json", idx.len());
    }
    (t, config_d, layer_digests, chains)
}

fn blobs(e: &Env) -> BTreeSet<Digest> {
    e.content
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect()
}

fn snapshot_keys(e: &Env) -> BTreeSet<String> {
    e.snaps.list().unwrap().into_iter().map(|i| i.key).collect()
}

#[test]
fn gc_keeps_what_images_leases_and_holds_reference() {
    let e = env();
    let opts = GcOptions {
        ingest_grace: Duration::ZERO,
    };
    let base: &[u8] = &[1u8; 4096];
    let (ta, cfg_a, layers_a, chains_a) = make_image(&e, &[base, &[2u8; 100]], false, true);
    let (tb, cfg_b, layers_b, chains_b) = make_image(&e, &[base, &[3u8; 100]], true, false);
    assert_eq!(chains_a[0], chains_b[0], "shared base layer");
    e.db.put_image(&Image::new("a:latest", ta.clone(), Some(cfg_a.clone())))
        .unwrap();
    e.db.put_image(&Image::new("b:latest", tb.clone(), Some(cfg_b.clone())))
        .unwrap();

    // A signature blob referenced only through a label on A's config.
    let sig = e
        .content
        .write_blob(b"signature", None)
        .unwrap()
        .digest()
        .clone();
    e.db.set_content_label(
        &cfg_a,
        &format!("{GC_REF_CONTENT_PREFIX}sig"),
        Some(&sig.to_string()),
    )
    .unwrap();
    // Garbage: an unreferenced blob and an orphan layer snapshot.
    let junk = e
        .content
        .write_blob(&[9u8; 10_000], None)
        .unwrap()
        .digest()
        .clone();
    e.snaps.prepare("orphan-x", None).unwrap();
    e.snaps.commit("orphan", "orphan-x").unwrap();
    // A container's rw layer (held) and an abandoned one (not held).
    e.snaps
        .prepare("ctr-held", Some(&chains_a[1].to_string()))
        .unwrap();
    e.snaps
        .prepare("ctr-unheld", Some(&chains_b[1].to_string()))
        .unwrap();
    e.db.add_hold(
        &Holder::new("container", "c1"),
        &Resource::Snapshot("ctr-held".into()),
    )
    .unwrap();
    // A pull in progress: lease on a blob, an extraction snapshot and an ingest.
    let pulled = e
        .content
        .write_blob(b"pulled", None)
        .unwrap()
        .digest()
        .clone();
    e.snaps.prepare("extract-pull", None).unwrap();
    let mut w = e.content.writer("ingest-pull", None).unwrap();
    w.write_all(b"part").unwrap();
    drop(w);
    let mut w = e.content.writer("ingest-stale", None).unwrap();
    w.write_all(b"part").unwrap();
    drop(w);
    e.db.create_lease("pull", None).unwrap();
    for r in [
        Resource::Content(pulled.clone()),
        Resource::Snapshot("extract-pull".into()),
        Resource::Ingest("ingest-pull".into()),
    ] {
        e.db.add_lease_resource("pull", &r).unwrap();
    }
    // An expired lease keeps nothing.
    let expiring = e
        .content
        .write_blob(b"expiring", None)
        .unwrap()
        .digest()
        .clone();
    e.db.create_lease("old", Some(Duration::ZERO)).unwrap();
    e.db.add_lease_resource("old", &Resource::Content(expiring.clone()))
        .unwrap();

    let r = gc_with(&e.content, e.snaps.as_ref(), &e.db, &opts).unwrap();
    assert_eq!(r.blobs_removed, 2, "{r:?}");
    assert_eq!(r.bytes_freed, 10_000 + 8, "{r:?}");
    assert_eq!(r.snapshots_removed, 2, "{r:?}");
    assert_eq!(r.ingests_removed, 1, "{r:?}");
    assert_eq!(r.leases_expired, 1, "{r:?}");
    let b = blobs(&e);
    assert!(!b.contains(&junk) && !b.contains(&expiring));
    for d in [&ta.digest, &tb.digest, &cfg_a, &cfg_b, &sig, &pulled]
        .into_iter()
        .chain(&layers_a)
        .chain(&layers_b)
    {
        assert!(b.contains(d), "{d} collected");
    }
    let s = snapshot_keys(&e);
    assert!(!s.contains("orphan") && !s.contains("ctr-unheld"), "{s:?}");
    for k in chains_a.iter().chain(&chains_b).map(|c| c.to_string()) {
        assert!(s.contains(&k), "{k} collected");
    }
    assert!(s.contains("ctr-held") && s.contains("extract-pull"));
    let ingests: Vec<String> = e
        .content
        .ingests()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(ingests, vec!["ingest-pull".to_string()]);

    // A second run finds nothing more.
    let r = gc_with(&e.content, e.snaps.as_ref(), &e.db, &opts).unwrap();
    assert_eq!((r.blobs_removed, r.snapshots_removed), (0, 0));

    // Removing image A frees what only A used; B's (shared base) stays.
    e.db.delete_image("a:latest").unwrap();
    e.db.release_holder(&Holder::new("container", "c1"))
        .unwrap();
    e.snaps.remove("ctr-held").unwrap();
    let r = gc_with(&e.content, e.snaps.as_ref(), &e.db, &opts).unwrap();
    // index, manifest, config, layer 2, signature.
    assert_eq!(r.blobs_removed, 5, "{r:?}");
    assert_eq!(r.snapshots_removed, 1, "{r:?}");
    let b = blobs(&e);
    assert!(b.contains(&layers_a[0]) && !b.contains(&layers_a[1]) && !b.contains(&sig));
    let s = snapshot_keys(&e);
    assert!(s.contains(&chains_a[0].to_string()) && !s.contains(&chains_a[1].to_string()));

    // The pull finishes without an image: its lease goes, and so does what it held.
    e.db.delete_lease("pull").unwrap();
    let r = gc_with(&e.content, e.snaps.as_ref(), &e.db, &opts).unwrap();
    assert_eq!(
        (r.blobs_removed, r.snapshots_removed, r.ingests_removed),
        (1, 1, 1)
    );
}

#[test]
fn gc_refuses_to_guess_on_a_corrupt_manifest() {
    let e = env();
    let bad = e
        .content
        .write_blob(b"{not json", None)
        .unwrap()
        .digest()
        .clone();
    let junk = e
        .content
        .write_blob(b"junk", None)
        .unwrap()
        .digest()
        .clone();
    e.db.put_image(&Image::new(
        "x:1",
        target(&bad, "application/vnd.oci.image.manifest.v1+json", 9),
        None,
    ))
    .unwrap();
    let err = berth_metadata::gc(&e.content, e.snaps.as_ref(), &e.db).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(e.content.exists(&junk).unwrap(), "swept despite the error");
}

#[test]
fn gc_keeps_a_missing_target_image_harmlessly() {
    // An image whose manifest blob is gone (e.g. removed by hand) does not stop GC.
    let e = env();
    let junk = e
        .content
        .write_blob(b"junk", None)
        .unwrap()
        .digest()
        .clone();
    e.db.put_image(&Image::new(
        "x:1",
        target(
            &Digest::sha256_of(b"absent"),
            "application/vnd.oci.image.index.v1+json",
            1,
        ),
        None,
    ))
    .unwrap();
    let opts = GcOptions {
        ingest_grace: Duration::ZERO,
    };
    let r = gc_with(&e.content, e.snaps.as_ref(), &e.db, &opts).unwrap();
    assert_eq!(r.blobs_removed, 1);
    assert!(!e.content.exists(&junk).unwrap());
}

/// A snapshotter that, when GC lists snapshots (mid-collection), has another process-like
/// handle of the database try to add a lease resource, and records when that succeeded.
struct Racer {
    inner: Box<dyn Snapshotter>,
    db_path: std::path::PathBuf,
    added_at: std::sync::Mutex<
        Option<(
            std::time::Instant,
            std::thread::JoinHandle<std::time::Instant>,
        )>,
    >,
}

impl Snapshotter for Racer {
    fn prepare(&self, k: &str, p: Option<&str>) -> berth_snapshot::Result<Vec<berth_core::Mount>> {
        self.inner.prepare(k, p)
    }
    fn view(&self, k: &str, p: Option<&str>) -> berth_snapshot::Result<Vec<berth_core::Mount>> {
        self.inner.view(k, p)
    }
    fn mounts(&self, k: &str) -> berth_snapshot::Result<Vec<berth_core::Mount>> {
        self.inner.mounts(k)
    }
    fn commit(&self, n: &str, k: &str) -> berth_snapshot::Result<()> {
        self.inner.commit(n, k)
    }
    fn remove(&self, k: &str) -> berth_snapshot::Result<()> {
        self.inner.remove(k)
    }
    fn stat(&self, k: &str) -> berth_snapshot::Result<berth_snapshot::Info> {
        self.inner.stat(k)
    }
    fn usage(&self, k: &str) -> berth_snapshot::Result<berth_snapshot::Usage> {
        self.inner.usage(k)
    }
    fn list(&self) -> berth_snapshot::Result<Vec<berth_snapshot::Info>> {
        let path = self.db_path.clone();
        let called = std::time::Instant::now();
        let h = std::thread::spawn(move || {
            let other = Db::open(&path).unwrap();
            other
                .add_lease_resource("pull", &Resource::Content(Digest::sha256_of(b"late")))
                .unwrap();
            std::time::Instant::now()
        });
        *self.added_at.lock().unwrap() = Some((called, h));
        std::thread::sleep(Duration::from_millis(300));
        self.inner.list()
    }
    fn upper_dir(&self, k: &str) -> berth_snapshot::Result<std::path::PathBuf> {
        self.inner.upper_dir(k)
    }
    fn name(&self) -> &'static str {
        "racer"
    }
}

#[test]
fn gc_excludes_lease_writers_until_its_sweep_is_done() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-meta-")
        .tempdir()
        .unwrap();
    let content = LocalStore::open(dir.path().join("content")).unwrap();
    let db_path = dir.path().join("berth.db");
    let db = Db::open(&db_path).unwrap();
    db.create_lease("pull", None).unwrap();
    let racer = Racer {
        inner: berth_snapshot::open(dir.path().join("snapshots")).unwrap(),
        db_path,
        added_at: Default::default(),
    };
    berth_metadata::gc(&content, &racer, &db).unwrap();
    let (called, h) = racer.added_at.lock().unwrap().take().unwrap();
    let added = h.join().unwrap();
    // The other writer waited out the rest of the collection (at least the 300 ms pause).
    assert!(
        added.duration_since(called) >= Duration::from_millis(300),
        "a lease was extended while GC was sweeping"
    );
    assert_eq!(db.get_lease("pull").unwrap().resources.len(), 1);
}
