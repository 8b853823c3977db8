//! berth-dockerfile: a Dockerfile parser and `.dockerignore` matcher. Pure code, no I/O except
//! [`DockerIgnore::walk`] and [`DockerIgnore::load`].
//!
//! - [`parse`] turns text into a [`Dockerfile`]: parser directives, the escape character,
//!   ARGs before the first FROM, and [`Stage`]s of typed [`Instruction`]s with line ranges.
//!   Errors are [`ParseError`]s that display as `Dockerfile:7: ENV requires at least one argument`.
//! - Words stay as written; the builder substitutes variables per instruction with
//!   [`Step::expand`] (or [`expand`] / [`expand_words`] / [`expand_heredoc`] on single words),
//!   resolves ARGs with [`Dockerfile::global_args`] (ARGs before the first FROM, for FROM lines)
//!   and [`resolve_arg`] (ARGs inside a stage), types RUN mounts with [`Run::mount_specs`] and
//!   folds RUN heredocs into the command with [`Run::script`].
//! - [`DockerIgnore`] implements Docker's `.dockerignore` semantics ([`DockerIgnore::load`],
//!   [`DockerIgnore::is_excluded`], [`DockerIgnore::walk`]) and, through
//!   [`DockerIgnore::from_patterns`], COPY/ADD `--exclude`.
//!
//! Hostile input never panics; sizes are bounded by [`MAX_LINE`], [`MAX_HEREDOC`], [`MAX_FILE`]
//! and substitution nesting by [`MAX_NESTING`]. The parser is fuzzed (`fuzz/` at the repository
//! root).
#![forbid(unsafe_code)]

mod ast;
mod error;
mod expand;
mod glob;
mod ignore;
mod lexer;
mod mount;
mod parse;
mod shell;
mod words;

pub use ast::*;
pub use error::{Detail, ParseError};
pub use expand::resolve_arg;
pub use ignore::{clean_path, DockerIgnore, IgnoreError};
pub use lexer::{MAX_FILE, MAX_HEREDOC, MAX_LINE};
pub use mount::{parse_duration, parse_size, MountSpec, MountType, PortSpec, Protocol, Sharing};
pub use parse::parse;
pub use shell::{
    expand, expand_heredoc, expand_words, Env, ExpandError, Lexer, NoEnv, MAX_NESTING,
};
