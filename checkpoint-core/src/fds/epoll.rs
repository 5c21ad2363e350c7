//! epoll: an instance and the fds registered in it. The instance is made by the controller;
//! the registrations are made by the restored task itself once its fds are in place (epoll
//! keys them by fd number).

use std::io;
use std::os::fd::OwnedFd;

use crate::image::pb::{EventpollFileEntry, EventpollTfdEntry, FownEntry};
use crate::sys;

/// The epoll instance whose fdinfo is `info`, with its registrations.
pub fn collect(info: &str, flags: u32) -> Option<EventpollFileEntry> {
    let mut tfd = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("tfd:")) {
        let mut e = EventpollTfdEntry::default();
        for (k, v) in super::pairs(line) {
            match k {
                "tfd" => e.tfd = v.parse().ok()?,
                "events" => e.events = super::hex(v)? as u32,
                "data" => e.data = super::hex(v)?,
                "pos" => e.pos = v.parse().ok(),
                "ino" => e.inode = super::hex(v),
                "sdev" => e.dev = super::hex(v).map(|d| d as u32),
                _ => {}
            }
        }
        tfd.push(e);
    }
    Some(EventpollFileEntry {
        id: 0,
        flags,
        fown: FownEntry::default(),
        tfd,
    })
}

/// A new, empty epoll instance.
pub fn open(_e: &EventpollFileEntry) -> io::Result<OwnedFd> {
    sys::epoll()
}

/// `struct epoll_event` (packed on x86_64): events, then data.
pub fn event_bytes(t: &EventpollTfdEntry) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&t.events.to_le_bytes());
    b[4..].copy_from_slice(&t.data.to_le_bytes());
    b
}
