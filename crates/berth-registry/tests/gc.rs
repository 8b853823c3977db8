//! Online garbage collection: runs while pushes are in flight and keeps what they need.

mod common;

use std::time::Duration;

use berth_core::Digest;
use common::*;

async fn gc(reg: &Reg, grace: Duration) -> berth_registry::GcReport {
    let r = reg.server.registry().clone();
    tokio::task::spawn_blocking(move || r.gc(grace))
        .await
        .expect("join")
        .expect("gc")
}

fn stored(reg: &Reg, d: &Digest) -> bool {
    reg.server.registry().store().path(d).is_ok()
}

#[tokio::test]
async fn gc_during_push_keeps_in_flight_and_young_blobs() {
    let reg = start().await;
    let a = reg.addr;
    // An image fully pushed, then deleted: its blobs become garbage.
    let old = image(a, "g", "old").await;
    let old_d = Digest::sha256_of(&old);
    put_manifest(a, "g", "old", OCI_MANIFEST, &old).await;
    let old_v: serde_json::Value = serde_json::from_slice(&old).expect("json");
    let old_layer: Digest = old_v["layers"][0]["digest"]
        .as_str()
        .expect("d")
        .parse()
        .expect("digest");
    assert_eq!(
        send(
            a,
            "DELETE",
            &format!("/v2/g/manifests/{old_d}"),
            &[],
            Vec::new()
        )
        .await
        .status,
        202
    );
    // A kept image.
    let keep = image(a, "g", "keep").await;
    put_manifest(a, "g", "keep", OCI_MANIFEST, &keep).await;
    let keep_v: serde_json::Value = serde_json::from_slice(&keep).expect("json");
    let keep_layer: Digest = keep_v["layers"][0]["digest"]
        .as_str()
        .expect("d")
        .parse()
        .expect("digest");

    // A push in progress: one blob committed but not yet referenced, one upload mid-way.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_d = push_blob(a, "g", config).await;
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let layer_d = Digest::sha256_of(&layer);
    let r = send(a, "POST", "/v2/g/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    assert_eq!(
        send(
            a,
            "PATCH",
            &loc,
            &[("content-range", "0-99999")],
            layer[..100_000].to_vec()
        )
        .await
        .status,
        202
    );

    // GC with the default-style grace: nothing young is touched, the in-flight upload survives.
    let rep = gc(&reg, Duration::from_secs(3600)).await;
    assert!(rep.deleted.is_empty(), "{rep:?}");
    assert!(rep.kept_young >= 3, "{rep:?}");
    assert!(stored(&reg, &config_d));
    assert_eq!(
        get(a, &loc).await.header("range").as_deref(),
        Some("0-99999")
    );

    // GC concurrently with the rest of the push, blob grace 0 (worst case; idle uploads
    // keep the usual hour): the push completes and everything the new manifest references
    // is kept.
    let reg_gc = reg.server.registry().clone();
    let gc_loop = tokio::task::spawn_blocking(move || {
        let mut runs = 0;
        for _ in 0..20 {
            reg_gc
                .gc_with(Duration::ZERO, Duration::from_secs(3600))
                .expect("gc");
            runs += 1;
        }
        runs
    });
    let r = send(
        a,
        "PUT",
        &format!("{loc}?digest={layer_d}"),
        &[("content-range", "100000-199999")],
        layer[100_000..].to_vec(),
    )
    .await;
    assert_eq!(r.status, 201);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, config), "layers": [desc(OCI_LAYER, &layer)],
    }))
    .expect("json");
    // With grace 0 a sweep may legitimately collect a blob between its upload and the
    // manifest; the registry then says MANIFEST_BLOB_UNKNOWN and the client re-pushes it
    // (what a real client does). It must never accept a manifest whose blobs are gone.
    let mut pushed = false;
    for _ in 0..10 {
        let r = put_manifest(a, "g", "new", OCI_MANIFEST, &m).await;
        if r.status == 201 {
            pushed = true;
            break;
        }
        assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
        let missing: Digest = r.json()["errors"][0]["detail"]["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("d");
        let data: &[u8] = if missing == config_d { config } else { &layer };
        push_blob(a, "g", data).await;
    }
    assert!(pushed, "manifest never accepted");
    assert_eq!(gc_loop.await.expect("join"), 20);
    for d in [&config_d, &layer_d, &keep_layer] {
        assert!(stored(&reg, d), "{d} collected");
    }
    assert_eq!(get(a, &format!("/v2/g/blobs/{layer_d}")).await.body, layer);

    // The concurrent collections removed the deleted image (manifest and layer); a final
    // one finds nothing more, and everything referenced stays.
    let rep = gc(&reg, Duration::ZERO).await;
    assert!(rep.deleted.is_empty(), "{rep:?}");
    assert!(!stored(&reg, &old_layer) && !stored(&reg, &old_d));
    assert!(stored(&reg, &keep_layer) && stored(&reg, &layer_d) && stored(&reg, &config_d));
    assert_eq!(get(a, "/v2/g/manifests/new").await.body, m);
    assert_eq!(
        get(a, &format!("/v2/g/blobs/{old_layer}")).await.status,
        404
    );
}

#[tokio::test]
async fn gc_drops_referrers_of_deleted_subjects_and_idle_uploads() {
    let reg = start().await;
    let a = reg.addr;
    let subject = image(a, "s", "subject").await;
    let sd = Digest::sha256_of(&subject);
    put_manifest(a, "s", "v1", OCI_MANIFEST, &subject).await;
    let empty = b"{}";
    push_blob(a, "s", empty).await;
    let sig = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": desc("application/vnd.oci.empty.v1+json", empty), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sd.to_string(), "size": subject.len()},
    })).expect("json");
    let sig_d = Digest::sha256_of(&sig);
    put_manifest(a, "s", &sig_d.to_string(), OCI_MANIFEST, &sig).await;
    let r = send(a, "POST", "/v2/s/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    send(a, "PATCH", &loc, &[], b"abandoned".to_vec()).await;

    // An ingest without a session (as a crash mid monolithic POST leaves one).
    {
        use berth_content::Store as _;
        let mut w = reg
            .server
            .registry()
            .store()
            .writer("upload-orphaned", None)
            .expect("ingest");
        std::io::Write::write_all(&mut w, b"cut off").expect("write");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    // While the subject exists the referrer is kept.
    let rep = gc(&reg, Duration::ZERO).await;
    assert_eq!(rep.referrers_dropped, 0);
    assert_eq!(rep.uploads_expired, 2);
    {
        use berth_content::Store as _;
        assert!(reg
            .server
            .registry()
            .store()
            .ingests()
            .expect("ingests")
            .is_empty());
    }
    assert_eq!(get(a, &loc).await.status, 404);
    assert_eq!(
        get(a, &format!("/v2/s/manifests/{sig_d}")).await.status,
        200
    );
    // Subject deleted: the referrer and its blobs follow.
    send(
        a,
        "DELETE",
        &format!("/v2/s/manifests/{sd}"),
        &[],
        Vec::new(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rep = gc(&reg, Duration::ZERO).await;
    assert_eq!(rep.referrers_dropped, 1, "{rep:?}");
    assert!(rep.deleted.contains(&sig_d.to_string()));
    assert_eq!(
        get(a, &format!("/v2/s/manifests/{sig_d}")).await.status,
        404
    );
}

#[tokio::test]
async fn periodic_gc_runs_in_the_server() {
    let reg = start_with(|c| {
        c.gc_interval = Some(Duration::from_millis(200));
        c.gc_grace = Duration::ZERO;
    })
    .await;
    let a = reg.addr;
    let d = push_blob(a, "p", b"unreferenced").await;
    assert!(stored(&reg, &d));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored(&reg, &d) {
        assert!(
            std::time::Instant::now() < deadline,
            "periodic gc never collected the blob"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(a, &format!("/v2/p/blobs/{d}")).await.status, 404);
}
