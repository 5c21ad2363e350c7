//! IPv4/IPv6 and netlink sockets: their family, type and protocol, names and peers, TCP_INFO,
//! byte-sized socket options; making, binding and connecting them.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, getpeername, getsockname, socket, AddressFamily, NetlinkAddr, SockFlag, SockType, SockaddrIn,
    SockaddrIn6, SockaddrStorage,
};

use super::{cvt, owned, sockopt};

/// The family, type and protocol of a socket (SO_DOMAIN, SO_TYPE, SO_PROTOCOL).
pub fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32, i32)> {
    Ok((
        sockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE)?,
        sockopt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?,
    ))
}

fn inet_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id())))
}

/// The address an inet socket is bound to (port 0 and the any-address when it is not).
pub fn inet_name(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    Ok(inet_addr(&getsockname::<SockaddrStorage>(fd.as_raw_fd())?))
}

/// The address an inet socket is connected to; none when it is not.
pub fn inet_peer(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    match getpeername::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(s) => Ok(inet_addr(&s)),
        Err(Errno::ENOTCONN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What TCP_INFO says of a TCP socket: its state, and for a listener the connections
/// waiting to be accepted and its backlog (tcpi_unacked and tcpi_sacked hold those there).
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<(u8, u32, u32)> {
    let b = sockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 104)?;
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    Ok((b.first().copied().unwrap_or(0), u32_at(24), u32_at(28)))
}

/// A socket option as bytes (at most `max`).
pub fn sockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: buf has `len` writable bytes; the kernel writes at most that and says how many.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut len) })?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// Sets a socket option from bytes.
pub fn set_sockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, v: &[u8]) -> io::Result<()> {
    // SAFETY: v is a live slice of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            v.as_ptr().cast(),
            v.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A new socket of `family`, `kind` and `proto`, close-on-exec. Raw libc: nix's socket()
/// takes its own enums, which cannot name every protocol number an image may hold.
pub fn new_socket(family: i32, kind: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments.
    owned(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, proto) })
}

/// bind(2) an inet socket.
pub fn inet_bind(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(())
}

/// connect(2) an inet socket.
pub fn inet_connect(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(())
}

/// The bytes waiting to be read (SIOCINQ): for a datagram socket, the size of the first one.
pub fn inq_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD (SIOCINQ) writes one int to the pointer given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(n as u32)
}

/// Every datagram waiting in UDP socket `fd`'s receive queue, with its sender, read without
/// taking it (SO_PEEK_OFF moves through the queue; it is put back as it was).
pub fn peek_datagrams(fd: BorrowedFd<'_>) -> io::Result<Vec<(SocketAddr, Vec<u8>)>> {
    use nix::sys::socket::{recvmsg, MsgFlags};
    use std::io::IoSliceMut;
    let old = sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    super::set_sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let result = loop {
        let got = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            recvmsg::<SockaddrStorage>(
                fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            )
            .map(|r| (r.bytes, r.address))
        };
        match got {
            Ok((n, Some(from))) => match inet_addr(&from) {
                Some(a) => out.push((a, buf[..n].to_vec())),
                None => break Err(io::Error::other("a datagram from a non-inet address")),
            },
            Ok((_, None)) => break Err(io::Error::other("a datagram without a sender")),
            Err(Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    super::set_sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    result.map(|()| out)
}

/// Sends `packet`, a whole IPv4 or IPv6 packet with its header, to `dst` through a raw
/// socket (IPPROTO_RAW; IPv6 with IPV6_HDRINCL): a datagram made again with its sender's
/// address.
pub fn send_raw_ip(dst: SocketAddr, packet: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{sendto, MsgFlags};
    const IPV6_HDRINCL: i32 = 36;
    let v6 = dst.is_ipv6();
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let sock = new_socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    if v6 {
        super::set_sockopt(sock.as_fd(), libc::IPPROTO_IPV6, IPV6_HDRINCL, 1)?;
    }
    // The port of a raw socket's destination must be 0 (it names a protocol for IPv6).
    let n = match dst {
        SocketAddr::V4(a) => sendto(
            sock.as_raw_fd(),
            packet,
            &SockaddrIn::from(SocketAddrV4::new(*a.ip(), 0)),
            MsgFlags::empty(),
        )?,
        SocketAddr::V6(a) => sendto(
            sock.as_raw_fd(),
            packet,
            &SockaddrIn6::from(SocketAddrV6::new(*a.ip(), 0, 0, a.scope_id())),
            MsgFlags::empty(),
        )?,
    };
    if n != packet.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// The bytes written and not yet acknowledged (SIOCOUTQ) of a TCP socket.
pub fn outq_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) })?;
    Ok(n as u32)
}

/// Whether anything waits to be read in `fd` (a peek that takes nothing; for sockets whose
/// SIOCINQ is not there, such as ICMP ping sockets).
pub fn has_queued(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::sys::socket::{recv, MsgFlags};
    let mut b = [0u8; 1];
    match recv(
        fd.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
    ) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// bind(2) a packet socket to protocol `proto_be` (network order) on device `ifindex`.
pub fn packet_bind(fd: BorrowedFd<'_>, proto_be: u16, ifindex: i32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a sockaddr_ll of the length passed. Raw libc: nix's LinkAddr cannot be
    // built from fields.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A netlink socket's port id and the first 32 groups it is bound to (getsockname); or its
/// peer's with `peer`.
pub fn netlink_name(fd: BorrowedFd<'_>, peer: bool) -> io::Result<(u32, u32)> {
    let a: NetlinkAddr = if peer {
        match getpeername(fd.as_raw_fd()) {
            Ok(a) => a,
            Err(Errno::ENOTCONN) => return Ok((0, 0)),
            Err(e) => return Err(e.into()),
        }
    } else {
        getsockname(fd.as_raw_fd())?
    };
    Ok((a.pid(), a.groups()))
}

/// bind(2) a netlink socket to a port id and groups (connect(2) with `connect`).
pub fn netlink_bind(fd: BorrowedFd<'_>, portid: u32, groups: u32, connect_to: bool) -> io::Result<()> {
    let a = NetlinkAddr::new(portid, groups);
    if connect_to {
        connect(fd.as_raw_fd(), &a)?;
    } else {
        bind(fd.as_raw_fd(), &a)?;
    }
    Ok(())
}

/// Every multicast group a netlink socket is a member of (NETLINK_LIST_MEMBERSHIPS, a bitmap
/// of 32-bit words).
pub fn netlink_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
    let b = sockopt_bytes(fd, libc::SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 1024)?;
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Is `family` one nix's helpers above take (for callers that checked the kind).
pub fn is_inet(family: i32) -> bool {
    family == AddressFamily::Inet as i32 || family == AddressFamily::Inet6 as i32
}

/// A plain new TCP socket of `addr`'s family (for tests and probes).
pub fn tcp_socket_for(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    Ok(socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?)
}
