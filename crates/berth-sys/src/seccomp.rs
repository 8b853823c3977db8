//! Loading a precompiled seccomp BPF program with `seccomp(SECCOMP_SET_MODE_FILTER)`.
//!
//! The program is compiled (by libseccomp, in berth-runtime) before fork; loading it here is one
//! syscall that allocates nothing, so it is safe to call in a freshly forked, single-threaded child
//! right before `execve`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `SECCOMP_FILTER_FLAG_TSYNC`: synchronise all threads of the process to this filter.
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`: log every action except `SECCOMP_RET_ALLOW`.
pub const FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: disable the speculative store bypass mitigation.
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: return a user-notification fd.
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH`: report TSYNC failures as `ESRCH` (needed with NEW_LISTENER).
pub const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`: notified tasks wait killably (Linux 5.19).
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// One classic BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Generic field (constant, offset, return value).
    pub k: u32,
}

impl SockFilter {
    /// Size of one instruction in bytes (as exported by `seccomp_export_bpf`).
    pub const SIZE: usize = 8;

    /// Encode a program in the byte stream [`SockFilter::decode`] reads.
    pub fn encode(program: &[SockFilter]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(program.len() * Self::SIZE);
        for i in program {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        bytes
    }

    /// Decode a program from the native-endian byte stream that `seccomp_export_bpf` writes.
    /// Returns `None` if the length is not a multiple of 8.
    pub fn decode(bytes: &[u8]) -> Option<Vec<SockFilter>> {
        if !bytes.chunks_exact(Self::SIZE).remainder().is_empty() {
            return None;
        }
        Some(
            bytes
                .chunks_exact(Self::SIZE)
                .map(|c| SockFilter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect(),
        )
    }
}

/// Install `program` as a seccomp filter on the calling thread (all threads with [`FLAG_TSYNC`]).
///
/// The caller must either hold `CAP_SYS_ADMIN` or have set `no_new_privs`, otherwise the kernel
/// answers `EACCES`. With [`FLAG_NEW_LISTENER`] the returned fd is the user-notification fd.
pub fn set_mode_filter(program: &[SockFilter], flags: u32) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bpf program too long"))?;
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty bpf program",
        ));
    }
    let prog = libc::sock_fprog {
        len,
        // `SockFilter` is `repr(C)` with the same fields, sizes and order as `libc::sock_filter`;
        // the kernel only reads through this pointer.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points to `len` valid, initialised instructions that outlive the call; the
    // kernel copies the program and does not retain the pointer. The syscall takes
    // (operation, flags, pointer) exactly as passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret > 0 && flags & FLAG_NEW_LISTENER == 0 {
        // With TSYNC (and without TSYNC_ESRCH) a positive value is the id of a thread that could
        // not be synchronised: the filter was not installed.
        return Err(io::Error::other(format!(
            "thread {ret} could not be synchronised to the filter (SECCOMP_FILTER_FLAG_TSYNC)"
        )));
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(ret)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "listener fd out of range"))?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a new fd that nothing
        // else owns; we take sole ownership of it here.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(None)
}

/// Whether the running kernel accepts `flag` for `SECCOMP_SET_MODE_FILTER` (probed without
/// installing anything: a NULL program makes a known flag fail with EFAULT, an unknown one with
/// EINVAL).
pub fn flag_supported(flag: u32) -> bool {
    // SAFETY: the program pointer is NULL, so the kernel validates the flags and then fails to
    // copy the program with EFAULT; nothing is read from or written to our memory and no filter
    // is installed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flag),
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_round_trips_native_layout() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x15u16.to_ne_bytes());
        bytes.extend_from_slice(&[1, 2]);
        bytes.extend_from_slice(&0x7fff_0000u32.to_ne_bytes());
        let prog = SockFilter::decode(&bytes).expect("decodes");
        assert_eq!(
            prog,
            vec![SockFilter {
                code: 0x15,
                jt: 1,
                jf: 2,
                k: 0x7fff_0000
            }]
        );
        assert!(SockFilter::decode(&bytes[..7]).is_none());
        assert_eq!(SockFilter::encode(&prog), bytes);
        assert_eq!(std::mem::size_of::<SockFilter>(), SockFilter::SIZE);
    }

    #[test]
    fn flag_probe_tells_known_from_unknown() {
        assert!(flag_supported(FLAG_TSYNC), "TSYNC exists since Linux 3.17");
        assert!(!flag_supported(1 << 30), "no such flag");
    }
}
