//! berth-build: Dockerfile → image.
//!
//! [`Builder::build`] parses the Dockerfile (berth-dockerfile), plans the stages as a DAG
//! (FROM another stage, `COPY --from`, `RUN --mount from=`), skips stages the target does not
//! need and runs independent stages in parallel (one thread per stage; a stage waits for the
//! stages it depends on). Each step:
//! - config-only steps (ENV, LABEL, CMD, ...) change the image config and add a history entry
//!   with `empty_layer`;
//! - RUN, COPY and ADD prepare a snapshot on the parent chain, run the step (RUN through a
//!   [`StepRunner`]; COPY/ADD through the safe layer applier), diff the overlay upper into an
//!   uncompressed layer blob, and commit the snapshot under the new chain id.
//!
//! The [`cache`] keys each step by the previous step's key, the instruction after substitution
//! and the content digests of its inputs (COPY sources: contents, modes, owner, never mtimes;
//! RUN: its environment and mount specs, secret ids but never secret contents). A hit reuses the
//! committed snapshot and blob without running the step. Entries survive restarts (SQLite under
//! `<data root>/build/`) and are pruned LRU to a limit after every build.
//!
//! Progress is reported as [`Event`]s; [`Event::legacy_stream`] renders the classic builder's
//! `{"stream": ...}` lines ("Step 1/5 : FROM busybox", " ---> Using cache", ...).
#![forbid(unsafe_code)]

mod build;
pub mod cache;
pub mod copy;
mod error;
mod fsutil;
mod runner;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use build::{commit_upper, Builder, CommitOptions, ImageResolver, LocalResolver};
pub use cache::{Cache, PruneReport};
pub use copy::unpack_context;
pub use error::BuildError;
pub use fsutil::resolve_user;
pub use runner::{step_spec, OciRunner, RunRequest, StepMount, StepNetwork, StepRunner};

/// Options of a build (`docker build` flags; `--iidfile` and `-q` are the caller's business).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory (already extracted).
    pub context: PathBuf,
    /// The Dockerfile's text; `None`: read `dockerfile_name` from the context.
    pub dockerfile: Option<String>,
    /// The Dockerfile's path in the context (`-f`), `Dockerfile` when empty.
    pub dockerfile_name: String,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-t`, several allowed.
    pub tags: Vec<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: ask the resolver for a fresh copy of base images.
    pub pull: bool,
    /// `--platform` (only the host's is supported).
    pub platform: Option<String>,
    /// `--secret id=..,src=..`: id → file.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Network of RUN steps without `--network`.
    pub network: StepNetwork,
    /// Whether the context must be filtered by `.dockerignore` (true unless the caller already
    /// did it while receiving the context).
    pub apply_dockerignore: bool,
}

/// A build's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// The image id (config digest).
    pub id: berth_core::Digest,
    /// The manifest digest.
    pub manifest: berth_core::Digest,
    /// The names tagged (familiar form).
    pub tags: Vec<String>,
    /// Steps answered from the cache.
    pub cache_hits: usize,
    /// Steps executed.
    pub executed: usize,
}

/// A progress event. `step` numbers run from 1 to `total` over the stages built.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step starts.
    Step {
        /// Step number.
        step: usize,
        /// Number of steps.
        total: usize,
        /// Stage index.
        stage: usize,
        /// The instruction as written.
        instruction: String,
    },
    /// The step was answered from the cache.
    CacheHit {
        /// Step number.
        step: usize,
    },
    /// A RUN step's container starts.
    Running {
        /// Step number.
        step: usize,
        /// The container's id.
        container: String,
    },
    /// A line printed by a RUN step (with its newline).
    Output {
        /// Step number.
        step: usize,
        /// The line.
        line: String,
    },
    /// The step finished.
    StepDone {
        /// Step number.
        step: usize,
        /// Short id of the state after the step (12 hex digits).
        id: String,
        /// How long it took.
        duration: Duration,
    },
    /// The image was written.
    Built {
        /// Its id.
        id: berth_core::Digest,
    },
    /// The image was tagged.
    Tagged {
        /// The name (familiar form).
        name: String,
    },
}

impl Event {
    /// The text of the classic builder's `{"stream": ...}` message for this event.
    pub fn legacy_stream(&self) -> String {
        match self {
            Event::Step {
                step,
                total,
                instruction,
                ..
            } => format!("Step {step}/{total} : {instruction}\n"),
            Event::CacheHit { .. } => " ---> Using cache\n".into(),
            Event::Running { container, .. } => {
                let short: String = container
                    .chars()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!(" ---> Running in {short}\n")
            }
            Event::Output { line, .. } => line.clone(),
            Event::StepDone { id, .. } => format!(" ---> {id}\n"),
            Event::Built { id } => format!("Successfully built {}\n", &id.encoded()[..12]),
            Event::Tagged { name } => format!("Successfully tagged {name}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_stream_lines() {
        let id: berth_core::Digest =
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .parse()
                .unwrap();
        let ev = [
            Event::Step {
                step: 1,
                total: 2,
                stage: 0,
                instruction: "FROM busybox".into(),
            },
            Event::CacheHit { step: 1 },
            Event::StepDone {
                step: 1,
                id: "abcdefabcdef".into(),
                duration: Duration::ZERO,
            },
            Event::Built { id },
            Event::Tagged { name: "x:y".into() },
        ];
        let s: String = ev.iter().map(Event::legacy_stream).collect();
        assert_eq!(
            s,
            "Step 1/2 : FROM busybox\n ---> Using cache\n ---> abcdefabcdef\nSuccessfully built 0123456789ab\nSuccessfully tagged x:y\n"
        );
    }
}
