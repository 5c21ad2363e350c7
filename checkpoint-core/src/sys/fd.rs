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
