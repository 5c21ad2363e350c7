//! The core image of one thread: registers, xstate, signal mask and queue, credentials,
//! seccomp mode and filters, robust list, rseq, and what injected syscalls read.

use parasite::Tracee;

use super::{injected, read_proc, DumpError};
use crate::image::pb;
use crate::model::seccomp::SeccompImage;
use crate::{procfs, sys, x86};

/// The signals queued for thread `t`, or with `shared` for its process (left queued).
pub(super) fn signal_queue(t: &Tracee, shared: bool) -> Result<pb::SignalQueueEntry, DumpError> {
    let signals = t
        .pending_signals(shared)?
        .into_iter()
        .map(|s| pb::SiginfoEntry { siginfo: s.to_vec() })
        .collect();
    Ok(pb::SignalQueueEntry { signals })
}

/// The core image of one thread (without the process-wide `tc`), and what was read by injection.
pub(super) fn thread_core(
    pid: i32,
    t: &Tracee,
    whole_process: bool,
    seccomp: &mut SeccompImage,
) -> Result<(pb::CoreEntry, injected::InjectedState), DumpError> {
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
    let injected = injected::collect(t, whole_process, status.sig_caught, status.sig_ignored, &timers)?;
    let signals_p = Some(signal_queue(t, false)?);
    let sched = sys::sched_of(tid).map_err(|e| DumpError::proc(tid, "sched_getattr", e))?;
    if sched.policy & !sys::SCHED_RESET_ON_FORK == sys::SCHED_DEADLINE {
        return Err(DumpError::Unsupported {
            pid,
            what: format!("thread {tid} runs under SCHED_DEADLINE, whose parameters images cannot hold"),
        });
    }
    let comm = read_proc(pid, &format!("task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_owned();
    // Inside a user namespace of its own (a container's), its ids as it sees them.
    let creds = match crate::ns::user::Maps::of(pid) {
        Some(maps) => crate::model::creds::creds_entry(&maps.status_inside(status.clone()), injected.securebits),
        None => crate::model::creds::creds_entry(&status, injected.securebits),
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
            sched_policy: Some(sched.policy),
            sched_prio: Some(sched.priority),
            sched_nice: Some(sched.nice),
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
