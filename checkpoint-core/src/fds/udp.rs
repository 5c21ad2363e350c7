//! Datagrams waiting in a UDP socket's receive queue. CRIU drops them; Stasis keeps them:
//! each is saved in `sk-queues.img` with its sender's address (in the `addr` field CRIU's
//! format reserves for it), and made again on restore as a packet from that sender to the
//! restored socket, sent through a raw socket, so that `recvfrom` reads the same bytes from
//! the same address as before.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A sender's address as the image keeps it: a `sockaddr_in` (16 bytes) or `sockaddr_in6`
/// (28 bytes) as the kernel lays it out.
pub fn encode_addr(a: SocketAddr) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    match a {
        SocketAddr::V4(v4) => {
            b.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b.extend_from_slice(&v4.port().to_be_bytes());
            b.extend_from_slice(&v4.ip().octets());
            b.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(v6) => {
            b.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b.extend_from_slice(&v6.port().to_be_bytes());
            b.extend_from_slice(&v6.flowinfo().to_be_bytes());
            b.extend_from_slice(&v6.ip().octets());
            b.extend_from_slice(&v6.scope_id().to_ne_bytes());
        }
    }
    b
}

/// The address of image bytes `b`; none if they are not a sockaddr_in or sockaddr_in6.
pub fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET as u16 && b.len() >= 8 {
        let ip: [u8; 4] = b[4..8].try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 as u16 && b.len() >= 28 {
        let flow = u32::from_be_bytes(b[4..8].try_into().ok()?);
        let ip: [u8; 16] = b[8..24].try_into().ok()?;
        let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
    } else {
        None
    }
}

/// The one's-complement sum of `data` as 16-bit big-endian words, folded.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        acc += u32::from(w);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Where a datagram to a socket bound to `local` is sent so that it arrives there: its
/// address, or loopback for a socket bound to the any-address.
pub fn destination(local: SocketAddr, from: SocketAddr) -> SocketAddr {
    let ip = match (local.ip(), from.ip()) {
        (IpAddr::V4(a), _) if !a.is_unspecified() => IpAddr::V4(a),
        (IpAddr::V6(a), _) if !a.is_unspecified() => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        (_, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (_, IpAddr::V6(f)) if f.to_ipv4_mapped().is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, local.port())
}

/// The whole IP packet of a UDP datagram `data` from `src` to `dst` (both IPv4, or both
/// IPv6; a v6 socket's IPv4-mapped sender is sent as IPv4).
pub fn packet(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> io::Result<Vec<u8>> {
    let udp_len = u16::try_from(8 + data.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut udp = Vec::with_capacity(8 + data.len());
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    match (plain(src.ip()), plain(dst.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // The kernel fills in the total length, id and header checksum (IP_HDRINCL);
            // a UDP checksum of 0 means none, which IPv4 allows.
            let total = u16::try_from(20 + udp.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0];
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&udp);
            Ok(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // IPv6 demands the UDP checksum, over the pseudo-header too.
            let mut acc = sum16(0, &s.octets());
            acc = sum16(acc, &d.octets());
            acc += u32::from(udp_len) + libc::IPPROTO_UDP as u32;
            let sum = match fold(sum16(acc, &udp)) {
                0 => 0xffff,
                x => x,
            };
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&udp_len.to_be_bytes());
            p.extend_from_slice(&[libc::IPPROTO_UDP as u8, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&udp);
            Ok(p)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a datagram from {src} cannot be sent to {dst}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_addresses_round_trip() {
        for a in ["127.0.0.1:53", "[::1]:5353", "[::ffff:10.1.2.3]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(decode_addr(&encode_addr(a)), Some(a));
        }
        assert_eq!(decode_addr(&[1, 2, 3]), None);
    }

    #[test]
    fn an_ipv6_checksum_verifies() {
        let p = packet("[::1]:1000".parse().unwrap(), "[::1]:2000".parse().unwrap(), b"abc").unwrap();
        // Summing the pseudo-header and the UDP part with its checksum gives 0xffff.
        let udp = &p[40..];
        let mut acc = sum16(0, &p[8..40]);
        acc += u32::from(u16::from_be_bytes([udp[4], udp[5]])) + 17;
        assert_eq!(fold(sum16(acc, udp)), 0);
    }

    #[test]
    fn a_socket_on_the_any_address_gets_its_datagrams_through_loopback() {
        let any: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert_eq!(
            destination(any, "10.0.0.1:9".parse().unwrap()),
            "127.0.0.1:53".parse().unwrap()
        );
        let any6: SocketAddr = "[::]:53".parse().unwrap();
        assert_eq!(
            destination(any6, "[::1]:9".parse().unwrap()),
            "[::1]:53".parse().unwrap()
        );
    }
}
