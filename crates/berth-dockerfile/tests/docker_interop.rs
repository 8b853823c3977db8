//! Differential test against a real Docker daemon's (legacy) builder: the image config Docker
//! derives from a metadata-only Dockerfile must equal what our parser and expansion derive, and
//! Dockerfiles Docker rejects must be rejected by us on the same line.
//!
//! The daemon is started for the test with its own data root, exec root, socket and no
//! networking (`--bridge=none --iptables=false`); it is a peer that may be absent: without
//! `dockerd` and `docker` the test prints why and returns.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_dockerfile::*;
use serde_json::Value;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
}

impl Daemon {
    fn start() -> Option<Daemon> {
        for tool in ["dockerd", "docker"] {
            if Command::new(tool).arg("--version").output().is_err() {
                println!("SKIP: {tool} is not installed; the Docker differential test needs it");
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("berthtest-dockerd-")
            .tempdir()
            .expect("tempdir");
        let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
        let host = format!("unix://{}", p("d.sock"));
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log file");
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
            .args(["--userland-proxy=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let daemon = Daemon { child, dir, host };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if daemon.docker(&["version"]).status.success() {
                return Some(daemon);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log =
            std::fs::read_to_string(daemon.dir.path().join("dockerd.log")).unwrap_or_default();
        panic!("dockerd did not come up within 60s:\n{log}");
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .output()
            .expect("run docker")
    }

    /// Build `dockerfile` with the legacy builder; the image's config, or the error text.
    fn build(
        &self,
        name: &str,
        dockerfile: &str,
        build_args: &[(&str, &str)],
    ) -> Result<Value, String> {
        let ctx = self.dir.path().join("ctx").join(name);
        std::fs::create_dir_all(&ctx).expect("context dir");
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
        let tag = format!("berthtest-{name}");
        let mut args = vec!["build".to_string(), "-q".into(), "-t".into(), tag.clone()];
        for (k, v) in build_args {
            args.push("--build-arg".into());
            args.push(format!("{k}={v}"));
        }
        args.push(ctx.to_string_lossy().into_owned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.docker(&refs);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            // Keep the end: the legacy builder prints its progress before the error.
            let tail: String = err
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(tail);
        }
        let out = self.docker(&["image", "inspect", &tag, "--format", "{{json .Config}}"]);
        assert!(
            out.status.success(),
            "inspect {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout).expect("config json"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd; SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if started.elapsed() > Duration::from_secs(30) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut leftovers: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        leftovers.reverse();
        for m in leftovers {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// The image config fields a metadata-only Dockerfile sets, as our parser + expansion derive
/// them (a small model of the builder, applied to the last stage).
#[derive(Debug, Default, PartialEq)]
struct Model {
    env: Vec<String>,
    labels: BTreeMap<String, String>,
    exposed: BTreeSet<String>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    user: String,
    workdir: String,
    volumes: BTreeSet<String>,
    stopsignal: String,
    shell: Option<Vec<String>>,
    onbuild: Vec<String>,
    healthcheck: Option<(Vec<String>, u64, u64, u64, u64)>,
}

fn model(df: &Dockerfile, build_args: &[(&str, &str)]) -> Result<Model, String> {
    let build_args: Vec<(String, String)> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let globals = df.global_args(&build_args).map_err(|e| e.to_string())?;
    let stage = df.stages.last().ok_or("no stage")?;
    stage
        .expand_base(&globals, df.escape)
        .map_err(|e| e.to_string())?;
    let mut m = Model::default();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut args: Vec<(String, String)> = Vec::new();
    let mut shell = vec!["/bin/sh".to_string(), "-c".to_string()];
    let mut cmd_set = false;
    for step in &stage.instructions {
        // ENV beats ARG of the same name: the last pair wins.
        let scope: Vec<(String, String)> = args.iter().chain(env.iter()).cloned().collect();
        let inst = step.expand(&scope, df.escape).map_err(|e| e.to_string())?;
        match inst {
            Instruction::Env(kvs) => {
                for kv in kvs {
                    env.retain(|(k, _)| *k != kv.key);
                    env.push((kv.key, kv.value));
                }
            }
            Instruction::Label(kvs) => m
                .labels
                .extend(kvs.into_iter().map(|kv| (kv.key, kv.value))),
            Instruction::Expose(ports) => {
                for p in ports {
                    let spec = PortSpec::parse(&p).map_err(|e| e.to_string())?;
                    let proto = p.rsplit('/').next().unwrap_or("tcp").to_string();
                    for port in spec.start..=spec.end {
                        m.exposed.insert(format!("{port}/{proto}"));
                    }
                }
            }
            Instruction::Cmd(c) => {
                m.cmd = c.map(|c| c.to_args(&shell));
                cmd_set = true;
            }
            Instruction::Entrypoint(e) => {
                m.entrypoint = e.map(|e| e.to_args(&shell));
                if !cmd_set {
                    m.cmd = None;
                }
            }
            Instruction::User(u) => m.user = u,
            Instruction::Workdir(w) => {
                m.workdir = if w.starts_with('/') || m.workdir.is_empty() {
                    clean_path(&format!("/{}", w.trim_start_matches('/')))
                } else {
                    clean_path(&format!("{}/{}", m.workdir, w))
                };
            }
            Instruction::Volume(v) => m.volumes.extend(v),
            Instruction::Stopsignal(s) => m.stopsignal = s,
            Instruction::Shell(s) => {
                shell = s.clone();
                m.shell = Some(s);
            }
            Instruction::Onbuild(o) => m.onbuild.push(o.expression),
            Instruction::Healthcheck(h) => {
                let ns = |d: Option<Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
                m.healthcheck = Some(match &h {
                    Healthcheck::None => (h.test(), 0, 0, 0, 0),
                    Healthcheck::Check {
                        interval,
                        timeout,
                        start_period,
                        retries,
                        ..
                    } => (
                        h.test(),
                        ns(*interval),
                        ns(*timeout),
                        ns(*start_period),
                        u64::from(retries.unwrap_or(0)),
                    ),
                });
            }
            Instruction::Arg(decls) => {
                for a in decls {
                    let value = resolve_arg(&a, &build_args, &globals, &scope, df.escape)
                        .map_err(|e| e.to_string())?;
                    args.retain(|(k, _)| *k != a.name);
                    if let Some(v) = value {
                        args.push((a.name, v));
                    }
                }
            }
            other => return Err(format!("the model does not handle {}", other.name())),
        }
    }
    m.env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(m)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    })
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn from_docker(c: &Value) -> Model {
    let hc = &c["Healthcheck"];
    Model {
        env: strings(&c["Env"])
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e != DEFAULT_PATH)
            .collect(),
        labels: c["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        exposed: keys(&c["ExposedPorts"]),
        cmd: strings(&c["Cmd"]),
        entrypoint: strings(&c["Entrypoint"]),
        user: c["User"].as_str().unwrap_or_default().to_string(),
        workdir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
        volumes: keys(&c["Volumes"]),
        stopsignal: c["StopSignal"].as_str().unwrap_or_default().to_string(),
        shell: strings(&c["Shell"]),
        onbuild: strings(&c["OnBuild"]).unwrap_or_default(),
        healthcheck: hc.is_object().then(|| {
            (
                strings(&hc["Test"]).unwrap_or_default(),
                hc["Interval"].as_u64().unwrap_or(0),
                hc["Timeout"].as_u64().unwrap_or(0),
                hc["StartPeriod"].as_u64().unwrap_or(0),
                hc["Retries"].as_u64().unwrap_or(0),
            )
        }),
    }
}

/// Metadata-only Dockerfiles (the legacy builder can build them FROM scratch, no RUN). Only
/// syntax the Docker 20.10 legacy builder knows: no heredocs, no `${a-b}` without colon, no
/// `${a#pat}` family, no RUN --mount (all covered by the unit tests).
/// (name, Dockerfile, build arguments)
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const ACCEPTED: &[Case] = &[
    ("env-forms", "FROM scratch\nENV A=1 B=\"two words\" C=three\\ words D='$A' E=\"$A\"\nENV F ${A}x ${B}\nENV G=${A:-d} H=${UNSET:-d} I=${A:+alt} J=${UNSET:+alt}\nENV L=\\$A M=\"\\$A\" N=a\\\\b\n", &[]),
    ("env-doc-example", "FROM scratch\nARG abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n", &[]),
    ("labels", "FROM scratch\nARG V=1.0\nLABEL org.opencontainers.image.version=$V \"spaced key\"=\"spaced value\" multi=\"a \\\n b\"\nLABEL legacy form with spaces\nLABEL q='${V}'\n", &[]),
    ("args", "ARG BASE=scratch\nARG GLOBAL=g\nFROM ${BASE}\nARG GLOBAL\nARG LOCAL=l-${GLOBAL}\nARG FROMCLI\nARG UNSET\nENV G=$GLOBAL L=$LOCAL C=$FROMCLI U=${UNSET:-none}\nENV LOCAL=env-wins\nARG LOCAL=arg-loses\nENV AFTER=$LOCAL\n", &[("FROMCLI", "cli"), ("GLOBAL", "override")]),
    ("cmd-entrypoint", "FROM scratch\nCMD [\"a\", \"b c\"]\nENTRYPOINT /bin/run --flag\n", &[]),
    ("entrypoint-resets-cmd", "FROM scratch\nENTRYPOINT [\"/e\"]\n", &[]),
    ("shell-and-forms", "FROM scratch\nSHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nCMD echo $HOME\nENTRYPOINT [not json]\n", &[]),
    ("misc", "FROM scratch\nENV DIR=/srv U=app\nWORKDIR $DIR\nWORKDIR sub/../data\nUSER ${U}:staff\nVOLUME [\"/v1\", \"$DIR/v2\"]\nVOLUME /v3 /v4\nSTOPSIGNAL SIGQUIT\nEXPOSE 80 53/udp 7000-7002/tcp\n", &[]),
    ("onbuild-healthcheck", "FROM scratch\nONBUILD RUN echo $HOME\nonbuild  COPY . /app\nHEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=3 CMD curl -f http://localhost/ || exit 1\n", &[]),
    ("healthcheck-exec", "FROM scratch\nHEALTHCHECK CMD [\"/bin/check\", \"-q\"]\n", &[]),
    ("healthcheck-none", "FROM scratch\nHEALTHCHECK NONE\n", &[]),
    ("escape-backtick", "# escape=`\nFROM scratch\nENV P=c:\\dir\\sub Q=`$P\nLABEL a=b `\n      c=d\n", &[]),
    ("continuations-comments", "FROM scratch\nENV A=1 \\\n# a comment inside\n    B=2 \\\n\n    C=3\n  # indented comment\nlabel x=y\n", &[]),
    ("quoting-edges", "FROM scratch\nENV A=\"it's\" B='say \"hi\"' C=\"a\\\"b\" D=x\"y z\"w E=\"\"\nLABEL \"k\"=\"v \\\"q\\\"\" k2=\"$A$B\"\nCMD [\"echo\", \"\\\"quoted\\\"\", \"\\u00e9\"]\n", &[]),
    ("expose-split-user-default", "FROM scratch\nARG PORTS=\"80 443/tcp\"\nEXPOSE $PORTS 8080\nUSER ${U:-nobody}\nWORKDIR rel\nWORKDIR $PORTS\n", &[]),
    ("directive-after-blank", "# syntax=docker/dockerfile:1\n\n# escape=`\nFROM scratch\nENV A=a\\\n\n  B=b\n", &[]),
    ("mixed-case", "from scratch\nenv a=1\nLaBeL x=y\nWorkDir /w\ncmd [\"x\"]\n", &[]),
    ("trailing-escape-and-tabs", "FROM scratch\nENV A=1 \\ \t\n\tB=2\nLABEL t=\"tab\there\"\n", &[]),
    ("multi-stage", "FROM scratch AS first\nENV FIRST=1\nFROM scratch\nENV SECOND=2\n", &[]),
];

/// Dockerfiles both Docker and berth reject, with the line both must name.
const REJECTED: &[(&str, &str, usize)] = &[
    ("unknown", "FROM scratch\nRUUN x\n", 2),
    ("env-empty", "FROM scratch\n\n\nENV\n", 4),
    ("env-no-equals", "FROM scratch\nENV a=b c\n", 2),
    ("copy-one-arg", "FROM scratch\nCOPY x\n", 2),
    (
        "onbuild-onbuild",
        "FROM scratch\nONBUILD ONBUILD ENV a=b\n",
        2,
    ),
    ("onbuild-from", "FROM scratch\nONBUILD FROM x\n", 2),
    (
        "bad-healthcheck",
        "FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n",
        2,
    ),
    ("healthcheck-type", "FROM scratch\nHEALTHCHECK RUN x\n", 2),
    ("shell-not-json", "FROM scratch\nSHELL /bin/sh -c\n", 2),
    ("bad-stage-name", "FROM scratch AS 1st\n", 1),
    ("unknown-flag", "FROM scratch\nCOPY --form=x a b\n", 2),
    ("json-numbers", "FROM scratch\nCMD [1, 2]\n", 2),
    ("bad-escape", "# escape=x\nFROM scratch\n", 1),
    ("no-from", "ENV a=b\n", 1),
    (
        "dup-directive",
        "# escape=\\\n# escape=`\nFROM scratch\n",
        2,
    ),
    ("env-blank-name", "FROM scratch\nENV =x\n", 2),
    ("arg-blank-name", "FROM scratch\nARG =x\n", 2),
    (
        "healthcheck-none-args",
        "FROM scratch\nHEALTHCHECK NONE x\n",
        2,
    ),
    ("volume-empty", "FROM scratch\nVOLUME [\"\"]\n", 2),
    ("user-empty", "FROM scratch\n\nUSER\n", 3),
    ("from-two-args", "FROM scratch x\n", 1),
    ("expose-bad-proto", "FROM scratch\nEXPOSE 80/icmp\n", 2),
    ("unterminated-quote", "FROM scratch\nENV A=\"x\n", 2),
    ("bad-substitution", "FROM scratch\nENV A=${}\n", 2),
];

/// Where berth rejects `text`: at parse time, or when the builder expands a step.
fn first_error_line(text: &str) -> Result<(), usize> {
    let df = parse(text).map_err(|e| e.line)?;
    let none: Vec<(String, String)> = Vec::new();
    for stage in &df.stages {
        stage.expand_base(&none, df.escape).map_err(|e| e.line)?;
        for step in &stage.instructions {
            step.expand(&none, df.escape).map_err(|e| e.line)?;
        }
    }
    Ok(())
}

fn line_in(message: &str) -> Option<usize> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("line ")? + 5;
    let digits: String = lower[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The files of a context that the Docker CLI sends (filtered by `.dockerignore`) end up in the
/// image through `COPY . /ctx/`; they must be the files our walk lists.
fn dockerignore_failures(daemon: &Daemon) -> Vec<String> {
    let ctx = daemon.dir.path().join("ctx").join("ignore");
    let files = [
        "a.txt",
        "b.md",
        "README.md",
        "README-secret.md",
        "node_modules/x/y.js",
        "src/main.rs",
        "src/gen/out.o",
        "src/lib/deep/z.o",
        "src/lib/deep/z.rs",
        "docs/keep.md",
        "docs/other.md",
        "temp1",
        "tempfar",
        "x/temporary.txt",
        "x/y/tempfile",
        "x/y/keep",
        "[weird].txt",
        "build/out/bin",
        "build/keep.txt",
        ".git/HEAD",
        "nested/.git/config",
        "sub/dir/file.go",
        "sub/file.go",
        "main.go",
        "a.b.c",
    ];
    for f in files {
        let path = ctx.join(f);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, f).expect("write");
    }
    std::fs::create_dir_all(ctx.join("empty/inner")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", ctx.join("link")).expect("symlink");
    std::fs::write(
        ctx.join(".dockerignore"),
        "# comment\n*.md\n!README*.md\nREADME-secret.md\nnode_modules\n**/*.o\ndocs\n!docs/keep.md\n\
         temp?\n*/temp*\n*/*/temp*\n\\[weird\\].txt\n/build/**\n!build/keep.txt\n**/.git\n\
         sub/**/*.go\n./a.b.?\n",
    )
    .expect("write .dockerignore");
    let mut failures = Vec::new();
    if let Err(e) = daemon.build("ignore", "FROM scratch\nCOPY . /ctx/\n", &[]) {
        return vec![format!("dockerignore: docker build failed: {e}")];
    }
    let export = daemon.dir.path().join("ignore.tar");
    let create = daemon.docker(&[
        "create",
        "--name",
        "berthtest-ignore-c",
        "berthtest-ignore",
        "/none",
    ]);
    assert!(
        create.status.success(),
        "docker create: {}",
        String::from_utf8_lossy(&create.stderr)
    );
    let out = daemon.docker(&[
        "export",
        "-o",
        &export.to_string_lossy(),
        "berthtest-ignore-c",
    ]);
    assert!(
        out.status.success(),
        "docker export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = Command::new("tar")
        .arg("-tvf")
        .arg(&export)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut theirs_files = BTreeSet::new();
    let mut theirs_dirs = BTreeSet::new();
    for line in listing.lines() {
        let Some(name) = line.split_whitespace().nth(5) else {
            continue;
        };
        let Some(rel) = name.strip_prefix("ctx/") else {
            continue;
        };
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() {
            continue;
        }
        if line.starts_with('d') {
            theirs_dirs.insert(rel.to_string());
        } else {
            theirs_files.insert(rel.to_string());
        }
    }
    let ignore = DockerIgnore::load(&ctx, "Dockerfile").expect("load .dockerignore");
    let mut ours_files = BTreeSet::new();
    let mut ours_dirs = BTreeSet::new();
    for path in ignore.walk(&ctx).expect("walk") {
        let is_dir = std::fs::symlink_metadata(ctx.join(&path))
            .expect("stat")
            .is_dir();
        let rel = path.to_string_lossy().into_owned();
        if is_dir {
            ours_dirs.insert(rel);
        } else {
            ours_files.insert(rel);
        }
    }
    println!(
        "dockerignore: docker kept {} files and {} directories: {:?}",
        theirs_files.len(),
        theirs_dirs.len(),
        theirs_files
    );
    if !theirs_files.contains("README.md")
        || theirs_files.contains("b.md")
        || theirs_files.len() < 8
    {
        failures.push(format!(
            "dockerignore: unexpected docker result {theirs_files:?}"
        ));
    }
    if ours_files != theirs_files {
        failures.push(format!(
            "dockerignore: files differ\n  only berth:  {:?}\n  only docker: {:?}",
            ours_files.difference(&theirs_files).collect::<Vec<_>>(),
            theirs_files.difference(&ours_files).collect::<Vec<_>>()
        ));
    }
    if !ours_dirs.is_subset(&theirs_dirs) {
        failures.push(format!(
            "dockerignore: directories we send that docker does not: {:?}",
            ours_dirs.difference(&theirs_dirs).collect::<Vec<_>>()
        ));
    }
    failures
}

#[test]
fn docker_agrees_with_berth() {
    let Some(daemon) = Daemon::start() else {
        return;
    };
    let mut failures = Vec::new();
    for (name, text, build_args) in ACCEPTED {
        let ours = parse(text)
            .map_err(|e| e.to_string())
            .and_then(|df| model(&df, build_args));
        let theirs = daemon
            .build(name, text, build_args)
            .map(|c| from_docker(&c));
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            (a, b) => failures.push(format!("{name}:\n  berth:  {a:?}\n  docker: {b:?}")),
        }
    }
    for (name, text, line) in REJECTED {
        let ours = first_error_line(text);
        match daemon.build(name, text, &[]) {
            Ok(_) => failures.push(format!("{name}: docker accepted it")),
            Err(msg) => {
                if ours != Err(*line) {
                    failures.push(format!("{name}: berth gave {ours:?}, expected line {line}"));
                }
                if let Some(docker_line) = line_in(&msg) {
                    if docker_line != *line {
                        failures.push(format!("{name}: docker says line {docker_line}: {msg}"));
                    }
                }
            }
        }
    }
    failures.extend(dockerignore_failures(&daemon));
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
