//! From logical lines to the typed syntax tree.

use std::collections::HashMap;
use std::time::Duration;

use crate::ast::*;
use crate::error::{suggest, Detail, ParseError};
use crate::lexer::{self, parse_heredoc, Heredoc, Warning};
use crate::mount::{parse_duration, MountSpec, PortSpec};
use crate::words::{self, parse_json, parse_words, split_whitespace, JsonError};

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parse a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lexed = lexer::lex(text)?;
    let escape = lexed.escape;
    let mut warnings = lexed.warnings;
    let Some(first) = lexed.lines.first() else {
        let lines = text.lines().count();
        return Err(ParseError::new(lines, lines, Detail::Empty));
    };
    let first_line = first.start;
    let mut args_before_from = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in &lexed.lines {
        let at = |detail| ParseError::new(line.start, line.end, detail);
        let (cmd, flags, rest) = words::split_command(&line.text);
        if cmd.eq_ignore_ascii_case("from") {
            let stage = parse_from(&flags, &rest, line.start, &line.text).map_err(at)?;
            lint_from(&cmd, &rest, line.start, &mut warnings);
            if let Some(name) = &stage.name {
                if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                    return Err(at(Detail::Invalid(format!(
                        "duplicate stage name {name:?}"
                    ))));
                }
            }
            stages.push(stage);
            continue;
        }
        let mut ctx = Ctx {
            escape,
            heredocs: &line.heredocs,
            warnings: &mut warnings,
            line: line.start,
        };
        let instruction = parse_instruction(&cmd, &flags, &rest, &mut ctx).map_err(at)?;
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(Step {
                line: line.start,
                end_line: line.end,
                original: line.text.clone(),
                instruction,
            }),
            None => match instruction {
                Instruction::Arg(args) => args_before_from.extend(args),
                other => return Err(at(Detail::BeforeFrom(other.name().into()))),
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::new(first_line, first_line, Detail::NoFrom));
    }
    for stage in &stages {
        lint_stage(stage, &mut warnings);
    }
    let mut dockerfile = Dockerfile {
        directives: lexed.directives,
        escape,
        args_before_from,
        stages,
        warnings,
    };
    let check = dockerfile.check();
    let skip_all = check.skip.iter().any(|r| r.eq_ignore_ascii_case("all"));
    dockerfile
        .warnings
        .retain(|w| !skip_all && !check.skip.iter().any(|r| r == w.rule));
    dockerfile.warnings.sort_by_key(|w| w.line);
    Ok(dockerfile)
}

fn is_consistent_case(word: &str) -> bool {
    word == word.to_ascii_uppercase() || word == word.to_ascii_lowercase()
}

/// `FromAsCasing` and `StageNameCasing`, as buildkit checks them.
fn lint_from(cmd: &str, rest: &str, line: usize, warnings: &mut Vec<Warning>) {
    let args = split_whitespace(rest);
    let [_, as_word, name] = args.as_slice() else {
        return;
    };
    let upper = |w: &str| w == w.to_ascii_uppercase();
    if is_consistent_case(cmd) && is_consistent_case(as_word) && upper(cmd) != upper(as_word) {
        warnings.push(Warning {
            rule: "FromAsCasing",
            line,
            message: format!("'{as_word}' and '{cmd}' keywords' casing do not match"),
        });
    }
    if *name != name.to_ascii_lowercase() {
        warnings.push(Warning {
            rule: "StageNameCasing",
            line,
            message: format!("stage name '{name}' should be lowercase"),
        });
    }
}

/// `JSONArgsRecommended` and `MultipleInstructionsDisallowed`.
fn lint_stage(stage: &Stage, warnings: &mut Vec<Warning>) {
    for step in &stage.instructions {
        if let Instruction::Cmd(Some(CommandLine::Shell(_)))
        | Instruction::Entrypoint(Some(CommandLine::Shell(_))) = &step.instruction
        {
            warnings.push(Warning {
                rule: "JSONArgsRecommended",
                line: step.line,
                message: format!(
                    "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                    step.instruction.name()
                ),
            });
        }
    }
    for kind in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
        let lines: Vec<usize> = stage
            .instructions
            .iter()
            .filter(|s| s.instruction.name() == kind)
            .map(|s| s.line)
            .collect();
        for line in lines.iter().take(lines.len().saturating_sub(1)) {
            warnings.push(Warning {
                rule: "MultipleInstructionsDisallowed",
                line: *line,
                message: format!(
                    "multiple {kind} instructions should not be used in the same stage because only the last one will be used"
                ),
            });
        }
    }
}

struct Ctx<'a> {
    escape: char,
    heredocs: &'a [Heredoc],
    warnings: &'a mut Vec<Warning>,
    line: usize,
}

impl Ctx<'_> {
    fn warn(&mut self, rule: &'static str, message: String) {
        self.warnings.push(Warning {
            rule,
            line: self.line,
            message,
        });
    }
}

fn args_error(instruction: &str, expected: &str) -> Detail {
    Detail::Arguments {
        instruction: instruction.into(),
        expected: expected.into(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Bool,
    Str,
    Strs,
}

/// Flag values by name.
struct Flags {
    values: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    fn parse(
        instruction: &str,
        raw: &[String],
        spec: &[(&'static str, FlagType)],
    ) -> Result<Flags, Detail> {
        let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
        for arg in raw {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(Detail::Invalid(format!("flag should start with --: {arg}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, ty)) = spec.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
                return Err(Detail::UnknownFlag {
                    instruction: instruction.to_ascii_uppercase(),
                    flag: name.to_owned(),
                    suggestion: suggest(name, &names).map(|s| format!("--{s}")),
                });
            };
            if ty != FlagType::Strs && values.contains_key(key) {
                return Err(Detail::Invalid(format!(
                    "duplicate flag specified: --{key}"
                )));
            }
            let v = match (ty, value) {
                (FlagType::Bool, None) => "true".to_owned(),
                (FlagType::Bool, Some("")) | (_, None) => {
                    return Err(Detail::Invalid(format!("missing a value on flag: --{key}")))
                }
                (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".into(),
                    "false" => "false".into(),
                    _ => {
                        return Err(Detail::Invalid(format!(
                            "expecting boolean value for flag --{key}, not: {v}"
                        )))
                    }
                },
                (_, Some(v)) => v.to_owned(),
            };
            values.entry(key).or_default().push(v);
        }
        Ok(Flags { values })
    }

    fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }
    fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
    fn boolean(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

fn parse_from(flags: &[String], rest: &str, line: usize, original: &str) -> Result<Stage, Detail> {
    let flags = Flags::parse("FROM", flags, &[("platform", FlagType::Str)])?;
    let args = split_whitespace(rest);
    let name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_ascii_lowercase();
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(Detail::Invalid(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    args[2]
                )));
            }
            Some(name)
        }
        _ => {
            return Err(args_error(
                "FROM",
                "either one or three arguments (image [AS name])",
            ))
        }
    };
    Ok(Stage {
        name,
        base: args[0].clone(),
        platform: flags.string("platform"),
        instructions: Vec::new(),
        line,
        original: original.to_owned(),
    })
}

fn no_flags(name: &str, flags: &[String]) -> Result<(), Detail> {
    Flags::parse(name, flags, &[]).map(|_| ())
}

fn json_or_shell(rest: &str) -> Result<CommandLine, Detail> {
    match parse_json(rest) {
        Ok(v) => Ok(CommandLine::Exec(v)),
        Err(JsonError::NotStrings) => Err(not_strings()),
        Err(JsonError::NotJson) => Ok(CommandLine::Shell(rest.to_owned())),
    }
}

fn not_strings() -> Detail {
    Detail::Invalid("when using JSON array syntax, arrays must be comprised of strings only".into())
}

/// JSON list, or whitespace-separated words. Returns the words and whether JSON was used.
fn json_or_words(rest: &str) -> Result<(Vec<String>, bool), Detail> {
    match parse_json(rest) {
        Ok(v) => Ok((v, true)),
        Err(JsonError::NotStrings) => Err(not_strings()),
        Err(JsonError::NotJson) => Ok((split_whitespace(rest), false)),
    }
}

fn exactly_one(name: &str, flags: &[String], rest: &str) -> Result<String, Detail> {
    no_flags(name, flags)?;
    if rest.is_empty() {
        return Err(args_error(name, "exactly one argument"));
    }
    Ok(rest.to_owned())
}

fn parse_instruction(
    cmd: &str,
    flags: &[String],
    rest: &str,
    ctx: &mut Ctx<'_>,
) -> Result<Instruction, Detail> {
    let lower = cmd.to_ascii_lowercase();
    let upper = cmd.to_ascii_uppercase();
    let name = upper.as_str();
    Ok(match lower.as_str() {
        "run" => Instruction::Run(parse_run(flags, rest, ctx)?),
        "cmd" | "entrypoint" => {
            no_flags(name, flags)?;
            let command = if rest.is_empty() {
                None
            } else {
                Some(json_or_shell(rest)?)
            };
            if lower == "cmd" {
                Instruction::Cmd(command)
            } else {
                Instruction::Entrypoint(command)
            }
        }
        "label" | "env" => {
            no_flags(name, flags)?;
            let pairs = parse_name_val(name, rest, ctx)?;
            if lower == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "expose" => {
            no_flags(name, flags)?;
            let ports = split_whitespace(rest);
            if ports.is_empty() {
                return Err(args_error(name, "at least one argument"));
            }
            for port in ports.iter().filter(|p| !p.contains('$')) {
                PortSpec::parse(port)?;
            }
            Instruction::Expose(ports)
        }
        "add" => Instruction::Add(parse_add(flags, rest, ctx)?),
        "copy" => Instruction::Copy(parse_copy(flags, rest, ctx)?),
        "volume" => {
            no_flags(name, flags)?;
            let (vols, _) = json_or_words(rest)?;
            if vols.is_empty() {
                return Err(args_error(name, "at least one argument"));
            }
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err(Detail::Invalid(
                    "VOLUME specified can not be an empty string".into(),
                ));
            }
            Instruction::Volume(vols)
        }
        "user" => Instruction::User(exactly_one(name, flags, rest)?),
        "workdir" => Instruction::Workdir(exactly_one(name, flags, rest)?),
        "stopsignal" => Instruction::Stopsignal(exactly_one(name, flags, rest)?),
        "maintainer" => {
            let who = exactly_one(name, flags, rest)?;
            ctx.warn(
                "MaintainerDeprecated",
                "MAINTAINER is deprecated: use LABEL maintainer=...".into(),
            );
            Instruction::Maintainer(who)
        }
        "arg" => {
            no_flags(name, flags)?;
            let words = parse_words(rest, ctx.escape);
            if words.is_empty() {
                return Err(args_error(name, "at least one argument"));
            }
            let mut args = Vec::new();
            for word in words {
                let arg = match word.split_once('=') {
                    Some(("", _)) => {
                        return Err(Detail::Invalid("ARG names can not be blank".into()))
                    }
                    Some((k, v)) => Arg {
                        name: k.to_owned(),
                        default: Some(v.to_owned()),
                    },
                    None => Arg {
                        name: word,
                        default: None,
                    },
                };
                args.push(arg);
            }
            Instruction::Arg(args)
        }
        "onbuild" => {
            no_flags(name, flags)?;
            if rest.is_empty() {
                return Err(args_error(name, "at least one argument"));
            }
            let (sub, sub_flags, sub_rest) = words::split_command(rest);
            match sub.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err(Detail::Invalid(
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ))
                }
                t @ ("FROM" | "MAINTAINER") => {
                    return Err(Detail::Invalid(format!(
                        "{t} isn't allowed as an ONBUILD trigger"
                    )))
                }
                _ => {}
            }
            let instruction = parse_instruction(&sub, &sub_flags, &sub_rest, ctx)?;
            Instruction::Onbuild(Onbuild {
                expression: rest.to_owned(),
                instruction: Box::new(instruction),
            })
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(flags, rest)?),
        "shell" => {
            no_flags(name, flags)?;
            match parse_json(rest) {
                Ok(v) if v.is_empty() => return Err(args_error(name, "at least one argument")),
                Ok(v) => Instruction::Shell(v),
                Err(JsonError::NotStrings) => return Err(not_strings()),
                Err(JsonError::NotJson) if rest.is_empty() => {
                    return Err(args_error(name, "at least one argument"))
                }
                Err(JsonError::NotJson) => {
                    return Err(args_error(
                        name,
                        "the arguments to be in JSON form, like [\"/bin/sh\", \"-c\"]",
                    ))
                }
            }
        }
        _ => {
            return Err(Detail::UnknownInstruction {
                name: cmd.to_owned(),
                suggestion: suggest(cmd, INSTRUCTIONS).map(str::to_owned),
            })
        }
    })
}

fn parse_name_val(name: &str, rest: &str, ctx: &mut Ctx<'_>) -> Result<Vec<KeyValue>, Detail> {
    let words = parse_words(rest, ctx.escape);
    let Some(first) = words.first() else {
        return Err(args_error(name, "at least one argument"));
    };
    if !first.contains('=') {
        // Legacy form: `ENV key value with spaces`.
        let Some(i) = rest.find(words::is_blank) else {
            return Err(args_error(
                name,
                "two arguments in the legacy form (key value), or key=value",
            ));
        };
        let (key, value) = (&rest[..i], rest[i..].trim_start_matches(words::is_blank));
        ctx.warn(
            "LegacyKeyValueFormat",
            format!("legacy \"{name} key value\" format: use \"{name} key=value\""),
        );
        return Ok(vec![KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        }]);
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(Detail::Invalid(format!(
                "syntax error - can't find = in {word:?}. Must be of the form: name=value"
            )));
        };
        if key.is_empty() {
            return Err(Detail::Invalid(format!("{name} names can not be blank")));
        }
        pairs.push(KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(pairs)
}

fn parse_run(flags: &[String], rest: &str, ctx: &mut Ctx<'_>) -> Result<Run, Detail> {
    let flags = Flags::parse(
        "RUN",
        flags,
        &[
            ("mount", FlagType::Strs),
            ("network", FlagType::Str),
            ("security", FlagType::Str),
        ],
    )?;
    if rest.is_empty() {
        return Err(args_error("RUN", "at least one argument"));
    }
    let mounts = flags.strings("mount");
    for m in mounts.iter().filter(|m| !m.contains('$')) {
        MountSpec::parse(m, &mut |v| Ok(v.to_owned()))?;
    }
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => {
            return Err(Detail::Invalid(format!(
                "unsupported network mode {other:?}: expected default, none or host"
            )))
        }
    };
    let security = match flags.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(Security::Sandbox),
        Some("insecure") => Some(Security::Insecure),
        Some(other) => {
            return Err(Detail::Invalid(format!(
                "unsupported security mode {other:?}: expected sandbox or insecure"
            )))
        }
    };
    let command = json_or_shell(rest)?;
    let heredocs = if matches!(command, CommandLine::Shell(_)) {
        ctx.heredocs.to_vec()
    } else {
        Vec::new()
    };
    Ok(Run {
        command,
        mounts,
        network,
        security,
        heredocs,
    })
}

/// Split ADD/COPY arguments into sources (paths or heredocs) and the destination.
fn sources_and_dest(
    name: &str,
    rest: &str,
    ctx: &Ctx<'_>,
) -> Result<(Vec<Source>, String, bool), Detail> {
    let (mut args, json) = json_or_words(rest)?;
    if args.len() < 2 {
        return Err(args_error(
            name,
            "at least two arguments (one or more sources, then the destination)",
        ));
    }
    let dest = args.pop().unwrap_or_default();
    let mut docs = ctx.heredocs.iter();
    let mut sources = Vec::new();
    for src in args {
        let heredoc = if json { None } else { parse_heredoc(&src)? };
        match heredoc {
            Some(_) => match docs.next() {
                Some(doc) => sources.push(Source::Heredoc(doc.clone())),
                None => return Err(Detail::Invalid(format!("heredoc {src} has no body"))),
            },
            None => sources.push(Source::Path(src)),
        }
    }
    Ok((sources, dest, json))
}

fn parse_add(flags: &[String], rest: &str, ctx: &mut Ctx<'_>) -> Result<Add, Detail> {
    let flags = Flags::parse(
        "ADD",
        flags,
        &[
            ("chown", FlagType::Str),
            ("chmod", FlagType::Str),
            ("link", FlagType::Bool),
            ("checksum", FlagType::Str),
            ("keep-git-dir", FlagType::Bool),
            ("unpack", FlagType::Bool),
            ("exclude", FlagType::Strs),
        ],
    )?;
    let (sources, dest, json) = sources_and_dest("ADD", rest, ctx)?;
    let checksum = flags.string("checksum");
    if checksum.is_some() && sources.len() != 1 {
        return Err(Detail::Invalid(
            "checksum can't be specified for multiple sources".into(),
        ));
    }
    Ok(Add {
        sources,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.boolean("link").unwrap_or(false),
        checksum,
        keep_git_dir: flags.boolean("keep-git-dir").unwrap_or(false),
        unpack: flags.boolean("unpack"),
        exclude: flags.strings("exclude"),
        json,
    })
}

fn parse_copy(flags: &[String], rest: &str, ctx: &mut Ctx<'_>) -> Result<Copy, Detail> {
    let flags = Flags::parse(
        "COPY",
        flags,
        &[
            ("from", FlagType::Str),
            ("chown", FlagType::Str),
            ("chmod", FlagType::Str),
            ("link", FlagType::Bool),
            ("parents", FlagType::Bool),
            ("exclude", FlagType::Strs),
        ],
    )?;
    let (sources, dest, json) = sources_and_dest("COPY", rest, ctx)?;
    Ok(Copy {
        sources,
        dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.boolean("link").unwrap_or(false),
        parents: flags.boolean("parents").unwrap_or(false),
        exclude: flags.strings("exclude"),
        json,
    })
}

fn interval(flag: &str, value: Option<String>) -> Result<Option<Duration>, Detail> {
    let Some(value) = value else { return Ok(None) };
    let d = parse_duration(&value)
        .map_err(|e| Detail::Invalid(format!("HEALTHCHECK --{flag}: {e}")))?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(Detail::Invalid(format!(
            "HEALTHCHECK --{flag} {value:?} cannot be less than 1ms"
        )));
    }
    Ok(Some(d))
}

fn parse_healthcheck(flags: &[String], rest: &str) -> Result<Healthcheck, Detail> {
    let (typ, cmd) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    if typ.is_empty() {
        return Err(args_error(
            "HEALTHCHECK",
            "at least one argument (NONE or CMD ...)",
        ));
    }
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if !cmd.is_empty() || !flags.is_empty() {
            return Err(Detail::Invalid(
                "HEALTHCHECK NONE takes no arguments".into(),
            ));
        }
        return Ok(Healthcheck::None);
    }
    if typ != "CMD" {
        return Err(Detail::Invalid(format!(
            "unknown type {typ:?} in HEALTHCHECK: expected CMD or NONE"
        )));
    }
    let flags = Flags::parse(
        "HEALTHCHECK",
        flags,
        &[
            ("interval", FlagType::Str),
            ("timeout", FlagType::Str),
            ("start-period", FlagType::Str),
            ("start-interval", FlagType::Str),
            ("retries", FlagType::Str),
        ],
    )?;
    if cmd.is_empty() {
        return Err(Detail::Invalid(
            "missing command after HEALTHCHECK CMD".into(),
        ));
    }
    let command = json_or_shell(cmd)?;
    if matches!(&command, CommandLine::Exec(v) if v.is_empty()) {
        return Err(Detail::Invalid(
            "missing command after HEALTHCHECK CMD".into(),
        ));
    }
    let retries =
        match flags.string("retries") {
            None => None,
            Some(r) => match r.parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err(Detail::Invalid(format!(
                        "HEALTHCHECK --retries cannot be negative ({n})"
                    )))
                }
                Ok(n) => Some(u32::try_from(n).map_err(|_| {
                    Detail::Invalid(format!("HEALTHCHECK --retries {n} is too large"))
                })?),
                Err(_) => {
                    return Err(Detail::Invalid(format!(
                        "HEALTHCHECK --retries {r:?}: expected a whole number"
                    )))
                }
            },
        };
    Ok(Healthcheck::Check {
        command,
        interval: interval("interval", flags.string("interval"))?,
        timeout: interval("timeout", flags.string("timeout"))?,
        start_period: interval("start-period", flags.string("start-period"))?,
        start_interval: interval("start-interval", flags.string("start-interval"))?,
        retries,
    })
}
