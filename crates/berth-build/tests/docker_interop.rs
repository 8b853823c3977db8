//! Differential test against Docker's legacy builder: the same busybox base (imported into a
//! private dockerd with its own roots and socket, no networking) and the same Dockerfile and
//! context must give the same image config and the same history shape. Without `dockerd` and
//! `docker` the test prints why and returns.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        for tool in ["dockerd", "docker"] {
            if Command::new(tool).arg("--version").output().is_err() {
                println!("SKIP: {tool} is not installed; the Docker differential test needs it");
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("berthtest-bdockerd-")
            .tempdir()
            .unwrap();
        let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
        let host = format!("unix://{}", p("d.sock"));
        let child = Command::new("dockerd")
            .args([
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "-H",
                &host,
            ])
            .args([
                "--pidfile",
                &p("d.pid"),
                "--bridge=none",
                "--iptables=false",
            ])
            .args([
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p("dockerd.log")).unwrap())
            .spawn()
            .unwrap();
        let d = Dockerd { child, dir, host };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if d.docker(&["version"], None).status.success() {
                return Some(d);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "dockerd did not start: {}",
            std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(data) = stdin {
            c.stdin.take().unwrap().write_all(data).unwrap();
        }
        c.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let o = self.docker(args, stdin);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut left: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        left.reverse();
        for m in left {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

const DOCKERFILE: &str = "FROM busybox\nENV A=b PATH=/custom:$PATH\nLABEL l=v\nWORKDIR /app\n\
    RUN echo hi > f\nCOPY x.txt /x/\nEXPOSE 80 53/udp\nVOLUME /data\nUSER 0:0\n\
    STOPSIGNAL SIGTERM\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat /app/f\"]\n";

fn pick(c: &Value) -> Value {
    let keys = [
        "Env",
        "Labels",
        "WorkingDir",
        "User",
        "Cmd",
        "Entrypoint",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "OnBuild",
        "Shell",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        let v = c.get(k).cloned().unwrap_or(Value::Null);
        let v = match v {
            Value::Object(m) if m.is_empty() => Value::Null,
            Value::Array(a) if a.is_empty() => Value::Null,
            Value::String(s) if s.is_empty() => Value::Null,
            v => v,
        };
        out.insert(k.into(), v);
    }
    Value::Object(out)
}

#[test]
fn config_and_history_match_docker_legacy_builder() {
    let Some(d) = Dockerd::start() else { return };
    let env = Env::new();
    d.ok(
        &["import", "-c", "CMD [\"sh\"]", "-", "busybox:latest"],
        Some(&busybox_tar()),
    );
    let ctx = env.context(&[("x.txt", "x\n"), ("Dockerfile", DOCKERFILE)]);
    d.ok(
        &[
            "build",
            "-q",
            "--network=none",
            "-t",
            "berthtest-diff",
            ctx.to_str().unwrap(),
        ],
        None,
    );
    let theirs: Value = serde_json::from_str(&d.ok(
        &[
            "image",
            "inspect",
            "berthtest-diff",
            "--format",
            "{{json .Config}}",
        ],
        None,
    ))
    .unwrap();
    let their_hist: Vec<String> = d
        .ok(
            &[
                "history",
                "--no-trunc",
                "--format",
                "{{.CreatedBy}}",
                "berthtest-diff",
            ],
            None,
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let (r, _) = env.build(&ctx, DOCKERFILE, |_| {}).unwrap();
    let ours = serde_json::to_value(env.images.inspect(&r.id.to_string()).unwrap().config).unwrap();
    // inspect keys are capitalised the Docker way
    assert_eq!(pick(&ours), pick(&theirs), "config differs from docker's");
    let mut our_hist: Vec<String> = env
        .images
        .history(&r.id.to_string())
        .unwrap()
        .into_iter()
        .map(|h| h.created_by)
        .collect();
    assert_eq!(
        our_hist.len(),
        their_hist.len(),
        "ours {our_hist:?}\ntheirs {their_hist:?}"
    );
    // COPY's content hash is the builder's own (Docker hashes a tarsum)
    let norm = |s: &str| match s.find("COPY file:") {
        Some(i) => format!(
            "{}COPY file:<hash>{}",
            &s[..i],
            &s[s.find(" in ").unwrap_or(s.len())..]
        ),
        None => s.replace("RUN /bin/sh -c", "/bin/sh -c"),
    };
    our_hist = our_hist.iter().map(|s| norm(s)).collect();
    let their_hist: Vec<String> = their_hist.iter().map(|s| norm(s)).collect();
    assert_eq!(our_hist, their_hist);
}
