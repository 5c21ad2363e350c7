//! signalfd: a file that reads the signals of a mask.

use std::io;
use std::os::fd::OwnedFd;

use crate::image::pb::{FownEntry, SignalfdEntry};
use crate::sys;

/// The signalfd whose fdinfo is `info`.
pub fn collect(info: &str, flags: u32) -> Option<SignalfdEntry> {
    Some(SignalfdEntry {
        id: 0,
        flags,
        fown: FownEntry::default(),
        sigmask: super::field(info, "sigmask").and_then(super::hex)?,
    })
}

/// A new signalfd on the saved mask.
pub fn open(e: &SignalfdEntry) -> io::Result<OwnedFd> {
    sys::signalfd(e.sigmask, e.flags as i32 & libc::O_NONBLOCK)
}
