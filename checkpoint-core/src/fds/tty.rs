//! Pseudo-terminals made inside the tree: the master (/dev/ptmx) and slave (/dev/pts/N) ends,
//! with the terminal's settings (termios, window size, packet mode). A pty comes back at its
//! index; the session that had it as controlling terminal takes it again (see the restore).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::image::pb::{TermiosEntry, TtyInfoEntry, TtyPtyEntry, TtyType, WinsizeEntry};
use crate::sys;

/// The device numbers of /dev/ptmx.
pub const PTMX: (u32, u32) = (5, 2);

/// The index of a pty slave device (/dev/pts/N).
pub fn pty_index(rdev: u64) -> u32 {
    (libc::major(rdev) - 136) * 256 + libc::minor(rdev)
}

/// Which end of a pty a tty-info entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtyEnd {
    Master,
    Slave,
}

/// The end of a pty `info` describes (by its device: /dev/ptmx or /dev/pts/N), if a pty.
pub fn pty_end(info: &TtyInfoEntry) -> Option<PtyEnd> {
    let rdev = u64::from(info.rdev);
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    match (major, minor) {
        (5, 2) => Some(PtyEnd::Master),
        (136..=143, _) => Some(PtyEnd::Slave),
        _ => None,
    }
}

fn termios_entry(t: &libc::termios) -> TermiosEntry {
    TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: t.c_line.into(),
        c_ispeed: t.c_ispeed,
        c_ospeed: t.c_ospeed,
        c_cc: t.c_cc.iter().take(19).map(|&c| c.into()).collect(),
    }
}

/// The settings of the pty end `fd` (our copy of the task's), `index` its number, `rdev` its
/// device; `sid` and `pgrp` the session it controls and its foreground group (0 if none).
pub fn collect(fd: BorrowedFd<'_>, index: u32, rdev: u64, (sid, pgrp): (u32, u32)) -> io::Result<TtyInfoEntry> {
    let t = sys::tty_termios(fd)?;
    let ws = sys::tty_winsize(fd)?;
    let master = (libc::major(rdev), libc::minor(rdev)) == PTMX;
    // The device file itself: its filesystem (devtmpfs or devpts) and owner.
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    use std::os::unix::fs::MetadataExt;
    Ok(TtyInfoEntry {
        dev: Some(meta.dev() as u32),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        id: 0,
        r#type: TtyType::Pty as i32,
        locked: master && sys::tty_int(fd, libc::TIOCGPTLCK)? != 0,
        exclusive: sys::tty_int(fd, libc::TIOCGEXCL)? != 0,
        packet_mode: master && sys::tty_int(fd, libc::TIOCGPKT)? != 0,
        sid,
        pgrp,
        rdev: rdev as u32,
        termios: Some(termios_entry(&t)),
        termios_locked: Some(termios_entry(&sys::tty_locked_termios(fd)?)),
        winsize: Some(WinsizeEntry {
            ws_row: ws.ws_row.into(),
            ws_col: ws.ws_col.into(),
            ws_xpixel: ws.ws_xpixel.into(),
            ws_ypixel: ws.ws_ypixel.into(),
        }),
        pty: Some(TtyPtyEntry { index }),
    })
}

/// A new pty master at `index` (ptys are numbered lowest-free: masters are opened until that
/// index comes, the others closed), unlocked, its slave given `slave`'s settings.
pub fn open_master(index: u32, master: &TtyInfoEntry, slave: Option<&TtyInfoEntry>) -> io::Result<OwnedFd> {
    let mut spare = Vec::new();
    let fd = loop {
        let fd = sys::open_ptmx()?;
        let got = sys::tty_int(std::os::fd::AsFd::as_fd(&fd), libc::TIOCGPTN)? as u32;
        if got == index {
            break fd;
        }
        if got > index || spare.len() > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("pty {index} is taken (the next free one is {got})"),
            ));
        }
        spare.push(fd);
    };
    drop(spare);
    sys::tty_set_int(fd.as_raw_fd(), libc::TIOCSPTLCK, 0)?;
    if master.packet_mode {
        sys::tty_set_int(fd.as_raw_fd(), libc::TIOCPKT, 1)?;
    }
    if let Some(s) = slave {
        let path = format!("/dev/pts/{index}");
        let sl = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)?;
        if let Some(t) = &s.termios {
            let mut now = sys::tty_termios(std::os::fd::AsFd::as_fd(&sl))?;
            now.c_iflag = t.c_iflag;
            now.c_oflag = t.c_oflag;
            now.c_cflag = t.c_cflag;
            now.c_lflag = t.c_lflag;
            now.c_line = t.c_line as u8;
            for (d, s) in now.c_cc.iter_mut().zip(&t.c_cc) {
                *d = *s as u8;
            }
            sys::tty_set_termios(std::os::fd::AsFd::as_fd(&sl), &now)?;
        }
        if let Some(w) = &s.winsize {
            let ws = libc::winsize {
                ws_row: w.ws_row as u16,
                ws_col: w.ws_col as u16,
                ws_xpixel: w.ws_xpixel as u16,
                ws_ypixel: w.ws_ypixel as u16,
            };
            sys::tty_set_winsize(std::os::fd::AsFd::as_fd(&sl), &ws)?;
        }
    }
    Ok(fd)
}

use std::os::unix::fs::OpenOptionsExt;
