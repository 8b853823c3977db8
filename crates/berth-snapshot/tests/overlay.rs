//! Overlay-specific behaviour: long chains, shared layers on disk once.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_snapshot::testsuite::{mount_at, temp_root};
use berth_snapshot::{OverlaySnapshotter, Snapshotter};

fn du(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    let m = fs::symlink_metadata(p).unwrap();
    let mut n = 0;
    if seen.insert((m.dev(), m.ino())) {
        n += m.blocks() * 512;
    }
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            n += du(&e.unwrap().path(), seen);
        }
    }
    n
}

#[test]
fn chain_of_128_layers_mounts_and_shows_all_files() {
    let root = temp_root();
    let s = OverlaySnapshotter::open(root.path().join("snapshots")).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let key = format!("extract-{i}");
        s.prepare(&key, parent.as_deref()).unwrap();
        let up = s.upper_dir(&key).unwrap();
        fs::write(up.join(format!("f{i}")), format!("{i}")).unwrap();
        fs::write(up.join("top"), format!("{i}")).unwrap();
        let name = format!("layer-{i}");
        s.commit(&name, &key).unwrap();
        parent = Some(name);
    }
    let mounts = s.prepare("container", parent.as_deref()).unwrap();
    let opt_len: usize = mounts[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        opt_len > 4096,
        "chain too short to exercise the limit: {opt_len}"
    );
    let mnt = root.path().join("mnt");
    let g = mount_at(&mounts, &mnt, "rw");
    for i in 0..128 {
        assert_eq!(
            fs::read_to_string(g.0.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(fs::read_to_string(g.0.join("top")).unwrap(), "127");
    fs::write(g.0.join("f0"), "changed").unwrap();
    drop(g);
    // The write landed in the container's upper, not in layer 0.
    assert_eq!(
        fs::read_to_string(s.upper_dir("container").unwrap().join("f0")).unwrap(),
        "changed"
    );

    let v = s.view("view", parent.as_deref()).unwrap();
    let g = mount_at(&v, &mnt, "ro");
    assert_eq!(fs::read_to_string(g.0.join("f0")).unwrap(), "0");
    assert_eq!(fs::read_dir(&g.0).unwrap().count(), 129);
}

#[test]
fn shared_base_layer_is_on_disk_once() {
    let root = temp_root();
    let sroot = root.path().join("snapshots");
    let s = OverlaySnapshotter::open(&sroot).unwrap();
    const BASE: usize = 16 << 20;
    // Base layer, committed under its chain ID.
    s.prepare("extract-base", None).unwrap();
    let data: Vec<u8> = (0..BASE).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(s.upper_dir("extract-base").unwrap().join("base.bin"), &data).unwrap();
    let base = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    s.commit(base, "extract-base").unwrap();
    // Two images on top of it; the second finds the base committed and reuses it.
    for img in ["a", "b"] {
        let key = format!("extract-{img}");
        s.prepare(&key, Some(base)).unwrap();
        fs::write(s.upper_dir(&key).unwrap().join(img), vec![1u8; 64 << 10]).unwrap();
        s.commit(&format!("chain-{img}"), &key).unwrap();
    }
    // Both images' containers see the base.
    let mnt = root.path().join("mnt");
    let ma = s.prepare("ctr-a", Some("chain-a")).unwrap();
    let mb = s.prepare("ctr-b", Some("chain-b")).unwrap();
    let ga = mount_at(&ma, &mnt, "a");
    let gb = mount_at(&mb, &mnt, "b");
    assert_eq!(
        fs::metadata(ga.0.join("base.bin")).unwrap().len(),
        BASE as u64
    );
    assert_eq!(
        fs::metadata(gb.0.join("base.bin")).unwrap().len(),
        BASE as u64
    );
    drop((ga, gb));

    let total = du(&sroot, &mut Default::default());
    let base_use = s.usage(base).unwrap().size;
    let a_use = s.usage("chain-a").unwrap().size;
    eprintln!(
        "measured: base layer {base_use} B, image-a top {a_use} B, whole snapshot root {total} B \
         (two full copies would be {} B)",
        2 * base_use
    );
    assert!(base_use >= BASE as u64);
    assert!(
        total < base_use + base_use / 4,
        "base stored twice? {total}"
    );
}
