//! The images of one task: its core (one per thread), ids, mm, pagemap and pages, fs and fd
//! table for a live task; only its state and exit status for a zombie.

use std::fs;
use std::time::Instant;

use parasite::Tracee;

use super::files::FdTable;
use super::frozen::TreeObjects;
use super::{mm, read_proc, readlink_proc, thread, DumpError};
use crate::fds;
use crate::image::pages::PageImageWriter;
use crate::image::pb;
use crate::image::{ImageDir, ImageKind};
use crate::procfs;

/// A zombie: its core image holds only its state, name and exit status.
pub(super) fn dump_zombie(dir: &ImageDir, pid: i32, exit_code: u32, stat: &procfs::Stat) -> Result<(), DumpError> {
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
pub(super) fn dump_task(
    threads: &[Tracee],
    dir: &ImageDir,
    ids: &pb::TaskKobjIdsEntry,
    pages_id: u32,
    (stat, fdt, stopped): (&procfs::Stat, FdTable, bool),
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
    // smaps (for each mapping's VmFlags: advice, locks) walks the page tables: 27 ms for 2 GiB.
    // It is read beside the page dump, which does not need it.
    let smaps = std::thread::spawn(move || read_proc(pid, "smaps"));
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
        cores.push(thread::thread_core(pid, th, i == 0, seccomp)?);
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
            e.shmid = if v.unlinked {
                let source = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
                files.mapped_ghost(pid, path, &source)?.into()
            } else {
                files.path(path).into()
            };
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
        if let Some(owner) = f.owner.filter(|_| new) {
            files.set_owner(pid, file_ids[file_ids.len() - 1].0, owner, pids, &status)?;
        }
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

    let smaps = smaps.join().map_err(|_| DumpError::Parse { pid, file: "smaps" })??;
    let smaps = procfs::parse_smaps(&smaps).ok_or(DumpError::Parse { pid, file: "smaps" })?;
    mm::add_vmflags(pid, &mut vma_entries, &smaps)?;

    let mut main_core = cores[0].0.clone();
    main_core.tc = Some(pb::TaskCoreEntry {
        // A stopped task comes back stopped (by SIGSTOP: which signal stopped it is not known
        // from outside).
        task_state: if stopped { pb::TASK_STOPPED } else { pb::TASK_ALIVE },
        stop_signo: stopped.then_some(libc::SIGSTOP as u32),
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
            // A timer aimed at one thread names it by its id inside (ours in /proc/PID/timers).
            posix: injected
                .posix_timers
                .iter()
                .map(|t| pb::PosixTimerEntry {
                    notify_thread_id: t.notify_thread_id.map(|tid| pids.inside(tid)),
                    ..t.clone()
                })
                .collect(),
        }),
        loginuid,
        oom_score_adj,
        child_subreaper: Some(injected.child_subreaper),
        membarrier_registration_mask: injected.membarrier.filter(|&m| m != 0),
        signals_s: Some(thread::signal_queue(t, true)?),
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
        aios: vma_entries
            .iter()
            .filter(|v| v.status & pb::vma_status::AIORING != 0)
            .map(|v| {
                crate::aio::header_of(pid, v.start, v.end)
                    .map(|_| pb::AioRingEntry {
                        id: v.start,
                        nr_req: crate::aio::nr_req_for(v.end - v.start),
                        ring_len: (v.end - v.start) as u32,
                    })
                    .map_err(|e| DumpError::proc(pid, &format!("the AIO ring at {:#x}", v.start), e))
            })
            .collect::<Result<_, _>>()?,
        vmas: vma_entries,
        thp_disabled: status.thp_enabled.map(|on| !on),
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
