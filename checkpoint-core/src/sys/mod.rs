//! The system calls of the engine that are not ptrace (that lives in `parasite::sys`), one
//! file per subject. The only module of this crate with `unsafe`.
//!
//! `nix` makes the calls it covers; raw `libc` remains where nix 0.31 lacks the call (or
//! cannot express it exactly), said at each place. Every function takes and returns std or
//! libc types (`RawFd`/`BorrowedFd`/`OwnedFd`, pids as `i32`, `io::Result`): nix types stay
//! inside, and a nix error becomes the same `io::Error` (same errno) as the raw call gave.

mod anonfd;
mod fd;
mod fs;
mod inet;
mod ipc;
mod mm;
mod net;
mod ns;
mod probe;
mod process;
mod sched;
mod sock_diag;
mod socket;
mod tty;

pub use anonfd::*;
pub use fd::*;
pub use fs::*;
pub use inet::*;
pub use ipc::*;
pub use mm::*;
pub use net::*;
pub use ns::*;
pub use probe::*;
pub use process::*;
pub use sched::*;
pub use sock_diag::*;
pub use socket::*;
pub use tty::*;

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A raw libc result as `io::Result`, with the errno of a failure.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A raw libc result that is a new fd, owned.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Borrows the caller's open fd number `fd` for one call (the raw-fd functions take numbers);
/// a negative number is EBADF, as the raw call would say (std's borrow panics on -1).
///
/// # Safety
/// `fd` must stay open while the borrow lives (the callers hold it, and pass its number).
unsafe fn borrow<'a>(fd: RawFd) -> io::Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: as the caller promises; not -1.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `s` as a C string (a NUL inside it is invalid input).
fn cstring(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
