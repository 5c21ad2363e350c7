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

/// Checks each registration of epoll fd `epfd` of `pid` against the task's fds (`fds`): a
/// registration whose fd number was closed, or now holds another file, names the fd that holds
/// its file (`held_at`); none holding it is an error.
pub fn resolve(pid: i32, epfd: i32, e: &mut EventpollFileEntry, fds: &[i32]) -> Result<(), String> {
    let failed = |e: io::Error| format!("epoll fd {epfd}: kcmp: {e}");
    for i in 0..e.tfd.len() {
        let tfd = e.tfd[i].tfd;
        // Registrations under one fd number (of different files) are told apart by rank.
        let toff = e.tfd[..i].iter().filter(|t| t.tfd == tfd).count() as u32;
        if sys::epoll_watches(pid, tfd as i32, epfd, tfd, toff).map_err(failed)? {
            continue;
        }
        let mut held = None;
        for &fd in fds {
            if sys::epoll_watches(pid, fd, epfd, tfd, toff).map_err(failed)? {
                held = Some(fd as u32);
                break;
            }
        }
        e.tfd[i].held_at = Some(held.ok_or_else(|| {
            format!("epoll fd {epfd} watches, as fd {tfd}, a file that no fd of the task holds any more")
        })?);
    }
    Ok(())
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
