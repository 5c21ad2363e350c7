//! Processes: waitpid, kill, pidfds.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{check, nix_signal, pid as npid};

/// waitpid with `flags`; returns the raw status.
///
/// Raw libc: nix's `WaitStatus` cannot hold a stop by a real-time signal (it fails with
/// EINVAL after the stop was already taken), and callers read the raw status bits.
pub fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status points to a live i32.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret >= 0 {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// waitpid(WNOHANG | __WALL): the status if `pid` changed state, `None` if not yet (raw, as
/// [`waitpid`]).
pub fn waitpid_nohang(pid: i32) -> io::Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: status points to a live i32.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    match ret {
        0 => Ok(None),
        r if r > 0 => Ok(Some(status)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// kill(2); `sig` 0 only checks that `pid` exists.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    match nix_signal(sig) {
        Some(s) => Ok(nix::sys::signal::kill(npid(pid), s)?),
        // SAFETY: plain integer arguments.
        None => check(unsafe { libc::kill(pid, sig) }.into()).map(drop),
    }
}

/// pidfd_open(2) (not in nix 0.31).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_getfd(2) (not in nix 0.31): a duplicate of another process's fd.
pub fn pidfd_getfd(pidfd: RawFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) })?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
