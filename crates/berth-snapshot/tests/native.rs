//! Native snapshotter: merging hostile overlay-form uppers stays inside the snapshot.

use std::fs;
use std::os::unix::fs::symlink;

use berth_snapshot::testsuite::{opaque, temp_root, whiteout};
use berth_snapshot::{NativeSnapshotter, Snapshotter};

#[test]
fn merge_never_follows_symlinks_out_of_the_snapshot() {
    let root = temp_root();
    let outside = root.path().join("outside");
    fs::create_dir_all(outside.join("etc")).unwrap();
    fs::write(outside.join("etc/passwd"), "host").unwrap();
    fs::write(outside.join("victim"), "host").unwrap();
    let s = NativeSnapshotter::open(root.path().join("snapshots")).unwrap();

    // Layer 1 plants symlinks to the outside.
    s.prepare("x1", None).unwrap();
    let up = s.upper_dir("x1").unwrap();
    symlink(&outside, up.join("link")).unwrap();
    symlink(outside.join("victim"), up.join("file-link")).unwrap();
    s.commit("l1", "x1").unwrap();

    // Layer 2 aims whiteouts, an opaque dir and a file write through them.
    s.prepare("x2", Some("l1")).unwrap();
    let up = s.upper_dir("x2").unwrap();
    fs::create_dir_all(up.join("link/etc")).unwrap();
    whiteout(&up.join("link/etc/passwd"));
    opaque(&up.join("link/etc"));
    fs::write(up.join("file-link"), "overwritten").unwrap();
    s.commit("l2", "x2").unwrap();

    assert_eq!(
        fs::read_to_string(outside.join("etc/passwd")).unwrap(),
        "host"
    );
    assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "host");

    // Inside, the symlinks were replaced by the layer's entries.
    let v = s.view("v", Some("l2")).unwrap();
    let tree = std::path::PathBuf::from(&v[0].source);
    assert!(fs::symlink_metadata(tree.join("link")).unwrap().is_dir());
    assert!(!tree.join("link/etc/passwd").exists());
    assert_eq!(
        fs::read_to_string(tree.join("file-link")).unwrap(),
        "overwritten"
    );
    assert!(!fs::symlink_metadata(tree.join("file-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // No overlay markers survive in the native tree.
    let mut buf = [0u8; 8];
    assert!(rustix::fs::lgetxattr(
        tree.join("link/etc"),
        "trusted.overlay.opaque",
        &mut buf[..]
    )
    .is_err());
}
