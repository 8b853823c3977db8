//! Integration tests of the image service: docker-archive and OCI interchange, import, lookup,
//! removal rules, platform selection, layer sharing and crash safety. Run as root (real
//! overlay snapshots); each test has its own temp data root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_content::Store;
use berth_core::{Digest, Platform};
use berth_image::spec::{
    media, Descriptor, DescriptorPlatform, ImageConfig, Index, Manifest, RootFs,
};
use berth_image::{DeleteResponse, ImageService, ImportOptions, OciDest};
use berth_metadata::{Holder, Resource};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-save-tiny.tar"
);

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berthtest-image-")
        .tempdir()
        .expect("tempdir")
}

/// A layer tar of (path, content, mode) regular files; directories end with '/'.
fn layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        if p.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
        h.set_mode(*mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, p, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An image built in code: blobs plus its manifest descriptor.
struct Built {
    blobs: Vec<Vec<u8>>,
    manifest: Descriptor,
    config_digest: Digest,
}

/// Build an image from (uncompressed tar, compress?) layers.
fn build(layers: &[(Vec<u8>, bool)], platform: &Platform, cmd: &str) -> Built {
    let mut blobs = Vec::new();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, gz) in layers {
        diff_ids.push(Digest::sha256_of(tar));
        let (data, mt) = if *gz {
            (gzip(tar), media::OCI_LAYER_GZIP)
        } else {
            (tar.clone(), media::OCI_LAYER)
        };
        descs.push(Descriptor::new(
            mt,
            Digest::sha256_of(&data),
            data.len() as u64,
        ));
        blobs.push(data);
    }
    let cfg = ImageConfig {
        created: Some("2024-01-02T03:04:05Z".into()),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
        os: platform.os.clone(),
        config: Some(berth_image::spec::RunConfig {
            cmd: Some(vec![cmd.into()]),
            ..Default::default()
        }),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history: layers
            .iter()
            .enumerate()
            .map(|(i, _)| berth_image::spec::History {
                created: Some("2024-01-02T03:04:05Z".into()),
                created_by: Some(format!(
                    "/bin/sh -c #(nop) ADD layer{i} in / with a long command line"
                )),
                ..Default::default()
            })
            .chain([berth_image::spec::History {
                created_by: Some(format!("CMD [\"{cmd}\"]")),
                empty_layer: true,
                ..Default::default()
            }])
            .collect(),
        ..Default::default()
    };
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let config_digest = Digest::sha256_of(&cfg_bytes);
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(
            media::OCI_CONFIG,
            config_digest.clone(),
            cfg_bytes.len() as u64,
        ),
        layers: descs,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mbytes = serde_json::to_vec(&m).unwrap();
    let manifest = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&mbytes),
        mbytes.len() as u64,
    );
    blobs.push(cfg_bytes);
    blobs.push(mbytes);
    Built {
        blobs,
        manifest,
        config_digest,
    }
}

/// An OCI layout tar holding `blobs` with `index` as index.json.
fn oci_archive(blobs: &[&[u8]], index: &Index) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |p: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut seen = std::collections::HashSet::new();
    for data in blobs {
        let d = Digest::sha256_of(data);
        if seen.insert(d.clone()) {
            add(&format!("blobs/sha256/{}", d.encoded()), data);
        }
    }
    add("index.json", &serde_json::to_vec(index).unwrap());
    b.into_inner().unwrap()
}

fn index_of(entries: Vec<Descriptor>) -> Index {
    Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        artifact_type: None,
        manifests: entries,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

fn named(d: &Descriptor, name: &str) -> Descriptor {
    let mut d = d.clone();
    d.annotations
        .insert("io.containerd.image.name".into(), name.into());
    d
}

fn archive_of(b: &Built, name: &str) -> Vec<u8> {
    let blobs: Vec<&[u8]> = b.blobs.iter().map(|v| v.as_slice()).collect();
    oci_archive(&blobs, &index_of(vec![named(&b.manifest, name)]))
}

/// Mounts a read-only view of a committed snapshot; unmounts and removes the view on drop.
struct View<'a> {
    svc: &'a ImageService,
    key: String,
    dir: tempfile::TempDir,
    mounted: bool,
}

impl<'a> View<'a> {
    fn new(svc: &'a ImageService, parent: &Digest) -> View<'a> {
        let key = format!("berthtest-view-{}", std::process::id());
        let mounts = svc
            .snapshotter()
            .view(&key, Some(&parent.to_string()))
            .expect("view");
        let mut v = View {
            svc,
            key,
            dir: tmp(),
            mounted: false,
        };
        berth_snapshot::mount_all(&mounts, v.dir.path()).expect("mount view");
        v.mounted = true;
        v
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = berth_snapshot::unmount(self.dir.path());
        }
        let _ = self.svc.snapshotter().remove(&self.key);
    }
}

fn all_blobs_verify(svc: &ImageService) {
    for info in svc.content().list().unwrap() {
        let mut r = svc.content().reader(&info.digest).unwrap();
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(
            Digest::of(info.digest.algorithm(), &v),
            info.digest,
            "corrupt blob {}",
            info.digest
        );
    }
}

#[test]
fn docker_save_fixture_loads_with_right_config() {
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let res = svc.load(std::fs::File::open(FIXTURE).unwrap()).unwrap();
    assert_eq!(res.len(), 1);
    let mut names = res[0].names.clone();
    names.sort();
    assert_eq!(names, ["berthfixture/tiny:latest", "berthfixture/tiny:v1"]);

    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/docker-save-tiny.inspect.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let got = serde_json::to_value(svc.inspect("berthfixture/tiny:v1").unwrap()).unwrap();
    for k in [
        "Id",
        "Size",
        "RepoTags",
        "Comment",
        "Created",
        "DockerVersion",
        "Architecture",
        "Os",
        "RootFS",
    ] {
        assert_eq!(got[k], want[k], "inspect field {k}");
    }
    for k in [
        "Env",
        "Cmd",
        "WorkingDir",
        "Labels",
        "Entrypoint",
        "User",
        "Volumes",
        "OnBuild",
    ] {
        assert_eq!(got["Config"][k], want["Config"][k], "inspect Config.{k}");
    }
    // lookups: short id, full id, sha256:prefix, familiar and normalised names
    let id = want["Id"].as_str().unwrap();
    for q in [
        &id[7..19],
        id,
        &id[..15],
        "berthfixture/tiny",
        "docker.io/berthfixture/tiny:v1",
    ] {
        assert_eq!(svc.resolve(q).unwrap().id.to_string(), id, "lookup {q}");
    }
    assert!(svc.resolve("berthfixture/tiny:nope").is_err());

    // unpacked: the files are in the top snapshot
    let img = svc.resolve("berthfixture/tiny:v1").unwrap();
    let view = View::new(&svc, &img.top_chain_id().unwrap());
    let motd = std::fs::read_to_string(view.path().join("etc/motd")).unwrap();
    assert_eq!(motd, "hello from the docker save fixture\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(view.path().join("data/file.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
    assert_eq!(
        std::fs::read_link(view.path().join("data/motd-link")).unwrap(),
        PathBuf::from("../etc/motd")
    );
    drop(view);
    all_blobs_verify(&svc);
}

#[test]
fn save_load_save_gives_identical_digests() {
    let host = Platform::host();
    let base = layer(&[
        ("etc/", b"", 0o755),
        ("etc/os-release", b"ID=berthtest\n", 0o644),
    ]);
    let app = layer(&[
        ("app/", b"", 0o755),
        ("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
    ]);
    let b = build(&[(base, false), (app, true)], &host, "/app/run.sh");

    let r1 = tmp();
    let s1 = ImageService::open(r1.path()).unwrap();
    s1.load(&archive_of(&b, "berthtest/app:1")[..]).unwrap();
    // also the fixture, so the save holds two images, one of them legacy-derived
    s1.load(std::fs::File::open(FIXTURE).unwrap()).unwrap();
    let names = vec![
        "berthtest/app:1".to_string(),
        "berthfixture/tiny:v1".to_string(),
    ];
    let mut first = Vec::new();
    s1.save(&names, &mut first).unwrap();

    let r2 = tmp();
    let s2 = ImageService::open(r2.path()).unwrap();
    let loaded = s2.load(&first[..]).unwrap();
    assert_eq!(loaded.len(), 2);
    let mut second = Vec::new();
    s2.save(&names, &mut second).unwrap();
    assert_eq!(
        Digest::sha256_of(&first),
        Digest::sha256_of(&second),
        "save bytes differ"
    );
    for n in &names {
        let a = s1.resolve(n).unwrap();
        let c = s2.resolve(n).unwrap();
        assert_eq!(a.id, c.id);
        assert_eq!(a.manifest_desc.digest, c.manifest_desc.digest);
        assert_eq!(a.target.digest, c.target.digest);
    }
    assert_eq!(s2.resolve("berthtest/app:1").unwrap().id, b.config_digest);
    assert_eq!(
        s2.resolve("berthtest/app:1").unwrap().manifest_desc.digest,
        b.manifest.digest
    );

    // the archive has docker's manifest.json and an OCI index
    let mut ar = tar::Archive::new(&first[..]);
    let paths: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for p in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
    }
    // a gzip-compressed save loads too
    let r3 = tmp();
    let s3 = ImageService::open(r3.path()).unwrap();
    s3.load(&gzip(&first)[..]).unwrap();
    assert_eq!(s3.resolve("berthtest/app:1").unwrap().id, b.config_digest);
}

#[test]
fn oci_layout_dir_and_archive_roundtrip_and_skopeo() {
    let host = Platform::host();
    let b = build(
        &[(layer(&[("hello.txt", b"hello oci\n", 0o644)]), true)],
        &host,
        "cat",
    );
    let r1 = tmp();
    let s1 = ImageService::open(r1.path()).unwrap();
    s1.load(&archive_of(&b, "berthtest/oci:v1")[..]).unwrap();
    let out = tmp();
    let dir = out.path().join("layout");
    s1.save_oci(&["berthtest/oci:v1".into()], &OciDest::Dir(dir.clone()))
        .unwrap();
    let ar = out.path().join("layout.tar");
    s1.save_oci(&["berthtest/oci:v1".into()], &OciDest::Archive(ar.clone()))
        .unwrap();
    let idx: Index =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        idx.manifests[0].annotations["org.opencontainers.image.ref.name"],
        "docker.io/berthtest/oci:v1"
    );

    let r2 = tmp();
    let s2 = ImageService::open(r2.path()).unwrap();
    let res = s2.load_oci_dir(&dir).unwrap();
    assert_eq!(res[0].names, ["berthtest/oci:v1"]);
    assert_eq!(res[0].id, b.config_digest);
    let r3 = tmp();
    let s3 = ImageService::open(r3.path()).unwrap();
    let res = s3.load(std::fs::File::open(&ar).unwrap()).unwrap();
    assert_eq!(res[0].id, b.config_digest);

    // skopeo: berth layout -> skopeo's own oci: dir -> berth
    let skopeo = Command::new("skopeo").arg("--version").output();
    if !skopeo.is_ok_and(|o| o.status.success()) {
        eprintln!("skopeo is not installed: skipping the skopeo interop part");
        return;
    }
    let theirs = out.path().join("skopeo-layout");
    let st = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{}:docker.io/berthtest/oci:v1", dir.display()))
        .arg(format!("oci:{}:berthtest/copied:v2", theirs.display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let r4 = tmp();
    let s4 = ImageService::open(r4.path()).unwrap();
    let res = s4.load_oci_dir(&theirs).unwrap();
    assert_eq!(res[0].id, b.config_digest, "skopeo kept the config");
    assert_eq!(res[0].names, ["berthtest/copied:v2"]);
    let img = s4.resolve("berthtest/copied:v2").unwrap();
    let view = View::new(&s4, &img.top_chain_id().unwrap());
    assert_eq!(
        std::fs::read(view.path().join("hello.txt")).unwrap(),
        b"hello oci\n"
    );
    drop(view);
    // and skopeo's oci-archive of it loads as well
    let their_ar = out.path().join("skopeo.tar");
    let st = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{}:berthtest/copied:v2", theirs.display()))
        .arg(format!(
            "oci-archive:{}:berthtest/arch:v3",
            their_ar.display()
        ))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let res = s4.load(std::fs::File::open(&their_ar).unwrap()).unwrap();
    assert_eq!(res[0].id, b.config_digest);
    assert_eq!(res[0].names, ["berthtest/arch:v3"]);
}

#[test]
fn import_with_changes() {
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let tarball = gzip(&layer(&[
        ("bin/", b"", 0o755),
        ("bin/tool", b"tool", 0o755),
    ]));
    let opts = ImportOptions {
        changes: vec![
            r#"CMD ["/bin/tool", "--serve"]"#.into(),
            "ENTRYPOINT /bin/tool".into(),
            "ENV A=1 B=two".into(),
            "WORKDIR /srv".into(),
            "USER 1000".into(),
            "EXPOSE 8080/tcp 53/udp".into(),
            "LABEL team=berth".into(),
            "VOLUME /data".into(),
            "STOPSIGNAL SIGQUIT".into(),
            "ONBUILD RUN echo child".into(),
        ],
        message: Some("imported for a test".into()),
        ..Default::default()
    };
    let res = svc
        .import(&tarball[..], Some("berthtest/imported:v1"), &opts)
        .unwrap();
    let v = serde_json::to_value(svc.inspect("berthtest/imported:v1").unwrap()).unwrap();
    assert_eq!(v["Id"], res.id.to_string());
    let c = &v["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/tool", "--serve"]));
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "/bin/tool"])
    );
    assert_eq!(c["Env"], serde_json::json!(["A=1", "B=two"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Labels"], serde_json::json!({"team": "berth"}));
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(v["Comment"], "imported for a test");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Architecture"], Platform::host().architecture);
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // the layer is stored uncompressed: its digest is its diff id
    let img = svc.resolve("berthtest/imported:v1").unwrap();
    assert_eq!(img.manifest.layers[0].digest, img.config.rootfs.diff_ids[0]);
    let view = View::new(&svc, &img.top_chain_id().unwrap());
    assert_eq!(
        std::fs::read(view.path().join("bin/tool")).unwrap(),
        b"tool"
    );
    drop(view);
    // an invalid change fails before anything is stored
    let bad = ImportOptions {
        changes: vec!["RUN rm -rf /".into()],
        ..Default::default()
    };
    let err = svc.import(&tarball[..], None, &bad).unwrap_err();
    assert!(
        err.to_string().contains("not a valid change command"),
        "{err}"
    );
    // untagged import: dangling image
    let res2 = svc
        .import(
            &layer(&[("x", b"x", 0o644)])[..],
            None,
            &ImportOptions::default(),
        )
        .unwrap();
    let listed = svc.list().unwrap();
    let d = listed.iter().find(|i| i.id == res2.id.to_string()).unwrap();
    assert!(d.repo_tags.is_empty());
}

#[test]
fn inspect_list_and_history_shapes() {
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let host = Platform::host();
    let b = build(
        &[
            (layer(&[("a", &[7u8; 3000], 0o644)]), false),
            (layer(&[("b", &[9u8; 5000], 0o644)]), true),
        ],
        &host,
        "sh",
    );
    svc.load(&archive_of(&b, "berthtest/shape:1")[..]).unwrap();
    svc.tag("berthtest/shape:1", "localhost:5000/shape:copy")
        .unwrap();

    let v = serde_json::to_value(svc.inspect("berthtest/shape:1").unwrap()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "Id",
        "RepoTags",
        "RepoDigests",
        "Parent",
        "Comment",
        "Created",
        "DockerVersion",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "GraphDriver",
        "RootFS",
        "Metadata",
    ] {
        assert!(keys.contains(&k), "inspect lacks {k}");
    }
    assert_eq!(
        v["RepoTags"],
        serde_json::json!(["berthtest/shape:1", "localhost:5000/shape:copy"])
    );
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert!(v["Size"].as_u64().unwrap() >= 8000);
    let text = serde_json::to_string(&svc.inspect("berthtest/shape:1").unwrap()).unwrap();
    assert!(text.starts_with(r#"{"Id":"sha256:"#), "field order: {text}");

    let list = svc.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repo_tags.len(), 2);
    assert_eq!(list[0].created, 1_704_164_645);

    let h = svc.history("berthtest/shape:1").unwrap();
    assert_eq!(h.len(), 3, "two layers and one empty step");
    assert_eq!(h[0].id, b.config_digest.to_string());
    assert_eq!(h[0].created_by, "CMD [\"sh\"]");
    assert_eq!(h[0].size, 0);
    assert_eq!(h[1].id, "<missing>");
    assert!(h[1].size >= 5000, "layer size {}", h[1].size);
    assert!(h[2].size >= 3000);
    assert_eq!(h[0].tags.as_ref().unwrap().len(), 2);
    let j = serde_json::to_value(&h[0]).unwrap();
    for k in ["Id", "Created", "CreatedBy", "Tags", "Size", "Comment"] {
        assert!(j.get(k).is_some(), "history lacks {k}");
    }
}

#[test]
fn rm_follows_docker_conflict_rules() {
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let host = Platform::host();
    let b = build(&[(layer(&[("f", b"rm", 0o644)]), false)], &host, "sh");
    svc.load(&archive_of(&b, "berthtest/rm:a")[..]).unwrap();
    svc.tag("berthtest/rm:a", "berthtest/rm:b").unwrap();
    svc.tag("berthtest/rm:a", "berthtest/other:c").unwrap();
    let id = b.config_digest.to_string();

    // by id with references in several repositories: must force
    let e = svc.remove(&id, false, true).unwrap_err();
    assert!(
        e.to_string()
            .contains("referenced in multiple repositories"),
        "{e}"
    );
    assert_eq!(e.kind(), berth_core::ErrorKind::Conflict);

    // by reference while others remain: untag only
    assert_eq!(
        svc.remove("berthtest/other:c", false, true).unwrap(),
        [DeleteResponse::Untagged("berthtest/other:c".into())]
    );
    assert_eq!(
        svc.remove("berthtest/rm:b", false, true).unwrap(),
        [DeleteResponse::Untagged("berthtest/rm:b".into())]
    );
    assert!(svc.resolve(&id).is_ok());

    // a container holds the image: the last reference is not removed without force
    let holder = Holder::new("container", "berthtest-c1");
    svc.db()
        .add_hold(&holder, &Resource::Image(b.config_digest.clone()))
        .unwrap();
    let e = svc.remove("berthtest/rm:a", false, true).unwrap_err();
    assert!(e.to_string().contains("must force"), "{e}");
    let e = svc.remove(&id[7..19], false, true).unwrap_err();
    assert!(
        e.to_string()
            .contains("being used by container berthtest-c1"),
        "{e}"
    );
    // forced: removed; the held content stays until released
    assert_eq!(
        svc.remove("berthtest/rm:a", true, true).unwrap(),
        [
            DeleteResponse::Untagged("berthtest/rm:a".into()),
            DeleteResponse::Deleted(id.clone())
        ]
    );
    assert!(svc.resolve(&id).is_err());
    assert!(
        svc.content().exists(&b.config_digest).unwrap(),
        "held config was collected"
    );
    svc.db().release_holder(&holder).unwrap();
    svc.gc().unwrap();
    assert!(
        !svc.content().exists(&b.config_digest).unwrap(),
        "released config survived gc"
    );
    assert!(
        svc.snapshotter().list().unwrap().is_empty(),
        "snapshots left after gc"
    );

    // untag of the last name leaves a dangling image; rm by id then deletes it
    svc.load(&archive_of(&b, "berthtest/rm:a")[..]).unwrap();
    svc.untag("berthtest/rm:a").unwrap();
    let l = svc.list().unwrap();
    assert_eq!(l.len(), 1);
    assert!(l[0].repo_tags.is_empty());
    assert_eq!(
        svc.remove(&id, false, true).unwrap(),
        [DeleteResponse::Deleted(id.clone())]
    );
    assert!(svc.list().unwrap().is_empty());
    assert!(svc.content().list().unwrap().is_empty(), "gc left blobs");
}

#[test]
fn platform_selection_from_multiarch_index() {
    let host = Platform::host();
    let other = if host.architecture == "s390x" {
        Platform::parse("linux/ppc64le").unwrap()
    } else {
        Platform::parse("linux/s390x").unwrap()
    };
    let mine = build(
        &[(
            layer(&[("arch", host.architecture.as_bytes(), 0o644)]),
            true,
        )],
        &host,
        "mine",
    );
    let theirs = build(
        &[(
            layer(&[("arch", other.architecture.as_bytes(), 0o644)]),
            true,
        )],
        &other,
        "theirs",
    );
    let mut e1 = theirs.manifest.clone();
    e1.platform = Some(DescriptorPlatform::from(&other));
    let mut e2 = mine.manifest.clone();
    e2.platform = Some(DescriptorPlatform::from(&host));
    let idx = index_of(vec![e1, e2]);
    let idx_bytes = serde_json::to_vec(&idx).unwrap();
    let idx_desc = Descriptor::new(
        media::OCI_INDEX,
        Digest::sha256_of(&idx_bytes),
        idx_bytes.len() as u64,
    );
    let mut blobs: Vec<&[u8]> = mine
        .blobs
        .iter()
        .chain(&theirs.blobs)
        .map(|v| v.as_slice())
        .collect();
    blobs.push(&idx_bytes);
    let ar = oci_archive(
        &blobs,
        &index_of(vec![named(&idx_desc, "berthtest/multi:1")]),
    );

    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let res = svc.load(&ar[..]).unwrap();
    assert_eq!(res[0].id, mine.config_digest, "host platform chosen");
    let img = svc.resolve("berthtest/multi:1").unwrap();
    assert_eq!(
        img.target.digest, idx_desc.digest,
        "the name points at the index"
    );
    assert_eq!(img.config.architecture, host.architecture);
    let view = View::new(&svc, &img.top_chain_id().unwrap());
    assert_eq!(
        std::fs::read(view.path().join("arch")).unwrap(),
        host.architecture.as_bytes()
    );
    drop(view);

    // a platform the index lacks
    let root2 = tmp();
    let svc2 = ImageService::open(root2.path())
        .unwrap()
        .with_platform(Platform::parse("linux/riscv64").unwrap());
    let e = svc2.load(&ar[..]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no matching manifest for linux/riscv64 in the manifest list entries"
    );
    assert!(svc2.list().unwrap().is_empty());
}

fn dir_usage(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn shared_base_layer_stored_and_unpacked_once() {
    let host = Platform::host();
    // 4 MB of incompressible base
    let mut big = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for c in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let base = layer(&[("base.bin", &big, 0o644)]);
    let a = build(
        &[(base.clone(), true), (layer(&[("a", b"a", 0o644)]), false)],
        &host,
        "a",
    );
    let b = build(
        &[(base, true), (layer(&[("b", b"b", 0o644)]), false)],
        &host,
        "b",
    );

    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    svc.load(&archive_of(&a, "berthtest/share:a")[..]).unwrap();
    let snaps_after_a = svc.snapshotter().list().unwrap().len();
    let disk_a = dir_usage(&root.path().join("snapshots"));
    let content_a = dir_usage(&root.path().join("content"));
    svc.load(&archive_of(&b, "berthtest/share:b")[..]).unwrap();
    let snaps = svc.snapshotter().list().unwrap();
    assert_eq!(snaps_after_a, 2);
    assert_eq!(snaps.len(), 3, "base unpacked once: {snaps:?}");
    let disk_b = dir_usage(&root.path().join("snapshots"));
    let content_b = dir_usage(&root.path().join("content"));
    eprintln!(
        "snapshots: {disk_a} B after image a, {disk_b} B after a+b; content: {content_a} B, {content_b} B"
    );
    assert!(
        disk_b < disk_a + (1 << 20),
        "second image re-stored the base: {disk_a} -> {disk_b}"
    );
    assert!(
        content_b < content_a + (1 << 20),
        "base blob stored twice: {content_a} -> {content_b}"
    );
    let ra = svc.resolve("berthtest/share:a").unwrap();
    let rb = svc.resolve("berthtest/share:b").unwrap();
    assert_eq!(ra.chain_ids()[0], rb.chain_ids()[0]);
    assert_eq!(svc.unpack("berthtest/share:b").unwrap().reused, 2);
    // the base was applied while streaming (staged) and moved into place intact
    let view = View::new(&svc, &rb.top_chain_id().unwrap());
    assert_eq!(std::fs::read(view.path().join("base.bin")).unwrap(), big);
    assert_eq!(std::fs::read(view.path().join("b")).unwrap(), b"b");
    assert!(!view.path().join("a").exists());
    drop(view);
    let staging: Vec<_> = std::fs::read_dir(root.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}

#[test]
fn corrupt_layer_is_refused_and_nothing_registered() {
    corrupt_layer_case(b"good".to_vec(), b"evil".to_vec());
    // large enough to be applied while streaming: the staged tree is discarded too
    corrupt_layer_case(vec![b'g'; 3 << 20], vec![b'e'; 3 << 20]);
}

fn corrupt_layer_case(good: Vec<u8>, bad: Vec<u8>) {
    let host = Platform::host();
    let mut b = build(&[(layer(&[("f", &good, 0o644)]), false)], &host, "x");
    // swap the layer for another one: digest fine, diff id wrong
    let evil = layer(&[("f", &bad, 0o644)]);
    let m_idx = b.blobs.len() - 1;
    let mut m: Manifest = serde_json::from_slice(&b.blobs[m_idx]).unwrap();
    m.layers[0] = Descriptor::new(
        media::OCI_LAYER_GZIP,
        Digest::sha256_of(&evil),
        evil.len() as u64,
    );
    b.blobs[0] = evil;
    b.blobs[m_idx] = serde_json::to_vec(&m).unwrap();
    b.manifest = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&b.blobs[m_idx]),
        b.blobs[m_idx].len() as u64,
    );
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let e = svc
        .load(&archive_of(&b, "berthtest/corrupt:1")[..])
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::Corrupt, "{e}");
    assert!(svc.list().unwrap().is_empty());
    assert!(
        svc.snapshotter().list().unwrap().is_empty(),
        "half-applied snapshot left"
    );

    // a blob whose bytes do not match its path digest is refused by the content store
    let mut ar = archive_of(
        &build(&[(layer(&[("f", b"x", 0o644)]), false)], &host, "y"),
        "berthtest/c:2",
    );
    let needle = b"2024-01-02T03:04:05Z";
    let at = ar.windows(needle.len()).position(|w| w == needle).unwrap();
    ar[at] = b'3';
    let e = svc.load(&ar[..]).unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::Corrupt, "{e}");
    assert!(svc.list().unwrap().is_empty());
    all_blobs_verify(&svc);
}

/// The child half of `kill_during_load_then_reload`: loads the archive named by the
/// environment through a slow reader, until killed.
#[test]
fn kill_helper_child() {
    let (Ok(root), Ok(archive)) = (
        std::env::var("BERTHTEST_KILL_ROOT"),
        std::env::var("BERTHTEST_KILL_ARCHIVE"),
    ) else {
        return; // only meaningful when spawned by the parent test
    };
    struct Slow(std::fs::File);
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let n = buf.len().min(64 * 1024);
            self.0.read(&mut buf[..n])
        }
    }
    let svc = ImageService::open(&root).unwrap();
    svc.load(Slow(std::fs::File::open(archive).unwrap()))
        .unwrap();
}

#[test]
fn kill_during_load_then_reload() {
    let host = Platform::host();
    let mut big = vec![0u8; 24 << 20];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for c in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let b = build(
        &[
            (layer(&[("one.bin", &big[..8 << 20], 0o644)]), false),
            (layer(&[("two.bin", &big[8 << 20..], 0o644)]), false),
        ],
        &host,
        "k",
    );
    let root = tmp();
    let ar_path = root.path().join("image.tar");
    std::fs::write(&ar_path, archive_of(&b, "berthtest/kill:1")).unwrap();
    let data = root.path().join("data");
    ImageService::open(&data).unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "kill_helper_child", "--nocapture"])
        .env("BERTHTEST_KILL_ROOT", &data)
        .env("BERTHTEST_KILL_ARCHIVE", &ar_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait until the child is inside an ingest, then SIGKILL it
    let ingest = data.join("content/ingest");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let busy = std::fs::read_dir(&ingest)
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        if busy || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(
        !st.success(),
        "child finished before the kill: make the archive bigger"
    );

    let staging_before = std::fs::read_dir(data.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    let svc = ImageService::open(&data).unwrap();
    assert!(
        svc.list().unwrap().is_empty(),
        "a killed load registered an image"
    );
    // the killed load's staging directory is removed when the service opens
    eprintln!("staging dirs left by the killed load: {staging_before}");
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    all_blobs_verify(&svc);
    let before: Vec<Digest> = svc
        .content()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    // reload: completes, no duplicate or corrupt blob
    let res = svc.load(std::fs::File::open(&ar_path).unwrap()).unwrap();
    assert_eq!(res[0].id, b.config_digest);
    all_blobs_verify(&svc);
    let after: Vec<Digest> = svc
        .content()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    let mut dedup = after.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), after.len(), "duplicate blobs");
    assert_eq!(after.len(), 4, "2 layers + config + manifest: {after:?}");
    for d in before {
        assert!(after.contains(&d));
    }
    assert_eq!(svc.snapshotter().list().unwrap().len(), 2);
    // stale ingests from the killed load are cleaned up by gc (its lease is still live until
    // expiry, so the content stays; the interrupted ingest dir is removable)
    let left = svc
        .content()
        .cleanup_stale_ingests(std::time::Duration::ZERO)
        .unwrap();
    eprintln!("stale ingests removed after reload: {left:?}");
    assert!(std::fs::read_dir(&ingest).unwrap().count() == 0);
}

/// A legacy (docker < 25) archive where the second image's shared layer is a symlink to the
/// first one's, as `docker save a b` writes it; and a re-load that moves a tag.
#[test]
fn legacy_archive_with_symlinked_layer_and_moved_tag() {
    let host = Platform::host();
    let base = layer(&[("base", b"shared", 0o644)]);
    let top_a = layer(&[("a", b"A", 0o644)]);
    let top_b = layer(&[("b", b"B", 0o644)]);
    let cfg = |diffs: &[&Vec<u8>], cmd: &str| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": host.architecture, "os": "linux",
            "created": "2023-05-06T07:08:09.123Z",
            "config": {"Cmd": [cmd]},
            "rootfs": {"type": "layers", "diff_ids": diffs.iter().map(|d| Digest::sha256_of(d).to_string()).collect::<Vec<_>>()},
        }))
        .unwrap()
    };
    let cfg_a = cfg(&[&base, &top_a], "a");
    let cfg_b = cfg(&[&base, &top_b], "b");
    let mut tb = tar::Builder::new(Vec::new());
    let file = |tb: &mut tar::Builder<Vec<u8>>, p: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tb.append_data(&mut h, p, data).unwrap();
    };
    file(&mut tb, "l1/layer.tar", &base);
    file(&mut tb, "l1/VERSION", b"1.0");
    file(&mut tb, "l2/layer.tar", &top_a);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    tb.append_link(&mut h, "l3/layer.tar", "../l1/layer.tar")
        .unwrap();
    file(&mut tb, "l4/layer.tar", &top_b);
    let ca = format!("{}.json", Digest::sha256_of(&cfg_a).encoded());
    let cb = format!("{}.json", Digest::sha256_of(&cfg_b).encoded());
    file(&mut tb, &ca, &cfg_a);
    file(&mut tb, &cb, &cfg_b);
    let manifest = serde_json::json!([
        {"Config": ca, "RepoTags": ["berthtest/legacy:a"], "Layers": ["l1/layer.tar", "l2/layer.tar"]},
        {"Config": cb, "RepoTags": ["berthtest/legacy:b"], "Layers": ["l3/layer.tar", "l4/layer.tar"]},
    ]);
    file(
        &mut tb,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    file(&mut tb, "repositories", b"{}");
    let ar = tb.into_inner().unwrap();

    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    let res = svc.load(&ar[..]).unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[1].id, Digest::sha256_of(&cfg_b));
    // base blob once, three snapshots (base, a, b)
    assert_eq!(
        svc.content()
            .list()
            .unwrap()
            .iter()
            .filter(|i| i.size == base.len() as u64 && i.digest == Digest::sha256_of(&base))
            .count(),
        1
    );
    assert_eq!(svc.snapshotter().list().unwrap().len(), 3);
    let b = svc.resolve("berthtest/legacy:b").unwrap();
    assert_eq!(b.manifest.layers[0].digest, Digest::sha256_of(&base));
    let view = View::new(&svc, &b.top_chain_id().unwrap());
    assert_eq!(std::fs::read(view.path().join("base")).unwrap(), b"shared");
    assert_eq!(std::fs::read(view.path().join("b")).unwrap(), b"B");
    drop(view);

    // moving a tag onto another image leaves the old one dangling, as docker load does
    svc.tag("berthtest/legacy:b", "berthtest/legacy:a").unwrap();
    let list = svc.list().unwrap();
    assert_eq!(list.len(), 2);
    let old = list
        .iter()
        .find(|i| i.id == Digest::sha256_of(&cfg_a).to_string())
        .unwrap();
    assert!(old.repo_tags.is_empty(), "{old:?}");
    let new = list
        .iter()
        .find(|i| i.id == Digest::sha256_of(&cfg_b).to_string())
        .unwrap();
    assert_eq!(new.repo_tags, ["berthtest/legacy:a", "berthtest/legacy:b"]);
    let again = svc.load(&ar[..]).unwrap();
    assert_eq!(
        again[0].renamed,
        [("berthtest/legacy:a".to_string(), Digest::sha256_of(&cfg_b))]
    );
}

/// A private dockerd on temp dirs; stopped (SIGTERM, waited) and cleaned up on drop.
struct Dockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        let have = |b: &str| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !have("dockerd") || !have("docker") {
            eprintln!("dockerd or docker is not installed: skipping");
            return None;
        }
        let dir = tmp();
        let p = dir.path();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", p.join("d.sock").display()))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(p.join("log")).unwrap())
            .spawn()
            .unwrap();
        let d = Dockerd { child, dir };
        for _ in 0..120 {
            if d.docker(&["version"]).status.success() {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!(
            "dockerd did not come up: {}",
            std::fs::read_to_string(d.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("d.sock").display()
            ))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // dockerd leaves its data root's mounts (overlay, netns) behind on some kernels
        let root = self.dir.path().display().to_string();
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut mps: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|mp| mp.starts_with(&root))
                .collect();
            mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mp in mps {
                let _ = Command::new("umount").args(["-l", mp]).status();
            }
        }
    }
}

#[test]
fn docker_loads_what_berth_saves() {
    let Some(d) = Dockerd::start() else { return };
    let host = Platform::host();
    let b = build(
        &[
            (
                layer(&[("etc/", b"", 0o755), ("etc/hello", b"from berth\n", 0o644)]),
                true,
            ),
            (
                layer(&[("srv/", b"", 0o755), ("srv/x", b"x", 0o600)]),
                false,
            ),
        ],
        &host,
        "/bin/sh",
    );
    let root = tmp();
    let svc = ImageService::open(root.path()).unwrap();
    svc.load(&archive_of(&b, "berthtest/todocker:v1")[..])
        .unwrap();
    let out = root.path().join("save.tar");
    let mut f = std::fs::File::create(&out).unwrap();
    svc.save(&["berthtest/todocker:v1".into()], &mut f).unwrap();
    drop(f);
    let o = d.docker(&["load", "-i", out.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("berthtest/todocker:v1"));
    let o = d.docker(&[
        "image",
        "inspect",
        "berthtest/todocker:v1",
        "--format",
        "{{.Id}} {{json .Config.Cmd}} {{len .RootFS.Layers}}",
    ]);
    assert!(
        o.status.success(),
        "docker inspect: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{} [\"/bin/sh\"] 2", b.config_digest)
    );
    // and docker's own save of it loads back into berth with the same id
    let back = root.path().join("docker-save.tar");
    let o = d.docker(&[
        "save",
        "-o",
        back.to_str().unwrap(),
        "berthtest/todocker:v1",
    ]);
    assert!(
        o.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let root2 = tmp();
    let s2 = ImageService::open(root2.path()).unwrap();
    let res = s2.load(std::fs::File::open(&back).unwrap()).unwrap();
    assert_eq!(res[0].id, b.config_digest);
    assert_eq!(res[0].names, ["berthtest/todocker:v1"]);
}
