//! Reading and checking the images of a restore before anything is created: every error a
//! damaged or unsupported image can cause is found here, so a failed restore leaves nothing.

use std::collections::BTreeMap;

use super::RestoreError;
use crate::fds::tty::{pty_end, PtyEnd};
use crate::image::pages::{Pagemap, PAGE_SIZE};
use crate::image::pb::{self, vma_status as st, FdTypes};
use crate::image::{ImageDir, ImageKind};

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
    Fifo { path: String, flags: u32, pipe_id: u32 },
    /// A file that was unlinked while open: made again from its saved contents (ghost
    /// `ghost_id`), then unlinked.
    Ghost {
        path: String,
        flags: u32,
        pos: u64,
        ghost_id: u32,
    },
}

/// One fd to install.
#[derive(Clone, Debug)]
pub struct PlannedFd {
    pub fd: i32,
    pub cloexec: bool,
    /// files.img id: fds with the same id share one open file.
    pub file_id: u32,
    pub target: FdTarget,
}

/// Everything the restore of one live process needs, checked.
#[derive(Clone, Debug)]
pub struct Plan {
    pub pid: i32,
    pub core: pb::CoreEntry,
    /// The other threads: tid and core.
    pub threads: Vec<(i32, pb::CoreEntry)>,
    pub mm: pb::MmEntry,
    pub pagemap: Pagemap,
    pub exe: String,
    pub cwd: String,
    pub umask: Option<u32>,
    /// Path of every file-backed VMA, by VMA index.
    pub vma_paths: BTreeMap<usize, String>,
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
    /// seccomp.img: every filter, each pointing at the one installed before it.
    pub seccomp: Vec<pb::SeccompFilter>,
    /// Unlinked files: their attributes and contents, by ghost id.
    pub ghosts: BTreeMap<u32, (pb::GhostFileEntry, Vec<u8>)>,
    /// The UTS namespace the tree gets, when it had one of its own: its names.
    pub uts: Option<pb::UtsnsEntry>,
    /// The ptys made in the tree, by index: the settings of their master and slave.
    pub ptys: BTreeMap<u32, (Option<pb::TtyInfoEntry>, Option<pb::TtyInfoEntry>)>,
}

/// tty-info.img, and the ptys whose master is in the tree.
pub struct Ttys {
    pub infos: BTreeMap<u32, pb::TtyInfoEntry>,
    pub masters: std::collections::BTreeSet<u32>,
}

impl Ttys {
    fn load(dir: &ImageDir, files: &BTreeMap<u32, pb::FileEntry>) -> Result<Ttys, RestoreError> {
        let infos: BTreeMap<u32, pb::TtyInfoEntry> = dir
            .read_all::<pb::TtyInfoEntry>(ImageKind::TtyInfo, 0)?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let masters = files
            .values()
            .filter_map(|f| infos.get(&f.tty.as_ref()?.tty_info_id))
            .filter(|i| pty_end(i) == Some(PtyEnd::Master))
            .filter_map(|i| Some(i.pty.as_ref()?.index))
            .collect();
        Ok(Ttys { infos, masters })
    }
}

/// The filters of the chain whose newest is `newest`, oldest first (as they are installed).
pub fn seccomp_chain(filters: &[pb::SeccompFilter], newest: u32) -> Option<Vec<&[u8]>> {
    let mut chain = Vec::new();
    let mut at = Some(newest);
    while let Some(i) = at {
        let f = filters.get(i as usize)?;
        chain.push(f.filter.as_slice());
        at = f.prev;
    }
    chain.reverse();
    Some(chain)
}

/// Checks seccomp.img (programs of whole instructions, at most 4096 each; each filter points
/// only at an earlier one) and that every thread's chain exists.
fn check_seccomp(filters: &[pb::SeccompFilter], tasks: &[TaskNode]) -> Result<(), RestoreError> {
    for (i, f) in filters.iter().enumerate() {
        if f.filter.is_empty()
            || f.filter.len() % 8 != 0
            || f.filter.len() > 8 * 4096
            || f.prev.is_some_and(|p| p as usize >= i)
        {
            return Err(invalid(format!("seccomp.img: filter {i} is malformed")));
        }
    }
    for t in tasks {
        let Body::Alive(plan) = &t.body else { continue };
        let threads = std::iter::once((plan.pid, &plan.core)).chain(plan.threads.iter().map(|(tid, c)| (*tid, c)));
        for (tid, core) in threads {
            let Some(tc) = &core.thread_core else { continue };
            if tc.seccomp_mode == Some(pb::SeccompMode::Filter as i32)
                && tc
                    .seccomp_filter
                    .and_then(|n| crate::model::seccomp::chain(filters, n))
                    .is_none()
            {
                return Err(invalid(format!(
                    "core-{tid}.img: its seccomp filter is not in seccomp.img"
                )));
            }
        }
    }
    Ok(())
}

/// Largest pipe content accepted from an image (the kernel's default pipe-max-size is 1 MiB).
const MAX_PIPE_DATA: u32 = 64 << 20;

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
                Some(pb::TASK_ALIVE) => Body::Alive(Box::new(Plan::load_task(dir, e, core, &tables)?)),
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
        // A pipe is recreated when both its ends are in the tree; otherwise it is the caller's.
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
                    if ends.get(&pipe_id) != Some(&(true, true)) {
                        f.target = FdTarget::External {
                            key: format!("pipe:[{pipe_id}]"),
                        };
                    }
                }
            }
        }
        let pipes = load_pipe_data(dir, ImageKind::PipesData)?;
        let fifos = load_pipe_data(dir, ImageKind::FifoData)?;
        let shmem = load_shmem(dir, &tasks, memfd_inodes)?;
        let unix: Vec<pb::UnixSkEntry> = files.values().filter_map(|f| f.usk.clone()).collect();
        let mut unix_queues: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        if let Some(mut rd) = dir.reader(ImageKind::SkQueues, 0)? {
            while let Some(e) = rd.next_entry::<pb::SkPacketEntry>()? {
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
            for f in &plan.fds {
                let FdTarget::Ghost { ghost_id, .. } = f.target else {
                    continue;
                };
                if ghosts.contains_key(&ghost_id) {
                    continue;
                }
                let mut rd = dir
                    .reader(ImageKind::GhostFile, ghost_id.into())?
                    .ok_or_else(|| invalid(format!("pid {}: ghost-file-{ghost_id:x}.img is missing", t.pid)))?;
                let entry: pb::GhostFileEntry = rd
                    .next_entry()?
                    .ok_or_else(|| invalid(format!("ghost-file-{ghost_id:x}.img is empty")))?;
                if entry.chunks == Some(true) {
                    return Err(RestoreError::Unsupported {
                        pid: t.pid,
                        what: format!("ghost-file-{ghost_id:x}.img is saved in chunks"),
                    });
                }
                let data = rd.read_payload(rd.remaining())?;
                ghosts.insert(ghost_id, (entry, data));
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
            tasks,
            pipes,
            shmem,
            unix,
            unix_queues,
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

/// The UTS namespace of the tree when it is not the dumper's: one for the whole tree (nested
/// ones are refused), its names from utsns-ID.img.
fn own_uts(
    dir: &ImageDir,
    inv: &pb::InventoryEntry,
    tasks: &[TaskNode],
) -> Result<Option<pb::UtsnsEntry>, RestoreError> {
    let host = inv.root_ids.as_ref().and_then(|r| r.uts_ns_id);
    let mut ids = tasks.iter().filter_map(|t| match &t.body {
        Body::Alive(p) => Some((p.pid, p.uts_ns_id)),
        Body::Zombie { .. } => None,
    });
    let Some((root, root_uts)) = ids.next() else {
        return Ok(None);
    };
    if let Some((pid, _)) = ids.find(|(_, u)| *u != root_uts) {
        return Err(RestoreError::Unsupported {
            pid,
            what: "is in another UTS namespace than the root of the tree (nested namespaces are not supported)".into(),
        });
    }
    match root_uts.filter(|u| Some(*u) != host) {
        None => Ok(None),
        Some(id) => dir
            .read_one::<pb::UtsnsEntry>(ImageKind::Utsns, id.into())?
            .map(Some)
            .ok_or_else(|| invalid(format!("pid {root}: utsns-{id}.img is missing"))),
    }
}

/// pipes-data.img or fifo-data.img: what each pipe held, checked to fit in it.
fn load_pipe_data(dir: &ImageDir, kind: ImageKind) -> Result<BTreeMap<u32, PipeData>, RestoreError> {
    let mut out = BTreeMap::new();
    if let Some(mut rd) = dir.reader(kind, 0)? {
        while let Some(e) = rd.next_entry::<pb::PipeDataEntry>()? {
            if e.bytes > MAX_PIPE_DATA || e.size.is_some_and(|s| s > MAX_PIPE_DATA || s < e.bytes) {
                return Err(invalid(format!(
                    "{}: pipe {}: {} bytes in a pipe of {:?}",
                    rd.path().display(),
                    e.pipe_id,
                    e.bytes,
                    e.size
                )));
            }
            let data = rd.read_payload(e.bytes.into())?;
            out.insert(e.pipe_id, PipeData { data, capacity: e.size });
        }
    }
    Ok(out)
}

/// The shared memory objects the tasks map, with their pages, checked to lie inside them.
fn load_shmem(
    dir: &ImageDir,
    tasks: &[TaskNode],
    memfd_inodes: Vec<pb::MemfdInodeEntry>,
) -> Result<BTreeMap<u64, SharedObject>, RestoreError> {
    let mut out: BTreeMap<u64, SharedObject> = BTreeMap::new();
    // memfd inodes (CRIU saves shared anonymous memory as a memfd named /dev/zero).
    for m in memfd_inodes {
        out.insert(
            m.shmid.into(),
            SharedObject {
                size: m.size,
                pages: None,
                memfd: Some((m.name, m.seals)),
            },
        );
    }
    for t in tasks {
        let Body::Alive(plan) = &t.body else { continue };
        for (&i, &shmid) in &plan.vma_shmem {
            let v = &plan.mm.vmas[i];
            let end = v
                .pgoff
                .checked_add(v.end - v.start)
                .filter(|e| e % PAGE_SIZE == 0 && v.pgoff % PAGE_SIZE == 0)
                .ok_or_else(|| invalid(format!("mm-{}.img: VMA {i}: bad offset {:#x}", t.pid, v.pgoff)))?;
            let obj = out.entry(shmid).or_insert(SharedObject {
                size: 0,
                pages: None,
                memfd: None,
            });
            obj.size = obj.size.max(end);
        }
    }
    for (&shmid, obj) in &mut out {
        let Some(pages) = Pagemap::read(dir, ImageKind::ShmemPagemap, shmid)? else {
            continue;
        };
        for r in pages.runs.iter().filter(|r| r.is_present()) {
            if r.vaddr % PAGE_SIZE != 0 || r.vaddr.checked_add(r.len()).is_none_or(|e| e > obj.size) {
                return Err(invalid(format!(
                    "pagemap-shmem-{shmid}.img: pages {:#x}+{:#x} lie outside the object of {:#x} bytes",
                    r.vaddr,
                    r.len(),
                    obj.size
                )));
            }
        }
        check_pages_file(dir, &pages, &format!("pagemap-shmem-{shmid}.img"))?;
        obj.pages = Some(pages);
    }
    Ok(out)
}

/// The shared memory object behind a memfd mapping or fd: files.img id `file_id` -> memfd
/// inode -> its shmid.
fn memfd_shmid(tables: &Tables<'_>, file_id: u64, pid: i32) -> Result<u64, RestoreError> {
    let inode_id = u32::try_from(file_id)
        .ok()
        .and_then(|id| tables.files.get(&id)?.memfd.as_ref())
        .map(|m| m.inode_id)
        .ok_or_else(|| invalid(format!("pid {pid}: memfd: file {file_id} is not a memfd in files.img")))?;
    tables
        .memfds
        .get(&u64::from(inode_id))
        .copied()
        .ok_or_else(|| invalid(format!("pid {pid}: memfd inode {inode_id} is not in memfd.img")))
}

/// The tree-wide tables every task's files are read against (each image read once).
struct Tables<'a> {
    files: &'a BTreeMap<u32, pb::FileEntry>,
    ttys: &'a Ttys,
    /// memfd.img: inode id -> shmid.
    memfds: &'a BTreeMap<u64, u64>,
    /// remap-fpath.img, by the files.img id it remaps.
    remaps: &'a BTreeMap<u32, pb::RemapFilePathEntry>,
}

/// Queued signals are 128-byte siginfos of signals 1-64.
fn check_siginfos(pid: i32, queue: Option<&pb::SignalQueueEntry>) -> Result<(), RestoreError> {
    for s in queue.iter().flat_map(|q| &q.signals) {
        let signo = s.siginfo.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if s.siginfo.len() != 128 || !signo.is_some_and(|n| (1..=64).contains(&n)) {
            return Err(invalid(format!(
                "core-{pid}.img: a queued siginfo of {} bytes for signal {signo:?}",
                s.siginfo.len()
            )));
        }
    }
    Ok(())
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

impl Plan {
    /// Loads and checks the images of the live process `task`, whose core is `core`.
    fn load_task(
        dir: &ImageDir,
        task: &pb::PstreeEntry,
        core: pb::CoreEntry,
        tables: &Tables<'_>,
    ) -> Result<Plan, RestoreError> {
        let (files, ttys) = (tables.files, tables.ttys);
        let pid = i32::try_from(task.pid).map_err(|_| invalid(format!("pstree.img: pid {} out of range", task.pid)))?;
        if task.threads.first() != Some(&task.pid) {
            return Err(invalid(format!(
                "pstree.img: pid {pid}: the first thread must be the task itself"
            )));
        }
        if core.mtype != pb::March::X8664 as i32 || core.thread_info.is_none() {
            return Err(invalid(format!("core-{pid}.img: not an x86_64 task with registers")));
        }
        let tc = core
            .tc
            .as_ref()
            .ok_or_else(|| invalid(format!("core-{pid}.img: no task core")))?;
        for t in tc.timers.iter().flat_map(|t| &t.posix) {
            if !matches!(t.it_sigev_notify, 0 | 1 | 4)
                || t.si_signo > 64
                || t.insec >= 1_000_000_000
                || t.vnsec >= 1_000_000_000
            {
                return Err(invalid(format!(
                    "core-{pid}.img: POSIX timer {} is malformed (notify {}, signal {})",
                    t.it_id, t.it_sigev_notify, t.si_signo
                )));
            }
        }
        if tc.task_state != pb::TASK_ALIVE {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("task state {:#x}", tc.task_state),
            });
        }
        check_siginfos(pid, tc.signals_s.as_ref())?;
        check_siginfos(pid, core.thread_core.as_ref().and_then(|t| t.signals_p.as_ref()))?;
        let mut threads = Vec::new();
        for &tid in &task.threads[1..] {
            let tcore: pb::CoreEntry = dir
                .read_one(ImageKind::Core, tid.into())?
                .ok_or_else(|| invalid(format!("pid {pid}: core-{tid}.img of a thread is missing")))?;
            if tcore.thread_info.is_none() || tcore.thread_core.is_none() {
                return Err(invalid(format!("core-{tid}.img: no registers or thread state")));
            }
            let tid = i32::try_from(tid).map_err(|_| invalid(format!("pstree.img: tid {tid} out of range")))?;
            check_siginfos(tid, tcore.thread_core.as_ref().and_then(|t| t.signals_p.as_ref()))?;
            threads.push((tid, tcore));
        }
        let ids: pb::TaskKobjIdsEntry = match &core.ids {
            Some(ids) => ids.clone(),
            None => dir
                .read_one(ImageKind::Ids, task.pid.into())?
                .ok_or_else(|| invalid(format!("pid {pid}: ids-{pid}.img is missing")))?,
        };
        let mm: pb::MmEntry = dir
            .read_one(ImageKind::Mm, task.pid.into())?
            .ok_or_else(|| invalid(format!("pid {pid}: mm-{pid}.img is missing")))?;
        let pagemap = Pagemap::read(dir, ImageKind::Pagemap, task.pid.into())?
            .ok_or_else(|| invalid(format!("pid {pid}: pagemap-{pid}.img is missing")))?;
        check_pages_file(dir, &pagemap, &format!("pagemap-{pid}.img"))?;
        let remaps = tables.remaps;
        let reg = |id: u32, what: &str| -> Result<&pb::RegFileEntry, RestoreError> {
            files
                .get(&id)
                .and_then(|f| f.reg.as_ref())
                .filter(|r| r.name.starts_with('/'))
                .ok_or_else(|| {
                    invalid(format!(
                        "files.img: {what} (file id {id}) is not a regular file with a path"
                    ))
                })
        };

        // Memory: VMAs sorted and disjoint, page runs inside private VMAs.
        let mut vma_paths = BTreeMap::new();
        let mut vma_shmem = BTreeMap::new();
        let mut vma_sysv = BTreeMap::new();
        let mut last_end = 0;
        for (i, v) in mm.vmas.iter().enumerate() {
            if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.end <= v.start || v.start < last_end {
                return Err(invalid(format!(
                    "mm-{pid}.img: VMA {i} {:#x}-{:#x} is malformed or out of order",
                    v.start, v.end
                )));
            }
            last_end = v.end;
            let supported = st::VSYSCALL
                | st::VDSO
                | st::VVAR
                | st::ANON_PRIVATE
                | st::ANON_SHARED
                | st::FILE_PRIVATE
                | st::FILE_SHARED;
            let kinds = st::SOCKET | st::AIORING | st::SHSTK | st::GUARD | st::UPROBES;
            if v.status & kinds != 0 || v.status & supported == 0 {
                return Err(RestoreError::Unsupported {
                    pid,
                    what: format!("mapping {:#x}-{:#x} of status {:#x}", v.start, v.end, v.status),
                });
            }
            if v.status & (st::FILE_PRIVATE | st::FILE_SHARED) != 0 && v.status & st::MEMFD == 0 {
                let id = u32::try_from(v.shmid).unwrap_or(u32::MAX);
                vma_paths.insert(i, reg(id, "a mapped file")?.name.clone());
            }
            if v.status & st::SYSVIPC != 0 {
                vma_sysv.insert(i, v.shmid);
            } else if v.status & st::ANON_SHARED != 0 {
                vma_shmem.insert(i, v.shmid);
            }
            if v.status & st::MEMFD != 0 {
                vma_shmem.insert(i, memfd_shmid(tables, v.shmid, pid)?);
            }
        }
        // Runs may span adjacent mappings (CRIU merges them): split them at mapping boundaries,
        // and check that every page lands in a private mapping.
        let mut runs = Vec::with_capacity(pagemap.runs.len());
        for run in pagemap.runs.iter().filter(|r| r.is_present()) {
            let (mut at, end, mut offset) = (run.vaddr, run.vaddr + run.len(), run.offset);
            while at < end {
                let v = mm
                    .vmas
                    .iter()
                    .find(|v| {
                        v.start <= at
                            && at < v.end
                            && v.status & (st::VVAR | st::VSYSCALL | st::FILE_SHARED | st::ANON_SHARED) == 0
                    })
                    .ok_or_else(|| {
                        invalid(format!(
                            "pagemap-{pid}.img: page {at:#x} of run {:#x}-{end:#x} is outside any private mapping",
                            run.vaddr
                        ))
                    })?;
                let piece_end = end.min(v.end);
                let nr_pages = (piece_end - at) / PAGE_SIZE;
                runs.push(crate::image::pages::PageRun {
                    vaddr: at,
                    nr_pages,
                    flags: run.flags,
                    offset,
                });
                offset += piece_end - at;
                at = piece_end;
            }
        }
        let pagemap = Pagemap {
            pages_id: pagemap.pages_id,
            runs,
        };
        let exe = reg(mm.exe_file_id, "the executable")?.name.clone();
        let fs: pb::FsEntry = dir
            .read_one(ImageKind::Fs, task.pid.into())?
            .ok_or_else(|| invalid(format!("pid {pid}: fs-{pid}.img is missing")))?;
        let cwd = reg(fs.cwd_id, "the cwd")?.name.clone();
        let root = reg(fs.root_id, "the root")?.name.clone();
        if root != "/" {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("root directory {root} (chroot) is not supported yet"),
            });
        }

        let fdinfo: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, ids.files_id.into())?;
        let mut fds = Vec::with_capacity(fdinfo.len());
        for e in fdinfo {
            let fd = i32::try_from(e.fd).map_err(|_| invalid(format!("fdinfo: fd {} out of range", e.fd)))?;
            let file = files
                .get(&e.id)
                .ok_or_else(|| invalid(format!("fd {fd}: file id {} is not in files.img", e.id)))?;
            let target = match (FdTypes::try_from(file.r#type), &file.reg, &file.tty) {
                (Ok(FdTypes::Reg), Some(r), _) if remaps.contains_key(&r.id) => {
                    let remap = &remaps[&r.id];
                    if remap.remap_type.unwrap_or(0) != pb::RemapType::Ghost as i32 {
                        return Err(RestoreError::Unsupported {
                            pid,
                            what: format!("fd {fd}: {} is remapped in a way other than a ghost file", r.name),
                        });
                    }
                    FdTarget::Ghost {
                        path: r.name.clone(),
                        flags: r.flags,
                        pos: r.pos,
                        ghost_id: remap.remap_id,
                    }
                }
                (Ok(FdTypes::Reg), Some(r), _) if r.name.starts_with('/') => FdTarget::Reg {
                    path: r.name.clone(),
                    flags: r.flags,
                    pos: r.pos,
                    size: r.size,
                },
                (Ok(FdTypes::Pipe), _, _) if file.pipe.is_some() => {
                    let p = file.pipe.as_ref().map(|p| (p.pipe_id, p.flags)).unwrap_or_default();
                    FdTarget::Pipe {
                        pipe_id: p.0,
                        flags: p.1,
                    }
                }
                (Ok(FdTypes::Eventfd), _, _) if file.efd.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Signalfd), _, _) if file.sgfd.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Timerfd), _, _) if file.tfd.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Eventpoll), _, _) if file.epfd.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Inotify), _, _) if file.ify.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Fanotify), _, _) if file.ffy.is_some() => FdTarget::Anon(Box::new(file.clone())),
                (Ok(FdTypes::Memfd), _, _) if file.memfd.is_some() => {
                    let m = file.memfd.as_ref().map(|m| (m.flags, m.pos)).unwrap_or_default();
                    FdTarget::Memfd {
                        shmid: memfd_shmid(tables, e.id.into(), pid)?,
                        flags: m.0,
                        pos: m.1,
                    }
                }
                (Ok(FdTypes::Fifo), _, _) if file.fifo.is_some() => {
                    let fifo = file.fifo.as_ref().map(|f| (f.pipe_id, f.regf_id)).unwrap_or_default();
                    let regf = reg(fifo.1.unwrap_or(u32::MAX), "the path of a FIFO")?;
                    FdTarget::Fifo {
                        path: regf.name.clone(),
                        flags: regf.flags,
                        pipe_id: fifo.0,
                    }
                }
                (Ok(FdTypes::Unixsk), _, _) if file.usk.is_some() => FdTarget::Socket {
                    ino: file.usk.as_ref().map_or(0, |u| u.ino),
                },
                (Ok(FdTypes::Tty), _, Some(t)) => {
                    let regf = t.regf_id.and_then(|id| files.get(&id)?.reg.as_ref());
                    let path = regf.map(|r| r.name.clone());
                    let info = ttys.infos.get(&t.tty_info_id);
                    match info.and_then(|i| Some((pty_end(i)?, i.pty.as_ref()?.index))) {
                        Some((PtyEnd::Master, index)) => FdTarget::PtyMaster { index },
                        Some((PtyEnd::Slave, index)) if ttys.masters.contains(&index) => {
                            FdTarget::PtySlave { index, flags: t.flags }
                        }
                        _ => FdTarget::Tty {
                            path: path.unwrap_or_else(|| "a terminal".into()),
                        },
                    }
                }
                _ => {
                    let kind = pb::FdTypes::try_from(file.r#type)
                        .map(|k| format!("{k:?}"))
                        .unwrap_or_default();
                    return Err(RestoreError::Unsupported {
                        pid,
                        what: format!("fd {fd}: {kind} files are not supported yet"),
                    });
                }
            };
            fds.push(PlannedFd {
                fd,
                cloexec: e.flags & libc::FD_CLOEXEC as u32 != 0,
                file_id: e.id,
                target,
            });
        }
        fds.sort_by_key(|f| f.fd);
        Ok(Plan {
            pid,
            threads,
            core,
            mm,
            pagemap,
            exe,
            cwd,
            umask: fs.umask,
            vma_paths,
            vma_shmem,
            vma_sysv,
            locks: Vec::new(),
            ctty: None,
            uts_ns_id: ids.uts_ns_id,
            fds,
        })
    }
}
