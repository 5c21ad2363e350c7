//! The raw socket calls of repair mode: the only `unsafe` of the crate.
//!
//! Numbers are the kernel's uapi (include/uapi/linux/tcp.h, linux/sockios.h).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::Error;

pub const TCP_MAXSEG: i32 = 2;
pub const TCP_INFO: i32 = 11;
pub const TCP_REPAIR: i32 = 19;
pub const TCP_REPAIR_QUEUE: i32 = 20;
pub const TCP_QUEUE_SEQ: i32 = 21;
pub const TCP_REPAIR_OPTIONS: i32 = 22;
pub const TCP_TIMESTAMP: i32 = 24;
pub const TCP_REPAIR_WINDOW: i32 = 29;

/// Values of TCP_REPAIR.
pub const TCP_REPAIR_ON: i32 = 1;
pub const TCP_REPAIR_OFF: i32 = 0;
/// Off, without the window probe TCP_REPAIR_OFF sends.
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// Values of TCP_REPAIR_QUEUE.
pub const TCP_NO_QUEUE: i32 = 0;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;

/// Option codes of TCP_REPAIR_OPTIONS.
pub const TCPOPT_MSS: u32 = 2;
pub const TCPOPT_WINDOW: u32 = 3;
pub const TCPOPT_SACK_PERM: u32 = 4;
pub const TCPOPT_TIMESTAMP: u32 = 8;

pub const SIOCINQ: libc::c_ulong = 0x541B; // FIONREAD
pub const SIOCOUTQ: libc::c_ulong = 0x5411; // TIOCOUTQ
pub const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// `struct tcp_repair_opt`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RepairOpt {
    pub code: u32,
    pub val: u32,
}

/// `struct tcp_repair_window`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RepairWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

fn sys(step: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { step, source }
}

/// Marker for plain-data option values: any bit pattern is valid, no padding, no pointers.
pub trait Pod: Copy {}
impl Pod for i32 {}
impl Pod for u32 {}
impl Pod for RepairWindow {}
impl Pod for RepairOpt {}

/// setsockopt(fd, level, name, vals) with an array of plain values.
pub fn setsockopt_slice<T: Pod>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    vals: &[T],
    step: &'static str,
) -> Result<(), Error> {
    let len = std::mem::size_of_val(vals) as libc::socklen_t;
    // SAFETY: `vals` is a live slice of plain-data values of `len` bytes; the kernel only
    // reads that many bytes from the pointer.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, vals.as_ptr().cast(), len) };
    if r < 0 {
        return Err(sys(step)(io::Error::last_os_error()));
    }
    Ok(())
}

/// setsockopt(fd, level, name, &val).
pub fn setsockopt<T: Pod>(fd: BorrowedFd<'_>, level: i32, name: i32, val: T, step: &'static str) -> Result<(), Error> {
    setsockopt_slice(fd, level, name, std::slice::from_ref(&val), step)
}

/// getsockopt(fd, level, name) of a plain value; fails unless the kernel filled it whole.
pub fn getsockopt<T: Pod>(fd: BorrowedFd<'_>, level: i32, name: i32, step: &'static str) -> Result<T, Error> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is writable storage of `len` bytes; the kernel writes at most `len`
    // bytes and stores the written length in `len`.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, val.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return Err(sys(step)(io::Error::last_os_error()));
    }
    if len as usize != size_of::<T>() {
        return Err(sys(step)(io::Error::other(format!(
            "kernel returned {len} bytes, want {}",
            size_of::<T>()
        ))));
    }
    // SAFETY: zero-initialised and then (partly) written by the kernel; T is plain data, so
    // any bytes are a valid T.
    Ok(unsafe { val.assume_init() })
}

/// getsockopt into a byte buffer; returns the length the kernel wrote.
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
    step: &'static str,
) -> Result<usize, Error> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most `len` bytes.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return Err(sys(step)(io::Error::last_os_error()));
    }
    Ok(len as usize)
}

/// An ioctl that stores one int (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD).
pub fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong, step: &'static str) -> Result<u32, Error> {
    let mut val: libc::c_int = 0;
    // SAFETY: these requests write one int through the pointer, which points at `val`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut val as *mut libc::c_int) };
    if r < 0 {
        return Err(sys(step)(io::Error::last_os_error()));
    }
    u32::try_from(val).map_err(|_| sys(step)(io::Error::other(format!("negative length {val}"))))
}

/// A raw socket for sending whole IP packets (IPv4 with the header included; IPv6 with
/// IPV6_HDRINCL), marked with `mark` so that a netfilter lock of the connection lets it by.
pub fn raw_ip_socket(v6: bool, mark: u32) -> Result<std::os::fd::OwnedFd, Error> {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if raw < 0 {
        return Err(sys("raw socket for a FIN")(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if v6 {
        setsockopt(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_HDRINCL, 1i32, "IPV6_HDRINCL")?;
    }
    setsockopt(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        mark,
        "SO_MARK of the raw socket",
    )?;
    Ok(fd)
}
