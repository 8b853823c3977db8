//! Layer applier and diff integration tests (run as root: real xattrs, device nodes, owners,
//! overlay mounts).

mod corpus;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_core::{Digest, ErrorKind};
use berth_image::layer::{
    apply_layer, apply_layer_verified, detect, diff, diff_dirs, ApplyOptions, Compression,
    DiffOptions, LayerError, WhiteoutMode,
};
use corpus::cases::{self, Expect};
use corpus::{manifest, tar, xattr, Host, E};

fn run_case(name: &str) {
    let case = cases::all()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no corpus case {name}"));
    let host = Host::new();
    (case.setup)(&host);
    let before = host.outside_manifest();
    let layer = (case.layer)(&host);
    let res = apply_layer(&host.root(), &layer[..], &(case.opts)());
    match (case.expect, &res) {
        (Expect::Refused, Err(e)) => eprintln!("{name} ({}): refused: {e}", case.attack),
        (Expect::Applied, Ok(r)) => {
            eprintln!("{name} ({}): applied, {} entries", case.attack, r.entries)
        }
        _ => panic!(
            "{name} ({}): expected {:?}, got {res:?}",
            case.attack, case.expect
        ),
    }
    assert_eq!(
        host.outside_manifest(),
        before,
        "{name}: something outside the root changed"
    );
    (case.check)(&host);
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        mod hostile {
            $( #[test] fn $name() { super::run_case(stringify!($name)); } )*
        }
        #[test]
        fn corpus_is_complete() {
            let listed = [$(stringify!($name)),*];
            let all: Vec<_> = cases::all().into_iter().map(|c| c.name).collect();
            assert!(all.len() >= 20, "corpus has {} cases", all.len());
            for n in &all {
                assert!(listed.contains(n), "corpus case {n} has no test");
            }
            assert_eq!(listed.len(), all.len());
        }
    };
}

corpus_tests!(
    absolute_path,
    absolute_host_path,
    dotdot_prefix,
    dotdot_middle,
    dotdot_pax_long_name,
    dotdot_gnu_long_name,
    symlink_parent_absolute,
    symlink_parent_dotdot,
    symlink_swapped_mid_archive,
    symlink_swapped_to_relative_root,
    file_over_symlink,
    dir_over_symlink,
    preexisting_symlink_in_lower,
    hardlink_dotdot,
    hardlink_absolute_host_path,
    hardlink_through_symlink_parent,
    hardlink_to_symlink_outside,
    hardlink_to_directory,
    hardlink_to_itself,
    whiteout_dotdot,
    whiteout_absolute,
    whiteout_through_symlink,
    opaque_through_symlink,
    opaque_dotdot,
    whiteout_overlay_symlinked_parent,
    absurd_file_size,
    too_many_entries,
    decompression_bomb,
    huge_pax_header,
    device_not_allowed,
    nul_in_name,
    empty_name,
    dot_as_file,
    dot_dir_entry,
    duplicate_entries,
    file_over_dir_with_content,
    dir_mode_0000,
    xattr_injection,
    symlink_loop_parent,
    magic_link_parent,
    corrupt_checksum,
    truncated_stream,
    setuid_root_file_kept_in_root,
    fifo_and_device_types,
);

/// A normal layer using every entry kind and attribute.
fn rich_layer() -> Vec<E> {
    let long_dir = "d".repeat(120);
    vec![
        E::dir("bin/"),
        E::file("bin/busybox", vec![0x7fu8; 300_000]).mode(0o755),
        E::symlink("bin/sh", "busybox"),
        E::file("bin/ping", "ping")
            .mode(0o4755)
            .xattr("security.capability", cap_net_raw()),
        E::hardlink("bin/ping6", "bin/ping"),
        E::dir("etc/").mode(0o755),
        E::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        E::file("etc/shadow", "root:*::0:::::\n")
            .mode(0o640)
            .owner(0, 42),
        E::dir("home/user/")
            .owner(1000, 1000)
            .mode(0o700)
            .mtime(1_650_000_000),
        E::file("home/user/.profile", "x")
            .owner(1000, 1000)
            .xattr("user.note", "hello"),
        E::dir("tmp/").mode(0o1777),
        E::dir("srv/setgid/").mode(0o2775).owner(0, 50),
        E::fifo("run/fifo").mode(0o600),
        E::chardev("dev/null", 1, 3).mode(0o666),
        E::dir(format!("{long_dir}/")),
        E::file(format!("{long_dir}/{}", "f".repeat(150)), "long name"),
        E::symlink("longlink", format!("{long_dir}/{}", "f".repeat(150))),
        E::file("big-uid", "x").owner(3_000_000, 3_000_001),
        E::file("pax-time", "t").pax("mtime", "1700000000.25"),
    ]
}

/// A valid VFS_CAP_REVISION_2 security.capability value granting cap_net_raw.
fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // revision 2, effective
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted lo: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable lo
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted hi
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable hi
    v
}

#[test]
fn applies_every_entry_kind() {
    let host = Host::new();
    let root = host.root();
    let layer = tar(&rich_layer());
    let r = apply_layer(&root, &layer[..], &ApplyOptions::default()).unwrap();
    assert_eq!(r.diff_id, Digest::sha256_of(&layer));
    assert_eq!(r.compressed_digest, r.diff_id);
    assert_eq!(r.size, layer.len() as u64);
    assert_eq!(r.compression, Compression::None);
    assert_eq!(r.entries, rich_layer().len() as u64);

    let ping = fs::metadata(root.join("bin/ping")).unwrap();
    assert_eq!(ping.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(ping.nlink(), 2);
    assert_eq!(
        fs::metadata(root.join("bin/ping6")).unwrap().ino(),
        ping.ino()
    );
    assert_eq!(
        xattr(&root.join("bin/ping"), "security.capability"),
        Some(cap_net_raw())
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let shadow = fs::metadata(root.join("etc/shadow")).unwrap();
    assert_eq!((shadow.mode() & 0o777, shadow.gid()), (0o640, 42));
    let home = fs::metadata(root.join("home/user")).unwrap();
    assert_eq!(
        (home.uid(), home.mode() & 0o7777, home.mtime()),
        (1000, 0o700, 1_650_000_000)
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(root.join("srv/setgid")).unwrap().mode() & 0o7777,
        0o2775
    );
    assert_eq!(
        xattr(&root.join("home/user/.profile"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    let big = fs::metadata(root.join("big-uid")).unwrap();
    assert_eq!((big.uid(), big.gid()), (3_000_000, 3_000_001));
    let t = fs::metadata(root.join("pax-time")).unwrap();
    assert_eq!((t.mtime(), t.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(
        fs::metadata(root.join("bin/busybox")).unwrap().mtime(),
        1_600_000_000
    );
    let long = root.join("d".repeat(120)).join("f".repeat(150));
    assert_eq!(fs::read(&long).unwrap(), b"long name");
}

#[test]
fn gzip_and_zstd_are_detected() {
    let plain = tar(&rich_layer());
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(&plain).unwrap();
    let gz = g.finish().unwrap();
    let zs = zstd::encode_all(&plain[..], 3).unwrap();
    assert_eq!(detect(&gz), Compression::Gzip);
    assert_eq!(detect(&zs), Compression::Zstd);
    assert_eq!(detect(&plain), Compression::None);
    let base = Host::new();
    apply_layer(&base.root(), &plain[..], &ApplyOptions::default()).unwrap();
    let want = manifest(&base.root());
    for (bytes, c) in [(&gz, Compression::Gzip), (&zs, Compression::Zstd)] {
        let h = Host::new();
        let r = apply_layer(&h.root(), &bytes[..], &ApplyOptions::default()).unwrap();
        assert_eq!(r.compression, c);
        assert_eq!(
            r.diff_id,
            Digest::sha256_of(&plain),
            "diff_id is of the uncompressed tar"
        );
        assert_eq!(r.compressed_digest, Digest::sha256_of(bytes));
        assert_eq!(r.size, bytes.len() as u64);
        assert_eq!(r.uncompressed_size, plain.len() as u64);
        assert_eq!(manifest(&h.root()), want);
    }
}
