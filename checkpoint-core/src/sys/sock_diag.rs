//! NETLINK_SOCK_DIAG queries for AF_UNIX and AF_PACKET sockets. The socket and its I/O are nix's; the
//! messages (which nix does not know) are built and parsed here.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

/// One AF_UNIX socket as sock_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)...
    pub state: u8,
    /// The bound name as the kernel keeps it (abstract names start with a NUL).
    pub name: Option<Vec<u8>>,
    pub peer: u32,
    /// For a listener: the sockets of connections not accepted yet.
    pub icons: Vec<u32>,
    /// Bytes (stream) or datagrams queued to read; for a listener, pending connections and
    /// the backlog.
    pub rqlen: (u32, u32),
    /// The kernel's RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2) bits.
    pub shutdown: u8,
    /// Device and inode of the bound file, for a socket bound to a path.
    pub vfs: Option<(u32, u32)>,
}

/// Sends sock_diag request `body` (what follows the netlink header) and returns the
/// message of each reply.
fn query(body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let mut req = Vec::with_capacity(16 + body.len());
    req.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(body);
    send(sock.as_raw_fd(), &req, MsgFlags::empty())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let data = &buf[..n];
        let mut off = 0;
        while off + 16 <= data.len() {
            let len = u32_at(data, off).unwrap_or(0) as usize;
            let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            if len < 16 || off + len > data.len() {
                return Err(io::Error::other("sock_diag: malformed reply"));
            }
            if kind == libc::NLMSG_DONE as u16 {
                return Ok(out);
            }
            if kind == libc::NLMSG_ERROR as u16 {
                let err = u32_at(data, off + 16).unwrap_or(0) as i32;
                return Err(io::Error::from_raw_os_error(-err));
            }
            out.push(data[off + 16..off + len].to_vec());
            off += len.next_multiple_of(4);
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// The netlink attributes (type, payload) of `msg` from offset `start`.
fn attrs(msg: &[u8], start: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut a = start;
    while a + 4 <= msg.len() {
        let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
        let atype = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
        if alen < 4 || a + alen > msg.len() {
            break;
        }
        out.push((atype, &msg[a + 4..a + alen]));
        a += alen.next_multiple_of(4);
    }
    out
}

/// Every AF_UNIX socket of our network namespace, from NETLINK_SOCK_DIAG.
pub fn unix_sockets() -> io::Result<Vec<UnixDiag>> {
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10; // name, vfs, peer, icons, rqlen
    const UDIAG_SHOW_SHUTDOWN_ATTR: u16 = 6;
    // unix_diag_req: family, protocol, pad, states, inode, show, cookie.
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // every inode
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
    let mut out = Vec::new();
    for msg in query(&req)?.iter().filter(|m| m.len() >= 16) {
        let mut d = UnixDiag {
            kind: msg[1],
            state: msg[2],
            ino: u32_at(msg, 4).unwrap_or(0),
            ..Default::default()
        };
        for (atype, p) in attrs(msg, 16) {
            match atype {
                0 => d.name = Some(p.to_vec()),
                1 => d.vfs = Some((u32_at(p, 4).unwrap_or(0), u32_at(p, 0).unwrap_or(0))),
                2 => d.peer = u32_at(p, 0).unwrap_or(0),
                3 => d.icons = p.chunks_exact(4).filter_map(|c| u32_at(c, 0)).collect(),
                4 => d.rqlen = (u32_at(p, 0).unwrap_or(0), u32_at(p, 4).unwrap_or(0)),
                UDIAG_SHOW_SHUTDOWN_ATTR => d.shutdown = p.first().copied().unwrap_or(0),
                _ => {}
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// One AF_PACKET socket as sock_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketDiag {
    pub ino: u32,
    /// SOCK_RAW or SOCK_DGRAM.
    pub kind: u8,
    /// The protocol it is bound to (host order, e.g. ETH_P_ALL 3).
    pub num: u16,
    /// The device it is bound to (0: every device), its TPACKET version, reserve, copy
    /// threshold, timestamp source and PDI_* flags (running, auxdata, origdev, vnet_hdr, loss).
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    /// Multicast memberships: (ifindex, type, address).
    pub mclist: Vec<(u32, u16, Vec<u8>)>,
    /// Whether it has an RX or TX ring, and its fanout (id | type << 16), if any.
    pub rings: bool,
    pub fanout: Option<u32>,
}

/// Every AF_PACKET socket of our network namespace.
pub fn packet_sockets() -> io::Result<Vec<PacketDiag>> {
    // PACKET_SHOW_INFO | MCLIST | RING_CFG | FANOUT
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8;
    // packet_diag_req: family, protocol, pad, inode, show, cookie.
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let mut out = Vec::new();
    for msg in query(&req)?.iter().filter(|m| m.len() >= 16) {
        let mut d = PacketDiag {
            kind: msg[1],
            num: u16::from_ne_bytes([msg[2], msg[3]]),
            ino: u32_at(msg, 4).unwrap_or(0),
            ..Default::default()
        };
        for (atype, p) in attrs(msg, 16) {
            let at = |o| u32_at(p, o).unwrap_or(0);
            match atype {
                // PACKET_DIAG_INFO: index, version, reserve, copy_thresh, tstamp, flags.
                0 => {
                    (d.ifindex, d.version, d.reserve, d.copy_thresh, d.tstamp, d.flags) =
                        (at(0), at(4), at(8), at(12), at(16), at(20))
                }
                // PACKET_DIAG_MCLIST: index, count, type (u16), alen (u16), addr[32] each.
                1 => {
                    for m in p.chunks_exact(44) {
                        let alen = usize::from(u16::from_ne_bytes([m[10], m[11]])).min(32);
                        let kind = u16::from_ne_bytes([m[8], m[9]]);
                        d.mclist
                            .push((u32_at(m, 0).unwrap_or(0), kind, m[12..12 + alen].to_vec()));
                    }
                }
                // PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING, PACKET_DIAG_FANOUT.
                2 | 3 => d.rings = true,
                4 => d.fanout = Some(at(0)),
                _ => {}
            }
        }
        out.push(d);
    }
    Ok(out)
}
