//! What the controller opens for one task before its puppet is built: its fds (shared open
//! files taken from [`SharedFiles`], or made now), its mapped files and shared memory, its pages
//! image, exe and cwd.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use super::files::{dup_ours, open_anon, open_reg, SharedFiles};
use super::plan::{Body, FdTarget, Plan, Tree};
use super::{object, Inherited, RestoreError, RestoreOpts};
use crate::image::{ImageDir, ImageKind};
use crate::sys;

/// The objects the controller opened for the puppet.
pub struct Prepared {
    /// Target fd number, close-on-exec, and our open file (shared by fds of one file id).
    pub fds: Vec<(i32, bool, std::rc::Rc<OwnedFd>)>,
    /// Epoll fds this task registers its targets in (once per epoll, by its first holder).
    pub epoll: Vec<(i32, Vec<crate::image::pb::EventpollTfdEntry>)>,
    /// Files the puppet opens itself once the tree's tasks exist: those of their /proc/PID
    /// directories, and pidfds of them.
    pub late_files: Vec<LateFile>,
    /// Our fd for each mapped file, by VMA index.
    pub mapped: Vec<(usize, std::rc::Rc<File>)>,
    pub pages: File,
    pub exe: File,
    pub cwd: File,
    /// The root directory of a chroot'ed task.
    pub root: Option<File>,
    /// What the puppets start with: what equals it is not set again.
    pub inherited: Rc<Inherited>,
}

/// A file the puppet opens itself at `fd`, once the tree's tasks exist.
#[derive(Clone, Debug)]
pub struct LateFile {
    pub fd: i32,
    pub cloexec: bool,
    /// fds with the same files.img id share the first one's open file.
    pub file_id: u32,
    pub open: LateOpen,
}

/// How a [`LateFile`] is opened.
#[derive(Clone, Debug)]
pub enum LateOpen {
    /// A file of the tree's /proc, by path, at its offset.
    Proc { path: String, flags: u32, pos: u64 },
    /// pidfd_open of a process of the tree (its pid inside).
    Pidfd { pid: i32, flags: u32 },
}

/// Whether `path` is in the /proc directory of a task (or thread) of the tree.
fn in_tree_proc(tree: &Tree, path: &str) -> bool {
    let Some(pid) = path
        .strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse::<i32>().ok())
    else {
        return false;
    };
    tree.tasks.iter().any(|t| {
        t.pid == pid || matches!(&t.body, Body::Alive(plan) if plan.threads.iter().any(|(tid, _)| *tid == pid))
    })
}

/// Opens everything task `plan` needs, sharing with the other tasks through `shared`.
pub(super) fn prepare(
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
    let mut late_files = Vec::new();
    for p in &plan.fds {
        let late = match &p.target {
            FdTarget::Reg { path, flags, pos, .. }
                if in_tree_proc(tree, path) && !opts.inherit_fds.iter().any(|(_, k)| k == path) =>
            {
                Some(LateOpen::Proc {
                    path: path.clone(),
                    flags: *flags,
                    pos: *pos,
                })
            }
            FdTarget::Pidfd { pid, flags } => Some(LateOpen::Pidfd {
                pid: *pid,
                flags: *flags,
            }),
            _ => None,
        };
        if let Some(open) = late {
            late_files.push(LateFile {
                fd: p.fd,
                cloexec: p.cloexec,
                file_id: p.file_id,
                open,
            });
            continue;
        }
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
                    FdTarget::Pidfd { pid, .. } => format!("pidfd of {pid}"),
                };
                let inherited = opts.inherit_fds.iter().find(|(_, k)| *k == key).map(|&(n, _)| n);
                let owned: OwnedFd = match (&p.target, inherited) {
                    (_, Some(n)) => dup_ours(n).map_err(object(pid, format!("--inherit-fd fd[{n}]")))?,
                    (FdTarget::Reg { path, flags, pos, size }, None) => {
                        let mut f = open_reg(shared.root.as_ref(), pid, path, *flags)?;
                        let now = f.metadata().map_err(object(pid, path.clone()))?;
                        // Files of /proc and /sys say 0 bytes whatever they hold.
                        let pseudo = now.len() == 0 && (path.starts_with("/proc/") || path.starts_with("/sys/"));
                        if now.is_file() && now.len() < *pos && !pseudo {
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
                        seek_new(&mut f, *flags, *pos).map_err(object(pid, format!("seeking {path}")))?;
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
                        seek_new(&mut f, *flags, *pos).map_err(object(pid, format!("seeking {path} (deleted)")))?;
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
                    (
                        FdTarget::Fifo {
                            path,
                            flags,
                            pipe_id,
                            ghost_id,
                        },
                        None,
                    ) => shared.fifo_end(tree, pid, *pipe_id, path, *flags, *ghost_id)?,
                    (FdTarget::Pidfd { pid, .. }, None) => {
                        return Err(RestoreError::Invalid {
                            what: format!("pid {pid}: fd {}: a pidfd is opened by the task itself", p.fd),
                        })
                    }
                    (FdTarget::Socket { ino }, None) => {
                        return Err(RestoreError::Invalid {
                            what: format!("pid {pid}: fd {}: socket {ino} was not rebuilt", p.fd),
                        })
                    }
                    (FdTarget::Anon(e), None) => {
                        if let Some(ep) = &e.epfd {
                            epoll.push((p.fd, ep.tfd.clone()));
                        }
                        // A watch on a deleted file goes on the file's ghost, through our fd
                        // on it (held until the watch is made).
                        let mut e = e.clone();
                        let mut held = Vec::new();
                        if let Some(ify) = e.ify.as_mut() {
                            for w in ify.wd.iter_mut().filter(|w| crate::fds::inotify::on_deleted(w)) {
                                let ghost = tree
                                    .ghosts
                                    .iter()
                                    .find(|(_, (g, _))| g.dev == Some(w.s_dev) && g.ino == Some(w.i_ino));
                                let Some((&ghost_id, _)) = ghost else { continue };
                                let path = w
                                    .f_handle
                                    .path
                                    .as_deref()
                                    .unwrap_or_default()
                                    .trim_end_matches(" (deleted)")
                                    .to_owned();
                                let file = shared.ghost_file(tree, pid, ghost_id, &path, libc::O_RDONLY as u32)?;
                                w.f_handle.path = Some(format!("/proc/self/fd/{}", file.as_raw_fd()));
                                held.push(file);
                            }
                        }
                        // Watched paths are the container's.
                        let made = shared
                            .here(|| open_anon(&e))
                            .map_err(object(pid, format!("fd {}: {}", p.fd, key)))?;
                        drop(held);
                        made
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
        // A shared mapping whose file was open for writing (`fdflags`, or its protection)
        // needs a writable file: it may be made writable later.
        let shared_write = v.status & crate::image::pb::vma_status::FILE_SHARED != 0
            && (v.prot & libc::PROT_WRITE as u32 != 0
                || v.fdflags.is_some_and(|f| f as i32 & libc::O_ACCMODE == libc::O_RDWR));
        if let Some(&ghost_id) = plan.vma_ghosts.get(&i) {
            // An unlinked file, made again once from its ghost; every mapping opens it anew.
            let flags = if shared_write { libc::O_RDWR } else { libc::O_RDONLY } as u32;
            mapped.push((i, Rc::new(shared.ghost_file(tree, pid, ghost_id, path, flags)?)));
            continue;
        }
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
    let root = match &plan.root {
        Some(path) => Some(open_reg(
            shared.root.as_ref(),
            pid,
            path,
            (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
        )?),
        None => None,
    };
    for (epfd, targets) in &epoll {
        let open = |n: u32| plan.fds.iter().any(|f| f.fd as u32 == n);
        if let Some(t) = targets.iter().find(|t| !open(t.held_at.unwrap_or(t.tfd))) {
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
        late_files,
        mapped,
        pages,
        exe,
        cwd,
        root,
    })
}

/// Moves a file just opened with `flags` to offset `pos`: a new open is at 0 (where a device
/// that cannot seek, a terminal, stays), and an O_PATH fd has no offset.
fn seek_new(f: &mut File, flags: u32, pos: u64) -> io::Result<()> {
    use std::io::Seek;
    if flags as i32 & libc::O_PATH == 0 && pos != 0 {
        f.seek(io::SeekFrom::Start(pos))?;
    }
    Ok(())
}
