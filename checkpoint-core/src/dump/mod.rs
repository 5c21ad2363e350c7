//! `stasis dump`: checkpoint a running process from the outside.
//!
//! Checks that every object is supported before freezing ([`precheck`], [`container`]), seizes
//! the tree with ptrace ([`tree`], [`seize`]), reads what `/proc` and ptrace show of each task
//! ([`task`], [`thread`], [`files`]), injects single syscalls for the rest ([`injected`]), streams
//! the pages ([`mm`]), writes CRIU images ([`frozen`], [`files_image`]), and only then kills the
//! tasks (or lets them run on). Any error detaches: the tasks keep running as if nothing happened.

pub mod container;
pub mod files;
pub mod files_image;
pub mod files_unlinked;
pub mod frozen;
pub mod injected;
pub mod mm;
pub mod precheck;
pub mod seize;
pub mod task;
pub mod thread;
pub mod tree;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::image::{ImageDir, ImageError};
use crate::sys;
use seize::Refreeze;

/// What to dump and how.
#[derive(Clone, Debug)]
pub struct DumpOpts {
    pub pid: i32,
    pub images: PathBuf,
    /// Let the task run on after the dump instead of killing it.
    pub leave_running: bool,
    /// The task belongs to the caller's shell session: its terminal fds are recorded.
    pub shell_job: bool,
    /// Allow datagram unix sockets connected to a socket outside the tree (reconnected by
    /// name on restore).
    pub ext_unix_sk: bool,
    /// Save file locks (without it, a task holding one is refused).
    pub file_locks: bool,
    /// Freeze the tree through this cgroup (v1 freezer or v2) while seizing it; a cgroup frozen
    /// before is frozen again when the tasks are let go.
    pub freeze_cgroup: Option<PathBuf>,
    /// The tree is a container's: its pid, mount, network, IPC, UTS and cgroup namespaces are
    /// accepted (its runtime makes them again on restore) and checked against this.
    pub container: Option<crate::ns::ContainerSpec>,
    /// Save established TCP connections (repair mode); without it they are refused.
    pub tcp_established: bool,
    /// Save established TCP connections as closed sockets (the restore makes them closed).
    pub tcp_close: bool,
    /// Connections waiting in a listener's queue are left out (their clients see them
    /// reset) instead of refusing the dump.
    pub skip_in_flight: bool,
    /// How connections are locked while they are read and until the restore.
    pub network_lock: crate::netlock::Method,
    /// The largest unlinked file whose contents are saved (`--ghost-limit`).
    pub ghost_limit: u64,
    /// Link unlinked files that cannot be saved back into the filesystem (`--link-remap`):
    /// one unlinked from its name but linked elsewhere, one over the ghost limit.
    pub link_remap: bool,
}

/// What a dump did.
#[derive(Clone, Debug)]
pub struct DumpReport {
    pub pid: i32,
    /// Processes dumped (zombies included).
    pub tasks: usize,
    pub vmas: usize,
    pub pages_scanned: u64,
    pub pages_written: u64,
    /// How long the task was stopped.
    pub frozen: Duration,
    pub elapsed: Duration,
}

/// Why a dump failed; the task was left running, untraced.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] parasite::Error),
    #[error("pid {pid}: {path}: {source}")]
    Proc { pid: i32, path: String, source: io::Error },
    #[error("pid {pid}: cannot parse /proc/{pid}/{file}")]
    Parse { pid: i32, file: &'static str },
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("pid {pid}: fd {fd} is a terminal ({path}); dump a shell job with --shell-job")]
    NeedShellJob { pid: i32, fd: i32, path: String },
}

impl DumpError {
    fn proc(pid: i32, path: &str, source: io::Error) -> DumpError {
        DumpError::Proc {
            pid,
            path: path.to_owned(),
            source,
        }
    }
}

pub(crate) fn read_proc(pid: i32, file: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{file}");
    fs::read_to_string(&path).map_err(|e| DumpError::proc(pid, &path, e))
}

fn readlink_proc(pid: i32, file: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{file}");
    fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| DumpError::proc(pid, &path, e))
}

/// Dumps the process tree rooted at `opts.pid` into `opts.images`.
pub fn dump(opts: &DumpOpts) -> Result<DumpReport, DumpError> {
    let start = Instant::now();
    // Ctrl-C and friends wait until the tasks are let go (they are delivered when this returns).
    let _held = sys::HoldSignals::new();
    if !Path::new(&format!("/proc/{}", opts.pid)).exists() {
        return Err(DumpError::Remote(parasite::Error::NoSuchProcess { pid: opts.pid }));
    }
    let sockets = precheck::unix_table(opts)?;
    let container_mounts = match &opts.container {
        Some(spec) => container::check_container(opts.pid, spec)?,
        None => None,
    };
    let mut tables = Vec::new();
    for pid in tree::walk(opts.pid) {
        match precheck::precheck(pid, opts, &sockets, container_mounts.as_ref().map(|v| &v.ids)) {
            Ok(Some(t)) => tables.push((pid, t)),
            Ok(None) => {}
            // A task that ended while we looked (a short-lived child) is simply not there.
            Err(_) if pid != opts.pid && !tree::alive(pid) => {}
            Err(e) => return Err(e),
        }
    }
    precheck::check_unix_peers(&tables, &sockets, opts.ext_unix_sk)?;
    precheck::check_ptys(&tables, opts.shell_job)?;
    let freezer = match &opts.freeze_cgroup {
        Some(p) => {
            Some(crate::freeze::Freezer::at(p).map_err(|e| DumpError::proc(opts.pid, &p.display().to_string(), e))?)
        }
        None => None,
    };
    if let Some(f) = &freezer {
        seize::check_cgroup_members(opts.pid, f)?;
    }
    let dir = ImageDir::create(&opts.images)?;
    // The tasks are stopped from the moment the freeze begins.
    let frozen_at = Instant::now();
    let (tasks, refreeze) = match &freezer {
        Some(f) => seize::freeze_in_cgroup(opts.pid, f)?,
        None => (seize::freeze(opts.pid)?, false),
    };
    // Whatever happens next, a cgroup its owner had frozen is frozen again when we let go
    // (unless its tasks were killed: they must run to end).
    let mut refreeze = Refreeze(freezer.filter(|_| refreeze));
    // On error every thread detaches on drop.
    let (mut report, repaired) = frozen::dump_frozen(&tasks, &dir, opts, container_mounts.as_ref(), frozen_at)?;
    if opts.leave_running {
        // The connections talk again, then the tasks run.
        repaired
            .resume()
            .map_err(|e| DumpError::proc(opts.pid, "TCP connections after the dump", e))?;
        for t in tasks.into_iter().flat_map(|t| t.threads) {
            t.detach()?;
        }
    } else {
        refreeze.0 = None;
        repaired.before_kill();
        // SIGKILL cannot be blocked or caught: the tasks are gone from here on. Their memory is
        // freed by the kernel after we return (waiting for it cost ~10% of a dump), and their
        // parents reap them as usual.
        for t in tasks.iter().filter(|t| !t.is_zombie()) {
            let _ = parasite::sys::kill(t.pid, libc::SIGKILL);
        }
        // Their connections close in repair mode: the peers hear nothing, and stay locked
        // out until the restore.
        repaired.keep_locked();
        if opts.container.is_some() {
            // Their ends are reported to us, their tracer, before their parents: a container's
            // init ends only once every other task of its pid namespace is reaped, and its
            // runtime waits for that. Taken here, children before parents.
            for t in tasks.into_iter().rev().flat_map(|t| t.threads.into_iter().rev()) {
                t.reap_killed();
            }
        } else {
            for t in tasks.into_iter().flat_map(|t| t.threads) {
                t.forget();
            }
        }
    }
    report.frozen = frozen_at.elapsed();
    report.elapsed = start.elapsed();
    Ok(report)
}
