//! Scheduling of a thread: policy, real-time priority, nice. Own wrappers: nix has neither
//! sched_getattr/sched_setattr nor getpriority/setpriority.

use std::io;

/// SCHED_DEADLINE: its runtime, deadline and period have no place in CRIU's image.
pub const SCHED_DEADLINE: u32 = 6;
/// The flag sched_getscheduler(2) adds to the policy of a task that resets it on fork.
pub const SCHED_RESET_ON_FORK: u32 = 0x4000_0000;
const SCHED_FLAG_RESET_ON_FORK: u64 = 1;

/// How a thread is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sched {
    /// SCHED_* (0 other, 1 fifo, 2 rr, 3 batch, 5 idle), with [`SCHED_RESET_ON_FORK`].
    pub policy: u32,
    /// The real-time priority (0 for the other policies).
    pub priority: u32,
    /// The nice value, kept by the kernel for real-time threads too.
    pub nice: i32,
}

/// struct sched_attr, as of SCHED_ATTR_SIZE_VER1.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The scheduling of thread `tid` (any process's, by its id in our pid namespace).
pub fn sched_of(tid: i32) -> io::Result<Sched> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: attr is a live sched_attr of `size` bytes, which the kernel fills.
    check(unsafe { libc::syscall(libc::SYS_sched_getattr, tid, &mut attr as *mut SchedAttr, size, 0) })?;
    // The raw syscall gives 20 - nice (1..=40): no -1 ambiguity, unlike the libc function.
    // SAFETY: plain integer arguments.
    let prio = check(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid) })?;
    let reset = if attr.flags & SCHED_FLAG_RESET_ON_FORK != 0 {
        SCHED_RESET_ON_FORK
    } else {
        0
    };
    Ok(Sched {
        policy: attr.policy | reset,
        priority: attr.priority,
        nice: 20 - prio as i32,
    })
}

/// Schedules thread `tid` as `s` says: its nice value first (which a real-time policy keeps
/// aside), then its policy and priority.
pub fn set_sched(tid: i32, s: &Sched) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, tid, s.nice) })?;
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: s.policy & !SCHED_RESET_ON_FORK,
        flags: if s.policy & SCHED_RESET_ON_FORK != 0 {
            SCHED_FLAG_RESET_ON_FORK
        } else {
            0
        },
        nice: s.nice,
        priority: s.priority,
        ..Default::default()
    };
    // SAFETY: attr is a live, initialised sched_attr whose size field is its size.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, tid, &attr as *const SchedAttr, 0) }).map(drop)
}
