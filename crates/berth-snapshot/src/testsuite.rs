//! The conformance suite every [`Snapshotter`] implementation must pass (in the spirit of
//! containerd's snapshot testsuite; our own cases).
//!
//! Each case takes a factory that opens the implementation at a root directory, so a case can
//! reopen it. Cases that mount need root; mounts are undone by a drop guard even on failure.
//! Run all with [`run_all`] or one by one (see the `conformance` integration test, which
//! makes one test per case and implementation).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_core::ErrorKind;

use crate::{mount_all, unmount, Kind, Snapshotter};

/// Opens an implementation at a root directory.
pub type Factory = fn(&Path) -> Box<dyn Snapshotter>;

/// A fresh temporary root named `berthtest-snap-*`.
pub fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berthtest-snap-")
        .tempdir()
        .expect("create temp dir")
}

/// Unmounts its target on drop.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

/// Mount `mounts` on a new directory `dir/name`; unmounted when the guard drops.
pub fn mount_at(mounts: &[berth_core::Mount], dir: &Path, name: &str) -> MountGuard {
    let target = dir.join(name);
    fs::create_dir_all(&target).expect("create mount target");
    mount_all(mounts, &target).expect("mount snapshot");
    MountGuard(target)
}

fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    let mut f = fs::File::create(p).unwrap();
    f.write_all(data).unwrap();
}

/// Make an overlay whiteout (0/0 character device) at `p`.
pub fn whiteout(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0),
        0,
    )
    .expect("mknod whiteout");
}

/// Mark `p` as an opaque overlay directory.
pub fn opaque(p: &Path) {
    rustix::fs::lsetxattr(
        p,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("set opaque xattr");
}

/// prepare → write → commit → prepare/view on top → list → remove rules.
pub fn lifecycle(factory: Factory) {
    let root = temp_root();
    let s = factory(root.path());
    let m = s.prepare("a", None).unwrap();
    assert_eq!(m.len(), 1);
    write(&s.upper_dir("a").unwrap().join("hello"), b"world");
    assert_eq!(s.stat("a").unwrap().kind, Kind::Active);
    s.commit("l1", "a").unwrap();
    assert_eq!(s.stat("a").unwrap_err().kind(), ErrorKind::NotFound);
    let l1 = s.stat("l1").unwrap();
    assert_eq!(l1.kind, Kind::Committed);
    assert_eq!(l1.parent, None);

    s.prepare("b", Some("l1")).unwrap();
    assert_eq!(s.stat("b").unwrap().parent.as_deref(), Some("l1"));
    let v = s.view("v", Some("l1")).unwrap();
    assert!(v.iter().all(|m| m.is_readonly()), "{v:?}");
    assert_eq!(s.stat("v").unwrap().kind, Kind::View);
    assert_eq!(s.mounts("v").unwrap(), v);

    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["l1", "b", "v"]);

    let e = s.remove("l1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    s.remove("b").unwrap();
    s.remove("v").unwrap();
    s.remove("l1").unwrap();
    assert!(s.list().unwrap().is_empty());
    // Only the registry is left on disk.
    let left: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("metadata.db"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Errors: duplicate keys, missing or uncommitted parents, committing a view.
pub fn errors(factory: Factory) {
    let root = temp_root();
    let s = factory(root.path());
    s.prepare("a", None).unwrap();
    assert_eq!(
        s.prepare("a", None).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.prepare("b", Some("nope")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.prepare("b", Some("a")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    s.view("v", None).unwrap();
    assert_eq!(
        s.commit("x", "v").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(s.upper_dir("v").is_err());
    s.prepare("c", None).unwrap();
    s.commit("l", "c").unwrap();
    assert_eq!(s.commit("l", "a").unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(s.mounts("l").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(
        s.commit("y", "l").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(s.remove("nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        s.prepare("", None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // Failed operations left no trace.
    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["a", "v", "l"]);
}

/// Usage counts a snapshot's own data, hard links once.
pub fn usage(factory: Factory) {
    let root = temp_root();
    let s = factory(root.path());
    s.prepare("e", None).unwrap();
    s.commit("le", "e").unwrap();
    let before = s.usage("le").unwrap();
    s.prepare("a", None).unwrap();
    let up = s.upper_dir("a").unwrap();
    write(&up.join("big"), &vec![7u8; 1 << 20]);
    fs::hard_link(up.join("big"), up.join("big-link")).unwrap();
    s.commit("l1", "a").unwrap();
    let u = s.usage("l1").unwrap();
    assert!(u.size >= (1 << 20), "{u:?}");
    assert!(
        u.size < (1 << 20) + (1 << 19),
        "hard link counted twice: {u:?}"
    );
    assert_eq!(u.inodes, before.inodes + 1, "{before:?} {u:?}");
    assert_eq!(s.usage("nope").unwrap_err().kind(), ErrorKind::NotFound);
}

/// State survives reopening; orphaned directories are removed at open.
pub fn persistence(factory: Factory) {
    let root = temp_root();
    {
        let s = factory(root.path());
        s.prepare("a", None).unwrap();
        write(&s.upper_dir("a").unwrap().join("f"), b"1");
        s.commit("l1", "a").unwrap();
        s.prepare("b", Some("l1")).unwrap();
    }
    fs::create_dir_all(root.path().join("999999/fs")).unwrap();
    // A crash between registering a snapshot and creating its directory.
    let crashed = {
        let s = factory(root.path());
        let m = s.prepare("crashed", None).unwrap();
        let dir = Path::new(&m[0].source).parent().unwrap().to_path_buf();
        fs::remove_dir_all(&dir).unwrap();
        dir
    };
    let s = factory(root.path());
    assert_eq!(s.stat("crashed").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!crashed.exists());
    assert_eq!(s.stat("l1").unwrap().kind, Kind::Committed);
    assert_eq!(s.stat("b").unwrap().parent.as_deref(), Some("l1"));
    assert!(!root.path().join("999999").exists(), "orphan kept");
    s.prepare("c", Some("l1")).unwrap();
}

/// Layers with whiteouts and opaque directories, mounted for real (needs root).
pub fn layers_and_whiteouts(factory: Factory) {
    let root = temp_root();
    let s = factory(root.path());
    s.prepare("x1", None).unwrap();
    let up = s.upper_dir("x1").unwrap();
    write(&up.join("keep"), b"keep");
    write(&up.join("gone"), b"gone");
    write(&up.join("gonedir/inner"), b"inner");
    write(&up.join("d/old1"), b"old1");
    write(&up.join("d/old2"), b"old2");
    write(&up.join("typechange"), b"file");
    s.commit("l1", "x1").unwrap();

    s.prepare("x2", Some("l1")).unwrap();
    let up = s.upper_dir("x2").unwrap();
    whiteout(&up.join("gone"));
    whiteout(&up.join("gonedir"));
    fs::create_dir(up.join("d")).unwrap();
    opaque(&up.join("d"));
    write(&up.join("d/new"), b"new");
    write(&up.join("typechange/nowadir"), b"x");
    write(&up.join("added"), b"added");
    s.commit("l2", "x2").unwrap();

    let mounts = s.prepare("rw", Some("l2")).unwrap();
    let mnt = root.path().join("mnt");
    let g = mount_at(&mounts, &mnt, "rw");
    let t = &g.0;
    assert_eq!(fs::read(t.join("keep")).unwrap(), b"keep");
    assert_eq!(fs::read(t.join("added")).unwrap(), b"added");
    assert!(!t.join("gone").exists());
    assert!(!t.join("gonedir").exists());
    assert_eq!(fs::read(t.join("d/new")).unwrap(), b"new");
    assert!(!t.join("d/old1").exists());
    assert!(!t.join("d/old2").exists());
    assert_eq!(fs::read(t.join("typechange/nowadir")).unwrap(), b"x");
    // Writable, and writes do not reach the committed layers.
    write(&t.join("keep"), b"changed");
    drop(g);

    let v = s.view("ro", Some("l2")).unwrap();
    let g = mount_at(&v, &mnt, "ro");
    assert_eq!(fs::read(g.0.join("keep")).unwrap(), b"keep");
    assert!(!g.0.join("gone").exists());
    assert!(
        fs::File::create(g.0.join("new")).is_err(),
        "view is writable"
    );
    drop(g);

    // An active snapshot without a parent mounts too.
    let m = s.prepare("empty", None).unwrap();
    let g = mount_at(&m, &mnt, "empty");
    write(&g.0.join("f"), b"f");
    drop(g);
    // What was written through the mount is what gets committed.
    s.commit("le", "empty").unwrap();
    let v = s.view("lev", Some("le")).unwrap();
    let g = mount_at(&v, &mnt, "lev");
    assert_eq!(fs::read(g.0.join("f")).unwrap(), b"f");
}

/// Concurrent unpacks of one layer: every thread prepares its own key, one commit under the
/// chain ID wins, the others get `Conflict` and remove their copy.
pub fn concurrent_commits(factory: Factory) {
    let root = temp_root();
    let s = factory(root.path());
    let outcomes: Vec<bool> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let key = format!("extract-{i}");
                    s.prepare(&key, None).unwrap();
                    write(&s.upper_dir(&key).unwrap().join("f"), b"same layer");
                    match s.commit("sha256:chain", &key) {
                        Ok(()) => true,
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                            s.remove(&key).unwrap();
                            false
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|w| **w).count(), 1);
    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["sha256:chain"]);
}

/// Every case, in order.
pub fn run_all(factory: Factory) {
    lifecycle(factory);
    errors(factory);
    usage(factory);
    persistence(factory);
    layers_and_whiteouts(factory);
    concurrent_commits(factory);
}
