//! Sessions and process groups: the order in which the tree's processes are created, and the
//! setsid/setpgid calls that give each its dumped session and group.
//!
//! A child is born in its parent's session and group, and `setsid` can only start a new
//! session. So a child whose session is its parent's *previous* one (the parent called setsid
//! after forking it) is created before the parent's setsid, the others after. Groups are joined
//! once every process exists: group leaders first, then the members. A group whose leader is
//! gone (it exited, its members lived on) is made by a helper: a process forked at the
//! leader's pid by one of the members, which starts the group, waits for the members to join
//! it, then exits and is reaped by the member that forked it. A session whose leader is gone
//! (a daemon that forked twice, its middle process gone, adopted by a subreaper or a pid
//! namespace's init) is made the same way: the adopter forks a helper at the leader's pid,
//! which starts the session and forks the members the adopter had adopted; it then exits, is
//! reaped by the adopter, and its children are the adopter's again (it is made a subreaper
//! first, as it was at the dump). Other trees whose sessions cannot be rebuilt are refused
//! before anything is created.

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
    /// `parent` forks a helper at `pid`, which starts session `pid` (and its group).
    SessionHelper { parent: usize, pid: i32 },
    /// The session helper at `helper` forks `child` at its dumped pid.
    ForkFromHelper { helper: i32, child: usize },
    /// `parent` becomes a subreaper; the session helper at `pid` exits, and `parent` reaps it
    /// and adopts its children.
    EndSessionHelper { parent: usize, pid: i32 },
}

/// The pids the helpers of `steps` take.
pub fn helper_pids(steps: &[Step]) -> impl Iterator<Item = i32> + '_ {
    steps.iter().filter_map(|s| match *s {
        Step::Helper { pid, .. } | Step::SessionHelper { pid, .. } => Some(pid),
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
        } else if t.pgid == t.sid
            && steps
                .iter()
                .any(|s| matches!(*s, Step::SessionHelper { pid, .. } if pid == t.sid))
        {
            // In the group its session helper started: every process of the session was born
            // in it (groups are changed only once every process exists).
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
    // Children in a session whose leader is gone, by session: forked by a helper at its pid.
    let mut adopted: Vec<(i32, Vec<usize>)> = Vec::new();
    for &c in &children {
        if forked[c] {
            continue;
        }
        let ch = &tree.tasks[c];
        if ch.sid != ch.pid && ch.sid != sid_now {
            let leader_gone = ch.sid > 0 && !tree.tasks.iter().any(|o| o.pid == ch.sid);
            if !(leader_gone && adopts(tree, i)) {
                return Err(RestoreError::Unsupported {
                    pid: ch.pid,
                    what: format!(
                        "its session {} is not its parent's (pid {}, session {}), and {}: it cannot be rebuilt",
                        ch.sid,
                        t.pid,
                        sid_now,
                        if leader_gone {
                            "its parent was no subreaper to adopt it"
                        } else {
                            "its leader is elsewhere in the tree"
                        }
                    ),
                });
            }
            match adopted.iter_mut().find(|(sid, _)| *sid == ch.sid) {
                Some((_, kids)) => kids.push(c),
                None => adopted.push((ch.sid, vec![c])),
            }
            continue;
        }
        fork(c, forked, steps, sid_now)?;
    }
    for (sid, kids) in adopted {
        steps.push(Step::SessionHelper { parent: i, pid: sid });
        for c in kids {
            forked[c] = true;
            steps.push(Step::ForkFromHelper { helper: sid, child: c });
            visit(tree, c, sid, forked, steps)?;
        }
        steps.push(Step::EndSessionHelper { parent: i, pid: sid });
    }
    Ok(())
}

/// Whether task `i` adopts the orphans of its descendants: a subreaper at the dump, or the
/// init of a pid namespace (a container's, pid 1 inside).
fn adopts(tree: &Tree, i: usize) -> bool {
    let t = &tree.tasks[i];
    let subreaper = match &t.body {
        super::plan::Body::Alive(plan) => plan.core.tc.as_ref().and_then(|tc| tc.child_subreaper) == Some(true),
        super::plan::Body::Zombie { .. } => false,
    };
    subreaper || t.pid == 1
}
