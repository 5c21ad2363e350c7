//! eventfd: a 64-bit counter, in semaphore mode or not.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::pb::{EventfdFileEntry, FownEntry};
use crate::sys;

/// Kept in the entry's flags (eventfd files are always O_RDWR, so bit 0 is free).
pub const EFD_SEMAPHORE: u32 = 1;

/// The eventfd whose fdinfo is `info` and whose file flags are `flags`.
pub fn collect(info: &str, flags: u32) -> Option<EventfdFileEntry> {
    let counter = super::field(info, "eventfd-count").and_then(super::hex)?;
    let semaphore = super::field(info, "eventfd-semaphore") == Some("1");
    Some(EventfdFileEntry {
        id: 0,
        flags: flags | if semaphore { EFD_SEMAPHORE } else { 0 },
        fown: FownEntry::default(),
        counter,
    })
}

/// A new eventfd holding the saved count.
pub fn open(e: &EventfdFileEntry) -> io::Result<OwnedFd> {
    let mode = if e.flags & EFD_SEMAPHORE != 0 {
        libc::EFD_SEMAPHORE
    } else {
        0
    };
    let fd = sys::eventfd(mode | (e.flags as i32 & libc::O_NONBLOCK))?;
    if e.counter != 0 {
        sys::write_all(fd.as_raw_fd(), &e.counter.to_ne_bytes())?;
    }
    Ok(fd)
}
