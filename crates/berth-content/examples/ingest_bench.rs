//! Ingest throughput of the local content store (not a test).
//!
//! `cargo run --release -p berth-content --example ingest_bench [MiB] [runs]`
//! Prints the median MB/s of write+hash+fsync+commit, of hashing alone, and of reading back.

use std::io::{Read, Write};
use std::time::Instant;

use berth_content::{LocalStore, Store};
use berth_core::{Algorithm, Digester};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("berthtest-bench-")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
        .expect("temp dir");
    let store = LocalStore::open(dir.path()).expect("open store");
    let chunk: Vec<u8> = (0..(1usize << 20))
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1])
        .collect();
    let mb = (mib << 20) as f64 / 1e6;
    let (mut ingest, mut hash, mut read) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Vary the content per run so every commit is a new blob.
        let mut first = chunk.clone();
        first[0] = run as u8;
        let t = Instant::now();
        let mut w = store.writer(&format!("bench-{run}"), None).expect("writer");
        w.write_all(&first).unwrap();
        for _ in 1..mib {
            w.write_all(&chunk).unwrap();
        }
        let d = w.commit(None, None).expect("commit").digest().clone();
        ingest.push(mb / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut h = Digester::new(Algorithm::Sha256);
        for _ in 0..mib {
            h.update(&chunk);
        }
        let _ = h.finish();
        hash.push(mb / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut r = store.reader(&d).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while r.read(&mut buf).unwrap() > 0 {}
        read.push(mb / t.elapsed().as_secs_f64());
        store.delete(&d).unwrap();
    }
    println!(
        "berth-content ingest {mib} MiB x{runs} (nproc {}): ingest {:.0} MB/s, sha256 alone {:.0} MB/s, read {:.0} MB/s (medians)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        median(ingest),
        median(hash),
        median(read)
    );
}
