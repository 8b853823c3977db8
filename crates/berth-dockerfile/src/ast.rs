//! The Dockerfile syntax tree.
//!
//! Words are kept as written (quotes, escapes and `$variables` intact) wherever the builder
//! expands them; [`Step::expand`] gives the instruction with its words processed against an
//! environment. RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are never expanded by the builder.

use std::time::Duration;

pub use crate::lexer::{Directive, Heredoc, Warning};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives in the order they appeared.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// ARG instructions before the first FROM (usable in FROM lines only).
    pub args_before_from: Vec<Arg>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
    /// Things that parse but deserve a warning.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The `# check=` directive, parsed (`skip=A,B;error=true`).
    pub fn check(&self) -> Check {
        let mut check = Check::default();
        let Some(value) = self.directive("check") else {
            return check;
        };
        for part in value.split(';') {
            match part.trim().split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("skip") => {
                    check.skip = v
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                Some((k, v)) if k.trim().eq_ignore_ascii_case("error") => {
                    check.error = v.trim().eq_ignore_ascii_case("true");
                }
                _ => {}
            }
        }
        check
    }

    /// The value of a directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// The stage named `name` (case-insensitive) or with that index.
    pub fn stage(&self, name_or_index: &str) -> Option<(usize, &Stage)> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(found) = self
            .stages
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.as_deref() == Some(&lower))
        {
            return Some(found);
        }
        let index: usize = name_or_index.parse().ok()?;
        self.stages.get(index).map(|s| (index, s))
    }
}

/// The `# check=skip=<rules>;error=<bool>` directive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// Rules not to check (`all` skips every rule).
    pub skip: Vec<String>,
    /// Whether check warnings fail the build.
    pub error: bool,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The name, as written.
    pub name: String,
    /// The default value, unexpanded; `None` for `ARG name`.
    pub default: Option<String>,
}

/// One build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base image, unexpanded (expand it with the ARGs declared before the first FROM).
    pub base: String,
    /// `--platform=...`, unexpanded.
    pub platform: Option<String>,
    /// The instructions of the stage, FROM excluded.
    pub instructions: Vec<Step>,
    /// The line of the FROM.
    pub line: usize,
    /// The FROM line as written.
    pub original: String,
}

/// An instruction with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// First line (1-based).
    pub line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// The typed instruction.
    pub instruction: Instruction,
}

/// Shell form (`RUN make`) or exec form (`RUN ["make"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// A string the image's SHELL runs.
    Shell(String),
    /// An argument vector run directly.
    Exec(Vec<String>),
}

impl CommandLine {
    /// The arguments as the image config stores them: the exec vector, or `shell + [cmd]`.
    pub fn to_args(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
        }
    }
}

/// `RUN --network=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The builder's default network.
    Default,
    /// No network.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// The default sandbox.
    Sandbox,
    /// Privileged execution.
    Insecure,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// `--mount` values, unexpanded; [`Run::mount_specs`] types them.
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<Security>,
    /// Heredocs opened on the line, in order.
    pub heredocs: Vec<Heredoc>,
}

/// A source of ADD or COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path in the context (or stage, or URL for ADD), unexpanded.
    Path(String),
    /// An inline file: `COPY <<EOF /dst`; the file's name is the heredoc's name.
    Heredoc(Heredoc),
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--checksum` (for URLs and git sources).
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--unpack` (explicit choice whether to extract local archives).
    pub unpack: Option<bool>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// Whether the JSON form was used (sources may then contain spaces).
    pub json: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from` (stage name, stage index or image).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// Whether the JSON form was used.
    pub json: bool,
}

/// `key=value` of ENV and LABEL, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Check {
        /// The test command (`CMD` exec form or `CMD-SHELL`).
        command: CommandLine,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

impl Healthcheck {
    /// The `Test` array of the image config (`["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", cmd]`).
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::None => vec!["NONE".into()],
            Healthcheck::Check {
                command: CommandLine::Exec(v),
                ..
            } => std::iter::once("CMD".to_owned())
                .chain(v.iter().cloned())
                .collect(),
            Healthcheck::Check {
                command: CommandLine::Shell(s),
                ..
            } => {
                vec!["CMD-SHELL".into(), s.clone()]
            }
        }
    }
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as written after ONBUILD (what the image config stores).
    pub expression: String,
    /// The trigger, parsed.
    pub instruction: Box<Instruction>,
}

/// A Dockerfile instruction other than FROM (FROM starts a [`Stage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN`.
    Run(Run),
    /// `CMD`; `None` for an empty CMD.
    Cmd(Option<CommandLine>),
    /// `ENTRYPOINT`; `None` for an empty ENTRYPOINT (clears it).
    Entrypoint(Option<CommandLine>),
    /// `LABEL k=v ...` (or legacy `LABEL k v`).
    Label(Vec<KeyValue>),
    /// `EXPOSE port[/proto] ...`, unexpanded words.
    Expose(Vec<String>),
    /// `ENV k=v ...` (or legacy `ENV k v`).
    Env(Vec<KeyValue>),
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<Arg>),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `MAINTAINER` (deprecated).
    Maintainer(String),
}

impl Instruction {
    /// The upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// What a RUN with heredocs executes, following buildkit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Run this command (shell form through the image's SHELL, or exec form).
    Command(CommandLine),
    /// `RUN <<EOF` whose body starts with `#!`: write the body to a file, make it executable
    /// and run it directly.
    Executable(String),
}

impl Run {
    /// The command to execute, with heredocs folded in as buildkit does: a RUN that is only
    /// `<<EOF` runs the body through the shell (or directly when it has a `#!` line); any other
    /// shell form gets the bodies appended after the line, each closed by its delimiter, so the
    /// shell reads them as real heredocs.
    pub fn script(&self) -> RunScript {
        let CommandLine::Shell(line) = &self.command else {
            return RunScript::Command(self.command.clone());
        };
        let Some(first) = self.heredocs.first() else {
            return RunScript::Command(self.command.clone());
        };
        if let Ok(Some(_)) = crate::lexer::parse_heredoc(line.trim()) {
            if first.content.starts_with("#!") {
                return RunScript::Executable(first.content.clone());
            }
            return RunScript::Command(CommandLine::Shell(first.content.clone()));
        }
        let mut full = line.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        RunScript::Command(CommandLine::Shell(full))
    }
}
