//! timerfd: a timer read as a file, with its clock, time left, interval and unread expirations.

use std::io;
use std::os::fd::OwnedFd;

use crate::image::pb::{FownEntry, TimerfdEntry};
use crate::sys;

fn pair(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The timerfd whose fdinfo is `info`; the time shown is what is left. A periodic timer that
/// expired unread shows none left (the kernel moves it on at the next read): it is saved as
/// going off one interval later, so that any restorer re-arms it.
pub fn collect(info: &str, flags: u32) -> Option<TimerfdEntry> {
    let (isec, insec) = pair(super::field(info, "it_interval")?)?;
    let (vsec, vnsec) = match pair(super::field(info, "it_value")?)? {
        (0, 0) => (isec, insec),
        left => left,
    };
    Some(TimerfdEntry {
        id: 0,
        flags,
        fown: FownEntry::default(),
        clockid: super::field(info, "clockid")?.parse().ok()?,
        ticks: super::field(info, "ticks")?.parse().ok()?,
        settime_flags: u32::from_str_radix(super::field(info, "settime flags")?, 8).ok()?,
        vsec,
        vnsec,
        isec,
        insec,
    })
}

/// A new timerfd with the time it had left (an absolute timer gets the same deadline on its
/// clock, from now), its interval and its unread expirations.
pub fn open(e: &TimerfdEntry) -> io::Result<OwnedFd> {
    let clock = e.clockid as i32;
    let left = (e.vsec as i64, e.vnsec as i64);
    let interval = (e.isec as i64, e.insec as i64);
    // A periodic timer that expired and was not read yet shows no time left (the kernel moves
    // it on at the next read): it goes off again one interval from now.
    let left = if left == (0, 0) { interval } else { left };
    let abs = e.settime_flags as i32 & libc::TFD_TIMER_ABSTIME != 0;
    let value = if abs && left != (0, 0) {
        let now = sys::clock_now(clock)?;
        let ns = now.1 + left.1;
        (now.0 + left.0 + ns / 1_000_000_000, ns % 1_000_000_000)
    } else {
        left
    };
    sys::timerfd(
        clock,
        e.flags as i32 & libc::O_NONBLOCK,
        e.settime_flags as i32,
        value,
        interval,
        e.ticks,
    )
}
