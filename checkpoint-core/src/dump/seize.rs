//! Stopping the tree: every thread seized with ptrace, top-down and again until no task is
//! new (a task can fork until it is stopped), or all at once with the tree's cgroup frozen; and
//! the cgroup frozen again when the tasks are let go, if its owner had frozen it.

use std::collections::{BTreeSet, VecDeque};

use parasite::Tracee;

use super::tree::{alive, children, stat, thread_ids, walk, Task};
use super::DumpError;

/// Freezes a cgroup again when dropped (after the tasks were let go).
pub(super) struct Refreeze(pub(super) Option<crate::freeze::Freezer>);

impl Drop for Refreeze {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            if let Err(e) = f.freeze() {
                eprintln!(
                    "stasis: warning: {}: could not freeze it again: {e}",
                    f.path().display()
                );
            }
        }
    }
}

/// Seizes every thread of `pid` (the main thread first), again until no new thread appears.
pub(crate) fn seize_threads(pid: i32) -> Result<Vec<Tracee>, DumpError> {
    let mut threads: Vec<Tracee> = Vec::new();
    loop {
        let tids = thread_ids(pid)?;
        let before = threads.len();
        for tid in tids {
            if !threads.iter().any(|t| t.pid() == tid) {
                threads.push(Tracee::seize(tid)?);
            }
        }
        if threads.len() == before {
            return Ok(threads);
        }
    }
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
            stopped: false,
        }));
    }
    match seize_threads(pid) {
        Ok(threads) => Ok(Some(Task {
            pid,
            zombie: None,
            threads,
            stopped: st.state == 'T',
        })),
        // It died while we looked: a zombie now, or gone.
        Err(e) if !is_root => match stat(pid) {
            Ok(st) if st.state == 'Z' => Ok(Some(Task {
                pid,
                zombie: Some(st.exit_code),
                threads: Vec::new(),
                stopped: false,
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
                stopped: false,
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
            stopped: st.state == 'T',
        });
    }
    Ok(tasks)
}
