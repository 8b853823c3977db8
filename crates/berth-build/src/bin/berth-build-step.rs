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
    // A private network namespace gets its loopback up (as Docker's builder has it).
    if let Err(e) = loopback_up(st.pid) {
        eprintln!("berth-build-step: bring up lo in {id}: {e}");
    }
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

/// Enter the network namespace of `pid` (when it is not ours) and set `lo` up with one
/// RTM_NEWLINK request over netlink. This process is single-threaded and only waits afterwards.
fn loopback_up(pid: i32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let theirs = format!("/proc/{pid}/ns/net");
    if std::fs::metadata(&theirs)?.ino() == std::fs::metadata("/proc/self/ns/net")?.ino() {
        return Ok(());
    }
    let ns = std::fs::File::open(&theirs)?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::NETLINK,
        rustix::net::SocketType::RAW,
        rustix::net::SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 1 | 4;
    const IFF_UP: u32 = 1;
    const LOOPBACK_INDEX: i32 = 1; // lo is always ifindex 1 in a new namespace
    let mut msg = Vec::with_capacity(32);
    msg.extend(32u32.to_ne_bytes()); // nlmsghdr.len
    msg.extend(RTM_NEWLINK.to_ne_bytes());
    msg.extend(NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // seq
    msg.extend(0u32.to_ne_bytes()); // pid
    msg.extend([0u8, 0u8]); // ifinfomsg.family (AF_UNSPEC), pad
    msg.extend(0u16.to_ne_bytes()); // type
    msg.extend(LOOPBACK_INDEX.to_ne_bytes());
    msg.extend(IFF_UP.to_ne_bytes()); // flags
    msg.extend(IFF_UP.to_ne_bytes()); // change mask
    rustix::net::sendto(
        &sock,
        &msg,
        rustix::net::SendFlags::empty(),
        &rustix::net::netlink::SocketAddrNetlink::new(0, 0),
    )?;
    let mut buf = [0u8; 512];
    let (n, _) = rustix::net::recv(&sock, &mut buf, rustix::net::RecvFlags::empty())?;
    // NLMSG_ERROR (2) carries the request's result: 0 or -errno
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}
