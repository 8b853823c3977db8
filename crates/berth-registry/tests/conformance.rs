//! Conformance with the OCI distribution spec v1.1, workflow by workflow (pull, push, content
//! discovery, content management), checking status codes, headers and error codes exactly.

mod common;

use berth_core::{Algorithm, Digest};
use common::*;

#[tokio::test]
async fn base_endpoint() {
    let reg = start().await;
    let r = get(reg.addr, "/v2/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let r = get(reg.addr, "/v2").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn push_monolithic_and_pull() {
    let reg = start().await;
    let a = reg.addr;
    // end-4b: POST with digest and body -> 201 and the blob's location.
    let data = b"hello monolithic".to_vec();
    let d = Digest::sha256_of(&data);
    let r = send(
        a,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        &[("content-type", "application/octet-stream")],
        data.clone(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/team/app/blobs/{d}"))
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    // end-4a + end-6: POST then PUT with the whole body.
    let data2 = b"post then put".to_vec();
    let d2 = Digest::sha256_of(&data2);
    let r = send(a, "POST", "/v2/team/app/blobs/uploads/", &[], Vec::new()).await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("location");
    assert!(loc.starts_with("/v2/team/app/blobs/uploads/"), "{loc}");
    let r = send(
        a,
        "PUT",
        &format!("{loc}?digest={d2}"),
        &[("content-type", "application/octet-stream")],
        data2.clone(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/team/app/blobs/{d2}"))
    );
    // end-2: HEAD and GET.
    let r = send(
        a,
        "HEAD",
        &format!("/v2/team/app/blobs/{d}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(data.len().to_string()));
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert!(r.body.is_empty());
    let r = get(a, &format!("/v2/team/app/blobs/{d2}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data2);
    // end-7: manifest by tag; end-3 by tag and by digest.
    let m = image(a, "team/app", "one").await;
    let md = Digest::sha256_of(&m);
    let r = put_manifest(a, "team/app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/team/app/manifests/{md}"))
    );
    assert_eq!(r.header("docker-content-digest"), Some(md.to_string()));
    for reference in ["v1".to_string(), md.to_string()] {
        let r = send(
            a,
            "GET",
            &format!("/v2/team/app/manifests/{reference}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, m);
        assert_eq!(r.header("content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(md.to_string()));
        let r = send(
            a,
            "HEAD",
            &format!("/v2/team/app/manifests/{reference}"),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(m.len().to_string()));
        assert!(r.body.is_empty());
    }
    // Push by digest.
    let m2 = image(a, "team/app", "two").await;
    let md2 = Digest::sha256_of(&m2);
    let r = put_manifest(a, "team/app", &md2.to_string(), OCI_MANIFEST, &m2).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        get(a, &format!("/v2/team/app/manifests/{md2}")).await.body,
        m2
    );
    // A manifest is also readable through the blobs endpoint of its repository.
    let r = get(a, &format!("/v2/team/app/blobs/{md}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, m);
    assert_eq!(get(a, &format!("/v2/other/blobs/{md}")).await.status, 404);
    // Push by a sha512 digest, with extra tags (?tag=).
    let m3 = image(a, "team/app", "three").await;
    let md3 = Digest::of(Algorithm::Sha512, &m3);
    let r = put_manifest(
        a,
        "team/app",
        &format!("{md3}?tag=x1&tag=x2"),
        OCI_MANIFEST,
        &m3,
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(md3.to_string()));
    for reference in [md3.to_string(), "x1".into(), "x2".into()] {
        let r = get(a, &format!("/v2/team/app/manifests/{reference}")).await;
        assert_eq!(r.body, m3);
        assert_eq!(r.header("docker-content-digest"), Some(md3.to_string()));
    }
}

#[tokio::test]
async fn push_chunked_out_of_order_and_resume() {
    let reg = start().await;
    let a = reg.addr;
    let data: Vec<u8> = (0..30u8).collect();
    let d = Digest::sha256_of(&data);
    let r = send(a, "POST", "/v2/c/blobs/uploads/", &[], Vec::new()).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range").as_deref(), Some("0-0"));
    let loc = r.header("location").expect("location");
    let r = send(
        a,
        "PATCH",
        &loc,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", "0-9"),
        ],
        data[..10].to_vec(),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range").as_deref(), Some("0-9"));
    assert_eq!(r.header("location").as_deref(), Some(loc.as_str()));
    // Out of order: 416 with the current range.
    let r = send(
        a,
        "PATCH",
        &loc,
        &[("content-range", "20-29")],
        data[20..].to_vec(),
    )
    .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range").as_deref(), Some("0-9"));
    // end-13: status.
    let r = get(a, &loc).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range").as_deref(), Some("0-9"));
    assert_eq!(r.header("location").as_deref(), Some(loc.as_str()));
    let r = send(
        a,
        "PATCH",
        &loc,
        &[("content-range", "10-19")],
        data[10..20].to_vec(),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range").as_deref(), Some("0-19"));
    // A streamed PATCH without Content-Range appends.
    let r = send(a, "PATCH", &loc, &[], data[20..25].to_vec()).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range").as_deref(), Some("0-24"));
    // Close with the last chunk in the PUT.
    let r = send(
        a,
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("content-range", "25-29")],
        data[25..].to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("location"), Some(format!("/v2/c/blobs/{d}")));
    assert_eq!(get(a, &format!("/v2/c/blobs/{d}")).await.body, data);
    // The finished session is gone.
    let r = get(a, &loc).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_errors_and_cancel() {
    let reg = start().await;
    let a = reg.addr;
    // Wrong digest on close: DIGEST_INVALID and nothing stored.
    let r = send(a, "POST", "/v2/u/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    let wrong = Digest::sha256_of(b"something else");
    let r = send(
        a,
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[],
        b"actual".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(get(a, &format!("/v2/u/blobs/{wrong}")).await.status, 404);
    // Monolithic with a wrong digest.
    let r = send(
        a,
        "POST",
        &format!("/v2/u/blobs/uploads/?digest={wrong}"),
        &[],
        b"zzz".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    // Malformed digest.
    let r = send(
        a,
        "POST",
        "/v2/u/blobs/uploads/?digest=sha256:nothex",
        &[],
        b"zzz".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    // end-14: cancel.
    let r = send(a, "POST", "/v2/u/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    send(a, "PATCH", &loc, &[], b"partial".to_vec()).await;
    let r = send(a, "DELETE", &loc, &[], Vec::new()).await;
    assert_eq!(r.status, 204);
    let r = get(a, &loc).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = send(a, "PATCH", &loc, &[], b"more".to_vec()).await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    // An upload id is bound to its repository.
    let r = send(a, "POST", "/v2/u/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    let other = loc.replace("/v2/u/", "/v2/other/");
    assert_eq!(get(a, &other).await.status, 404);
    // sha512 blobs.
    let data = b"sha512 content".to_vec();
    let d = Digest::of(Algorithm::Sha512, &data);
    let r = send(a, "PUT", &format!("{loc}?digest={d}"), &[], data.clone()).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let r = get(a, &format!("/v2/u/blobs/{d}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
}

#[tokio::test]
async fn cross_repo_mount() {
    let reg = start().await;
    let a = reg.addr;
    let d = push_blob(a, "src/repo", b"shared layer").await;
    // end-11: mountable -> 201.
    let r = send(
        a,
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), Some(format!("/v2/dst/blobs/{d}")));
    assert_eq!(
        get(a, &format!("/v2/dst/blobs/{d}")).await.body,
        b"shared layer"
    );
    // Not in the source: 202 and a usable upload session.
    let missing = Digest::sha256_of(b"nowhere");
    let r = send(
        a,
        "POST",
        &format!("/v2/dst2/blobs/uploads/?mount={missing}&from=src/repo"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("location");
    assert!(loc.starts_with("/v2/dst2/blobs/uploads/"));
    let r = send(
        a,
        "PUT",
        &format!("{loc}?digest={missing}"),
        &[],
        b"nowhere".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201);
    // Stored once: both repositories' blobs are one file.
    let files = reg.server.registry().store().root().join("blobs/sha256");
    assert_eq!(std::fs::read_dir(files).expect("blobs").count(), 2);
    // A blob pushed to one repository is not visible in another without a mount.
    assert_eq!(get(a, &format!("/v2/third/blobs/{d}")).await.status, 404);
}

#[tokio::test]
async fn pull_errors() {
    let reg = start().await;
    let a = reg.addr;
    let m = image(a, "p", "x").await;
    put_manifest(a, "p", "latest", OCI_MANIFEST, &m).await;
    let r = get(a, "/v2/p/manifests/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    let r = get(a, &format!("/v2/p/manifests/{}", Digest::sha256_of(b"x"))).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    let r = get(a, "/v2/never/pushed/manifests/latest").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NAME_UNKNOWN");
    let r = get(a, &format!("/v2/p/blobs/{}", Digest::sha256_of(b"x"))).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
    let r = get(a, "/v2/Bad_Name/manifests/latest").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "NAME_INVALID");
    let r = get(a, "/v2/never/tags/list").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NAME_UNKNOWN");
    let r = get(a, "/v2/p/blobs/uploads/doesnotexist").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    // Error bodies carry a message.
    assert!(r.json()["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn manifest_validation() {
    let reg = start().await;
    let a = reg.addr;
    // References a blob that was never pushed.
    let missing = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, b"{}"), "layers": [],
    }))
    .expect("json");
    let r = put_manifest(a, "v", "t", OCI_MANIFEST, &missing).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    // Not JSON.
    let r = put_manifest(a, "v", "t", OCI_MANIFEST, b"{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    // mediaType disagreeing with Content-Type.
    let m = image(a, "v", "ok").await;
    let r = put_manifest(a, "v", "t", OCI_INDEX, &m).await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    // Wrong size in a descriptor.
    let mut bad: serde_json::Value = serde_json::from_slice(&m).expect("json");
    bad["layers"][0]["size"] = 999.into();
    let r = put_manifest(
        a,
        "v",
        "t",
        OCI_MANIFEST,
        &serde_json::to_vec(&bad).expect("json"),
    )
    .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    // Pushed by a digest that is not its own.
    let r = put_manifest(
        a,
        "v",
        &Digest::sha256_of(b"other").to_string(),
        OCI_MANIFEST,
        &m,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    // Over 4 MiB: 413.
    let mut big: serde_json::Value = serde_json::from_slice(&m).expect("json");
    big["annotations"] = serde_json::json!({"pad": "x".repeat(4 * 1024 * 1024)});
    let r = put_manifest(
        a,
        "v",
        "big",
        OCI_MANIFEST,
        &serde_json::to_vec(&big).expect("json"),
    )
    .await;
    assert_eq!(r.status, 413);
    // An index needs its children in the repository.
    let idx = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &m)],
    }))
    .expect("json");
    let r = put_manifest(a, "v", "idx", OCI_INDEX, &idx).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        put_manifest(a, "v", "img", OCI_MANIFEST, &m).await.status,
        201
    );
    assert_eq!(
        put_manifest(a, "v", "idx", OCI_INDEX, &idx).await.status,
        201
    );
    // Nothing was tagged by the refused pushes.
    let tags = get(a, "/v2/v/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!(["idx", "img"]));
}

#[tokio::test]
async fn accept_negotiation_of_an_index() {
    let reg = start().await;
    let a = reg.addr;
    let m = image(a, "multi", "amd").await;
    let md = Digest::sha256_of(&m);
    put_manifest(a, "multi", &md.to_string(), OCI_MANIFEST, &m).await;
    let idx = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": m.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .expect("json");
    assert_eq!(
        put_manifest(a, "multi", "latest", OCI_INDEX, &idx)
            .await
            .status,
        201
    );
    let r = send(
        a,
        "GET",
        "/v2/multi/manifests/latest",
        &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.header("content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(r.body, idx);
    // A client that only takes image manifests gets the linux/amd64 one.
    let r = send(
        a,
        "GET",
        "/v2/multi/manifests/latest",
        &[("accept", OCI_MANIFEST)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(OCI_MANIFEST));
    assert_eq!(r.header("docker-content-digest"), Some(md.to_string()));
    assert_eq!(r.body, m);
}

#[tokio::test]
async fn tags_pagination_and_catalog() {
    let reg = start().await;
    let a = reg.addr;
    let m = image(a, "pg", "x").await;
    for t in ["e", "a", "d", "b", "c"] {
        assert_eq!(put_manifest(a, "pg", t, OCI_MANIFEST, &m).await.status, 201);
    }
    let r = get(a, "/v2/pg/tags/list").await;
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "pg", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(r.header("link").is_none());
    let r = get(a, "/v2/pg/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
    let link = r.header("link").expect("link header");
    assert_eq!(link, "</v2/pg/tags/list?n=2&last=b>; rel=\"next\"");
    let next = link.trim_start_matches('<').split('>').next().expect("url");
    let r = get(a, next).await;
    assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
    let r = get(a, "/v2/pg/tags/list?n=2&last=d").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["e"]));
    assert!(r.header("link").is_none());
    let r = get(a, "/v2/pg/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    let r = get(a, "/v2/pg/tags/list?last=c").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["d", "e"]));
    // Catalog.
    push_blob(a, "another/repo", b"x").await;
    let r = get(a, "/v2/_catalog").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["another/repo", "pg"])
    );
    let r = get(a, "/v2/_catalog?n=1").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["another/repo"])
    );
    assert!(r
        .header("link")
        .expect("link")
        .contains("last=another%2Frepo"));
}

#[tokio::test]
async fn referrers_with_filtering() {
    let reg = start().await;
    let a = reg.addr;
    let subject = image(a, "r", "subject").await;
    let sd = Digest::sha256_of(&subject);
    let empty = b"{}";
    push_blob(a, "r", empty).await;
    let artifact = |atype: &str, note: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": atype,
            "config": desc("application/vnd.oci.empty.v1+json", empty),
            "layers": [desc("application/vnd.oci.empty.v1+json", empty)],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sd.to_string(), "size": subject.len()},
            "annotations": {"note": note},
        }))
        .expect("json")
    };
    let sig = artifact("application/vnd.example.sig", "signature");
    let sbom = artifact("application/vnd.example.sbom", "sbom");
    // A referrer may be pushed before its subject.
    let r = put_manifest(
        a,
        "r",
        &Digest::sha256_of(&sig).to_string(),
        OCI_MANIFEST,
        &sig,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("oci-subject"), Some(sd.to_string()));
    put_manifest(a, "r", "v1", OCI_MANIFEST, &subject).await;
    put_manifest(
        a,
        "r",
        &Digest::sha256_of(&sbom).to_string(),
        OCI_MANIFEST,
        &sbom,
    )
    .await;
    let r = get(a, &format!("/v2/r/referrers/{sd}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(OCI_INDEX));
    assert!(r.header("oci-filters-applied").is_none());
    let idx = r.json();
    assert_eq!(idx["mediaType"], OCI_INDEX);
    assert_eq!(idx["schemaVersion"], 2);
    let list = idx["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 2);
    let sig_entry = list
        .iter()
        .find(|m| m["digest"] == Digest::sha256_of(&sig).to_string())
        .expect("sig");
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["annotations"]["note"], "signature");
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["mediaType"], OCI_MANIFEST);
    let r = get(
        a,
        &format!("/v2/r/referrers/{sd}?artifactType=application/vnd.example.sbom"),
    )
    .await;
    assert_eq!(
        r.header("oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let list = r.json()["manifests"].as_array().expect("manifests").clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], Digest::sha256_of(&sbom).to_string());
    // No referrers: an empty index, not 404.
    let r = get(
        a,
        &format!("/v2/r/referrers/{}", Digest::sha256_of(b"none")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    let r = get(a, &format!("/v2/unknown/repo/referrers/{sd}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    let r = get(a, "/v2/r/referrers/sha256:bad").await;
    assert_eq!(r.status, 400);
    // Deleting a referrer removes it from the list.
    let r = send(
        a,
        "DELETE",
        &format!("/v2/r/manifests/{}", Digest::sha256_of(&sig)),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = get(a, &format!("/v2/r/referrers/{sd}")).await;
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn content_management() {
    let reg = start().await;
    let a = reg.addr;
    let m = image(a, "cm", "x").await;
    let md = Digest::sha256_of(&m);
    put_manifest(a, "cm", "t1", OCI_MANIFEST, &m).await;
    put_manifest(a, "cm", "t2", OCI_MANIFEST, &m).await;
    // end-9 by tag: only the tag goes.
    let r = send(a, "DELETE", "/v2/cm/manifests/t1", &[], Vec::new()).await;
    assert_eq!(r.status, 202);
    assert_eq!(get(a, "/v2/cm/manifests/t1").await.status, 404);
    assert_eq!(get(a, "/v2/cm/manifests/t2").await.status, 200);
    assert_eq!(get(a, &format!("/v2/cm/manifests/{md}")).await.status, 200);
    // By digest: the manifest and its tags.
    let r = send(
        a,
        "DELETE",
        &format!("/v2/cm/manifests/{md}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(get(a, &format!("/v2/cm/manifests/{md}")).await.status, 404);
    assert_eq!(get(a, "/v2/cm/manifests/t2").await.status, 404);
    let r = send(
        a,
        "DELETE",
        &format!("/v2/cm/manifests/{md}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    // end-10: blobs.
    let d = push_blob(a, "cm", b"to delete").await;
    let r = send(a, "DELETE", &format!("/v2/cm/blobs/{d}"), &[], Vec::new()).await;
    assert_eq!(r.status, 202);
    let r = get(a, &format!("/v2/cm/blobs/{d}")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
    let r = send(a, "DELETE", &format!("/v2/cm/blobs/{d}"), &[], Vec::new()).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn blob_ranges() {
    let reg = start().await;
    let a = reg.addr;
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let d = push_blob(a, "rg", &data).await;
    let path = format!("/v2/rg/blobs/{d}");
    let r = send(a, "GET", &path, &[("range", "bytes=10-19")], Vec::new()).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[10..20]);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 10-19/1000")
    );
    assert_eq!(r.header("content-length").as_deref(), Some("10"));
    let r = send(a, "GET", &path, &[("range", "bytes=990-")], Vec::new()).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[990..]);
    let r = send(a, "GET", &path, &[("range", "bytes=-5")], Vec::new()).await;
    assert_eq!(r.body, data[995..]);
    let r = send(a, "GET", &path, &[("range", "bytes=1000-")], Vec::new()).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").as_deref(), Some("bytes */1000"));
    let r = get(a, &path).await;
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(r.body, data);
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let reg = start_with(|c| c.read_only = true).await;
    let a = reg.addr;
    let r = send(a, "POST", "/v2/ro/blobs/uploads/", &[], Vec::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "UNSUPPORTED");
    let r = send(
        a,
        "PUT",
        "/v2/ro/manifests/x",
        &[("content-type", OCI_MANIFEST)],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 405);
    let r = send(
        a,
        "DELETE",
        &format!("/v2/ro/blobs/{}", Digest::sha256_of(b"x")),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(get(a, "/v2/").await.status, 200);
    assert_eq!(get(a, "/v2/ro/tags/list").await.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-registry-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("root");
    let root2 = root.clone();
    let reg = start_with(move |c| c.root = root2).await;
    let m = image(reg.addr, "keep", "x").await;
    put_manifest(reg.addr, "keep", "v1", OCI_MANIFEST, &m).await;
    let r = send(reg.addr, "POST", "/v2/keep/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    send(reg.addr, "PATCH", &loc, &[], b"half".to_vec()).await;
    reg.server.shutdown().await;
    let reg2 = start_with(move |c| c.root = root).await;
    let r = get(reg2.addr, "/v2/keep/manifests/v1").await;
    assert_eq!(r.body, m);
    // The interrupted upload resumes where it stopped.
    let r = get(reg2.addr, &loc).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range").as_deref(), Some("0-3"));
    let d = Digest::sha256_of(b"halfdone");
    let r = send(
        reg2.addr,
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("content-range", "4-7")],
        b"done".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201);
}
