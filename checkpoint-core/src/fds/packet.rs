//! AF_PACKET sockets: their type and protocol, the device they are bound to, TPACKET version,
//! reserve, auxdata/origdev/vnet_hdr/loss flags, timestamp source, copy threshold, multicast
//! memberships and fanout, as sock_diag reports them. Sockets with RX or TX rings (memory
//! shared with the task) are refused. Packets waiting to be read are copies of a device's
//! traffic, which a packet socket may always lose (as when its buffer is full): a busy
//! device always has some, so they are not kept (CRIU does not either), not refused.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::image::pb::{PacketMclist, PacketSockEntry};
use crate::sys::{self, PacketDiag};

/// SOL_PACKET options (linux/if_packet.h).
const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;
/// packet_diag_info flags.
const PDI_AUXDATA: u32 = 0x2;
const PDI_ORIGDEV: u32 = 0x4;
const PDI_VNETHDR: u32 = 0x8;
const PDI_LOSS: u32 = 0x10;

/// The packet socket `ino` of `pid`'s network namespace, as sock_diag reports it.
pub fn diag(pid: i32, ino: u32) -> Result<PacketDiag, String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("ns/net: {e}"))?;
    let all = sys::in_net_ns(&ns, sys::packet_sockets).map_err(|e| format!("sock_diag: {e}"))?;
    let d = all
        .into_iter()
        .find(|d| d.ino == ino)
        .ok_or_else(|| "sock_diag does not list it".to_owned())?;
    if d.rings {
        return Err("a packet socket with an RX or TX ring (memory it shares with the task) is not supported".into());
    }
    Ok(d)
}

/// "packet socket INO (protocol 0xP, ifindex N)", for messages; `protocol` as the image
/// holds it (network byte order), shown in host order (0x0800 for IPv4).
pub fn describe(ino: u32, protocol: u32, ifindex: u32) -> String {
    let protocol = u16::from_be(protocol as u16);
    format!("packet socket {ino} (protocol {protocol:#06x}, ifindex {ifindex})")
}

/// The image entry of packet socket `d` (our copy `fd`; its id is set by the caller).
pub fn collect(d: &PacketDiag, flags: u32, fd: BorrowedFd<'_>) -> io::Result<PacketSockEntry> {
    Ok(PacketSockEntry {
        id: 0,
        r#type: d.kind.into(),
        // In network byte order, as CRIU records it (socket(2)'s own argument).
        protocol: d.num.to_be().into(),
        flags,
        ifindex: d.ifindex,
        fown: Default::default(),
        opts: super::inet::socket_opts(fd)?,
        version: d.version,
        reserve: d.reserve,
        aux_data: d.flags & PDI_AUXDATA != 0,
        orig_dev: d.flags & PDI_ORIGDEV != 0,
        vnet_hdr: d.flags & PDI_VNETHDR != 0,
        loss: d.flags & PDI_LOSS != 0,
        timestamp: d.tstamp,
        copy_thresh: d.copy_thresh,
        mclist: d
            .mclist
            .iter()
            .map(|(index, kind, addr)| PacketMclist {
                index: *index,
                r#type: (*kind).into(),
                addr: addr.clone(),
            })
            .collect(),
        fanout: d.fanout,
        rx_ring: None,
        tx_ring: None,
        ns_id: None,
    })
}

/// A new packet socket as entry `e` (its inode `ino`, for messages) was.
pub fn make(e: &PacketSockEntry, ino: u32) -> io::Result<OwnedFd> {
    let what = describe(ino, e.protocol, e.ifindex);
    let ctx = |step: &'static str| {
        let what = what.clone();
        move |x: io::Error| io::Error::new(x.kind(), format!("{what}: {step}: {x}"))
    };
    if e.rx_ring.is_some() || e.tx_ring.is_some() {
        return Err(ctx("rings")(io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
    }
    let proto_be = e.protocol as u16;
    let fd = sys::new_socket(libc::AF_PACKET, e.r#type as i32, i32::from(proto_be)).map_err(ctx("socket"))?;
    let b = fd.as_fd();
    sys::set_status_flags(b, e.flags as i32 & libc::O_NONBLOCK).map_err(ctx("file flags"))?;
    super::inet::set_socket_opts(b, &e.opts).map_err(ctx("socket options"))?;
    for (name, v, set) in [
        (PACKET_VERSION, e.version, e.version != 0),
        (PACKET_RESERVE, e.reserve, e.reserve != 0),
        (PACKET_AUXDATA, 1, e.aux_data),
        (PACKET_ORIGDEV, 1, e.orig_dev),
        (PACKET_VNET_HDR, 1, e.vnet_hdr),
        (PACKET_LOSS, 1, e.loss),
        (PACKET_TIMESTAMP, e.timestamp, e.timestamp != 0),
        (PACKET_COPY_THRESH, e.copy_thresh, e.copy_thresh != 0),
    ] {
        if set {
            sys::set_sockopt(b, SOL_PACKET, name, v as i32).map_err(ctx("packet option"))?;
        }
    }
    if e.ifindex != 0 {
        sys::packet_bind(b, proto_be, e.ifindex as i32).map_err(ctx("bind"))?;
    }
    for m in &e.mclist {
        // struct packet_mreq: ifindex (int), type, alen (u16 each), address (8 bytes).
        let alen = m.addr.len().min(8);
        let mut mreq = (m.index as i32).to_ne_bytes().to_vec();
        mreq.extend_from_slice(&(m.r#type as u16).to_ne_bytes());
        mreq.extend_from_slice(&(alen as u16).to_ne_bytes());
        let mut addr = [0u8; 8];
        addr[..alen].copy_from_slice(&m.addr[..alen]);
        mreq.extend_from_slice(&addr);
        sys::set_sockopt_bytes(b, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq).map_err(ctx("membership"))?;
    }
    if let Some(f) = e.fanout.filter(|&f| f != u32::MAX) {
        sys::set_sockopt(b, SOL_PACKET, PACKET_FANOUT, f as i32).map_err(ctx("fanout"))?;
    }
    Ok(fd)
}
