//! `stasis dump`: checkpoint a running process from the outside.
//!
//! Checks that every object is supported before freezing, seizes the task with ptrace, reads
//! what `/proc` and ptrace show, injects single syscalls for the rest ([`task`]), streams the
//! pages ([`mm`]), writes CRIU images, and only then kills the task (or lets it run on). Any
//! error detaches: the task keeps running as if nothing happened.

pub mod files;
pub mod mm;
pub mod task;
pub mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parasite::Tracee;

use crate::image::pages::PageImageWriter;
use crate::image::pb::{self, FdTypes};
use crate::image::{ImageDir, ImageError, ImageKind};
use crate::{fds, procfs, sys, x86};
use files::{FdTable, FileKind};

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

/// Freezes a cgroup again when dropped (after the tasks were let go).
struct Refreeze(Option<crate::freeze::Freezer>);

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

/// A task in namespaces other than ours would come back in ours: only a UTS namespace (whose
/// names are saved) and a container's namespaces (made again by its runtime, checked by
/// [`check_container`]) are accepted; each task of a container shares its root's.
fn check_namespaces(pid: i32, root: i32, opts: &DumpOpts) -> Result<(), DumpError> {
    for kind in crate::ns::own_kinds(pid).into_iter().filter(|&k| k != "uts") {
        let refuse = |what: String| Err(DumpError::Unsupported { pid, what });
        if opts.container.is_none() {
            return refuse(format!(
                "runs in its own {kind} namespace: only a container's namespaces are saved (checkpoint it with stasis-runc)"
            ));
        }
        if kind == "time" {
            return refuse(format!("runs in its own {kind} namespace, which is not saved yet"));
        }
        // (A task ending as we look has no namespaces to read: not a nested one.)
        let theirs = crate::ns::inode(&pid.to_string(), kind);
        if theirs.is_some() && theirs != crate::ns::inode(&root.to_string(), kind) {
            return refuse(format!(
                "runs in a {kind} namespace of its own inside the container: nested namespaces are not saved"
            ));
        }
    }
    Ok(())
}

/// A container's namespaces, checked at its root (its init) before anything is frozen: it is
/// the init of its pid namespace, its network namespace has only a loopback device, its IPC
/// namespace is empty, and its mounts are those its runtime makes. Returns the container's
/// mounts, if it has its own mount namespace.
fn check_container(root: i32, spec: &crate::ns::ContainerSpec) -> Result<Option<crate::ns::mnt::View>, DumpError> {
    use crate::ns;
    let own = ns::own_kinds(root);
    let refuse = |what: String| DumpError::Unsupported { pid: root, what };
    if own.contains(&"pid") {
        let levels = ns::pid::levels(root).unwrap_or_default();
        if levels.len() != 2 || levels[1] != 1 {
            return Err(refuse(format!(
                "is not the init of a pid namespace just below ours (pids {levels:?}): only a whole container is dumped"
            )));
        }
    }
    if own.contains(&"net") && !spec.external.iter().any(|k| k == "net") {
        let devices = ns::net::devices(root).map_err(|e| DumpError::proc(root, "net/dev", e))?;
        if let Some(dev) = devices.iter().find(|d| *d != "lo") {
            return Err(refuse(format!(
                "its network namespace has the device {dev}: only a loopback device is made again"
            )));
        }
        ns::net::check(root).map_err(refuse)?;
    }
    if own.contains(&"ipc") && !spec.external.iter().any(|k| k == "ipc") {
        let n = ns::ipc::posix_queues(root);
        if n > 0 {
            return Err(refuse(format!(
                "its IPC namespace holds {n} POSIX message queue(s): they are not saved yet"
            )));
        }
    }
    if own.contains(&"mnt") {
        return ns::mnt::check(root, &spec.declared_mounts).map(Some).map_err(refuse);
    }
    Ok(None)
}

/// Files a restore inside a container cannot make again yet, or that live outside the
/// container (on a mount it does not have: only its stdio, which the runtime passes again).
/// With `console`, a terminal whose master is outside is the container's console (its
/// runtime makes a new one on restore).
fn check_container_files(
    pid: i32,
    fdt: &FdTable,
    mounts: &std::collections::BTreeSet<i32>,
    console: bool,
) -> Result<(), DumpError> {
    for fd in &fdt.fds {
        let f = &fdt.files[fd.file];
        let kind = match &f.kind {
            FileKind::Tty { .. } | FileKind::PtySlave { .. } if console => continue,
            FileKind::Reg { path, .. } if !mounts.contains(&f.mnt_id) && fd.fd > 2 => {
                format!("{path}, which is outside the container (on a mount it does not have)")
            }
            FileKind::Tty { path, .. } => format!("the terminal {path}"),
            FileKind::Fanotify(_) => "a fanotify group (its marks name mounts by id)".into(),
            _ => continue,
        };
        return Err(DumpError::Unsupported {
            pid,
            what: format!("fd {}: {kind}: not restored inside a container yet", fd.fd),
        });
    }
    Ok(())
}

/// Refuses what this version cannot dump in task `pid`, before anything is stopped.
fn precheck(
    pid: i32,
    opts: &DumpOpts,
    sockets: &fds::unix::Table,
    container_mounts: Option<&std::collections::BTreeSet<i32>>,
) -> Result<Option<FdTable>, DumpError> {
    let (shell_job, file_locks) = (opts.shell_job, opts.file_locks);
    let stat = procfs::parse_stat(&read_proc(pid, "stat")?).ok_or(DumpError::Parse { pid, file: "stat" })?;
    if stat.state == 'Z' {
        return Ok(None); // a zombie holds nothing but its exit status
    }
    let status = procfs::parse_status(&read_proc(pid, "status")?).ok_or(DumpError::Parse { pid, file: "status" })?;
    if status.tracer_pid != 0 {
        return Err(DumpError::Remote(parasite::Error::AlreadyTraced {
            pid,
            tracer: status.tracer_pid,
        }));
    }
    check_namespaces(pid, opts.pid, opts)?;
    let fdt = files::collect(pid, shell_job, sockets)?;
    if let Some(mounts) = container_mounts {
        check_container_files(pid, &fdt, mounts, opts.shell_job)?;
    }
    if let Some(f) = fdt.files.iter().find(|f| !f.locks.is_empty()).filter(|_| !file_locks) {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "fd {} holds file locks: dump with --file-locks to save them",
                f.first_fd
            ),
        });
    }
    let maps = procfs::parse_maps(&read_proc(pid, "maps")?).ok_or(DumpError::Parse { pid, file: "maps" })?;
    mm::classify(pid, &maps)?;
    Ok(Some(fdt))
}

/// The indices of the pty masters the fd tables hold (their slaves are the tree's own).
fn pty_masters<'a>(tables: impl Iterator<Item = &'a FdTable>) -> std::collections::BTreeSet<u32> {
    tables
        .flat_map(|t| &t.files)
        .filter_map(|f| match f.kind {
            FileKind::PtyMaster { index } => Some(index),
            _ => None,
        })
        .collect()
}

/// A pty slave whose master is outside the tree is the caller's terminal: --shell-job.
fn check_ptys(tables: &[(i32, FdTable)], shell_job: bool) -> Result<(), DumpError> {
    let masters = pty_masters(tables.iter().map(|(_, t)| t));
    for (pid, t) in tables {
        for fd in &t.fds {
            if let FileKind::PtySlave { path, rdev } = &t.files[fd.file].kind {
                if !shell_job && !masters.contains(&files::pty_index(*rdev)) {
                    return Err(DumpError::NeedShellJob {
                        pid: *pid,
                        fd: fd.fd,
                        path: path.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Refuses unix sockets whose other end is outside the tree (a datagram peer is allowed with
/// `--ext-unix-sk`), and connections waiting in a listener that a restore would lose.
fn check_unix_peers(tables: &[(i32, FdTable)], sockets: &fds::unix::Table, ext_unix_sk: bool) -> Result<(), DumpError> {
    let held: std::collections::BTreeSet<u32> = tables
        .iter()
        .flat_map(|(_, t)| &t.files)
        .filter_map(|f| match &f.kind {
            FileKind::Unix(d) => Some(d.ino),
            _ => None,
        })
        .collect();
    for (pid, t) in tables {
        for fd in &t.fds {
            let FileKind::Unix(d) = &t.files[fd.file].kind else {
                continue;
            };
            let refuse = |what: String| DumpError::Unsupported {
                pid: *pid,
                what: format!("fd {}: unix socket {}: {what}", fd.fd, d.ino),
            };
            let peer = sockets.peer_of(d);
            let stream = i32::from(d.kind) != libc::SOCK_DGRAM;
            if peer != 0 && !held.contains(&peer) && (stream || !ext_unix_sk) {
                return Err(refuse(format!(
                    "its peer (socket {peer}) is outside the dumped tree{}",
                    if stream {
                        ""
                    } else {
                        "; dump with --ext-unix-sk to reconnect to it by name"
                    }
                )));
            }
            for &client in &d.icons {
                if !held.contains(&client) {
                    return Err(refuse(format!(
                        "a connection from outside the tree (socket {client}) waits to be accepted"
                    )));
                }
                // The server side of the waiting connection is the client's peer.
                let embryo = sockets.by_ino.get(&client).and_then(|c| sockets.by_ino.get(&c.peer));
                if embryo.is_some_and(|e| e.rqlen.0 > 0) {
                    return Err(refuse("a connection not accepted yet has unread data".into()));
                }
            }
        }
    }
    Ok(())
}

/// The unix sockets the tree may hold: those of its network namespace (a container's own).
fn unix_table(opts: &DumpOpts) -> Result<fds::unix::Table, DumpError> {
    let own_net = opts.container.is_some() && crate::ns::own_kinds(opts.pid).contains(&"net");
    let table = if own_net {
        fds::unix::Table::query_in(opts.pid)
    } else {
        fds::unix::Table::query()
    };
    table.map_err(|e| DumpError::proc(opts.pid, "sock_diag", e))
}

/// Dumps the process tree rooted at `opts.pid` into `opts.images`.
pub fn dump(opts: &DumpOpts) -> Result<DumpReport, DumpError> {
    let start = Instant::now();
    // Ctrl-C and friends wait until the tasks are let go (they are delivered when this returns).
    let _held = sys::HoldSignals::new();
    if !Path::new(&format!("/proc/{}", opts.pid)).exists() {
        return Err(DumpError::Remote(parasite::Error::NoSuchProcess { pid: opts.pid }));
    }
    let sockets = unix_table(opts)?;
    let container_mounts = match &opts.container {
        Some(spec) => check_container(opts.pid, spec)?,
        None => None,
    };
    let mut tables = Vec::new();
    for pid in tree::walk(opts.pid) {
        match precheck(pid, opts, &sockets, container_mounts.as_ref().map(|v| &v.ids)) {
            Ok(Some(t)) => tables.push((pid, t)),
            Ok(None) => {}
            // A task that ended while we looked (a short-lived child) is simply not there.
            Err(_) if pid != opts.pid && !tree::alive(pid) => {}
            Err(e) => return Err(e),
        }
    }
    check_unix_peers(&tables, &sockets, opts.ext_unix_sk)?;
    check_ptys(&tables, opts.shell_job)?;
    let freezer = match &opts.freeze_cgroup {
        Some(p) => {
            Some(crate::freeze::Freezer::at(p).map_err(|e| DumpError::proc(opts.pid, &p.display().to_string(), e))?)
        }
        None => None,
    };
    if let Some(f) = &freezer {
        tree::check_cgroup_members(opts.pid, f)?;
    }
    let dir = ImageDir::create(&opts.images)?;
    let (tasks, refreeze) = match &freezer {
        Some(f) => tree::freeze_in_cgroup(opts.pid, f)?,
        None => (tree::freeze(opts.pid)?, false),
    };
    // Whatever happens next, a cgroup its owner had frozen is frozen again when we let go
    // (unless its tasks were killed: they must run to end).
    let mut refreeze = Refreeze(freezer.filter(|_| refreeze));
    let frozen_at = Instant::now();
    // On error every thread detaches on drop.
    let mut report = dump_frozen(&tasks, &dir, opts, container_mounts.as_ref())?;
    if opts.leave_running {
        for t in tasks.into_iter().flat_map(|t| t.threads) {
            t.detach()?;
        }
    } else {
        refreeze.0 = None;
        // SIGKILL cannot be blocked or caught: the tasks are gone from here on. Their memory is
        // freed by the kernel after we return (waiting for it cost ~10% of a dump), and their
        // parents reap them as usual.
        for t in tasks.iter().filter(|t| !t.is_zombie()) {
            let _ = parasite::sys::kill(t.pid, libc::SIGKILL);
        }
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

/// The signals queued for thread `t`, or with `shared` for its process (left queued).
fn signal_queue(t: &Tracee, shared: bool) -> Result<pb::SignalQueueEntry, DumpError> {
    let signals = t
        .pending_signals(shared)?
        .into_iter()
        .map(|s| pb::SiginfoEntry { siginfo: s.to_vec() })
        .collect();
    Ok(pb::SignalQueueEntry { signals })
}

/// The core image of one thread (without the process-wide `tc`), and what was read by injection.
fn thread_core(
    pid: i32,
    t: &Tracee,
    whole_process: bool,
    seccomp: &mut SeccompImage,
) -> Result<(pb::CoreEntry, task::InjectedState), DumpError> {
    let tid = t.pid();
    let mut regs = t.regs()?;
    x86::fix_interrupted_syscall(&mut regs);
    let xstate = t.xstate()?;
    let sigmask = t.sigmask()?;
    let rseq = t.rseq()?;
    let (futex_rla, futex_rla_len) = sys::robust_list(tid).map_err(|e| DumpError::proc(tid, "get_robust_list", e))?;
    let status = procfs::parse_status(&read_proc(pid, &format!("task/{tid}/status"))?).ok_or(DumpError::Parse {
        pid,
        file: "task/TID/status",
    })?;
    let timers = if whole_process {
        procfs::parse_timers(&read_proc(pid, "timers")?).ok_or(DumpError::Parse { pid, file: "timers" })?
    } else {
        Vec::new()
    };
    let injected = task::collect(t, whole_process, status.sig_caught, status.sig_ignored, &timers)?;
    let signals_p = Some(signal_queue(t, false)?);
    let comm = read_proc(pid, &format!("task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_owned();
    // Inside a user namespace of its own (a container's), its ids as it sees them.
    let creds = match crate::ns::user::Maps::of(pid) {
        Some(maps) => task::creds_entry(&maps.status_inside(status.clone()), injected.securebits),
        None => task::creds_entry(&status, injected.securebits),
    };
    let tls = (12..15)
        .map(|n| pb::UserDescT {
            entry_number: n,
            read_exec_only: true,
            seg_not_present: true,
            ..Default::default()
        })
        .collect();
    let core = pb::CoreEntry {
        mtype: pb::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: injected.clear_tid_addr,
            gpregs: x86::regs_to_pb(&regs),
            fpregs: x86::xstate_to_pb(&xstate),
            tls,
        }),
        tc: None,
        ids: None,
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla,
            futex_rla_len: futex_rla_len as u32,
            blk_sigset: Some(sigmask),
            sas: Some(injected.altstack.clone()),
            creds: Some(creds),
            seccomp_mode: Some(match status.seccomp {
                1 => pb::SeccompMode::Strict,
                2 => pb::SeccompMode::Filter,
                _ => pb::SeccompMode::Disabled,
            } as i32),
            seccomp_filter: if status.seccomp == 2 {
                Some(seccomp.add(t.seccomp_filters()?))
            } else {
                None
            },
            comm: Some(comm),
            pdeath_sig: (injected.pdeath_sig != 0).then_some(injected.pdeath_sig),
            signals_p,
            rseq_entry: rseq.map(|r| pb::RseqEntry {
                rseq_abi_pointer: r.rseq_abi_pointer,
                rseq_abi_size: r.rseq_abi_size,
                signature: r.signature,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        }),
    };
    Ok((core, injected))
}

/// Seizes every thread of `pid` (the main thread first), again until no new thread appears.
pub(crate) fn seize_threads(pid: i32) -> Result<Vec<Tracee>, DumpError> {
    let mut threads: Vec<Tracee> = Vec::new();
    loop {
        let tids = tree::thread_ids(pid)?;
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

/// Our copy of fd `fd` of (stopped) task `pid`, the same open file (pidfd_getfd).
fn fd_copy(pid: i32, fd: i32) -> Result<std::os::fd::OwnedFd, DumpError> {
    sys::copy_fd_of(pid, fd).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: pidfd_getfd"), e))
}

/// The entry (and bytes) of what pipe or FIFO `ino` holds, read without taking it through our
/// fd `ours` on it (fd `fd` of `pid`, for errors); none for an empty pipe of the default size.
fn pipe_contents(
    ino: u64,
    (pid, fd): (i32, i32),
    ours: std::os::fd::BorrowedFd<'_>,
) -> Result<Option<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
    let (data, cap) = sys::peek_pipe(ours).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: tee"), e))?;
    if data.is_empty() && cap == DEFAULT_PIPE_CAPACITY {
        return Ok(None);
    }
    let entry = pb::PipeDataEntry {
        pipe_id: ino as u32,
        bytes: data.len() as u32,
        size: Some(cap),
    };
    Ok(Some((entry, data)))
}

/// What a new pipe holds (16 pages).
const DEFAULT_PIPE_CAPACITY: u32 = 65536;

/// An open file already in files.img: a pid, its fd on the file, and the entry id.
type SeenFile = (i32, i32, u32);

/// The files.img entries of the whole tree: one per mapped path and one per open file
/// description, however many fds and tasks share it.
#[derive(Default)]
struct FilesImage {
    entries: Vec<pb::FileEntry>,
    by_path: BTreeMap<String, u32>,
    tty_infos: Vec<pb::TtyInfoEntry>,
    /// Open files seen so far, by (device, inode): a task's fd on one and the entry id.
    by_inode: BTreeMap<(u64, u64), Vec<SeenFile>>,
    /// Pipes by inode: a (pid, fd) of their read end, and whether a write end was seen.
    pipes: BTreeMap<u64, (Option<(i32, i32)>, bool)>,
    /// Every unix socket of the network namespace, read once the tree is frozen.
    sockets: fds::unix::Table,
    /// filelocks.img.
    locks: Vec<pb::FileLockEntry>,
    /// The pty masters held in the tree (their slaves are rebuilt, not the caller's).
    pty_masters: std::collections::BTreeSet<u32>,
    /// Sessions with a controlling terminal: by the terminal's device, the session and its
    /// foreground group.
    ctty: BTreeMap<u64, (u32, u32)>,
    /// memfd.img: one entry per memfd, by inode; and where to read each one's contents.
    memfd_inodes: Vec<(u64, pb::MemfdInodeEntry)>,
    memfd_sources: Vec<(u64, i32, String, u64)>,
    /// FIFOs by inode, with a (pid, fd) through which to read what they hold.
    fifos: Vec<(u64, i32, i32)>,
    /// Unlinked files: their ghost-file images (by inode: one per file, however many opens).
    ghosts: Vec<((u64, u64), pb::GhostFileEntry, Vec<u8>)>,
    /// remap-fpath.img: which files.img entries are ghosts.
    remaps: Vec<pb::RemapFilePathEntry>,
    /// sk-queues.img: the data queued in each socket (by the id of the socket that reads it).
    sk_queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
}

impl FilesImage {
    fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    fn reg(&mut self, path: &str, flags: u32, pos: u64, mnt_id: i32) -> u32 {
        let id = self.next_id();
        let meta = fs::metadata(path).ok();
        use std::os::unix::fs::MetadataExt;
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: pb::FownEntry::default(),
                name: path.to_owned(),
                mnt_id: (mnt_id >= 0).then_some(mnt_id),
                size: meta.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
                mode: meta.as_ref().map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        id
    }

    /// One REG entry per path, shared by mappings, exe, cwd and root.
    fn path(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.by_path.get(path) {
            return id;
        }
        let id = self.reg(path, 0, 0, -1);
        self.by_path.insert(path.to_owned(), id);
        id
    }

    fn pipe(&mut self, ino: u64, flags: u32) -> u32 {
        self.anon(FdTypes::Pipe, |id, e| {
            e.pipe = Some(pb::PipeEntry {
                id,
                pipe_id: ino as u32,
                flags,
                fown: pb::FownEntry::default(),
            })
        })
    }

    fn tty(&mut self, path: &str, rdev: u64, flags: u32) -> u32 {
        let regf = self.reg(path, flags, 0, -1);
        let id = self.next_id();
        // Above the ids of the ptys made in the tree (2 x index, + 1).
        let info_id = (1 << 21) + self.tty_infos.len() as u32;
        self.tty_infos.push(pb::TtyInfoEntry {
            id: info_id,
            r#type: pb::TtyType::Pty as i32,
            rdev: rdev as u32,
            pty: Some(pb::TtyPtyEntry {
                index: libc::minor(rdev),
            }),
            ..Default::default()
        });
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info_id,
                flags,
                fown: pb::FownEntry::default(),
                regf_id: Some(regf),
            }),
            ..Default::default()
        });
        id
    }

    /// A TTY entry for an end of a pty made in the tree, with its settings (read through a
    /// copy of fd `f.first_fd` of `pid`).
    fn pty(&mut self, pid: i32, f: &files::OpenFile, path: &str, rdev: u64, index: u32) -> Result<u32, DumpError> {
        use std::os::fd::AsFd;
        let fd = f.first_fd;
        let ours = fd_copy(pid, fd)?;
        let slave_rdev = libc::makedev(136 + index / 256, index % 256);
        let session = self.ctty.get(&slave_rdev).copied().unwrap_or((0, 0));
        let mut info = fds::tty::collect(ours.as_fd(), index, rdev, session)
            .map_err(|e| DumpError::proc(pid, &format!("fd {fd}: pty {index}"), e))?;
        let regf = self.reg(path, f.flags, 0, -1);
        // One tty-info per end of a pty, however many open files: the master's id is the
        // slave's with the low bit set (CRIU pairs the two ends by it).
        let master = (libc::major(rdev), libc::minor(rdev)) == fds::tty::PTMX;
        info.id = 2 * index + u32::from(master);
        let info_id = info.id;
        if !self.tty_infos.iter().any(|t| t.id == info_id) {
            self.tty_infos.push(info);
        }
        let entry = pb::TtyFileEntry {
            id: 0,
            tty_info_id: info_id,
            flags: f.flags,
            fown: pb::FownEntry::default(),
            regf_id: Some(regf),
        };
        Ok(self.anon(FdTypes::Tty, |id, e| e.tty = Some(pb::TtyFileEntry { id, ..entry })))
    }

    /// A MEMFD entry (an open file with `flags` at `pos`) on memfd `ino` of `pid`, readable at
    /// `path`; the memfd itself (name, size, seals) is noted once.
    #[allow(clippy::too_many_arguments)]
    fn memfd(
        &mut self,
        pid: i32,
        path: String,
        name: &str,
        size: u64,
        ino: u64,
        flags: u32,
        pos: u64,
    ) -> Result<u32, DumpError> {
        use std::os::fd::AsRawFd;
        let inode_id = match self.memfd_inodes.iter().position(|(i, _)| *i == ino) {
            Some(n) => n as u32 + 1,
            None => {
                use std::os::unix::fs::MetadataExt;
                let file = fs::File::open(&path).map_err(|e| DumpError::proc(pid, &path, e))?;
                let meta = file.metadata().map_err(|e| DumpError::proc(pid, &path, e))?;
                let seals = sys::seals(file.as_raw_fd()).map_err(|e| DumpError::proc(pid, &path, e))?;
                let inode_id = self.memfd_inodes.len() as u32 + 1;
                self.memfd_inodes.push((
                    ino,
                    pb::MemfdInodeEntry {
                        name: name.to_owned(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        size: size.max(meta.len()),
                        shmid: ino as u32,
                        seals,
                        inode_id: inode_id.into(),
                        mode: Some(meta.mode()),
                        ..Default::default()
                    },
                ));
                self.memfd_sources.push((ino, pid, path, size.max(meta.len())));
                inode_id
            }
        };
        let entry = pb::MemfdFileEntry {
            id: 0,
            flags,
            pos,
            fown: pb::FownEntry::default(),
            inode_id,
        };
        Ok(self.anon(FdTypes::Memfd, |id, f| {
            f.memfd = Some(pb::MemfdFileEntry { id, ..entry })
        }))
    }

    /// The ghost id of unlinked file `f` of `pid`, its contents read the first time.
    fn ghost(&mut self, pid: i32, f: &files::OpenFile, ghost: &pb::GhostFileEntry) -> Result<u32, DumpError> {
        if let Some(i) = self.ghosts.iter().position(|(key, ..)| *key == f.dev_ino) {
            return Ok(i as u32 + 1);
        }
        let path = format!("/proc/{pid}/fd/{}", f.first_fd);
        let data = fs::read(&path).map_err(|e| DumpError::proc(pid, &path, e))?;
        if data.len() as u64 > files::GHOST_LIMIT {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "fd {}: the unlinked file grew past {} bytes",
                    f.first_fd,
                    files::GHOST_LIMIT
                ),
            });
        }
        self.ghosts.push((f.dev_ino, ghost.clone(), data));
        Ok(self.ghosts.len() as u32)
    }

    /// The entry of unix socket `d` (fd `f.first_fd` of `pid`), its queued data, and an entry
    /// for its peer when that is outside the tree.
    fn unix_socket(&mut self, pid: i32, f: &files::OpenFile, d: &sys::UnixDiag) -> Result<u32, DumpError> {
        use std::os::fd::AsFd;
        let fd = f.first_fd;
        let ours = fd_copy(pid, fd)?;
        let ctx = |e: std::io::Error| DumpError::proc(pid, &format!("fd {fd}: unix socket {}", d.ino), e);
        let entry = fds::unix::collect(&self.sockets, d, f.flags, ours.as_fd()).map_err(ctx)?;
        // A listener's queue length counts waiting connections, not data.
        let peeked = if d.rqlen.0 > 0 && u32::from(d.state) != fds::unix::TCP_LISTEN {
            // Seqpacket messages keep their boundaries, like datagrams.
            let stream = i32::from(d.kind) == libc::SOCK_STREAM;
            Some(sys::peek_queue(ours.as_fd(), stream).map_err(ctx)?)
        } else {
            None
        };
        if peeked.as_ref().is_some_and(|p| p.passes_fds) {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "fd {fd}: unix socket {}: its queue holds passed fds (SCM_RIGHTS)",
                    d.ino
                ),
            });
        }
        let id = self.anon(FdTypes::Unixsk, |id, f| {
            f.usk = Some(pb::UnixSkEntry { id, ..entry.clone() })
        });
        for m in peeked.into_iter().flat_map(|p| p.messages) {
            let e = pb::SkPacketEntry {
                id_for: id,
                length: m.len() as u32,
                scm: Vec::new(),
            };
            self.sk_queues.push((e, m));
        }
        Ok(id)
    }

    /// Entries for the sockets outside the tree that its datagram sockets are connected to
    /// (the preflight refused any other outside peer), so a restore can reconnect by name.
    fn add_external_peers(&mut self) {
        let inside: std::collections::BTreeSet<u32> = self
            .entries
            .iter()
            .filter_map(|e| e.usk.as_ref())
            .map(|u| u.ino)
            .collect();
        let wanted: std::collections::BTreeSet<u32> = self
            .entries
            .iter()
            .filter_map(|e| e.usk.as_ref())
            .map(|u| u.peer)
            .filter(|p| *p != 0 && !inside.contains(p))
            .collect();
        for ino in wanted {
            if let Some(ext) = self.sockets.by_ino.get(&ino).map(fds::unix::external) {
                self.anon(FdTypes::Unixsk, |id, f| f.usk = Some(pb::UnixSkEntry { id, ..ext }));
            }
        }
    }

    /// A new entry of type `kind`, its body filled in by `fill` (given the new id).
    fn anon(&mut self, kind: FdTypes, fill: impl FnOnce(u32, &mut pb::FileEntry)) -> u32 {
        let id = self.next_id();
        let mut entry = pb::FileEntry {
            r#type: kind as i32,
            id,
            ..Default::default()
        };
        fill(id, &mut entry);
        self.entries.push(entry);
        id
    }

    /// The entry of open file `f` of task `pid`: an existing one if another fd of the tree
    /// is the same open file description (kcmp), else a new one.
    fn open_file(&mut self, pid: i32, f: &files::OpenFile) -> Result<(u32, FdTypes), DumpError> {
        let kind = match &f.kind {
            FileKind::Reg { .. } | FileKind::Ghost { .. } => FdTypes::Reg,
            FileKind::Tty { .. } => FdTypes::Tty,
            FileKind::Pipe { .. } => FdTypes::Pipe,
            FileKind::Fifo { .. } => FdTypes::Fifo,
            FileKind::Memfd { .. } => FdTypes::Memfd,
            FileKind::PtyMaster { .. } | FileKind::PtySlave { .. } => FdTypes::Tty,
            FileKind::EventFd(_) => FdTypes::Eventfd,
            FileKind::SignalFd(_) => FdTypes::Signalfd,
            FileKind::TimerFd(_) => FdTypes::Timerfd,
            FileKind::Epoll(_) => FdTypes::Eventpoll,
            FileKind::Inotify(_) => FdTypes::Inotify,
            FileKind::Fanotify(_) => FdTypes::Fanotify,
            FileKind::Unix(_) => FdTypes::Unixsk,
        };
        for &(other_pid, other_fd, id) in self.by_inode.get(&f.dev_ino).map(Vec::as_slice).unwrap_or(&[]) {
            if sys::same_file(pid, f.first_fd, other_pid, other_fd).map_err(|e| DumpError::proc(pid, "kcmp", e))? {
                return Ok((id, kind));
            }
        }
        let id = match &f.kind {
            FileKind::Reg { path, .. } => self.reg(path, f.flags, f.pos, f.mnt_id),
            FileKind::PtyMaster { index } => self.pty(pid, f, "/dev/ptmx", libc::makedev(5, 2), *index)?,
            FileKind::PtySlave { path, rdev } if self.pty_masters.contains(&files::pty_index(*rdev)) => {
                self.pty(pid, f, path, *rdev, files::pty_index(*rdev))?
            }
            // The caller's terminal (the preflight asked for --shell-job).
            FileKind::PtySlave { path, rdev } => self.tty(path, *rdev, f.flags),
            FileKind::Memfd { name, size } => {
                let path = format!("/proc/{pid}/fd/{}", f.first_fd);
                self.memfd(pid, path, name, *size, f.dev_ino.1, f.flags, f.pos)?
            }
            FileKind::Fifo { path, ino } => {
                let regf = self.reg(path, f.flags, 0, f.mnt_id);
                if !self.fifos.iter().any(|(i, ..)| i == ino) {
                    self.fifos.push((*ino, pid, f.first_fd));
                }
                let fifo = pb::FifoEntry {
                    id: 0,
                    pipe_id: *ino as u32,
                    regf_id: Some(regf),
                };
                self.anon(FdTypes::Fifo, |id, e| e.fifo = Some(pb::FifoEntry { id, ..fifo }))
            }
            FileKind::Ghost { path, ghost } => {
                // No mount id: CRIU looks a ghost's mount up in the mounts of the dump, and
                // this dump has none (its mount namespace is the restorer's).
                let id = self.reg(path, f.flags, f.pos, -1);
                let remap_id = self.ghost(pid, f, ghost)?;
                self.remaps.push(pb::RemapFilePathEntry {
                    orig_id: id,
                    remap_id,
                    remap_type: Some(pb::RemapType::Ghost as i32),
                });
                id
            }
            FileKind::Tty { path, rdev } => self.tty(path, *rdev, f.flags),
            FileKind::Pipe { ino } => {
                let ends = self.pipes.entry(*ino).or_insert((None, false));
                let access = f.flags as i32 & libc::O_ACCMODE;
                if access != libc::O_WRONLY && ends.0.is_none() {
                    ends.0 = Some((pid, f.first_fd));
                }
                if access != libc::O_RDONLY {
                    ends.1 = true;
                }
                self.pipe(*ino, f.flags)
            }
            FileKind::EventFd(e) => self.anon(kind, |id, f| f.efd = Some(pb::EventfdFileEntry { id, ..e.clone() })),
            FileKind::SignalFd(e) => self.anon(kind, |id, f| f.sgfd = Some(pb::SignalfdEntry { id, ..e.clone() })),
            FileKind::TimerFd(e) => self.anon(kind, |id, f| f.tfd = Some(pb::TimerfdEntry { id, ..e.clone() })),
            FileKind::Epoll(e) => self.anon(kind, |id, f| {
                let tfd = e
                    .tfd
                    .iter()
                    .map(|t| pb::EventpollTfdEntry { id, ..t.clone() })
                    .collect();
                f.epfd = Some(pb::EventpollFileEntry { id, tfd, ..e.clone() })
            }),
            FileKind::Unix(d) => self.unix_socket(pid, f, d)?,
            FileKind::Fanotify(e) => self.anon(kind, |id, f| {
                let mark = e
                    .mark
                    .iter()
                    .map(|m| pb::FanotifyMarkEntry { id, ..m.clone() })
                    .collect();
                f.ffy = Some(pb::FanotifyFileEntry { id, mark, ..e.clone() })
            }),
            FileKind::Inotify(e) => self.anon(kind, |id, f| {
                let wd = e.wd.iter().map(|w| pb::InotifyWdEntry { id, ..w.clone() }).collect();
                f.ify = Some(pb::InotifyFileEntry { id, wd, ..e.clone() })
            }),
        };
        self.by_inode.entry(f.dev_ino).or_default().push((pid, f.first_fd, id));
        Ok((id, kind))
    }

    /// pipes-data.img: the bytes buffered in every pipe whose both ends are in the tree (a
    /// pipe with an end outside is the caller's, and keeps its data).
    /// fifo-data.img: the bytes buffered in each FIFO of the tree, read (and left) through a
    /// new open of it.
    fn fifo_data(&self) -> Result<Vec<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = Vec::new();
        for &(ino, pid, fd) in &self.fifos {
            let path = format!("/proc/{pid}/fd/{fd}");
            let ours = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| DumpError::proc(pid, &path, e))?;
            out.extend(pipe_contents(ino, (pid, fd), ours.as_fd())?);
        }
        Ok(out)
    }

    fn pipe_data(&self) -> Result<Vec<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
        let mut out = Vec::new();
        for (&ino, &(reader, writer)) in &self.pipes {
            let Some((pid, fd)) = reader.filter(|_| writer) else {
                continue;
            };
            use std::os::fd::AsFd;
            out.extend(pipe_contents(ino, (pid, fd), fd_copy(pid, fd)?.as_fd())?);
        }
        Ok(out)
    }
}

/// Namespace ids: one per namespace inode, after the ids of the dumper and of every task.
struct NsIds {
    next: u32,
    by_inode: BTreeMap<(&'static str, u64), u32>,
}

impl NsIds {
    const KINDS: [&'static str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

    fn new(first: u32) -> NsIds {
        NsIds {
            next: first,
            by_inode: BTreeMap::new(),
        }
    }

    /// Object ids of `who` ("self" or a pid): `own` for its vm, files, fs and signal handlers
    /// (CRIU's restore requires the task's to differ from the dumper's), and its namespaces.
    fn ids(&mut self, who: &str, own: u32) -> pb::TaskKobjIdsEntry {
        use std::os::unix::fs::MetadataExt;
        let mut ns = [None; 8];
        for (slot, kind) in ns.iter_mut().zip(Self::KINDS) {
            let Ok(meta) = fs::metadata(format!("/proc/{who}/ns/{kind}")) else {
                continue;
            };
            let next = &mut self.next;
            *slot = Some(*self.by_inode.entry((kind, meta.ino())).or_insert_with(|| {
                let id = *next;
                *next += 1;
                id
            }));
        }
        pb::TaskKobjIdsEntry {
            vm_id: own,
            files_id: own,
            fs_id: own,
            sighand_id: own,
            pid_ns_id: ns[0],
            net_ns_id: ns[1],
            ipc_ns_id: ns[2],
            uts_ns_id: ns[3],
            mnt_ns_id: ns[4],
            user_ns_id: ns[5],
            cgroup_ns_id: ns[6],
            time_ns_id: ns[7],
        }
    }
}

/// seccomp.img: the filters of the tree's threads, each pointing at the one installed before
/// it; chains with a common start share it (a tree, as in the kernel).
#[derive(Default)]
struct SeccompImage {
    filters: Vec<pb::SeccompFilter>,
}

impl SeccompImage {
    /// The index of the newest filter of `chain` (oldest first), adding what is new.
    fn add(&mut self, chain: Vec<Vec<u8>>) -> u32 {
        let mut prev = None;
        for filter in chain {
            let known = self.filters.iter().position(|f| f.prev == prev && f.filter == filter);
            prev = Some(match known {
                Some(i) => i as u32,
                None => {
                    self.filters.push(pb::SeccompFilter {
                        filter,
                        prev,
                        flags: None,
                    });
                    self.filters.len() as u32 - 1
                }
            });
        }
        prev.unwrap_or(0)
    }
}

/// What the tasks of a tree share or add up, gathered task by task.
#[derive(Default)]
struct TreeObjects {
    /// The dumper's UTS namespace id, and the names of every other one the tree uses.
    host_uts: Option<u32>,
    utsns: BTreeMap<u32, pb::UtsnsEntry>,
    seccomp: SeccompImage,
    files: FilesImage,
    shmem: mm::SharedMemory,
    totals: Totals,
}

/// Totals over the tasks of a dump.
#[derive(Default)]
struct Totals {
    vmas: usize,
    scanned: u64,
    written: u64,
    memdump_us: u32,
}

fn dump_frozen(
    tasks: &[tree::Task],
    dir: &ImageDir,
    opts: &DumpOpts,
    mounts: Option<&crate::ns::mnt::View>,
) -> Result<DumpReport, DumpError> {
    let mem_start = Instant::now();
    let mut tree_objects = TreeObjects::default();
    tree_objects.files.sockets = unix_table(opts)?;
    // What /proc shows of each task, read once now that it is stopped: its stat, and for a
    // live task its fd table.
    let mut seen = Vec::with_capacity(tasks.len());
    for t in tasks {
        let stat = procfs::parse_stat(&read_proc(t.pid, "stat")?).ok_or(DumpError::Parse {
            pid: t.pid,
            file: "stat",
        })?;
        let fdt = match t.zombie {
            Some(_) => None,
            None => Some(files::collect(t.pid, opts.shell_job, &tree_objects.files.sockets)?),
        };
        seen.push((stat, fdt));
    }
    tree_objects.files.pty_masters = pty_masters(seen.iter().filter_map(|(_, fdt)| fdt.as_ref()));
    for (t, (st, _)) in tasks.iter().zip(&seen) {
        if st.tty_nr != 0 && st.sid == t.pid as u32 {
            let (nr, minor_hi) = (u64::from(st.tty_nr), u64::from(st.tty_nr >> 12) & 0xfff00);
            let rdev = libc::makedev(((nr >> 8) & 0xfff) as u32, ((nr & 0xff) | minor_hi) as u32);
            tree_objects.files.ctty.insert(rdev, (st.sid, st.tpgid.max(0) as u32));
        }
    }
    // The namespaces of a container's own: read once.
    let own = match opts.container {
        Some(_) => crate::ns::own_kinds(opts.pid),
        None => Vec::new(),
    };
    // A container's tasks are saved with the pids they see.
    let mut pids = crate::ns::pid::PidMap::default();
    if own.contains(&"pid") {
        for t in tasks {
            let ids = std::iter::once(t.pid).chain(t.threads.iter().map(Tracee::pid));
            for id in ids {
                pids.add(id).map_err(|what| DumpError::Unsupported { pid: id, what })?;
            }
        }
    }
    let mut ns = NsIds::new(tasks.len() as u32 + 2);
    let root_ids = ns.ids("self", 1);
    tree_objects.host_uts = root_ids.uts_ns_id;
    let mut pstree = Vec::with_capacity(tasks.len());
    let mut root_task_ids = pb::TaskKobjIdsEntry::default();
    for (i, (task, (stat, fdt))) in tasks.iter().zip(seen).enumerate() {
        let pid = task.pid;
        let ppid = if i == 0 { 0 } else { stat.ppid };
        let threads = match (task.zombie, fdt) {
            (Some(exit_code), _) => {
                dump_zombie(dir, pids.inside(pid), exit_code, &stat)?;
                vec![pids.inside(pid) as u32]
            }
            (None, fdt) => {
                let ids = ns.ids(&pid.to_string(), i as u32 + 2);
                if i == 0 {
                    root_task_ids = ids.clone();
                }
                let proc_view = (&stat, fdt.unwrap_or_default());
                dump_task(
                    &task.threads,
                    dir,
                    &ids,
                    i as u32 + 1,
                    proc_view,
                    &pids,
                    &mut tree_objects,
                )?;
                task.threads.iter().map(|t| pids.inside(t.pid()) as u32).collect()
            }
        };
        let inside = |p: u32| pids.inside(p as i32) as u32;
        pstree.push(pb::PstreeEntry {
            pid: inside(pid as u32),
            ppid: if ppid == 0 { 0 } else { inside(ppid) },
            pgid: inside(stat.pgid),
            sid: inside(stat.sid),
            threads,
        });
    }

    let TreeObjects {
        host_uts: _,
        utsns,
        seccomp,
        mut files,
        shmem,
        mut totals,
    } = tree_objects;
    files.add_external_peers();
    if let Some(spec) = &opts.container {
        dump_container(dir, opts.pid, spec, &own, &root_task_ids, mounts)?;
    }
    for (id, names) in &utsns {
        dir.write_all(ImageKind::Utsns, (*id).into(), std::slice::from_ref(names))?;
    }
    for (i, (_, ghost, data)) in files.ghosts.iter().enumerate() {
        let mut w = dir.writer(ImageKind::GhostFile, i as u64 + 1)?;
        w.write(ghost)?;
        w.write_payload(data)?;
        w.finish()?;
    }
    if !files.locks.is_empty() {
        dir.write_all(ImageKind::FileLocks, 0, &files.locks)?;
    }
    if !files.remaps.is_empty() {
        dir.write_all(ImageKind::RemapFpath, 0, &files.remaps)?;
    }
    if !files.sk_queues.is_empty() {
        let mut w = dir.writer(ImageKind::SkQueues, 0)?;
        for (entry, data) in &files.sk_queues {
            w.write(entry)?;
            w.write_payload(data)?;
        }
        w.finish()?;
    }
    let mut shmem = shmem;
    for (ino, pid, path, size) in std::mem::take(&mut files.memfd_sources) {
        shmem.add_memfd(ino, pid, path, size);
    }
    if !files.memfd_inodes.is_empty() {
        let inodes: Vec<pb::MemfdInodeEntry> = files.memfd_inodes.iter().map(|(_, e)| e.clone()).collect();
        dir.write_all(ImageKind::MemfdInode, 0, &inodes)?;
    }
    let shm_stats = shmem.dump(dir, tasks.len() as u32 + 1)?;
    totals.scanned += shm_stats.scanned;
    totals.written += shm_stats.written;
    dir.write_all(ImageKind::Files, 0, &files.entries)?;
    if !files.tty_infos.is_empty() {
        dir.write_all(ImageKind::TtyInfo, 0, &files.tty_infos)?;
    }
    for (kind, data) in [
        (ImageKind::PipesData, files.pipe_data()?),
        (ImageKind::FifoData, files.fifo_data()?),
    ] {
        if data.is_empty() {
            continue;
        }
        let mut w = dir.writer(kind, 0)?;
        for (entry, bytes) in &data {
            w.write(entry)?;
            w.write_payload(bytes)?;
        }
        w.finish()?;
    }
    dir.write_all(
        ImageKind::Seccomp,
        0,
        &[pb::SeccompEntry {
            seccomp_filters: seccomp.filters,
        }],
    )?;
    dir.write_all(ImageKind::Pstree, 0, &pstree)?;
    let elapsed_us = |t: Instant| t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    dir.write_all(
        ImageKind::StatsDump,
        0,
        &[pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 0,
                frozen_time: elapsed_us(mem_start),
                memdump_time: totals.memdump_us,
                memwrite_time: totals.memdump_us,
                pages_scanned: totals.scanned,
                pages_skipped_parent: 0,
                pages_written: totals.written,
                pages_lazy: 0,
                ..Default::default()
            }),
            restore: None,
        }],
    )?;
    let uptime_us = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1e6) as u64);
    // Before the tasks are killed, everything must be durable (the inventory, whose presence
    // marks a complete dump, last). Tasks left running need no such guarantee.
    let durable = !opts.leave_running;
    if durable {
        dir.sync()?;
    }
    dir.write_all(
        ImageKind::Inventory,
        0,
        &[pb::InventoryEntry {
            img_version: crate::image::magic::IMAGES_V1_1,
            fdinfo_per_id: Some(true),
            root_ids: Some(root_ids),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: uptime_us,
            ..Default::default()
        }],
    )?;
    if durable {
        dir.sync()?;
    }
    Ok(DumpReport {
        pid: opts.pid,
        tasks: tasks.len(),
        vmas: totals.vmas,
        pages_scanned: totals.scanned,
        pages_written: totals.written,
        frozen: Duration::ZERO,
        elapsed: Duration::ZERO,
    })
}

/// What a container's own namespaces (`own`, of root task `root` with namespace ids `ids`)
/// and cgroups hold that its runtime does not make again: its mounts and tmpfs contents, its
/// SysV objects (made again at their ids), its loopback's state, its cgroups' settings.
fn dump_container(
    dir: &ImageDir,
    root: i32,
    spec: &crate::ns::ContainerSpec,
    own: &[&str],
    ids: &pb::TaskKobjIdsEntry,
    mounts: Option<&crate::ns::mnt::View>,
) -> Result<(), DumpError> {
    let saved = |kind: &str| own.contains(&kind) && !spec.external.iter().any(|k| k == kind);
    let refuse = |what: String| DumpError::Unsupported { pid: root, what };
    if let Some(view) = mounts {
        dump_mounts(dir, root, ids.mnt_ns_id.unwrap_or(0), view)?;
    }
    if saved("net") {
        crate::ns::net::dump(root, dir, ids.net_ns_id.unwrap_or(0)).map_err(refuse)?;
    }
    if saved("ipc") {
        crate::ns::ipc::dump(root, dir, ids.ipc_ns_id.unwrap_or(0)).map_err(refuse)?;
    }
    let cgroups = crate::ns::cgroup::dump(root).map_err(|e| DumpError::proc(root, "cgroup", e))?;
    dir.write_all(ImageKind::Cgroup, 0, &[cgroups])?;
    Ok(())
}

/// A container's mount namespace: its mounts (all made again by its runtime) and the contents
/// of its tmpfs mounts, read while the tree is frozen.
fn dump_mounts(dir: &ImageDir, root: i32, mnt_ns_id: u32, view: &crate::ns::mnt::View) -> Result<(), DumpError> {
    use crate::ns::tmpfs;
    dir.write_all(ImageKind::Mnts, mnt_ns_id.into(), &crate::ns::mnt::entries(view))?;
    for (mnt_id, mount_point) in &view.tmpfs {
        let path = Path::new(&format!("/proc/{root}/root")).join(mount_point.trim_start_matches('/'));
        if tmpfs::is_empty(&path) {
            continue;
        }
        // Named by the filesystem's device (the kernel's encoding), as CRIU names them.
        let Some(m) = view.mounts.iter().find(|m| m.id == *mnt_id) else {
            continue;
        };
        let (file, _) = dir.create_raw(ImageKind::TmpfsDev, u64::from((m.dev.0 << 20) | m.dev.1))?;
        tmpfs::archive(&path, file).map_err(|e| DumpError::Unsupported {
            pid: root,
            what: format!("the tmpfs at {mount_point}: {e}"),
        })?;
    }
    Ok(())
}

/// A zombie: its core image holds only its state, name and exit status.
fn dump_zombie(dir: &ImageDir, pid: i32, exit_code: u32, stat: &procfs::Stat) -> Result<(), DumpError> {
    let core = pb::CoreEntry {
        mtype: pb::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: pb::TASK_DEAD,
            exit_code,
            comm: stat.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    dir.write_all(ImageKind::Core, pid as u64, &[core])?;
    Ok(())
}

/// The images of one live, stopped task (`threads[0]` its leader): core per thread, ids, mm,
/// pagemap and pages (`pages-{pages_id}.img`), fs and its fd table; its files go to `files`.
fn dump_task(
    threads: &[Tracee],
    dir: &ImageDir,
    ids: &pb::TaskKobjIdsEntry,
    pages_id: u32,
    (stat, fdt): (&procfs::Stat, FdTable),
    pids: &crate::ns::pid::PidMap,
    objects: &mut TreeObjects,
) -> Result<(), DumpError> {
    let TreeObjects {
        host_uts,
        utsns,
        seccomp,
        files,
        shmem,
        totals,
    } = objects;
    let t = &threads[0];
    let pid = t.pid();
    let status = procfs::parse_status(&read_proc(pid, "status")?).ok_or(DumpError::Parse { pid, file: "status" })?;
    if status.threads as usize != threads.len() {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "{} threads, {} frozen: threads changed while freezing",
                status.threads,
                threads.len()
            ),
        });
    }
    let maps = procfs::parse_maps(&read_proc(pid, "maps")?).ok_or(DumpError::Parse { pid, file: "maps" })?;
    let vmas = mm::classify(pid, &maps)?;
    shmem.add(pid, &vmas);
    let limits = procfs::parse_limits(&read_proc(pid, "limits")?).ok_or(DumpError::Parse { pid, file: "limits" })?;
    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv = procfs::parse_auxv(&fs::read(&auxv_path).map_err(|e| DumpError::proc(pid, &auxv_path, e))?);
    let exe = readlink_proc(pid, "exe")?;
    let cwd = readlink_proc(pid, "cwd")?;
    let root = readlink_proc(pid, "root")?;
    let personality = u32::from_str_radix(read_proc(pid, "personality")?.trim(), 16).unwrap_or(0);
    let oom_score_adj = read_proc(pid, "oom_score_adj")?.trim().parse().ok();
    let loginuid = read_proc(pid, "loginuid").ok().and_then(|s| s.trim().parse().ok());

    let mut cores = Vec::with_capacity(threads.len());
    for (i, th) in threads.iter().enumerate() {
        cores.push(thread_core(pid, th, i == 0, seccomp)?);
    }
    let injected = cores[0].1.clone();
    if let Some(id) = ids.uts_ns_id.filter(|id| Some(*id) != *host_uts) {
        utsns.entry(id).or_insert_with(|| pb::UtsnsEntry {
            nodename: injected.uts.0.clone(),
            domainname: injected.uts.1.clone(),
        });
    }
    let sigmask = cores[0].0.thread_core.as_ref().and_then(|c| c.blk_sigset).unwrap_or(0);

    // Mapped files, exe, cwd, root, then the fds' open files.
    let exe_id = files.path(&exe);
    let mut vma_entries = Vec::with_capacity(vmas.len());
    for v in &vmas {
        let mut e = v.entry.clone();
        if let Some(path) = &v.path {
            e.shmid = files.path(path).into();
        }
        if e.status & pb::vma_status::MEMFD != 0 {
            // A memfd mapping names a MEMFD entry; the memfd is read through the mapping.
            let name = maps
                .iter()
                .find(|m| m.start == e.start)
                .and_then(|m| m.path.strip_prefix("/memfd:"))
                .map(|n| n.trim_end_matches(" (deleted)").to_owned())
                .unwrap_or_default();
            let path = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
            let size = e.pgoff + (e.end - e.start);
            e.shmid = files.memfd(pid, path, &name, size, e.shmid, 0, 0)?.into();
        }
        vma_entries.push(e);
    }
    let cwd_id = files.path(&cwd);
    let root_id = files.path(&root);
    let mut file_ids = Vec::with_capacity(fdt.files.len());
    for f in &fdt.files {
        let known = files.entries.len();
        file_ids.push(files.open_file(pid, f)?);
        // A flock or OFD lock belongs to the open file: saved with its first holder.
        let new = files.entries.len() > known;
        let locks = f.locks.iter().filter(|l| new || l.flag == fds::locks::FL_POSIX);
        files.locks.extend(locks.cloned());
    }
    let fdinfo: Vec<pb::FdinfoEntry> = fdt
        .fds
        .iter()
        .map(|fd| pb::FdinfoEntry {
            id: file_ids[fd.file].0,
            flags: if fd.cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: file_ids[fd.file].1 as i32,
            fd: fd.fd as u32,
            xattr_security_selinux: None,
        })
        .collect();

    // Pages first: the longest part.
    let mem_start = Instant::now();
    let mut pages = PageImageWriter::create(
        dir,
        ImageKind::Pagemap,
        pids.inside(pid).try_into().unwrap_or(0),
        pages_id,
    )?;
    let page_stats = mm::dump_pages(pid, &vmas, &mut pages)?;
    pages.finish()?;
    totals.memdump_us = totals
        .memdump_us
        .saturating_add(mem_start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    totals.vmas += vmas.len();
    totals.scanned += page_stats.scanned;
    totals.written += page_stats.written;

    let mut main_core = cores[0].0.clone();
    main_core.tc = Some(pb::TaskCoreEntry {
        task_state: pb::TASK_ALIVE,
        exit_code: 0,
        personality,
        flags: stat.flags,
        blk_sigset: sigmask,
        comm: stat.comm.clone(),
        rlimits: Some(pb::TaskRlimitsEntry {
            rlimits: limits.iter().map(|&(cur, max)| pb::RlimitEntry { cur, max }).collect(),
        }),
        sigactions: injected.sigactions.clone(),
        timers: Some(pb::TaskTimersEntry {
            real: injected.itimers[0].clone(),
            virt: injected.itimers[1].clone(),
            prof: injected.itimers[2].clone(),
            posix: injected.posix_timers.clone(),
        }),
        loginuid,
        oom_score_adj,
        child_subreaper: Some(injected.child_subreaper),
        signals_s: Some(signal_queue(t, true)?),
        ..Default::default()
    });
    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: injected.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        dumpable: Some(injected.dumpable as i32),
        mm_saved_auxv: auxv,
        vmas: vma_entries,
        ..Default::default()
    };
    let id = pids.inside(pid) as u64;
    dir.write_all(ImageKind::Core, id, &[main_core])?;
    for (th, (core, _)) in threads.iter().zip(&cores).skip(1) {
        dir.write_all(
            ImageKind::Core,
            pids.inside(th.pid()) as u64,
            std::slice::from_ref(core),
        )?;
    }
    dir.write_all(ImageKind::Ids, id, std::slice::from_ref(ids))?;
    dir.write_all(ImageKind::Mm, id, &[mm])?;
    dir.write_all(
        ImageKind::Fs,
        id,
        &[pb::FsEntry {
            cwd_id,
            root_id,
            umask: Some(status.umask),
        }],
    )?;
    dir.write_all(ImageKind::Fdinfo, ids.files_id.into(), &fdinfo)?;
    Ok(())
}
