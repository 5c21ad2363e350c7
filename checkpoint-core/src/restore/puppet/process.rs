//! Process-wide state a puppet sets itself: signal dispositions, resource limits, interval and
//! POSIX timers, and the signals queued for the process or a thread.

use super::{words, Call, Put, Remote};
use crate::image::pb;
use crate::restore::{Inherited, RestoreError};

/// Signal dispositions, but those a puppet has already (SIG_DFL, as `inherited` says).
pub(super) fn set_sigactions(
    r: &Remote<'_>,
    tc: &pb::TaskCoreEntry,
    inherited: &Inherited,
) -> Result<(), RestoreError> {
    let mut sig = 0u64;
    for sa in &tc.sigactions {
        sig += 1;
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            sig += 1;
        }
        // Most signals of a puppet are at SIG_DFL already.
        let inherited_default = inherited.non_default_signals & (1u64 << (sig - 1)) == 0;
        if (sa.sigaction, sa.flags, sa.mask) == (0, 0, 0) && inherited_default {
            continue;
        }
        let act = r.put(0, &words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]))?;
        r.call("rt_sigaction", libc::SYS_rt_sigaction, [sig, act, 0, 8, 0, 0])?;
    }
    Ok(())
}

/// Resource limits, but those inherited already.
pub(super) fn set_limits(r: &Remote<'_>, tc: &pb::TaskCoreEntry, inherited: &Inherited) -> Result<(), RestoreError> {
    if let Some(limits) = &tc.rlimits {
        for (res, l) in limits.rlimits.iter().enumerate() {
            if inherited.limits.get(res) == Some(&(l.cur, l.max)) {
                continue; // inherited already
            }
            let new = r.put(0, &words(&[l.cur, l.max]))?;
            r.call("prlimit64", libc::SYS_prlimit64, [0, res as u64, new, 0, 0, 0])?;
        }
    }
    Ok(())
}

/// The interval timers (real, virtual, profiling) that were armed.
pub(super) fn set_itimers(r: &Remote<'_>, tc: &pb::TaskCoreEntry) -> Result<(), RestoreError> {
    if let Some(timers) = &tc.timers {
        for (which, t) in [&timers.real, &timers.virt, &timers.prof].into_iter().enumerate() {
            // A periodic timer caught as it fired shows no time left: it goes off again one
            // interval from now (a checkpoint by CRIU can hold that).
            let (vsec, vusec) = match (t.vsec, t.vusec) {
                (0, 0) => (t.isec, t.iusec),
                left => left,
            };
            if vsec != 0 || vusec != 0 {
                let new = r.put(0, &words(&[t.isec, t.iusec, vsec, vusec]))?;
                r.call("setitimer", libc::SYS_setitimer, [which as u64, new, 0, 0, 0, 0])?;
            }
        }
    }
    Ok(())
}

/// Recreates POSIX timers at their ids (PR_TIMER_CREATE_RESTORE_IDS), armed with the time
/// they had left and their interval.
pub(super) fn posix_timers(r: &Remote<'_>, timers: &[pb::PosixTimerEntry]) -> Result<(), RestoreError> {
    const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
    r.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, on)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )?;
    for t in timers {
        // struct sigevent: sigval, signo, notify, then the thread id (64 bytes in all).
        let mut sev = [0u8; 64];
        sev[..8].copy_from_slice(&t.sival_ptr.to_le_bytes());
        sev[8..12].copy_from_slice(&t.si_signo.to_le_bytes());
        sev[12..16].copy_from_slice(&t.it_sigev_notify.to_le_bytes());
        sev[16..20].copy_from_slice(&t.notify_thread_id.unwrap_or(0).to_le_bytes());
        let sev_at = r.put(0, &sev)?;
        let id_at = r.put(64, &t.it_id.to_le_bytes())?;
        r.call(
            "timer_create",
            libc::SYS_timer_create,
            [t.clock_id.into(), sev_at, id_at, 0, 0, 0],
        )?;
        let mut got = [0u8; 4];
        r.mem.read(id_at, &mut got)?;
        if u32::from_le_bytes(got) != t.it_id {
            return Err(RestoreError::Invalid {
                what: format!(
                    "pid {}: POSIX timer {} was created as {}",
                    r.pid,
                    t.it_id,
                    u32::from_le_bytes(got)
                ),
            });
        }
        if t.vsec != 0 || t.vnsec != 0 {
            let its = r.put(128, &words(&[t.isec, t.insec, t.vsec, t.vnsec]))?;
            r.call(
                "timer_settime",
                libc::SYS_timer_settime,
                [t.it_id.into(), 0, its, 0, 0, 0],
            )?;
        }
    }
    r.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, off)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Queues `signals` (raw siginfos) again, sent by the task to itself: to thread `tid`, or to the
/// whole process `pid`.
pub(super) fn queue_signals(
    call: Call<'_>,
    put: Put<'_>,
    pid: i32,
    tid: Option<i32>,
    signals: &[pb::SiginfoEntry],
) -> Result<(), RestoreError> {
    for s in signals {
        if s.siginfo.len() != 128 {
            return Err(RestoreError::Invalid {
                what: format!("pid {pid}: a queued siginfo of {} bytes, not 128", s.siginfo.len()),
            });
        }
        let signo = u32::from_le_bytes([s.siginfo[0], s.siginfo[1], s.siginfo[2], s.siginfo[3]]);
        if !(1..=64).contains(&signo) {
            return Err(RestoreError::Invalid {
                what: format!("pid {pid}: a queued signal {signo}"),
            });
        }
        let info = put(0, &s.siginfo)?;
        match tid {
            Some(tid) => call(
                "rt_tgsigqueueinfo",
                libc::SYS_rt_tgsigqueueinfo,
                [pid as u64, tid as u64, signo.into(), info, 0, 0],
            )?,
            None => call(
                "rt_sigqueueinfo",
                libc::SYS_rt_sigqueueinfo,
                [pid as u64, signo.into(), info, 0, 0, 0],
            )?,
        };
    }
    Ok(())
}
