//! Network interfaces of the calling thread's namespace: flags, MTU, addresses.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::cvt;

/// A network interface's flags (IFF_*) and MTU, by name, in the calling thread's namespace.
/// Raw ioctls: nix has no interface requests.
pub fn if_flags_mtu(name: &str) -> io::Result<(u32, u32)> {
    let sock = inet_dgram()?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCGIFMTU fill the union of a zeroed ifreq naming the device.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        let flags = req.ifr_ifru.ifru_flags as u16 as u32;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req))?;
        Ok((flags, req.ifr_ifru.ifru_mtu as u32))
    }
}

/// Sets a network interface's flags (IFF_UP...) and MTU, in the calling thread's namespace.
pub fn set_if_flags_mtu(name: &str, flags: u32, mtu: u32) -> io::Result<()> {
    let sock = inet_dgram()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU/SIOCSIFFLAGS read the union of an ifreq naming the device.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &req))?;
        req.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

fn inet_dgram() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// The IP addresses of the calling thread's network namespace: interface, address, prefix.
pub fn if_addrs() -> io::Result<Vec<(String, std::net::IpAddr, u32)>> {
    let mut out = Vec::new();
    for a in nix::ifaddrs::getifaddrs()? {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            out.push((a.interface_name, ip.ip().into(), u32::from(m.ip()).count_ones()));
        } else if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            let prefix = m.ip().octets().iter().map(|b| b.count_ones()).sum();
            out.push((a.interface_name, ip.ip().into(), prefix));
        }
    }
    Ok(out)
}
