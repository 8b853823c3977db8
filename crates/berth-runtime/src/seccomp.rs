//! seccomp: the OCI `linux.seccomp` object compiled to BPF with libseccomp, loaded with one syscall.
//!
//! Split in two so that nothing heavy happens after fork:
//! - [`build_filter`] (in the parent, before fork) validates the whole object, resolves syscall
//!   names, and compiles a BPF program ([`CompiledFilter`]).
//! - [`CompiledFilter::load`] (in the container's init, right before `execve`) installs the
//!   program with `seccomp(SECCOMP_SET_MODE_FILTER)`; it allocates nothing.
//!
//! The init must hold `CAP_SYS_ADMIN` at load time or have set `no_new_privs` first, as the kernel
//! requires (runc loads before dropping capabilities when `noNewPrivileges` is false).
//!
//! `SCMP_ACT_NOTIFY`: the init calls [`CompiledFilter::load_notify`], passes the returned fd to
//! the parent (SCM_RIGHTS over its sync socket), and the parent calls [`send_notify_fd`], which
//! connects to `listenerPath` and sends the OCI `containerProcessState` with the fd.
//!
//! [`docker_default_profile`] builds Docker's default profile for given capabilities, and
//! [`parse_seccomp`] turns JSON into the spec type with errors that name the offending field.

mod docker;

use std::io::{IoSlice, Read, Seek};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

use berth_core::ErrorKind;
use berth_sys::seccomp as sys;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

pub use docker::docker_default_profile;

/// JSON path prefix used in error messages.
const FIELD: &str = "linux.seccomp";

/// Errors building or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of the seccomp object is invalid; `field` is its JSON path.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// JSON path of the offending field, e.g. `linux.seccomp.syscalls[2].args[0].index`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host or this implementation cannot do what the object asks.
    #[error("seccomp: {0}")]
    Unsupported(String),
    /// libseccomp failed while compiling the filter.
    #[error("seccomp: compile filter: {0}")]
    Compile(String),
    /// The kernel refused the filter.
    #[error("seccomp: load filter: {0}")]
    Load(#[source] std::io::Error),
    /// Sending the notify fd to the listener failed.
    #[error("seccomp: send notify fd to listener {path}: {source}")]
    Listener {
        /// The listener socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SeccompError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SeccompError::Invalid { .. } => ErrorKind::InvalidInput,
            SeccompError::Unsupported(_) => ErrorKind::Unsupported,
            SeccompError::Compile(_) => ErrorKind::Internal,
            SeccompError::Load(e) | SeccompError::Listener { source: e, .. } => {
                ErrorKind::from_io(e)
            }
        }
    }

    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SeccompError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Where to send the user-notification fd when the filter uses `SCMP_ACT_NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyListener {
    /// `listenerPath`: the agent's unix socket.
    pub path: PathBuf,
    /// `listenerMetadata`: opaque data passed to the agent.
    pub metadata: String,
}

/// A validated, compiled filter, ready to be loaded after fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    program: Vec<sys::SockFilter>,
    flags: u32,
    listener: Option<NotifyListener>,
}

impl CompiledFilter {
    /// Install the filter on the calling thread (all threads with `SECCOMP_FILTER_FLAG_TSYNC`).
    ///
    /// For a filter using `SCMP_ACT_NOTIFY` use [`CompiledFilter::load_notify`] instead: this
    /// returns an `Unsupported` error for it, since the notify fd must reach the agent.
    pub fn load(&self) -> Result<(), SeccompError> {
        if self.listener.is_some() {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY is not supported here: the notify fd must reach listenerPath \
                 (CompiledFilter::load_notify, then send_notify_fd)"
                    .into(),
            ));
        }
        sys::set_mode_filter(&self.program, self.flags)
            .map(|_| ())
            .map_err(SeccompError::Load)
    }

    /// Install the filter; when it uses `SCMP_ACT_NOTIFY`, return the notify fd, which the caller
    /// passes to [`send_notify_fd`] (from the parent: the listener path lives on the host).
    pub fn load_notify(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let mut flags = self.flags;
        if self.listener.is_some() {
            flags |= sys::FLAG_NEW_LISTENER;
            if flags & sys::FLAG_TSYNC != 0 {
                // The kernel rejects TSYNC with NEW_LISTENER unless TSYNC_ESRCH is set.
                flags |= sys::FLAG_TSYNC_ESRCH;
            }
        }
        sys::set_mode_filter(&self.program, flags).map_err(SeccompError::Load)
    }

    /// The listener to send the notify fd to, if the filter uses `SCMP_ACT_NOTIFY`.
    pub fn listener(&self) -> Option<&NotifyListener> {
        self.listener.as_ref()
    }

    /// The `seccomp(2)` flags the filter is loaded with (`SECCOMP_FILTER_FLAG_*`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never true for a built filter).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

/// Parse a `linux.seccomp` JSON object, naming the offending field on error
/// (`linux.seccomp.syscalls[3].action: unknown value "SCMP_ACT_FOO"`), which serde's own
/// message does not.
pub fn parse_seccomp(v: &serde_json::Value) -> Result<LinuxSeccomp, SeccompError> {
    fn check<T: serde::de::DeserializeOwned>(
        v: Option<&serde_json::Value>,
        field: &str,
    ) -> Result<(), SeccompError> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(()),
            Some(v) => serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|_| SeccompError::invalid(field, format!("unknown or invalid value {v}"))),
        }
    }
    let obj = v
        .as_object()
        .ok_or_else(|| SeccompError::invalid(FIELD, "not a JSON object"))?;
    if obj.get("defaultAction").is_none() {
        return Err(SeccompError::invalid(
            format!("{FIELD}.defaultAction"),
            "missing",
        ));
    }
    check::<LinuxSeccompAction>(obj.get("defaultAction"), &format!("{FIELD}.defaultAction"))?;
    check::<u32>(
        obj.get("defaultErrnoRet"),
        &format!("{FIELD}.defaultErrnoRet"),
    )?;
    if let Some(arches) = obj.get("architectures").and_then(|a| a.as_array()) {
        for (i, a) in arches.iter().enumerate() {
            check::<Arch>(Some(a), &format!("{FIELD}.architectures[{i}]"))?;
        }
    }
    if let Some(flags) = obj.get("flags").and_then(|a| a.as_array()) {
        for (i, f) in flags.iter().enumerate() {
            check::<LinuxSeccompFilterFlag>(Some(f), &format!("{FIELD}.flags[{i}]"))?;
        }
    }
    if let Some(calls) = obj.get("syscalls").and_then(|a| a.as_array()) {
        for (i, c) in calls.iter().enumerate() {
            let f = format!("{FIELD}.syscalls[{i}]");
            let c = c
                .as_object()
                .ok_or_else(|| SeccompError::invalid(&f, "not a JSON object"))?;
            if c.get("action").is_none() {
                return Err(SeccompError::invalid(format!("{f}.action"), "missing"));
            }
            check::<LinuxSeccompAction>(c.get("action"), &format!("{f}.action"))?;
            check::<Vec<String>>(c.get("names"), &format!("{f}.names"))?;
            check::<u32>(c.get("errnoRet"), &format!("{f}.errnoRet"))?;
            if let Some(args) = c.get("args").and_then(|a| a.as_array()) {
                for (j, a) in args.iter().enumerate() {
                    let af = format!("{f}.args[{j}]");
                    check::<LinuxSeccompOperator>(a.get("op"), &format!("{af}.op"))?;
                    check::<usize>(a.get("index"), &format!("{af}.index"))?;
                    check::<u64>(a.get("value"), &format!("{af}.value"))?;
                    check::<u64>(a.get("valueTwo"), &format!("{af}.valueTwo"))?;
                }
            }
        }
    }
    serde_json::from_value(v.clone()).map_err(|e| SeccompError::invalid(FIELD, e.to_string()))
}

/// A validated rule, the data form of what goes into libseccomp (unit-testable without root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    action: ScmpAction,
    /// Conditions ANDed together in one libseccomp rule.
    conditions: Vec<ScmpArgCompare>,
}

/// Translate an OCI action (+ errnoRet) into libseccomp's, validating errnoRet.
fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    field: &str,
) -> Result<ScmpAction, SeccompError> {
    let errno16 = |default: u16| -> Result<u16, SeccompError> {
        match errno {
            None => Ok(default),
            Some(e) => u16::try_from(e).map_err(|_| {
                SeccompError::invalid(field, format!("errno {e} does not fit 16 bits"))
            }),
        }
    };
    let only_errno_trace = || -> Result<(), SeccompError> {
        match errno {
            Some(_) => Err(SeccompError::invalid(
                field,
                format!("errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {a}"),
            )),
            None => Ok(()),
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(i32::from(errno16(libc::EPERM as u16)?))
        }
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno16(libc::EPERM as u16)?),
        other => {
            only_errno_trace()?;
            match other {
                LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                    ScmpAction::KillThread
                }
                LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
                LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
                LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
                LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
                _ => ScmpAction::Allow,
            }
        }
    })
}

fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    })
}

fn condition(a: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare, SeccompError> {
    let index = u32::try_from(a.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            SeccompError::invalid(
                format!("{field}.index"),
                format!("{} is not in 0..=5", a.index()),
            )
        })?;
    let (op, datum) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        // MASKED_EQ: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// Validate the syscalls and produce rules. Rules whose action equals the default are dropped;
/// several conditions on the same argument index become one rule each (libseccomp cannot AND
/// two comparisons of the same argument, so they are ORed, as runc does).
fn rules(s: &LinuxSeccomp, default: ScmpAction) -> Result<Vec<Rule>, SeccompError> {
    let mut out = Vec::new();
    for (i, call) in s
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let f = format!("{FIELD}.syscalls[{i}]");
        let act = action(call.action(), call.errno_ret(), &format!("{f}.errnoRet"))?;
        if call.names().is_empty() {
            return Err(SeccompError::invalid(format!("{f}.names"), "empty"));
        }
        if let Some(j) = call.names().iter().position(|n| n.is_empty()) {
            return Err(SeccompError::invalid(
                format!("{f}.names[{j}]"),
                "empty syscall name",
            ));
        }
        let args = call.args().as_deref().unwrap_or_default();
        let conds = args
            .iter()
            .enumerate()
            .map(|(j, a)| condition(a, &format!("{f}.args[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if act == default {
            continue;
        }
        let mut seen = [0u8; 6];
        for a in args {
            seen[a.index()] = seen[a.index()].saturating_add(1);
        }
        let groups: Vec<Vec<ScmpArgCompare>> = if seen.iter().any(|n| *n > 1) {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };
        for name in call.names() {
            for g in &groups {
                out.push(Rule {
                    name: name.clone(),
                    action: act,
                    conditions: g.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn flags(s: &LinuxSeccomp) -> u32 {
    s.flags()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .fold(0, |acc, f| {
            acc | match f {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sys::FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sys::FLAG_SPEC_ALLOW,
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    sys::FLAG_WAIT_KILLABLE_RECV
                }
            }
        })
}

/// Everything [`build_filter`] validated, before libseccomp compiles it.
struct Plan {
    default: ScmpAction,
    arches: Vec<ScmpArch>,
    rules: Vec<Rule>,
    listener: Option<NotifyListener>,
    flags: u32,
}

fn plan(s: &LinuxSeccomp) -> Result<Plan, SeccompError> {
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        &format!("{FIELD}.defaultErrnoRet"),
    )?;
    if default == ScmpAction::Notify {
        return Err(SeccompError::invalid(
            format!("{FIELD}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let rules = rules(s, default)?;
    let listener = if rules.iter().any(|r| r.action == ScmpAction::Notify) {
        let path = s.listener_path().clone().ok_or_else(|| {
            SeccompError::invalid(
                format!("{FIELD}.listenerPath"),
                "required when a rule uses SCMP_ACT_NOTIFY",
            )
        })?;
        Some(NotifyListener {
            path,
            metadata: s.listener_metadata().clone().unwrap_or_default(),
        })
    } else {
        None
    };
    let mut arches = Vec::new();
    for (i, a) in s
        .architectures()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let a = arch(*a).ok_or_else(|| {
            SeccompError::invalid(
                format!("{FIELD}.architectures[{i}]"),
                format!("unsupported {a}"),
            )
        })?;
        if a != ScmpArch::Native && !arches.contains(&a) {
            arches.push(a);
        }
    }
    Ok(Plan {
        default,
        arches,
        rules,
        listener,
        flags: flags(s),
    })
}

fn compile(plan: &Plan) -> Result<Vec<sys::SockFilter>, SeccompError> {
    let compile = |what: &str, e: libseccomp::error::SeccompError| {
        SeccompError::Compile(format!("{what}: {e}"))
    };
    let mut ctx = ScmpFilterContext::new(plan.default).map_err(|e| compile("new filter", e))?;
    for &a in &plan.arches {
        // The native arch is always present; adding it again is an error in libseccomp.
        if !ctx.is_arch_present(a).unwrap_or(false) {
            ctx.add_arch(a)
                .map_err(|e| compile(&format!("add arch {a:?}"), e))?;
        }
    }
    for r in &plan.rules {
        let Ok(nr) = ScmpSyscall::from_name(&r.name) else {
            continue; // unknown to libseccomp on this host: skipped, like runc.
        };
        ctx.add_rule_conditional(r.action, nr, &r.conditions)
            .map_err(|e| compile(&format!("add rule for {}", r.name), e))?;
    }
    let main = export(&ctx)?;
    let mut program = enosys_stub(plan, &main);
    program.extend_from_slice(&main);
    Ok(program)
}

/// Kernel `AUDIT_ARCH_*` value of an arch (x32 shares x86_64's, with bit 30 set in the number).
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X8664 | ScmpArch::X32 => 0xc000_003e,
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::Ppc64Le => 0xc000_0015,
        ScmpArch::Riscv64 => 0xc000_00f3,
        _ => return None,
    })
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A prefix answering ENOSYS for syscalls newer than any the profile names (per arch), so that
/// programs fall back from syscalls the profile's authors did not know (as runc does) instead of
/// getting the default EPERM. Only when the default action refuses (errno, kill, trap).
fn enosys_stub(plan: &Plan, main: &[sys::SockFilter]) -> Vec<sys::SockFilter> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGT: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    let refuses = match plan.default {
        ScmpAction::Errno(e) => e != libc::ENOSYS,
        ScmpAction::KillThread | ScmpAction::KillProcess | ScmpAction::Trap => true,
        _ => false,
    };
    // libseccomp's program starts by loading the arch; we rely on nothing else.
    let starts_with_arch_load = main.first().is_some_and(|i| i.code == LD_ABS && i.k == 4);
    if !refuses || !starts_with_arch_load {
        return Vec::new();
    }
    let mut arches = vec![ScmpArch::native()];
    arches.extend(
        plan.arches
            .iter()
            .copied()
            .filter(|a| *a != ScmpArch::native()),
    );
    let max_nr = |a: ScmpArch| -> Option<u32> {
        plan.rules
            .iter()
            .filter_map(|r| ScmpSyscall::from_name_by_arch(&r.name, a).ok())
            .filter_map(|nr| u32::try_from(i32::from(nr)).ok())
            .max()
    };
    // (audit arch, max for the main ABI, max for x32 when it shares the audit arch)
    let mut checks: Vec<(u32, u32, Option<Option<u32>>)> = Vec::new();
    for &a in &arches {
        let (Some(audit), Some(max)) = (audit_arch(a), max_nr(a)) else {
            continue;
        };
        if a == ScmpArch::X32 {
            continue; // handled together with x86_64 below
        }
        let x32 = (a == ScmpArch::X8664).then(|| {
            arches
                .contains(&ScmpArch::X32)
                .then(|| max_nr(ScmpArch::X32))
                .flatten()
        });
        checks.push((audit, max, x32));
    }
    if checks.is_empty() {
        return Vec::new();
    }
    #[derive(Clone, Copy)]
    enum To {
        Next,
        Enosys,
        Main,
        Skip(usize),
    }
    let ins = |code, k| sys::SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // (instruction, jt target, jf target); targets resolved once the layout is known.
    let mut code: Vec<(sys::SockFilter, To, To)> = vec![(ins(LD_ABS, 4), To::Next, To::Next)];
    for (audit, max, x32) in checks {
        let start = code.len();
        code.push((ins(JEQ, audit), To::Next, To::Skip(0)));
        code.push((ins(LD_ABS, 0), To::Next, To::Next));
        match x32 {
            None => code.push((ins(JGT, max), To::Enosys, To::Main)),
            Some(x32max) => {
                code.push((ins(JGE, X32_SYSCALL_BIT), To::Skip(1), To::Next));
                code.push((ins(JGT, max), To::Enosys, To::Main));
                match x32max {
                    Some(m) => code.push((ins(JGT, m), To::Enosys, To::Main)),
                    None => code.push((ins(JA, 0), To::Main, To::Main)),
                }
            }
        }
        // The arch mismatch jumps past this block.
        let end = code.len();
        code[start].2 = To::Skip(end - start - 1);
    }
    let enosys_at = code.len() + 1;
    let main_at = code.len() + 2;
    code.push((ins(JA, 0), To::Main, To::Main));
    code.push((
        ins(RET, 0x0005_0000 | libc::ENOSYS as u32),
        To::Next,
        To::Next,
    ));
    let mut out = Vec::with_capacity(code.len());
    for (i, (mut insn, jt, jf)) in code.into_iter().enumerate() {
        let off = |t: To| -> usize {
            match t {
                To::Next => 0,
                To::Enosys => enosys_at - i - 1,
                To::Main => main_at - i - 1,
                To::Skip(n) => n,
            }
        };
        if insn.code == JA {
            insn.k = off(jt) as u32;
        } else if insn.code & 0x07 == 0x05 {
            // Conditional jumps: 8-bit offsets; the stub is far smaller than 255 instructions.
            insn.jt = off(jt) as u8;
            insn.jf = off(jf) as u8;
        }
        out.push(insn);
    }
    out
}

/// Validate `s` and compile it to BPF.
///
/// Unknown syscall names are skipped (as runc does); invalid errnoRet values, argument indices,
/// a NOTIFY default action or NOTIFY without `listenerPath` are errors naming the field.
/// Unknown action, operator, arch and flag names are rejected when the JSON is parsed (see
/// [`parse_seccomp`]).
///
/// Cost: libseccomp takes about 1 ms for Docker's profile on one arch and about 10 ms on the
/// three x86 arches; [`build_filter_cached`] avoids paying it for every container.
pub fn build_filter(s: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let plan = plan(s)?;
    let program = compile(&plan)?;
    Ok(CompiledFilter {
        program,
        flags: plan.flags,
        listener: plan.listener,
    })
}

/// [`build_filter`] with an on-disk cache of compiled programs in `cache_dir` (created if
/// missing; use a root-only directory such as one under the runtime's `--root`).
///
/// The object is always validated; only the libseccomp compilation is reused. The key is the
/// SHA-256 of the object's JSON, the libseccomp version and the host arch. Failing to read or
/// write the cache only costs a compilation.
pub fn build_filter_cached(
    s: &LinuxSeccomp,
    cache_dir: &std::path::Path,
) -> Result<CompiledFilter, SeccompError> {
    let plan = plan(s)?;
    let key = cache_key(s);
    let file = cache_dir.join(format!("{key}.bpf"));
    let cached = std::fs::read(&file)
        .ok()
        .and_then(|b| sys::SockFilter::decode(&b))
        .filter(|p| !p.is_empty());
    let program = match cached {
        Some(p) => p,
        None => {
            let p = compile(&plan)?;
            let _ = store(cache_dir, &file, &p);
            p
        }
    };
    Ok(CompiledFilter {
        program,
        flags: plan.flags,
        listener: plan.listener,
    })
}

fn cache_key(s: &LinuxSeccomp) -> String {
    let mut d = berth_core::Digester::new(berth_core::Algorithm::Sha256);
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    d.update(format!("berth-seccomp-v1\0{v}\0{}\0", std::env::consts::ARCH).as_bytes());
    d.update(&serde_json::to_vec(s).unwrap_or_default());
    d.finish().encoded().to_string()
}

fn store(
    dir: &std::path::Path,
    file: &std::path::Path,
    p: &[sys::SockFilter],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&sys::SockFilter::encode(p)))
        .and_then(|()| std::fs::rename(&tmp, file));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn export(ctx: &ScmpFilterContext) -> Result<Vec<sys::SockFilter>, SeccompError> {
    let io = |e: std::io::Error| SeccompError::Compile(format!("export bpf: {e}"));
    let fd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| io(e.into()))?;
    ctx.export_bpf(&fd)
        .map_err(|e| SeccompError::Compile(format!("export bpf: {e}")))?;
    let mut f = std::fs::File::from(fd);
    f.rewind().map_err(io)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io)?;
    sys::SockFilter::decode(&bytes)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| SeccompError::Compile(format!("export bpf: bad length {}", bytes.len())))
}

/// What `berth runtime features` reports under `linux.seccomp`: the actions, operators,
/// architectures and flags this implementation knows, and the flags the running kernel accepts.
pub fn features() -> oci_spec::runtime::Seccomp {
    use LinuxSeccompAction as A;
    let actions = vec![
        A::ScmpActAllow,
        A::ScmpActErrno,
        A::ScmpActKill,
        A::ScmpActKillProcess,
        A::ScmpActKillThread,
        A::ScmpActLog,
        A::ScmpActNotify,
        A::ScmpActTrace,
        A::ScmpActTrap,
    ];
    let operators = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ];
    let archs = vec![
        Arch::ScmpArchAarch64,
        Arch::ScmpArchArm,
        Arch::ScmpArchLoongarch64,
        Arch::ScmpArchM68k,
        Arch::ScmpArchMips,
        Arch::ScmpArchMips64,
        Arch::ScmpArchMips64n32,
        Arch::ScmpArchMipsel,
        Arch::ScmpArchMipsel64,
        Arch::ScmpArchMipsel64n32,
        Arch::ScmpArchParisc,
        Arch::ScmpArchParisc64,
        Arch::ScmpArchPpc,
        Arch::ScmpArchPpc64,
        Arch::ScmpArchPpc64le,
        Arch::ScmpArchRiscv64,
        Arch::ScmpArchS390,
        Arch::ScmpArchS390x,
        Arch::ScmpArchSh,
        Arch::ScmpArchSheb,
        Arch::ScmpArchX32,
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
    ];
    let flags = [
        ("SECCOMP_FILTER_FLAG_TSYNC", sys::FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", sys::FLAG_LOG),
        ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", sys::FLAG_SPEC_ALLOW),
        (
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            sys::FLAG_WAIT_KILLABLE_RECV,
        ),
    ];
    let mut f = oci_spec::runtime::Seccomp::default();
    f.set_enabled(Some(true));
    f.set_actions(Some(actions));
    f.set_operators(Some(operators.iter().map(|s| s.to_string()).collect()));
    f.set_archs(Some(archs));
    f.set_known_flags(Some(flags.iter().map(|(n, _)| n.to_string()).collect()));
    f.set_supported_flags(Some(
        flags
            .iter()
            .filter(|(_, bit)| sys::flag_supported(*bit))
            .map(|(n, _)| n.to_string())
            .collect(),
    ));
    f
}

/// The OCI `containerProcessState` sent to a seccomp agent.
pub fn container_process_state(
    listener: &NotifyListener,
    pid: i32,
    state_json: &[u8],
) -> Result<Vec<u8>, SeccompError> {
    let state: serde_json::Value = serde_json::from_slice(state_json)
        .map_err(|e| SeccompError::invalid("state", format!("not JSON: {e}")))?;
    let v = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": listener.metadata,
        "state": state,
    });
    serde_json::to_vec(&v).map_err(|e| SeccompError::Compile(e.to_string()))
}

/// Send the notify fd to the agent listening on `listener.path`, with the OCI
/// `containerProcessState` JSON (`state_json` is the container's state, `pid` the init's pid).
pub fn send_notify_fd(
    listener: &NotifyListener,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    use rustix::net::{
        connect, sendmsg, socket_with, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage,
        SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    };
    let msg = container_process_state(listener, pid, state_json)?;
    let err = |e: rustix::io::Errno| SeccompError::Listener {
        path: listener.path.clone(),
        source: e.into(),
    };
    let sock = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(err)?;
    let addr = SocketAddrUnix::new(&listener.path).map_err(err)?;
    connect(&sock, &addr).map_err(err)?;
    let fds = [notify_fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(err(rustix::io::Errno::NOBUFS));
    }
    let mut sent =
        sendmsg(&sock, &[IoSlice::new(&msg)], &mut cmsg, SendFlags::NOSIGNAL).map_err(err)?;
    while sent < msg.len() {
        sent += rustix::net::send(&sock, &msg[sent..], SendFlags::NOSIGNAL).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .unwrap()
    }

    /// Run the ENOSYS stub on (arch, nr): Some(ret) if it returned, None if it reached `main`.
    fn run_stub(stub: &[sys::SockFilter], arch: u32, nr: u32) -> Option<u32> {
        let (mut pc, mut acc) = (0usize, 0u32);
        while pc < stub.len() {
            let i = stub[pc];
            pc += 1;
            match i.code {
                0x20 => acc = if i.k == 4 { arch } else { nr },
                0x05 => pc += i.k as usize,
                0x06 => return Some(i.k),
                op => {
                    let hit = match op {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        0x35 => acc >= i.k,
                        _ => panic!("unexpected opcode {op:#x}"),
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
            }
        }
        None
    }

    #[test]
    fn enosys_stub_per_arch_including_x32_and_i386() {
        let rule = |name: &str| Rule {
            name: name.to_string(),
            action: ScmpAction::Allow,
            conditions: vec![],
        };
        let plan = Plan {
            default: ScmpAction::Errno(1),
            arches: vec![ScmpArch::X86, ScmpArch::X32],
            rules: vec![rule("read"), rule("write"), rule("getpid")],
            listener: None,
            flags: 0,
        };
        if ScmpArch::native() != ScmpArch::X8664 {
            return; // the numbers below are x86's
        }
        let main = [sys::SockFilter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 4,
        }];
        let stub = enosys_stub(&plan, &main);
        let enosys = Some(0x0005_0000 | libc::ENOSYS as u32);
        let (x86_64, i386) = (0xc000_003e, 0x4000_0003);
        // x86_64: getpid is 39, the newest named.
        assert_eq!(run_stub(&stub, x86_64, 39), None);
        assert_eq!(run_stub(&stub, x86_64, 40), enosys);
        assert_eq!(run_stub(&stub, x86_64, 0), None);
        // x32: same audit arch, bit 30 set; getpid is 0x40000000 + 39.
        assert_eq!(run_stub(&stub, x86_64, X32_SYSCALL_BIT + 39), None);
        assert_eq!(run_stub(&stub, x86_64, X32_SYSCALL_BIT + 300), enosys);
        // i386: getpid is 20, read 3, write 4.
        assert_eq!(run_stub(&stub, i386, 20), None);
        assert_eq!(run_stub(&stub, i386, 21), enosys);
        // Other arches fall through to libseccomp's program (which kills them).
        assert_eq!(run_stub(&stub, 0xc000_00b7, 1000), None);

        let allow_default = Plan {
            default: ScmpAction::Allow,
            ..plan
        };
        assert!(enosys_stub(&allow_default, &main).is_empty());
    }

    #[test]
    fn same_index_conditions_become_separate_rules() {
        let call = LinuxSyscallBuilder::default()
            .names(vec!["personality".to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![
                arg(0, 8, LinuxSeccompOperator::ScmpCmpEq),
                arg(0, 0, LinuxSeccompOperator::ScmpCmpEq),
            ])
            .build()
            .unwrap();
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![call])
            .build()
            .unwrap();
        let r = rules(&s, ScmpAction::Errno(1)).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.conditions.len() == 1));
    }

    #[test]
    fn different_index_conditions_stay_together_and_default_action_is_skipped() {
        let calls = vec![
            LinuxSyscallBuilder::default()
                .names(vec!["read".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .build()
                .unwrap(),
            LinuxSyscallBuilder::default()
                .names(vec!["write".to_string(), "openat".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![
                    arg(0, 1, LinuxSeccompOperator::ScmpCmpEq),
                    arg(2, 3, LinuxSeccompOperator::ScmpCmpGe),
                ])
                .build()
                .unwrap(),
        ];
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(calls)
            .build()
            .unwrap();
        let r = rules(&s, ScmpAction::Errno(1)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "write");
        assert_eq!(r[1].name, "openat");
        assert_eq!(r[0].conditions.len(), 2);
    }

    #[test]
    fn errno_ret_on_allow_is_rejected_with_field() {
        let call = LinuxSyscallBuilder::default()
            .names(vec!["read".to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .errno_ret(5u32)
            .build()
            .unwrap();
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![call])
            .build()
            .unwrap();
        let e = rules(&s, ScmpAction::Errno(1)).unwrap_err();
        assert!(
            e.to_string().contains("linux.seccomp.syscalls[0].errnoRet"),
            "{e}"
        );
    }
}
