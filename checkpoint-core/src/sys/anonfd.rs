//! Anonymous-inode fds: eventfd, signalfd, timerfd, epoll, inotify, fanotify; and clocks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::{cstring, cvt, owned};

mod ioctl {
    // TFD_IOC_SET_TICKS = _IOW('T', 0, u64): the expirations a timerfd holds.
    nix::ioctl_write_ptr!(tfd_set_ticks, b'T', 0, u64);
}

/// eventfd2 with count 0 and `flags` (EFD_SEMAPHORE, EFD_NONBLOCK); close-on-exec.
pub fn eventfd(flags: i32) -> io::Result<OwnedFd> {
    let flags = EfdFlags::from_bits_retain(flags) | EfdFlags::EFD_CLOEXEC;
    Ok(EventFd::from_value_and_flags(0, flags)?.into())
}

/// signalfd4 on a new fd for `mask`, with `flags` (SFD_NONBLOCK); close-on-exec. Raw: nix's
/// `SigSet` cannot hold real-time signals.
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: the mask is a local 8-byte value whose size we pass.
    owned(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            8usize,
            flags | libc::SFD_CLOEXEC,
        ) as libc::c_int
    })
}

/// A timerfd on `clock` with `flags` (TFD_NONBLOCK), close-on-exec, armed with `value` and
/// `interval` (seconds, nanoseconds) under `settime_flags`, and holding `ticks` expirations.
pub fn timerfd(
    clock: i32,
    flags: i32,
    settime_flags: i32,
    value: (i64, i64),
    interval: (i64, i64),
    ticks: u64,
) -> io::Result<OwnedFd> {
    // The clocks timerfd_create accepts; any other is EINVAL, as from the kernel.
    let clock = match clock {
        libc::CLOCK_REALTIME => ClockId::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC => ClockId::CLOCK_MONOTONIC,
        libc::CLOCK_BOOTTIME => ClockId::CLOCK_BOOTTIME,
        libc::CLOCK_REALTIME_ALARM => ClockId::CLOCK_REALTIME_ALARM,
        libc::CLOCK_BOOTTIME_ALARM => ClockId::CLOCK_BOOTTIME_ALARM,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let timer = TimerFd::new(clock, TimerFlags::from_bits_retain(flags) | TimerFlags::TFD_CLOEXEC)?;
    if value != (0, 0) {
        // it_value = value, it_interval = interval, exactly.
        let expiration =
            Expiration::IntervalDelayed(TimeSpec::new(value.0, value.1), TimeSpec::new(interval.0, interval.1));
        timer.set(expiration, TimerSetTimeFlags::from_bits_retain(settime_flags))?;
    }
    let fd = OwnedFd::from(timer);
    if ticks != 0 {
        // SAFETY: the ioctl reads one u64 from the local we pass.
        unsafe { ioctl::tfd_set_ticks(fd.as_raw_fd(), &ticks) }?;
    }
    Ok(fd)
}

/// The current time of `clock`, (seconds, nanoseconds).
pub fn clock_now(clock: i32) -> io::Result<(i64, i64)> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock))?;
    Ok((ts.tv_sec(), ts.tv_nsec()))
}

/// A new epoll instance, close-on-exec.
pub fn epoll() -> io::Result<OwnedFd> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags};
    Ok(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?.0)
}

/// A new inotify instance with `flags` (IN_NONBLOCK), close-on-exec.
pub fn inotify(flags: i32) -> io::Result<OwnedFd> {
    use nix::sys::inotify::{InitFlags, Inotify};
    let flags = InitFlags::from_bits_retain(flags) | InitFlags::IN_CLOEXEC;
    Ok(Inotify::init(flags)?.into())
}

/// inotify_add_watch on `path` (given as /proc/self/fd/N of an O_PATH fd, or any path).
/// Raw libc here and in [`inotify_rm_watch`]: nix's `Inotify` owns its fd, ours is borrowed.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &str, mask: u32) -> io::Result<i32> {
    let c = cstring(path)?;
    // SAFETY: the path is a NUL-terminated string we own.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) })
}

/// inotify_rm_watch.
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) }).map(drop)
}

/// fanotify_init(flags, event_f_flags).
pub fn fanotify_init(flags: u32, event_flags: u32) -> io::Result<OwnedFd> {
    use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags};
    let fan = Fanotify::init(
        InitFlags::from_bits_retain(flags),
        EventFFlags::from_bits_retain(event_flags),
    )?;
    Ok(fan.into())
}

/// fanotify_mark on `path`. Raw libc: nix's `Fanotify` owns its fd, ours is the caller's.
pub fn fanotify_mark(fd: RawFd, flags: u32, mask: u64, path: &str) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: the path is a NUL-terminated string we own.
    cvt(unsafe { libc::fanotify_mark(fd, flags, mask, libc::AT_FDCWD, c.as_ptr()) }).map(drop)
}
