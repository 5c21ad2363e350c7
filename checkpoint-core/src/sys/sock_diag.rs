//! NETLINK_SOCK_DIAG queries for AF_UNIX sockets. The socket and its I/O are nix's; the
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

/// Every AF_UNIX socket of our network namespace, from NETLINK_SOCK_DIAG.
pub fn unix_sockets() -> io::Result<Vec<UnixDiag>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10; // name, vfs, peer, icons, rqlen
    const UDIAG_SHOW_SHUTDOWN_ATTR: u16 = 6;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // every inode
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
    send(sock.as_raw_fd(), &req, MsgFlags::empty())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
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
            let msg = &data[off + 16..off + len];
            if msg.len() >= 16 {
                let mut d = UnixDiag {
                    kind: msg[1],
                    state: msg[2],
                    ino: u32_at(msg, 4).unwrap_or(0),
                    ..Default::default()
                };
                let mut a = 16;
                while a + 4 <= msg.len() {
                    let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
                    let atype = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
                    if alen < 4 || a + alen > msg.len() {
                        break;
                    }
                    let p = &msg[a + 4..a + alen];
                    match atype {
                        0 => d.name = Some(p.to_vec()),
                        1 => d.vfs = Some((u32_at(p, 4).unwrap_or(0), u32_at(p, 0).unwrap_or(0))),
                        2 => d.peer = u32_at(p, 0).unwrap_or(0),
                        3 => d.icons = p.chunks_exact(4).filter_map(|c| u32_at(c, 0)).collect(),
                        4 => d.rqlen = (u32_at(p, 0).unwrap_or(0), u32_at(p, 4).unwrap_or(0)),
                        UDIAG_SHOW_SHUTDOWN_ATTR => d.shutdown = p.first().copied().unwrap_or(0),
                        _ => {}
                    }
                    a += alen.next_multiple_of(4);
                }
                out.push(d);
            }
            off += len.next_multiple_of(4);
        }
    }
}
