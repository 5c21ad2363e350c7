//! Netlink sockets: their protocol, port id, multicast groups and peer. What waits in their
//! receive queue (replies, notifications) is not saved: a restored socket starts empty, as
//! after a lost notification, which netlink users must already handle (ENOBUFS).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::image::pb::NetlinkSkEntry;
use crate::sys;

/// The image entry of netlink socket `ino` (our copy `fd`; its id is set by the caller).
pub fn collect(ino: u32, flags: u32, fd: BorrowedFd<'_>) -> io::Result<NetlinkSkEntry> {
    let (_, _, protocol) = sys::socket_kind(fd)?;
    let (portid, _) = sys::netlink_name(fd, false)?;
    let (dst_portid, dst_group) = sys::netlink_name(fd, true)?;
    let groups = sys::netlink_groups(fd)?;
    let opts = super::inet::socket_opts(fd)?;
    Ok(NetlinkSkEntry {
        id: 0,
        ino,
        protocol: protocol as u32,
        state: if dst_portid != 0 || dst_group != 0 { 1 } else { 7 },
        flags,
        portid,
        groups: trim_zeros(groups),
        dst_portid,
        dst_group,
        fown: Default::default(),
        opts,
        ns_id: None,
    })
}

fn trim_zeros(mut g: Vec<u32>) -> Vec<u32> {
    while g.last() == Some(&0) {
        g.pop();
    }
    g
}

fn ctx(e: &NetlinkSkEntry, step: &str) -> impl FnOnce(io::Error) -> io::Error {
    let what = format!("netlink socket {} (protocol {}, port {})", e.ino, e.protocol, e.portid);
    let step = step.to_owned();
    move |source| io::Error::new(source.kind(), format!("{what}: {step}: {source}"))
}

/// A new netlink socket as entry `e` was: bound to its port id and groups, connected to its
/// peer. Port id 0 (never bound) stays unbound.
pub fn make(e: &NetlinkSkEntry) -> io::Result<OwnedFd> {
    let fd = sys::new_socket(libc::AF_NETLINK, libc::SOCK_RAW, e.protocol as i32).map_err(ctx(e, "socket"))?;
    let b = fd.as_fd();
    sys::set_status_flags(b, e.flags as i32 & libc::O_NONBLOCK).map_err(ctx(e, "file flags"))?;
    super::inet::set_socket_opts(b, &e.opts).map_err(ctx(e, "socket options"))?;
    if e.portid != 0 {
        sys::netlink_bind(b, e.portid, e.groups.first().copied().unwrap_or(0), false).map_err(ctx(e, "bind"))?;
    }
    // Groups past the first 32 are joined one by one (NETLINK_ADD_MEMBERSHIP).
    const NETLINK_ADD_MEMBERSHIP: i32 = 1;
    for (w, bits) in e.groups.iter().enumerate().skip(1) {
        for bit in 0..32 {
            if bits & (1 << bit) != 0 {
                let group = (w * 32 + bit + 1) as i32;
                sys::set_sockopt(b, libc::SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
                    .map_err(ctx(e, "joining a group"))?;
            }
        }
    }
    if e.dst_portid != 0 || e.dst_group != 0 {
        sys::netlink_bind(b, e.dst_portid, e.dst_group, true).map_err(ctx(e, "connect"))?;
    }
    Ok(fd)
}
