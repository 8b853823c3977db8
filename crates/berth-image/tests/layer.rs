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
    hardlink_then_overwrite,
    lower_symlink_then_file,
    hardlink_pax_linkpath_dotdot,
    whiteout_empty_name,
    symlink_chain_too_long,
    cve_2021_32760_late_dir_mode_via_symlink,
    cve_2021_32803_dir_cache_poisoning,
    cve_2021_32803_relative_symlink_cache,
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
        E::dir("home/"),
        E::dir("run/"),
        E::dir("srv/"),
        E::dir("dev/"),
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
        E::file("pax-time", "t")
            .pax("mtime", "1700000000.25")
            .pax("atime", "1600000123.5"),
        E::symlink("old-link", "etc/passwd").mtime(1_234_567_890),
        E::dir("gnu/"),
        E::file(format!("gnu/{}", "g".repeat(200)), "gnu long name").gnu_long(),
        E::file("v7dir/", "").mode(0o750),
        E::file("v7dir/inner", "i"),
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
    assert_eq!((t.atime(), t.atime_nsec()), (1_600_000_123, 500_000_000));
    let l = fs::symlink_metadata(root.join("old-link")).unwrap();
    assert_eq!(
        l.mtime(),
        1_234_567_890,
        "symlink times set without following it"
    );
    assert_eq!(
        fs::metadata(root.join("etc/passwd")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::metadata(root.join("bin/busybox")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::read(root.join("gnu").join("g".repeat(200))).unwrap(),
        b"gnu long name"
    );
    let v7 = fs::metadata(root.join("v7dir")).unwrap();
    assert!(v7.is_dir());
    assert_eq!(v7.mode() & 0o777, 0o750);
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

/// Unmounts on drop, so a failing test leaves no mount behind.
struct MountGuard(std::path::PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> MountGuard {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let ok = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(target)
        .status()
        .expect("run mount")
        .success();
    assert!(ok, "mount overlay {opts}");
    MountGuard(target.to_path_buf())
}

fn base_layer() -> Vec<u8> {
    tar(&[
        E::file("a", "a"),
        E::file("b", "b"),
        E::dir("d/"),
        E::file("d/x", "x"),
        E::file("d/y", "y"),
        E::dir("o/"),
        E::file("o/p", "p"),
        E::dir("o/q/"),
        E::file("o/q/r", "r"),
    ])
}

fn upper_layer() -> Vec<u8> {
    tar(&[
        E::file(".wh.a", ""),
        E::file("c", "c"),
        E::dir("d/"),
        E::file("d/.wh.x", ""),
        E::dir("o/"),
        E::file("o/new", "new"),
        E::file("o/.wh..wh..opq", ""),
        E::file(".wh..wh.plnk", ""),
    ])
}

fn names(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = ::tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

#[test]
fn whiteouts_overlay_mode_mount_and_diff_back() {
    let host = Host::new();
    let base = host.dir.path();
    let (lower, upper, work, merged) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    apply_layer(&lower, &base_layer()[..], &ApplyOptions::default()).unwrap();
    let r = apply_layer(&upper, &upper_layer()[..], &ApplyOptions::default()).unwrap();
    assert_eq!(r.skipped_entries, 1, ".wh..wh.plnk is ignored");
    let wh = fs::symlink_metadata(upper.join("a")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr(&upper.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(
        upper.join("o/new").exists(),
        "entries before the opaque marker stay"
    );

    {
        let _m = mount_overlay(&lower, &upper, &work, &merged);
        let mut seen: Vec<String> = manifest(&merged).into_keys().collect();
        seen.sort();
        assert_eq!(seen, ["b", "c", "d", "d/y", "o", "o/new"]);

        // Diff the upper back into a layer; applying it in Remove mode over the base gives
        // the merged view.
        let mut out = Vec::new();
        let rep = diff(&[&lower], &upper, &mut out, &DiffOptions::default()).unwrap();
        assert_eq!(rep.diff_id, Digest::sha256_of(&out));
        let n = names(&out);
        for want in [".wh.a", "d/.wh.x", "o/.wh..wh..opq", "o/new", "c"] {
            assert!(n.iter().any(|x| x == want), "{want} missing from {n:?}");
        }
        let flat = base.join("flat");
        fs::create_dir(&flat).unwrap();
        let rm = ApplyOptions::with_whiteout(WhiteoutMode::Remove);
        apply_layer(&flat, &base_layer()[..], &rm).unwrap();
        let r = apply_layer(&flat, &out[..], &rm).unwrap();
        assert_eq!(r.diff_id, rep.diff_id);
        assert_eq!(manifest(&flat), manifest(&merged));
    }
}

#[test]
fn opaque_remove_mode_keeps_implicit_parents_of_this_layer() {
    let host = Host::new();
    let root = host.root();
    let rm = ApplyOptions::with_whiteout(WhiteoutMode::Remove);
    apply_layer(&root, &base_layer()[..], &rm).unwrap();
    let layer = tar(&[
        E::file("o/new/deep/file", "n"),
        E::file("o/.wh..wh..opq", ""),
    ]);
    apply_layer(&root, &layer[..], &rm).unwrap();
    let mut seen: Vec<String> = manifest(&root.join("o")).into_keys().collect();
    seen.sort();
    assert_eq!(seen, ["new", "new/deep", "new/deep/file"]);
}

#[test]
fn whiteouts_remove_mode() {
    let host = Host::new();
    let root = host.root();
    let rm = ApplyOptions::with_whiteout(WhiteoutMode::Remove);
    apply_layer(&root, &base_layer()[..], &rm).unwrap();
    apply_layer(&root, &upper_layer()[..], &rm).unwrap();
    let mut seen: Vec<String> = manifest(&root).into_keys().collect();
    seen.sort();
    assert_eq!(seen, ["b", "c", "d", "d/y", "o", "o/new"]);
}

#[test]
fn round_trip_apply_diff_apply() {
    let host = Host::new();
    let a = host.root();
    apply_layer(&a, &tar(&rich_layer())[..], &ApplyOptions::default()).unwrap();
    let mut out1 = Vec::new();
    let d1 = diff(&[], &a, &mut out1, &DiffOptions::default()).unwrap();
    let mut out2 = Vec::new();
    let d2 = diff(&[], &a, &mut out2, &DiffOptions::default()).unwrap();
    assert_eq!(d1.diff_id, d2.diff_id, "diff is deterministic");
    assert_eq!(out1, out2);

    let b = host.dir.path().join("b");
    fs::create_dir(&b).unwrap();
    let r = apply_layer(&b, &out1[..], &ApplyOptions::default()).unwrap();
    assert_eq!(r.diff_id, d1.diff_id);
    assert_eq!(r.entries, d1.entries);
    let (ma, mb) = (manifest(&a), manifest(&b));
    assert_eq!(ma, mb);
    assert!(ma["bin/ping"].contains("nlink=2"), "{}", ma["bin/ping"]);

    // Compressed output: same diff_id, blob digest of the compressed bytes.
    for c in [Compression::Gzip, Compression::Zstd] {
        let mut out = Vec::new();
        let d = diff(&[], &a, &mut out, &DiffOptions::with_compression(c)).unwrap();
        assert_eq!(detect(&out), c);
        assert_eq!(d.diff_id, d1.diff_id);
        assert_eq!(d.compressed_digest, Digest::sha256_of(&out));
        assert_eq!(d.size, out.len() as u64);
    }
}

#[test]
fn diff_drops_overlay_xattrs_and_keeps_capabilities() {
    let host = Host::new();
    let root = host.root();
    apply_layer(&root, &tar(&rich_layer())[..], &ApplyOptions::default()).unwrap();
    rustix::fs::setxattr(
        root.join("etc/passwd"),
        "trusted.overlay.origin",
        b"x",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut out = Vec::new();
    diff(&[], &root, &mut out, &DiffOptions::default()).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("trusted.overlay"));
    assert!(text.contains("SCHILY.xattr.security.capability"));
}

#[test]
fn diff_dirs_two_full_trees() {
    let host = Host::new();
    let old = host.root();
    let new = host.dir.path().join("new");
    let check = host.dir.path().join("check");
    let rm = ApplyOptions::with_whiteout(WhiteoutMode::Remove);
    for d in [&old, &new, &check] {
        fs::create_dir_all(d).unwrap();
        apply_layer(d, &base_layer()[..], &rm).unwrap();
    }
    // Change `new` the way a container or a build step would.
    fs::remove_file(new.join("b")).unwrap();
    fs::remove_dir_all(new.join("o/q")).unwrap();
    fs::write(new.join("d/x"), "changed").unwrap();
    fs::write(new.join("added"), "added").unwrap();
    fs::write(new.join("d/y2"), "y2").unwrap();
    fs::remove_file(new.join("d/y2")).unwrap();
    fs::set_permissions(
        new.join("d/y"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    fs::remove_file(new.join("a")).unwrap();
    fs::create_dir(new.join("a")).unwrap();
    fs::write(new.join("a/inner"), "i").unwrap();
    fs::hard_link(new.join("added"), new.join("added2")).unwrap();
    fs::hard_link(new.join("o/p"), new.join("o/p2")).unwrap();

    let mut out = Vec::new();
    let rep = diff_dirs(&old, &new, &mut out, &DiffOptions::default()).unwrap();
    let n = names(&out);
    assert!(n.contains(&".wh.b".to_string()), "{n:?}");
    assert!(n.contains(&"o/.wh.q".to_string()), "{n:?}");
    assert!(!n.iter().any(|x| x == "d/y2"), "{n:?}");
    assert!(
        n.iter().any(|x| x == "d/"),
        "parent of a change is written: {n:?}"
    );
    let r = apply_layer(&check, &out[..], &rm).unwrap();
    assert_eq!(r.diff_id, rep.diff_id);
    assert_eq!(manifest(&check), manifest(&new));
}

#[test]
fn verified_digest_mismatch_is_corrupt() {
    let host = Host::new();
    let layer = tar(&[E::file("f", "x")]);
    let wrong = Digest::sha256_of(b"something else");
    let err = apply_layer_verified(&host.root(), &layer[..], &ApplyOptions::default(), &wrong)
        .unwrap_err();
    assert!(matches!(err, LayerError::DigestMismatch { .. }));
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let host2 = Host::new();
    let ok = Digest::sha256_of(&layer);
    apply_layer_verified(&host2.root(), &layer[..], &ApplyOptions::default(), &ok).unwrap();
}

#[test]
fn refused_entries_name_the_entry() {
    let host = Host::new();
    let err = apply_layer(
        &host.root(),
        &tar(&[E::file("../../etc/shadow", "x")])[..],
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("../../etc/shadow"), "{err}");
}

/// Deterministic xorshift for the randomized hostile archives.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Random archives mixing `..`, absolute names, symlinks to the host, hardlinks, whiteouts
/// and opaque markers: whatever the applier decides, nothing outside the root may change and
/// it must not panic.
#[test]
fn randomized_hostile_archives_stay_inside() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut applied = 0;
    for round in 0..300 {
        let host = Host::new();
        fs::create_dir(host.root().join("a")).unwrap();
        fs::write(host.root().join("a/f"), "lower").unwrap();
        let before = host.outside_manifest();
        let outside = host.outside().display().to_string();
        let secret = format!("{outside}/secret");
        let comps = [
            "a",
            "b",
            "s",
            "..",
            ".",
            "",
            "f",
            ".wh.f",
            ".wh..wh..opq",
            ".wh.a",
            &outside[1..],
        ];
        let targets = [
            "/",
            "..",
            "../..",
            "a",
            "s",
            "/proc/self/root",
            &outside,
            &secret,
            "a/f",
            "../outside/secret",
        ];
        let n = 1 + rng.next() % 12;
        let mut entries = Vec::new();
        for _ in 0..n {
            let depth = 1 + rng.next() % 4;
            let mut name = String::new();
            if rng.next() & 3 == 0 {
                name.push('/');
            }
            for i in 0..depth {
                if i > 0 {
                    name.push('/');
                }
                name.push_str(rng.pick(&comps));
            }
            let e = match rng.next() % 6 {
                0 => E::file(&name, "data"),
                1 => E::dir(format!("{name}/")),
                2 => E::symlink(&name, rng.pick(&targets)),
                3 => E::hardlink(&name, rng.pick(&targets)),
                4 => E::file(&name, "").mode(0),
                _ => E::chardev(&name, 0, 0),
            };
            entries.push(e);
        }
        let layer = tar(&entries);
        let mode = if round % 2 == 0 {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Remove
        };
        if apply_layer(&host.root(), &layer[..], &ApplyOptions::with_whiteout(mode)).is_ok() {
            applied += 1;
        }
        assert_eq!(
            host.outside_manifest(),
            before,
            "round {round}: outside changed by {:?}",
            entries
                .iter()
                .map(|e| (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.typ as char,
                    String::from_utf8_lossy(&e.link).into_owned()
                ))
                .collect::<Vec<_>>()
        );
    }
    eprintln!("{applied}/300 random archives applied, the rest refused");
    assert!(
        applied > 30,
        "only {applied} archives applied: the generator is too hostile to test much"
    );
}

/// With `metacopy=on`, a chmod in the merged view copies up only metadata: the upper file has
/// no data and `diff` must take it from the lower.
#[test]
fn diff_reads_metacopy_data_from_lowers() {
    let host = Host::new();
    let base = host.dir.path();
    let (lower, upper, work, merged) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    apply_layer(&lower, &base_layer()[..], &ApplyOptions::default()).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},metacopy=on",
        lower.display(),
        upper.display(),
        work.display()
    );
    let ok = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .expect("run mount")
        .success();
    assert!(ok, "mount overlay {opts}");
    let guard = MountGuard(merged.clone());
    fs::set_permissions(
        merged.join("d/x"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    drop(guard);
    assert!(
        xattr(&upper.join("d/x"), "trusted.overlay.metacopy").is_some(),
        "kernel made a metacopy"
    );

    let mut out = Vec::new();
    diff(&[&lower], &upper, &mut out, &DiffOptions::default()).unwrap();
    let check = base.join("check");
    fs::create_dir(&check).unwrap();
    apply_layer(&check, &out[..], &ApplyOptions::default()).unwrap();
    assert_eq!(fs::read(check.join("d/x")).unwrap(), b"x");
    assert_eq!(
        fs::metadata(check.join("d/x")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(xattr(&check.join("d/x"), "trusted.overlay.metacopy"), None);
}

#[test]
fn pipelined_apply_matches_single_thread_and_propagates_errors() {
    let plain = tar(&rich_layer());
    let zs = zstd::encode_all(&plain[..], 3).unwrap();
    let one = Host::new();
    let r1 = apply_layer(&one.root(), &zs[..], &ApplyOptions::default()).unwrap();
    let two = Host::new();
    let mut o = ApplyOptions::default();
    o.pipeline = true;
    let r2 = apply_layer(&two.root(), &zs[..], &o).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(manifest(&one.root()), manifest(&two.root()));

    // A refused entry early in a large layer: the reader stops, the error is the entry's.
    let mut es = vec![E::file("../escape", "x")];
    es.extend((0..200).map(|i| E::file(format!("f{i}"), vec![b'z'; 64 << 10])));
    let bad = tar(&es);
    let three = Host::new();
    let err = apply_layer(&three.root(), &bad[..], &o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("../escape"), "{err}");

    // A read error from the source wins over the worker's view of a cut stream.
    struct Failing<'a>(&'a [u8]);
    impl std::io::Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("network gone"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let four = Host::new();
    let err = apply_layer(&four.root(), Failing(&plain[..plain.len() / 2]), &o).unwrap_err();
    assert!(err.to_string().contains("network gone"), "{err}");
}

#[test]
fn apply_into_an_open_root_fd() {
    let host = Host::new();
    let dir = fs::File::open(host.root()).unwrap();
    let layer = tar(&[E::file("etc/hostname", "berth")]);
    let r = berth_image::layer::apply_layer_at(
        std::os::fd::AsFd::as_fd(&dir),
        &layer[..],
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.entries, 1);
    assert_eq!(
        fs::read(host.root().join("etc/hostname")).unwrap(),
        b"berth"
    );
}

#[test]
fn literal_mode_keeps_wh_names_and_owner_mapping() {
    let host = Host::new();
    let layer = tar(&[
        E::file(".wh.notes", "just a file").owner(1000, 1000),
        E::file("d/.wh..wh..opq", "also a file"),
        E::file("root-owned", "r"),
    ]);
    let mut o = ApplyOptions::with_whiteout(WhiteoutMode::Literal);
    o.id_map = Some(berth_image::layer::IdMap {
        uids: vec![(0, 100_000, 65_536)],
        gids: vec![(0, 200_000, 65_536)],
    });
    apply_layer(&host.root(), &layer[..], &o).unwrap();
    let md = fs::metadata(host.root().join(".wh.notes")).unwrap();
    assert_eq!((md.uid(), md.gid()), (101_000, 201_000));
    assert_eq!(
        fs::read(host.root().join("d/.wh..wh..opq")).unwrap(),
        b"also a file"
    );
    let md = fs::metadata(host.root().join("root-owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_000, 200_000));

    // An id outside the map is refused; an owner override replaces every owner.
    let h2 = Host::new();
    let big = tar(&[E::file("f", "x").owner(70_000, 0)]);
    let err = apply_layer(&h2.root(), &big[..], &o).unwrap_err();
    assert!(err.to_string().contains("not in the id map"), "{err}");
    let mut chown = ApplyOptions::default();
    chown.owner = Some((4242, 4343));
    apply_layer(&h2.root(), &big[..], &chown).unwrap();
    let md = fs::metadata(h2.root().join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4242, 4343));
}

#[test]
fn id_mapped_apply_then_diff_restores_archive_owners() {
    let host = Host::new();
    let map = berth_image::layer::IdMap {
        uids: vec![(0, 100_000, 65_536)],
        gids: vec![(0, 100_000, 65_536)],
    };
    let layer = tar(&[
        E::dir("home/").mtime(5),
        E::file("home/u", "u").owner(1000, 1001),
    ]);
    let mut o = ApplyOptions::default();
    o.id_map = Some(map.clone());
    apply_layer(&host.root(), &layer[..], &o).unwrap();
    let mut d = DiffOptions::default();
    d.id_map = Some(map);
    let mut out = Vec::new();
    diff(&[], &host.root(), &mut out, &d).unwrap();
    let mut a = ::tar::Archive::new(&out[..]);
    let owners: Vec<(String, u64, u64)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        [
            ("home/".to_string(), 0, 0),
            ("home/u".to_string(), 1000, 1001)
        ]
    );
}

/// Interop with GNU tar both ways: our diff output extracted by `tar -x`, and a `tar -c`
/// archive (PAX, xattrs) applied by us, give the same tree.
#[test]
fn gnu_tar_interop_both_ways() {
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: GNU tar is not installed");
        return;
    }
    let host = Host::new();
    let a = host.root();
    apply_layer(&a, &tar(&rich_layer())[..], &ApplyOptions::default()).unwrap();
    let want = manifest(&a);
    let xattr_flags = [
        "--xattrs",
        "--xattrs-include=*",
        "--same-owner",
        "--numeric-owner",
    ];

    let mut ours = Vec::new();
    diff(&[], &a, &mut ours, &DiffOptions::default()).unwrap();
    let ours_path = host.dir.path().join("ours.tar");
    fs::write(&ours_path, &ours).unwrap();
    let b = host.dir.path().join("b");
    fs::create_dir(&b).unwrap();
    let st = std::process::Command::new("tar")
        .args(xattr_flags)
        .arg("-xpf")
        .arg(&ours_path)
        .arg("-C")
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success(), "GNU tar could not extract our layer");
    assert_eq!(
        manifest(&b),
        want,
        "GNU tar's extraction of our diff differs"
    );

    let theirs_path = host.dir.path().join("theirs.tar");
    let st = std::process::Command::new("tar")
        .args(xattr_flags)
        .args(["--format=pax", "-cpf"])
        .arg(&theirs_path)
        .arg("-C")
        .arg(&a)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "GNU tar could not archive the tree");
    let c = host.dir.path().join("c");
    fs::create_dir(&c).unwrap();
    let theirs = fs::read(&theirs_path).unwrap();
    apply_layer(&c, &theirs[..], &ApplyOptions::default()).unwrap();
    assert_eq!(manifest(&c), want, "our apply of GNU tar's archive differs");
}
