//! Shared fixtures: images made in code, data roots, clients.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_distribution::{Client, ClientConfig, Progress};
use berth_image::{ImageService, ImportOptions};

/// A random-ish suffix for names.
pub fn suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), n & 0xffffff)
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for tests.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Files of the fixture rootfs: (path, contents).
pub fn fixture_files(seed: u64) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "etc/hostname".into(),
            format!("berthtest-{seed}\n").into_bytes(),
        ),
        ("data/random.bin".into(), noise(3 << 20, seed)),
        (
            "data/text.txt".into(),
            "the quick brown fox jumps over the lazy dog\n"
                .repeat(20_000)
                .into_bytes(),
        ),
    ]
}

/// A rootfs tarball with `files`.
pub fn rootfs_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (p, _) in files {
        let mut acc = String::new();
        for part in p
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            acc.push_str(part);
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, &d, std::io::empty()).unwrap();
    }
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A data root with one imported image named `name`.
pub fn source_root(dir: &Path, name: &str, seed: u64) -> ImageService {
    let svc = ImageService::open(dir).unwrap();
    let tar = rootfs_tar(&fixture_files(seed));
    svc.import(&tar[..], Some(name), &ImportOptions::default())
        .unwrap();
    svc
}

/// A client reading no config.json, with small chunks so the fixture's layer goes chunked.
pub fn client(chunk: u64) -> Client {
    Client::new(ClientConfig {
        docker_config: None,
        certs_dir: PathBuf::from("/nonexistent-berthtest-certs"),
        chunk_size: chunk,
        backoff: std::time::Duration::from_millis(20),
        ..Default::default()
    })
}

/// A directory holding the unpacked top layer of `name` in `svc` (a read-only view).
pub fn read_image_file(svc: &ImageService, name: &str, path: &str) -> Vec<u8> {
    let img = svc.resolve(name).unwrap();
    let top = img.top_chain_id().unwrap().to_string();
    let key = format!("berthtest-view-{}", suffix());
    let mounts = svc.snapshotter().view(&key, Some(&top)).unwrap();
    let m = &mounts[0];
    let dirs: Vec<PathBuf> = if m.kind == "bind" {
        vec![PathBuf::from(&m.source)]
    } else {
        let lower = m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("lowerdir="))
            .unwrap();
        lower.split(':').map(PathBuf::from).collect()
    };
    let data = dirs
        .iter()
        .find_map(|d| std::fs::read(d.join(path)).ok())
        .unwrap_or_else(|| panic!("{path} not in {dirs:?}"));
    svc.snapshotter().remove(&key).unwrap();
    data
}

/// Collects progress events.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<Progress>>);

impl Events {
    pub fn push(&self, p: Progress) {
        self.0.lock().unwrap().push(p);
    }
    pub fn take(&self) -> Vec<Progress> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}
