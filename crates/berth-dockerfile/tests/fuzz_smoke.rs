//! A stable-toolchain stand-in for the cargo-fuzz targets in `fuzz/`: replay every seed, then
//! many random mutations of them (xorshift PRNG, fixed seed so failures reproduce), through the
//! same code the fuzz targets exercise. Asserts that nothing panics and nothing is slow.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_dockerfile::{expand, expand_words, parse, resolve_arg, DockerIgnore, Instruction};

/// Fragments that reach the interesting parts of the grammar.
const TOKENS: &[&str] = &[
    "\\\n",
    "`\n",
    "\n",
    "\r\n",
    "<<EOF",
    "<<-EOF",
    "<<'E'",
    "EOF\n",
    "${",
    "}",
    "$",
    ":-",
    "#",
    "%",
    "/",
    "\"",
    "'",
    "`",
    "\\",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "--mount=",
    "type=cache,target=/x,",
    "--from=",
    "--",
    "# escape=`\n",
    "# syntax=x\n",
    "FROM ",
    "RUN ",
    "COPY ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "CMD ",
    "ARG ",
    "ENV ",
    "=",
    " AS ",
    "\t",
    "**",
    "*",
    "?",
    "!",
    ",",
    "\u{feff}",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(kind);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz seeds must exist at {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("dir entry").path()).expect("read seed"))
        .collect();
    assert!(out.len() >= 2, "expected seeds in {}", dir.display());
    if kind == "dockerfile" {
        // The real-world corpus of the table test seeds the mutations too.
        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        for entry in std::fs::read_dir(&corpus).expect("tests/corpus") {
            out.push(std::fs::read(entry.expect("dir entry").path()).expect("read corpus file"));
        }
    }
    out.sort();
    out
}

fn mutate(rng: &mut XorShift, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool[rng.below(pool.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 => {
                let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, tok.iter().copied());
            }
            1 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(data.len())..end);
            }
            2 if at < data.len() => data[at] ^= 1 << rng.below(8),
            3 => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from);
                data.splice(at..at, other[from..from + len].iter().copied());
            }
            4 if at < data.len() => {
                // Duplicate a chunk: repetition drives continuations and heredocs.
                let end = (at + rng.below(32)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
            _ => data.push(rng.below(256) as u8),
        }
    }
    data
}

/// What the `dockerfile` fuzz target does.
fn exercise_dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = vec![
        ("A".to_string(), "a b".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("P".to_string(), "/x/y.z".to_string()),
    ];
    let _ = expand(&text, &env, '\\');
    let _ = expand_words(&text, &env, '`');
    let Ok(df) = parse(&text) else { return };
    let globals = df.global_args(&env).unwrap_or_default();
    for stage in &df.stages {
        let _ = stage.expand_base(&globals, df.escape);
        let _ = stage.expand_platform(&globals, df.escape);
        for step in &stage.instructions {
            let _ = step.expand(&env, df.escape);
            match &step.instruction {
                Instruction::Run(run) => {
                    let _ = run.mount_specs(&env, df.escape);
                }
                Instruction::Arg(args) => {
                    for arg in args {
                        let _ = resolve_arg(arg, &env, &globals, &env, df.escape);
                    }
                }
                _ => {}
            }
        }
    }
}

/// What the `dockerignore` fuzz target does.
fn exercise_dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, patterns) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(di) = DockerIgnore::parse(patterns) {
        let _ = di.is_excluded(path);
        for prefix in path.split('/') {
            let _ = di.is_excluded(prefix);
        }
    }
}

fn run(kind: &str, iterations: usize, exercise: fn(&[u8])) {
    let pool = seeds(kind);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut slowest = (Duration::ZERO, Vec::new());
    let started = Instant::now();
    for i in 0..pool.len() + iterations {
        let data = if i < pool.len() {
            pool[i].clone()
        } else {
            mutate(&mut rng, &pool)
        };
        let t = Instant::now();
        if std::panic::catch_unwind(|| exercise(&data)).is_err() {
            panic!(
                "{kind}: input #{i} panicked: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, data);
        }
    }
    println!(
        "{kind}: {} inputs in {:?}; slowest {:?}",
        pool.len() + iterations,
        started.elapsed(),
        slowest.0
    );
    assert!(
        slowest.0 < Duration::from_secs(10),
        "{kind}: an input took {:?}: {:?}",
        slowest.0,
        String::from_utf8_lossy(&slowest.1)
    );
}

#[test]
fn dockerfile_seeds_and_mutations_never_panic() {
    run("dockerfile", 20_000, exercise_dockerfile);
}

#[test]
fn dockerignore_seeds_and_mutations_never_panic() {
    run("dockerignore", 20_000, exercise_dockerignore);
}

#[test]
fn pathological_inputs_stay_fast() {
    let cases = [
        format!("FROM a\nRUN {}\n", "\\\n".repeat(100_000)),
        format!("FROM a\nENV A={}\n", "${A:-".repeat(10_000)),
        format!("FROM a\nRUN {}\n", "<<E ".repeat(10_000)),
        format!("FROM a\n{}", "RUN <<E\nE\n".repeat(10_000)),
        format!("FROM a\nENV A=\"{}\n", "\\\"".repeat(100_000)),
        format!("FROM a\nCOPY {} /d\n", "a ".repeat(100_000)),
        format!("FROM a\nRUN --mount={} x\n", ",".repeat(100_000)),
        "FROM a\n".repeat(20_000),
        format!("{}FROM a\n", "# comment\n".repeat(100_000)),
    ];
    for text in &cases {
        let t = Instant::now();
        exercise_dockerfile(text.as_bytes());
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{:?} took {:?}",
            &text[..60.min(text.len())],
            t.elapsed()
        );
    }
    let t = Instant::now();
    let patterns = format!("x\n{}", "*a".repeat(2_000));
    exercise_dockerignore(format!("{}\n{}", "a/".repeat(2_048), patterns).as_bytes());
    exercise_dockerignore(format!("{}\n{}", "a".repeat(4_096), patterns).as_bytes());
    exercise_dockerignore(format!("{}\n{}", "a/".repeat(2_048), "**/a/".repeat(400)).as_bytes());
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "dockerignore took {:?}",
        t.elapsed()
    );
}
