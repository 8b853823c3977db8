//! eBPF: a small instruction assembler and the `bpf(2)` calls that load a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program and attach it to a cgroup v2 directory.
//!
//! The assembler ([`Asm`]) knows the handful of instructions a device filter needs (32-bit
//! loads from the context, 32-bit ALU with immediates, conditional jumps to labels, `exit`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Registers r0..r10.
pub mod reg {
    /// Return value.
    pub const R0: u8 = 0;
    /// First argument (the context pointer on entry).
    pub const R1: u8 = 1;
    /// Scratch register.
    pub const R2: u8 = 2;
    /// Scratch register.
    pub const R3: u8 = 3;
    /// Scratch register.
    pub const R4: u8 = 4;
    /// Scratch register.
    pub const R5: u8 = 5;
}

/// Opcode parts (from linux/bpf_common.h and linux/bpf.h).
pub mod op {
    /// Load from memory into a register (class).
    pub const LDX: u8 = 0x01;
    /// 32-bit ALU (class).
    pub const ALU: u8 = 0x04;
    /// 64-bit jumps (class).
    pub const JMP: u8 = 0x05;
    /// 64-bit ALU (class).
    pub const ALU64: u8 = 0x07;
    /// Word (32-bit) size.
    pub const W: u8 = 0x00;
    /// Memory mode.
    pub const MEM: u8 = 0x60;
    /// Immediate source.
    pub const K: u8 = 0x00;
    /// Register source.
    pub const X: u8 = 0x08;
    /// ALU: and.
    pub const AND: u8 = 0x50;
    /// ALU: right shift.
    pub const RSH: u8 = 0x70;
    /// ALU: move.
    pub const MOV: u8 = 0xb0;
    /// Jump always.
    pub const JA: u8 = 0x00;
    /// Jump if equal.
    pub const JEQ: u8 = 0x10;
    /// Jump if not equal.
    pub const JNE: u8 = 0x50;
    /// Return.
    pub const EXIT: u8 = 0x90;
}

/// One eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Offset (memory offset, or jump distance in instructions).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// `dst = *(u32 *)(src + off)`.
    pub fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Insn {
            code: op::LDX | op::MEM | op::W,
            dst,
            src,
            off,
            imm: 0,
        }
    }
    /// 32-bit `dst = dst <alu_op> imm` (AND, RSH, MOV...).
    pub fn alu32_imm(alu_op: u8, dst: u8, imm: i32) -> Self {
        Insn {
            code: op::ALU | alu_op | op::K,
            dst,
            src: 0,
            off: 0,
            imm,
        }
    }
    /// 32-bit `dst = src`.
    pub fn mov32_reg(dst: u8, src: u8) -> Self {
        Insn {
            code: op::ALU | op::MOV | op::X,
            dst,
            src,
            off: 0,
            imm: 0,
        }
    }
    /// 64-bit `dst = imm`.
    pub fn mov64_imm(dst: u8, imm: i32) -> Self {
        Insn {
            code: op::ALU64 | op::MOV | op::K,
            dst,
            src: 0,
            off: 0,
            imm,
        }
    }
    /// `if dst <jmp_op> imm goto pc + 1 + off`.
    pub fn jmp_imm(jmp_op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Insn {
            code: op::JMP | jmp_op | op::K,
            dst,
            src: 0,
            off,
            imm,
        }
    }
    /// `goto pc + 1 + off`.
    pub fn ja(off: i16) -> Self {
        Insn {
            code: op::JMP | op::JA,
            dst: 0,
            src: 0,
            off,
            imm: 0,
        }
    }
    /// `return r0`.
    pub fn exit() -> Self {
        Insn {
            code: op::JMP | op::EXIT,
            dst: 0,
            src: 0,
            off: 0,
            imm: 0,
        }
    }
    /// The kernel's 8-byte little-endian encoding (`struct bpf_insn`).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | ((self.src & 0x0f) << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A forward or backward jump target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Builds a program, resolving jumps to labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }
    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    /// Bind `l` to the next instruction emitted.
    pub fn bind(&mut self, l: Label) {
        let here = self.insns.len();
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(here);
        }
    }
    /// Append an instruction.
    pub fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }
    /// Append a jump instruction whose offset is resolved to `l` by [`Asm::finish`].
    pub fn jump(&mut self, i: Insn, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(i);
    }
    /// The number of instructions so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }
    /// Whether no instruction was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }
    /// Resolve labels. Fails on an unbound label or a jump beyond i16 range.
    pub fn finish(mut self) -> io::Result<Vec<Insn>> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels.get(l.0).copied().flatten().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "bpf: jump to an unbound label")
            })?;
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "bpf: jump out of range")
            })?;
        }
        Ok(self.insns)
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type.
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to the cgroup and its descendants; all must allow.
pub const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, size_of::<T>())`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, exclusively borrowed `#[repr(C)]` prefix of `union bpf_attr`
    // for `cmd`, fully initialised (padding fields included), and its exact size is passed, so
    // the kernel reads and writes only within it. Pointers inside it (instructions, license,
    // log, id arrays) are set by the callers to buffers that outlive this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(r).map_err(|_| io::Error::other("bpf: bad fd"))?;
    // SAFETY: the kernel just returned `fd` as a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On a verifier rejection the error message
/// carries the verifier log.
pub fn load_cgroup_device_prog(insns: &[Insn], license: &str) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.encode()).collect();
    let mut lic = license.as_bytes().to_vec();
    lic.push(0);
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_devcg\0");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::other("bpf: too long"))?,
        insns: code.as_ptr() as u64,
        license: lic.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        prog_name: name,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(r) => fd_from(r),
        Err(first) => {
            // Retry with the verifier log to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(r) => fd_from(r),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let text = text.trim();
                    if text.is_empty() {
                        Err(first)
                    } else {
                        Err(io::Error::new(
                            first.kind(),
                            format!("{first}: verifier: {text}"),
                        ))
                    }
                }
            }
        }
    }
}

/// Attach a device program to a cgroup v2 directory (opened `O_DIRECTORY`).
pub fn attach_cgroup_device(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detach a device program from a cgroup v2 directory.
pub fn detach_cgroup_device(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// The ids of the device programs attached directly to a cgroup v2 directory.
pub fn query_cgroup_device(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate((attr.prog_cnt as usize).min(64));
    Ok(ids)
}

/// Open a loaded program by id.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    fd_from(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel() {
        // r2 = *(u32 *)(r1 + 4)  -> 61 12 04 00 00 00 00 00
        assert_eq!(
            Insn::ldx_w(reg::R2, reg::R1, 4).encode(),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        // w2 &= 0xffff -> 54 02 00 00 ff ff 00 00
        assert_eq!(
            Insn::alu32_imm(op::AND, reg::R2, 0xffff).encode(),
            [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0]
        );
        // if r4 != 5 goto +3 -> 55 04 03 00 05 00 00 00
        assert_eq!(
            Insn::jmp_imm(op::JNE, reg::R4, 5, 3).encode(),
            [0x55, 4, 3, 0, 5, 0, 0, 0]
        );
        // r0 = 1 -> b7 00 .. 01
        assert_eq!(
            Insn::mov64_imm(reg::R0, 1).encode(),
            [0xb7, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(Insn::exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::ja(-2).encode(), [0x05, 0, 0xfe, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            Insn::mov32_reg(1, 3).encode(),
            [0xbc, 0x31, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jump(Insn::jmp_imm(op::JEQ, reg::R2, 1, 0), end); // 0
        a.push(Insn::mov64_imm(reg::R0, 0)); // 1
        a.jump(Insn::ja(0), top); // 2
        a.bind(end);
        a.push(Insn::exit()); // 3
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 2);
        assert_eq!(p[2].off, -3);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.jump(Insn::ja(0), l);
        assert!(a.finish().is_err());
    }
}
