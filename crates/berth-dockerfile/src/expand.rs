//! Per-instruction variable substitution and ARG scoping, as the builder applies them.

use crate::ast::*;
use crate::error::{Detail, ParseError};
use crate::mount::{MountSpec, PortSpec};
use crate::shell::{expand, expand_heredoc, expand_words, Env, ExpandError};

fn word(w: &str, env: &dyn Env, escape: char) -> Result<String, Detail> {
    Ok(expand(w, env, escape)?)
}

fn opt(w: &Option<String>, env: &dyn Env, escape: char) -> Result<Option<String>, Detail> {
    w.as_deref().map(|w| word(w, env, escape)).transpose()
}

fn all(ws: &[String], env: &dyn Env, escape: char) -> Result<Vec<String>, Detail> {
    ws.iter().map(|w| word(w, env, escape)).collect()
}

fn sources(srcs: &[Source], env: &dyn Env, escape: char) -> Result<Vec<Source>, Detail> {
    srcs.iter()
        .map(|s| match s {
            Source::Path(p) => Ok(Source::Path(word(p, env, escape)?)),
            Source::Heredoc(h) if h.expand => Ok(Source::Heredoc(Heredoc {
                content: expand_heredoc(&h.content, env, escape)?,
                ..h.clone()
            })),
            Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
        })
        .collect()
}

fn pairs(kvs: &[KeyValue], env: &dyn Env, escape: char) -> Result<Vec<KeyValue>, Detail> {
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: word(&kv.key, env, escape)?,
                value: word(&kv.value, env, escape)?,
            })
        })
        .collect()
}

impl Instruction {
    /// This instruction with its words substituted against `env` and quotes removed, as the
    /// builder does before executing it. EXPOSE ports are validated and normalised (`80/tcp`);
    /// bodies of COPY/ADD heredocs with an unquoted delimiter are substituted too.
    /// RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD come back unchanged, and
    /// so does ARG: give its [`Arg`]s to [`resolve_arg`], which substitutes the default itself.
    /// Do not expand the result again.
    pub fn expand(&self, env: &dyn Env, escape: char) -> Result<Instruction, Detail> {
        Ok(match self {
            Instruction::Label(kvs) => Instruction::Label(pairs(kvs, env, escape)?),
            Instruction::Env(kvs) => Instruction::Env(pairs(kvs, env, escape)?),
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    for w in expand_words(p, env, escape)? {
                        out.push(PortSpec::parse(&w)?.to_string());
                    }
                }
                Instruction::Expose(out)
            }
            Instruction::Add(a) => Instruction::Add(Add {
                sources: sources(&a.sources, env, escape)?,
                dest: word(&a.dest, env, escape)?,
                chown: opt(&a.chown, env, escape)?,
                chmod: opt(&a.chmod, env, escape)?,
                checksum: opt(&a.checksum, env, escape)?,
                exclude: all(&a.exclude, env, escape)?,
                ..a.clone()
            }),
            Instruction::Copy(c) => Instruction::Copy(Copy {
                sources: sources(&c.sources, env, escape)?,
                dest: word(&c.dest, env, escape)?,
                from: opt(&c.from, env, escape)?,
                chown: opt(&c.chown, env, escape)?,
                chmod: opt(&c.chmod, env, escape)?,
                exclude: all(&c.exclude, env, escape)?,
                ..c.clone()
            }),
            Instruction::Volume(v) => {
                let v = all(v, env, escape)?;
                if v.iter().any(|v| v.trim().is_empty()) {
                    return Err(Detail::Invalid(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                Instruction::Volume(v)
            }
            Instruction::User(u) => Instruction::User(word(u, env, escape)?),
            Instruction::Workdir(w) => Instruction::Workdir(word(w, env, escape)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(word(s, env, escape)?),
            other => other.clone(),
        })
    }
}

impl Step {
    /// [`Instruction::expand`] with this step's line in the error.
    pub fn expand(&self, env: &dyn Env, escape: char) -> Result<Instruction, ParseError> {
        self.instruction
            .expand(env, escape)
            .map_err(|d| ParseError::new(self.line, self.end_line, d))
    }
}

impl Run {
    /// The `--mount` values, substituted against `env` and typed.
    pub fn mount_specs(&self, env: &dyn Env, escape: char) -> Result<Vec<MountSpec>, Detail> {
        self.mounts
            .iter()
            .map(|m| MountSpec::parse(m, &mut |v: &str| expand(v, env, escape)))
            .collect()
    }
}

impl Stage {
    /// The base image with the global ARGs (from [`Dockerfile::global_args`]) substituted.
    pub fn expand_base(&self, globals: &dyn Env, escape: char) -> Result<String, ParseError> {
        let base = expand(&self.base, globals, escape).map_err(|e| self.error(e.into()))?;
        if base.is_empty() {
            return Err(self.error(Detail::Invalid(format!(
                "base name ({}) should not be blank",
                self.base
            ))));
        }
        Ok(base)
    }

    /// `--platform` with the global ARGs substituted.
    pub fn expand_platform(
        &self,
        globals: &dyn Env,
        escape: char,
    ) -> Result<Option<String>, ParseError> {
        self.platform
            .as_deref()
            .map(|p| expand(p, globals, escape).map_err(|e| self.error(e.into())))
            .transpose()
    }

    fn error(&self, d: Detail) -> ParseError {
        ParseError::new(self.line, self.line, d)
    }
}

impl Dockerfile {
    /// The values of the ARGs declared before the first FROM: the build argument when given,
    /// else the default (substituted with the earlier global ARGs). ARGs with neither are unset.
    pub fn global_args(&self, build_args: &dyn Env) -> Result<Vec<(String, String)>, ExpandError> {
        let mut globals: Vec<(String, String)> = Vec::new();
        for arg in &self.args_before_from {
            let name = expand(&arg.name, &globals, self.escape)?;
            let value = match build_args.get_var(&name) {
                Some(v) => Some(v.to_owned()),
                None => arg
                    .default
                    .as_deref()
                    .map(|d| expand(d, &globals, self.escape))
                    .transpose()?,
            };
            if let Some(value) = value {
                globals.push((name, value));
            }
        }
        Ok(globals)
    }
}

/// The value an `ARG` declared inside a stage takes: the build argument when given; else its
/// default substituted in the stage's `env`; else, for an ARG redeclared without a default, the
/// value of the global ARG of that name. `None`: the ARG is declared but unset.
pub fn resolve_arg(
    arg: &Arg,
    build_args: &dyn Env,
    globals: &dyn Env,
    env: &dyn Env,
    escape: char,
) -> Result<Option<String>, ExpandError> {
    if let Some(v) = build_args.get_var(&arg.name) {
        return Ok(Some(v.to_owned()));
    }
    match &arg.default {
        Some(d) => expand(d, env, escape).map(Some),
        None => Ok(globals.get_var(&arg.name).map(str::to_owned)),
    }
}
