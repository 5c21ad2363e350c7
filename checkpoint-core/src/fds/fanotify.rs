//! fanotify: a group (its flags and event flags) and its marks on inodes (named by a file
//! handle, resolved to a path at dump time) and on mounts (by mount point). Superblock marks
//! and permission events in flight are not kept: they are refused.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::pb::{
    FanotifyFileEntry, FanotifyInodeMarkEntry, FanotifyMarkEntry, FanotifyMountMarkEntry, FhEntry, FownEntry, MarkType,
};
use crate::sys;

/// The mount point of mount `mnt_id` (in our mount namespace).
fn mount_point(mnt_id: u32) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first()?.parse::<u32>().ok()? == mnt_id).then(|| f.get(4).map(|s| s.to_string()))?
    })
}

/// The fanotify group whose fdinfo is `info`; `None` for what is not kept (superblock marks,
/// a watched file no longer reachable).
pub fn collect(pid: i32, info: &str, flags: u32) -> Option<FanotifyFileEntry> {
    let mut e = FanotifyFileEntry {
        flags,
        fown: FownEntry::default(),
        ..Default::default()
    };
    for line in info.lines().filter_map(|l| l.strip_prefix("fanotify ")) {
        let pairs: Vec<(&str, &str)> = super::pairs(line).collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).and_then(|(_, v)| super::hex(v));
        if let (Some(f), Some(ev)) = (get("flags"), get("event-flags")) {
            e.faflags = f as u32;
            e.evflags = ev as u32;
            continue;
        }
        let mut mark = FanotifyMarkEntry {
            mflags: get("mflags")? as u32,
            mask: get("mask")? as u32,
            ignored_mask: get("ignored_mask")? as u32,
            ..Default::default()
        };
        if let Some(ino) = get("ino") {
            let sdev = get("sdev")? as u32;
            let handle_hex = pairs.iter().find(|(n, _)| *n == "f_handle")?.1;
            let bytes = super::hex_bytes(handle_hex)?;
            let kind = get("fhandle-type")? as i32;
            let path = super::inotify::resolve(pid, sdev, kind, &bytes)?;
            mark.r#type = MarkType::Inode as i32;
            mark.s_dev = sdev;
            mark.ie = Some(FanotifyInodeMarkEntry {
                i_ino: ino,
                f_handle: FhEntry {
                    bytes: bytes.len() as u32,
                    r#type: kind as u32,
                    handle: super::handle_words(&bytes),
                    path: Some(path),
                    mnt_id: None,
                },
            });
        } else if let Some(mnt_id) = get("mnt_id") {
            mark.r#type = MarkType::Mount as i32;
            mark.me = Some(FanotifyMountMarkEntry {
                mnt_id: mnt_id as u32,
                path: Some(mount_point(mnt_id as u32)?),
            });
        } else {
            return None; // a superblock mark
        }
        e.mark.push(mark);
    }
    Some(e)
}

/// A new fanotify group with the saved flags and marks.
pub fn open(e: &FanotifyFileEntry) -> io::Result<OwnedFd> {
    const FAN_MARK_ADD: u32 = 0x1;
    const FAN_MARK_MOUNT: u32 = 0x10;
    const FAN_MARK_IGNORED_MASK: u32 = 0x20;
    let fd = sys::fanotify_init(e.faflags | libc::FAN_CLOEXEC, e.evflags)?;
    for m in &e.mark {
        let (path, extra) = match (&m.ie, &m.me) {
            (Some(ie), _) => (ie.f_handle.path.clone(), 0),
            (None, Some(me)) => (me.path.clone(), FAN_MARK_MOUNT),
            _ => (None, 0),
        };
        let path = path.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "a fanotify mark without a path"))?;
        let flags = FAN_MARK_ADD | extra | m.mflags;
        if m.mask != 0 {
            sys::fanotify_mark(fd.as_raw_fd(), flags, m.mask.into(), &path)?;
        }
        if m.ignored_mask != 0 {
            sys::fanotify_mark(
                fd.as_raw_fd(),
                flags | FAN_MARK_IGNORED_MASK,
                m.ignored_mask.into(),
                &path,
            )?;
        }
    }
    Ok(fd)
}
