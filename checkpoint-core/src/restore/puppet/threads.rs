//! The threads of a puppet: each cloned at its tid, its own state set by itself (signal stack,
//! clear-tid address, robust list, rseq, name, queued signals, credentials), then its registers.

use parasite::{Injector, Tracee};

use super::{process, words, Call, Put, Remote};
use crate::image::pb;
use crate::restore::{Inherited, RestoreError};
use crate::x86;

/// The dumped registers, xstate and signal mask of a stopped thread; it resumes there when let go.
pub(super) fn set_dumped_registers(t: &Tracee, ti: &pb::ThreadInfoX86, mask: u64) -> Result<(), RestoreError> {
    let mut xstate = t.xstate()?;
    x86::pb_to_xstate(&ti.fpregs, &mut xstate);
    t.set_xstate(&xstate)?;
    let mut regs = t.regs()?;
    x86::pb_to_regs(&ti.gpregs, &mut regs);
    // Not "in a syscall": no kernel restart logic applies to these registers.
    regs.orig_rax = u64::MAX;
    t.set_regs(&regs)?;
    t.set_sigmask(mask)?;
    Ok(())
}

/// A thread's own state, by syscalls the thread itself runs (`call`; `put` copies arguments into
/// the scratch area): parent-death signal (with `pdeath`: not for the root, whose parent is
/// not the dumped one), altstack, clear-tid address, robust list, rseq area, name.
pub(super) fn thread_state(
    call: Call<'_>,
    put: Put<'_>,
    ti: &pb::ThreadInfoX86,
    tc: &pb::ThreadCoreEntry,
    name: &str,
    pdeath: bool,
) -> Result<(), RestoreError> {
    if let Some(sig) = tc.pdeath_sig.filter(|&s| pdeath && s != 0) {
        call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, sig.into(), 0, 0, 0, 0],
        )?;
    }
    if let Some(sas) = &tc.sas {
        let flags = u64::from(sas.ss_flags & !(libc::SS_ONSTACK as u32));
        let ss = put(0, &words(&[sas.ss_sp, flags, sas.ss_size]))?;
        call("sigaltstack", libc::SYS_sigaltstack, [ss, 0, 0, 0, 0, 0])?;
    }
    call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [ti.clear_tid_addr, 0, 0, 0, 0, 0],
    )?;
    if tc.futex_rla != 0 {
        call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [tc.futex_rla, tc.futex_rla_len.into(), 0, 0, 0, 0],
        )?;
    }
    // (a thread with none registered: no entry, or, as CRIU may write it, one of zeros)
    if let Some(rseq) = tc.rseq_entry.as_ref().filter(|r| r.rseq_abi_pointer != 0) {
        let args = [
            rseq.rseq_abi_pointer,
            rseq.rseq_abi_size.into(),
            0,
            rseq.signature.into(),
            0,
            0,
        ];
        call("rseq", libc::SYS_rseq, args)?;
    }
    let mut comm = name.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = put(0, &comm)?;
    call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, at, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Clones thread `tid` into the puppet (clone3 with set_tid, from the gadget: the new thread
/// stops at once under ptrace), gives it its own signal stack, clear-tid address, robust list,
/// rseq area and name, then its registers, xstate and mask. It stays stopped until released.
pub(super) fn make_thread(
    r: &Remote<'_>,
    pid: i32,
    tid: i32,
    core: &pb::CoreEntry,
    pdeath: bool,
    filters: &[pb::SeccompFilter],
    inherited: &Inherited,
) -> Result<Tracee, RestoreError> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let tid_addr = r.put(128, &(tid as u32).to_le_bytes())?;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let args = r.put(0, &words(&[flags, 0, 0, 0, 0, 0, 0, 0, tid_addr, 1, 0]))?;
    let got = r.call("clone3(thread)", libc::SYS_clone3, [args, 88, 0, 0, 0, 0])?;
    if got != tid as u64 {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: thread created as {got}, not {tid}"),
        });
    }
    let host = r.inj.tracee().take_new_child().ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {pid}: created thread {tid}, but no clone event came"),
    })?;
    let t = Tracee::adopt_thread(host)?;
    let ti = core.thread_info.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: format!("tid {tid}: no registers"),
    })?;
    let tc = core.thread_core.clone().unwrap_or_default();
    let inj = Injector::at(&t, r.scratch)?;
    let call = |name, nr, args| inj.call(name, nr, args).map_err(RestoreError::from);
    let name = tc.comm.clone().unwrap_or_default();
    let put = |off: u64, bytes: &[u8]| r.put(off, bytes);
    thread_state(&call, &put, ti, &tc, &name, pdeath)?;
    let queued: Vec<pb::SiginfoEntry> = tc.signals_p.iter().flat_map(|q| q.signals.clone()).collect();
    process::queue_signals(&call, &put, pid, Some(tid), &queued)?;
    super::creds::seccomp_and_creds(&call, &put, tid, &tc, filters, inherited)?;
    inj.release();
    set_sched(t.pid(), tid, &tc)?;
    set_dumped_registers(&t, ti, tc.blk_sigset.unwrap_or(0))?;
    Ok(t)
}

/// Schedules the thread (`host`: its id for us, `tid` in the images) as it was: policy,
/// real-time priority, nice; set from here, and only where they differ from what it inherited.
pub(super) fn set_sched(host: i32, tid: i32, tc: &pb::ThreadCoreEntry) -> Result<(), RestoreError> {
    let (Some(policy), Some(priority), Some(nice)) = (tc.sched_policy, tc.sched_prio, tc.sched_nice) else {
        return Ok(());
    };
    let want = crate::sys::Sched { policy, priority, nice };
    let failed = |what: &str| {
        let what = what.to_owned();
        move |source| RestoreError::Object {
            pid: tid,
            object: what,
            source,
        }
    };
    if crate::sys::sched_of(host).map_err(failed("its scheduling"))? != want {
        crate::sys::set_sched(host, &want).map_err(failed(&format!(
            "scheduling policy {} priority {} nice {}",
            policy & !crate::sys::SCHED_RESET_ON_FORK,
            priority,
            nice
        )))?;
    }
    Ok(())
}
