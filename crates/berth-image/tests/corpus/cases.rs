//! The hostile-layer corpus: each case names what it attacks, how the layer is built, what
//! the applier must do (refuse, or apply with the attack contained) and what must hold in the
//! filesystem afterwards. Every case also checks that nothing outside the root changed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use berth_image::layer::{ApplyOptions, WhiteoutMode};

use super::{tar, xattr, Host, E};

/// What the applier must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// apply_layer returns an error.
    Refused,
    /// apply_layer succeeds (the attack is contained inside the root).
    Applied,
}

pub struct Case {
    pub name: &'static str,
    pub attack: &'static str,
    pub expect: Expect,
    /// Prepare the root (lower content) before applying.
    pub setup: fn(&Host),
    /// The layer bytes (may reference the host's absolute paths).
    pub layer: fn(&Host) -> Vec<u8>,
    pub opts: fn() -> ApplyOptions,
    /// Extra checks after applying.
    pub check: fn(&Host),
}

fn none(_: &Host) {}
fn default_opts() -> ApplyOptions {
    ApplyOptions::default()
}
fn remove_opts() -> ApplyOptions {
    ApplyOptions::with_whiteout(WhiteoutMode::Remove)
}
fn abs(h: &Host, rel: &str) -> Vec<u8> {
    h.outside()
        .join(rel)
        .to_string_lossy()
        .into_owned()
        .into_bytes()
}
fn outside_secret_intact(h: &Host) {
    let p = h.outside().join("secret");
    assert_eq!(fs::read(&p).unwrap(), b"host secret");
    assert_eq!(
        fs::metadata(&p).unwrap().nlink(),
        1,
        "secret gained a hardlink"
    );
}

pub fn all() -> Vec<Case> {
    vec![
        Case {
            name: "absolute_path",
            attack: "absolute entry name /etc/passwd: must land in root/etc/passwd",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::file("/etc/passwd", "root:x:0:0")]),
            opts: default_opts,
            check: |h| assert_eq!(fs::read(h.root().join("etc/passwd")).unwrap(), b"root:x:0:0"),
        },
        Case {
            name: "absolute_host_path",
            attack: "absolute name spelling the host's outside dir",
            expect: Expect::Applied,
            setup: none,
            layer: |h| {
                let mut n = abs(h, "secret");
                n.truncate(n.len());
                tar(&[E::file(n, "pwned")])
            },
            opts: default_opts,
            check: |h| {
                let inside = h.root().join(h.outside().join("secret").strip_prefix("/").unwrap());
                assert_eq!(fs::read(inside).unwrap(), b"pwned");
            },
        },
        Case {
            name: "dotdot_prefix",
            attack: "../escape climbs out of the root",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("../outside/secret", "pwned")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "dotdot_middle",
            attack: "a/../../outside/secret climbs out after a descent",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::dir("a/"), E::file("a/../../outside/secret", "pwned")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "dotdot_pax_long_name",
            attack: "a .. escape hidden in a PAX path record longer than 100 bytes",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let name = format!("{}/{}", "../".repeat(40), "outside/secret");
                tar(&[E::file(name, "pwned")])
            },
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "dotdot_gnu_long_name",
            attack: "a .. escape hidden in a GNU ././@LongLink name",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let name = format!("{}{}", "../".repeat(40), "outside/secret");
                tar(&[E::file(name, "pwned").gnu_long()])
            },
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "symlink_parent_absolute",
            attack: "symlink to the host's outside dir, then a file written through it",
            expect: Expect::Refused,
            setup: none,
            layer: |h| tar(&[E::symlink("evil", abs(h, "")), E::file("evil/pwned", "x")]),
            opts: default_opts,
            check: |h| assert!(!h.outside().join("pwned").exists()),
        },
        Case {
            name: "symlink_parent_dotdot",
            attack: "symlink up/ -> ../../../.., then up/escape: must be clamped to the root",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::symlink("up", "../../../.."), E::file("up/escape", "x")]),
            opts: default_opts,
            check: |h| {
                assert_eq!(fs::read(h.root().join("escape")).unwrap(), b"x");
                assert!(fs::symlink_metadata(h.root().join("up")).unwrap().file_type().is_symlink());
            },
        },
        Case {
            name: "symlink_swapped_mid_archive",
            attack: "dir d/ with a file, then d replaced by a symlink to outside, then d/b",
            expect: Expect::Refused,
            setup: none,
            layer: |h| {
                tar(&[
                    E::dir("d/"),
                    E::file("d/a", "a"),
                    E::symlink("d", abs(h, "sub")),
                    E::file("d/b", "pwned"),
                ])
            },
            opts: default_opts,
            check: |h| assert!(!h.outside().join("sub/b").exists()),
        },
        Case {
            name: "symlink_swapped_to_relative_root",
            attack: "d replaced by a symlink to ../../outside (relative climb), then d/b",
            expect: Expect::Applied,
            setup: none,
            layer: |_| {
                tar(&[
                    E::dir("outside/"),
                    E::dir("d/"),
                    E::symlink("d", "../../outside"),
                    E::file("d/b", "contained"),
                ])
            },
            opts: default_opts,
            check: |h| {
                // ../../outside from the root clamps to /outside inside the root.
                assert_eq!(fs::read(h.root().join("outside/b")).unwrap(), b"contained");
                assert!(!h.outside().join("b").exists());
            },
        },
        Case {
            name: "file_over_symlink",
            attack: "symlink f -> outside secret, then a regular file f: must replace the link",
            expect: Expect::Applied,
            setup: none,
            layer: |h| tar(&[E::symlink("f", abs(h, "secret")), E::file("f", "mine")]),
            opts: default_opts,
            check: |h| {
                let md = fs::symlink_metadata(h.root().join("f")).unwrap();
                assert!(md.is_file());
                assert_eq!(fs::read(h.root().join("f")).unwrap(), b"mine");
            },
        },
        Case {
            name: "dir_over_symlink",
            attack: "symlink d -> outside, then dir d/ and d/x: the dir must replace the link",
            expect: Expect::Applied,
            setup: none,
            layer: |h| tar(&[E::symlink("d", abs(h, "")), E::dir("d/"), E::file("d/x", "x")]),
            opts: default_opts,
            check: |h| {
                assert!(fs::symlink_metadata(h.root().join("d")).unwrap().is_dir());
                assert!(h.root().join("d/x").exists());
                assert!(!h.outside().join("x").exists());
            },
        },
        Case {
            name: "preexisting_symlink_in_lower",
            attack: "the lower layer has etc -> host dir; the new layer writes etc/passwd",
            expect: Expect::Refused,
            setup: |h| std::os::unix::fs::symlink(h.outside(), h.root().join("etc")).unwrap(),
            layer: |_| tar(&[E::file("etc/passwd", "pwned")]),
            opts: default_opts,
            check: |h| assert!(!h.outside().join("passwd").exists()),
        },
        Case {
            name: "hardlink_dotdot",
            attack: "hardlink to ../outside/secret",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::hardlink("h", "../outside/secret")]),
            opts: default_opts,
            check: |h| assert!(!h.root().join("h").exists()),
        },
        Case {
            name: "hardlink_absolute_host_path",
            attack: "hardlink to the absolute host path of the secret",
            expect: Expect::Refused,
            setup: none,
            layer: |h| tar(&[E::hardlink("h", abs(h, "secret"))]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "hardlink_through_symlink_parent",
            attack: "symlink s -> host outside dir, then hardlink h -> s/secret",
            expect: Expect::Refused,
            setup: none,
            layer: |h| tar(&[E::symlink("s", abs(h, "")), E::hardlink("h", "s/secret")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "hardlink_to_symlink_outside",
            attack: "symlink s -> host secret, hardlink h -> s: h must be the symlink, not the secret",
            expect: Expect::Applied,
            setup: none,
            layer: |h| tar(&[E::symlink("s", abs(h, "secret")), E::hardlink("h", "s")]),
            opts: default_opts,
            check: |h| {
                let md = fs::symlink_metadata(h.root().join("h")).unwrap();
                assert!(md.file_type().is_symlink());
                assert_eq!(md.nlink(), 2);
            },
        },
        Case {
            name: "hardlink_to_directory",
            attack: "hardlink to a directory",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::dir("d/"), E::hardlink("h", "d")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "hardlink_to_itself",
            attack: "hardlink h -> h (after a file h existed)",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("h", "x"), E::hardlink("h", "h")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "whiteout_dotdot",
            attack: "../outside/.wh.secret deletes a host file",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("../outside/.wh.secret", "")]),
            opts: remove_opts,
            check: |_| {},
        },
        Case {
            name: "whiteout_absolute",
            attack: "absolute whiteout of the host secret: only inside the root",
            expect: Expect::Applied,
            setup: none,
            layer: |h| {
                let mut n = abs(h, "");
                n.extend_from_slice(b"/.wh.secret");
                tar(&[E::file(n, "")])
            },
            opts: remove_opts,
            check: |_| {},
        },
        Case {
            name: "whiteout_through_symlink",
            attack: "symlink s -> host outside dir, then s/.wh.secret",
            expect: Expect::Applied,
            setup: none,
            layer: |h| tar(&[E::symlink("s", abs(h, "")), E::file("s/.wh.secret", "")]),
            opts: remove_opts,
            check: |_| {},
        },
        Case {
            name: "opaque_through_symlink",
            attack: "symlink s -> host outside dir, then s/.wh..wh..opq empties it",
            expect: Expect::Refused,
            setup: none,
            layer: |h| tar(&[E::symlink("s", abs(h, "")), E::file("s/.wh..wh..opq", "")]),
            opts: remove_opts,
            check: |h| assert!(h.outside().join("sub/file").exists()),
        },
        Case {
            name: "opaque_dotdot",
            attack: "../.wh..wh..opq marks the host dir opaque",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("../.wh..wh..opq", "")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "whiteout_overlay_symlinked_parent",
            attack: "overlay-mode whiteout under a symlink to outside must not mknod there",
            expect: Expect::Refused,
            setup: none,
            layer: |h| tar(&[E::symlink("s", abs(h, "sub")), E::file("s/.wh.file", "")]),
            opts: default_opts,
            check: |h| assert!(fs::symlink_metadata(h.outside().join("sub/file")).unwrap().is_file()),
        },
        Case {
            name: "absurd_file_size",
            attack: "a 6 GiB file entry against max_file_size",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("big", "").size(6 << 30)]),
            opts: || {
                let mut o = ApplyOptions::default();
                o.max_file_size = Some(1 << 20);
                o
            },
            check: |h| assert!(!h.root().join("big").exists()),
        },
        Case {
            name: "too_many_entries",
            attack: "more entries than max_entries",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let es: Vec<E> = (0..50).map(|i| E::file(format!("f{i}"), "")).collect();
                tar(&es)
            },
            opts: || {
                let mut o = ApplyOptions::default();
                o.max_entries = Some(10);
                o
            },
            check: |h| assert!(!h.root().join("f20").exists()),
        },
        Case {
            name: "decompression_bomb",
            attack: "64 MiB of zeros gzipped to ~64 KiB against max_total_size",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let t = tar(&[E::file("zeros", vec![0u8; 64 << 20])]);
                let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                g.write_all(&t).unwrap();
                g.finish().unwrap()
            },
            opts: || {
                let mut o = ApplyOptions::default();
                o.max_total_size = Some(1 << 20);
                o
            },
            check: |_| {},
        },
        Case {
            name: "huge_pax_header",
            attack: "a 32 MiB PAX record (the tar parser would buffer it in memory)",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("f", "x").pax("comment", vec![b'a'; 32 << 20])]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "device_not_allowed",
            attack: "a char device (/dev/mem 1:1) when devices are not allowed",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::chardev("mem", 1, 1)]),
            opts: || {
                let mut o = ApplyOptions::default();
                o.allow_devices = false;
                o
            },
            check: |h| assert!(!h.root().join("mem").exists()),
        },
        Case {
            name: "nul_in_name",
            attack: "a PAX path with a NUL byte",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("x", "x").pax("path", b"a\0/../../b")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "empty_name",
            attack: "an entry with an empty name",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file("", "x")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "dot_as_file",
            attack: "a regular file named . (would replace the root)",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::file(".", "x")]),
            opts: default_opts,
            check: |h| assert!(h.root().is_dir()),
        },
        Case {
            name: "dot_dir_entry",
            attack: "a ./ directory entry: applies to the root itself, nothing else",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::dir("./").mode(0o751), E::file("./a", "a")]),
            opts: default_opts,
            check: |h| {
                assert_eq!(fs::metadata(h.root()).unwrap().permissions().mode() & 0o7777, 0o751);
                assert!(h.root().join("a").exists());
            },
        },
        Case {
            name: "duplicate_entries",
            attack: "the same file twice: the later one wins",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::file("f", "first"), E::file("f", "second").mode(0o600)]),
            opts: default_opts,
            check: |h| {
                assert_eq!(fs::read(h.root().join("f")).unwrap(), b"second");
                assert_eq!(fs::metadata(h.root().join("f")).unwrap().mode() & 0o777, 0o600);
            },
        },
        Case {
            name: "file_over_dir_with_content",
            attack: "a file entry replacing a populated directory",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::dir("d/"), E::file("d/x", "x"), E::dir("d/sub/"), E::file("d", "now a file")]),
            opts: default_opts,
            check: |h| assert_eq!(fs::read(h.root().join("d")).unwrap(), b"now a file"),
        },
        Case {
            name: "dir_mode_0000",
            attack: "a directory with mode 0000 followed by its children",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::dir("locked/").mode(0), E::file("locked/child", "c"), E::dir("locked/sub/").mode(0)]),
            opts: default_opts,
            check: |h| {
                assert_eq!(fs::read(h.root().join("locked/child")).unwrap(), b"c");
                assert_eq!(fs::metadata(h.root().join("locked")).unwrap().mode() & 0o7777, 0);
            },
        },
        Case {
            name: "xattr_injection",
            attack: "trusted.overlay.* / user.overlay.* / unknown-namespace xattrs forging opaque dirs and redirects",
            expect: Expect::Applied,
            setup: none,
            layer: |_| {
                tar(&[
                    E::dir("d/")
                        .xattr("trusted.overlay.opaque", "y")
                        .xattr("trusted.overlay.redirect", "/etc")
                        .xattr("user.overlay.opaque", "y")
                        .xattr("system.nfs4_acl", "junk")
                        .xattr("user.ok", "kept"),
                    E::file("f", "x").xattr("trusted.overlay.metacopy", "").xattr("trusted.overlay.origin", "x"),
                ])
            },
            opts: default_opts,
            check: |h| {
                let d = h.root().join("d");
                assert_eq!(xattr(&d, "trusted.overlay.opaque"), None);
                assert_eq!(xattr(&d, "trusted.overlay.redirect"), None);
                assert_eq!(xattr(&d, "user.overlay.opaque"), None);
                assert_eq!(xattr(&d, "user.ok").as_deref(), Some(&b"kept"[..]));
                assert!(super::xattrs(&h.root().join("f")).is_empty());
            },
        },
        Case {
            name: "symlink_loop_parent",
            attack: "a -> b, b -> a, then a/x",
            expect: Expect::Refused,
            setup: none,
            layer: |_| tar(&[E::symlink("a", "b"), E::symlink("b", "a"), E::file("a/x", "x")]),
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "magic_link_parent",
            attack: "p -> /proc/self/root (a magic link to the host root), then p/escape",
            expect: Expect::Refused,
            setup: |h| {
                // A real procfs inside the root, so the magic link would resolve if followed.
                h.mount_proc(&h.root().join("proc"));
            },
            layer: |_| tar(&[E::symlink("p", "/proc/self/root/tmp"), E::file("p/escape", "x")]),
            opts: default_opts,
            check: |_| assert!(!std::path::Path::new("/tmp/escape").exists()),
        },
        Case {
            name: "corrupt_checksum",
            attack: "a header with a bad checksum",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let mut t = tar(&[E::file("f", "x")]);
                t[148] = b'7';
                t[149] = b'7';
                t
            },
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "truncated_stream",
            attack: "a file entry whose data stops early",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let mut t = tar(&[E::file("f", vec![b'x'; 4096])]);
                t.truncate(1024);
                t
            },
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "setuid_root_file_kept_in_root",
            attack: "a setuid-root binary: kept as data, only inside the root",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::file("bin/su", "ELF").mode(0o4755)]),
            opts: default_opts,
            check: |h| {
                let md = fs::metadata(h.root().join("bin/su")).unwrap();
                assert_eq!(md.mode() & 0o7777, 0o4755);
            },
        },
        Case {
            name: "fifo_and_device_types",
            attack: "fifo and char device entries (allowed): created as nodes, not opened",
            expect: Expect::Applied,
            setup: none,
            layer: |_| tar(&[E::fifo("p"), E::chardev("null", 1, 3).mode(0o666)]),
            opts: default_opts,
            check: |h| {
                assert!(fs::symlink_metadata(h.root().join("p")).unwrap().file_type().is_fifo());
                let md = fs::symlink_metadata(h.root().join("null")).unwrap();
                assert!(md.file_type().is_char_device());
                assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
            },
        },
        Case {
            name: "hardlink_then_overwrite",
            attack: "hardlink h -> etc/passwd, then a file h: writing h must not change etc/passwd",
            expect: Expect::Applied,
            setup: |h| {
                fs::create_dir(h.root().join("etc")).unwrap();
                fs::write(h.root().join("etc/passwd"), "lower").unwrap();
            },
            layer: |_| tar(&[E::hardlink("h", "etc/passwd"), E::file("h", "pwned")]),
            opts: remove_opts,
            check: |h| {
                assert_eq!(fs::read(h.root().join("etc/passwd")).unwrap(), b"lower");
                assert_eq!(fs::read(h.root().join("h")).unwrap(), b"pwned");
            },
        },
        Case {
            name: "lower_symlink_then_file",
            attack: "a lower layer's symlink to the host secret, overwritten by a file entry",
            expect: Expect::Applied,
            setup: |h| std::os::unix::fs::symlink(h.outside().join("secret"), h.root().join("link")).unwrap(),
            layer: |_| tar(&[E::file("link", "mine")]),
            opts: remove_opts,
            check: |h| assert!(fs::symlink_metadata(h.root().join("link")).unwrap().is_file()),
        },
        Case {
            name: "hardlink_pax_linkpath_dotdot",
            attack: "a .. escape hidden in a long PAX linkpath",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let target = format!("{}outside/secret", "../".repeat(40));
                tar(&[E::hardlink("h", target)])
            },
            opts: default_opts,
            check: |_| {},
        },
        Case {
            name: "whiteout_empty_name",
            attack: "a bare .wh. entry (whiteout of nothing, i.e. of its directory)",
            expect: Expect::Refused,
            setup: |h| fs::write(h.root().join("keep"), "k").unwrap(),
            layer: |_| tar(&[E::file(".wh.", "")]),
            opts: remove_opts,
            check: |h| assert!(h.root().join("keep").exists()),
        },
        Case {
            name: "symlink_chain_too_long",
            attack: "a 50-link symlink chain used as a parent (kernel ELOOP, nothing created)",
            expect: Expect::Refused,
            setup: none,
            layer: |_| {
                let mut es: Vec<E> = (0..50).map(|i| E::symlink(format!("l{i}"), format!("l{}", i + 1))).collect();
                es.push(E::dir("l50/"));
                es.push(E::file("l0/x", "x"));
                tar(&es)
            },
            opts: default_opts,
            check: |h| assert!(!h.root().join("l50/x").exists()),
        },
        Case {
            name: "cve_2021_32760_late_dir_mode_via_symlink",
            attack: "containerd CVE-2021-32760 shape: dir d/ (mode 0777) later replaced by a symlink to the host secret; the deferred chmod must not follow it",
            expect: Expect::Applied,
            setup: none,
            layer: |h| tar(&[E::dir("d/").mode(0o777).mtime(1), E::symlink("d", abs(h, "secret"))]),
            opts: default_opts,
            check: |h| {
                assert!(fs::symlink_metadata(h.root().join("d")).unwrap().file_type().is_symlink());
            },
        },
        Case {
            name: "cve_2021_32803_dir_cache_poisoning",
            attack: "node-tar CVE-2021-32803 shape: a/b/ created, a/b replaced by a symlink to outside under another spelling, then a/b/c",
            expect: Expect::Refused,
            setup: none,
            layer: |h| {
                tar(&[
                    E::dir("a/b/"),
                    E::file("a/b/x", "x"),
                    E::symlink("./a//b", abs(h, "sub")),
                    E::file("a/b/c", "pwned"),
                ])
            },
            opts: default_opts,
            check: |h| assert!(!h.outside().join("sub/c").exists()),
        },
        Case {
            name: "cve_2021_32803_relative_symlink_cache",
            attack: "same shape with a relative symlink climbing out: contained in the root",
            expect: Expect::Applied,
            setup: none,
            layer: |_| {
                tar(&[
                    E::dir("a/b/"),
                    E::dir("t/"),
                    E::symlink("a/b", "../../../../../t"),
                    E::file("a/b/c", "in t"),
                ])
            },
            opts: default_opts,
            check: |h| assert_eq!(fs::read(h.root().join("t/c")).unwrap(), b"in t"),
        },
    ]
}
