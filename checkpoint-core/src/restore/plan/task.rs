//! The plan of one live task, read and checked: its threads' cores, its memory (VMAs and page
//! runs), its exe, cwd and root, and what each of its fds is.

use std::collections::BTreeMap;

use super::objects::Ttys;
use super::{check_pages_file, invalid, FdTarget, Plan, PlannedFd};
use crate::fds::tty::{pty_end, PtyEnd};
use crate::image::pages::{Pagemap, PAGE_SIZE};
use crate::image::pb::{self, vma_status as st, FdTypes};
use crate::image::{ImageDir, ImageKind};
use crate::restore::RestoreError;

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
pub(super) struct Tables<'a> {
    pub(super) files: &'a BTreeMap<u32, pb::FileEntry>,
    pub(super) ttys: &'a Ttys,
    /// memfd.img: inode id -> shmid.
    pub(super) memfds: &'a BTreeMap<u64, u64>,
    /// remap-fpath.img, by the files.img id it remaps.
    pub(super) remaps: &'a BTreeMap<u32, pb::RemapFilePathEntry>,
}

/// Queued signals are 128-byte siginfos of signals 1-64.
pub(super) fn check_siginfos(pid: i32, queue: Option<&pb::SignalQueueEntry>) -> Result<(), RestoreError> {
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

impl Plan {
    /// Loads and checks the images of the live process `task`, whose core is `core`.
    pub(super) fn load_task(
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
        let stopped = tc.task_state == pb::TASK_STOPPED;
        if tc.task_state != pb::TASK_ALIVE && !stopped {
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
        let mut vma_ghosts = BTreeMap::new();
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
            let kinds = st::SOCKET | st::SHSTK | st::GUARD | st::UPROBES;
            if v.status & st::AIORING != 0 {
                // its context, of its size, in mm.aios
                let len = v.end - v.start;
                if !mm
                    .aios
                    .iter()
                    .any(|a| a.id == v.start && u64::from(a.ring_len) == len && a.nr_req > 0)
                {
                    return Err(invalid(format!(
                        "mm-{pid}.img: the AIO ring {:#x}-{:#x} has no context of its size in aios",
                        v.start, v.end
                    )));
                }
            } else if v.status & kinds != 0 || v.status & supported == 0 {
                return Err(RestoreError::Unsupported {
                    pid,
                    what: format!("mapping {:#x}-{:#x} of status {:#x}", v.start, v.end, v.status),
                });
            }
            if v.status & (st::FILE_PRIVATE | st::FILE_SHARED) != 0 && v.status & st::MEMFD == 0 {
                let id = u32::try_from(v.shmid).unwrap_or(u32::MAX);
                vma_paths.insert(i, reg(id, "a mapped file")?.name.clone());
                match remaps.get(&id) {
                    Some(r) if r.remap_type.unwrap_or(0) == pb::RemapType::Ghost as i32 => {
                        vma_ghosts.insert(i, r.remap_id);
                    }
                    Some(r) if r.remap_type.unwrap_or(0) == pb::RemapType::Linked as i32 => {
                        // Linked back by the dump (--link-remap): mapped from the link.
                        vma_paths.insert(i, reg(r.remap_id, "a mapped file's link")?.name.clone());
                    }
                    Some(_) => {
                        return Err(RestoreError::Unsupported {
                            pid,
                            what: format!(
                                "mapping {:#x}-{:#x}: its file is remapped in a way other than a ghost",
                                v.start, v.end
                            ),
                        })
                    }
                    None => {}
                }
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
        let root = (root != "/").then_some(root);

        let fdinfo: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, ids.files_id.into())?;
        let mut fds = Vec::with_capacity(fdinfo.len());
        for e in fdinfo {
            let fd = i32::try_from(e.fd).map_err(|_| invalid(format!("fdinfo: fd {} out of range", e.fd)))?;
            let file = files
                .get(&e.id)
                .ok_or_else(|| invalid(format!("fd {fd}: file id {} is not in files.img", e.id)))?;
            let target = match (FdTypes::try_from(file.r#type), &file.reg, &file.tty) {
                (Ok(FdTypes::Reg), Some(r), _)
                    if remaps
                        .get(&r.id)
                        .is_some_and(|m| m.remap_type.unwrap_or(0) == pb::RemapType::Linked as i32) =>
                {
                    // Linked back by the dump (--link-remap): opened through the link, which
                    // goes once the restore is done.
                    let link = files
                        .get(&remaps[&r.id].remap_id)
                        .and_then(|f| f.reg.as_ref())
                        .filter(|l| l.name.starts_with('/'))
                        .ok_or_else(|| {
                            invalid(format!(
                                "fd {fd}: {} is linked back to a file files.img does not hold",
                                r.name
                            ))
                        })?;
                    FdTarget::Reg {
                        path: link.name.clone(),
                        flags: r.flags,
                        pos: r.pos,
                        size: None,
                    }
                }
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
                (Ok(FdTypes::Pidfd), _, _) if file.pidfd.is_some() => {
                    let p = file.pidfd.as_ref().map(|p| (p.nspid, p.flags)).unwrap_or_default();
                    FdTarget::Pidfd { pid: p.0, flags: p.1 }
                }
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
                    let ghost_id = match remaps.get(&regf.id) {
                        Some(r) if r.remap_type.unwrap_or(0) == pb::RemapType::Ghost as i32 => Some(r.remap_id),
                        Some(_) => {
                            return Err(RestoreError::Unsupported {
                                pid,
                                what: format!(
                                    "fd {fd}: the FIFO {} is remapped in a way other than a ghost",
                                    regf.name
                                ),
                            })
                        }
                        None => None,
                    };
                    FdTarget::Fifo {
                        path: regf.name.clone(),
                        flags: regf.flags,
                        pipe_id: fifo.0,
                        ghost_id,
                    }
                }
                (Ok(FdTypes::Unixsk), _, _) if file.usk.is_some() => FdTarget::Socket {
                    ino: file.usk.as_ref().map_or(0, |u| u.ino),
                },
                (Ok(FdTypes::Inetsk), _, _) if file.isk.is_some() => FdTarget::Socket {
                    ino: file.isk.as_ref().map_or(0, |u| u.ino),
                },
                (Ok(FdTypes::Packetsk), _, _) if file.psk.is_some() => FdTarget::Socket { ino: file.id },
                (Ok(FdTypes::Netlinksk), _, _) if file.nlsk.is_some() => FdTarget::Socket {
                    ino: file.nlsk.as_ref().map_or(0, |u| u.ino),
                },
                (Ok(FdTypes::Tty), _, Some(t)) => {
                    let regf = t.regf_id.and_then(|id| files.get(&id)?.reg.as_ref());
                    let path = regf.map(|r| r.name.clone());
                    let info = ttys.infos.get(&t.tty_info_id);
                    let console = info
                        .is_some_and(|i| i.r#type == pb::TtyType::Console as i32 || i.r#type == pb::TtyType::Vt as i32);
                    match info.and_then(|i| Some((pty_end(i)?, i.pty.as_ref()?.index))) {
                        // The console or a virtual terminal: reopened by its path.
                        _ if console && regf.is_some_and(|r| r.name.starts_with("/dev/")) => FdTarget::Reg {
                            path: regf.map(|r| r.name.clone()).unwrap_or_default(),
                            flags: t.flags,
                            pos: 0,
                            size: None,
                        },
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
            // A FIFO's owner and flags are in the entry of its path.
            let regf = file.fifo.as_ref().and_then(|f| files.get(&f.regf_id?));
            let owner = regf
                .unwrap_or(file)
                .owner_and_flags()
                .map(|(fown, flags)| (fown, flags & libc::O_ASYNC as u32 != 0))
                .filter(|(fown, async_io)| fown.pid != 0 || fown.signum != 0 || *async_io);
            fds.push(PlannedFd {
                fd,
                cloexec: e.flags & libc::FD_CLOEXEC as u32 != 0,
                file_id: e.id,
                target,
                owner,
            });
        }
        fds.sort_by_key(|f| f.fd);
        Ok(Plan {
            pid,
            stopped,
            threads,
            core,
            mm,
            pagemap,
            exe,
            cwd,
            root,
            umask: fs.umask,
            vma_paths,
            vma_ghosts,
            vma_shmem,
            vma_sysv,
            locks: Vec::new(),
            ctty: None,
            uts_ns_id: ids.uts_ns_id,
            fds,
        })
    }
}
