//! The puppet's memory: what the fork gave it unmapped, vdso and vvar moved to the dumped
//! addresses, every VMA mapped again (files pulled from us, SysV segments attached), the pages
//! read in place from the pages image, and the mm fields set in one PR_SET_MM_MAP.

use std::os::fd::AsRawFd;

use super::{free_range, overlaps, words, Remote, DATA, IOV_MAX, SCRATCH_LEN};
use crate::image::pages::{PageRun, PAGE_SIZE};
use crate::image::pb::vma_status as st;
use crate::procfs;
use crate::restore::plan::Plan;
use crate::restore::{Prepared, RestoreError};

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

/// The mappings of `plan` (by index) that a puppet forked from the built `parent` keeps as it
/// inherited them: private anonymous ones inside one of the parent's of the same protection,
/// flags, kind and advice, that the fork passes on as they are (not MADV_DONTFORK or WIPEONFORK, not locked:
/// a lock is not inherited).
pub(super) fn kept_from(plan: &Plan, parent: &Plan) -> Vec<usize> {
    let not_kept = st::VDSO
        | st::VVAR
        | st::VSYSCALL
        | st::FILE_PRIVATE
        | st::FILE_SHARED
        | st::ANON_SHARED
        | st::AIORING
        | st::SYSVIPC;
    let not_passed = (1u64 << libc::MADV_DONTFORK) | (1u64 << libc::MADV_WIPEONFORK);
    const MAP_LOCKED: u32 = 0x2000;
    plan.mm
        .vmas
        .iter()
        .enumerate()
        .filter(|(_, v)| {
            v.status & st::ANON_PRIVATE != 0
                && v.status & not_kept == 0
                && v.madv.unwrap_or(0) & not_passed == 0
                && v.flags & MAP_LOCKED == 0
                && parent.mm.vmas.iter().any(|p| {
                    // (inside one of the parent's: what either allocated next to it since
                    // the fork may have merged into the mapping on its side)
                    p.start <= v.start
                        && v.end <= p.end
                        && (p.prot, p.flags, p.status, p.madv) == (v.prot, v.flags, v.status, v.madv)
                })
        })
        .map(|(i, _)| i)
        .collect()
}

/// Unmaps everything the fork gave the puppet (`own_maps`) but vdso, vvar, the scratch area
/// and the mappings it keeps (`kept`, indices into the plan's).
pub(super) fn unmap_inherited(
    r: &Remote<'_>,
    own_maps: &[procfs::MapsEntry],
    scratch: u64,
    kept: &[(u64, u64)],
) -> Result<(), RestoreError> {
    let special =
        |m: &procfs::MapsEntry| matches!(m.path.as_str(), "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]");
    // One munmap per gap between what stays (unmapped holes inside a range are fine).
    let mut keep: Vec<(u64, u64)> = own_maps
        .iter()
        .filter(|m| special(m) && m.path != "[vsyscall]")
        .map(|m| (m.start, m.end))
        .chain([(scratch, scratch + SCRATCH_LEN)])
        .chain(kept.iter().copied())
        .collect();
    keep.sort_unstable();
    let mut from = PAGE_SIZE;
    let top = own_maps
        .iter()
        .filter(|m| m.path != "[vsyscall]")
        .map(|m| m.end)
        .max()
        .unwrap_or(0);
    for (start, end) in keep.into_iter().chain([(top, top)]) {
        if start > from {
            r.call("munmap", libc::SYS_munmap, [from, start - from, 0, 0, 0, 0])?;
        }
        from = from.max(end);
    }
    Ok(())
}

/// Maps every VMA of the plan again at its place (a SysV segment attached again), writable
/// while its pages are filled. Returns which VMAs get pages, and the puppet's fds on the mapped
/// files (to close once it is built).
pub(super) fn map_vmas(
    r: &Remote<'_>,
    plan: &Plan,
    prep: &Prepared,
    kept: &[usize],
) -> Result<(Vec<bool>, Vec<u64>), RestoreError> {
    let pid = plan.pid;
    let filled: Vec<bool> = plan
        .mm
        .vmas
        .iter()
        .enumerate()
        .map(|(i, v)| {
            !kept.contains(&i)
                && plan
                    .pagemap
                    .runs
                    .iter()
                    .any(|p| p.is_present() && overlaps((p.vaddr, p.vaddr + p.len()), (v.start, v.end)))
        })
        .collect();
    let mut helpers = Vec::new();
    // Each mapped file is pulled into the puppet once, however many mappings share it.
    let mut pulled: Vec<(&std::rc::Rc<std::fs::File>, u64)> = Vec::new();
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if v.status & (st::VDSO | st::VVAR | st::VSYSCALL) != 0 || kept.contains(&i) {
            continue;
        }
        if let Some(&shmid) = plan.vma_sysv.get(&i) {
            // The segment is attached again where it was (it lives on in the host's IPC
            // namespace, contents and all).
            let mut flags = 0;
            if v.prot & libc::PROT_WRITE as u32 == 0 {
                flags |= libc::SHM_RDONLY;
            }
            if v.prot & libc::PROT_EXEC as u32 != 0 {
                flags |= libc::SHM_EXEC;
            }
            let got = r.call("shmat", libc::SYS_shmat, [shmid, v.start, flags as u64, 0, 0, 0])?;
            if got != v.start {
                return Err(RestoreError::Invalid {
                    what: format!(
                        "pid {pid}: SysV segment {shmid} attached at {got:#x}, not {:#x}",
                        v.start
                    ),
                });
            }
            continue;
        }
        let prot = u64::from(v.prot) | if filled[i] { libc::PROT_WRITE as u64 } else { 0 };
        let mut flags = u64::from(v.flags) | libc::MAP_FIXED as u64;
        if v.status & st::AIORING != 0 {
            // An ordinary area for the saved ring's pages, until the new ring takes its place.
            flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
        }
        let (fd, off) = match prep.mapped.iter().find(|(j, _)| *j == i) {
            Some((_, file)) => {
                let fd = match pulled.iter().find(|(k, _)| std::rc::Rc::ptr_eq(k, file)) {
                    Some(&(_, fd)) => fd,
                    None => {
                        let fd = r.pull(file.as_raw_fd())?;
                        pulled.push((file, fd));
                        helpers.push(fd);
                        fd
                    }
                };
                flags &= !(libc::MAP_ANONYMOUS as u64);
                (fd, v.pgoff)
            }
            None => (u64::MAX, 0),
        };
        r.call("mmap", libc::SYS_mmap, [v.start, v.end - v.start, prot, flags, fd, off])?;
    }
    Ok((filled, helpers))
}

/// Fills the pages, then takes back the write access `filled` VMAs had only for that. Returns
/// the puppet's fd on the pages image (to close once it is built).
pub(super) fn fill(
    r: &Remote<'_>,
    plan: &Plan,
    prep: &Prepared,
    filled: &[bool],
    kept: &[(u64, u64)],
) -> Result<u64, RestoreError> {
    let pages_fd = r.pull(prep.pages.as_raw_fd())?;
    fill_pages(r, plan, pages_fd, kept)?;
    fill_kept(r, plan, prep, kept)?;
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if filled[i] && v.prot & libc::PROT_WRITE as u32 == 0 {
            r.call(
                "mprotect",
                libc::SYS_mprotect,
                [v.start, v.end - v.start, v.prot.into(), 0, 0, 0],
            )?;
        }
    }
    advise(r, plan)?;
    Ok(pages_fd)
}

/// The advice each mapping had (`madv`: bits `1 << MADV_*`), given again once its pages are in
/// (MADV_DONTFORK, MADV_HUGEPAGE...: none of them changes what the pages hold).
fn advise(r: &Remote<'_>, plan: &Plan) -> Result<(), RestoreError> {
    for v in &plan.mm.vmas {
        let Some(bits) = v.madv.filter(|&b| b != 0) else {
            continue;
        };
        for advice in (0..64u64).filter(|a| bits & (1 << a) != 0) {
            r.call(
                "madvise",
                libc::SYS_madvise,
                [v.start, v.end - v.start, advice, 0, 0, 0],
            )
            .map_err(|e| RestoreError::Invalid {
                what: format!(
                    "pid {}: mapping {:#x}-{:#x}: madvise({advice}) failed: {e}",
                    r.pid, v.start, v.end
                ),
            })?;
        }
    }
    Ok(())
}

/// The mm fields (code/data/brk/stack/args/env, auxv, exe) in one PR_SET_MM_MAP.
pub(super) fn set_mm_map(r: &Remote<'_>, host: i32, plan: &Plan, prep: &Prepared) -> Result<(), RestoreError> {
    // A container's init runs the dumped program already (and maps it again below, which
    // forbids replacing it): its exe is kept (-1).
    let same_exe = {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(format!("/proc/{host}/exe")).map(|m| (m.dev(), m.ino()));
        let want = prep.exe.metadata().map(|m| (m.dev(), m.ino()));
        matches!((now, want), (Ok(a), Ok(b)) if a == b)
    };
    let exe = if same_exe {
        u64::from(u32::MAX)
    } else {
        r.pull(prep.exe.as_raw_fd())?
    };
    let mm = &plan.mm;
    let auxv = r.put(256, &words(&mm.mm_saved_auxv))?;
    let mut map = words(&[
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv,
    ]);
    map.extend_from_slice(&((mm.mm_saved_auxv.len() * 8) as u32).to_le_bytes());
    map.extend_from_slice(&(exe as u32).to_le_bytes());
    let map_addr = r.put(0, &map)?;
    r.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, map_addr, map.len() as u64, 0, 0],
    )?;
    if !same_exe {
        r.close(exe)?;
    }
    Ok(())
}

/// Moves the puppet's [vvar]/[vvar_vclock] span and [vdso] to where the dumped task had them.
pub(super) fn move_vdso(
    r: &Remote<'_>,
    pid: i32,
    plan: &Plan,
    own: &[procfs::MapsEntry],
    taken: &[(u64, u64)],
) -> Result<(), RestoreError> {
    let span = |it: &mut dyn Iterator<Item = (u64, u64)>| -> Option<(u64, u64)> {
        it.fold(None, |acc, (s, e)| match acc {
            None => Some((s, e)),
            Some((s0, e0)) => Some((s0.min(s), e0.max(e))),
        })
    };
    let cur_vdso = span(&mut own.iter().filter(|m| m.path == "[vdso]").map(|m| (m.start, m.end)));
    let cur_vvar = span(
        &mut own
            .iter()
            .filter(|m| m.path.starts_with("[vvar"))
            .map(|m| (m.start, m.end)),
    );
    let want_vdso = span(
        &mut plan
            .mm
            .vmas
            .iter()
            .filter(|v| v.status & st::VDSO != 0)
            .map(|v| (v.start, v.end)),
    );
    let want_vvar = span(
        &mut plan
            .mm
            .vmas
            .iter()
            .filter(|v| v.status & st::VVAR != 0)
            .map(|v| (v.start, v.end)),
    );
    let size = |r: Option<(u64, u64)>| r.map(|(s, e)| e - s);
    if size(cur_vdso) != size(want_vdso) || size(cur_vvar) != size(want_vvar) {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!(
                "the vdso/vvar sizes differ from the dump's ({:?}/{:?} here, {:?}/{:?} dumped): restore on the kernel that dumped",
                size(cur_vdso),
                size(cur_vvar),
                size(want_vdso),
                size(want_vvar)
            ),
        });
    }
    let mremap = |from: (u64, u64), to: u64| -> Result<(), RestoreError> {
        if from.0 != to {
            let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
            r.call(
                "mremap(vdso)",
                libc::SYS_mremap,
                [from.0, from.1 - from.0, from.1 - from.0, flags, to, 0],
            )?;
        }
        Ok(())
    };
    let (Some(mut vvar), Some(vdso), Some(wvvar), Some(wvdso)) = (cur_vvar, cur_vdso, want_vvar, want_vdso) else {
        return Ok(());
    };
    let len = vvar.1 - vvar.0;
    if overlaps((wvdso.0, wvdso.1), vvar) || overlaps((wvvar.0, wvvar.1), vdso) {
        let mut busy = taken.to_vec();
        busy.push((r.scratch, r.scratch + SCRATCH_LEN));
        let tmp = free_range(len, &busy).ok_or_else(|| RestoreError::Invalid {
            what: "no room to move vvar".into(),
        })?;
        mremap(vvar, tmp)?;
        vvar = (tmp, tmp + len);
    }
    mremap(vdso, wvdso.0)?;
    mremap(vvar, wvvar.0)
}

/// Reads every present page run from the pages image into place with preadv, many runs a call.
fn fill_pages(r: &Remote<'_>, plan: &Plan, pages_fd: u64, kept: &[(u64, u64)]) -> Result<(), RestoreError> {
    let room = ((SCRATCH_LEN - DATA) / 16) as usize;
    // The vdso's saved pages are not written back: the running kernel's vdso was moved there.
    let in_vdso = |vaddr: u64| {
        plan.mm
            .vmas
            .iter()
            .any(|v| v.status & st::VDSO != 0 && v.start <= vaddr && vaddr < v.end)
    };
    // Pieces of at most 256 MiB (a run may be GiBs; one read(2) moves at most ~2 GiB).
    const PIECE: u64 = 256 << 20;
    let mut runs = Vec::new();
    // (the runs of kept mappings are compared with what was inherited instead: fill_kept)
    let in_kept = |vaddr: u64| kept.iter().any(|&(s, e)| s <= vaddr && vaddr < e);
    for p in plan
        .pagemap
        .runs
        .iter()
        .filter(|p| p.is_present() && !in_vdso(p.vaddr) && !in_kept(p.vaddr))
    {
        let mut done = 0;
        while done < p.len() {
            let len = (p.len() - done).min(PIECE);
            runs.push(PageRun {
                vaddr: p.vaddr + done,
                nr_pages: len / PAGE_SIZE,
                flags: p.flags,
                offset: p.offset + done,
            });
            done += len;
        }
    }
    let mut i = 0;
    while i < runs.len() {
        let offset = runs[i].offset;
        let mut iov = Vec::new();
        let mut total = 0u64;
        // One call reads runs that follow each other in the pages image.
        while i < runs.len()
            && runs[i].offset == offset + total
            && iov.len() / 16 < room.min(IOV_MAX)
            && total < (1 << 30)
        {
            iov.extend_from_slice(&words(&[runs[i].vaddr, runs[i].len()]));
            total += runs[i].len();
            i += 1;
        }
        let addr = r.put(0, &iov)?;
        let n = r.call(
            "preadv(pages)",
            libc::SYS_preadv,
            [pages_fd, addr, (iov.len() / 16) as u64, offset, 0, 0],
        )?;
        if n != total {
            // preadv stops at the first range it cannot write: name it.
            let mut at = 0;
            let mut stuck = 0;
            for pair in iov.chunks_exact(16) {
                let vaddr = u64::from_le_bytes(pair[..8].try_into().unwrap_or([0; 8]));
                let len = u64::from_le_bytes(pair[8..].try_into().unwrap_or([0; 8]));
                if at + len > n {
                    stuck = vaddr + (n - at);
                    break;
                }
                at += len;
            }
            return Err(RestoreError::Invalid {
                what: format!(
                    "pid {}: pages image: read {n} of {total} bytes, stopped at {stuck:#x}",
                    r.pid
                ),
            });
        }
    }
    Ok(())
}

/// The AIO rings (CRIU's mm.aios): each saved ring, its pages now in an ordinary area at its
/// address, becomes a new context at that address (see [`crate::aio`]): io_setup, the kernel's
/// tail moved to the saved one by completed writes to /dev/null, the saved head and events
/// copied in, the new ring moved over the old area.
pub(super) fn restore_aio_rings(r: &Remote<'_>, plan: &Plan) -> Result<(), RestoreError> {
    use crate::aio::{Header, HEADER_LEN};
    const BATCH: u64 = 64;
    let pid = r.pid;
    for a in &plan.mm.aios {
        let (addr, len) = (a.id, u64::from(a.ring_len));
        let bad = |what: String| RestoreError::Invalid {
            what: format!("pid {pid}: the AIO ring at {addr:#x}: {what}"),
        };
        let header = |at: u64| -> Result<Header, RestoreError> {
            let mut b = [0u8; 32];
            r.mem.read(at, &mut b)?;
            Ok(Header::parse(&b))
        };
        let saved = header(addr)?;
        saved.check(len).map_err(bad)?;
        let ctx_at = r.put(0, &[0u8; 8])?;
        r.call("io_setup", libc::SYS_io_setup, [a.nr_req.into(), ctx_at, 0, 0, 0, 0])?;
        let mut ctx = [0u8; 8];
        r.mem.read(ctx_at, &mut ctx)?;
        let ctx = u64::from_ne_bytes(ctx);
        let new = header(ctx)?;
        if new.nr != saved.nr {
            return Err(bad(format!(
                "io_setup({}) made a ring of {} events, not {}",
                a.nr_req, new.nr, saved.nr
            )));
        }
        // The kernel's tail: as many completions as it takes to reach the saved one (round the
        // ring once more if the saved tail is behind its head), reaped batch by batch.
        let mut left = u64::from(if saved.tail >= saved.head {
            saved.tail
        } else {
            saved.nr + saved.tail
        });
        if left > 0 {
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| bad(format!("/dev/null: {e}")))?;
            let null_fd = r.pull(std::os::fd::AsRawFd::as_raw_fd(&null))?;
            // struct iocb (64 bytes) x BATCH, their pointers, the events, one byte to write.
            let (iocbs, ptrs, events, byte) = (1024u64, 1024 + 64 * BATCH, 1024 + 72 * BATCH, 1024 + 104 * BATCH);
            let byte_addr = r.put(byte, &[0])?;
            let mut cbs = Vec::with_capacity((64 * BATCH) as usize);
            for _ in 0..BATCH {
                let mut cb = [0u8; 64];
                cb[16..18].copy_from_slice(&1u16.to_ne_bytes()); // IOCB_CMD_PWRITE
                cb[20..24].copy_from_slice(&(null_fd as u32).to_ne_bytes());
                cb[24..32].copy_from_slice(&byte_addr.to_ne_bytes());
                cb[32..40].copy_from_slice(&1u64.to_ne_bytes());
                cbs.extend_from_slice(&cb);
            }
            let iocbs_addr = r.put(iocbs, &cbs)?;
            let list: Vec<u64> = (0..BATCH).map(|i| iocbs_addr + 64 * i).collect();
            let ptrs_addr = r.put(ptrs, &super::words(&list))?;
            let events_addr = r.put(events, &vec![0u8; (32 * BATCH) as usize])?;
            while left > 0 {
                let n = left.min(BATCH);
                let sent = r.call("io_submit", libc::SYS_io_submit, [ctx, n, ptrs_addr, 0, 0, 0])?;
                let got = r.call("io_getevents", libc::SYS_io_getevents, [ctx, n, n, events_addr, 0, 0])?;
                if sent != n || got != n {
                    return Err(bad(format!("moving its tail: {sent} of {n} writes sent, {got} reaped")));
                }
                left -= n;
            }
            r.close(null_fd)?;
        }
        if header(ctx)?.tail != saved.tail {
            return Err(bad("the new ring's tail is not the saved one".into()));
        }
        // The saved head, then the saved events (the kernel reads the head from the ring).
        let mut events = vec![0u8; (len - HEADER_LEN) as usize];
        r.mem.read(addr + HEADER_LEN, &mut events)?;
        r.mem.write(ctx + HEADER_LEN, &events)?;
        r.mem.write(ctx + 8, &saved.head.to_ne_bytes())?;
        r.call("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        let moved = r.call(
            "mremap",
            libc::SYS_mremap,
            [
                ctx,
                len,
                len,
                (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                addr,
                0,
            ],
        )?;
        if moved != addr {
            return Err(bad(format!("mremap put the new ring at {moved:#x}")));
        }
    }
    Ok(())
}

/// The pages of the mappings kept from the parent (`kept`): each saved page is compared with
/// the inherited one and written only where it differs (a write breaks the sharing); a page
/// the task did not have is dropped (MADV_DONTNEED: it reads as zeros again).
fn fill_kept(r: &Remote<'_>, plan: &Plan, prep: &Prepared, kept: &[(u64, u64)]) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    let pid = r.pid;
    let failed = |what: String| {
        move |e: std::io::Error| RestoreError::Object {
            pid,
            object: what,
            source: e,
        }
    };
    let (mut saved, mut now) = (Vec::new(), Vec::new());
    for &(start, end) in kept {
        let mut at = start;
        let runs = plan
            .pagemap
            .runs
            .iter()
            .filter(|p| p.is_present() && start <= p.vaddr && p.vaddr < end);
        for p in runs {
            if p.vaddr > at {
                r.call(
                    "madvise(DONTNEED)",
                    libc::SYS_madvise,
                    [at, p.vaddr - at, libc::MADV_DONTNEED as u64, 0, 0, 0],
                )?;
            }
            let mut done = 0;
            while done < p.len() {
                let len = (p.len() - done).min(CHUNK);
                saved.resize(len as usize, 0);
                now.resize(len as usize, 0);
                prep.pages
                    .read_exact_at(&mut saved, p.offset + done)
                    .map_err(failed(format!("pages image at {:#x}", p.offset + done)))?;
                // (through /proc/PID/mem: process_vm_readv pins the pages, which unshares them)
                r.mem.read_forced(p.vaddr + done, &mut now)?;
                // Runs of differing pages, each written at once.
                let pages = (len / PAGE_SIZE) as usize;
                let differs = |k: usize| {
                    let s = k * PAGE_SIZE as usize..(k + 1) * PAGE_SIZE as usize;
                    saved[s.clone()] != now[s]
                };
                let mut k = 0;
                while k < pages {
                    if !differs(k) {
                        k += 1;
                        continue;
                    }
                    let first = k;
                    while k < pages && differs(k) {
                        k += 1;
                    }
                    let (from, to) = (first * PAGE_SIZE as usize, k * PAGE_SIZE as usize);
                    r.mem.write_forced(p.vaddr + done + from as u64, &saved[from..to])?;
                }
                done += len;
            }
            at = p.vaddr + p.len();
        }
        if end > at {
            r.call(
                "madvise(DONTNEED)",
                libc::SYS_madvise,
                [at, end - at, libc::MADV_DONTNEED as u64, 0, 0, 0],
            )?;
        }
    }
    Ok(())
}
