//! Reading and checking the images of a restore before anything is created: every error a
//! damaged or unsupported image can cause is found here, so a failed restore leaves nothing.
//!
//! The tree-wide images are read in [`objects`], each task's in [`task`].

pub mod objects;
pub mod task;

use std::collections::BTreeMap;

use super::RestoreError;
use crate::fds::tty::{pty_end, PtyEnd};
use crate::image::pages::Pagemap;
use crate::image::pb;
use crate::image::{ImageDir, ImageKind};
use objects::{check_seccomp, load_pipe_data, load_shmem, own_uts, Ttys};
use task::Tables;

/// What a file descriptor of the restored task is.
#[derive(Clone, Debug)]
pub enum FdTarget {
    /// Reopen `path` with `flags` at `pos`.
    Reg {
        path: String,
        flags: u32,
        pos: u64,
        size: Option<u64>,
    },
    /// A terminal the task had (taken from the caller with --shell-job).
    Tty { path: String },
    /// Something outside the dump (a pipe of the caller): `--inherit-fd fd[N]:KEY` provides it.
    External { key: String },
    /// An end of a pipe whose both ends are in the tree (file flags say which end).
    Pipe { pipe_id: u32, flags: u32 },
    /// A file on an anonymous inode (eventfd, signalfd, timerfd, epoll, inotify), made anew
    /// from its files.img entry.
    Anon(Box<pb::FileEntry>),
    /// A unix socket: all of them are rebuilt together, before the tasks' files are prepared.
    Socket { ino: u32 },
    /// The master of pty `index`, made in the tree.
    PtyMaster { index: u32 },
    /// A slave of pty `index`, whose master is in the tree.
    PtySlave { index: u32, flags: u32 },
    /// An open file on a memfd (shared memory object `shmid`).
    Memfd { shmid: u64, flags: u32, pos: u64 },
    /// An end of a named pipe, opened by path; its buffered bytes come back once.
    Fifo {
        path: String,
        flags: u32,
        pipe_id: u32,
        /// An unlinked FIFO's node, made again from this ghost.
        ghost_id: Option<u32>,
    },
    /// A file that was unlinked while open: made again from its saved contents (ghost
    /// `ghost_id`), then unlinked.
    Ghost {
        path: String,
        flags: u32,
        pos: u64,
        ghost_id: u32,
    },
    /// A pidfd of the process `pid` (its pid inside), opened once it exists.
    Pidfd { pid: i32, flags: u32 },
}

/// One fd to install.
#[derive(Clone, Debug)]
pub struct PlannedFd {
    pub fd: i32,
    pub cloexec: bool,
    /// files.img id: fds with the same id share one open file.
    pub file_id: u32,
    pub target: FdTarget,
    /// Who gets the file's signals (F_SETOWN_EX, F_SETSIG) and whether it sends them
    /// (O_ASYNC), when either was set.
    pub owner: Option<(crate::image::pb::FownEntry, bool)>,
}

/// Everything the restore of one live process needs, checked.
#[derive(Clone, Debug)]
pub struct Plan {
    pub pid: i32,
    /// It was stopped (TASK_STOPPED): it is let go stopped.
    pub stopped: bool,
    pub core: pb::CoreEntry,
    /// The other threads: tid and core.
    pub threads: Vec<(i32, pb::CoreEntry)>,
    pub mm: pb::MmEntry,
    pub pagemap: Pagemap,
    pub exe: String,
    pub cwd: String,
    /// The root directory of a chroot'ed task (`None`: the restorer's, or the container's).
    pub root: Option<String>,
    pub umask: Option<u32>,
    /// Path of every file-backed VMA, by VMA index.
    pub vma_paths: BTreeMap<usize, String>,
    /// The ghost of every VMA whose file was unlinked (its path is in `vma_paths`).
    pub vma_ghosts: BTreeMap<usize, u32>,
    /// The shared-memory object (shmid) of every MAP_SHARED|MAP_ANONYMOUS VMA, by VMA index.
    pub vma_shmem: BTreeMap<usize, u64>,
    /// The SysV shared memory segment (shmid) of every SysV attachment, by VMA index.
    pub vma_sysv: BTreeMap<usize, u64>,
    /// The file locks this task takes again (filelocks.img entries of its pid).
    pub locks: Vec<pb::FileLockEntry>,
    /// The task's UTS namespace (ids-N.img).
    pub uts_ns_id: Option<u32>,
    /// The controlling terminal this session leader takes again: its fd on the pty slave, and
    /// the foreground process group.
    pub ctty: Option<(i32, u32)>,
    pub fds: Vec<PlannedFd>,
}

/// A process of the tree.
#[derive(Clone, Debug)]
pub struct TaskNode {
    pub pid: i32,
    /// Index of the parent in [`Tree::tasks`] (`None` for the root).
    pub parent: Option<usize>,
    pub pgid: i32,
    pub sid: i32,
    pub body: Body,
}

/// What a process of the tree is.
#[derive(Clone, Debug)]
pub enum Body {
    Alive(Box<Plan>),
    /// A zombie, with the wait status its parent will reap, and its name.
    Zombie {
        exit_code: u32,
        comm: String,
    },
}

/// Data buffered in a pipe at dump time, and the pipe's capacity.
#[derive(Clone, Debug, Default)]
pub struct PipeData {
    pub data: Vec<u8>,
    pub capacity: Option<u32>,
}

/// A shared memory object: the size its mappings cover, its saved pages, and for a memfd
/// its name and seals.
#[derive(Clone, Debug)]
pub struct SharedObject {
    pub size: u64,
    pub pages: Option<Pagemap>,
    pub memfd: Option<(String, u32)>,
    /// A memfd's mode (its permission bits), owner and group.
    pub attrs: Option<(u32, u32, u32)>,
}

/// The whole checkpoint: its processes, parents before children, the pipe contents and the
/// shared memory objects (by shmid).
#[derive(Clone, Debug)]
pub struct Tree {
    pub tasks: Vec<TaskNode>,
    pub pipes: BTreeMap<u32, PipeData>,
    /// What FIFOs held, by pipe id (inode).
    pub fifos: BTreeMap<u32, PipeData>,
    pub shmem: BTreeMap<u64, SharedObject>,
    /// Every unix socket of files.img, and the data queued in each (by the reader's id).
    pub unix: Vec<pb::UnixSkEntry>,
    pub unix_queues: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Every IPv4/IPv6 socket of files.img (by files.img id in `id`).
    pub inet: Vec<pb::InetSkEntry>,
    /// The datagrams waiting in UDP sockets, with their senders (by the socket's id).
    pub inet_queues: BTreeMap<u32, Vec<(std::net::SocketAddr, Vec<u8>)>>,
    /// Every netlink socket of files.img.
    pub netlink: Vec<pb::NetlinkSkEntry>,
    /// Every packet socket of files.img.
    pub packet: Vec<pb::PacketSockEntry>,
    /// How the dump locked its connections (the inventory's network_lock_method).
    pub net_lock: crate::netlock::Method,
    /// seccomp.img: every filter, each pointing at the one installed before it.
    pub seccomp: Vec<pb::SeccompFilter>,
    /// The links a dump made to unlinked files (--link-remap), removed once the restore is
    /// done.
    pub link_remaps: Vec<String>,
    /// Unlinked files: their attributes and contents, by ghost id.
    pub ghosts: BTreeMap<u32, (pb::GhostFileEntry, crate::fds::ghost::Chunks)>,
    /// The UTS namespace the tree gets, when it had one of its own: its names.
    pub uts: Option<pb::UtsnsEntry>,
    /// The ptys made in the tree, by index: the settings of their master and slave.
    pub ptys: BTreeMap<u32, (Option<pb::TtyInfoEntry>, Option<pb::TtyInfoEntry>)>,
}

impl Tree {
    /// Loads and checks the images in `dir`.
    pub fn load(dir: &ImageDir) -> Result<Tree, RestoreError> {
        let inv: pb::InventoryEntry = dir.read_one(ImageKind::Inventory, 0)?.ok_or_else(|| {
            invalid(format!(
                "{}: no inventory.img: not a complete dump",
                dir.path().display()
            ))
        })?;
        if inv.img_version != crate::image::magic::IMAGES_V1_1 {
            return Err(invalid(format!(
                "inventory.img: image version {} is not supported (2 is)",
                inv.img_version
            )));
        }
        let entries: Vec<pb::PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
        if entries.is_empty() {
            return Err(invalid("pstree.img: no processes".into()));
        }
        let files: BTreeMap<u32, pb::FileEntry> = dir
            .read_all::<pb::FileEntry>(ImageKind::Files, 0)?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        let ttys = Ttys::load(dir, &files)?;
        let memfd_inodes: Vec<pb::MemfdInodeEntry> = dir.read_all(ImageKind::MemfdInode, 0)?;
        let memfds: BTreeMap<u64, u64> = memfd_inodes.iter().map(|m| (m.inode_id, m.shmid.into())).collect();
        let remaps: BTreeMap<u32, pb::RemapFilePathEntry> = dir
            .read_all::<pb::RemapFilePathEntry>(ImageKind::RemapFpath, 0)?
            .into_iter()
            .map(|r| (r.orig_id, r))
            .collect();
        let link_remaps: Vec<String> = remaps
            .values()
            .filter(|r| r.remap_type.unwrap_or(0) == pb::RemapType::Linked as i32)
            .filter_map(|r| files.get(&r.remap_id)?.reg.as_ref())
            .map(|l| l.name.clone())
            .collect();
        let tables = Tables {
            files: &files,
            ttys: &ttys,
            memfds: &memfds,
            remaps: &remaps,
        };
        let mut tasks: Vec<TaskNode> = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let pid = i32::try_from(e.pid)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| invalid(format!("pstree.img: pid {} out of range", e.pid)))?;
            let (pgid, sid) = match (i32::try_from(e.pgid), i32::try_from(e.sid)) {
                (Ok(g), Ok(s)) if g >= 0 && s >= 0 => (g, s),
                _ => return Err(invalid(format!("pstree.img: pid {pid}: pgid/sid out of range"))),
            };
            if tasks.iter().any(|t| t.pid == pid) {
                return Err(invalid(format!("pstree.img: pid {pid} appears twice")));
            }
            let parent = if i == 0 {
                None
            } else {
                Some(tasks.iter().position(|t| t.pid as u32 == e.ppid).ok_or_else(|| {
                    invalid(format!(
                        "pstree.img: the parent {} of pid {pid} is not listed before it",
                        e.ppid
                    ))
                })?)
            };
            let core: pb::CoreEntry = dir
                .read_one(ImageKind::Core, e.pid.into())?
                .ok_or_else(|| invalid(format!("pid {pid}: core-{pid}.img is missing")))?;
            let state = core.tc.as_ref().map(|tc| tc.task_state);
            let body = match state {
                Some(pb::TASK_DEAD) => Body::Zombie {
                    exit_code: core.tc.as_ref().map_or(0, |tc| tc.exit_code),
                    comm: core.tc.as_ref().map(|tc| tc.comm.clone()).unwrap_or_default(),
                },
                Some(pb::TASK_ALIVE | pb::TASK_STOPPED) => {
                    Body::Alive(Box::new(Plan::load_task(dir, e, core, &tables)?))
                }
                Some(other) => {
                    return Err(RestoreError::Unsupported {
                        pid,
                        what: format!("task state {other:#x}"),
                    })
                }
                None => return Err(invalid(format!("core-{pid}.img: no task core"))),
            };
            tasks.push(TaskNode {
                pid,
                parent,
                pgid,
                sid,
                body,
            });
        }
        if tasks
            .iter()
            .any(|t| matches!(t.body, Body::Zombie { .. }) && t.parent.is_none())
        {
            return Err(RestoreError::Unsupported {
                pid: tasks[0].pid,
                what: "the dumped process itself is a zombie".into(),
            });
        }
        let pipes = load_pipe_data(dir, ImageKind::PipesData)?;
        // A pipe is recreated when both its ends are in the tree, or when only its read end
        // is and its contents are saved (every writer had closed: it is made again without
        // one); otherwise it is the caller's.
        let mut ends: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
        for t in &tasks {
            let Body::Alive(plan) = &t.body else { continue };
            for f in &plan.fds {
                if let FdTarget::Pipe { pipe_id, flags } = f.target {
                    let e = ends.entry(pipe_id).or_default();
                    let access = flags as i32 & libc::O_ACCMODE;
                    e.0 |= access != libc::O_WRONLY;
                    e.1 |= access != libc::O_RDONLY;
                }
            }
        }
        for t in &mut tasks {
            let Body::Alive(plan) = &mut t.body else { continue };
            for f in &mut plan.fds {
                if let FdTarget::Pipe { pipe_id, .. } = f.target {
                    let whole = ends.get(&pipe_id) == Some(&(true, true));
                    let widowed = ends.get(&pipe_id) == Some(&(true, false)) && pipes.contains_key(&pipe_id);
                    if !whole && !widowed {
                        f.target = FdTarget::External {
                            key: format!("pipe:[{pipe_id}]"),
                        };
                    }
                }
            }
        }
        let fifos = load_pipe_data(dir, ImageKind::FifoData)?;
        let shmem = load_shmem(dir, &tasks, memfd_inodes)?;
        let unix: Vec<pb::UnixSkEntry> = files.values().filter_map(|f| f.usk.clone()).collect();
        let inet: Vec<pb::InetSkEntry> = files.values().filter_map(|f| f.isk.clone()).collect();
        let netlink: Vec<pb::NetlinkSkEntry> = files.values().filter_map(|f| f.nlsk.clone()).collect();
        let packet: Vec<pb::PacketSockEntry> = files.values().filter_map(|f| f.psk.clone()).collect();
        let net_lock = crate::netlock::Method::from_inventory(inv.network_lock_method)
            .map_err(|what| invalid(format!("inventory.img: {what}")))?;
        let mut unix_queues: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        let mut inet_queues: BTreeMap<u32, Vec<(std::net::SocketAddr, Vec<u8>)>> = BTreeMap::new();
        if let Some(mut rd) = dir.reader(ImageKind::SkQueues, 0)? {
            while let Some(e) = rd.next_entry::<pb::SkPacketEntry>()? {
                if let Some(udp) = inet.iter().find(|i| i.id == e.id_for) {
                    let from = e
                        .addr
                        .as_deref()
                        .and_then(crate::fds::udp::decode_addr)
                        .ok_or_else(|| {
                            invalid(format!(
                                "sk-queues.img: a datagram for socket {} without a sender's address",
                                udp.ino
                            ))
                        })?;
                    let data = rd.read_payload(e.length.into())?;
                    inet_queues.entry(e.id_for).or_default().push((from, data));
                    continue;
                }
                if !unix.iter().any(|u| u.id == e.id_for) {
                    return Err(invalid(format!(
                        "sk-queues.img: data for socket {}, which is not in files.img",
                        e.id_for
                    )));
                }
                if !e.scm.is_empty() {
                    return Err(RestoreError::Unsupported {
                        pid: tasks[0].pid,
                        what: format!("socket {}: queued messages carry fds or credentials", e.id_for),
                    });
                }
                let data = rd.read_payload(e.length.into())?;
                unix_queues.entry(e.id_for).or_default().push(data);
            }
        }
        let seccomp = dir
            .read_one::<pb::SeccompEntry>(ImageKind::Seccomp, 0)?
            .map(|s| s.seccomp_filters)
            .unwrap_or_default();
        check_seccomp(&seccomp, &tasks)?;
        for l in dir.read_all::<pb::FileLockEntry>(ImageKind::FileLocks, 0)? {
            let plan = tasks.iter_mut().find_map(|t| match &mut t.body {
                Body::Alive(p) if p.pid == l.pid => Some(p),
                _ => None,
            });
            let known = [
                crate::fds::locks::FL_POSIX,
                crate::fds::locks::FL_FLOCK,
                crate::fds::locks::FL_OFDLCK,
                crate::fds::locks::FL_LEASE,
            ];
            match plan {
                Some(p) if p.fds.iter().any(|f| f.fd == l.fd) && known.contains(&l.flag) && l.r#type <= 1 => {
                    p.locks.push(l)
                }
                _ => {
                    return Err(invalid(format!(
                        "filelocks.img: a lock of kind {} on fd {} of pid {}, which it does not have",
                        l.flag, l.fd, l.pid
                    )))
                }
            }
        }
        let mut ghosts = BTreeMap::new();
        for t in &tasks {
            let Body::Alive(plan) = &t.body else { continue };
            let of_fds = plan.fds.iter().filter_map(|f| match f.target {
                FdTarget::Ghost { ghost_id, .. } => Some(ghost_id),
                FdTarget::Fifo {
                    ghost_id: Some(ghost_id),
                    ..
                } => Some(ghost_id),
                _ => None,
            });
            for ghost_id in of_fds.chain(plan.vma_ghosts.values().copied()) {
                if ghosts.contains_key(&ghost_id) {
                    continue;
                }
                let mut rd = dir
                    .reader(ImageKind::GhostFile, ghost_id.into())?
                    .ok_or_else(|| invalid(format!("pid {}: ghost-file-{ghost_id:x}.img is missing", t.pid)))?;
                let entry: pb::GhostFileEntry = rd
                    .next_entry()?
                    .ok_or_else(|| invalid(format!("ghost-file-{ghost_id:x}.img is empty")))?;
                let chunks = if entry.chunks == Some(true) {
                    let size = entry
                        .size
                        .ok_or_else(|| invalid(format!("ghost-file-{ghost_id:x}.img: chunks without a size")))?;
                    let mut chunks = Vec::new();
                    while rd.remaining() > 0 {
                        let c: pb::GhostChunkEntry = rd
                            .next_entry()?
                            .ok_or_else(|| invalid(format!("ghost-file-{ghost_id:x}.img: a chunk cut short")))?;
                        if c.off.checked_add(c.len).is_none_or(|end| end > size) || c.len > rd.remaining() {
                            return Err(invalid(format!(
                                "ghost-file-{ghost_id:x}.img: a chunk of {} bytes at {} outside the file's {size} or the image",
                                c.len, c.off
                            )));
                        }
                        chunks.push((c.off, rd.read_payload(c.len)?));
                    }
                    chunks
                } else {
                    vec![(0, rd.read_payload(rd.remaining())?)]
                };
                ghosts.insert(ghost_id, (entry, chunks));
            }
        }
        let mut ptys: BTreeMap<u32, (Option<pb::TtyInfoEntry>, Option<pb::TtyInfoEntry>)> = BTreeMap::new();
        for info in ttys.infos.values() {
            let (Some(end), Some(index)) = (pty_end(info), info.pty.as_ref().map(|p| p.index)) else {
                continue;
            };
            if !ttys.masters.contains(&index) {
                continue;
            }
            let slot = ptys.entry(index).or_default();
            match end {
                PtyEnd::Master => slot.0 = Some(info.clone()),
                PtyEnd::Slave => slot.1 = Some(info.clone()),
            }
            // The session leader that had it as controlling terminal takes it again, through
            // its own fd on the slave.
            if info.sid == 0 {
                continue;
            }
            let leader = tasks.iter_mut().find_map(|t| match &mut t.body {
                Body::Alive(p) if p.pid as u32 == info.sid => Some(p),
                _ => None,
            });
            if let Some(p) = leader {
                let fd = p
                    .fds
                    .iter()
                    .find(|f| matches!(f.target, FdTarget::PtySlave { index: i, .. } if i == index));
                if let Some(fd) = fd {
                    p.ctty = Some((fd.fd, info.pgrp));
                }
            }
        }
        let uts = own_uts(dir, &inv, &tasks)?;
        Ok(Tree {
            uts,
            ptys,
            fifos,
            ghosts,
            link_remaps,
            tasks,
            pipes,
            shmem,
            unix,
            unix_queues,
            inet,
            inet_queues,
            netlink,
            packet,
            net_lock,
            seccomp,
        })
    }

    /// The live processes and their plans.
    pub fn alive(&self) -> impl Iterator<Item = (usize, &Plan)> {
        self.tasks.iter().enumerate().filter_map(|(i, t)| match &t.body {
            Body::Alive(p) => Some((i, p.as_ref())),
            Body::Zombie { .. } => None,
        })
    }
}

/// The pages file of `pagemap` (named `what` in errors) holds at least the bytes it lists.
fn check_pages_file(dir: &ImageDir, pagemap: &Pagemap, what: &str) -> Result<(), RestoreError> {
    let pages_path = dir.image_path(ImageKind::Pages, pagemap.pages_id.into());
    let pages_len = std::fs::metadata(&pages_path)
        .map_err(|e| invalid(format!("{}: {e}", pages_path.display())))?
        .len();
    if pages_len < pagemap.present_bytes() {
        return Err(invalid(format!(
            "{}: {pages_len} bytes, but {what} lists {}",
            pages_path.display(),
            pagemap.present_bytes()
        )));
    }
    Ok(())
}

fn invalid(what: String) -> RestoreError {
    RestoreError::Invalid { what }
}
