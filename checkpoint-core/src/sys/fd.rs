//! Our own fds: duplicates, pipes, status flags, plain reads and writes, and other tasks' fds
//! through pidfds.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, tee, FcntlArg, OFlag, SpliceFFlags};

use super::{borrow, cvt};

/// Whether our fd `fd` is a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: the fd number is only inspected during the call; callers pass an open one.
    unsafe { borrow(fd) }.is_ok_and(|fd| nix::unistd::isatty(fd).unwrap_or(false))
}

/// A close-on-exec duplicate of our fd `fd` (the lowest free number).
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller's fd, open during the call.
    let new = fcntl(unsafe { borrow(fd) }?, FcntlArg::F_DUPFD_CLOEXEC(0))?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A new pipe (read end, write end), both close-on-exec, with room for `capacity` bytes
/// when given.
pub fn new_pipe(capacity: Option<u32>) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    if let Some(cap) = capacity {
        fcntl(&w, FcntlArg::F_SETPIPE_SZ(cap as libc::c_int))?;
    }
    Ok((r, w))
}

/// The bytes buffered in the pipe behind our fd `fd`, left where they are (tee), and the
/// pipe's capacity.
pub fn peek_pipe(fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    let cap = fcntl(fd, FcntlArg::F_GETPIPE_SZ)? as u32;
    let (r, w) = new_pipe(Some(cap))?;
    let n = match tee(fd, &w, cap as usize, SpliceFFlags::SPLICE_F_NONBLOCK) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => return Err(e.into()),
    };
    drop(w);
    let mut data = Vec::with_capacity(n);
    std::fs::File::from(r).read_to_end(&mut data)?;
    Ok((data, cap))
}

/// Makes `cmd`'s child hold `fd` at fd number 3 (not close-on-exec), as a runtime's
/// `--preserve-fds 1` passes it on to the container's process.
pub fn pass_as_fd3(cmd: &mut std::process::Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls dup2/fcntl,
    // which are async-signal-safe; `fd` is held open by the caller until the child is spawned.
    // Raw libc: nix's dup2 wants an OwnedFd to replace, and fd 3 is no object of ours here.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it.
                cvt(libc::fcntl(3, libc::F_SETFD, 0))?;
            } else {
                cvt(libc::dup2(fd, 3))?;
            }
            Ok(())
        });
    }
}

/// Sets the file status flags (O_NONBLOCK, O_APPEND...) of the open file behind our `fd`.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags)))?;
    Ok(())
}

/// Writes all of `bytes` to our fd `fd` (one write; a short one is an error).
pub fn write_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: the caller's fd, open during the call.
    let n = nix::unistd::write(unsafe { borrow(fd) }?, bytes)?;
    if n != bytes.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// read(2) from our fd `fd` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the caller's fd, open during the call.
    Ok(nix::unistd::read(unsafe { borrow(fd) }?, buf)?)
}

/// Our copy of fd `fd` of task `pid`: the same open file (pidfd_open + pidfd_getfd).
pub fn copy_fd_of(pid: i32, fd: i32) -> io::Result<OwnedFd> {
    let pidfd = parasite::sys::pidfd_open(pid)?;
    parasite::sys::pidfd_getfd(pidfd.as_fd().as_raw_fd(), fd)
}

/// A pidfd of this process (for a container's init: its way to our fds).
pub fn pidfd_self() -> io::Result<OwnedFd> {
    parasite::sys::pidfd_open(std::process::id() as i32)
}

/// Marks every fd of ours from `first` up close-on-exec (close_range with
/// CLOSE_RANGE_CLOEXEC): the programs we start inherit none of them. Raw: nix has no
/// close_range.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: integer arguments; the fds stay open, only their flag changes.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    cvt(r as libc::c_int).map(drop)
}

/// Whether the other side of pipe end `fd` is gone: no writer left for a read end (POLLHUP),
/// no reader for a write end (POLLERR).
pub fn pipe_widowed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN | PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO)?;
    let r = fds[0].revents().unwrap_or(PollFlags::empty());
    Ok(r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// Who gets the signals of an open file (F_SETOWN_EX), which signal (F_SETSIG), and with
/// whose ids they are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOwner {
    /// F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
    pub kind: u32,
    /// The owner in our pid namespace; 0 for none.
    pub pid: i32,
    /// 0 for SIGIO.
    pub signal: u32,
    /// The real and effective uid recorded by F_SETOWN (F_GETOWNER_UIDS), when the kernel
    /// tells them.
    pub uids: Option<(u32, u32)>,
}

const F_SETSIG: libc::c_int = 10;
const F_GETSIG: libc::c_int = 11;
const F_SETOWN_EX: libc::c_int = 15;
const F_GETOWN_EX: libc::c_int = 16;
const F_GETOWNER_UIDS: libc::c_int = 1024 + 17;

/// The owner of the open file behind our fd `fd`. Raw fcntl: nix has no F_GETOWN_EX,
/// F_GETSIG or F_GETOWNER_UIDS.
pub fn file_owner(fd: BorrowedFd<'_>) -> io::Result<FileOwner> {
    let mut owner = [0i32; 2];
    // SAFETY: `owner` is a live struct f_owner_ex (type, pid) that the kernel fills.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, owner.as_mut_ptr()) })?;
    // SAFETY: plain integer arguments.
    let signal = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) })?;
    let mut uids = [0u32; 2];
    // SAFETY: `uids` is two live u32s that the kernel fills; without CONFIG_CHECKPOINT_RESTORE
    // the call fails and leaves them alone.
    let have_uids = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) } == 0;
    Ok(FileOwner {
        kind: owner[0] as u32,
        pid: owner[1],
        signal: signal as u32,
        uids: have_uids.then_some((uids[0], uids[1])),
    })
}

/// The fcntl commands a puppet runs to give a file its owner: F_SETOWN_EX (its argument a
/// struct f_owner_ex) and F_SETSIG.
pub const OWNER_COMMANDS: (u64, u64) = (F_SETOWN_EX as u64, F_SETSIG as u64);
