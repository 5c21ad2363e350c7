//! Network interfaces of the calling thread's namespace: their flags and MTU (the rest of a
//! namespace's network state goes through iproute2, see `ns::net`).

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
