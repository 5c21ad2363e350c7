//! CPU affinity (nix `sched`).

use std::io;

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};

use super::pid as npid;

/// A set of CPUs a task may run on.
#[derive(Clone, Copy, Debug)]
pub struct CpuMask(CpuSet);

/// The CPUs `pid` (0: the caller) may run on.
pub fn get_affinity(pid: i32) -> io::Result<CpuMask> {
    Ok(CpuMask(sched_getaffinity(npid(pid))?))
}

/// Sets the CPUs `pid` (0: the caller) may run on.
pub fn set_affinity(pid: i32, set: &CpuMask) -> io::Result<()> {
    Ok(sched_setaffinity(npid(pid), &set.0)?)
}

/// A set holding only `cpu` (empty if `cpu` is beyond CPU_SETSIZE).
pub fn single_cpu(cpu: usize) -> CpuMask {
    let mut set = CpuSet::new();
    let _ = set.set(cpu);
    CpuMask(set)
}

/// The CPU the caller runs on now.
pub fn current_cpu() -> usize {
    sched_getcpu().unwrap_or(0)
}
