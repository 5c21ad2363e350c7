//! The process tree made again: the root puppet forked at its pid (or a container's init taken
//! over), each child forked by its parent puppet, sessions and groups set, zombies ended, and
//! every live task built ([`super::puppet`]); all stay stopped until they are let go together.

use parasite::Tracee;

use super::plan::{Body, Tree};
use super::prepare::Prepared;
use super::{puppet, session, RestoreError};
use crate::sys::{self, PuppetSetup};

/// The puppets made so far, by task index; all are killed if the restore fails.
#[derive(Default)]
pub(super) struct Puppets {
    pub(super) leaders: Vec<Option<Tracee>>,
    pub(super) threads: Vec<Tracee>,
    /// Helpers that start the groups whose leaders are gone (by their pid inside), until they
    /// exit.
    pub(super) helpers: Vec<(i32, Tracee)>,
}

impl Puppets {
    fn get(&self, i: usize) -> Result<&Tracee, RestoreError> {
        self.leaders
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| RestoreError::Invalid {
                what: format!("task {i} was not created"),
            })
    }

    /// Kills every puppet, children before parents.
    pub(super) fn kill_all(self) {
        for t in self.threads {
            t.forget();
        }
        for (_, t) in self.helpers {
            t.kill();
        }
        for t in self.leaders.into_iter().rev().flatten() {
            t.kill();
        }
    }
}

/// A UTS name as the kernel keeps it: at most 64 bytes, NUL-padded.
fn name65(name: &str) -> [u8; 65] {
    let mut out = [0u8; 65];
    for (d, s) in out.iter_mut().zip(name.bytes().take(64)) {
        *d = s;
    }
    out
}

/// Refuses to start when any pid of the tree is in use (nothing is created).
pub(super) fn check_pids_free(tree: &Tree, helpers: impl Iterator<Item = i32>) -> Result<(), RestoreError> {
    let threads = tree.tasks.iter().flat_map(|t| {
        let tids = match &t.body {
            Body::Alive(plan) => plan.threads.iter().map(|(tid, _)| *tid).collect(),
            Body::Zombie { .. } => Vec::new(),
        };
        std::iter::once(t.pid).chain(tids)
    });
    match threads
        .chain(helpers)
        .find(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        Some(pid) => Err(RestoreError::PidTaken { pid }),
        None => Ok(()),
    }
}

/// Forks the root puppet at the dumped root's pid, in the session, group and UTS namespace
/// the plan gives it.
pub(super) fn fork_root(tree: &Tree, setup: session::RootSetup) -> Result<Tracee, RestoreError> {
    check_pids_free(tree, std::iter::empty())?;
    let pid = tree.tasks[0].pid;
    let child = sys::fork_puppet(
        pid,
        PuppetSetup {
            setsid: setup.setsid,
            setpgid: setup.setpgid,
            uts: tree.uts.as_ref().map(|u| (name65(&u.nodename), name65(&u.domainname))),
        },
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => RestoreError::PidTaken { pid },
        _ => RestoreError::Object {
            pid,
            object: "clone3 with set_tid".into(),
            source: e,
        },
    })?;
    let root = match Tracee::adopt_child(child) {
        Ok(t) => t,
        Err(e) => {
            let _ = parasite::sys::kill(child, libc::SIGKILL);
            let _ = parasite::sys::waitpid(child, libc::__WALL);
            return Err(e.into());
        }
    };
    // The root's new UTS namespace was made by the puppet itself, with raw syscalls: check it.
    if tree.uts.is_some() {
        use std::os::unix::fs::MetadataExt;
        let ino = |who: String| std::fs::metadata(format!("/proc/{who}/ns/uts")).map(|m| m.ino()).ok();
        if ino(pid.to_string()) == ino("self".into()) {
            root.kill();
            return Err(RestoreError::Invalid {
                what: format!("pid {pid}: could not enter a new UTS namespace"),
            });
        }
    }
    Ok(root)
}

/// Forks a helper at `pid` from task `parent`; it is kept first (a failure from here on kills
/// it with the rest).
fn start_helper(puppets: &mut Puppets, parent: usize, scratch: u64, pid: i32) -> Result<&Tracee, RestoreError> {
    let h = puppet::fork_child(puppets.get(parent)?, scratch, pid)?;
    puppets.helpers.push((pid, h));
    Ok(&puppets.helpers.last().expect("just pushed").1)
}

/// The helper at `pid`, no longer kept (it is ended next).
fn take_helper(puppets: &mut Puppets, pid: i32) -> Result<Tracee, RestoreError> {
    let at = puppets.helpers.iter().position(|(p, _)| *p == pid);
    at.map(|i| puppets.helpers.remove(i).1)
        .ok_or_else(|| RestoreError::Invalid {
            what: format!("helper {pid} was not created"),
        })
}

/// Creates every process of the tree (in the order of `steps`), ends the zombies, and builds
/// every live process; all stay stopped in `puppets`. With `uts_here`, the root sets these
/// names in the UTS namespace it is in.
pub(super) fn build_tree(
    tree: &Tree,
    steps: &[session::Step],
    prepared: &[Option<Prepared>],
    puppets: &mut Puppets,
    uts_here: Option<&crate::image::pb::UtsnsEntry>,
) -> Result<(), RestoreError> {
    let root = puppets.get(0)?;
    let targets: Vec<&crate::image::pb::MmEntry> = tree.alive().map(|(_, p)| &p.mm).collect();
    let scratch = puppet::choose_scratch(root.pid(), &puppet::own_maps(root.pid())?, &targets)?;
    puppet::make_scratch(root, scratch)?;
    if let Some(uts) = uts_here {
        // A container's init is in the container's UTS namespace already: its names.
        puppet::set_uts_names(root, scratch, &uts.nodename, &uts.domainname)?;
    }

    // Each live task's memory is laid out before it forks (its children inherit it, pages
    // shared copy-on-write), the rest of it once every process exists. `from[i]`: the task
    // whose built memory task i was forked with; by helper pid, the task a helper was forked
    // from.
    let n = tree.tasks.len();
    let mut memory: Vec<Option<puppet::Memory>> = (0..n).map(|_| None).collect();
    let mut from: Vec<Option<usize>> = vec![None; n];
    let mut helper_from: Vec<(i32, usize)> = Vec::new();
    let lay_out = |i: usize,
                   memory: &mut Vec<Option<puppet::Memory>>,
                   from: &[Option<usize>],
                   puppets: &Puppets|
     -> Result<(), RestoreError> {
        let Body::Alive(plan) = &tree.tasks[i].body else {
            return Ok(());
        };
        if memory[i].is_some() {
            return Ok(());
        }
        let prep = prepared[i].as_ref().ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {}: nothing prepared", plan.pid),
        })?;
        let parent = from[i].and_then(|p| match (&tree.tasks[p].body, &memory[p]) {
            (Body::Alive(pp), Some(m)) => Some((&**pp, m)),
            _ => None,
        });
        let laid_out = puppet::build_memory(puppets.get(i)?, plan, prep, scratch, parent)?;
        memory[i] = Some(laid_out);
        Ok(())
    };
    for step in steps {
        match *step {
            session::Step::Fork { parent, child } => {
                lay_out(parent, &mut memory, &from, puppets)?;
                let t = puppet::fork_child(puppets.get(parent)?, scratch, tree.tasks[child].pid)?;
                puppets.leaders[child] = Some(t);
                from[child] = Some(parent);
            }
            session::Step::Setsid(i) => {
                puppet::call(puppets.get(i)?, scratch, "setsid", libc::SYS_setsid, [0; 6])?;
            }
            session::Step::Helper { parent, pid } => {
                lay_out(parent, &mut memory, &from, puppets)?;
                let h = start_helper(puppets, parent, scratch, pid)?;
                puppet::call(h, scratch, "setpgid(helper)", libc::SYS_setpgid, [0; 6])?;
            }
            session::Step::EndHelper { parent, pid } => {
                let h = take_helper(puppets, pid)?;
                // The helper's pid is ours for it; the parent reaps it by its pid inside.
                puppet::end_helper(h, puppets.get(parent)?, scratch, pid)?;
            }
            session::Step::SessionHelper { parent, pid } => {
                lay_out(parent, &mut memory, &from, puppets)?;
                helper_from.push((pid, parent));
                let h = start_helper(puppets, parent, scratch, pid)?;
                puppet::call(h, scratch, "setsid(helper)", libc::SYS_setsid, [0; 6])?;
            }
            session::Step::ForkFromHelper { helper, child } => {
                let h = puppets
                    .helpers
                    .iter()
                    .find(|(p, _)| *p == helper)
                    .map(|(_, h)| h)
                    .ok_or_else(|| RestoreError::Invalid {
                        what: format!("session helper {helper} was not created"),
                    })?;
                let t = puppet::fork_child(h, scratch, tree.tasks[child].pid)?;
                puppets.leaders[child] = Some(t);
                from[child] = helper_from
                    .iter()
                    .find(|(p, _)| *p == helper)
                    .map(|&(_, parent)| parent);
            }
            session::Step::EndSessionHelper { parent, pid } => {
                let h = take_helper(puppets, pid)?;
                let adopter = puppets.get(parent)?;
                // The helper's children go to the nearest subreaper when it ends: the adopter
                // (a subreaper at the dump; its build sets the flag again).
                puppet::call(
                    adopter,
                    scratch,
                    "prctl(PR_SET_CHILD_SUBREAPER)",
                    libc::SYS_prctl,
                    [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
                )?;
                puppet::end_helper(h, adopter, scratch, pid)?;
            }
            session::Step::Setpgid { task, pgid } => {
                let own = pgid == tree.tasks[task].pid;
                let arg = if own { 0 } else { pgid as u64 };
                puppet::call(
                    puppets.get(task)?,
                    scratch,
                    "setpgid",
                    libc::SYS_setpgid,
                    [0, arg, 0, 0, 0, 0],
                )?;
            }
        }
    }

    // Zombies end now; their parents forget the SIGCHLDs (they were handled before the dump).
    let mut parents = Vec::new();
    for (i, t) in tree.tasks.iter().enumerate() {
        if let Body::Zombie { exit_code, comm } = &t.body {
            let z = puppets.leaders[i].take().ok_or_else(|| RestoreError::Invalid {
                what: format!("pid {}: the zombie was not created", t.pid),
            })?;
            puppet::make_zombie(z, scratch, *exit_code, comm)?;
            parents.extend(t.parent);
        }
    }
    parents.sort_unstable();
    parents.dedup();
    for p in parents {
        puppet::drain_sigchld(puppets.get(p)?, scratch)?;
    }

    // Every memory first (a child's needs its parent's), then the rest of every process.
    for (i, _) in tree.alive() {
        lay_out(i, &mut memory, &from, puppets)?;
    }
    for (i, plan) in tree.alive() {
        let prep = prepared[i].as_ref().ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {}: nothing prepared", plan.pid),
        })?;
        let laid_out = memory[i].take().ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {}: its memory was not laid out", plan.pid),
        })?;
        let threads = puppet::build(puppets.get(i)?, plan, prep, scratch, i == 0, &tree.seccomp, laid_out)?;
        puppets.threads.extend(threads);
    }
    Ok(())
}
