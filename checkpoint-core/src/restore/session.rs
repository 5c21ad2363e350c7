//! Sessions and process groups: the order in which the tree's processes are created, and the
//! setsid/setpgid calls that give each its dumped session and group.
//!
//! A child is born in its parent's session and group, and `setsid` can only start a new
//! session. So a child whose session is its parent's *previous* one (the parent called setsid
//! after forking it) is created before the parent's setsid, the others after. Groups are joined
//! once every process exists: group leaders first, then the members. A group whose leader is
//! gone (it exited, its members lived on) is made by a helper: a process forked at the
//! leader's pid by one of the members, which starts the group, waits for the members to join
//! it, then exits and is reaped by the member that forked it. A session whose leader is not in
//! the tree would need its members to descend from a helper: such trees are refused before
//! anything is created.

use super::plan::Tree;
use super::RestoreError;

/// One step of building the tree. Indices are into [`Tree::tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `parent` forks `child` at its dumped pid.
    Fork { parent: usize, child: usize },
    /// The task starts its own session.
    Setsid(usize),
    /// The task joins (or, when `pgid` is its own pid, creates) process group `pgid`.
    Setpgid { task: usize, pgid: i32 },
    /// `parent` forks a helper at `pid`, which starts process group `pid`.
    Helper { parent: usize, pid: i32 },
    /// The helper at `pid` exits, and `parent` reaps it.
    EndHelper { parent: usize, pid: i32 },
}

/// The pids the helpers of `steps` take.
pub fn helper_pids(steps: &[Step]) -> impl Iterator<Item = i32> + '_ {
    steps.iter().filter_map(|s| match *s {
        Step::Helper { pid, .. } => Some(pid),
        _ => None,
    })
}

/// How the root process is made, by the controller that forks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootSetup {
    pub setsid: bool,
    pub setpgid: bool,
}

/// The root's setup and the steps that build the rest of the tree. With `shell_job`, the root
/// stays in the caller's session and group.
pub fn plan(tree: &Tree, shell_job: bool) -> Result<(RootSetup, Vec<Step>), RestoreError> {
    let tasks = &tree.tasks;
    let root = &tasks[0];
    let setup = RootSetup {
        setsid: !shell_job && root.sid == root.pid,
        setpgid: !shell_job && root.sid != root.pid && root.pgid == root.pid,
    };
    let mut steps = Vec::new();
    let mut forked = vec![false; tasks.len()];
    forked[0] = true;
    // The root's session as its children see it: its own, or the one it stays in.
    visit(tree, 0, root.sid, &mut forked, &mut steps)?;

    // Groups: leaders first, then members; session leaders already lead their group.
    let root_group_is_ours = !setup.setsid && !setup.setpgid;
    let mut members = Vec::new();
    let mut helpers = Vec::new();
    for (i, t) in tasks.iter().enumerate().skip(1) {
        if t.sid == t.pid {
            continue;
        }
        if t.pgid == t.pid {
            steps.push(Step::Setpgid { task: i, pgid: t.pid });
        } else if tasks.iter().any(|o| o.pid == t.pgid) {
            members.push(Step::Setpgid { task: i, pgid: t.pgid });
        } else if !(root_group_is_ours && t.pgid == root.pgid) {
            // A group whose leader is gone: its first member forks the helper that starts it.
            if t.pgid <= 0 {
                return Err(RestoreError::Invalid {
                    what: format!("pstree.img: pid {} is in process group {}", t.pid, t.pgid),
                });
            }
            if !helpers.iter().any(|&(_, pid)| pid == t.pgid) {
                helpers.push((i, t.pgid));
            }
            members.push(Step::Setpgid { task: i, pgid: t.pgid });
        }
    }
    steps.extend(helpers.iter().map(|&(parent, pid)| Step::Helper { parent, pid }));
    steps.extend(members);
    steps.extend(helpers.iter().map(|&(parent, pid)| Step::EndHelper { parent, pid }));
    Ok((setup, steps))
}

/// Forks the children of task `i` (born in session `inherited_sid`), calling its setsid at
/// the point that gives every child its dumped session.
fn visit(
    tree: &Tree,
    i: usize,
    inherited_sid: i32,
    forked: &mut [bool],
    steps: &mut Vec<Step>,
) -> Result<(), RestoreError> {
    let t = &tree.tasks[i];
    let children: Vec<usize> = (0..tree.tasks.len())
        .filter(|&c| tree.tasks[c].parent == Some(i))
        .collect();
    let fork = |c: usize, forked: &mut [bool], steps: &mut Vec<Step>, sid: i32| -> Result<(), RestoreError> {
        forked[c] = true;
        steps.push(Step::Fork { parent: i, child: c });
        visit(tree, c, sid, forked, steps)
    };
    let mut sid_now = inherited_sid;
    if i != 0 && t.sid == t.pid {
        // Children still in the session this task left: fork them before it leaves.
        for &c in &children {
            let ch = &tree.tasks[c];
            if ch.sid != ch.pid && ch.sid == inherited_sid && ch.sid != t.sid {
                fork(c, forked, steps, inherited_sid)?;
            }
        }
        steps.push(Step::Setsid(i));
        sid_now = t.pid;
    } else if i == 0 {
        sid_now = t.sid;
    }
    for &c in &children {
        if forked[c] {
            continue;
        }
        let ch = &tree.tasks[c];
        if ch.sid != ch.pid && ch.sid != sid_now {
            return Err(RestoreError::Unsupported {
                pid: ch.pid,
                what: format!(
                    "its session {} is not its parent's (pid {}, session {}): rebuilding it needs a helper process",
                    ch.sid, t.pid, sid_now
                ),
            });
        }
        fork(c, forked, steps, sid_now)?;
    }
    Ok(())
}
