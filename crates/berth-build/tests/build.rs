//! Real builds: a busybox base image imported into a private data root, RUN steps in real
//! containers through the `berth-build-step` helper, images unpacked and read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use berth_build::{BuildOptions, Builder, Event};

mod common;
use common::*;

fn stream(events: &[Event]) -> String {
    events.iter().map(Event::legacy_stream).collect()
}

#[test]
fn run_and_copy_produce_files_in_the_image() {
    let env = Env::new();
    let ctx = env.context(&[("a.txt", "alpha\n"), ("dir/b.txt", "beta\n")]);
    let df = "FROM busybox\nRUN echo hello > /hello && mkdir -p /made\nCOPY a.txt /dst/\nCOPY dir /d2\nCMD [\"cat\", \"/hello\"]\n";
    let (r, events) = env
        .build(&ctx, df, |o| o.tags = vec!["out:1".into()])
        .unwrap();
    let root = env.unpack("out:1");
    assert_eq!(
        std::fs::read_to_string(root.join("hello")).unwrap(),
        "hello\n"
    );
    assert!(root.join("made").is_dir());
    assert_eq!(
        std::fs::read_to_string(root.join("dst/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("d2/b.txt")).unwrap(),
        "beta\n"
    );
    assert!(root.join("bin/busybox").is_file());
    let s = stream(&events);
    assert!(s.contains("Step 1/5 : FROM busybox\n"), "{s}");
    assert!(
        s.contains("Step 2/5 : RUN echo hello > /hello && mkdir -p /made\n"),
        "{s}"
    );
    assert!(
        s.contains(&format!("Successfully built {}\n", &r.id.encoded()[..12])),
        "{s}"
    );
    assert!(s.contains("Successfully tagged out:1\n"), "{s}");
    assert_eq!(r.executed, 3);
    let inspect = env.images.inspect("out:1").unwrap();
    assert_eq!(
        inspect.config.cmd,
        Some(vec!["cat".into(), "/hello".into()])
    );
    assert_eq!(inspect.root_fs.layers.len(), 4);
}

#[test]
fn rebuild_is_answered_from_the_cache_and_cache_mounts_persist() {
    let env = Env::new();
    let ctx = env.context(&[("a.txt", "alpha\n")]);
    let df = "FROM busybox\nRUN --mount=type=cache,target=/cache,id=counter echo run >> /cache/count\nCOPY a.txt /a.txt\nENV X=1\n";
    let (r1, _) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!((r1.executed, r1.cache_hits), (2, 0));
    let (r2, ev2) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!((r2.executed, r2.cache_hits), (0, 2));
    assert_eq!(
        r1.id, r2.id,
        "a fully cached rebuild gives the same image id"
    );
    assert!(stream(&ev2).contains(" ---> Using cache\n"));
    // the RUN ran once: one line in the persistent cache mount
    let dirs: Vec<_> = std::fs::read_dir(env.builder().cache_mounts_dir())
        .unwrap()
        .collect();
    assert_eq!(dirs.len(), 1);
    let count = std::fs::read_to_string(dirs[0].as_ref().unwrap().path().join("count")).unwrap();
    assert_eq!(count, "run\n");
    // the mount point stub is not in the image; the cache content neither
    let root = env.unpack(&r2.id.to_string());
    assert!(!root.join("cache").exists());
    // --no-cache runs again, and the cache dir persists between builds
    let (r3, _) = env.build(&ctx, df, |o| o.no_cache = true).unwrap();
    assert_eq!((r3.executed, r3.cache_hits), (2, 0));
    let count = std::fs::read_to_string(dirs[0].as_ref().unwrap().path().join("count")).unwrap();
    assert_eq!(count, "run\nrun\n");
}

#[test]
fn copy_cache_follows_content_not_mtime() {
    let env = Env::new();
    let ctx = env.context(&[("src/a.txt", "one\n"), ("src/b.txt", "two\n")]);
    let df = "FROM busybox\nCOPY src /src\nRUN cat /src/a.txt > /out\n";
    let (r1, _) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!(r1.executed, 2);
    // touch: new mtime, same content -> cache hit
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.join("src/a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let (r2, _) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!((r2.executed, r2.cache_hits), (0, 2));
    // content change -> COPY and the following RUN rerun
    std::fs::write(ctx.join("src/a.txt"), "ONE\n").unwrap();
    let (r3, _) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!((r3.executed, r3.cache_hits), (2, 0));
    let root = env.unpack(&r3.id.to_string());
    assert_eq!(std::fs::read_to_string(root.join("out")).unwrap(), "ONE\n");
}

#[test]
fn multi_stage_copy_from_runs_independent_stages_in_parallel() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let df = "FROM busybox AS a\nRUN sleep 1 && echo A > /a\n\
              FROM busybox AS b\nRUN sleep 1 && echo B > /b\n\
              FROM busybox AS unused\nRUN exit 1\n\
              FROM busybox\nCOPY --from=a /a /got/a\nCOPY --from=b /b /got/b\n";
    let times: Mutex<BTreeMap<usize, (Instant, Option<Instant>)>> = Mutex::new(BTreeMap::new());
    let mut opts = BuildOptions {
        context: ctx.clone(),
        dockerfile: Some(df.into()),
        ..Default::default()
    };
    opts.tags = vec!["multi:1".into()];
    let steps: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());
    let r = env
        .builder()
        .build(&opts, &|e: &Event| match e {
            Event::Step {
                step, instruction, ..
            } => {
                steps.lock().unwrap().insert(*step, instruction.clone());
                times.lock().unwrap().insert(*step, (Instant::now(), None));
            }
            Event::StepDone { step, .. } => {
                if let Some(t) = times.lock().unwrap().get_mut(step) {
                    t.1 = Some(Instant::now());
                }
            }
            _ => {}
        })
        .unwrap();
    let root = env.unpack("multi:1");
    assert_eq!(std::fs::read_to_string(root.join("got/a")).unwrap(), "A\n");
    assert_eq!(std::fs::read_to_string(root.join("got/b")).unwrap(), "B\n");
    let steps = steps.into_inner().unwrap();
    assert!(
        !steps.values().any(|s| s.contains("exit 1")),
        "unused stage skipped: {steps:?}"
    );
    let times = times.into_inner().unwrap();
    let run_a = steps
        .iter()
        .find(|(_, s)| s.contains("echo A"))
        .map(|(n, _)| *n)
        .unwrap();
    let run_b = steps
        .iter()
        .find(|(_, s)| s.contains("echo B"))
        .map(|(n, _)| *n)
        .unwrap();
    let (a0, a1) = times[&run_a];
    let (b0, b1) = times[&run_b];
    let (a1, b1) = (a1.unwrap(), b1.unwrap());
    assert!(a0 < b1 && b0 < a1, "the two RUN steps overlapped in time");
    assert_eq!(r.executed, 4);
}

#[test]
fn target_and_build_args() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let df = "ARG BASE=busybox\nFROM ${BASE} AS first\nARG GREETING=hello\nARG TARGETARCH\nRUN echo \"$GREETING $TARGETARCH\" > /greeting\n\
              FROM first AS second\nRUN echo second > /second\n";
    let (r, _) = env
        .build(&ctx, df, |o| {
            o.target = Some("first".into());
            o.build_args.insert("GREETING".into(), "bonjour".into());
        })
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    let arch = berth_core::Platform::host().architecture;
    assert_eq!(
        std::fs::read_to_string(root.join("greeting")).unwrap(),
        format!("bonjour {arch}\n")
    );
    assert!(!root.join("second").exists());
    let hist = env.images.history(&r.id.to_string()).unwrap();
    assert!(
        hist.iter().any(|h| h
            .created_by
            .starts_with("RUN |2 GREETING=bonjour TARGETARCH=")),
        "{hist:?}"
    );
    let e = env
        .build(&ctx, df, |o| o.target = Some("nope".into()))
        .unwrap_err();
    assert!(
        e.to_string().contains("failed to reach build target nope"),
        "{e}"
    );
}

#[test]
fn failing_run_reports_its_exit_code() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let e = env
        .build(&ctx, "FROM busybox\nRUN echo before\nRUN exit 3\n", |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    );
    let e = env
        .build(&ctx, "FROM busybox\nRUN [\"false\"]\n", |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The command 'false' returned a non-zero code: 1"
    );
}

#[test]
fn run_output_is_streamed() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let (_, ev) = env
        .build(
            &ctx,
            "FROM busybox\nRUN echo out-line && echo err-line >&2\n",
            |_| {},
        )
        .unwrap();
    let s = stream(&ev);
    assert!(s.contains("out-line\n") && s.contains("err-line\n"), "{s}");
    let running = s.find(" ---> Running in ").expect("Running line");
    assert!(running < s.find("\nout-line\n").unwrap(), "{s}");
}

#[test]
fn platform_other_than_host_is_refused() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let other = if berth_core::Platform::host().architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let e = env
        .build(&ctx, "FROM busybox\n", |o| o.platform = Some(other.into()))
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::Unsupported);
    assert!(
        e.to_string()
            .contains("only builds for the host's platform"),
        "{e}"
    );
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn copy_semantics_table() {
    let env = Env::new();
    let ctx = env.context(&[
        ("f.txt", "f\n"),
        ("g.txt", "g\n"),
        ("h.md", "h\n"),
        ("dir/x", "x\n"),
        ("dir/sub/y", "y\n"),
        ("nested/a/b/c.txt", "c\n"),
    ]);
    let df = "FROM busybox\nWORKDIR /work\n\
        COPY f.txt /file-as-name\n\
        COPY f.txt /intodir/\n\
        COPY dir /contents\n\
        COPY dir /contents-slash/\n\
        COPY *.txt /globbed/\n\
        COPY f.txt rel.txt\n\
        COPY --chown=app:staff --chmod=600 g.txt /owned/\n\
        COPY --chown=1000 dir /ownedtree\n\
        COPY --parents nested/a/b/c.txt /p/\n\
        COPY --exclude=*.md --exclude=dir --exclude=nested . /filtered/\n\
        COPY <<EOF /inline.txt\ninline $HOME\nEOF\n";
    let (r, _) = env.build(&ctx, df, |_| {}).unwrap();
    let root = env.unpack(&r.id.to_string());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("file-as-name"), "f\n");
    assert_eq!(read("intodir/f.txt"), "f\n");
    // a directory source copies its contents
    assert_eq!(read("contents/x"), "x\n");
    assert_eq!(read("contents/sub/y"), "y\n");
    assert!(!root.join("contents/dir").exists());
    assert_eq!(read("contents-slash/sub/y"), "y\n");
    // globs
    assert_eq!(read("globbed/f.txt"), "f\n");
    assert_eq!(read("globbed/g.txt"), "g\n");
    assert!(!root.join("globbed/h.md").exists());
    // relative destination: under WORKDIR
    assert_eq!(read("work/rel.txt"), "f\n");
    // --chown / --chmod
    assert_eq!(owner(&root.join("owned/g.txt")), (1000, 50));
    assert_eq!(mode(&root.join("owned/g.txt")), 0o600);
    assert_eq!(owner(&root.join("ownedtree/sub/y")), (1000, 1000));
    assert_eq!(owner(&root.join("ownedtree/sub")), (1000, 1000));
    // default owner root, mode kept
    assert_eq!(owner(&root.join("contents/x")), (0, 0));
    // --parents keeps the path
    assert_eq!(read("p/nested/a/b/c.txt"), "c\n");
    // --exclude
    assert_eq!(read("filtered/f.txt"), "f\n");
    assert!(!root.join("filtered/h.md").exists());
    assert!(!root.join("filtered/dir").exists());
    // heredoc file, expanded
    assert_eq!(read("inline.txt"), "inline \n");
    // several sources need a directory destination ending in /
    let e = env
        .build(&ctx, "FROM busybox\nCOPY f.txt g.txt /notdir\n", |_| {})
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("must be a directory and end with a /"),
        "{e}"
    );
    // missing source
    let e = env
        .build(&ctx, "FROM busybox\nCOPY missing.txt /\n", |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound);
    assert!(e.to_string().contains("missing.txt"), "{e}");
}

#[test]
fn add_extracts_local_tar_archives() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, "inside/t.txt", &b"tar\n"[..])
        .unwrap();
    // a whiteout name is a plain file for ADD
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(0);
    b.append_data(&mut h, ".wh.keep", std::io::empty()).unwrap();
    std::fs::write(ctx.join("a.tar"), b.into_inner().unwrap()).unwrap();
    std::fs::write(ctx.join("plain.txt"), "plain\n").unwrap();
    let (r, _) = env
        .build(
            &ctx,
            "FROM busybox\nADD a.tar /x/\nADD plain.txt /y/\nCOPY a.tar /z/\n",
            |_| {},
        )
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    assert_eq!(
        std::fs::read_to_string(root.join("x/inside/t.txt")).unwrap(),
        "tar\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("y/plain.txt")).unwrap(),
        "plain\n"
    );
    assert!(root.join("z/a.tar").is_file(), "COPY never extracts");
    let e = env
        .build(&ctx, "FROM busybox\nADD https://example.com/x /x\n", |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::Unsupported);
}

#[test]
fn dockerignore_is_honoured() {
    let env = Env::new();
    let ctx = env.context(&[
        (".dockerignore", "secret.txt\nlogs/\n!logs/keep.log\n"),
        ("secret.txt", "s\n"),
        ("ok.txt", "ok\n"),
        ("logs/a.log", "a\n"),
        ("logs/keep.log", "k\n"),
    ]);
    let (r, _) = env
        .build(&ctx, "FROM busybox\nCOPY . /ctx/\n", |_| {})
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    assert!(root.join("ctx/ok.txt").exists());
    assert!(!root.join("ctx/secret.txt").exists());
    assert!(!root.join("ctx/logs/a.log").exists());
    assert!(root.join("ctx/logs/keep.log").exists());
    let e = env
        .build(&ctx, "FROM busybox\nCOPY secret.txt /\n", |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("excluded by .dockerignore"), "{e}");
}

#[test]
fn secrets_are_mounted_but_never_stored() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let secret = env.dir.path().join("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let df = "FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-length-src && wc -c < /run/secrets/tok > /len\n";
    let (r, _) = env
        .build(&ctx, df, |o| {
            o.secrets.insert("tok".into(), secret.clone());
        })
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    assert_eq!(
        std::fs::read_to_string(root.join("len")).unwrap().trim(),
        "12"
    );
    assert!(
        !root.join("run/secrets/tok").exists(),
        "the secret's mount point is not in the layer"
    );
    // no layer blob contains the secret except through what the RUN chose to write
    let img = env.images.resolve(&r.id.to_string()).unwrap();
    let last = img.manifest.layers.last().unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(
        &mut berth_content::Store::reader(env.images.content(), &last.digest).unwrap(),
        &mut data,
    )
    .unwrap();
    assert!(!String::from_utf8_lossy(&data).contains("run/secrets"));
    // a secret as an environment variable: seen by the step, stored nowhere
    let (r3, _) = env
        .build(
            &ctx,
            "FROM busybox\nRUN --mount=type=secret,id=tok,env=TOK echo ${#TOK} > /env-len\n",
            |o| {
                o.secrets.insert("tok".into(), secret.clone());
            },
        )
        .unwrap();
    let len = std::fs::read_to_string(env.unpack(&r3.id.to_string()).join("env-len")).unwrap();
    assert_eq!(len.trim(), "12");
    let cfg =
        serde_json::to_string(&env.images.resolve(&r3.id.to_string()).unwrap().config).unwrap();
    assert!(!cfg.contains("s3cr3t"));
    // a changed secret does not invalidate the cache (only the id is in the key)
    std::fs::write(&secret, "other-value!").unwrap();
    let (r2, _) = env
        .build(&ctx, df, |o| {
            o.secrets.insert("tok".into(), secret.clone());
        })
        .unwrap();
    assert_eq!(r2.cache_hits, 1);
    // required by default: missing secret fails
    let e = env
        .build(
            &ctx,
            "FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n",
            |_| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("secret nope"), "{e}");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = Env::new();
    let ctx = env.context(&[("trigger.txt", "t\n")]);
    let (_, _) = env
        .build(&ctx, "FROM busybox\nONBUILD COPY trigger.txt /from-trigger\nONBUILD RUN echo ran > /onbuild-ran\n", |o| {
            o.tags = vec!["parent:1".into()]
        })
        .unwrap();
    let parent = env.images.inspect("parent:1").unwrap();
    assert_eq!(
        parent.config.on_build,
        Some(vec![
            "COPY trigger.txt /from-trigger".into(),
            "RUN echo ran > /onbuild-ran".into()
        ])
    );
    let (r, _) = env
        .build(&ctx, "FROM parent:1\nRUN test -f /onbuild-ran\n", |_| {})
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    assert_eq!(
        std::fs::read_to_string(root.join("from-trigger")).unwrap(),
        "t\n"
    );
    assert!(root.join("onbuild-ran").exists());
    let child = env.images.inspect(&r.id.to_string()).unwrap();
    assert!(
        child.config.on_build.unwrap_or_default().is_empty(),
        "triggers are not inherited"
    );
}

#[test]
fn config_and_history_as_docker_writes_them() {
    let env = Env::new();
    let ctx = env.context(&[("a", "a")]);
    let df = "FROM busybox\nLABEL a=b\nENV K=v\nEXPOSE 80\nWORKDIR /app\nUSER app\nVOLUME /data\nSTOPSIGNAL SIGINT\n\
              RUN echo x > /tmp/x\nCOPY a /a\nENTRYPOINT [\"/bin/sh\"]\nCMD echo hi\nHEALTHCHECK --interval=5s CMD true\nSHELL [\"/bin/sh\", \"-ec\"]\n";
    let (r, _) = env
        .build(&ctx, df, |o| {
            o.labels.insert("from-cli".into(), "yes".into());
            o.tags = vec!["hist:1".into(), "hist:2".into()];
        })
        .unwrap();
    assert_eq!(r.tags, vec!["hist:1".to_string(), "hist:2".into()]);
    let i = env.images.inspect("hist:2").unwrap();
    assert_eq!(i.id, r.id.to_string());
    let c = &i.config;
    assert_eq!(
        c.labels.as_ref().unwrap().get("a").map(String::as_str),
        Some("b")
    );
    assert_eq!(
        c.labels
            .as_ref()
            .unwrap()
            .get("from-cli")
            .map(String::as_str),
        Some("yes")
    );
    assert!(c.env.as_ref().unwrap().contains(&"K=v".to_string()));
    assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
    assert_eq!(c.working_dir, "/app");
    let root = env.unpack("hist:1");
    assert!(root.join("app").is_dir(), "WORKDIR creates its directory");
    assert_eq!(c.user, "app");
    assert!(c.volumes.as_ref().unwrap().contains_key("/data"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(c.entrypoint, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".to_string(), "-c".into(), "echo hi".into()])
    );
    assert_eq!(c.shell, Some(vec!["/bin/sh".to_string(), "-ec".into()]));
    let hc = c.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, Some(vec!["CMD-SHELL".to_string(), "true".into()]));
    assert_eq!(hc.interval, Some(5_000_000_000));
    let h = env.images.history("hist:1").unwrap();
    let by: Vec<&str> = h.iter().map(|h| h.created_by.as_str()).collect();
    assert!(by.contains(&"/bin/sh -c #(nop)  LABEL a=b"), "{by:?}");
    assert!(by.contains(&"/bin/sh -c #(nop)  ENV K=v"), "{by:?}");
    assert!(by.contains(&"/bin/sh -c #(nop) WORKDIR /app"), "{by:?}");
    assert!(
        by.contains(&"/bin/sh -c #(nop)  CMD [\"/bin/sh\" \"-c\" \"echo hi\"]"),
        "{by:?}"
    );
    assert!(by.contains(&"RUN /bin/sh -c echo x > /tmp/x"), "{by:?}");
    assert!(
        by.iter()
            .any(|b| b.starts_with("/bin/sh -c #(nop) COPY file:") && b.ends_with(" in /a ")),
        "{by:?}"
    );
    let cfg = env.images.resolve("hist:1").unwrap().config;
    let layers = cfg.history.iter().filter(|h| !h.empty_layer).count();
    assert_eq!(
        layers,
        cfg.rootfs.diff_ids.len(),
        "one layer per non-empty history entry"
    );
    assert!(cfg
        .history
        .iter()
        .any(|h| h.empty_layer && h.created_by.as_deref() == Some("/bin/sh -c #(nop)  EXPOSE 80")));
}

#[test]
fn prune_keeps_at_most_keep_storage() {
    let env = Env::new();
    let ctx = env.context(&[("big", &"x".repeat(200_000))]);
    let (r1, _) = env
        .build(
            &ctx,
            "FROM busybox\nCOPY big /big\nRUN echo 1 > /one\n",
            |_| {},
        )
        .unwrap();
    let b = env.builder();
    let before = b.cache().size().unwrap();
    assert!(before > 200_000);
    let rep = b.prune(Some(100_000), false).unwrap();
    assert!(rep.entries > 0);
    assert!(b.cache().size().unwrap() <= 100_000);
    // the image itself stays intact
    let root = env.unpack(&r1.id.to_string());
    assert!(root.join("big").exists());
    // pruned steps run again
    let (r2, _) = env
        .build(
            &ctx,
            "FROM busybox\nCOPY big /big\nRUN echo 1 > /one\n",
            |_| {},
        )
        .unwrap();
    assert!(r2.executed >= 1);
    let rep = b.prune(None, true).unwrap();
    assert!(rep.entries > 0);
    assert_eq!(b.cache().size().unwrap(), 0);
    // an enforced limit after each build
    let small = Builder::new(&env.images, &env.runner)
        .unwrap()
        .with_cache_limit(1000);
    let opts = BuildOptions {
        context: ctx.clone(),
        dockerfile: Some("FROM busybox\nCOPY big /big2\n".into()),
        ..Default::default()
    };
    small.build(&opts, &|_| {}).unwrap();
    assert!(small.cache().size().unwrap() <= 1000);
}

#[test]
fn run_heredocs_mounts_and_user() {
    let env = Env::new();
    let ctx = env.context(&[("data/in.txt", "from-context\n")]);
    let df = "FROM busybox AS tools\nRUN echo tool > /tool.txt\n\
        FROM busybox\n\
        RUN <<EOF\necho one > /h1\necho two >> /h1\nEOF\n\
        RUN <<EOF\n#!/bin/sh\necho script > /h2\nEOF\n\
        RUN cat <<EOT > /h3\nbody\nEOT\n\
        RUN --mount=type=bind,source=data,target=/mnt/ctx cat /mnt/ctx/in.txt > /from-bind\n\
        RUN --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/tool.txt cat /mnt/tool.txt > /from-stage\n\
        RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /from-tmpfs\n\
        RUN --mount=type=bind,source=data,target=/mnt/rw,rw echo changed > /mnt/rw/in.txt\n\
        USER app\nRUN id -u > /tmp/uid && id -g >> /tmp/uid\n\
        USER 0\nRUN --network=none cat /proc/net/dev | grep -c : > /netdevs && ip link show lo > /lo && ping -c1 -W2 127.0.0.1 > /dev/null && echo ok > /ping\n";
    let (r, _) = env.build(&ctx, df, |_| {}).unwrap();
    let root = env.unpack(&r.id.to_string());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("h1"), "one\ntwo\n");
    assert_eq!(read("h2"), "script\n");
    assert_eq!(read("h3"), "body\n");
    assert_eq!(read("from-bind"), "from-context\n");
    assert_eq!(read("from-stage"), "tool\n");
    assert_eq!(read("from-tmpfs"), "t\n");
    assert!(
        !root.join("scratch").exists() && !root.join("mnt").exists(),
        "mount stubs dropped"
    );
    assert!(!root.join("dev/pipes").exists());
    assert_eq!(read("tmp/uid"), "1000\n1000\n");
    assert_eq!(
        read("netdevs").trim(),
        "1",
        "only lo in the step's network namespace"
    );
    // a writable bind mount never changes the context
    assert_eq!(
        std::fs::read_to_string(ctx.join("data/in.txt")).unwrap(),
        "from-context\n"
    );
}

#[test]
fn commit_turns_an_upper_dir_into_an_image() {
    use berth_build::{commit_upper, CommitOptions};
    let env = Env::new();
    let base = env.images.resolve("busybox").unwrap();
    env.images.unpack("busybox").unwrap();
    let snaps = env.images.snapshotter();
    let key = format!("berthtest-commit-{}", suffix());
    let mounts = snaps
        .prepare(&key, base.top_chain_id().map(|c| c.to_string()).as_deref())
        .unwrap();
    let upper = snaps.upper_dir(&key).unwrap();
    std::fs::write(upper.join("committed.txt"), "c\n").unwrap();
    let lowers: Vec<PathBuf> = mounts
        .iter()
        .flat_map(|m| m.options.iter())
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|l| l.split(':').map(PathBuf::from).collect::<Vec<_>>())
        .collect();
    let lower_refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let opts = CommitOptions {
        config: base.config.clone(),
        parent_layers: base.manifest.layers.clone(),
        parent_chain: base.top_chain_id(),
        created_by: "sh".into(),
        comment: Some("a commit".into()),
        author: Some("me".into()),
        tags: vec!["committed:1".into()],
    };
    let id = commit_upper(&env.images, &lower_refs, &upper, &opts).unwrap();
    snaps.remove(&key).unwrap();
    let root = env.unpack("committed:1");
    assert_eq!(
        std::fs::read_to_string(root.join("committed.txt")).unwrap(),
        "c\n"
    );
    assert!(root.join("bin/busybox").exists());
    let i = env.images.inspect("committed:1").unwrap();
    assert_eq!(i.id, id.to_string());
    assert_eq!(i.author, "me");
    // usable as a base at once
    let ctx = env.context(&[]);
    let (r, _) = env
        .build(
            &ctx,
            "FROM committed:1\nRUN cat /committed.txt > /again\n",
            |_| {},
        )
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(env.unpack(&r.id.to_string()).join("again")).unwrap(),
        "c\n"
    );
}

#[test]
fn cache_mount_sharing_modes() {
    let env = Env::new();
    let ctx = env.context(&[]);
    let df = |n: u32| {
        format!(
            "FROM busybox\nRUN --mount=type=cache,target=/p,sharing=private,id=priv echo {n} >> /p/log && wc -l < /p/log > /private-count\n\
             RUN --mount=type=cache,target=/l,sharing=locked,id=lock,uid=1000,mode=0700 echo {n} >> /l/log && wc -l < /l/log > /locked-count && stat -c %u /l > /locked-owner\n"
        )
    };
    env.build(&ctx, &df(1), |_| {}).unwrap();
    let (r, _) = env.build(&ctx, &df(2), |_| {}).unwrap();
    let root = env.unpack(&r.id.to_string());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(
        read("private-count").trim(),
        "2",
        "an uncontended private cache persists"
    );
    assert_eq!(read("locked-count").trim(), "2", "locked caches persist");
    assert_eq!(read("locked-owner").trim(), "1000");
}

#[test]
fn concurrent_gc_never_breaks_a_build() {
    let env = Env::new();
    let ctx = env.context(&[("f", "f\n")]);
    let df = "FROM busybox\nCOPY f /f\nRUN sleep 0.3 && echo a > /a\nCOPY f /g\nRUN sleep 0.3 && echo b > /b\n";
    let done = std::sync::atomic::AtomicBool::new(false);
    let (r, runs) = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                env.images.gc().unwrap();
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            n
        });
        let r = env.build(&ctx, df, |o| o.tags = vec!["gc:1".into()]);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (r, gc.join().unwrap())
    });
    let (r, _) = r.unwrap();
    assert!(runs > 5, "gc ran during the build ({runs} times)");
    env.images.gc().unwrap();
    let root = env.unpack("gc:1");
    assert_eq!(std::fs::read_to_string(root.join("b")).unwrap(), "b\n");
    // the cached layers survived GC too: a rebuild is fully cached
    let (r2, _) = env.build(&ctx, df, |_| {}).unwrap();
    assert_eq!((r2.executed, r2.id), (0, r.id));
}

#[test]
fn hostile_paths_stay_inside_their_roots() {
    let env = Env::new();
    let ctx = env.context(&[("f", "f\n")]);
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.join("etc-link")).unwrap();
    // climbing out of the context is cleaned away
    let e = env
        .build(
            &ctx,
            "FROM busybox\nCOPY ../../../../etc/passwd /x\n",
            |_| {},
        )
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound, "{e}");
    // a named symlink is followed inside the context only: never to the host file
    let e = env
        .build(&ctx, "FROM busybox\nCOPY passwd-link /copied\n", |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound, "{e}");
    std::os::unix::fs::symlink("f", ctx.join("f-link")).unwrap();
    std::fs::create_dir(ctx.join("d")).unwrap();
    std::os::unix::fs::symlink("../passwd-link", ctx.join("d/inner-link")).unwrap();
    let (r, _) = env
        .build(
            &ctx,
            "FROM busybox\nCOPY f-link /followed\nCOPY d /d/\n",
            |_| {},
        )
        .unwrap();
    let root = env.unpack(&r.id.to_string());
    assert_eq!(
        std::fs::read_to_string(root.join("followed")).unwrap(),
        "f\n"
    );
    // inside a copied directory, symlinks stay symlinks
    assert!(std::fs::symlink_metadata(root.join("d/inner-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // nothing is reachable through a symlinked directory of the context
    let e = env
        .build(&ctx, "FROM busybox\nCOPY etc-link/passwd /x\n", |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound, "{e}");
    let e = env
        .build(
            &ctx,
            "FROM busybox\nRUN --mount=type=bind,source=../../../../etc,target=/h cat /h/passwd\n",
            |_| {},
        )
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound, "{e}");
    // a symlink in the image pointing at a host path: COPY writes inside the rootfs
    let outside = tempfile::Builder::new()
        .prefix(&format!("{}-out", env.name))
        .tempdir()
        .unwrap();
    let df = format!(
        "FROM busybox\nRUN mkdir -p {0} && ln -s {0} /esc\nCOPY f /esc/\n",
        outside.path().display()
    );
    let (r, _) = env.build(&ctx, &df, |_| {}).unwrap();
    assert!(
        !outside.path().join("f").exists(),
        "COPY escaped the rootfs"
    );
    let root = env.unpack(&r.id.to_string());
    let inner = root
        .join(outside.path().strip_prefix("/").unwrap())
        .join("f");
    assert_eq!(std::fs::read_to_string(inner).unwrap(), "f\n");
}

#[test]
fn context_tar_unpacks_safely_and_unused_args_warn() {
    let env = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM busybox\nCOPY f /f\n"[..]),
        ("f", b"ctx\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    // a hostile entry climbing out of the context is refused
    let good = b.into_inner().unwrap();
    let dir = env.dir.path().join("ctx-from-tar");
    berth_build::unpack_context(std::io::Cursor::new(&good), &dir).unwrap();
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape.tx");
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let evil_dir = env.dir.path().join("ctx-evil");
    assert!(berth_build::unpack_context(
        std::io::Cursor::new(evil.into_inner().unwrap()),
        &evil_dir
    )
    .is_err());
    assert!(!env.dir.path().join("escape.tx").exists());
    let opts = BuildOptions {
        context: dir.clone(),
        dockerfile: None,
        build_args: [
            ("UNUSED".to_string(), "1".to_string()),
            ("HTTP_PROXY".into(), "x".into()),
        ]
        .into(),
        ..Default::default()
    };
    let events = Mutex::new(Vec::new());
    let r = env
        .builder()
        .build(&opts, &|e: &Event| events.lock().unwrap().push(e.clone()))
        .unwrap();
    let s = stream(&events.into_inner().unwrap());
    assert!(
        s.contains("[Warning] One or more build-args [UNUSED] were not consumed\n"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(env.unpack(&r.id.to_string()).join("f")).unwrap(),
        "ctx\n"
    );
    let e = env
        .build(&dir, "FROM busybox\nRUN --security=insecure true\n", |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::Unsupported);
}

#[test]
fn pull_policy_reaches_the_resolver() {
    use berth_build::{BuildError, ImageResolver, LocalResolver};
    use berth_image::{ImageService, ResolvedImage};
    struct Recording(Mutex<Vec<(String, bool)>>);
    impl ImageResolver for Recording {
        fn resolve(
            &self,
            images: &ImageService,
            name: &str,
            pull: bool,
        ) -> Result<ResolvedImage, BuildError> {
            self.0.lock().unwrap().push((name.to_owned(), pull));
            LocalResolver.resolve(images, name, pull)
        }
    }
    let env = Env::new();
    let ctx = env.context(&[]);
    let rec = Recording(Mutex::new(Vec::new()));
    let b = env.builder().with_resolver(&rec);
    let opts = BuildOptions {
        context: ctx.clone(),
        dockerfile: Some(
            "FROM busybox AS a\nFROM busybox\nCOPY --from=busybox /bin/busybox /bb\n".into(),
        ),
        pull: true,
        ..Default::default()
    };
    b.build(&opts, &|_| {}).unwrap();
    let calls = rec.0.into_inner().unwrap();
    assert!(calls.iter().all(|(n, p)| n == "busybox" && *p), "{calls:?}");
    assert_eq!(calls.len(), 2, "unused stage a is not resolved: {calls:?}");
    let e = env.build(&ctx, "FROM nosuchimage:1\n", |_| {}).unwrap_err();
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound);
    assert!(e.to_string().contains("nosuchimage:1"), "{e}");
}

#[test]
fn runc_can_run_the_steps_too() {
    let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        println!("SKIP: runc is not installed");
        return;
    };
    let env = Env::new();
    let runner = berth_build::OciRunner::new(
        runc,
        &env.dir.path().join("runc-state"),
        &env.dir.path().join("runc-bundles"),
    );
    let ctx = env.context(&[]);
    let opts = BuildOptions {
        context: ctx,
        dockerfile: Some("FROM busybox\nRUN echo via-runc > /r && exit 0\n".into()),
        ..Default::default()
    };
    let r = Builder::new(&env.images, &runner)
        .unwrap()
        .with_name_prefix(&env.name)
        .build(&opts, &|_| {})
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(env.unpack(&r.id.to_string()).join("r")).unwrap(),
        "via-runc\n"
    );
    let opts = BuildOptions {
        dockerfile: Some("FROM busybox\nRUN exit 7\n".into()),
        ..opts
    };
    let e = Builder::new(&env.images, &runner)
        .unwrap()
        .with_name_prefix(&env.name)
        .build(&opts, &|_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The command '/bin/sh -c exit 7' returned a non-zero code: 7"
    );
}
