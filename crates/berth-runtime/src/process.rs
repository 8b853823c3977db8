//! Applying an OCI `process` object to the calling (single-threaded, forked) process:
//! rlimits, user and groups, capabilities, umask, cwd, executable lookup and `execve`.
//!
//! Every function returns a [`SetupError`] whose message names the operation, so that the
//! parent can print the real reason.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use berth_core::ErrorKind;
use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, PosixRlimit, PosixRlimitType, Process};
use rustix::process::{Resource, Rlimit};

use crate::error::{errno_text, io_kind};

/// PATH used when the process environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A setup step failed inside the container process.
#[derive(Debug, Clone)]
pub(crate) struct SetupError {
    pub(crate) msg: String,
    pub(crate) kind: ErrorKind,
}

impl SetupError {
    pub(crate) fn io(op: impl AsRef<str>, e: impl Into<io::Error>) -> Self {
        let e = e.into();
        SetupError {
            msg: format!("{}: {}", op.as_ref(), errno_text(&e)),
            kind: io_kind(&e),
        }
    }
    pub(crate) fn new(msg: impl Into<String>, kind: ErrorKind) -> Self {
        SetupError {
            msg: msg.into(),
            kind,
        }
    }
}

pub(crate) type SetupResult<T = ()> = Result<T, SetupError>;

fn resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::Cpu,
        T::RlimitFsize => Resource::Fsize,
        T::RlimitData => Resource::Data,
        T::RlimitStack => Resource::Stack,
        T::RlimitCore => Resource::Core,
        T::RlimitRss => Resource::Rss,
        T::RlimitNproc => Resource::Nproc,
        T::RlimitNofile => Resource::Nofile,
        T::RlimitMemlock => Resource::Memlock,
        T::RlimitAs => Resource::As,
        T::RlimitLocks => Resource::Locks,
        T::RlimitSigpending => Resource::Sigpending,
        T::RlimitMsgqueue => Resource::Msgqueue,
        T::RlimitNice => Resource::Nice,
        T::RlimitRtprio => Resource::Rtprio,
        T::RlimitRttime => Resource::Rttime,
    }
}

fn lim(v: u64) -> Option<u64> {
    if v == u64::MAX {
        None
    } else {
        Some(v)
    }
}

/// The limit actually applied for a requested (soft, hard) when the current hard limit is
/// `cur_hard` and raising it is not allowed: both values clamped to `cur_hard`.
pub(crate) fn clamp_rlimit(soft: u64, hard: u64, cur_hard: u64) -> (u64, u64) {
    let hard = hard.min(cur_hard);
    (soft.min(hard), hard)
}

/// Apply `rlimits`. A hard limit above the current one is clamped to it when raising fails with
/// EPERM (the runtime may lack CAP_SYS_RESOURCE, e.g. inside another container): raising what
/// the caller does not have is not something a default spec should fail on.
pub(crate) fn apply_rlimits(rlimits: &[PosixRlimit]) -> SetupResult {
    for r in rlimits {
        let res = resource(r.typ());
        let want = Rlimit {
            current: lim(r.soft()),
            maximum: lim(r.hard()),
        };
        match rustix::process::setrlimit(res, want) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) => {
                let cur = rustix::process::getrlimit(res);
                let cur_hard = cur.maximum.unwrap_or(u64::MAX);
                let (s, h) = clamp_rlimit(r.soft(), r.hard(), cur_hard);
                rustix::process::setrlimit(
                    res,
                    Rlimit {
                        current: lim(s),
                        maximum: lim(h),
                    },
                )
                .map_err(|e| SetupError::io(format!("setrlimit {}", r.typ()), e))?;
            }
            Err(e) => return Err(SetupError::io(format!("setrlimit {}", r.typ()), e)),
        }
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>) -> CapsHashSet {
    let mut out = HashSet::new();
    if let Some(set) = set {
        for c in set {
            // Capabilities unknown to the caps crate (newer than it) are skipped, like runc
            // skips capabilities unknown to the kernel.
            if let Ok(cap) = format!("CAP_{c}").parse::<Cap>() {
                out.insert(cap);
            }
        }
    }
    out
}

/// Drop every capability not in the spec's bounding set from the bounding set.
/// Must run while CAP_SETPCAP is still effective (before the user switch).
pub(crate) fn drop_bounding(process: &Process) -> SetupResult {
    let Some(c) = process.capabilities() else {
        return Ok(());
    };
    let keep = to_caps(c.bounding());
    let have = caps::read(None, CapSet::Bounding)
        .map_err(|e| SetupError::new(format!("read bounding set: {e}"), ErrorKind::Internal))?;
    for cap in have.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| {
            SetupError::new(
                format!("drop {cap} from bounding set: {e}"),
                ErrorKind::PermissionDenied,
            )
        })?;
    }
    Ok(())
}

/// Set keep-caps so that permitted capabilities survive the switch to a non-root uid.
pub(crate) fn set_keep_caps(on: bool) -> SetupResult {
    rustix::thread::set_keep_capabilities(on)
        .map_err(|e| SetupError::io("prctl PR_SET_KEEPCAPS", e))
}

/// Switch to the process user: supplementary groups, gid, uid (in this order).
pub(crate) fn switch_user(process: &Process, setgroups_allowed: bool) -> SetupResult {
    let u = process.user();
    let gid = rustix::process::Gid::from_raw(u.gid());
    let uid = rustix::process::Uid::from_raw(u.uid());
    if setgroups_allowed {
        let groups: Vec<_> = u
            .additional_gids()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        rustix::thread::set_thread_groups(&groups).map_err(|e| SetupError::io("setgroups", e))?;
    }
    rustix::thread::set_thread_res_gid(gid, gid, gid)
        .map_err(|e| SetupError::io(format!("setresgid {}", u.gid()), e))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)
        .map_err(|e| SetupError::io(format!("setresuid {}", u.uid()), e))?;
    Ok(())
}

/// Set the effective, permitted, inheritable and ambient sets from the spec. Capabilities the
/// runtime itself does not hold (e.g. CAP_SYS_RESOURCE inside another container) cannot be
/// granted and are left out, as are those unknown to the kernel.
pub(crate) fn apply_caps(process: &Process) -> SetupResult {
    let Some(c) = process.capabilities() else {
        return Ok(());
    };
    let fail = |what: &str, e: caps::errors::CapsError| {
        SetupError::new(
            format!("set {what} capabilities: {e}"),
            ErrorKind::PermissionDenied,
        )
    };
    let held = caps::read(None, CapSet::Permitted).map_err(|e| fail("read permitted", e))?;
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| fail("read bounding", e))?;
    let perm: CapsHashSet = to_caps(c.permitted())
        .intersection(&held)
        .copied()
        .collect();
    let eff: CapsHashSet = to_caps(c.effective())
        .intersection(&perm)
        .copied()
        .collect();
    let inh: CapsHashSet = to_caps(c.inheritable())
        .into_iter()
        .filter(|x| held.contains(x) || bounding.contains(x))
        .collect();
    caps::set(None, CapSet::Inheritable, &inh).map_err(|e| fail("inheritable", e))?;
    caps::set(None, CapSet::Effective, &eff).map_err(|e| fail("effective", e))?;
    caps::set(None, CapSet::Permitted, &perm).map_err(|e| fail("permitted", e))?;
    let amb = to_caps(c.ambient());
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", e))?;
        for cap in amb {
            if perm.contains(&cap) && inh.contains(&cap) {
                caps::raise(None, CapSet::Ambient, cap).map_err(|e| fail("ambient", e))?;
            }
        }
    }
    Ok(())
}

/// Look `prog` up the way execvp does, in `path` (a PATH value), checking that the result is an
/// executable regular file. Paths are resolved in the caller's root (the container's).
pub(crate) fn lookup(prog: &str, path: &str) -> SetupResult<PathBuf> {
    let check = |p: &Path| -> io::Result<()> {
        let md = std::fs::metadata(p)?;
        if md.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        rustix::fs::access(p, rustix::fs::Access::EXEC_OK)?;
        Ok(())
    };
    if prog.is_empty() {
        return Err(SetupError::new(
            "process.args: must not be empty",
            ErrorKind::InvalidInput,
        ));
    }
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return match check(&p) {
            Ok(()) => Ok(p),
            Err(e) => Err(SetupError::io(format!("exec {prog}"), e)),
        };
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(prog);
        if check(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(SetupError::new(
        format!("exec: \"{prog}\": executable file not found in $PATH"),
        ErrorKind::NotFound,
    ))
}

/// The value of `key` in a `KEY=value` list.
pub(crate) fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// Home directory of `uid` from the container's /etc/passwd, `/` when not found.
pub(crate) fn home_of(uid: u32) -> String {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return "/".into();
    };
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) {
            return f[5].to_string();
        }
    }
    "/".into()
}

/// Replace the calling process with `path`, `args` (args[0] kept verbatim as argv[0]) and
/// exactly `env`. Returns only on failure.
pub(crate) fn exec(path: &Path, args: &[String], env: &[String]) -> SetupError {
    let mut cmd = std::process::Command::new(path);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in env {
        let bytes = kv.clone().into_bytes();
        match kv.find('=') {
            Some(i) => cmd.env(
                OsString::from_vec(bytes[..i].to_vec()),
                OsString::from_vec(bytes[i + 1..].to_vec()),
            ),
            None => cmd.env(kv, ""),
        };
    }
    let e = cmd.exec();
    SetupError::io(format!("exec {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_hard_limit_to_current() {
        assert_eq!(clamp_rlimit(1024, 1024, 20000), (1024, 1024));
        assert_eq!(clamp_rlimit(1 << 20, 1 << 20, 20000), (20000, 20000));
        assert_eq!(clamp_rlimit(100, u64::MAX, 20000), (100, 20000));
    }

    #[test]
    fn env_lookup_takes_last() {
        let env = vec!["PATH=/a".to_string(), "X=1".into(), "PATH=/b".into()];
        assert_eq!(env_get(&env, "PATH"), Some("/b"));
        assert_eq!(env_get(&env, "PAT"), None);
    }

    #[test]
    fn lookup_finds_in_path_and_reports_missing() {
        let p = lookup("sh", "/nonexistent:/bin").unwrap();
        assert_eq!(p, PathBuf::from("/bin/sh"));
        let e = lookup("berthtest-nope", "/bin").unwrap_err();
        assert_eq!(
            e.msg,
            "exec: \"berthtest-nope\": executable file not found in $PATH"
        );
        let e = lookup("/bin/berthtest-nope", "/bin").unwrap_err();
        assert_eq!(e.msg, "exec /bin/berthtest-nope: no such file or directory");
    }
}
