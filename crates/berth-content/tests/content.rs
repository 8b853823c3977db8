//! Integration tests of the local content store (real files, real flock, real processes).

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_content::{Committed, Error, Expected, LocalStore, Store};
use berth_core::{Algorithm, Digest, ErrorKind};

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-content-")
        .tempdir()
        .unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    (dir, s)
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[0] ^ seed)
        .collect()
}

fn blob_files(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for alg in ["sha256", "sha512"] {
        if let Ok(rd) = std::fs::read_dir(root.join("blobs").join(alg)) {
            for e in rd {
                v.push(format!(
                    "{alg}:{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn write_commit_read_roundtrip() {
    let (dir, s) = store();
    let d = data(300_000, 1);
    let want = Digest::sha256_of(&d);
    let mut w = s.writer("ref-a", None).unwrap();
    for chunk in d.chunks(7777) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.offset(), d.len() as u64);
    let c = w.commit(Some(d.len() as u64), Some(&want)).unwrap();
    assert_eq!(c, Committed::New(want.clone()));

    let info = s.info(&want).unwrap();
    assert_eq!(info.size, d.len() as u64);
    assert_eq!(s.list().unwrap().len(), 1);
    let p = s.path(&want).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(p.starts_with(dir.path().join("blobs/sha256")));
    // The ingest is gone.
    assert!(s.ingests().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );

    let mut r = s.reader(&want).unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).unwrap();
    assert_eq!(back, d);
    // Seek + read.
    r.seek(SeekFrom::Start(1000)).unwrap();
    let mut b = [0u8; 10];
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, &d[1000..1010]);
    // Positional and range reads.
    let mut b = [0u8; 16];
    assert_eq!(r.read_at(&mut b, 299_990).unwrap(), 10);
    assert_eq!(&b[..10], &d[299_990..]);
    let mut part = Vec::new();
    s.reader(&want)
        .unwrap()
        .range(5000, 70_000)
        .unwrap()
        .read_to_end(&mut part)
        .unwrap();
    assert_eq!(part, &d[5000..75_000]);
    let e = r.range(299_000, 2000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn digest_mismatch_is_corrupt_and_leaves_nothing() {
    let (dir, s) = store();
    let wrong = Digest::sha256_of(b"something else");
    let mut w = s.writer("ref-bad", None).unwrap();
    w.write_all(b"hello").unwrap();
    let e = w.commit(Some(5), Some(&wrong)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    let msg = e.to_string();
    assert!(
        msg.starts_with("commit ingest ref-bad: unexpected digest sha256:"),
        "{msg}"
    );
    assert!(msg.contains(&format!("(expected {wrong})")), "{msg}");
    assert!(blob_files(dir.path()).is_empty());
    assert!(s.ingests().unwrap().is_empty());
}

#[test]
fn size_mismatch_is_invalid_input() {
    let (dir, s) = store();
    let mut w = s.writer("ref-size", None).unwrap();
    w.write_all(b"hello").unwrap();
    let e = w.commit(Some(6), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(matches!(
        e,
        Error::SizeMismatch {
            actual: 5,
            expected: 6,
            ..
        }
    ));
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn expected_size_bounds_writes_and_existing_blob_short_circuits() {
    let (_dir, s) = store();
    let d = b"0123456789";
    let dg = Digest::sha256_of(d);
    let mut w = s
        .writer("ref-exp", Some(Expected::new(dg.clone(), 4)))
        .unwrap();
    let e = w.write_all(d).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    w.abort().unwrap();

    assert!(s.write_blob(d, Some(&dg)).unwrap().is_new());
    assert_eq!(
        s.write_blob(d, None).unwrap(),
        Committed::Existing(dg.clone())
    );
    let e = s
        .writer("ref-exp2", Some(Expected::new(dg.clone(), 10)))
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(ref x) if *x == dg));
    assert_eq!(e.kind(), ErrorKind::Conflict);
    // write_blob with a wrong expectation is refused.
    let e = s
        .write_blob(b"other", Some(&Digest::sha256_of(b"x")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
}

#[test]
fn ref_is_locked_by_one_writer() {
    let (_dir, s) = store();
    let w = s.writer("ref-lock", None).unwrap();
    let e = s.writer("ref-lock", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.to_string(), "ref ref-lock locked");
    let e = s.abort("ref-lock").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    drop(w);
    // Released with the writer.
    let w = s.writer("ref-lock", None).unwrap();
    drop(w);
    s.abort("ref-lock").unwrap();
    assert_eq!(s.abort("ref-lock").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn resume_continues_at_offset() {
    let (_dir, s) = store();
    let d = data(1 << 20, 3);
    let dg = Digest::sha256_of(&d);
    let exp = Expected::new(dg.clone(), d.len() as u64);
    let mut w = s.writer("ref-resume", Some(exp.clone())).unwrap();
    w.write_all(&d[..400_000]).unwrap();
    drop(w);
    let st = s.ingests().unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].reference, "ref-resume");
    assert_eq!(st[0].offset, 400_000);
    assert_eq!(st[0].total, Some(d.len() as u64));
    assert_eq!(st[0].expected.as_ref(), Some(&dg));
    assert_eq!(s.ingest_status("ref-resume").unwrap().offset, 400_000);
    assert_eq!(
        s.ingest_status("nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Reopen without restating the expectation: it was recorded.
    let mut w = s.writer("ref-resume", None).unwrap();
    assert_eq!(w.offset(), 400_000);
    assert_eq!(w.expected(), Some(&exp));
    w.write_all(&d[400_000..]).unwrap();
    assert_eq!(w.commit(None, None).unwrap(), Committed::New(dg));
}

#[test]
fn concurrent_ingests_of_one_digest_store_it_once() {
    let (dir, s) = store();
    let d = data(2 << 20, 9);
    let dg = Digest::sha256_of(&d);
    let results: Vec<Committed> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let s = s.clone();
                let d = &d;
                sc.spawn(move || {
                    let mut w = s.writer(&format!("ref-c{i}"), None).unwrap();
                    for c in d.chunks(65536) {
                        w.write_all(c).unwrap();
                    }
                    w.commit(Some(d.len() as u64), None).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|c| c.is_new()).count(), 1);
    assert!(results.iter().all(|c| *c.digest() == dg));
    assert_eq!(blob_files(dir.path()), vec![dg.to_string()]);
    assert!(s.ingests().unwrap().is_empty());
}

#[test]
fn sha512_blobs() {
    let (_dir, s) = store();
    let dg = Digest::of(Algorithm::Sha512, b"abc");
    let c = s.write_blob(b"abc", Some(&dg)).unwrap();
    assert_eq!(c.digest(), &dg);
    assert_eq!(s.info(&dg).unwrap().size, 3);
    // A sha256 writer committed against a sha512 expectation re-hashes.
    let mut w = s.writer("ref-512", None).unwrap();
    w.write_all(b"abcd").unwrap();
    let d4 = Digest::of(Algorithm::Sha512, b"abcd");
    assert_eq!(w.commit(None, Some(&d4)).unwrap(), Committed::New(d4));
}

#[test]
fn delete_list_and_not_found() {
    let (_dir, s) = store();
    let a = s.write_blob(b"a", None).unwrap().digest().clone();
    let b = s.write_blob(b"b", None).unwrap().digest().clone();
    let mut l: Vec<Digest> = s.list().unwrap().into_iter().map(|i| i.digest).collect();
    l.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(l, want);
    s.delete(&a).unwrap();
    assert_eq!(s.info(&a).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.reader(&a).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.delete(&a).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!s.exists(&a).unwrap());
    assert!(s.exists(&b).unwrap());
    assert_eq!(
        s.writer("", None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn stale_ingests_are_cleaned_but_locked_ones_kept() {
    let (_dir, s) = store();
    let mut w = s.writer("ref-stale", None).unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    let mut held = s.writer("ref-held", None).unwrap();
    held.write_all(b"x").unwrap();
    // Nothing is older than an hour.
    assert!(s
        .cleanup_stale_ingests(Duration::from_secs(3600))
        .unwrap()
        .is_empty());
    let removed = s.cleanup_stale_ingests(Duration::ZERO).unwrap();
    assert_eq!(removed, vec!["ref-stale".to_string()]);
    let left: Vec<String> = s
        .ingests()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(left, vec!["ref-held".to_string()]);
    held.write_all(b"y").unwrap();
    assert!(held.commit(Some(2), None).unwrap().is_new());
}

const CHILD_ENV: &str = "BERTHTEST_INGEST_CHILD_ROOT";
const KILL_SIZE: usize = 8 << 20;

/// Not a test on its own: the slow writer the kill -9 test runs in a child process.
#[test]
fn slow_ingest_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = LocalStore::open(&root).unwrap();
    let d = data(KILL_SIZE, 7);
    let mut w = s.writer("pull-killed", None).unwrap();
    let start = w.offset() as usize;
    for c in d[start..].chunks(64 * 1024) {
        w.write_all(c).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    w.commit(None, None).unwrap();
}

#[test]
fn kill_9_during_ingest_then_ingest_again() {
    let (dir, s) = store();
    let d = data(KILL_SIZE, 7);
    let dg = Digest::sha256_of(&d);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "slow_ingest_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it has written something, then SIGKILL it mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = s.ingests().unwrap();
        if st.iter().any(|i| i.offset >= 512 * 1024) {
            break;
        }
        assert!(Instant::now() < deadline, "child wrote nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The live child holds the ref: another process's writer is refused.
    let e = s.writer("pull-killed", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // No blob, partial ingest left, and its lock died with the process.
    assert!(blob_files(dir.path()).is_empty(), "partial blob published");
    let st = s.ingests().unwrap();
    assert_eq!(st.len(), 1);
    let partial = st[0].offset;
    assert!(partial > 0 && partial < KILL_SIZE as u64, "{partial}");

    // Ingest again under the same ref: resumes at the offset.
    let mut w = s.writer("pull-killed", None).unwrap();
    assert_eq!(w.offset(), partial);
    w.write_all(&d[partial as usize..]).unwrap();
    assert_eq!(
        w.commit(Some(KILL_SIZE as u64), Some(&dg)).unwrap(),
        Committed::New(dg.clone())
    );
    // The same content ingested again under another ref is not duplicated.
    assert_eq!(
        s.write_blob(&d, None).unwrap(),
        Committed::Existing(dg.clone())
    );
    assert_eq!(blob_files(dir.path()), vec![dg.to_string()]);
    let mut back = Vec::new();
    s.reader(&dg).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(Digest::sha256_of(&back), dg);
    assert!(s.ingests().unwrap().is_empty());
}
