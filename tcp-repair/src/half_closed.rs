//! Half-closed connections: which FINs a state has sent or received, and the segment that
//! plays the peer's FIN (or ACK of our FIN) to a restored socket.
//!
//! A FIN takes one sequence number. The kernel counts it in `write_seq`/SIOCOUTQ (ours) and
//! in `rcv_nxt` (the peer's) but not in SIOCINQ; a saved [`Connection`](crate::Connection)
//! keeps the sequence numbers as the kernel says them (FIN included) and the queue lengths
//! without the FIN, as CRIU does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{sendto, MsgFlags, SockaddrIn, SockaddrIn6};

use crate::{sys, Error};

pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const SYN_RECV: u8 = 3;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const TIME_WAIT: u8 = 6;
pub const CLOSE: u8 = 7;
pub const CLOSE_WAIT: u8 = 8;
pub const LAST_ACK: u8 = 9;
pub const LISTEN: u8 = 10;
pub const CLOSING: u8 = 11;

/// The mark of the packets we make, the one CRIU's netfilter lock lets through (0xC114).
pub const FIN_MARK: u32 = 0xC114;

/// The kernel's name of a TCP state.
pub fn state_name(state: u8) -> &'static str {
    match state {
        ESTABLISHED => "ESTABLISHED",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        FIN_WAIT1 => "FIN_WAIT1",
        FIN_WAIT2 => "FIN_WAIT2",
        TIME_WAIT => "TIME_WAIT",
        CLOSE => "CLOSE",
        CLOSE_WAIT => "CLOSE_WAIT",
        LAST_ACK => "LAST_ACK",
        LISTEN => "LISTEN",
        CLOSING => "CLOSING",
        _ => "unknown",
    }
}

/// What a state says about the FINs of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fins {
    /// We sent a FIN (it is the last sequence number of the send queue).
    pub sent: bool,
    /// The peer acknowledged our FIN.
    pub sent_acked: bool,
    /// We received the peer's FIN (it is counted in `rcv_nxt`).
    pub received: bool,
    /// Our FIN went out after the peer's (LAST_ACK): on restore the peer's FIN is made first.
    pub sent_second: bool,
}

/// The FINs of `state`, or Error::State when this crate cannot save or make it.
pub fn fins(state: u8) -> Result<Fins, Error> {
    let f = |sent, sent_acked, received, sent_second| Fins {
        sent,
        sent_acked,
        received,
        sent_second,
    };
    Ok(match state {
        ESTABLISHED => f(false, false, false, false),
        FIN_WAIT1 => f(true, false, false, false),
        FIN_WAIT2 => f(true, true, false, false),
        CLOSE_WAIT => f(false, false, true, false),
        LAST_ACK => f(true, false, true, true),
        CLOSING => f(true, false, true, false),
        _ => {
            return Err(Error::State {
                state,
                name: state_name(state),
            })
        }
    })
}

pub const TH_FIN: u8 = 0x01;
pub const TH_ACK: u8 = 0x10;

/// A TCP segment without options or payload, its checksum over the pseudo-header of
/// `src`/`dst` filled in.
pub fn tcp_segment(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8, window: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    let mut pseudo = Vec::with_capacity(40);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8]);
            pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
        }
        (s, d) => {
            pseudo.extend_from_slice(&v6(s).octets());
            pseudo.extend_from_slice(&v6(d).octets());
            pseudo.extend_from_slice(&(t.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, libc::IPPROTO_TCP as u8]);
        }
    }
    let sum = checksum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The Internet checksum (RFC 1071) of the concatenated parts (each of even length but the last).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header for `payload` (the kernel fills in the header checksum and the id).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64; // TTL
    p[9] = libc::IPPROTO_TCP as u8;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&p]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header for `payload`.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = libc::IPPROTO_TCP as u8;
    p[7] = 64; // hop limit
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// The IPv4 address of a v4-mapped IPv6 one (a dual-stack socket talking IPv4).
fn unmapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v),
        },
        a => a,
    }
}

/// Sends, as if from `peer` to `local`, a segment with `seq`, `ack`, `flags` and `window`.
pub fn send_as_peer(
    peer: SocketAddr,
    local: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Result<(), Error> {
    let src = SocketAddr::new(unmapped(peer.ip()), peer.port());
    let dst = SocketAddr::new(unmapped(local.ip()), local.port());
    let tcp = tcp_segment(src, dst, seq, ack, flags, window);
    let step = "send a segment as the peer";
    let err = |e: nix::Error| Error::Sys { step, source: e.into() };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let fd = sys::raw_ip_socket(false, FIN_MARK)?;
            let pkt = ipv4_packet(s, d, &tcp);
            let to = SockaddrIn::from(std::net::SocketAddrV4::new(d, 0));
            sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty()).map_err(err)?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let fd = sys::raw_ip_socket(true, FIN_MARK)?;
            let pkt = ipv6_packet(s, d, &tcp);
            let to = SockaddrIn6::from(std::net::SocketAddrV6::new(d, 0, 0, 0));
            sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty()).map_err(err)?;
        }
        _ => {
            return Err(Error::Sys {
                step,
                source: std::io::Error::other(format!("{src} and {dst} are of two families")),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The header of RFC 1071 style examples: 4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
    }

    #[test]
    fn a_segment_sums_to_zero_with_its_pseudo_header() {
        for (s, d) in [("127.0.0.1:5000", "127.0.0.2:80"), ("[::1]:5000", "[fe80::1]:443")] {
            let s: SocketAddr = s.parse().unwrap();
            let d: SocketAddr = d.parse().unwrap();
            let t = tcp_segment(s, d, 0xdead_beef, 7, TH_FIN | TH_ACK, 1000);
            assert_eq!(&t[0..2], &5000u16.to_be_bytes());
            assert_eq!(t[13], TH_FIN | TH_ACK);
            assert_eq!(u32::from_be_bytes(t[4..8].try_into().unwrap()), 0xdead_beef);
            let mut pseudo = Vec::new();
            if let (IpAddr::V4(a), IpAddr::V4(b)) = (s.ip(), d.ip()) {
                pseudo.extend_from_slice(&a.octets());
                pseudo.extend_from_slice(&b.octets());
                pseudo.extend_from_slice(&[0, 6, 0, 20]);
            } else {
                pseudo.extend_from_slice(&v6(s.ip()).octets());
                pseudo.extend_from_slice(&v6(d.ip()).octets());
                pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
            }
            assert_eq!(checksum(&[&pseudo, &t]), 0);
        }
    }

    #[test]
    fn ip_headers() {
        let p = ipv4_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 1), &[0; 20]);
        assert_eq!(p.len(), 40);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 40);
        assert_eq!(checksum(&[&p[..20]]), 0);
        let p = ipv6_packet(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &[0; 20]);
        assert_eq!(p.len(), 60);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 20);
        assert_eq!(p[6], 6);
    }

    #[test]
    fn states() {
        assert!(!fins(ESTABLISHED).unwrap().sent);
        assert!(fins(FIN_WAIT2).unwrap().sent_acked);
        assert!(fins(LAST_ACK).unwrap().sent_second);
        let c = fins(CLOSING).unwrap();
        assert!(c.sent && c.received && !c.sent_acked);
        for s in [SYN_SENT, SYN_RECV, TIME_WAIT, CLOSE, LISTEN, 0, 12] {
            assert!(matches!(fins(s), Err(Error::State { state, .. }) if state == s));
        }
        assert_eq!(state_name(CLOSE_WAIT), "CLOSE_WAIT");
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let a: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(unmapped(a), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let b: IpAddr = "::1".parse().unwrap();
        assert_eq!(unmapped(b), b);
    }
}
