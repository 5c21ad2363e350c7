//! Terminals: pty masters, termios, window sizes, terminal ioctls.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;

use super::cvt;

mod ioctl {
    nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
    nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);
    nix::ioctl_read_bad!(get_locked_termios, libc::TIOCGLCKTRMIOS, libc::termios);
}

/// Opens a new pseudo-terminal: returns the master and the slave's path (for tests and tools).
pub fn open_pty() -> io::Result<(std::fs::File, std::path::PathBuf)> {
    let master = open_ptmx()?;
    tty_set_int(master.as_raw_fd(), libc::TIOCSPTLCK, 0)?;
    let index = tty_int(master.as_fd(), libc::TIOCGPTN)? as u32;
    Ok((master.into(), std::path::PathBuf::from(format!("/dev/pts/{index}"))))
}

/// A new pty master (/dev/ptmx), not our controlling terminal, close-on-exec.
pub fn open_ptmx() -> io::Result<OwnedFd> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    Ok(master.into())
}

/// The termios of a terminal fd.
pub fn tty_termios(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    Ok(nix::sys::termios::tcgetattr(fd)?.into())
}

/// Sets the termios of a terminal fd (at once). Raw libc: nix's `Termios` keeps only the
/// flag bits it has names for, and a restore must set them all as they were.
pub fn tty_set_termios(fd: BorrowedFd<'_>, t: &libc::termios) -> io::Result<()> {
    // SAFETY: t is a live termios the kernel only reads.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, t) }).map(drop)
}

/// The window size of a terminal fd.
pub fn tty_winsize(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ws is a live local winsize the ioctl fills.
    unsafe { ioctl::get_winsize(fd.as_raw_fd(), &mut ws) }?;
    Ok(ws)
}

/// Sets the window size of a terminal fd.
pub fn tty_set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: ws is a live winsize the ioctl only reads.
    unsafe { ioctl::set_winsize(fd.as_raw_fd(), ws) }?;
    Ok(())
}

/// An int-valued terminal ioctl (TIOCGPTN, TIOCGPTLCK, TIOCGPKT, TIOCGEXCL). Raw libc here
/// and in [`tty_set_int`]: the caller chooses the request, nix's ioctl macros fix it.
pub fn tty_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: v is a live local int the ioctl fills.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// An int-setting terminal ioctl (TIOCSPTLCK, TIOCPKT) on our fd `fd`.
pub fn tty_set_int(fd: RawFd, req: libc::c_ulong, v: i32) -> io::Result<()> {
    // SAFETY: v is a live local int the ioctl only reads.
    cvt(unsafe { libc::ioctl(fd, req, &v) }).map(drop)
}

/// The locked termios bits of a terminal fd (TIOCGLCKTRMIOS).
pub fn tty_locked_termios(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    // SAFETY: a zeroed termios is valid; the ioctl fills its leading kernel termios part.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: t is a live local termios, larger than what the ioctl writes.
    unsafe { ioctl::get_locked_termios(fd.as_raw_fd(), &mut t) }?;
    Ok(t)
}
