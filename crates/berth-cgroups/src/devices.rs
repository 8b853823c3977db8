//! Device access rules: OCI `linux.resources.devices` -> v1 `devices.allow`/`devices.deny`
//! writes, or a cgroup v2 `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! Semantics (as runc): the list starts from "deny everything"; a rule matching every device
//! (`a *:* rwm`) resets the list and sets the default; later rules override earlier ones.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use berth_sys::bpf::{self, op, reg, Asm, Insn};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, CgroupError};
use crate::manager::write_text;
use crate::Manager;

/// Access bits, as the kernel's `BPF_DEVCG_ACC_*`.
pub const ACC_MKNOD: u8 = 1;
/// Read access.
pub const ACC_READ: u8 = 2;
/// Write access.
pub const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device type of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DevType {
    /// Character and block devices.
    All,
    /// Character devices (`BPF_DEVCG_DEV_CHAR` = 2).
    Char,
    /// Block devices (`BPF_DEVCG_DEV_BLOCK` = 1).
    Block,
}

/// One normalised rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Device type.
    pub typ: DevType,
    /// Major number; `None` = any.
    pub major: Option<u32>,
    /// Minor number; `None` = any.
    pub minor: Option<u32>,
    /// Access bits ([`ACC_READ`] | [`ACC_WRITE`] | [`ACC_MKNOD`]).
    pub access: u8,
}

/// The effective device policy: a default and the exceptions, in order (later wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Whether devices not matched by any rule are allowed.
    pub default_allow: bool,
    /// Exceptions, in order.
    pub rules: Vec<Rule>,
}

fn parse_access(s: &str) -> Result<u8, CgroupError> {
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(invalid(
                    format!("device access {s:?}"),
                    "only r, w and m are allowed",
                ))
            }
        };
    }
    Ok(a)
}

fn num(v: Option<i64>, what: &str) -> Result<Option<u32>, CgroupError> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| invalid(format!("device {what} {n}"), "out of range")),
    }
}

/// Normalise the OCI list into a [`Policy`].
pub fn policy(list: &[LinuxDeviceCgroup]) -> Result<Policy, CgroupError> {
    let mut p = Policy {
        default_allow: false,
        rules: Vec::new(),
    };
    for d in list {
        let typ = match d.typ() {
            None | Some(LinuxDeviceType::A) => DevType::All,
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevType::Char,
            Some(LinuxDeviceType::B) => DevType::Block,
            // FIFOs are not governed by the device cgroup
            Some(LinuxDeviceType::P) => continue,
        };
        let access = match d.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(s) => parse_access(s)?,
        };
        let rule = Rule {
            allow: d.allow(),
            typ,
            major: num(d.major(), "major")?,
            minor: num(d.minor(), "minor")?,
            access,
        };
        if rule.typ == DevType::All
            && rule.major.is_none()
            && rule.minor.is_none()
            && rule.access == ACC_ALL
        {
            p.default_allow = rule.allow;
            p.rules.clear();
        } else {
            p.rules.push(rule);
        }
    }
    Ok(p)
}

fn access_str(a: u8) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

fn opt(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_string(), |n| n.to_string())
}

/// The v1 writes for a policy, as (file, line): first the default (`a` to devices.deny or
/// devices.allow), then each exception. Type `a` exceptions are split into `c` and `b`,
/// because the kernel reads a bare `a` as "everything".
pub fn v1_writes(p: &Policy) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        if p.default_allow {
            "devices.allow"
        } else {
            "devices.deny"
        },
        "a".to_string(),
    )];
    for r in &p.rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let types: &[char] = match r.typ {
            DevType::All => &['c', 'b'],
            DevType::Char => &['c'],
            DevType::Block => &['b'],
        };
        for t in types {
            out.push((
                file,
                format!(
                    "{t} {}:{} {}",
                    opt(r.major),
                    opt(r.minor),
                    access_str(r.access)
                ),
            ));
        }
    }
    out
}

/// Compile a policy into a `BPF_PROG_TYPE_CGROUP_DEVICE` program. The context is
/// `struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }`;
/// the program returns 1 to allow, 0 to deny. Rules are tested from last to first, so the last
/// matching rule decides; an allow rule matches when it grants every requested access bit, a
/// deny rule when it covers any of them.
pub fn bpf_program(p: &Policy) -> Result<Vec<Insn>, CgroupError> {
    let mut a = Asm::new();
    // r2 = type, r3 = access, r4 = major, r5 = minor
    a.push(Insn::ldx_w(reg::R2, reg::R1, 0));
    a.push(Insn::alu32_imm(op::AND, reg::R2, 0xffff));
    a.push(Insn::ldx_w(reg::R3, reg::R1, 0));
    a.push(Insn::alu32_imm(op::RSH, reg::R3, 16));
    a.push(Insn::ldx_w(reg::R4, reg::R1, 4));
    a.push(Insn::ldx_w(reg::R5, reg::R1, 8));
    for r in p.rules.iter().rev() {
        let next = a.label();
        match r.typ {
            DevType::All => {}
            DevType::Char => a.jump(Insn::jmp_imm(op::JNE, reg::R2, 2, 0), next),
            DevType::Block => a.jump(Insn::jmp_imm(op::JNE, reg::R2, 1, 0), next),
        }
        if let Some(m) = r.major {
            a.jump(Insn::jmp_imm(op::JNE, reg::R4, m as i32, 0), next);
        }
        if let Some(m) = r.minor {
            a.jump(Insn::jmp_imm(op::JNE, reg::R5, m as i32, 0), next);
        }
        if r.allow {
            if r.access != ACC_ALL {
                // requested bits outside the rule's -> not this rule
                a.push(Insn::mov32_reg(reg::R1, reg::R3));
                a.push(Insn::alu32_imm(
                    op::AND,
                    reg::R1,
                    i32::from(!r.access & ACC_ALL),
                ));
                a.jump(Insn::jmp_imm(op::JNE, reg::R1, 0, 0), next);
            }
        } else if r.access != ACC_ALL {
            // no requested bit denied by the rule -> not this rule
            a.push(Insn::mov32_reg(reg::R1, reg::R3));
            a.push(Insn::alu32_imm(op::AND, reg::R1, i32::from(r.access)));
            a.jump(Insn::jmp_imm(op::JEQ, reg::R1, 0, 0), next);
        }
        a.push(Insn::mov64_imm(reg::R0, i32::from(r.allow)));
        a.push(Insn::exit());
        a.bind(next);
    }
    a.push(Insn::mov64_imm(reg::R0, i32::from(p.default_allow)));
    a.push(Insn::exit());
    a.finish()
        .map_err(|e| invalid("device rules", e.to_string()))
}

/// Load `p` as a BPF program and attach it to the cgroup v2 directory `dir`, replacing the
/// device programs berth attached there before.
pub fn attach_v2(dir: &Path, p: &Policy) -> Result<(), CgroupError> {
    let prog = bpf_program(p)?;
    let bpf_err = |op, source| CgroupError::Bpf {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let cg = File::open(dir).map_err(|source| CgroupError::Dir {
        op: "open",
        path: dir.to_path_buf(),
        source,
    })?;
    let old = bpf::query_cgroup_device(cg.as_fd()).map_err(|e| bpf_err("query", e))?;
    let fd = bpf::load_cgroup_device_prog(&prog, "Apache-2.0").map_err(|e| bpf_err("load", e))?;
    bpf::attach_cgroup_device(cg.as_fd(), fd.as_fd(), bpf::BPF_F_ALLOW_MULTI)
        .map_err(|e| bpf_err("attach", e))?;
    for id in old {
        let ofd = bpf::prog_fd_by_id(id).map_err(|e| bpf_err("open old", e))?;
        bpf::detach_cgroup_device(cg.as_fd(), ofd.as_fd()).map_err(|e| bpf_err("detach old", e))?;
    }
    Ok(())
}

/// Apply the device list: v1 devices controller when mounted, else a BPF program on v2.
pub(crate) fn apply(m: &Manager, list: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let p = policy(list)?;
    if let Some(d) = m.v1_dir("devices") {
        for (file, line) in v1_writes(&p) {
            write_text(&d.join(file), &line)?;
        }
        return Ok(());
    }
    if let Some(d) = m.v2_dir() {
        return attach_v2(d, &p);
    }
    if list.is_empty() {
        return Ok(());
    }
    Err(CgroupError::Unsupported(
        "device rules: no devices controller and no cgroup2 hierarchy".into(),
    ))
}

/// The device rules runc and Docker add for every container (null, zero, full, tty, random,
/// urandom, console, ptmx, pts, tun, and mknod of any char/block device), to append after a
/// spec's own rules when the caller wants Docker's defaults.
pub fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    let mk = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(t));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    use LinuxDeviceType::{B, C};
    vec![
        mk(C, None, None, "m"),
        mk(B, None, None, "m"),
        mk(C, Some(1), Some(3), "rwm"),
        mk(C, Some(1), Some(5), "rwm"),
        mk(C, Some(1), Some(7), "rwm"),
        mk(C, Some(1), Some(8), "rwm"),
        mk(C, Some(1), Some(9), "rwm"),
        mk(C, Some(5), Some(0), "rwm"),
        mk(C, Some(5), Some(1), "rwm"),
        mk(C, Some(5), Some(2), "rwm"),
        mk(C, Some(136), None, "rwm"),
        mk(C, Some(10), Some(200), "rwm"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions the compiler emits, to check programs by
    /// behaviour rather than by listing.
    fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            pc += 1;
            let d = i.dst as usize;
            match i.code {
                0x61 => {
                    assert_eq!(i.src, 1, "loads only from the context");
                    r[d] = u64::from(ctx[(i.off / 4) as usize]);
                }
                0x54 => r[d] = u64::from((r[d] as u32) & (i.imm as u32)),
                0x74 => r[d] = u64::from((r[d] as u32) >> i.imm),
                0xbc => r[d] = u64::from(r[i.src as usize] as u32),
                0xb7 => r[d] = i.imm as i64 as u64,
                0x55 => {
                    if r[d] != i.imm as i64 as u64 {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x15 => {
                    if r[d] == i.imm as i64 as u64 {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x05 => pc = (pc as i64 + i64::from(i.off)) as usize,
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program does not terminate");
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;
    const R: u32 = ACC_READ as u32;
    const W: u32 = ACC_WRITE as u32;
    const M: u32 = ACC_MKNOD as u32;

    fn rule(
        allow: bool,
        t: Option<LinuxDeviceType>,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(allow);
        d.set_typ(t);
        d.set_major(maj);
        d.set_minor(min);
        d.set_access(Some(acc.to_string()));
        d
    }

    #[test]
    fn docker_like_policy() {
        let mut list = vec![rule(false, None, None, None, "rwm")];
        list.extend(default_allowed());
        let p = policy(&list).unwrap();
        assert!(!p.default_allow);
        let prog = bpf_program(&p).unwrap();
        assert_eq!(run(&prog, CHAR, R | W, 1, 3), 1, "/dev/null rw");
        assert_eq!(run(&prog, CHAR, R, 136, 7), 1, "pts any minor");
        assert_eq!(run(&prog, BLOCK, R, 8, 0), 0, "sda read");
        assert_eq!(run(&prog, BLOCK, M, 8, 0), 1, "mknod of any block device");
        assert_eq!(
            run(&prog, BLOCK, M | R, 8, 0),
            0,
            "mknod+read is more than m"
        );
        assert_eq!(run(&prog, CHAR, R, 10, 229), 0, "fuse");
    }

    #[test]
    fn later_rules_win_and_wildcards_reset() {
        let list = vec![
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            rule(true, None, None, None, "rwm"), // allow all: resets the list
            rule(false, Some(LinuxDeviceType::C), Some(1), None, "w"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(5), "rw"),
        ];
        let p = policy(&list).unwrap();
        assert!(p.default_allow);
        assert_eq!(p.rules.len(), 2);
        let prog = bpf_program(&p).unwrap();
        assert_eq!(
            run(&prog, CHAR, R, 1, 3),
            1,
            "read 1:3 not denied (only w is)"
        );
        assert_eq!(run(&prog, CHAR, R | W, 1, 3), 0, "rw 1:3 hits the w deny");
        assert_eq!(run(&prog, CHAR, R | W, 1, 5), 1, "later allow 1:5 wins");
        assert_eq!(
            run(&prog, CHAR, M, 1, 5),
            1,
            "m on 1:5: allow rw does not match, deny w does not cover m"
        );
        assert_eq!(run(&prog, BLOCK, W, 1, 3), 1, "block 1:3 unaffected");
        assert_eq!(run(&prog, BLOCK, W, 8, 1), 1, "default allow");
    }

    #[test]
    fn empty_list_denies_everything() {
        let p = policy(&[]).unwrap();
        let prog = bpf_program(&p).unwrap();
        assert_eq!(run(&prog, CHAR, R, 1, 3), 0);
        assert_eq!(prog.len(), 8);
    }

    #[test]
    fn type_a_with_numbers_matches_both_types() {
        let list = vec![rule(true, Some(LinuxDeviceType::A), Some(7), None, "r")];
        let p = policy(&list).unwrap();
        let prog = bpf_program(&p).unwrap();
        assert_eq!(run(&prog, CHAR, R, 7, 1), 1);
        assert_eq!(run(&prog, BLOCK, R, 7, 99), 1);
        assert_eq!(run(&prog, BLOCK, W, 7, 99), 0);
        assert_eq!(
            v1_writes(&p),
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 7:* r".to_string()),
                ("devices.allow", "b 7:* r".to_string()),
            ]
        );
    }

    #[test]
    fn v1_lines() {
        let mut list = vec![rule(false, None, None, None, "rwm")];
        list.extend(default_allowed());
        list.push(rule(
            false,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            "mw",
        ));
        let p = policy(&list).unwrap();
        let w = v1_writes(&p);
        assert_eq!(w[0], ("devices.deny", "a".into()));
        assert_eq!(w[1], ("devices.allow", "c *:* m".into()));
        assert_eq!(w[3], ("devices.allow", "c 1:3 rwm".into()));
        assert_eq!(w.last().unwrap(), &("devices.deny", "c 1:3 wm".into()));
    }

    #[test]
    fn bad_rules_are_errors() {
        assert!(policy(&[rule(true, None, None, None, "rwx")]).is_err());
        assert!(policy(&[rule(true, None, Some(-5), None, "r")]).is_err());
        assert!(policy(&[rule(true, None, Some(1 << 40), None, "r")]).is_err());
        // fifo rules are ignored
        assert!(
            policy(&[rule(true, Some(LinuxDeviceType::P), None, None, "r")])
                .unwrap()
                .rules
                .is_empty()
        );
    }
}
