//! `stasis restore`: the puppet restore.
//!
//! The images are read and checked first ([`plan`], [`session`]), then every file the tree
//! needs is opened here, in the controller (pipes are created and refilled). Only then is the
//! root puppet forked at its dumped pid (clone3 set_tid): a child stopped under ptrace that
//! executes nothing but the single syscalls we inject ([`puppet`]). Each puppet forks its
//! children the same way, sessions and groups are set, zombies end with their exit status, and
//! each live puppet drops our memory, takes its dumped layout, pulls its files from us with
//! pidfd_getfd, gets its registers back. All are let go together. Any failure kills them all.

pub mod plan;
pub mod puppet;
pub mod session;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use parasite::Tracee;

use crate::image::pb::MntEntry;
use crate::image::{ImageDir, ImageError, ImageKind};
use crate::sys::{self, PuppetSetup};
use plan::{Body, FdTarget, Plan, Tree};

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

/// The objects the controller opened for the puppet.
pub struct Prepared {
    /// Target fd number, close-on-exec, and our open file (shared by fds of one file id).
    pub fds: Vec<(i32, bool, std::rc::Rc<OwnedFd>)>,
    /// Epoll fds this task registers its targets in (once per epoll, by its first holder).
    pub epoll: Vec<(i32, Vec<crate::image::pb::EventpollTfdEntry>)>,
    /// Our fd for each mapped file, by VMA index.
    pub mapped: Vec<(usize, std::rc::Rc<File>)>,
    pub pages: File,
    pub exe: File,
    pub cwd: File,
    /// What the puppets start with: what equals it is not set again.
    pub inherited: Rc<Inherited>,
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

/// Opens the file a task had open at `path` again (inside `root`, a container's, if given).
fn open_reg(root: Option<&OwnedFd>, pid: i32, path: &str, flags: u32) -> Result<File, RestoreError> {
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_DIRECT
        | libc::O_NOATIME
        | libc::O_DIRECTORY
        | libc::O_PATH;
    let access = flags as i32 & libc::O_ACCMODE;
    if let Some(root) = root {
        use std::os::fd::AsFd;
        let custom = flags as i32 & keep;
        return sys::open_in_root(root.as_fd(), path, custom)
            .map(File::from)
            .map_err(object(pid, format!("reopening {path} in the container")));
    }
    OpenOptions::new()
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        .custom_flags((flags as i32 & keep & !libc::O_ACCMODE) | libc::O_CLOEXEC)
        .open(path)
        .map_err(object(pid, format!("reopening {path}")))
}

/// Open files shared by the tasks of the tree: one per files.img id, and the pipes.
#[derive(Default)]
pub struct SharedFiles {
    by_id: BTreeMap<u32, Rc<OwnedFd>>,
    /// By pipe id: our read and write ends, and whether each was handed out already.
    pipes: BTreeMap<u32, (OwnedFd, OwnedFd, bool, bool)>,
    /// Shared anonymous memory objects, by shmid.
    shmem: BTreeMap<u64, Rc<File>>,
    /// Unlinked files made again, by ghost id.
    ghosts: BTreeMap<u32, File>,
    /// FIFOs, held open for reading and writing while their ends are opened, by pipe id.
    fifos: BTreeMap<u32, File>,
    /// Pty masters made again, by index.
    ptys: BTreeMap<u32, OwnedFd>,
    /// The root of a container's mount namespace: paths are resolved inside it.
    root: Option<OwnedFd>,
    /// A container's new console (its runtime made it; the init holds it as fd 0): the
    /// terminal the tree's terminal fds get.
    console: Option<OwnedFd>,
    /// A container's init (our pid for it): what is made by path is made inside it.
    container: Option<i32>,
}

impl SharedFiles {
    /// Runs `f` where the restored files live: inside the container (a thread that joins its
    /// mount and network namespaces), or here.
    fn here<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        in_place(self.container, f)
    }

    /// Our fd on the master of pty `index`, made at that index the first time.
    fn pty_master(&mut self, tree: &Tree, pid: i32, index: u32) -> Result<i32, RestoreError> {
        use std::os::fd::AsRawFd;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.ptys.entry(index) {
            let (master, slave) = tree.ptys.get(&index).cloned().unwrap_or_default();
            let master = master.ok_or_else(|| RestoreError::Invalid {
                what: format!("pid {pid}: pty {index} has no master in tty-info.img"),
            })?;
            let fd = in_place(self.container, || {
                crate::fds::tty::open_master(index, &master, slave.as_ref())
            })
            .map_err(object(pid, format!("pty {index}")))?;
            slot.insert(fd);
        }
        Ok(self.ptys[&index].as_raw_fd())
    }

    /// A new open of the FIFO at `path` with `flags`. The first open of each FIFO is ours,
    /// for reading and writing (so that no open blocks), and refills it.
    fn fifo_end(
        &mut self,
        tree: &Tree,
        pid: i32,
        pipe_id: u32,
        path: &str,
        flags: u32,
    ) -> Result<OwnedFd, RestoreError> {
        use std::os::fd::AsFd;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.fifos.entry(pipe_id) {
            let holder = open_reg(self.root.as_ref(), pid, path, (libc::O_RDWR | libc::O_NONBLOCK) as u32)?;
            if let Some(d) = tree.fifos.get(&pipe_id).filter(|d| !d.data.is_empty()) {
                use std::io::Write;
                (&holder)
                    .write_all(&d.data)
                    .map_err(object(pid, format!("refilling the FIFO {path}")))?;
            }
            slot.insert(holder);
        }
        let end = open_reg(self.root.as_ref(), pid, path, flags | libc::O_NONBLOCK as u32)?;
        sys::set_status_flags(end.as_fd(), flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND))
            .map_err(object(pid, format!("the FIFO {path}")))?;
        Ok(end.into())
    }

    /// A new open file (its own description, with `flags`) on ghost `ghost_id`: the file is
    /// made the first time at its old path (or beside it, if that name is taken now) with its
    /// contents, mode, owner and times, then unlinked.
    fn ghost_file(
        &mut self,
        tree: &Tree,
        pid: i32,
        ghost_id: u32,
        path: &str,
        flags: u32,
    ) -> Result<File, RestoreError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let std::collections::btree_map::Entry::Vacant(slot) = self.ghosts.entry(ghost_id) {
            let (entry, data) = tree.ghosts.get(&ghost_id).ok_or_else(|| RestoreError::Invalid {
                what: format!("pid {pid}: ghost file {ghost_id} is not in the checkpoint"),
            })?;
            let what = || format!("{path} (deleted)");
            // Made at its path (its filesystem, its directory) and unlinked at once: the
            // contents go in through the open file.
            let make = || -> io::Result<File> {
                let mut name = std::path::PathBuf::from(path);
                let mut tries = 0;
                let file = loop {
                    match OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_CLOEXEC)
                        .open(&name)
                    {
                        Ok(f) => break f,
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => {
                            tries += 1;
                            name =
                                std::path::PathBuf::from(format!("{path}.stasis-ghost-{}-{tries}", std::process::id()));
                        }
                        Err(e) => return Err(e),
                    }
                };
                std::fs::remove_file(&name)?;
                Ok(file)
            };
            let file = in_place(self.container, make).map_err(object(pid, format!("making {} again", what())))?;
            let made = (|| -> io::Result<()> {
                use std::io::Write;
                (&file).write_all(data)?;
                file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
                std::os::unix::fs::fchown(&file, Some(entry.uid), Some(entry.gid))?;
                let t = |tv: &Option<crate::image::pb::Timeval>| {
                    tv.as_ref()
                        .map(|t| std::time::UNIX_EPOCH + Duration::new(t.tv_sec, (t.tv_usec * 1000) as u32))
                };
                let times = std::fs::FileTimes::new();
                let times = match t(&entry.atim) {
                    Some(a) => times.set_accessed(a),
                    None => times,
                };
                let times = match t(&entry.mtim) {
                    Some(m) => times.set_modified(m),
                    None => times,
                };
                file.set_times(times)
            })();
            made.map_err(object(pid, format!("filling {}", what())))?;
            slot.insert(file);
        }
        let ours = &self.ghosts[&ghost_id];
        open_reg(None, pid, &format!("/proc/self/fd/{}", ours.as_raw_fd()), flags)
    }

    /// The shared memory object `shmid`, created and filled with its saved pages the first
    /// time a task needs it.
    fn shmem_object(&mut self, dir: &ImageDir, tree: &Tree, pid: i32, shmid: u64) -> Result<Rc<File>, RestoreError> {
        use std::os::unix::fs::FileExt;
        if let Some(f) = self.shmem.get(&shmid) {
            return Ok(f.clone());
        }
        let what = || format!("shared memory {shmid}");
        let obj = tree.shmem.get(&shmid).ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {pid}: {} is not in the checkpoint", what()),
        })?;
        // CRIU names shared anonymous memory a memfd "/dev/zero"; it is remade as what it was.
        let memfd = obj.memfd.as_ref().filter(|(name, _)| name != "/dev/zero");
        let file = match memfd {
            Some((name, _)) => sys::new_memfd(name, obj.size),
            None => sys::new_shmem(obj.size),
        }
        .map_err(object(pid, what()))?;
        if let Some(pages) = &obj.pages {
            let path = dir.image_path(ImageKind::Pages, pages.pages_id.into());
            let src = File::open(&path).map_err(object(pid, path.display().to_string()))?;
            let mut buf = Vec::new();
            for r in pages.runs.iter().filter(|r| r.is_present()) {
                let mut done = 0;
                while done < r.len() {
                    let len = (r.len() - done).min(4 << 20);
                    buf.resize(len as usize, 0);
                    src.read_exact_at(&mut buf, r.offset + done)
                        .map_err(object(pid, path.display().to_string()))?;
                    file.write_all_at(&buf, r.vaddr + done).map_err(object(pid, what()))?;
                    done += len;
                }
            }
        }
        if let Some(&(_, seals)) = memfd.filter(|(_, s)| *s != 0) {
            sys::add_seals(&file, seals).map_err(object(pid, format!("sealing {}", what())))?;
        }
        let rc = Rc::new(file);
        self.shmem.insert(shmid, rc.clone());
        Ok(rc)
    }

    /// An open file for one end of pipe `pipe_id` with `flags`: the first of each end is the
    /// pipe's own, later ones are reopened (a distinct open file, as they were).
    fn pipe_end(&mut self, tree: &Tree, pid: i32, pipe_id: u32, flags: u32) -> Result<OwnedFd, RestoreError> {
        use std::io::Write;
        use std::os::fd::AsFd;
        let what = || format!("pipe:[{pipe_id}]");
        let slot = match self.pipes.entry(pipe_id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let data = tree.pipes.get(&pipe_id).cloned().unwrap_or_default();
                let capacity = data.capacity.filter(|&c| c as usize >= data.data.len());
                let (r, w) = sys::new_pipe(capacity).map_err(object(pid, what()))?;
                if !data.data.is_empty() {
                    sys::set_status_flags(w.as_fd(), libc::O_NONBLOCK).map_err(object(pid, what()))?;
                    File::from(w.try_clone().map_err(object(pid, what()))?)
                        .write_all(&data.data)
                        .map_err(object(pid, format!("refilling {}", what())))?;
                }
                v.insert((r, w, false, false))
            }
        };
        let (r, w, r_used, w_used) = slot;
        let access = flags as i32 & libc::O_ACCMODE;
        let file: OwnedFd = match access {
            libc::O_RDONLY if !*r_used => {
                *r_used = true;
                r.try_clone().map_err(object(pid, what()))?
            }
            libc::O_WRONLY if !*w_used => {
                *w_used = true;
                w.try_clone().map_err(object(pid, what()))?
            }
            _ => {
                use std::os::fd::AsRawFd;
                let path = format!("/proc/self/fd/{}", r.as_raw_fd());
                open_reg(None, pid, &path, access as u32)?.into()
            }
        };
        let status = flags as i32 & (libc::O_NONBLOCK | libc::O_DIRECT);
        sys::set_status_flags(file.as_fd(), status).map_err(object(pid, what()))?;
        Ok(file)
    }
}

fn prepare(
    dir: &ImageDir,
    tree: &Tree,
    plan: &Plan,
    opts: &RestoreOpts,
    shared: &mut SharedFiles,
    inherited: &Rc<Inherited>,
) -> Result<Prepared, RestoreError> {
    use std::io::Seek;
    let pid = plan.pid;
    let mut fds = Vec::with_capacity(plan.fds.len());
    let mut epoll = Vec::new();
    for p in &plan.fds {
        let file = match shared.by_id.get(&p.file_id) {
            Some(f) => f.clone(),
            None => {
                let key = match &p.target {
                    FdTarget::Reg { path, .. } | FdTarget::Tty { path } => path.clone(),
                    FdTarget::External { key } => key.clone(),
                    FdTarget::Pipe { pipe_id, .. } => format!("pipe:[{pipe_id}]"),
                    FdTarget::Anon(e) => format!("anon:{}", e.id),
                    FdTarget::Socket { ino } => format!("socket:[{ino}]"),
                    FdTarget::Ghost { path, .. } => format!("{path} (deleted)"),
                    FdTarget::Fifo { path, .. } => path.clone(),
                    FdTarget::Memfd { shmid, .. } => format!("memfd {shmid}"),
                    FdTarget::PtyMaster { index } => format!("pty master {index}"),
                    FdTarget::PtySlave { index, .. } => format!("/dev/pts/{index}"),
                };
                let inherited = opts.inherit_fds.iter().find(|(_, k)| *k == key).map(|&(n, _)| n);
                let owned: OwnedFd = match (&p.target, inherited) {
                    (_, Some(n)) => dup_ours(n).map_err(object(pid, format!("--inherit-fd fd[{n}]")))?,
                    (FdTarget::Reg { path, flags, pos, size }, None) => {
                        let mut f = open_reg(shared.root.as_ref(), pid, path, *flags)?;
                        let now = f.metadata().map_err(object(pid, path.clone()))?;
                        if now.is_file() && now.len() < *pos {
                            return Err(RestoreError::Invalid {
                                what: format!(
                                    "pid {pid}: fd {}: {path} is now {} bytes, shorter than its offset {pos}",
                                    p.fd,
                                    now.len()
                                ),
                            });
                        }
                        if let Some(size) = size.filter(|&s| now.is_file() && s != now.len()) {
                            eprintln!(
                                "stasis: warning: {path} changed size since the dump ({size} -> {} bytes)",
                                now.len()
                            );
                        }
                        // An O_PATH fd has no offset.
                        if *flags as i32 & libc::O_PATH == 0 {
                            f.seek(io::SeekFrom::Start(*pos))
                                .map_err(object(pid, format!("seeking {path}")))?;
                        }
                        f.into()
                    }
                    (FdTarget::Tty { path }, None) if opts.shell_job => {
                        // The terminal outside the tree: a container's new console, or ours.
                        let ours = match &shared.console {
                            Some(console) => Some(console.as_raw_fd()),
                            None => (0..3).find(|&n| sys::isatty(n)),
                        };
                        let ours = ours.ok_or_else(|| RestoreError::Invalid {
                            what: format!("pid {pid}: fd {} was the terminal {path}, but --shell-job found no terminal on our fds 0-2", p.fd),
                        })?;
                        dup_ours(ours).map_err(object(pid, format!("the terminal (our fd {ours})")))?
                    }
                    (FdTarget::Pipe { pipe_id, flags }, None) => shared.pipe_end(tree, pid, *pipe_id, *flags)?,
                    (
                        FdTarget::Ghost {
                            path,
                            flags,
                            pos,
                            ghost_id,
                        },
                        None,
                    ) => {
                        let mut f = shared.ghost_file(tree, pid, *ghost_id, path, *flags)?;
                        f.seek(io::SeekFrom::Start(*pos))
                            .map_err(object(pid, format!("seeking {path} (deleted)")))?;
                        f.into()
                    }
                    (FdTarget::PtyMaster { index }, None) => {
                        let master = shared.pty_master(tree, pid, *index)?;
                        sys::dup_cloexec(master).map_err(object(pid, format!("pty master {index}")))?
                    }
                    (FdTarget::PtySlave { index, flags }, None) => {
                        shared.pty_master(tree, pid, *index)?;
                        let slave = format!("/dev/pts/{index}");
                        open_reg(shared.root.as_ref(), pid, &slave, flags | libc::O_NOCTTY as u32)?.into()
                    }
                    (FdTarget::Memfd { shmid, flags, pos }, None) => {
                        use std::os::fd::AsRawFd;
                        let obj = shared.shmem_object(dir, tree, pid, *shmid)?;
                        let mut f = open_reg(None, pid, &format!("/proc/self/fd/{}", obj.as_raw_fd()), *flags)?;
                        f.seek(io::SeekFrom::Start(*pos))
                            .map_err(object(pid, format!("seeking memfd {shmid}")))?;
                        f.into()
                    }
                    (FdTarget::Fifo { path, flags, pipe_id }, None) => {
                        shared.fifo_end(tree, pid, *pipe_id, path, *flags)?
                    }
                    (FdTarget::Socket { ino }, None) => {
                        return Err(RestoreError::Invalid {
                            what: format!("pid {pid}: fd {}: unix socket {ino} was not rebuilt", p.fd),
                        })
                    }
                    (FdTarget::Anon(e), None) => {
                        if let Some(ep) = &e.epfd {
                            epoll.push((p.fd, ep.tfd.clone()));
                        }
                        // Watched paths are the container's.
                        shared
                            .here(|| open_anon(e))
                            .map_err(object(pid, format!("fd {}: {}", p.fd, key)))?
                    }
                    (FdTarget::Tty { path: what }, None) | (FdTarget::External { key: what }, None) => {
                        return Err(RestoreError::External {
                            pid,
                            fd: p.fd,
                            what: what.clone(),
                        });
                    }
                };
                let rc = Rc::new(owned);
                shared.by_id.insert(p.file_id, rc.clone());
                rc
            }
        };
        fds.push((p.fd, p.cloexec, file));
    }
    let mut by_path: BTreeMap<&str, Rc<File>> = BTreeMap::new();
    let mut mapped = Vec::new();
    for (&i, path) in &plan.vma_paths {
        let v = &plan.mm.vmas[i];
        let shared_write =
            v.status & crate::image::pb::vma_status::FILE_SHARED != 0 && v.prot & libc::PROT_WRITE as u32 != 0;
        let file = match by_path.get(path.as_str()) {
            Some(f) if !shared_write => f.clone(),
            _ => {
                let flags = if shared_write { libc::O_RDWR } else { libc::O_RDONLY } as u32;
                let f = Rc::new(open_reg(shared.root.as_ref(), pid, path, flags)?);
                if !shared_write {
                    by_path.insert(path, f.clone());
                }
                f
            }
        };
        mapped.push((i, file));
    }
    for (&i, &shmid) in &plan.vma_shmem {
        mapped.push((i, shared.shmem_object(dir, tree, pid, shmid)?));
    }
    for (&i, &shmid) in plan.vma_sysv.iter().filter(|_| shared.root.is_none()) {
        // A SysV segment of the host's IPC namespace is not saved: it must still be there.
        // (A container's are, and were made again in its namespace.)
        let v = &plan.mm.vmas[i];
        let size = sys::shm_size(shmid as i32).map_err(|e| RestoreError::Unsupported {
            pid,
            what: format!("SysV shared memory segment {shmid} is gone ({e}): its contents were not saved"),
        })?;
        if v.pgoff != 0 || v.end - v.start != size.next_multiple_of(crate::image::pages::PAGE_SIZE) {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!(
                    "mapping {:#x}-{:#x} covers only part of SysV segment {shmid} ({size} bytes)",
                    v.start, v.end
                ),
            });
        }
    }
    let pages_path = dir.image_path(ImageKind::Pages, plan.pagemap.pages_id.into());
    let pages = File::open(&pages_path).map_err(object(pid, pages_path.display().to_string()))?;
    let exe = open_reg(shared.root.as_ref(), pid, &plan.exe, libc::O_RDONLY as u32)?;
    let cwd = open_reg(
        shared.root.as_ref(),
        pid,
        &plan.cwd,
        (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
    )?;
    for (epfd, targets) in &epoll {
        if let Some(t) = targets.iter().find(|t| !plan.fds.iter().any(|f| f.fd as u32 == t.tfd)) {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("epoll fd {epfd} watches fd {}, which is not open in the task", t.tfd),
            });
        }
    }
    Ok(Prepared {
        inherited: inherited.clone(),
        fds,
        epoll,
        mapped,
        pages,
        exe,
        cwd,
    })
}

/// A new file on an anonymous inode, in the state of its files.img entry.
fn open_anon(e: &crate::image::pb::FileEntry) -> io::Result<OwnedFd> {
    use crate::fds;
    if let Some(x) = &e.efd {
        fds::eventfd::open(x)
    } else if let Some(x) = &e.sgfd {
        fds::signalfd::open(x)
    } else if let Some(x) = &e.tfd {
        fds::timerfd::open(x)
    } else if let Some(x) = &e.epfd {
        fds::epoll::open(x)
    } else if let Some(x) = &e.ify {
        fds::inotify::open(x)
    } else if let Some(x) = &e.ffy {
        fds::fanotify::open(x)
    } else {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// A duplicate of our fd `fd` (named by the user with --inherit-fd, or our terminal).
fn dup_ours(fd: i32) -> io::Result<OwnedFd> {
    sys::dup_cloexec(fd)
}

/// The puppets made so far, by task index; all are killed if the restore fails.
#[derive(Default)]
struct Puppets {
    leaders: Vec<Option<Tracee>>,
    threads: Vec<Tracee>,
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
    fn kill_all(self) {
        for t in self.threads {
            t.forget();
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
fn check_pids_free(tree: &Tree) -> Result<(), RestoreError> {
    for t in &tree.tasks {
        let mut pids = vec![t.pid];
        if let Body::Alive(plan) = &t.body {
            pids.extend(plan.threads.iter().map(|(tid, _)| *tid));
        }
        for pid in pids {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(RestoreError::PidTaken { pid });
            }
        }
    }
    Ok(())
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

/// The state a container's init starts the restore with, checked against the image.
fn container_start(tree: &Tree, host: i32, init: &Tracee, ctl_fd: i32) -> Result<(OwnedFd, Inherited), RestoreError> {
    let pid = tree.tasks[0].pid;
    let inside = crate::ns::pid::levels(host).and_then(|l| l.last().copied());
    if inside != Some(pid) {
        return Err(RestoreError::Invalid {
            what: format!(
                "pid {host}: the container's init is pid {inside:?} in its namespace, the dumped root was {pid}"
            ),
        });
    }
    let stat = crate::procfs::parse_stat(
        &std::fs::read_to_string(format!("/proc/{host}/stat")).map_err(object(host, "stat"))?,
    )
    .ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {host}: unreadable stat"),
    })?;
    let root = &tree.tasks[0];
    if root.sid != root.pid || stat.sid != host as u32 {
        return Err(RestoreError::Unsupported {
            pid,
            what: "the container's init must lead its session, dumped and now".into(),
        });
    }
    let root_dir = std::fs::File::open(format!("/proc/{host}/root")).map_err(object(host, "the container's root"))?;
    let mut inherited = Inherited::of(&host.to_string(), 0);
    inherited.filters = init.seccomp_filters()?;
    inherited.ctl_fd = Some(ctl_fd);
    Ok((root_dir.into(), inherited))
}

/// Unpacks each saved tmpfs (`tmpfs-dev-<dev>.tar.gz.img`, by its filesystem's device) into
/// the container's mount at the same place (`mountpoints-N.img`: the mount of that device
/// at its root), as the runtime made it again, empty.
fn restore_tmpfs(
    dir: &ImageDir,
    listed: &[(ImageKind, u64)],
    mounts: &[MntEntry],
    root: &OwnedFd,
    pid: i32,
) -> Result<(), RestoreError> {
    use std::os::fd::AsFd;
    let mut points = BTreeMap::new();
    for m in mounts {
        if m.root == "/" && m.fstype == crate::image::pb::Fstype::Tmpfs as u32 {
            points.entry(u64::from(m.root_dev)).or_insert(m.mountpoint.as_str());
        }
    }
    for &(kind, id) in listed {
        if kind != ImageKind::TmpfsDev {
            continue;
        }
        let point = points.get(&id).ok_or_else(|| RestoreError::Invalid {
            what: format!("tmpfs-dev-{id}.tar.gz.img: no tmpfs of device {id} in the mount images"),
        })?;
        // /dev is the runtime's to fill (a CRIU image holds its device nodes), and
        // /sys/fs/cgroup holds only mount points.
        if matches!(*point, "/dev" | "/sys/fs/cgroup") {
            continue;
        }
        let what = || format!("the tmpfs at {point}");
        let mount = File::from(
            sys::open_in_root(root.as_fd(), point, libc::O_RDONLY | libc::O_DIRECTORY).map_err(object(pid, what()))?,
        );
        if !sys::is_tmpfs(&mount) {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("{} is not a tmpfs in the new container", what()),
            });
        }
        let path = dir.image_path(kind, id);
        let archive = File::open(&path).map_err(object(pid, path.display().to_string()))?;
        crate::ns::tmpfs::extract(mount.as_fd(), archive).map_err(object(pid, what()))?;
    }
    Ok(())
}

/// Mounts again, through the container's init, the tmpfs mounts the container had made
/// itself (the runtime made the declared ones), parents first, as they were listed.
fn replay_mounts(mounts: &[MntEntry], init: &Tracee, pid: i32, declared: &[String]) -> Result<(), RestoreError> {
    use crate::image::pb::Fstype;
    let point = |id: u32| mounts.iter().find(|m| m.mnt_id == id).map(|m| m.mountpoint.as_str());
    let declared: std::collections::BTreeSet<&str> = declared.iter().map(|d| d.trim_end_matches('/')).collect();
    for m in mounts {
        // Ours mark the runtime's mounts external; in any image (CRIU's do not say), the
        // ones its config declares are the runtime's too.
        let parent = point(m.parent_mnt_id);
        let root = m.mountpoint == "/";
        if root || m.ext_mount == Some(true) || crate::ns::mnt::runtimes(&m.mountpoint, parent, &declared) {
            continue;
        }
        if m.fstype != Fstype::Tmpfs as u32 || !m.mountpoint.starts_with('/') {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!(
                    "the container's own mount at {:?}: only tmpfs mounts are made again",
                    m.mountpoint
                ),
            });
        }
        // Superblock options but the read-only state, which the flags carry.
        let data: Vec<&str> = m
            .options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | "seclabel" | "") && !o.contains('\0'))
            .collect();
        let ro = if m.options.split(',').any(|o| o == "ro") {
            libc::MS_RDONLY
        } else {
            0
        };
        let flags = u64::from(m.flags | ro as u32) & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_MOVE);
        puppet::mount_tmpfs(init, &m.mountpoint, flags, &data.join(","))?;
    }
    Ok(())
}

/// The images of a directory, by kind and id.
type Listed = Vec<(ImageKind, u64)>;

/// The images of the directory, and the mounts its mount images hold.
fn listed_and_mounts(dir: &ImageDir) -> Result<(Listed, Vec<MntEntry>), RestoreError> {
    let listed: Listed = dir.list()?.iter().filter_map(|l| l.kind).collect();
    let mut mounts = Vec::new();
    for &(kind, id) in listed.iter().filter(|(k, _)| *k == ImageKind::Mnts) {
        mounts.extend(dir.read_all::<MntEntry>(kind, id)?);
    }
    Ok((listed, mounts))
}

/// Makes the container's SysV objects again in its new IPC namespace.
fn restore_ipc(dir: &ImageDir, listed: &[(ImageKind, u64)], host: i32, pid: i32) -> Result<(), RestoreError> {
    let mut ids: Vec<u64> = listed
        .iter()
        .filter(|(k, _)| matches!(k, ImageKind::IpcnsShm | ImageKind::IpcnsSem | ImageKind::IpcnsMsg))
        .map(|&(_, id)| id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        crate::ns::ipc::restore(host, dir, id as u32).map_err(|what| RestoreError::Unsupported { pid, what })?;
    }
    Ok(())
}

/// The container's init, its fd for us, and our end of its control socket (if any).
type Container = (Tracee, i32, Option<OwnedFd>);

fn restore_tree(opts: &RestoreOpts, container: Option<Container>) -> Result<RestoreReport, RestoreError> {
    let start = Instant::now();
    let dir = ImageDir::open(&opts.images)?;
    let tree = Tree::load(&dir)?;
    let (setup, steps) = session::plan(&tree, opts.shell_job)?;
    let pid0 = tree.tasks[0].pid;
    let mut shared = SharedFiles::default();
    let (mut init, inherited) = match container {
        Some((init, ctl_fd, ctl_socket)) => {
            let (root, mut inherited) = container_start(&tree, init.pid(), &init, ctl_fd)?;
            inherited.ctl_socket = ctl_socket.map(Rc::new);
            // Before any file is opened or segment attached: what the container's tmpfs
            // mounts and IPC namespace held.
            let (listed, mounts) = listed_and_mounts(&dir)?;
            replay_mounts(&mounts, &init, pid0, &opts.declared_mounts)?;
            restore_tmpfs(&dir, &listed, &mounts, &root, pid0)?;
            shared.container = Some(init.pid());
            if opts.shell_job {
                // A container with a terminal: the console its runtime just gave the init.
                let console = sys::copy_fd_of(init.pid(), 0).map_err(object(init.pid(), "its console (fd 0)"))?;
                if !sys::isatty(console.as_raw_fd()) {
                    return Err(RestoreError::Invalid {
                        what: format!("pid {}: fd 0 of the container's init is not a terminal", init.pid()),
                    });
                }
                shared.console = Some(console);
            }
            restore_ipc(&dir, &listed, init.pid(), pid0)?;
            crate::ns::net::restore(init.pid(), &dir).map_err(|what| RestoreError::Unsupported { pid: pid0, what })?;
            if opts.cgroup_settings {
                if let Some(saved) = dir.read_one::<crate::image::pb::CgroupEntry>(ImageKind::Cgroup, 0)? {
                    crate::ns::cgroup::apply(init.pid(), &saved)
                        .map_err(|what| RestoreError::Unsupported { pid: pid0, what })?;
                }
            }
            shared.root = Some(root);
            (Some(init), inherited)
        }
        None => {
            check_pids_free(&tree)?;
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
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(tree.tasks.len());
    for t in &tree.tasks {
        prepared.push(match &t.body {
            Body::Alive(plan) => Some(prepare(&dir, &tree, plan, opts, &mut shared, &inherited)?),
            Body::Zombie { .. } => None,
        });
    }
    let contained = init.is_some();
    let root = match init.take() {
        Some(t) => t,
        None => fork_root(&tree, setup)?,
    };
    let pid = root.pid();
    let mut puppets = Puppets {
        leaders: (0..tree.tasks.len()).map(|_| None).collect(),
        threads: Vec::new(),
    };
    puppets.leaders[0] = Some(root);
    let uts_here = tree.uts.as_ref().filter(|_| contained);
    if let Err(e) = build_tree(&tree, &steps, &prepared, &mut puppets, uts_here) {
        puppets.kill_all();
        return Err(e);
    }
    bound.keep();
    // Let everything go: the other threads first, then each process.
    for t in puppets.threads {
        t.detach()?;
    }
    for t in puppets.leaders.into_iter().flatten() {
        t.detach()?;
    }
    drop(prepared);
    drop(shared);
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

/// Forks the root puppet at the dumped root's pid, in the session, group and UTS namespace
/// the plan gives it.
fn fork_root(tree: &Tree, setup: session::RootSetup) -> Result<Tracee, RestoreError> {
    check_pids_free(tree)?;
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

/// Creates every process of the tree (in the order of `steps`), ends the zombies, and builds
/// every live process; all stay stopped in `puppets`. With `uts_here`, the root sets these
/// names in the UTS namespace it is in.
fn build_tree(
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

    for step in steps {
        match *step {
            session::Step::Fork { parent, child } => {
                let t = puppet::fork_child(puppets.get(parent)?, scratch, tree.tasks[child].pid)?;
                puppets.leaders[child] = Some(t);
            }
            session::Step::Setsid(i) => {
                puppet::call(puppets.get(i)?, scratch, "setsid", libc::SYS_setsid, [0; 6])?;
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

    for (i, plan) in tree.alive() {
        let prep = prepared[i].as_ref().ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {}: nothing prepared", plan.pid),
        })?;
        let threads = puppet::build(puppets.get(i)?, plan, prep, scratch, i == 0, &tree.seccomp)?;
        puppets.threads.extend(threads);
    }
    Ok(())
}
