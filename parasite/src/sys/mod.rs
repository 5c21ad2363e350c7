//! The system calls behind the puppet: ptrace requests, waitpid, pidfds, cross-process memory
//! access, CPU affinity. The only module of this crate with `unsafe`.
//!
//! `nix` makes the calls it covers; raw `libc` remains for what nix 0.31 lacks, said at each
//! place. Every function here takes and returns std/libc types (pids as `i32`, `io::Result`):
//! nix types stay inside.

mod cpu;
mod process;
mod ptrace;
mod uio;

pub use cpu::*;
pub use process::*;
pub use ptrace::*;
pub use uio::*;

use std::io;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

fn pid(pid: i32) -> Pid {
    Pid::from_raw(pid)
}

/// A raw libc result as `io::Result`, with the errno of a failure.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Signal `sig` (0: none) as nix names it, or `None` if nix cannot: its `Signal` has no
/// real-time signals (SIGRTMIN..SIGRTMAX), which then go through the raw call.
fn nix_signal(sig: i32) -> Option<Option<Signal>> {
    match sig {
        0 => Some(None),
        s => Signal::try_from(s).ok().map(Some),
    }
}
