//! The loopback device of a container's new network namespace: brought up with one
//! RTM_NEWLINK request on a netlink socket opened inside that namespace (the shim is
//! single-threaded, so it can step into the namespace with setns and back).

use std::os::fd::AsFd;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use rustix::thread::LinkNameSpaceType;

use crate::ShimError;

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 1;
/// The loopback device is always interface 1 of a new network namespace.
const LO_INDEX: i32 = 1;

/// The request: nlmsghdr + ifinfomsg setting IFF_UP on interface 1.
pub(crate) fn lo_up_request(seq: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&32u32.to_ne_bytes());
    b[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // pid 0, then ifinfomsg: family AF_UNSPEC, pad, type 0
    b[20..24].copy_from_slice(&LO_INDEX.to_ne_bytes());
    b[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    b[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    b
}

/// The errno of an NLMSG_ERROR answer (0 = success), if `b` is one.
pub(crate) fn ack_errno(b: &[u8]) -> Option<i32> {
    if b.len() < 20 {
        return None;
    }
    let ty = u16::from_ne_bytes([b[4], b[5]]);
    (ty == NLMSG_ERROR).then(|| -i32::from_ne_bytes([b[16], b[17], b[18], b[19]]))
}

/// Bring `lo` up in the network namespace of process `pid`.
pub(crate) fn loopback_up(pid: i32) -> Result<(), ShimError> {
    let ctx = "bring up loopback in the container's network namespace";
    let orig = std::fs::File::open("/proc/self/ns/net").map_err(|e| ShimError::io(ctx, e))?;
    let target =
        std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| ShimError::io(ctx, e))?;
    rustix::thread::move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| ShimError::io(ctx, e))?;
    let sock = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None);
    rustix::thread::move_into_link_name_space(orig.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| ShimError::io(format!("{ctx}: return to the shim's namespace"), e))?;
    let sock = sock.map_err(|e| ShimError::io(ctx, e))?;
    rustix::net::sendto(
        &sock,
        &lo_up_request(1),
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(|e| ShimError::io(ctx, e))?;
    let mut buf = [0u8; 4096];
    let (n, _) = rustix::net::recv(&sock, &mut buf, RecvFlags::empty())
        .map_err(|e| ShimError::io(ctx, e))?;
    match ack_errno(&buf[..n]) {
        Some(0) => Ok(()),
        Some(e) => Err(ShimError::io(ctx, std::io::Error::from_raw_os_error(e))),
        None => Err(ShimError {
            kind: berth_core::ErrorKind::Internal,
            message: format!("{ctx}: unexpected netlink answer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let r = lo_up_request(7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 16);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(r[20..24].try_into().unwrap()), 1);
        let mut ack = [0u8; 36];
        ack[4..6].copy_from_slice(&2u16.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(1));
        assert_eq!(ack_errno(&r), None);
    }
}
