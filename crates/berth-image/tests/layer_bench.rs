//! Apply-speed measurement of a generated ~200 MB layer (half random, half text), as plain
//! tar, gzip and zstd. Not a test: run it explicitly in release mode:
//!
//! `cargo test --release -p berth-image --test layer_bench -- --ignored --nocapture`

use std::io::Write;
use std::time::Instant;

use berth_image::layer::{apply_layer, diff, ApplyOptions, DiffOptions};

/// xorshift: fast, deterministic pseudo-random bytes.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn text_bytes(seed: usize, n: usize) -> Vec<u8> {
    let words = [
        "container",
        "layer",
        "overlay",
        "whiteout",
        "digest",
        "manifest",
        "the",
        "of",
        "and",
        "runtime",
        "snapshot",
        "registry",
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
    ];
    let mut v = Vec::with_capacity(n + 16);
    let mut i = seed;
    while v.len() < n {
        v.extend_from_slice(words[i % words.len()].as_bytes());
        v.push(match i % 11 {
            0 => b'\n',
            _ => b' ',
        });
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    v.truncate(n);
    v
}

fn build_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    // 100 MB random in 50 x 2 MB files.
    for i in 0..50 {
        add(
            format!("usr/lib/blob{i}.so"),
            &random_bytes(i as u64 + 1, 2 << 20),
        );
    }
    // 100 MB text: 1600 x 64 KB in 40 directories.
    for i in 0..1600 {
        add(
            format!("usr/share/doc{}/file{i}.txt", i % 40),
            &text_bytes(i, 64 << 10),
        );
    }
    b.into_inner().unwrap()
}

fn apply_once(base: &std::path::Path, layer: &[u8], pipeline: bool) -> f64 {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-bench-")
        .tempdir_in(base)
        .unwrap();
    let t = Instant::now();
    let mut o = ApplyOptions::default();
    o.pipeline = pipeline;
    apply_layer(dir.path(), layer, &o).unwrap();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Unmounts on drop.
struct Tmpfs(tempfile::TempDir);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored in release mode"]
fn apply_speed_200mb() {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("nproc {nproc}, kernel {}", kernel.trim());
    let plain = build_layer();
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(&plain).unwrap();
    let gz = g.finish().unwrap();
    let zs = zstd::encode_all(&plain[..], 3).unwrap();
    let layers = [("tar", &plain), ("gzip", &gz), ("zstd", &zs)];

    let tmpfs = Tmpfs(
        tempfile::Builder::new()
            .prefix("berthtest-bench-")
            .tempdir()
            .unwrap(),
    );
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2g", "tmpfs"])
        .arg(tmpfs.0.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let disk = std::env::temp_dir();
    let mut targets = vec![("disk", disk.as_path())];
    if ok {
        targets.push(("tmpfs", tmpfs.0.path()));
    }
    for (tname, base) in targets {
        // Warm-up, then interleaved rounds (tar gzip zstd, tar gzip zstd, ...).
        for (_, l) in &layers {
            apply_once(base, l, true);
        }
        let mut times = vec![Vec::new(); layers.len() * 2];
        for _ in 0..7 {
            for (i, (_, l)) in layers.iter().enumerate() {
                times[2 * i].push(apply_once(base, l, true));
                times[2 * i + 1].push(apply_once(base, l, false));
            }
        }
        for (j, t) in times.iter().enumerate() {
            let (name, l) = layers[j / 2];
            let mode = if j % 2 == 0 {
                "pipelined"
            } else {
                "one thread"
            };
            let med = median(t.clone());
            println!(
                "{tname:>5} {name:>4} {mode:>10}: {:>6.1} MB blob, {:.1} MB uncompressed, median {:.3}s -> {:.0} MB/s uncompressed ({:.0} MB/s of blob)",
                l.len() as f64 / 1e6,
                plain.len() as f64 / 1e6,
                med,
                plain.len() as f64 / 1e6 / med,
                l.len() as f64 / 1e6 / med,
            );
        }
    }

    // Peer: GNU tar extracting the same plain layer (no hashing), interleaved with berth.
    if ok
        && std::process::Command::new("tar")
            .arg("--version")
            .output()
            .is_ok()
    {
        let src = tmpfs.0.path().join("layer.tar");
        std::fs::write(&src, &plain).unwrap();
        let disk = std::env::temp_dir();
        for (tname, base) in [("disk", disk.as_path()), ("tmpfs", tmpfs.0.path())] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..7 {
                ours.push(apply_once(base, &plain, false));
                let dir = tempfile::Builder::new()
                    .prefix("berthtest-bench-")
                    .tempdir_in(base)
                    .unwrap();
                let t = Instant::now();
                let st = std::process::Command::new("tar")
                    .args(["--same-owner", "-xpf"])
                    .arg(&src)
                    .arg("-C")
                    .arg(dir.path())
                    .status()
                    .unwrap();
                assert!(st.success());
                theirs.push(t.elapsed().as_secs_f64());
            }
            let (o, t) = (median(ours), median(theirs));
            println!(
                "{tname:>5} plain tar: berth {:.0} MB/s (with sha256), GNU tar -x {:.0} MB/s, ratio {:.2}",
                plain.len() as f64 / 1e6 / o,
                plain.len() as f64 / 1e6 / t,
                t / o
            );
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("berthtest-bench-")
        .tempdir()
        .unwrap();
    apply_layer(dir.path(), &plain[..], &ApplyOptions::default()).unwrap();
    let t = Instant::now();
    let r = diff(&[], dir.path(), std::io::sink(), &DiffOptions::default()).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        " diff (tar out): {:.0} MB in {s:.3}s -> {:.0} MB/s",
        r.uncompressed_size as f64 / 1e6,
        r.uncompressed_size as f64 / 1e6 / s
    );
}

#[test]
#[ignore = "benchmark"]
fn raw_decompress_speed() {
    let plain = build_layer();
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(&plain).unwrap();
    let gz = g.finish().unwrap();
    let zs = zstd::encode_all(&plain[..], 3).unwrap();
    let t = Instant::now();
    std::io::copy(
        &mut flate2::read::MultiGzDecoder::new(&gz[..]),
        &mut std::io::sink(),
    )
    .unwrap();
    println!(
        "gunzip {:.0} MB/s",
        plain.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    std::io::copy(
        &mut zstd::stream::read::Decoder::new(&zs[..]).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();
    println!(
        "unzstd {:.0} MB/s",
        plain.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let _ = berth_core::Digest::sha256_of(&plain);
    println!(
        "sha256 {:.0} MB/s",
        plain.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "profiling helper: plain tar into tmpfs, 10 times"]
fn profile_plain_tmpfs() {
    let plain = build_layer();
    let tmpfs = Tmpfs(
        tempfile::Builder::new()
            .prefix("berthtest-bench-")
            .tempdir()
            .unwrap(),
    );
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2g", "tmpfs"])
        .arg(tmpfs.0.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    for _ in 0..10 {
        apply_once(tmpfs.0.path(), &plain, false);
    }
}
