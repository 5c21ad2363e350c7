//! inotify: an instance and its watches, each on a file named by a file handle (and the path
//! it resolved to at dump time). Watches come back at their watch descriptors.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::image::pb::{FhEntry, FownEntry, InotifyFileEntry, InotifyWdEntry};
use crate::sys;

/// The file a handle names, found through a mount of device `sdev` (the kernel's encoding)
/// as task `pid` sees its mounts: the path is the one it knows (a container's own).
pub(crate) fn resolve(pid: i32, sdev: u32, kind: i32, handle: &[u8]) -> Option<String> {
    let dev = super::user_dev(sdev);
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(2) != Some(&format!("{major}:{minor}").as_str()) {
            continue;
        }
        let Some(mount) = f.get(4) else { continue };
        let Ok(dir) = fs::File::open(format!("/proc/{pid}/root{mount}")) else {
            continue;
        };
        if let Ok(fd) = sys::open_by_handle(dir.as_fd(), kind, handle) {
            let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
            return Some(link.to_string_lossy().into_owned());
        }
    }
    None
}

/// Whether watch `w` is on a file since deleted (its handle resolved to no path, or to one
/// the kernel marks deleted): it is made again on the file's ghost.
pub fn on_deleted(w: &InotifyWdEntry) -> bool {
    w.f_handle.path.as_deref().is_none_or(|p| p.ends_with(" (deleted)"))
}

/// The inotify instance of task `pid` whose fdinfo is `info`, its watches sorted by
/// descriptor.
pub fn collect(pid: i32, info: &str, flags: u32) -> Option<InotifyFileEntry> {
    let mut wd = Vec::new();
    for line in info.lines().filter_map(|l| l.strip_prefix("inotify ")) {
        let mut e = InotifyWdEntry::default();
        let mut f_handle = FhEntry::default();
        let mut bytes = Vec::new();
        for (k, v) in super::pairs(line) {
            match k {
                "wd" => e.wd = super::hex(v)? as u32,
                "ino" => e.i_ino = super::hex(v)?,
                "sdev" => e.s_dev = super::hex(v)? as u32,
                "mask" => e.mask = super::hex(v)? as u32,
                "ignored_mask" => e.ignored_mask = super::hex(v)? as u32,
                "fhandle-bytes" => f_handle.bytes = super::hex(v)? as u32,
                "fhandle-type" => f_handle.r#type = super::hex(v)? as u32,
                "f_handle" => bytes = super::hex_bytes(v)?,
                _ => {}
            }
        }
        f_handle.path = resolve(pid, e.s_dev, f_handle.r#type as i32, &bytes);
        f_handle.handle = super::handle_words(&bytes);
        e.f_handle = f_handle;
        wd.push(e);
    }
    wd.sort_by_key(|w| w.wd);
    Some(InotifyFileEntry {
        id: 0,
        flags,
        fown: FownEntry::default(),
        wd,
    })
}

/// A new inotify instance with every watch at its descriptor (descriptors are handed out in
/// increasing order: a gap is made by adding and removing a watch).
pub fn open(e: &InotifyFileEntry) -> io::Result<OwnedFd> {
    let fd = sys::inotify(e.flags as i32 & libc::O_NONBLOCK)?;
    let mut watches: Vec<&InotifyWdEntry> = e.wd.iter().collect();
    watches.sort_by_key(|w| w.wd);
    for w in watches {
        let path = w.f_handle.path.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("inotify watch {}: the watched file has no path", w.wd),
            )
        })?;
        loop {
            let got = sys::inotify_add_watch(fd.as_fd(), &path, w.mask)?;
            if got as u32 == w.wd {
                break;
            }
            if got as u32 > w.wd {
                return Err(io::Error::other(format!(
                    "inotify watch on {path} got descriptor {got}, not {}",
                    w.wd
                )));
            }
            sys::inotify_rm_watch(fd.as_fd(), got)?;
        }
    }
    // Removing the gap watches queued IN_IGNORED events: drop them (a new instance has no other).
    sys::set_status_flags(fd.as_fd(), libc::O_NONBLOCK)?;
    let mut buf = [0u8; 4096];
    while sys::read(fd.as_raw_fd(), &mut buf).unwrap_or(0) > 0 {}
    sys::set_status_flags(fd.as_fd(), e.flags as i32 & libc::O_NONBLOCK)?;
    Ok(fd)
}
