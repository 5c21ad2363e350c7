//! The process tree under the dumped task: finding every descendant and every thread, without
//! stopping any (see [`super::seize`] for the stopping).
//!
//! Children are read from `/proc/PID/task/TID/children` of every thread. Zombies cannot be
//! traced; they are recorded with their exit status.

use std::collections::{BTreeSet, VecDeque};
use std::fs;

use parasite::Tracee;

use super::{read_proc, DumpError};
use crate::procfs;

/// A task of the tree: alive (its threads seized, the first one the leader) or a zombie.
pub struct Task {
    pub pid: i32,
    /// The exit status of a zombie.
    pub zombie: Option<u32>,
    pub threads: Vec<Tracee>,
    /// It was stopped (SIGSTOP, job control) before we seized it: it comes back stopped.
    pub stopped: bool,
}

impl Task {
    pub fn is_zombie(&self) -> bool {
        self.zombie.is_some()
    }
}

/// The children of every thread of `pid` (empty if it is gone).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let path = t.path().join("children");
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out
}

/// The threads of `pid`, the leader first.
pub fn thread_ids(pid: i32) -> Result<Vec<i32>, DumpError> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = fs::read_dir(&dir)
        .map_err(|e| DumpError::proc(pid, &dir, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable_by_key(|&t| (t != pid, t));
    Ok(tids)
}

/// Every task of the tree rooted at `root`, parents before children, without stopping any.
pub fn walk(root: i32) -> Vec<i32> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        if seen.insert(pid) {
            order.push(pid);
            queue.extend(children(pid));
        }
    }
    order
}

/// What /proc/PID/stat shows of `pid`.
pub(super) fn stat(pid: i32) -> Result<procfs::Stat, DumpError> {
    procfs::parse_stat(&read_proc(pid, "stat")?).ok_or(DumpError::Parse { pid, file: "stat" })
}

/// Whether `pid` is there and not ending (a zombie, or gone already, leaves nothing behind).
pub fn alive(pid: i32) -> bool {
    // PF_EXITING: on its way out (its files may be gone already, before it is a zombie).
    const PF_EXITING: u32 = 0x4;
    stat(pid).is_ok_and(|st| !matches!(st.state, 'Z' | 'X') && st.flags & PF_EXITING == 0)
}
