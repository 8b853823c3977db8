//! `berth-build-step --root DIR run --bundle DIR ID`: runs one OCI bundle to completion with
//! berth-runtime in this (single-threaded) process and exits with the container's exit code.
//!
//! The builder is multi-threaded (stages run in parallel) while `Runtime::create` must be called
//! from a single-threaded process, so [`berth_build::OciRunner`] spawns this helper (or any
//! runc-compatible runtime: `runc`, `crun`, `berth runtime`) per RUN step. The container
//! inherits this process's stdio.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use berth_runtime::{CreateOptions, Runtime};
use rustix::process::WaitOptions;

fn usage() -> ExitCode {
    eprintln!("usage: berth-build-step --root DIR run --bundle DIR ID");
    ExitCode::from(125)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut root = None;
    let mut bundle = None;
    let mut id = None;
    let mut it = args.iter();
    let mut seen_run = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => root = it.next().map(PathBuf::from),
            "--bundle" | "-b" => bundle = it.next().map(PathBuf::from),
            "run" => seen_run = true,
            other if seen_run && !other.starts_with('-') => id = Some(other.to_owned()),
            _ => return usage(),
        }
    }
    let (Some(root), Some(bundle), Some(id)) = (root, bundle, id) else {
        return usage();
    };
    // Orphans of the container come back to us; we reap them all.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let rt = Runtime::new(root);
    let opts = CreateOptions {
        bundle,
        ..Default::default()
    };
    let st = match rt.create(&id, &opts) {
        Ok(st) => st,
        Err(e) => {
            eprintln!("berth-build-step: create {id}: {e}");
            return ExitCode::from(125);
        }
    };
    if let Err(e) = rt.start(&id) {
        eprintln!("berth-build-step: start {id}: {e}");
        let _ = rt.delete(&id, true);
        reap_all();
        return ExitCode::from(125);
    }
    let code = wait_for(st.pid);
    let _ = rt.delete(&id, true);
    reap_all();
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(255))
}

/// Reap children until `pid` exits; its exit code (128 + signal when killed).
fn wait_for(pid: i32) -> i32 {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((p, st))) if p.as_raw_nonzero().get() == pid => {
                return berth_runtime::exit_code(st)
            }
            Ok(Some(_)) => continue,
            Ok(None) => return 255,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Reap whatever is left (orphans reparented to us).
fn reap_all() {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some(_)) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        }
    }
}
