//! docker-py (PyPI `docker`) against a berth daemon: version negotiation through unversioned
//! /version, ping, images.list/get/load/remove, tag, volumes, df, info.

mod common;

use std::process::Command;

use common::TestDaemon;

const SCRIPT: &str = r#"
import sys, json, docker
c = docker.DockerClient(base_url=sys.argv[1], version="auto", timeout=30)
out = {}
out["ping"] = c.ping()
out["api"] = c.api.api_version
out["server_api"] = c.version()["ApiVersion"]
imgs = c.images.list()
out["tags"] = sorted(t for i in imgs for t in i.tags)
img = c.images.get("berthtest/py:1")
out["cmd"] = img.attrs["Config"]["Cmd"]
out["short_id"] = img.short_id
out["filtered"] = [i.tags for i in c.images.list(name="berthtest/py")]
img.tag("berthtest/py", "2")
out["after_tag"] = sorted(c.images.get("berthtest/py:2").tags)
data = b"".join(img.save())  # by id: the archive carries no names, as with Docker
named = b"".join(img.save(named="berthtest/py:1"))
c.images.remove("berthtest/py:2")
c.images.remove("berthtest/py:1")
out["after_rm"] = [t for i in c.images.list() for t in i.tags]
loaded = c.images.load(data)
out["loaded"] = [[i.id, i.tags] for i in loaded]
out["loaded_named"] = [t for i in c.images.load(named) for t in i.tags]
v = c.volumes.create(name="berthtest-pyvol", labels={"k": "v"})
out["vol"] = [v.name, v.attrs["Labels"], v.attrs["Driver"]]
out["vols"] = [x.name for x in c.volumes.list(filters={"label": "k=v"})]
v.remove()
try:
    c.volumes.get("berthtest-pyvol")
    out["vol_gone"] = False
except docker.errors.NotFound:
    out["vol_gone"] = True
try:
    c.images.get("berthtest/none:1")
    out["img_404"] = False
except docker.errors.ImageNotFound:
    out["img_404"] = True
out["df_images"] = len(c.df()["Images"])
out["info_images"] = c.info()["Images"]
print(json.dumps(out))
"#;

#[test]
fn docker_py_images_and_volumes() {
    let ok = Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: python3 with the docker package (docker-py) is not installed");
        return;
    }
    let d = TestDaemon::start();
    let id = d.import_busybox("berthtest/py:1");
    let o = Command::new("python3")
        .args(["-c", SCRIPT, &d.host()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker-py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ping"], true);
    assert_eq!(j["api"], "1.44");
    assert_eq!(j["server_api"], "1.44");
    assert_eq!(j["tags"], serde_json::json!(["berthtest/py:1"]));
    assert_eq!(j["cmd"], serde_json::json!(["sh"]));
    assert_eq!(j["short_id"], format!("sha256:{}", &id[7..19]));
    assert_eq!(j["filtered"], serde_json::json!([["berthtest/py:1"]]));
    assert_eq!(
        j["after_tag"],
        serde_json::json!(["berthtest/py:1", "berthtest/py:2"])
    );
    assert_eq!(j["after_rm"], serde_json::json!([]));
    assert_eq!(j["loaded"], serde_json::json!([[id, []]]));
    assert_eq!(j["loaded_named"], serde_json::json!(["berthtest/py:1"]));
    assert_eq!(
        j["vol"],
        serde_json::json!(["berthtest-pyvol", {"k": "v"}, "local"])
    );
    assert_eq!(j["vols"], serde_json::json!(["berthtest-pyvol"]));
    assert_eq!(j["vol_gone"], true);
    assert_eq!(j["img_404"], true);
    assert_eq!(
        j["df_images"], 1,
        "one image: the named load tagged the dangling one"
    );
    assert_eq!(j["info_images"], 1);
}
