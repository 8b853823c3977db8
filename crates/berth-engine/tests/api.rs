//! The Docker Engine API over a real unix socket: version negotiation, error shapes, images,
//! volumes, events, system, streaming and hijacking helpers, concurrency.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{enc, TestDaemon};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_head_and_get_headers() {
    let d = TestDaemon::start();
    let c = d.client();
    for method in ["HEAD", "GET"] {
        let r = c.req(method, "/_ping", Bytes::new()).await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("api-version"), Some("1.44"));
        assert_eq!(r.header("ostype"), Some("linux"));
        assert_eq!(r.header("docker-experimental"), Some("false"));
        assert_eq!(r.header("builder-version"), Some("1"));
        assert_eq!(r.header("pragma"), Some("no-cache"));
        assert_eq!(
            r.header("cache-control"),
            Some("no-cache, no-store, must-revalidate")
        );
        assert!(r.header("server").unwrap().starts_with("Docker/berth-"));
        assert!(r.header("server").unwrap().ends_with(" (linux)"));
        if method == "GET" {
            assert_eq!(r.text(), "OK");
        } else {
            assert!(r.body.is_empty());
        }
    }
    // docker-py pings with a version prefix
    let r = c.get("/v1.41/_ping").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_negotiation() {
    let d = TestDaemon::start();
    let c = d.client();
    let v = c.get("/version").await;
    assert_eq!(v.status, 200);
    let j = v.json();
    assert_eq!(j["ApiVersion"], "1.44");
    assert_eq!(j["MinAPIVersion"], "1.24");
    assert_eq!(j["Os"], "linux");
    assert_eq!(j["Components"][0]["Name"], "Engine");
    assert_eq!(c.get("/v1.41/version").await.json()["ApiVersion"], "1.44");
    assert_eq!(c.get("/v1.24/version").await.status, 200);
    let r = c.get("/v1.99/version").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json()["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.44"
    );
    let r = c.get("/v1.11/info").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("too old"));
    // the headers Docker sends on every response, errors included
    assert_eq!(r.header("api-version"), Some("1.44"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_shapes_and_statuses() {
    let d = TestDaemon::start();
    let c = d.client();
    let r = c.get("/v1.44/no/such/route").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"message": "page not found"}));
    let r = c.req("PUT", "/version", Bytes::new()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "page not found");
    let r = c.get("/v1.41/images/nosuchimage/json").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("nosuchimage"));
    let r = c.get("/v1.41/volumes/nosuchvol").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "get nosuchvol: no such volume");
    let r = c
        .get(&format!("/images/json?filters={}", enc("{bad")))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid filter"));
    let r = c
        .get(&format!(
            "/images/json?filters={}",
            enc(r#"{"nope":["x"]}"#)
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["message"].clone()),
        (400, json!("invalid filter 'nope'"))
    );
    let r = c
        .req("DELETE", "/volumes/x?force=maybe", Bytes::new())
        .await;
    assert_eq!(r.status, 400);
    let r = c.req("POST", "/volumes/create", "{not json").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    // login against an unreachable (loopback) registry fails naming it
    let r = c
        .req(
            "POST",
            "/auth",
            r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:1"}"#,
        )
        .await;
    assert!(!r.status.is_success(), "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_lifecycle() {
    let d = TestDaemon::start();
    let c = d.client();
    // unknown fields ignored; name and labels kept
    let r = c
        .post_json(
            "/v1.44/volumes/create",
            json!({"Name":"berthtest-v1","Driver":"local","Labels":{"a":"1"},"Whatever":[1]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Name"], "berthtest-v1");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["a"], "1");
    let mp = std::path::PathBuf::from(v["Mountpoint"].as_str().unwrap());
    assert_eq!(mp, d.dir.path().join("data/volumes/berthtest-v1/_data"));
    assert!(mp.is_dir());
    // anonymous: random 64-hex name (empty body)
    let r = c.req("POST", "/volumes/create", Bytes::new()).await;
    assert_eq!(r.status, 201);
    let anon = r.json()["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);
    assert!(anon.bytes().all(|b| b.is_ascii_hexdigit()));
    // idempotent create
    assert_eq!(
        c.post_json("/volumes/create", json!({"Name":"berthtest-v1"}))
            .await
            .status,
        201
    );
    // bad names and options
    let r = c.post_json("/volumes/create", json!({"Name":"../x"})).await;
    assert_eq!(r.status, 400);
    let r = c
        .post_json(
            "/volumes/create",
            json!({"Name":"vx","DriverOpts":{"bogus":"1"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    // filters in both shapes
    let list = |f: &str| {
        let c = c.clone();
        let f = f.to_string();
        async move {
            let r = c.get(&format!("/volumes?filters={}", enc(&f))).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let mut n: Vec<String> = r.json()["Volumes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["Name"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(
        list(r#"{"label":{"a=1":true}}"#).await,
        vec!["berthtest-v1"]
    );
    assert_eq!(
        list(r#"{"name": ["berthtest"]}"#).await,
        vec!["berthtest-v1"]
    );
    assert_eq!(list(r#"{"dangling":["true"]}"#).await.len(), 2);
    assert_eq!(list("").await.len(), 2);
    // in use (a container mounted it) -> 409, force does not override
    d.engine().volumes.mount("berthtest-v1", "c0ffee").unwrap();
    let r = c.req("DELETE", "/volumes/berthtest-v1", Bytes::new()).await;
    assert_eq!(r.status, 409);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("volume is in use"));
    assert_eq!(list(r#"{"dangling":["true"]}"#).await, vec![anon.clone()]);
    let r = c
        .req("DELETE", "/volumes/berthtest-v1?force=1", Bytes::new())
        .await;
    assert_eq!(r.status, 409);
    d.engine()
        .volumes
        .unmount("berthtest-v1", "c0ffee")
        .unwrap();
    std::fs::write(mp.join("f"), b"12345").unwrap();
    let r = c.req("DELETE", "/volumes/berthtest-v1", Bytes::new()).await;
    assert_eq!(r.status, 204);
    assert!(!mp.exists());
    assert_eq!(c.get("/volumes/berthtest-v1").await.status, 404);
    // force ignores missing
    assert_eq!(
        c.req("DELETE", "/volumes/gone?force=True", Bytes::new())
            .await
            .status,
        204
    );
    assert_eq!(
        c.req("DELETE", "/volumes/gone", Bytes::new()).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_prune_rules() {
    let d = TestDaemon::start();
    let c = d.client();
    c.post_json("/volumes/create", json!({"Name":"named1"}))
        .await;
    c.post_json(
        "/volumes/create",
        json!({"Name":"anon1","Labels":{"com.docker.volume.anonymous":""}}),
    )
    .await;
    std::fs::write(
        d.dir.path().join("data/volumes/anon1/_data/x"),
        vec![0u8; 1000],
    )
    .unwrap();
    // API 1.44: only anonymous volumes by default
    let r = c.req("POST", "/v1.44/volumes/prune", Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"VolumesDeleted":["anon1"],"SpaceReclaimed":1000})
    );
    // all=true takes named ones too
    let r = c
        .req(
            "POST",
            &format!("/volumes/prune?filters={}", enc(r#"{"all":["true"]}"#)),
            Bytes::new(),
        )
        .await;
    assert_eq!(r.json()["VolumesDeleted"], json!(["named1"]));
    // API 1.41: every unused volume
    c.post_json("/volumes/create", json!({"Name":"named2"}))
        .await;
    let r = c.req("POST", "/v1.41/volumes/prune", Bytes::new()).await;
    assert_eq!(r.json()["VolumesDeleted"], json!(["named2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_volume_mounts_on_first_use() {
    let d = TestDaemon::start();
    let c = d.client();
    let r = c
        .post_json(
            "/volumes/create",
            json!({"Name":"berthtest-tmp","DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=1m"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["Options"]["type"], "tmpfs");
    let vs = &d.engine().volumes;
    let p = vs.mount("berthtest-tmp", "c1").unwrap();
    assert!(berth_engine::volumes::is_mountpoint(&p).unwrap());
    let st = rustix::fs::statfs(&p).unwrap();
    assert_eq!(st.f_type as i64, 0x01021994, "tmpfs magic");
    vs.mount("berthtest-tmp", "c2").unwrap();
    vs.unmount("berthtest-tmp", "c1").unwrap();
    assert!(
        berth_engine::volumes::is_mountpoint(&p).unwrap(),
        "still used by c2"
    );
    vs.unmount("berthtest-tmp", "c2").unwrap();
    assert!(!berth_engine::volumes::is_mountpoint(&p).unwrap());
    assert_eq!(
        c.req("DELETE", "/volumes/berthtest-tmp", Bytes::new())
            .await
            .status,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_over_the_api() {
    let d = TestDaemon::start();
    let c = d.client();
    // import with a chunked request body
    let tar = common::busybox_rootfs_tar();
    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = tar
        .chunks(7000)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/v1.44/images/create?fromSrc=-&repo=berthtest/bb&tag=1&message=imported&changes={}&changes={}",
            enc("CMD [\"sh\"]"),
            enc("LABEL k=v")
        ))
        .header("Host", "x")
        .body(body)
        .unwrap();
    let stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("transfer-encoding").is_some());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let line: serde_json::Value =
        serde_json::from_slice(body.strip_suffix(b"\r\n").expect("CRLF-terminated")).unwrap();
    let id = line["status"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{line}");

    let list = c.get("/images/json").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let s = &list[0];
    assert_eq!(s["Id"], id.as_str());
    assert_eq!(s["RepoTags"], json!(["berthtest/bb:1"]));
    assert_eq!(s["SharedSize"], -1);
    assert_eq!(s["Containers"], -1);
    assert_eq!(s["ParentId"], "");
    assert_eq!(s["Labels"]["k"], "v");
    assert!(s["Size"].as_u64().unwrap() > 1_000_000);
    assert!(s["Created"].is_i64());
    assert!(s.get("VirtualSize").is_none(), "removed in 1.44");
    assert!(c.get("/v1.41/images/json").await.json()[0]
        .get("VirtualSize")
        .is_some());

    // names with slashes and colons are not encoded in paths
    let ins = c.get("/v1.44/images/berthtest/bb:1/json").await;
    assert_eq!(ins.status, 200, "{}", ins.text());
    let ins = ins.json();
    assert_eq!(ins["Id"], id.as_str());
    assert_eq!(ins["Comment"], "imported");
    assert_eq!(ins["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(ins["RootFS"]["Type"], "layers");
    assert_eq!(
        c.get(&format!("/images/{}/json", &id[7..19])).await.status,
        200
    );
    let hist = c.get("/images/berthtest/bb:1/history").await.json();
    assert_eq!(hist[0]["Id"], id.as_str());
    assert_eq!(hist[0]["Comment"], "imported");

    // tag -> 201; filters
    let r = c
        .req(
            "POST",
            "/images/berthtest/bb:1/tag?repo=localhost:5000/x/y&tag=2",
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c
        .get(&format!(
            "/images/json?filters={}",
            enc(r#"{"reference":{"localhost:5000/x/*":true}}"#)
        ))
        .await;
    assert_eq!(
        r.json()[0]["RepoTags"],
        json!(["localhost:5000/x/y:2"]),
        "only matching names"
    );
    let r = c.get("/images/json").await;
    assert_eq!(
        r.json()[0]["RepoTags"],
        json!(["berthtest/bb:1", "localhost:5000/x/y:2"])
    );
    let r = c
        .get(&format!(
            "/images/json?filters={}",
            enc(r#"{"reference": ["nomatch*"]}"#)
        ))
        .await;
    assert_eq!(r.json(), json!([]));
    let r = c
        .get(&format!(
            "/images/json?filters={}",
            enc(r#"{"dangling":{"true":true}}"#)
        ))
        .await;
    assert_eq!(r.json(), json!([]));

    // save (streamed tar) -> rmi both -> load (chunked upload)
    let saved = c.get("/images/get?names=berthtest%2Fbb%3A1").await;
    assert_eq!(saved.status, 200);
    assert_eq!(saved.header("content-type"), Some("application/x-tar"));
    let mut ar = tar::Archive::new(&saved.body[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    let r = c
        .req("DELETE", "/images/localhost:5000/x/y:2", Bytes::new())
        .await;
    assert_eq!(r.json(), json!([{"Untagged":"localhost:5000/x/y:2"}]));
    let r = c
        .req("DELETE", "/images/berthtest/bb:1?noprune=0", Bytes::new())
        .await;
    assert_eq!(r.status, 200);
    let del = r.json();
    assert_eq!(del[0], json!({"Untagged":"berthtest/bb:1"}));
    assert_eq!(del[1], json!({"Deleted": id}));
    assert_eq!(c.get("/images/json").await.json(), json!([]));
    assert_eq!(
        c.req("DELETE", "/images/berthtest/bb:1", Bytes::new())
            .await
            .status,
        404
    );
    let r = c
        .req("POST", "/images/load?quiet=1", saved.body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "{\"stream\":\"Loaded image: berthtest/bb:1\\n\"}\r\n"
    );
    assert_eq!(
        c.get("/images/berthtest/bb:1/json").await.json()["Id"],
        id.as_str()
    );

    // a corrupt archive is a 400, not a 500 or a hang
    let r = c
        .req("POST", "/images/load", &b"not a tar at all"[..])
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    // pull from an unreachable (loopback) registry: an in-stream error the CLI prints
    let r = c
        .req(
            "POST",
            "/images/create?fromImage=127.0.0.1:1/berthtest/none&tag=latest",
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let last = text.trim_end().lines().last().unwrap();
    let j: serde_json::Value = serde_json::from_str(last).unwrap();
    assert!(
        j["errorDetail"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "{text}"
    );
    // search and prune shapes
    assert_eq!(c.get("/images/search?term=x").await.json(), json!([]));
    let r = c.req("POST", "/images/prune", Bytes::new()).await;
    assert_eq!(r.json()["ImagesDeleted"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_prune_dangling_and_all() {
    let d = TestDaemon::start();
    let c = d.client();
    d.import_busybox("berthtest/a:1");
    // dangling only (the default): a tagged image stays
    let r = c.req("POST", "/images/prune", Bytes::new()).await;
    assert_eq!(r.json()["ImagesDeleted"], serde_json::Value::Null);
    assert_eq!(
        c.get("/images/json").await.json().as_array().unwrap().len(),
        1
    );
    let r = c
        .req(
            "POST",
            &format!(
                "/images/prune?filters={}",
                enc(r#"{"dangling":{"false":true}}"#)
            ),
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let deleted = j["ImagesDeleted"].as_array().expect("deleted list");
    assert!(deleted.iter().any(|x| x.get("Deleted").is_some()), "{j}");
    assert!(j["SpaceReclaimed"].as_u64().unwrap() > 1_000_000, "{j}");
    assert_eq!(c.get("/images/json").await.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_df_shapes() {
    let d = TestDaemon::start();
    let c = d.client();
    d.import_busybox("berthtest/i:1");
    c.post_json("/volumes/create", json!({"Name":"dfvol"}))
        .await;
    std::fs::write(
        d.dir.path().join("data/volumes/dfvol/_data/f"),
        vec![1u8; 4096],
    )
    .unwrap();
    let i = c.get("/info").await.json();
    assert_eq!(i["Images"], 1);
    assert_eq!(i["Containers"], 0);
    assert_eq!(i["OSType"], "linux");
    assert_eq!(i["CgroupDriver"], "cgroupfs");
    assert!(matches!(i["CgroupVersion"].as_str(), Some("1") | Some("2")));
    assert_eq!(i["LiveRestoreEnabled"], true);
    assert_eq!(i["DefaultRuntime"], "berth");
    assert!(i["Runtimes"]["berth"]["path"].is_string());
    assert_eq!(
        i["SecurityOptions"],
        json!(["name=seccomp,profile=builtin"])
    );
    assert_eq!(i["Warnings"], json!([]));
    assert_eq!(
        i["DockerRootDir"],
        d.dir.path().join("data").display().to_string()
    );
    assert_eq!(i["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(
        i["NCPU"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
    assert!(i["MemTotal"].as_u64().unwrap() > 0);
    assert!(i["ID"].as_str().unwrap().len() >= 32);
    let df = c.get("/system/df").await.json();
    assert_eq!(df["Images"].as_array().unwrap().len(), 1);
    assert!(df["LayersSize"].as_u64().unwrap() > 1_000_000);
    assert_eq!(df["Volumes"][0]["Name"], "dfvol");
    assert_eq!(
        df["Volumes"][0]["UsageData"],
        json!({"Size":4096,"RefCount":0})
    );
    assert_eq!(df["BuildCache"], json!([]));
    assert!(df["Containers"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_filtered_and_replayed() {
    let d = TestDaemon::start();
    let c = d.client();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // live: headers arrive before any event
    let stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!(
            "/v1.44/events?filters={}",
            enc(r#"{"type":["volume"],"event":{"create":true}}"#)
        ))
        .header("Host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req))
        .await
        .expect("events headers flushed before the first event")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let mut body = resp.into_body();
    c.post_json("/volumes/create", json!({"Name":"ev1"})).await;
    c.req("DELETE", "/volumes/ev1", Bytes::new()).await; // destroy: filtered out
    c.post_json("/volumes/create", json!({"Name":"ev2"})).await;
    let mut buf = Vec::new();
    while buf.iter().filter(|&&b| b == b'\n').count() < 2 {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    let evs: Vec<serde_json::Value> = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["Type"], "volume");
    assert_eq!(evs[0]["Action"], "create");
    assert_eq!(evs[0]["Actor"]["ID"], "ev1");
    assert_eq!(evs[0]["Actor"]["Attributes"]["driver"], "local");
    assert_eq!(evs[1]["Actor"]["ID"], "ev2");
    assert!(evs[0]["timeNano"].as_i64().unwrap() >= (t0 * 1e9) as i64 - 1_000_000_000);
    // replay: since in the past, until now -> the stream ends by itself
    let t1 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 0.5;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.get(&format!("/events?since={:.9}&until={:.9}", t0 - 1.0, t1)),
    )
    .await
    .expect("bounded events stream ends");
    let actions: Vec<String> = r
        .text()
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                j["Action"].as_str().unwrap(),
                j["Actor"]["ID"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(actions, vec!["create ev1", "destroy ev1", "create ev2"]);
    // a window before everything: empty, ends at once
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.get(&format!(
            "/events?since={:.3}&until={:.3}",
            t0 - 100.0,
            t0 - 50.0
        )),
    )
    .await
    .expect("past window ends at once");
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, ""));
    // bad since
    assert_eq!(c.get("/events?since=yesterday").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests() {
    let d = TestDaemon::start();
    d.import_busybox("berthtest/c:1");
    let c = d.client();
    // a pending stream must not block other connections
    let pending = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/events").await })
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                0 => assert_eq!(c.get("/_ping").await.status, 200),
                1 => assert_eq!(
                    c.get("/v1.41/images/json")
                        .await
                        .json()
                        .as_array()
                        .unwrap()
                        .len(),
                    1
                ),
                2 => assert_eq!(c.get("/info").await.status, 200),
                _ => {
                    let n = format!("cc{i}");
                    assert_eq!(
                        c.post_json("/volumes/create", json!({"Name": n}))
                            .await
                            .status,
                        201
                    )
                }
            }
        }));
    }
    let t = std::time::Instant::now();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    eprintln!("64 concurrent requests: {:?}", t.elapsed());
    assert_eq!(
        c.get("/volumes").await.json()["Volumes"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
    pending.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_serves_many_requests() {
    let d = TestDaemon::start();
    let stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..20 {
        tx.ready().await.unwrap();
        let req = Request::builder()
            .uri("/v1.44/version")
            .header("Host", "x")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let r = tx.send_request(req).await.unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }
}

/// The hijack helper and stdcopy framing, served through the real server stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hijack_upgrade_and_plain_fallback() {
    use axum::extract::Request as AReq;
    use berth_engine::api::hijack::{hijack, RAW_STREAM};
    use berth_engine::api::stdcopy::{write_frames, Decoder, StdStream};

    async fn echo(mut req: AReq) -> axum::response::Response {
        let (resp, pending) = hijack(&mut req, RAW_STREAM);
        tokio::spawn(async move {
            let Ok(mut s) = pending.await else { return };
            let mut input = Vec::new();
            let _ = s.read_to_end(&mut input).await; // until the client half-closes
            let _ = write_frames(&mut s, StdStream::Stdout, b"hello\n").await;
            let _ = write_frames(&mut s, StdStream::Stderr, &input).await;
            let _ = s.shutdown().await;
        });
        resp
    }
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let path = dir.path().join("h.sock");
    let sock = berth_engine::server::UnixSocket::bind(&path).unwrap();
    let router = axum::Router::new().route("/containers/{id}/attach", axum::routing::post(echo));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(berth_engine::server::serve_router(
        router,
        vec![sock],
        async move {
            let _ = stop_rx.await;
        },
    ));

    // upgrade: exact status line and headers, stdin half-close, EOF after output
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(
        b"POST /v1.44/containers/x/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: api.moby.localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101 upgraded\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/vnd.docker.raw-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert!(head.contains("upgrade: tcp\r\n"), "{head}");
    assert!(!head.contains("api-version"), "{head}");
    s.write_all(b"typed input").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("server closes after output")
        .unwrap();
    let mut dec = Decoder::new();
    dec.push(&out);
    assert_eq!(dec.next_frame().unwrap(), Some((1, b"hello\n".to_vec())));
    assert_eq!(
        dec.next_frame().unwrap(),
        Some((2, b"typed input".to_vec()))
    );
    assert_eq!(dec.pending(), 0);

    // no upgrade requested: 200 with the output as the body
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"POST /containers/x/attach HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text
        .to_lowercase()
        .contains("content-type: application/vnd.docker.raw-stream"));
    assert!(
        out.windows(14)
            .any(|w| w == b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"),
        "{text}"
    );

    let _ = stop_tx.send(());
    srv.await.unwrap().unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
}

#[test]
fn daemon_refuses_second_instance_and_cleans_up() {
    let d = TestDaemon::start();
    let mut cfg =
        berth_engine::Config::with_roots(d.dir.path().join("data2"), d.dir.path().join("exec2"));
    cfg.hosts = vec![d.host()];
    let e = berth_engine::daemon::Daemon::start(cfg).unwrap_err();
    assert_eq!(e.http_status(), 409, "{e}");
    assert!(e.to_string().contains("already serving"), "{e}");
    let pid = d.dir.path().join("exec/berth.pid");
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        std::process::id().to_string()
    );
    let sock = d.sock.clone();
    let mut d = d;
    d.daemon.take().unwrap().stop().unwrap();
    assert!(!sock.exists(), "socket removed");
    assert!(!pid.exists(), "pidfile removed");
}

#[test]
fn tcp_without_tls_is_refused() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let mut cfg = berth_engine::Config::with_roots(dir.path().join("d"), dir.path().join("e"));
    cfg.hosts = vec!["tcp://127.0.0.1:0".into()];
    let e = berth_engine::daemon::Daemon::start(cfg).unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("--tlsverify"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmi_conflicts_with_a_container_hold() {
    let d = TestDaemon::start();
    let c = d.client();
    let id = d.import_busybox("berthtest/held:1");
    let holder = berth_metadata::Holder {
        kind: "container".into(),
        id: "c0ffee00".into(),
    };
    let digest: berth_core::Digest = id.parse().unwrap();
    d.engine()
        .images
        .db()
        .add_hold(&holder, &berth_metadata::Resource::Image(digest.clone()))
        .unwrap();
    let r = c
        .req("DELETE", "/images/berthtest/held:1", Bytes::new())
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("conflict: unable to remove repository reference"),
        "{msg}"
    );
    assert!(msg.contains("c0ffee00"), "{msg}");
    let r = c
        .req("DELETE", &format!("/images/{id}"), Bytes::new())
        .await;
    assert_eq!(r.status, 409);
    // the list shows the holder count
    assert_eq!(c.get("/images/json").await.json()[0]["Containers"], 1);
    // prune never removes a held image
    let r = c
        .req(
            "POST",
            &format!("/images/prune?filters={}", enc(r#"{"dangling":["false"]}"#)),
            Bytes::new(),
        )
        .await;
    assert_eq!(r.json()["ImagesDeleted"], serde_json::Value::Null);
    // force untags and deletes the record; the held content stays for the container
    let r = c
        .req("DELETE", "/images/berthtest/held:1?force=1", Bytes::new())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    d.engine().images.db().release_holder(&holder).unwrap();
}

#[test]
fn socket_path_that_is_a_file_is_not_replaced() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let f = dir.path().join("precious");
    std::fs::write(&f, b"keep me").unwrap();
    let e = berth_engine::server::UnixSocket::bind(&f).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&f).unwrap(), b"keep me");
    // a stale socket (nobody listening) is replaced
    let s = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&s).unwrap());
    let _rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = _rt.enter();
    let sock = berth_engine::server::UnixSocket::bind(&s).expect("stale socket replaced");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
        0o660
    );
    drop(sock);
    assert!(!s.exists());
}
