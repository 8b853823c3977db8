//! Many clients at once: the same layer pushed concurrently to several repositories is stored
//! once and every push succeeds; concurrent PATCHes to one session do not interleave data.

mod common;

use berth_core::Digest;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_layer_store_it_once() {
    let reg = start().await;
    let a = reg.addr;
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let d = Digest::sha256_of(&layer);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let layer = layer.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let repo = format!("team/app{}", i % 8);
            if i % 2 == 0 {
                // Monolithic.
                let r = send(
                    a,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                    &[],
                    layer,
                )
                .await;
                r.status
            } else {
                // Chunked in two pieces.
                let r = send(
                    a,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    Vec::new(),
                )
                .await;
                let loc = r.header("location").expect("location");
                let half = layer.len() / 2;
                let r = send(
                    a,
                    "PATCH",
                    &loc,
                    &[("content-range", &format!("0-{}", half - 1))],
                    layer[..half].to_vec(),
                )
                .await;
                assert_eq!(r.status, 202);
                let r = send(
                    a,
                    "PUT",
                    &format!("{loc}?digest={d}"),
                    &[("content-range", &format!("{half}-{}", layer.len() - 1))],
                    layer[half..].to_vec(),
                )
                .await;
                r.status
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 201);
    }
    for i in 0..8 {
        let r = get(a, &format!("/v2/team/app{i}/blobs/{d}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(Digest::sha256_of(&r.body), d);
    }
    let blobs = reg.server.registry().store().root().join("blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), 1);
    // No ingest left behind.
    let ingest = reg.server.registry().store().root().join("ingest");
    assert_eq!(std::fs::read_dir(&ingest).expect("ingest").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_to_one_session_never_interleave() {
    let reg = start().await;
    let a = reg.addr;
    let r = send(a, "POST", "/v2/one/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    // Eight clients race to send the first chunk; exactly the accepted ones advance the offset,
    // the others get 416, and the final blob is one chunk's bytes, not a mix.
    let chunk = vec![b'x'; 100_000];
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (loc, chunk) = (loc.clone(), chunk.clone());
        tasks.push(tokio::spawn(async move {
            send(a, "PATCH", &loc, &[("content-range", "0-99999")], chunk)
                .await
                .status
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        match t.await.expect("join") {
            202 => accepted += 1,
            416 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted, 1);
    let r = get(a, &loc).await;
    assert_eq!(r.header("range").as_deref(), Some("0-99999"));
    let d = Digest::sha256_of(&chunk);
    let r = send(a, "PUT", &format!("{loc}?digest={d}"), &[], Vec::new()).await;
    assert_eq!(r.status, 201);
}
