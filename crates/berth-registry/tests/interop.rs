//! Interop with skopeo (Debian's): copy an OCI layout made here to berth's registry and back,
//! with and without token auth, and compare digests. Skips with a reason when skopeo is absent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::Digest;
use common::*;

fn skopeo() -> Option<PathBuf> {
    let found = Command::new("skopeo").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("skopeo"))
}

/// Write a blob into an OCI layout; returns its descriptor.
fn put(layout: &Path, media_type: &str, data: &[u8]) -> serde_json::Value {
    let d = Digest::sha256_of(data);
    std::fs::write(layout.join("blobs/sha256").join(d.encoded()), data).expect("write blob");
    desc(media_type, data)
}

/// A one-layer image in an OCI layout at `layout`, tagged `tag`; returns the manifest digest.
fn make_layout(layout: &Path, tag: &str) -> Digest {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("hello.txt", &b"hello from berth\n"[..]),
        ("etc/os-release", b"ID=berthtest\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, body).expect("tar entry");
    }
    let layer = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &layer).expect("gzip");
    let layer_gz = gz.finish().expect("gzip");
    let layer_desc = put(
        layout,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &layer_gz,
    );
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&layer).to_string()]},
    }))
    .expect("json");
    let config_desc = put(layout, OCI_CONFIG, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config_desc, "layers": [layer_desc],
    }))
    .expect("json");
    let mut mdesc = put(layout, OCI_MANIFEST, &manifest);
    mdesc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [mdesc]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    Digest::sha256_of(&manifest)
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn layout_manifest_digest(layout: &Path) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    idx["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[tokio::test]
async fn skopeo_copy_to_berth_and_back() {
    let Some(bin) = skopeo() else {
        println!("skipping: skopeo is not installed (apt-get install -y skopeo)");
        return;
    };
    let reg = start().await;
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-skopeo-")
        .tempdir()
        .expect("tmp");
    let src = tmp.path().join("src");
    let md = make_layout(&src, "v1");
    let dest = format!("docker://{}/berth/skopeo:v1", reg.addr);
    let b2 = bin.clone();
    let (s, d) = (format!("oci:{}:v1", src.display()), dest.clone());
    tokio::task::spawn_blocking(move || {
        run(
            &b2,
            &[
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                &s,
                &d,
            ],
        )
    })
    .await
    .expect("join");
    // The registry holds exactly what skopeo pushed.
    let r = get(reg.addr, "/v2/berth/skopeo/manifests/v1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(md.to_string()));
    let back = tmp.path().join("back");
    let b2 = bin.clone();
    let (s, d) = (dest.clone(), format!("oci:{}:v1", back.display()));
    let inspect = tokio::task::spawn_blocking(move || {
        run(
            &b2,
            &[
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                &s,
                &d,
            ],
        );
        run(&b2, &["inspect", "--tls-verify=false", "--raw", &s])
    })
    .await
    .expect("join");
    assert_eq!(Digest::sha256_of(inspect.as_bytes()), md);
    assert_eq!(layout_manifest_digest(&back), md.to_string());
    // Every blob came back bit for bit.
    for entry in std::fs::read_dir(src.join("blobs/sha256")).expect("blobs") {
        let name = entry.expect("entry").file_name();
        let a = std::fs::read(src.join("blobs/sha256").join(&name)).expect("src blob");
        let b = std::fs::read(back.join("blobs/sha256").join(&name)).expect("copied blob");
        assert_eq!(a, b);
    }
    // list-tags and delete.
    let b2 = bin.clone();
    let repo = format!("docker://{}/berth/skopeo", reg.addr);
    let tags =
        tokio::task::spawn_blocking(move || run(&b2, &["list-tags", "--tls-verify=false", &repo]))
            .await
            .expect("join");
    let tags: serde_json::Value = serde_json::from_str(&tags).expect("json");
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
    let b2 = bin.clone();
    tokio::task::spawn_blocking(move || run(&b2, &["delete", "--tls-verify=false", &dest]))
        .await
        .expect("join");
    assert_eq!(
        get(reg.addr, &format!("/v2/berth/skopeo/manifests/{md}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn skopeo_copy_with_token_auth() {
    let Some(bin) = skopeo() else {
        println!("skipping: skopeo is not installed (apt-get install -y skopeo)");
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-skopeo-")
        .tempdir()
        .expect("tmp");
    let hp = tmp.path().join("htpasswd");
    std::fs::write(
        &hp,
        format!("bob:{}\n", bcrypt::hash("pw-bob", 4).expect("hash")),
    )
    .expect("htpasswd");
    let reg = start_with(|c| {
        c.htpasswd = Some(hp);
        c.token = Some(berth_registry::TokenConfig {
            key: b"interop-secret".to_vec(),
            issuer: "berth-test".into(),
            realm: String::new(),
            service: "berth-test".into(),
            ttl_secs: 300,
        });
    })
    .await;
    let src = tmp.path().join("src");
    let md = make_layout(&src, "t");
    let dest = format!("docker://{}/auth/img:t", reg.addr);
    let b2 = bin.clone();
    let (s, d) = (format!("oci:{}:t", src.display()), dest.clone());
    let denied = tokio::task::spawn_blocking(move || {
        Command::new(&b2)
            .args([
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "bob:wrong",
                &s,
                &d,
            ])
            .output()
            .expect("run skopeo")
    })
    .await
    .expect("join");
    assert!(
        !denied.status.success(),
        "push with a wrong password succeeded"
    );
    let b2 = bin.clone();
    let (s, d) = (format!("oci:{}:t", src.display()), dest.clone());
    let raw = tokio::task::spawn_blocking(move || {
        run(
            &b2,
            &[
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "bob:pw-bob",
                &s,
                &d,
            ],
        );
        run(
            &b2,
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "bob:pw-bob",
                &d,
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(Digest::sha256_of(raw.as_bytes()), md);
    // Without credentials the pull is refused.
    let r = get(reg.addr, "/v2/auth/img/manifests/t").await;
    assert_eq!(r.status, 401);
}
