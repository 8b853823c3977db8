//! The parser on real-world Dockerfiles and on every instruction and flag.

use std::time::Duration;

use berth_dockerfile::*;

fn p(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(d) => d,
        Err(e) => panic!("parse failed: {e}\n---\n{text}"),
    }
}

fn steps(text: &str) -> Vec<Instruction> {
    p(text)
        .stages
        .remove(0)
        .instructions
        .into_iter()
        .map(|s| s.instruction)
        .collect()
}

fn one(text: &str) -> Instruction {
    let mut v = steps(&format!("FROM scratch\n{text}\n"));
    assert_eq!(v.len(), 1, "expected one instruction in {text:?}: {v:?}");
    v.remove(0)
}

fn shell(s: &str) -> CommandLine {
    CommandLine::Shell(s.into())
}

fn exec(v: &[&str]) -> CommandLine {
    CommandLine::Exec(v.iter().map(|s| s.to_string()).collect())
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

#[test]
fn multi_stage_go_build() {
    let d = p(r#"# syntax=docker/dockerfile:1.7
# check=skip=JSONArgsRecommended
ARG GO_VERSION=1.22
ARG BASE
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS Build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app

FROM gcr.io/distroless/static:nonroot
COPY --from=build --chown=nonroot:nonroot /out/app /app
USER nonroot:nonroot
EXPOSE 8080/tcp
ENTRYPOINT ["/app"]
"#);
    assert_eq!(d.directive("syntax"), Some("docker/dockerfile:1.7"));
    assert_eq!(d.directive("check"), Some("skip=JSONArgsRecommended"));
    assert_eq!(d.escape, '\\');
    assert_eq!(
        d.args_before_from,
        vec![
            Arg {
                name: "GO_VERSION".into(),
                default: Some("1.22".into())
            },
            Arg {
                name: "BASE".into(),
                default: None
            }
        ]
    );
    assert_eq!(d.stages.len(), 2);
    let build = &d.stages[0];
    assert_eq!(
        build.name.as_deref(),
        Some("build"),
        "stage names are lower-cased"
    );
    assert_eq!(build.base, "golang:${GO_VERSION}-alpine");
    assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(build.line, 5);
    assert_eq!(build.instructions.len(), 5);
    let run = &build.instructions[2];
    assert_eq!((run.line, run.end_line), (8, 10));
    match &run.instruction {
        Instruction::Run(r) => {
            assert_eq!(r.mounts.len(), 2);
            assert_eq!(r.command, shell("go mod download"));
            let specs = r.mount_specs(&NoEnv, '\\').unwrap();
            assert_eq!(specs[0].kind, MountType::Cache);
            assert_eq!(specs[0].target.as_deref(), Some("/go/pkg/mod"));
            assert_eq!(specs[0].sharing, Some(Sharing::Shared));
            assert!(!specs[0].readonly);
        }
        other => panic!("{other:?}"),
    }
    let final_stage = &d.stages[1];
    assert_eq!(final_stage.name, None);
    assert_eq!(d.stage("build").map(|(i, _)| i), Some(0));
    assert_eq!(d.stage("BUILD").map(|(i, _)| i), Some(0));
    assert_eq!(d.stage("1").map(|(i, _)| i), Some(1));
    match &final_stage.instructions[0].instruction {
        Instruction::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.chown.as_deref(), Some("nonroot:nonroot"));
            assert_eq!(c.sources, vec![Source::Path("/out/app".into())]);
            assert_eq!(c.dest, "/app");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        final_stage.instructions[3].instruction,
        Instruction::Entrypoint(Some(exec(&["/app"])))
    );
    let globals = d
        .global_args(&vec![("BASE".to_string(), "x".to_string())])
        .unwrap();
    assert_eq!(
        globals,
        vec![
            ("GO_VERSION".into(), "1.22".into()),
            ("BASE".into(), "x".into())
        ]
    );
    assert_eq!(
        build.expand_base(&globals, d.escape).unwrap(),
        "golang:1.22-alpine"
    );
}

#[test]
fn node_app_with_healthcheck_and_onbuild() {
    let i = steps(
        r#"FROM node:20-slim
ENV NODE_ENV=production \
    PORT=3000
LABEL org.opencontainers.image.title="My App" version=1.0 "key with space"=v
WORKDIR /usr/src/app
ONBUILD COPY package*.json ./
ONBUILD RUN npm ci --omit=dev
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 \
  CMD curl -f http://localhost:3000/ || exit 1
STOPSIGNAL SIGTERM
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
CMD ["node", "server.js"]
"#,
    );
    assert_eq!(
        i[0],
        Instruction::Env(vec![kv("NODE_ENV", "production"), kv("PORT", "3000")])
    );
    assert_eq!(
        i[1],
        Instruction::Label(vec![
            kv("org.opencontainers.image.title", "\"My App\""),
            kv("version", "1.0"),
            kv("\"key with space\"", "v"),
        ])
    );
    assert_eq!(i[2], Instruction::Workdir("/usr/src/app".into()));
    match &i[3] {
        Instruction::Onbuild(o) => {
            assert_eq!(o.expression, "COPY package*.json ./");
            assert!(matches!(*o.instruction, Instruction::Copy(_)));
        }
        other => panic!("{other:?}"),
    }
    match &i[4] {
        Instruction::Onbuild(o) => match &*o.instruction {
            Instruction::Run(r) => assert_eq!(r.command, shell("npm ci --omit=dev")),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    match &i[5] {
        Instruction::Healthcheck(
            h @ Healthcheck::Check {
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
                ..
            },
        ) => {
            assert_eq!(*interval, Some(Duration::from_secs(30)));
            assert_eq!(*timeout, Some(Duration::from_secs(3)));
            assert_eq!(*start_period, Some(Duration::from_secs(90)));
            assert_eq!(*start_interval, Some(Duration::from_millis(500)));
            assert_eq!(*retries, Some(3));
            assert_eq!(
                h.test(),
                vec!["CMD-SHELL", "curl -f http://localhost:3000/ || exit 1"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(i[6], Instruction::Stopsignal("SIGTERM".into()));
    assert_eq!(
        i[7],
        Instruction::Volume(vec!["/data".into(), "/logs".into()])
    );
    assert_eq!(
        i[8],
        Instruction::Volume(vec!["/cache".into(), "/tmp/x".into()])
    );
    assert_eq!(i[9], Instruction::Cmd(Some(exec(&["node", "server.js"]))));
}

#[test]
fn windows_style_escape_directive() {
    let d = p("# escape=`\n\nFROM mcr.microsoft.com/windows/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN echo a `\n    b\n");
    assert_eq!(d.escape, '`');
    let i: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|s| &s.instruction)
        .collect();
    match i[0] {
        Instruction::Copy(c) => {
            assert_eq!(c.sources, vec![Source::Path("testfile.txt".into())]);
            assert_eq!(c.dest, "c:\\");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(i[1], Instruction::Run(r) if r.command == shell("dir c:\\")));
    assert!(matches!(i[2], Instruction::Run(r) if r.command == shell("echo a     b")));
    // With the default escape, `COPY testfile.txt c:\` + `RUN dir c:\` would join lines.
    let d = p("FROM x\nCOPY testfile.txt c:\\\nRUN dir c:\\\n");
    assert_eq!(d.stages[0].instructions.len(), 1);
}

#[test]
fn directives_only_at_the_top() {
    let d = p("# syntax=a\n# escape=`\n# check=error=true\nFROM x\n");
    assert_eq!(d.directives.len(), 3);
    assert_eq!(
        d.directives[2],
        Directive {
            name: "check".into(),
            value: "error=true".into(),
            line: 3
        }
    );
    // A blank line ends the directives.
    let d = p("# syntax=a\n\n# escape=`\nFROM x\n");
    assert_eq!(d.directives.len(), 1);
    assert_eq!(d.escape, '\\');
    // An ordinary comment ends them too.
    let d = p("# hello\n# escape=`\nFROM x\n");
    assert!(d.directives.is_empty());
    // So does an unknown directive.
    let d = p("# foo=bar\n# escape=`\nFROM x\n");
    assert!(d.directives.is_empty());
    // After an instruction a directive is a comment.
    let d = p("FROM x\n# escape=`\nRUN a\n");
    assert!(d.directives.is_empty());
    // Case-insensitive names, blanks allowed.
    let d = p("#  ESCAPE =  `  \nFROM x\n");
    assert_eq!(d.escape, '`');
    assert_eq!(d.directive("escape"), Some("`"));
}

#[test]
fn comments_continuations_and_blank_lines() {
    let i = steps(
        "FROM x\n  # indented comment\nRUN apt-get update && \\\n    # a comment inside\n    apt-get install -y \\\n\n      curl \\   \n      git\n\nrun echo lower-case\n",
    );
    assert_eq!(i.len(), 2);
    assert!(
        matches!(&i[0], Instruction::Run(r) if r.command == shell("apt-get update &&     apt-get install -y       curl       git")),
        "{:?}",
        i[0]
    );
    assert!(matches!(&i[1], Instruction::Run(r) if r.command == shell("echo lower-case")));
    let d = p("FROM x\nRUN a \\\n\n  b\n");
    assert_eq!(d.warnings.len(), 1, "empty continuation line warns");
    // CRLF line endings.
    let i = steps("FROM x\r\nRUN a \\\r\n  b\r\nUSER me\r\n");
    assert!(matches!(&i[0], Instruction::Run(r) if r.command == shell("a   b")));
    assert_eq!(i[1], Instruction::User("me".into()));
    // BOM.
    assert_eq!(p("\u{feff}FROM x\n").stages.len(), 1);
    // Continuation at end of file.
    let i = steps("FROM x\nRUN a \\");
    assert!(matches!(&i[0], Instruction::Run(r) if r.command == shell("a")));
}

#[test]
fn heredocs() {
    let d = p("# syntax=docker/dockerfile:1\nFROM debian\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nRUN <<-'SCRIPT' bash\n\t\techo $HOME\n\tSCRIPT\nRUN python3 <<A 3<<B\nprint(1)\nA\ndata\nB\nCOPY <<EOF /etc/motd\nHello $USER\nEOF\nCOPY <<one.txt <<\"two.txt\" /dst/\n1\none.txt\n2\ntwo.txt\nUSER nobody\n");
    let st = &d.stages[0];
    let i: Vec<_> = st.instructions.iter().map(|s| &s.instruction).collect();
    match i[0] {
        Instruction::Run(r) => {
            assert_eq!(r.command, shell("<<EOF"));
            assert_eq!(r.heredocs.len(), 1);
            assert_eq!(r.heredocs[0].name, "EOF");
            assert_eq!(
                r.heredocs[0].content,
                "apt-get update\napt-get install -y vim\n"
            );
            assert!(r.heredocs[0].expand);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (st.instructions[0].line, st.instructions[0].end_line),
        (3, 6)
    );
    match i[1] {
        Instruction::Run(r) => {
            let h = &r.heredocs[0];
            assert_eq!(
                (h.name.as_str(), h.chomp, h.expand),
                ("SCRIPT", true, false)
            );
            assert_eq!(
                h.content, "echo $HOME\n",
                "leading tabs are stripped with <<-"
            );
        }
        other => panic!("{other:?}"),
    }
    match i[2] {
        Instruction::Run(r) => {
            assert_eq!(r.heredocs.len(), 2);
            assert_eq!(r.heredocs[0].content, "print(1)\n");
            assert_eq!((r.heredocs[1].name.as_str(), r.heredocs[1].fd), ("B", 3));
            assert_eq!(r.heredocs[1].content, "data\n");
        }
        other => panic!("{other:?}"),
    }
    match i[3] {
        Instruction::Copy(c) => {
            assert_eq!(c.dest, "/etc/motd");
            match &c.sources[0] {
                Source::Heredoc(h) => {
                    assert_eq!(h.name, "EOF");
                    assert_eq!(h.content, "Hello $USER\n");
                    assert!(h.expand);
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    match i[4] {
        Instruction::Copy(c) => {
            assert_eq!(c.sources.len(), 2);
            assert!(
                matches!(&c.sources[0], Source::Heredoc(h) if h.name == "one.txt" && h.content == "1\n" && h.expand)
            );
            assert!(
                matches!(&c.sources[1], Source::Heredoc(h) if h.name == "two.txt" && h.content == "2\n" && !h.expand)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*i[5], Instruction::User("nobody".into()));
    // Not heredocs: exec form, quoted, and instructions that cannot take one.
    let i = steps("FROM x\nRUN [\"echo\", \"<<EOF\"]\nRUN echo \"<<EOF\"\nENV A=<<EOF\n");
    assert!(matches!(&i[0], Instruction::Run(r) if r.heredocs.is_empty()));
    assert!(matches!(&i[1], Instruction::Run(r) if r.heredocs.is_empty()));
    assert_eq!(i[2], Instruction::Env(vec![kv("A", "<<EOF")]));
    // ONBUILD RUN with a heredoc.
    let i = steps("FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    match &i[0] {
        Instruction::Onbuild(o) => match &*o.instruction {
            Instruction::Run(r) => assert_eq!(r.heredocs[0].content, "echo hi\n"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_and_shell_forms() {
    assert_eq!(
        one("CMD [\"a\", \"b c\"]"),
        Instruction::Cmd(Some(exec(&["a", "b c"])))
    );
    assert_eq!(one("CMD echo hi"), Instruction::Cmd(Some(shell("echo hi"))));
    assert_eq!(one("CMD"), Instruction::Cmd(None));
    assert_eq!(one("CMD []"), Instruction::Cmd(Some(exec(&[]))));
    // Invalid JSON falls back to the shell form, exactly as written.
    assert_eq!(
        one("CMD [\"a\", 'b']"),
        Instruction::Cmd(Some(shell("[\"a\", 'b']")))
    );
    assert_eq!(
        one("ENTRYPOINT [/bin/sh]"),
        Instruction::Entrypoint(Some(shell("[/bin/sh]")))
    );
    assert_eq!(
        one("ENTRYPOINT [\"a\"] trailing"),
        Instruction::Entrypoint(Some(shell("[\"a\"] trailing")))
    );
    assert_eq!(one("ENTRYPOINT"), Instruction::Entrypoint(None));
    assert_eq!(
        one("RUN [\"/bin/sh\", \"-c\", \"echo hi\"]"),
        Instruction::Run(Run {
            command: exec(&["/bin/sh", "-c", "echo hi"]),
            mounts: vec![],
            network: None,
            security: None,
            heredocs: vec![],
        })
    );
    assert_eq!(
        one("SHELL [\"powershell\", \"-command\"]"),
        Instruction::Shell(vec!["powershell".into(), "-command".into()])
    );
    assert_eq!(
        shell("x").to_args(&["/bin/sh".into(), "-c".into()]),
        vec!["/bin/sh", "-c", "x"]
    );
    assert_eq!(exec(&["a"]).to_args(&["/bin/sh".into()]), vec!["a"]);
    match one("COPY [\"src file\", \"dst dir/\"]") {
        Instruction::Copy(c) => {
            assert!(c.json);
            assert_eq!(c.sources, vec![Source::Path("src file".into())]);
            assert_eq!(c.dest, "dst dir/");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn run_flags() {
    match one("RUN --network=none --security=insecure --mount=type=secret,id=aws,target=/root/.aws/credentials,required --mount=type=ssh --mount=type=tmpfs,target=/tmp,size=64m --mount=type=bind,from=build,source=/out,target=/mnt,rw true") {
        Instruction::Run(r) => {
            assert_eq!(r.network, Some(NetworkMode::None));
            assert_eq!(r.security, Some(Security::Insecure));
            assert_eq!(r.command, shell("true"));
            let m = r.mount_specs(&NoEnv, '\\').unwrap();
            assert_eq!(m.len(), 4);
            assert_eq!(m[0].kind, MountType::Secret);
            assert_eq!(m[0].id.as_deref(), Some("aws"));
            assert!(m[0].required);
            assert!(m[0].readonly);
            assert_eq!(m[0].mode, Some(0o400));
            assert_eq!(m[1].kind, MountType::Ssh);
            assert_eq!(m[1].id.as_deref(), Some("default"));
            assert_eq!(m[2].kind, MountType::Tmpfs);
            assert_eq!(m[2].size, Some(64 << 20));
            assert!(!m[2].readonly);
            assert_eq!(m[3].kind, MountType::Bind);
            assert_eq!(m[3].from.as_deref(), Some("build"));
            assert_eq!(m[3].source.as_deref(), Some("/out"));
            assert!(!m[3].readonly, "rw overrides the bind default");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse("FROM x\nRUN --network=host --network=default x\n").is_err(),
        "duplicate flag"
    );
}

#[test]
fn mount_specs_every_key() {
    let id = |v: &str| -> Result<String, ExpandError> { Ok(v.to_owned()) };
    let m = MountSpec::parse("type=cache,id=apt,target=/var/cache/apt,sharing=locked,mode=0755,uid=1000,gid=1001,from=img,source=/c", &mut { id }).unwrap();
    assert_eq!(m.id.as_deref(), Some("apt"));
    assert_eq!(m.sharing, Some(Sharing::Locked));
    assert_eq!(
        (m.mode, m.uid, m.gid),
        (Some(0o755), Some(1000), Some(1001))
    );
    let m = MountSpec::parse("target=/src,ro=false", &mut { id }).unwrap();
    assert_eq!(m.kind, MountType::Bind);
    assert!(!m.readonly);
    let m = MountSpec::parse("dst=/src", &mut { id }).unwrap();
    assert!(m.readonly, "bind mounts are read-only by default");
    let m = MountSpec::parse("type=secret,src=./token,env=TOKEN", &mut { id }).unwrap();
    assert_eq!(m.env.as_deref(), Some("TOKEN"));
    assert_eq!(m.id.as_deref(), Some("./token"));
    let m = MountSpec::parse("\"type=bind,weird\",target=/x", &mut { id });
    assert!(
        m.is_err(),
        "a quoted field with a comma is one field: type=bind,weird is not a type"
    );
    let m = MountSpec::parse("type=secret,target=/run/s/tok", &mut { id }).unwrap();
    assert_eq!(m.id.as_deref(), Some("tok"));
    for (bad, why) in [
        ("type=cache", "requires a target"),
        ("type=volume,target=/x", "unsupported mount type"),
        ("type=bind,target=/x,mode=0700", "mode not allowed"),
        (
            "type=cache,target=/x,sharing=sometimes",
            "unsupported sharing",
        ),
        (
            "type=bind,target=/x,sharing=locked",
            "sharing is only valid",
        ),
        ("type=cache,target=/x,uid=abc", "expected a number"),
        ("type=cache,target=/x,mode=999", "octal"),
        ("type=cache,target=/x,bogus", "key=value"),
        ("type=cache,tagret=/x", "did you mean target?"),
        ("type=bind,target=/x,required", "unexpected key 'required'"),
        ("type=tmpfs,target=/x,size=lots", "invalid size"),
        ("type=secret,from=x,id=a", "should not have a from"),
    ] {
        let err = MountSpec::parse(bad, &mut { id }).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // Values are expanded; keys are not.
    let env = vec![("CACHE".to_string(), "/root/.cache".to_string())];
    let i = one("RUN --mount=type=cache,target=$CACHE,uid=${UID:-0} pip install x");
    let Instruction::Run(r) = i else { panic!() };
    let m = r.mount_specs(&env, '\\').unwrap();
    assert_eq!(m[0].target.as_deref(), Some("/root/.cache"));
    assert_eq!(m[0].uid, Some(0));
}

#[test]
fn add_and_copy_flags() {
    match one("ADD --chown=55:mygroup --chmod=644 --link --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir=true --unpack=false --exclude=*.tmp https://example.com/a.tar.gz /opt/") {
        Instruction::Add(a) => {
            assert_eq!(a.chown.as_deref(), Some("55:mygroup"));
            assert_eq!(a.chmod.as_deref(), Some("644"));
            assert!(a.link);
            assert!(a.checksum.as_deref().unwrap().starts_with("sha256:"));
            assert!(a.keep_git_dir);
            assert_eq!(a.unpack, Some(false));
            assert_eq!(a.exclude, vec!["*.tmp"]);
            assert_eq!(a.sources, vec![Source::Path("https://example.com/a.tar.gz".into())]);
            assert_eq!(a.dest, "/opt/");
        }
        other => panic!("{other:?}"),
    }
    match one("COPY --from=0 --chmod=755 --link=false --parents --exclude=a --exclude=b ./x/*.py ./y /app/") {
        Instruction::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("0"));
            assert!(!c.link);
            assert!(c.parents);
            assert_eq!(c.exclude, vec!["a", "b"]);
            assert_eq!(c.sources, vec![Source::Path("./x/*.py".into()), Source::Path("./y".into())]);
        }
        other => panic!("{other:?}"),
    }
    match one("ADD --keep-git-dir git@github.com:user/repo.git#main /src") {
        Instruction::Add(a) => assert!(a.keep_git_dir && !a.link && a.unpack.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn env_label_arg_forms() {
    assert_eq!(
        one("ENV A B C"),
        Instruction::Env(vec![kv("A", "B C")]),
        "legacy form keeps the rest"
    );
    assert_eq!(
        one("ENV A=1 B=\"two words\" C=three\\ words"),
        Instruction::Env(vec![
            kv("A", "1"),
            kv("B", "\"two words\""),
            kv("C", "three\\ words")
        ])
    );
    assert_eq!(one("ENV A="), Instruction::Env(vec![kv("A", "")]));
    assert_eq!(
        one("LABEL maintainer Jane"),
        Instruction::Label(vec![kv("maintainer", "Jane")])
    );
    assert_eq!(one("label a=b"), Instruction::Label(vec![kv("a", "b")]));
    assert_eq!(
        one("ARG A B=2 C=\"x y\""),
        Instruction::Arg(vec![
            Arg {
                name: "A".into(),
                default: None
            },
            Arg {
                name: "B".into(),
                default: Some("2".into())
            },
            Arg {
                name: "C".into(),
                default: Some("\"x y\"".into())
            },
        ])
    );
    assert_eq!(one("USER 1000:1000"), Instruction::User("1000:1000".into()));
    assert_eq!(
        one("MAINTAINER Jane Doe <j@d.org>"),
        Instruction::Maintainer("Jane Doe <j@d.org>".into())
    );
    assert_eq!(
        one("EXPOSE 80 443/tcp 53/udp 8000-8010"),
        Instruction::Expose(vec![
            "80".into(),
            "443/tcp".into(),
            "53/udp".into(),
            "8000-8010".into()
        ])
    );
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(Healthcheck::None.test(), vec!["NONE"]);
    match one("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]") {
        Instruction::Healthcheck(h) => assert_eq!(h.test(), vec!["CMD", "/bin/check", "-q"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn instruction_names_are_case_insensitive_and_lines_tracked() {
    let d = p("from alpine as Base\nrun echo 1\nCopy a b\nworkdir /x\nFrom base\n");
    assert_eq!(d.stages[0].name.as_deref(), Some("base"));
    assert_eq!(d.stages[1].base, "base");
    let s = &d.stages[0].instructions;
    assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(s[1].original, "Copy a b");
    assert_eq!(s[1].instruction.name(), "COPY");
}

#[test]
fn arg_scoping_helpers() {
    let d = p("ARG VERSION=1.0\nARG TAG=v${VERSION}\nARG UNSET\nFROM busybox:${TAG}\nARG VERSION\nARG LOCAL=${VERSION}-local\nRUN echo $VERSION\n");
    let none: Vec<(String, String)> = vec![];
    let globals = d.global_args(&none).unwrap();
    assert_eq!(
        globals,
        vec![
            ("VERSION".into(), "1.0".into()),
            ("TAG".into(), "v1.0".into())
        ]
    );
    assert_eq!(
        d.stages[0].expand_base(&globals, '\\').unwrap(),
        "busybox:v1.0"
    );
    let build_args = vec![("VERSION".to_string(), "2.0".to_string())];
    let g2 = d.global_args(&build_args).unwrap();
    assert_eq!(d.stages[0].expand_base(&g2, '\\').unwrap(), "busybox:v2.0");
    let Instruction::Arg(redeclared) = &d.stages[0].instructions[0].instruction else {
        panic!()
    };
    // Redeclared without a default: takes the global value.
    assert_eq!(
        resolve_arg(&redeclared[0], &none, &globals, &none, '\\')
            .unwrap()
            .as_deref(),
        Some("1.0")
    );
    // A build argument wins.
    assert_eq!(
        resolve_arg(&redeclared[0], &build_args, &globals, &none, '\\')
            .unwrap()
            .as_deref(),
        Some("2.0")
    );
    // Without redeclaration nothing leaks: an ARG unknown to the globals is unset.
    let fresh = Arg {
        name: "OTHER".into(),
        default: None,
    };
    assert_eq!(
        resolve_arg(&fresh, &none, &globals, &none, '\\').unwrap(),
        None
    );
    let Instruction::Arg(local) = &d.stages[0].instructions[1].instruction else {
        panic!()
    };
    let env = vec![("VERSION".to_string(), "1.0".to_string())];
    assert_eq!(
        resolve_arg(&local[0], &none, &globals, &env, '\\')
            .unwrap()
            .as_deref(),
        Some("1.0-local")
    );
    // A blank base after expansion is an error with the FROM's line.
    let d = p("ARG IMG\nFROM $IMG\n");
    let err = d.stages[0].expand_base(&none, '\\').unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn step_expansion_per_instruction() {
    let d = p("FROM x\nENV abc=bye def=$abc\nENV ghi=$abc\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\nCOPY --from=${STAGE} --chown=${U}:${G} a${X}b /d\nUSER ${U:-nobody}\nVOLUME $FOO/data\nSTOPSIGNAL SIG$SIG\nEXPOSE $PORTS\nLABEL \"$K\"=\"$V\"\nRUN echo $FOO\nCMD echo $FOO\n");
    let env = vec![
        ("abc".to_string(), "hello".to_string()),
        ("FOO".to_string(), "/bar".to_string()),
        ("STAGE".to_string(), "build".to_string()),
        ("U".to_string(), "app".to_string()),
        ("G".to_string(), "staff".to_string()),
        ("X".to_string(), "-".to_string()),
        ("SIG".to_string(), "KILL".to_string()),
        ("PORTS".to_string(), "80 53/UDP".to_string()),
        ("K".to_string(), "k".to_string()),
        ("V".to_string(), "v w".to_string()),
    ];
    let s = &d.stages[0].instructions;
    let e = |i: usize| s[i].expand(&env, '\\').unwrap();
    assert_eq!(
        e(0),
        Instruction::Env(vec![kv("abc", "bye"), kv("def", "hello")]),
        "the doc example: def=hello"
    );
    let env2 = vec![("abc".to_string(), "bye".to_string())];
    assert_eq!(
        s[1].expand(&env2, '\\').unwrap(),
        Instruction::Env(vec![kv("ghi", "bye")])
    );
    assert_eq!(e(2), Instruction::Workdir("/bar".into()));
    match e(3) {
        Instruction::Add(a) => assert_eq!(a.dest, "/bar"),
        other => panic!("{other:?}"),
    }
    match e(4) {
        Instruction::Copy(c) => assert_eq!(c.sources, vec![Source::Path("$FOO".into())]),
        other => panic!("{other:?}"),
    }
    match e(5) {
        Instruction::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.chown.as_deref(), Some("app:staff"));
            assert_eq!(c.sources, vec![Source::Path("a-b".into())]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e(6), Instruction::User("app".into()));
    assert_eq!(e(7), Instruction::Volume(vec!["/bar/data".into()]));
    assert_eq!(e(8), Instruction::Stopsignal("SIGKILL".into()));
    assert_eq!(
        e(9),
        Instruction::Expose(vec!["80/tcp".into(), "53/udp".into()])
    );
    assert_eq!(e(10), Instruction::Label(vec![kv("k", "v w")]));
    assert_eq!(
        e(11),
        s[11].instruction,
        "RUN is not expanded by the builder"
    );
    assert_eq!(
        e(12),
        s[12].instruction,
        "CMD is not expanded by the builder"
    );
    let bad = p("FROM x\n\nEXPOSE $P\n");
    let err = bad.stages[0].instructions[0]
        .expand(&vec![("P".to_string(), "http".to_string())], '\\')
        .unwrap_err();
    assert_eq!(err.line, 3);
    assert!(
        err.to_string()
            .starts_with("Dockerfile:3: invalid port \"http\""),
        "{err}"
    );
}

#[test]
fn ports_sizes_durations() {
    assert_eq!(PortSpec::parse("8080").unwrap().to_string(), "8080/tcp");
    assert_eq!(PortSpec::parse("53/UDP").unwrap().protocol, Protocol::Udp);
    assert_eq!(
        PortSpec::parse("9000/sctp").unwrap().to_string(),
        "9000/sctp"
    );
    assert_eq!(
        PortSpec::parse("7000-7002/tcp").unwrap().to_string(),
        "7000-7002/tcp"
    );
    for bad in ["0", "65536", "80/icmp", "9-1", "a", "80:80", ""] {
        assert!(PortSpec::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_size("1g").unwrap(), 1 << 30);
    assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
    assert_eq!(parse_size("100").unwrap(), 100);
    assert_eq!(parse_duration("1h2m3s").unwrap(), Duration::from_secs(3723));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    for bad in ["", "10", "s", "1x", "-1s", "1s2"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn run_scripts_fold_heredocs_like_buildkit() {
    let d = p("FROM x\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /a && cat <<-B > /b\nalpha\nA\n\tbeta\n\tB\nRUN [\"echo\", \"x\"]\nRUN echo plain\n");
    let scripts: Vec<RunScript> = d.stages[0]
        .instructions
        .iter()
        .map(|s| match &s.instruction {
            Instruction::Run(r) => r.script(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(scripts[0], RunScript::Command(shell("echo a\necho b\n")));
    assert_eq!(
        scripts[1],
        RunScript::Executable("#!/usr/bin/env python3\nprint(1)\n".into())
    );
    assert_eq!(
        scripts[2],
        RunScript::Command(shell("cat <<A > /a && cat <<-B > /b\nalpha\nA\nbeta\nB"))
    );
    assert_eq!(scripts[3], RunScript::Command(exec(&["echo", "x"])));
    assert_eq!(scripts[4], RunScript::Command(shell("echo plain")));
}

#[test]
fn check_directive() {
    let d = p("# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM x\n");
    assert_eq!(
        d.check(),
        Check {
            skip: vec!["JSONArgsRecommended".into(), "StageNameCasing".into()],
            error: true
        }
    );
    assert_eq!(p("FROM x\n").check(), Check::default());
}

#[test]
fn copy_heredoc_bodies_expand_unless_quoted() {
    let d = p("FROM x\nCOPY <<EOF <<'RAW' /dst/\nHello $USER \"q\" 'x' \\$HOME ${MISSING:-dflt}\nEOF\nkeep $USER\nRAW\n");
    let env = vec![("USER".to_string(), "me".to_string())];
    match d.stages[0].instructions[0].expand(&env, '\\').unwrap() {
        Instruction::Copy(c) => {
            let bodies: Vec<&str> = c
                .sources
                .iter()
                .map(|s| match s {
                    Source::Heredoc(h) => h.content.as_str(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                bodies,
                vec!["Hello me \"q\" 'x' \\$HOME dflt\n", "keep $USER\n"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        expand_heredoc(
            "a 'b' \"$X\"",
            &vec![("X".to_string(), "1".to_string())],
            '\\'
        )
        .unwrap(),
        "a 'b' \"1\""
    );
}

#[test]
fn warnings_follow_buildkit_rules_and_check_skip() {
    let text = "FROM a as Build\nMAINTAINER me\nENV A 1\nCMD echo one\nCMD [\"two\"]\nRUN a \\\n\n  b\nFROM b AS ok\nENTRYPOINT run\n";
    let rules = |d: &Dockerfile| {
        d.warnings
            .iter()
            .map(|w| (w.rule, w.line))
            .collect::<Vec<_>>()
    };
    let d = p(text);
    assert_eq!(
        rules(&d),
        vec![
            ("FromAsCasing", 1),
            ("StageNameCasing", 1),
            ("MaintainerDeprecated", 2),
            ("LegacyKeyValueFormat", 3),
            ("JSONArgsRecommended", 4),
            ("MultipleInstructionsDisallowed", 4),
            ("NoEmptyContinuation", 6),
            ("JSONArgsRecommended", 10),
        ]
    );
    let d = p(&format!(
        "# check=skip=JSONArgsRecommended,StageNameCasing\n{text}"
    ));
    assert!(d
        .warnings
        .iter()
        .all(|w| w.rule != "JSONArgsRecommended" && w.rule != "StageNameCasing"));
    assert_eq!(d.warnings.len(), 5);
    assert!(p(&format!("# check=skip=all\n{text}")).warnings.is_empty());
    assert!(p("FROM a AS b\nCMD [\"x\"]\n").warnings.is_empty());
}
