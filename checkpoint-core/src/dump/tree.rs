//! The process tree under the dumped task: finding every descendant, and freezing them all.
//!
//! Children are read from `/proc/PID/task/TID/children` of every thread. Freezing goes top-down
//! and repeats until a pass finds no task it had not frozen yet: a task can fork until it is
//! stopped, but once every task is stopped the tree cannot change. Zombies cannot be traced;
//! they are recorded with their exit status.

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

fn stat(pid: i32) -> Result<procfs::Stat, DumpError> {
    procfs::parse_stat(&read_proc(pid, "stat")?).ok_or(DumpError::Parse { pid, file: "stat" })
}

/// Stops every task of the tree rooted at `root` and returns them, parents before children.
/// On error, the tasks already stopped are let go (their tracees detach on drop).
pub fn freeze(root: i32) -> Result<Vec<Task>, DumpError> {
    let mut tasks: Vec<Task> = Vec::new();
    loop {
        let mut added = false;
        let mut queue = VecDeque::from([root]);
        let mut visited = BTreeSet::new();
        while let Some(pid) = queue.pop_front() {
            if !visited.insert(pid) {
                continue;
            }
            if !tasks.iter().any(|t| t.pid == pid) {
                match freeze_one(pid, pid == root)? {
                    Some(task) => tasks.push(task),
                    None => continue, // exited and reaped meanwhile
                }
                added = true;
            }
            queue.extend(children(pid));
        }
        if !added {
            // Parents first: the order of the walk that found nothing new.
            let rank: Vec<i32> = walk(root);
            tasks.retain(|t| rank.contains(&t.pid));
            tasks.sort_by_key(|t| rank.iter().position(|&p| p == t.pid));
            return Ok(tasks);
        }
    }
}

fn freeze_one(pid: i32, is_root: bool) -> Result<Option<Task>, DumpError> {
    let st = match stat(pid) {
        Ok(st) => st,
        Err(_) if !is_root => return Ok(None),
        Err(e) => return Err(e),
    };
    if st.state == 'Z' {
        return Ok(Some(Task {
            pid,
            zombie: Some(st.exit_code),
            threads: Vec::new(),
        }));
    }
    match super::seize_threads(pid) {
        Ok(threads) => Ok(Some(Task {
            pid,
            zombie: None,
            threads,
        })),
        // It died while we looked: a zombie now, or gone.
        Err(e) if !is_root => match stat(pid) {
            Ok(st) if st.state == 'Z' => Ok(Some(Task {
                pid,
                zombie: Some(st.exit_code),
                threads: Vec::new(),
            })),
            Ok(_) => Err(e),
            Err(_) => Ok(None),
        },
        Err(e) => Err(e),
    }
}

/// Stops every task of the tree rooted at `root` with its cgroup frozen (so nothing forks or
/// exits meanwhile): every thread is seized while frozen, the cgroup thawed, and the stops
/// awaited. Returns the tasks and whether the cgroup was frozen before (by its owner: it is
/// frozen again when the tasks are let go).
pub fn freeze_in_cgroup(root: i32, freezer: &crate::freeze::Freezer) -> Result<(Vec<Task>, bool), DumpError> {
    let cg = |e: std::io::Error| DumpError::proc(root, &freezer.path().display().to_string(), e);
    let was_frozen = freezer.is_frozen().map_err(cg)?;
    if !was_frozen {
        freezer.freeze().map_err(cg)?;
    }
    // Every process of the cgroup must be in the tree (it would be lost otherwise): checked
    // again now that none can fork or exit.
    let seized = check_cgroup_members(root, freezer).and_then(|()| seize_frozen(root));
    // Thawed in every case: seized tasks then stop for us, the others run on.
    let thawed = freezer.thaw().map_err(cg);
    let mut tasks = match seized {
        Ok(t) => t,
        Err(e) => {
            if was_frozen {
                // Its owner had paused it: paused it stays.
                let _ = freezer.freeze();
            }
            return Err(e);
        }
    };
    thawed?;
    for t in &mut tasks {
        for th in &t.threads {
            th.wait_seized()?;
        }
    }
    Ok((tasks, was_frozen))
}

/// Whether `pid` is there and not ending (a zombie, or gone already, leaves nothing behind).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_ok_and(|st| st.state != 'Z')
}

/// Refuses a cgroup holding a process outside the tree rooted at `root` (a container's
/// process whose parent left it, an exec'd process re-parented outside): freezing and
/// dumping the tree would leave it behind, or lose it.
pub fn check_cgroup_members(root: i32, freezer: &crate::freeze::Freezer) -> Result<(), DumpError> {
    let procs = freezer
        .procs()
        .map_err(|e| DumpError::proc(root, &freezer.path().display().to_string(), e))?;
    let tree: std::collections::BTreeSet<i32> = walk(root).into_iter().collect();
    if let Some(&pid) = procs.iter().find(|&&p| !tree.contains(&p) && alive(p)) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "({}) is in the cgroup {} but not a descendant of pid {root}: it would be left behind",
                comm.trim(),
                freezer.path().display()
            ),
        });
    }
    Ok(())
}

/// Seizes (without waiting) every thread of the frozen tree rooted at `root`.
fn seize_frozen(root: i32) -> Result<Vec<Task>, DumpError> {
    let mut tasks = Vec::new();
    for pid in walk(root) {
        let st = stat(pid)?;
        if st.state == 'Z' {
            tasks.push(Task {
                pid,
                zombie: Some(st.exit_code),
                threads: Vec::new(),
            });
            continue;
        }
        let threads = thread_ids(pid)?
            .into_iter()
            .map(Tracee::seize_pending)
            .collect::<Result<Vec<_>, _>>()?;
        tasks.push(Task {
            pid,
            zombie: None,
            threads,
        });
    }
    Ok(tasks)
}
