//! `stasis restore`: the puppet restore.
//!
//! The images are read and checked first ([`plan`], [`session`]); a container's namespaces get
//! what they held ([`container`]); then every file the tree needs is opened here, in the
//! controller ([`files`], [`prepare`]: pipes are created and refilled). Only then is the root
//! puppet forked at its dumped pid (clone3 set_tid, [`tree`]): a child stopped under ptrace that
//! executes nothing but the single syscalls we inject ([`puppet`]). Each puppet forks its
//! children the same way, sessions and groups are set, zombies end with their exit status, and
//! each live puppet drops our memory, takes its dumped layout, pulls its files from us with
//! pidfd_getfd, gets its registers back. All are let go together. Any failure kills them all.

pub mod container;
pub mod files;
pub mod plan;
pub mod prepare;
pub mod puppet;
pub mod session;
pub mod sockets;
pub mod tree;

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use parasite::Tracee;

pub use files::SharedFiles;
pub use prepare::Prepared;

use crate::image::{ImageDir, ImageError, ImageKind};
use crate::sys;
use plan::{Body, Tree};

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOpts {
    pub images: PathBuf,
    /// Return as soon as the tasks run, instead of waiting for the root to exit.
    pub detach: bool,
    /// Write the restored task's pid here.
    pub pid_file: Option<PathBuf>,
    /// Give the task the caller's terminal for the terminal fds it had, and keep it in the
    /// caller's session.
    pub shell_job: bool,
    /// `fd[N]:KEY`: use our fd N for the dumped file named KEY (a path).
    pub inherit_fds: Vec<(i32, String)>,
    /// Inside a container: write the saved cgroup settings (cgroup.img) into the cgroups its
    /// runtime made (`--manage-cgroups-mode full/strict`).
    pub cgroup_settings: bool,
    /// Inside a container: the mount points its runtime makes (from its config). A saved mount
    /// elsewhere was the container's own, made again (a CRIU image does not say which).
    pub declared_mounts: Vec<String>,
    /// Restore established TCP connections (CRIU's `--tcp-established`).
    pub tcp_established: bool,
    /// Restore established TCP connections closed (CRIU's `--tcp-close`).
    pub tcp_close: bool,
    /// Inside a container: `--external` values (CRIU's forms), e.g. `veth[IF]:OUTSIDE[@BRIDGE]`
    /// for the outside end of a veth pair of its network namespace.
    pub externals: Vec<String>,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub pid: i32,
    /// Processes restored (zombies included).
    pub tasks: usize,
    pub elapsed: Duration,
    /// Wait status of the task, when the restore waited for it.
    pub exit_status: Option<i32>,
}

/// Why a restore failed; what it created was killed, and the images are untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] parasite::Error),
    #[error("{what}")]
    Invalid { what: String },
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("pid {pid} is already in use: the restored process must get its dumped pid")]
    PidTaken { pid: i32 },
    #[error("pid {pid}: {object}: {source}")]
    Object {
        pid: i32,
        object: String,
        source: io::Error,
    },
    #[error("pid {pid}: fd {fd} was {what}, which is outside the dump: restore with --shell-job or --inherit-fd fd[N]:{what}")]
    External { pid: i32, fd: i32, what: String },
}

/// What every puppet starts with (the controller's state, or a container init's), which the
/// restore sets again only where the image differs.
#[derive(Clone, Debug, Default)]
pub struct Inherited {
    pub creds: Option<crate::image::pb::CredsEntry>,
    pub limits: Vec<(u64, u64)>,
    /// Signals whose disposition is not the default one (ignored or caught).
    pub non_default_signals: u64,
    /// Seccomp filters already installed (a container's profile), oldest first.
    pub filters: Vec<Vec<u8>>,
    /// Where the puppets hold a pidfd of the controller (a container init got it from the
    /// runtime); otherwise each puppet opens one itself.
    pub ctl_fd: Option<i32>,
    /// When the puppets cannot take our fds with pidfd_getfd (a container's user namespace
    /// gives them no right over us), `ctl_fd` is their end of a unix socket and this is
    /// ours: we send each fd (SCM_RIGHTS), they receive it.
    pub ctl_socket: Option<Rc<OwnedFd>>,
}

impl Inherited {
    /// The state of task `who` ("self", or a pid) as its puppets will inherit it.
    fn of(who: &str, securebits: u32) -> Inherited {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{who}/{f}")).ok();
        let status = read("status").and_then(|s| crate::procfs::parse_status(&s));
        // A container's init in a user namespace of its own: its ids as it sees them.
        let maps = who.parse().ok().and_then(crate::ns::user::Maps::of);
        let status = status.map(|s| maps.map_or(s.clone(), |m| m.status_inside(s)));
        Inherited {
            creds: status.as_ref().map(|s| crate::model::creds::creds_entry(s, securebits)),
            limits: read("limits")
                .and_then(|t| crate::procfs::parse_limits(&t))
                .unwrap_or_default(),
            non_default_signals: status.map_or(u64::MAX, |s| s.sig_ignored | s.sig_caught),
            filters: Vec::new(),
            ctl_fd: None,
            ctl_socket: None,
        }
    }
}

/// Turns an io::Error about `what` of task `pid` into a restore error.
fn object(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let object = what.into();
    move |source| RestoreError::Object { pid, object, source }
}

/// Runs `f` inside `container` (our pid for its init), or here.
fn in_place<T: Send>(container: Option<i32>, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    match container {
        Some(pid) => sys::in_container(pid, f),
        None => f(),
    }
}

/// A container's init, made by the container's runtime (every namespace, mount and cgroup of
/// the container set up) and taken over right after its exec: the root of the restored tree.
pub struct ContainerInit {
    pub init: Tracee,
    /// The fd at which the init holds a pidfd of this process (passed by the runtime), or,
    /// with `ctl_socket`, its end of a unix socket pair.
    pub ctl_fd: i32,
    /// Our end of that socket pair (a container with a user namespace of its own).
    pub ctl_socket: Option<OwnedFd>,
}

/// Writes `stats-restore` (CRIU's restore statistics: the restore time) into `dir`.
pub fn write_stats(dir: &std::path::Path, report: &RestoreReport) -> Result<(), ImageError> {
    let us = report.elapsed.as_micros().min(u128::from(u32::MAX)) as u32;
    ImageDir::open(dir)?.write_all(
        ImageKind::StatsRestore,
        0,
        &[crate::image::pb::StatsEntry {
            dump: None,
            restore: Some(crate::image::pb::RestoreStatsEntry {
                restore_time: us,
                ..Default::default()
            }),
        }],
    )
}

/// The program the root task of the images in `images` runs (its path as it saw it).
pub fn root_program(images: &std::path::Path) -> Result<String, RestoreError> {
    let dir = ImageDir::open(images)?;
    let tree = Tree::load(&dir)?;
    let (_, root) = tree.alive().next().ok_or_else(|| RestoreError::Invalid {
        what: "the images hold no live task".into(),
    })?;
    Ok(root.exe.clone())
}

/// Restores the process tree in `opts.images`.
pub fn restore(opts: &RestoreOpts) -> Result<RestoreReport, RestoreError> {
    restore_tree(opts, None)
}

/// Restores the process tree in `opts.images` into a container: `c.init` becomes its root
/// (it must be the dumped root's pid in its pid namespace), the others are created inside.
/// Returns at once (the container's runtime waits for it). On failure the init is killed.
pub fn restore_into(opts: &RestoreOpts, c: ContainerInit) -> Result<RestoreReport, RestoreError> {
    let host = c.init.pid();
    let result = restore_tree(opts, Some((c.init, c.ctl_fd, c.ctl_socket)));
    if result.is_err() {
        // Let go (detached on drop) or killed with the other puppets already: make sure.
        let _ = parasite::sys::kill(host, libc::SIGKILL);
    }
    result
}

/// The container's init, its fd for us, and our end of its control socket (if any).
type Container = (Tracee, i32, Option<OwnedFd>);

/// Restores the tree in `opts.images`, into `container` if given.
fn restore_tree(opts: &RestoreOpts, container: Option<Container>) -> Result<RestoreReport, RestoreError> {
    let start = Instant::now();
    let dir = ImageDir::open(&opts.images)?;
    let tree = Tree::load(&dir)?;
    let (setup, steps) = session::plan(&tree, opts.shell_job)?;
    let pid0 = tree.tasks[0].pid;
    let mut shared = SharedFiles::default();
    let (mut init, inherited) = match container {
        Some(c) => {
            let (init, inherited) = container::prepare(&dir, &tree, opts, c, &mut shared)?;
            (Some(init), inherited)
        }
        None => {
            // (a container's pid namespace is new: only its init is there)
            tree::check_pids_free(&tree, session::helper_pids(&steps))?;
            (None, Inherited::of("self", sys::securebits().unwrap_or(0)))
        }
    };
    let inherited = Rc::new(inherited);
    // The socket files made here go again if the restore fails.
    let mut bound = crate::fds::unix::Bound::default();
    if !tree.unix.is_empty() {
        let rebuild = || crate::fds::unix::rebuild(&tree.unix, &tree.unix_queues);
        // A container's sockets are made in its network namespace, their names in its
        // filesystem.
        let made = match &init {
            Some(t) => sys::in_container(t.pid(), rebuild),
            None => rebuild(),
        };
        let (sockets, made) = made.map_err(object(pid0, "unix sockets"))?;
        bound = made;
        if let Some(root) = &shared.root {
            bound.inside(root.try_clone().map_err(object(pid0, "the container's root"))?);
        }
        shared
            .by_id
            .extend(sockets.into_iter().map(|(id, fd)| (id, Rc::new(fd))));
    }
    let mut sockets = sockets::make(&tree, &dir, opts, init.as_ref().map(|t| t.pid()))?;
    shared.by_id.extend(std::mem::take(&mut sockets.by_id));
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(tree.tasks.len());
    for t in &tree.tasks {
        prepared.push(match &t.body {
            Body::Alive(plan) => Some(prepare::prepare(&dir, &tree, plan, opts, &mut shared, &inherited)?),
            Body::Zombie { .. } => None,
        });
    }
    let contained = init.is_some();
    let root = match init.take() {
        Some(t) => t,
        None => tree::fork_root(&tree, setup)?,
    };
    let pid = root.pid();
    let mut puppets = tree::Puppets {
        leaders: (0..tree.tasks.len()).map(|_| None).collect(),
        threads: Vec::new(),
        helpers: Vec::new(),
    };
    puppets.leaders[0] = Some(root);
    let uts_here = tree.uts.as_ref().filter(|_| contained);
    if let Err(e) =
        tree::build_tree(&tree, &steps, &prepared, &mut puppets, uts_here).and_then(|()| sockets.connect(pid))
    {
        puppets.kill_all();
        return Err(e);
    }
    bound.keep();
    // The links the dump made (--link-remap) have served: removed (a container's in its root).
    for link in &tree.link_remaps {
        let ours = if contained {
            format!("/proc/{pid}/root{link}")
        } else {
            link.clone()
        };
        let _ = std::fs::remove_file(ours);
    }
    // A process that was stopped gets SIGSTOP while every thread is still held: it is taken
    // on the way out of the last stop, before any of its code runs, and stops it again.
    // (Our view of its pid: a container's tasks have other pids inside.)
    for (i, _) in tree.alive().filter(|(_, p)| p.stopped) {
        let Some(ours) = puppets.leaders.get(i).and_then(|t| t.as_ref()).map(Tracee::pid) else {
            continue;
        };
        if let Err(e) = sys::send_signal(ours, libc::SIGSTOP) {
            puppets.kill_all();
            return Err(object(ours, "stopping it again")(e));
        }
    }
    // Let everything go: the other threads first, then each process.
    for t in puppets.threads {
        t.detach()?;
    }
    for t in puppets.leaders.into_iter().flatten() {
        t.detach()?;
    }
    drop(prepared);
    drop(shared);
    // The tree runs whatever happens here: a lock that cannot be lifted is reported.
    if let Err(e) = sockets.unlock(pid) {
        eprintln!("stasis: warning: {e}");
    }
    if let Some(path) = &opts.pid_file {
        std::fs::write(path, pid.to_string()).map_err(object(pid, format!("pid file {}", path.display())))?;
    }
    let elapsed = start.elapsed();
    let exit_status = if opts.detach || contained {
        None
    } else {
        Some(sys::wait_exit(pid).map_err(object(pid, "waiting for the restored process"))?)
    };
    Ok(RestoreReport {
        pid,
        tasks: tree.tasks.len(),
        elapsed,
        exit_status,
    })
}
