//! A table of real-world style Dockerfiles (tests/corpus/): each parses into the expected stages
//! and instructions, and a spot check per file looks at what matters in it.

use berth_dockerfile::*;

fn load(name: &str) -> Dockerfile {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn names(d: &Dockerfile) -> Vec<Option<&str>> {
    d.stages.iter().map(|s| s.name.as_deref()).collect()
}

fn kinds(stage: &Stage) -> Vec<&'static str> {
    stage
        .instructions
        .iter()
        .map(|s| s.instruction.name())
        .collect()
}

fn none() -> Vec<(String, String)> {
    Vec::new()
}

type Check = fn(&Dockerfile);

/// (file, stage names, instruction names per stage, spot check)
type Row = (
    &'static str,
    &'static [Option<&'static str>],
    &'static [&'static [&'static str]],
    Check,
);

const TABLE: &[Row] = &[
    (
        "python-pip.Dockerfile",
        &[Some("base")],
        &[&[
            "ENV", "WORKDIR", "ARG", "RUN", "RUN", "USER", "COPY", "EXPOSE", "CMD",
        ]],
        |d| {
            let g = d.global_args(&none()).unwrap();
            assert_eq!(
                d.stages[0].expand_base(&g, d.escape).unwrap(),
                "python:3.12-slim"
            );
            let Instruction::Run(r) = &d.stages[0].instructions[4].instruction else {
                panic!()
            };
            let m = r.mount_specs(&none(), d.escape).unwrap();
            assert_eq!(m[1].kind, MountType::Bind);
            assert_eq!(m[1].source.as_deref(), Some("requirements.txt"));
            assert!(m[1].readonly);
            let Instruction::Run(adduser) = &d.stages[0].instructions[3].instruction else {
                panic!()
            };
            assert!(
                matches!(&adduser.command, CommandLine::Shell(s) if s.contains("--uid \"${UID}\""))
            );
        },
    ),
    (
        "rust-cargo-chef.Dockerfile",
        &[
            Some("chef"),
            Some("planner"),
            Some("builder"),
            Some("runtime"),
        ],
        &[
            &["WORKDIR"],
            &["COPY", "RUN"],
            &["COPY", "RUN", "COPY", "RUN"],
            &["WORKDIR", "COPY", "ENTRYPOINT"],
        ],
        |d| {
            assert_eq!(d.stages[1].base, "chef");
            assert_eq!(d.stage("builder").unwrap().0, 2);
            let Instruction::Copy(c) = &d.stages[3].instructions[1].instruction else {
                panic!()
            };
            assert_eq!(c.from.as_deref(), Some("builder"));
        },
    ),
    (
        "nginx-static.Dockerfile",
        &[Some("build"), None],
        &[
            &["WORKDIR", "COPY", "RUN", "COPY", "RUN"],
            &["COPY", "COPY", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL"],
        ],
        |d| {
            let Instruction::Copy(c) = d.stages[1].instructions[1]
                .expand(&none(), d.escape)
                .unwrap()
            else {
                panic!()
            };
            let Source::Heredoc(h) = &c.sources[0] else {
                panic!()
            };
            assert!(
                h.content.contains("try_files \\$uri /index.html;"),
                "{}",
                h.content
            );
            assert_eq!(c.dest, "/etc/nginx/conf.d/default.conf");
            assert_eq!(
                (
                    d.stages[1].instructions[1].line,
                    d.stages[1].instructions[1].end_line
                ),
                (10, 18)
            );
            assert_eq!(
                d.stages[1].instructions[2].line, 19,
                "line numbers count the heredoc body"
            );
        },
    ),
    (
        "java-maven.Dockerfile",
        &[Some("build"), None],
        &[
            &["WORKDIR", "COPY", "RUN", "COPY", "RUN"],
            &["ARG", "COPY", "VOLUME", "ENTRYPOINT"],
        ],
        |d| {
            let env = vec![(
                "JAR_FILE".to_string(),
                "/workspace/target/*.jar".to_string(),
            )];
            let Instruction::Copy(c) = d.stages[1].instructions[1].expand(&env, d.escape).unwrap()
            else {
                panic!()
            };
            assert_eq!(
                c.sources,
                vec![Source::Path("/workspace/target/*.jar".into())]
            );
        },
    ),
    (
        "postgres-like.Dockerfile",
        &[None],
        &[&[
            "RUN",
            "ENV",
            "ENV",
            "ENV",
            "ENV",
            "ENV",
            "RUN",
            "VOLUME",
            "COPY",
            "RUN",
            "ENTRYPOINT",
            "STOPSIGNAL",
            "EXPOSE",
            "CMD",
        ]],
        |d| {
            let Instruction::Env(kv) = &d.stages[0].instructions[4].instruction else {
                panic!()
            };
            assert_eq!(
                (kv[0].key.as_str(), kv[0].value.as_str()),
                ("PATH", "$PATH:/usr/lib/postgresql/$PG_MAJOR/bin")
            );
            let env = vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("PG_MAJOR".to_string(), "16".to_string()),
            ];
            let Instruction::Env(kv) = d.stages[0].instructions[4].expand(&env, d.escape).unwrap()
            else {
                panic!()
            };
            assert_eq!(kv[0].value, "/bin:/usr/lib/postgresql/16/bin");
            assert_eq!(
                d.warnings
                    .iter()
                    .filter(|w| w.message.contains("legacy"))
                    .count(),
                5
            );
        },
    ),
    (
        "windows-servercore.Dockerfile",
        &[None],
        &[&["SHELL", "ENV", "RUN", "WORKDIR", "COPY", "CMD"]],
        |d| {
            assert_eq!(d.escape, '`');
            let Instruction::Shell(s) = &d.stages[0].instructions[0].instruction else {
                panic!()
            };
            assert_eq!(s[0], "powershell");
            let Instruction::Workdir(w) = d.stages[0].instructions[3]
                .expand(&none(), d.escape)
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(w, "C:\\app");
            let Instruction::Cmd(Some(CommandLine::Exec(v))) =
                &d.stages[0].instructions[5].instruction
            else {
                panic!()
            };
            assert_eq!(v, &vec!["C:\\app\\run.exe".to_string()]);
            let Instruction::Run(r) = &d.stages[0].instructions[2].instruction else {
                panic!()
            };
            assert!(
                matches!(&r.command, CommandLine::Shell(s) if s.contains("'git.zip';     Expand-Archive"))
            );
        },
    ),
    (
        "alpine-heredoc-scripts.Dockerfile",
        &[None],
        &[&["RUN", "RUN", "COPY", "HEALTHCHECK"]],
        |d| {
            let runs: Vec<RunScript> = d.stages[0].instructions[..2]
                .iter()
                .map(|s| match &s.instruction {
                    Instruction::Run(r) => r.script(),
                    _ => panic!(),
                })
                .collect();
            assert!(
                matches!(&runs[0], RunScript::Command(CommandLine::Shell(s)) if s.starts_with("sh\nset -e\n") || s.starts_with("<<EOT sh\nset -e"))
            );
            assert!(
                matches!(&runs[1], RunScript::Executable(s) if s.starts_with("#!/usr/bin/env sh"))
            );
            let Instruction::Copy(c) = &d.stages[0].instructions[2].instruction else {
                panic!()
            };
            assert_eq!(c.chmod.as_deref(), Some("0755"));
            let Source::Heredoc(h) = &c.sources[0] else {
                panic!()
            };
            assert!(!h.expand && h.chomp);
            assert_eq!(
                h.content,
                "#!/bin/sh\nexec curl -fsS http://localhost:8080/health\n"
            );
        },
    ),
    (
        "onbuild-base.Dockerfile",
        &[None],
        &[&[
            "RUN", "WORKDIR", "ONBUILD", "ONBUILD", "ONBUILD", "ONBUILD", "ONBUILD", "CMD",
        ]],
        |d| {
            let exprs: Vec<&str> = d.stages[0]
                .instructions
                .iter()
                .filter_map(|s| match &s.instruction {
                    Instruction::Onbuild(o) => Some(o.expression.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(exprs[1], "ENV NODE_ENV $NODE_ENV");
            assert_eq!(exprs[3], "RUN npm install && npm cache clean --force");
        },
    ),
    (
        "go-distroless-secrets.Dockerfile",
        &[Some("build"), None],
        &[&["ARG", "WORKDIR", "RUN"], &["COPY", "USER", "ENTRYPOINT"]],
        |d| {
            assert_eq!(d.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
            let Instruction::Arg(a) = &d.stages[0].instructions[0].instruction else {
                panic!()
            };
            assert_eq!(a.len(), 2);
            let Instruction::Run(r) = &d.stages[0].instructions[2].instruction else {
                panic!()
            };
            let m = r.mount_specs(&none(), d.escape).unwrap();
            let kinds: Vec<MountType> = m.iter().map(|m| m.kind).collect();
            assert_eq!(
                kinds,
                vec![
                    MountType::Secret,
                    MountType::Ssh,
                    MountType::Bind,
                    MountType::Cache
                ]
            );
            assert_eq!(m[0].id.as_deref(), Some("netrc"));
            assert_eq!(m[2].target.as_deref(), Some("."));
            assert_eq!(m[3].sharing, Some(Sharing::Locked));
            let Instruction::Copy(c) = &d.stages[1].instructions[0].instruction else {
                panic!()
            };
            assert!(c.link);
        },
    ),
];

#[test]
fn real_world_dockerfiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        TABLE.len(),
        "every corpus file has a row in the table"
    );
    for (file, stage_names, instruction_kinds, check) in TABLE {
        let d = load(file);
        assert_eq!(names(&d), stage_names.to_vec(), "{file}: stages");
        let got: Vec<Vec<&str>> = d.stages.iter().map(kinds).collect();
        let want: Vec<Vec<&str>> = instruction_kinds.iter().map(|k| k.to_vec()).collect();
        assert_eq!(got, want, "{file}: instructions");
        check(&d);
    }
}
