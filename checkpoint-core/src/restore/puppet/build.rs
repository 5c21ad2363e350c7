//! Building one task inside its puppet, in order: what the fork gave it forgotten, its memory
//! laid out and filled, its files installed, its process-wide and thread state set, its other
//! threads made, its credentials last, and at the unmapping of the scratch area its registers.

use parasite::mem::RemoteMem;
use parasite::{Injector, Pinned, Tracee};

use super::{creds, files, memory, own_maps, process, threads, Remote, SCRATCH_LEN};
use crate::image::pb;
use crate::restore::plan::Plan;
use crate::restore::{Prepared, RestoreError};

const RSEQ_FLAG_UNREGISTER: u64 = 1;

/// What the memory phase of a build leaves for the rest: the puppet's pidfd of us, and its
/// fds to close once it is built (mapped files, the pages image).
#[derive(Debug)]
pub struct Memory {
    ctl_pidfd: u64,
    helpers: Vec<u64>,
}

/// The puppet `t` with the injector and memory access a build uses.
fn remote<'t>(t: &'t Tracee, plan: &Plan, prep: &Prepared, scratch: u64) -> Result<Remote<'t>, RestoreError> {
    let inj = Injector::at(t, scratch)?;
    let mem = RemoteMem::open(t.pid())?;
    let max_fd = plan.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    Ok(Remote {
        pid: plan.pid,
        inj,
        mem,
        scratch,
        helper_base: (max_fd + 1).max(3) as u64,
        ctl_pidfd: 0,
        ctl_socket: prep.inherited.ctl_socket.clone(),
    })
}

/// The first phase of building the dumped task inside the puppet `t` (which has the scratch
/// area at `scratch`): what the fork gave it forgotten, its memory laid out and filled. Done
/// before the puppet forks its children, which then inherit it: `parent` is the plan and the
/// laid-out memory of the task this puppet was forked from once that was done, if any; the private anonymous
/// mappings it shares with it are kept, and only the pages that differ are written, so that
/// pages shared copy-on-write after a fork stay shared.
pub fn build_memory(
    t: &Tracee,
    plan: &Plan,
    prep: &Prepared,
    scratch: u64,
    parent: Option<(&Plan, &Memory)>,
) -> Result<Memory, RestoreError> {
    let host = t.pid();
    let _pinned = Pinned::new(host);
    let own_maps = own_maps(host)?;
    let target: Vec<(u64, u64)> = plan.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    let mut taken: Vec<(u64, u64)> = own_maps
        .iter()
        .map(|m| (m.start, m.end))
        .chain(target.iter().copied())
        .collect();
    taken.sort_unstable();
    let mut r = remote(t, plan, prep, scratch)?;
    // 2. Forget what the fork gave the puppet: rseq, fds, every mapping but scratch/vdso/vvar.
    if let Some(rseq) = t.rseq()? {
        r.call(
            "rseq(unregister)",
            libc::SYS_rseq,
            [
                rseq.rseq_abi_pointer,
                rseq.rseq_abi_size.into(),
                RSEQ_FLAG_UNREGISTER,
                rseq.signature.into(),
                0,
                0,
            ],
        )?;
    }
    // Every fd goes but the pidfd of the controller a container's init was given (our pid
    // means nothing in its pid namespace); elsewhere the puppet opens one.
    // (forked from a puppet whose memory is laid out: it holds that puppet's, at its number)
    let given = prep.inherited.ctl_fd.map(|fd| fd as u64);
    let ctl = match given.map(|fd| parent.map_or(fd, |(_, m)| m.ctl_pidfd)) {
        Some(ctl) => {
            if ctl > 0 {
                r.call("close_range", libc::SYS_close_range, [0, ctl - 1, 0, 0, 0, 0])?;
            }
            r.call(
                "close_range",
                libc::SYS_close_range,
                [ctl + 1, u64::from(u32::MAX), 0, 0, 0, 0],
            )?;
            ctl
        }
        None => {
            r.call(
                "close_range",
                libc::SYS_close_range,
                [0, u64::from(u32::MAX), 0, 0, 0, 0],
            )?;
            r.call(
                "pidfd_open",
                libc::SYS_pidfd_open,
                [std::process::id().into(), 0, 0, 0, 0, 0],
            )?
        }
    };
    r.ctl_pidfd = r.call(
        "fcntl(F_DUPFD)",
        libc::SYS_fcntl,
        [ctl, libc::F_DUPFD as u64, r.helper_base, 0, 0, 0],
    )?;
    r.close(ctl)?;
    let kept = parent.map(|(p, _)| memory::kept_from(plan, p)).unwrap_or_default();
    let kept_ranges: Vec<(u64, u64)> = kept
        .iter()
        .map(|&i| (plan.mm.vmas[i].start, plan.mm.vmas[i].end))
        .collect();
    memory::unmap_inherited(&r, &own_maps, scratch, &kept_ranges)?;

    // 3. vdso and vvar to the dumped addresses (same kernel: same sizes).
    memory::move_vdso(&r, host, plan, &own_maps, &taken)?;

    // 4. Every other mapping, writable while its pages are filled.
    let (filled, mut helpers) = memory::map_vmas(&r, plan, prep, &kept)?;
    // 5. Pages: the puppet reads them from the pages image straight into place (one copy).
    let pages_fd = memory::fill(&r, plan, prep, &filled, &kept_ranges)?;
    helpers.push(pages_fd);
    memory::restore_aio_rings(&r, plan)?;
    Ok(Memory {
        ctl_pidfd: r.ctl_pidfd,
        helpers,
    })
}

/// The rest of building the dumped task inside the puppet `t`, once [`build_memory`] laid its
/// memory out: its files, its process-wide and thread state, its other threads, its
/// credentials; leaves it stopped, ready to be let go, and returns its other threads, stopped
/// too.
pub fn build(
    t: &Tracee,
    plan: &Plan,
    prep: &Prepared,
    scratch: u64,
    is_root: bool,
    filters: &[pb::SeccompFilter],
    memory: Memory,
) -> Result<Vec<Tracee>, RestoreError> {
    // Ptrace and /proc know the puppet by our pid for it; its own syscalls by its pid in its
    // namespace (the dumped one: they differ inside a container).
    let (host, pid) = (t.pid(), plan.pid);
    let _pinned = Pinned::new(host);
    let mut r = remote(t, plan, prep, scratch)?;
    r.ctl_pidfd = memory.ctl_pidfd;
    let helpers = memory.helpers;
    // The thread-state helpers shared with the other threads run through these.
    let call = |name: &'static str, nr: i64, args: [u64; 6]| r.call(name, nr, args);
    let put = |off: u64, bytes: &[u8]| r.put(off, bytes);

    // 6. Files at their numbers, cwd, umask.
    files::install(&r, plan, prep)?;

    // 7. Signal dispositions, limits, itimers; the thread's own state.
    let tc = plan.core.tc.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: "no task core".into(),
    })?;
    process::set_sigactions(&r, tc, &prep.inherited)?;
    let thread = plan.core.thread_core.clone().unwrap_or_default();
    process::set_limits(&r, tc, &prep.inherited)?;
    process::set_itimers(&r, tc)?;
    let ti = plan.core.thread_info.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: "no registers".into(),
    })?;
    let name = thread.comm.as_deref().unwrap_or(&tc.comm);
    threads::thread_state(&call, &put, ti, &thread, name, !is_root)?;
    if tc.child_subreaper == Some(true) {
        r.call(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
        )?;
    }

    // 8. mm fields (code/data/brk/stack/args/env, auxv, exe) in one PR_SET_MM_MAP.
    memory::set_mm_map(&r, host, plan, prep)?;
    if plan.mm.thp_disabled == Some(true) {
        r.call(
            "prctl(PR_SET_THP_DISABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0],
        )?;
    }
    if tc.personality != 0 {
        r.call(
            "personality",
            libc::SYS_personality,
            [tc.personality.into(), 0, 0, 0, 0, 0],
        )?;
    }
    // 9. The other threads: cloned into the puppet at their tids, then set up one by one.
    let mut thread_tracees = Vec::with_capacity(plan.threads.len());
    for (tid, core) in &plan.threads {
        thread_tracees.push(threads::make_thread(
            &r,
            pid,
            *tid,
            core,
            !is_root,
            filters,
            &prep.inherited,
        )?);
    }

    // Owners of files and POSIX timers once every thread they may name exists.
    // membarrier registrations are the whole address space's: once every thread exists.
    if let Some(mask) = tc.membarrier_registration_mask.filter(|&m| m != 0) {
        for cmd in (0..32).map(|b| 1u64 << b).filter(|c| u64::from(mask) & c != 0) {
            r.call("membarrier(register)", libc::SYS_membarrier, [cmd, 0, 0, 0, 0, 0])
                .map_err(|e| RestoreError::Invalid {
                    what: format!("pid {pid}: registering for membarrier command {cmd:#x}: {e}"),
                })?;
        }
    }
    files::open_late_files(&r, prep)?;
    files::set_owners(&r, plan)?;
    files::chroot(&r, prep)?;
    if let Some(timers) = tc.timers.as_ref().filter(|t| !t.posix.is_empty()) {
        process::posix_timers(&r, &timers.posix)?;
    }
    for fd in helpers {
        r.close(fd)?;
    }
    r.close(r.ctl_pidfd)?;
    // Signals queued for the process and for the main thread (all blocked until it runs).
    let queued = |q: &Option<pb::SignalQueueEntry>| q.iter().flat_map(|q| q.signals.clone()).collect::<Vec<_>>();
    process::queue_signals(&call, &put, pid, None, &queued(&tc.signals_s))?;
    process::queue_signals(&call, &put, pid, Some(pid), &queued(&thread.signals_p))?;

    set_loginuid(&r, host, tc)?;
    // Filters and credentials, then dumpable (which a change of credentials resets).
    creds::seccomp_and_creds(&call, &put, pid, &thread, filters, &prep.inherited)?;
    if let Some(d) = plan.mm.dumpable.filter(|d| matches!(d, 0 | 1)) {
        r.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0, 0],
        )?;
    }

    // 10. Last: unmap the scratch area itself; at that syscall's exit, the dumped registers.
    let Remote { inj, .. } = r;
    let ret = inj.call_and_stop_at_exit("munmap(scratch)", libc::SYS_munmap, [scratch, SCRATCH_LEN, 0, 0, 0, 0])?;
    if ret != 0 {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: unmapping the scratch area returned {ret}"),
        });
    }
    threads::set_dumped_registers(t, ti, thread.blk_sigset.unwrap_or(tc.blk_sigset))?;
    // Set from here once the other threads were made (they were born with the puppet's).
    threads::set_sched(host, pid, &thread)?;
    set_oom_score_adj(host, pid, tc)?;
    Ok(thread_tracees)
}

/// The process's oom_score_adj, written from here where it differs from the puppet's. Without
/// CAP_SYS_RESOURCE a value below the inherited one is refused by the kernel: the restore
/// fails, naming it, rather than leave the process easier to kill than it was.
fn set_oom_score_adj(host: i32, pid: i32, tc: &pb::TaskCoreEntry) -> Result<(), RestoreError> {
    let Some(want) = tc.oom_score_adj else {
        return Ok(());
    };
    let path = format!("/proc/{host}/oom_score_adj");
    let failed = |source| RestoreError::Object {
        pid,
        object: format!("oom_score_adj {want}"),
        source,
    };
    let now: Option<i32> = std::fs::read_to_string(&path).map_err(failed)?.trim().parse().ok();
    if now != Some(want) {
        std::fs::write(&path, want.to_string()).map_err(failed)?;
    }
    Ok(())
}

/// The audit login uid, where it differs from the puppet's: only the task itself may write its
/// /proc/self/loginuid, so the puppet does (while it still has CAP_AUDIT_CONTROL).
fn set_loginuid(r: &Remote<'_>, host: i32, tc: &pb::TaskCoreEntry) -> Result<(), RestoreError> {
    let Some(want) = tc.loginuid else {
        return Ok(());
    };
    let now: Option<u32> = std::fs::read_to_string(format!("/proc/{host}/loginuid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if now.is_none() || now == Some(want) {
        return Ok(()); // no audit here, or the same already
    }
    let path = r.put(0, b"/proc/self/loginuid\0")?;
    let value = want.to_string();
    let text = r.put(64, value.as_bytes())?;
    let fd = r.call(
        "open(/proc/self/loginuid)",
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, path, libc::O_WRONLY as u64, 0, 0, 0],
    )?;
    let wrote = r.call(
        "write(loginuid)",
        libc::SYS_write,
        [fd, text, value.len() as u64, 0, 0, 0],
    );
    r.close(fd)?;
    wrote.map_err(|e| RestoreError::Invalid {
        what: format!("pid {}: setting its login uid {want}: {e}", r.pid),
    })?;
    Ok(())
}
