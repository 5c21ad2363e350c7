//! Per-task state the kernel shows nowhere but to the task itself, read by injecting single
//! syscalls: signal handlers, the alternate signal stack, the clear-tid address, brk.

use parasite::mem::RemoteMem;
use parasite::{Injector, Pinned, Tracee};

use super::DumpError;
use crate::image::pb::{ItimerEntry, PosixTimerEntry, SaEntry, ThreadSasEntry};
use crate::procfs::PosixTimer;

/// Highest signal number.
pub const SIGMAX: u32 = 64;

/// What the injected syscalls returned.
#[derive(Clone, Debug, Default)]
pub struct InjectedState {
    /// Every signal but SIGKILL and SIGSTOP, in order.
    pub sigactions: Vec<SaEntry>,
    pub altstack: ThreadSasEntry,
    pub clear_tid_addr: u64,
    pub brk: u64,
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: [ItimerEntry; 3],
    /// The signal this thread gets when its parent dies (PR_GET_PDEATHSIG), or 0.
    pub pdeath_sig: u32,
    /// PR_GET_CHILD_SUBREAPER.
    pub child_subreaper: bool,
    /// PR_GET_SECUREBITS (per thread).
    pub securebits: u32,
    /// PR_GET_DUMPABLE (per process).
    pub dumpable: u32,
    /// The POSIX timers, with their remaining time, interval and overrun.
    pub posix_timers: Vec<PosixTimerEntry>,
    /// Host and domain name of the task's UTS namespace (uname).
    pub uts: (String, String),
    /// The membarrier commands the process registered for (MEMBARRIER_CMD_GET_REGISTRATIONS,
    /// kernel 6.3+: their MEMBARRIER_CMD_REGISTER_* bits); `None` where the kernel cannot say.
    pub membarrier: Option<u32>,
}

/// Signals whose disposition cannot be read or changed.
pub fn is_fixed_signal(sig: u32) -> bool {
    sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}

/// Reads the state above through a scratch page mapped in the task for the occasion.
/// With `whole_process`, also the process-wide state (handlers, brk, itimers); otherwise only
/// the thread's own (altstack, clear-tid address).
/// `caught` and `ignored` are the signal sets of /proc/PID/status: only handled signals (and
/// SIGCHLD, whose flags matter even at SIG_DFL) are asked for; the others are SIG_DFL or SIG_IGN.
pub fn collect(
    t: &Tracee,
    whole_process: bool,
    caught: u64,
    ignored: u64,
    timers: &[PosixTimer],
) -> Result<InjectedState, DumpError> {
    let _pinned = Pinned::new(t.pid());
    let inj = Injector::at_ip(t)?;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let scratch = inj.call("mmap", libc::SYS_mmap, [0, 4096, prot, flags, u64::MAX, 0])?;
    let result = read_with_scratch(t, &inj, scratch, whole_process, (caught, ignored), timers)
        .and_then(|st| requeue_deferred(t, &inj, scratch).map(|()| st));
    let unmapped = inj.call("munmap", libc::SYS_munmap, [scratch, 4096, 0, 0, 0, 0]);
    let state = result?;
    unmapped?;
    inj.finish()?;
    Ok(state)
}

/// Queues again, by the thread itself, the signals it had taken for delivery when we stopped
/// it (ptrace kept them from delivery): they are pending again, and dumped as such.
fn requeue_deferred(t: &Tracee, inj: &Injector<'_>, scratch: u64) -> Result<(), DumpError> {
    let deferred = t.take_deferred();
    if deferred.is_empty() {
        return Ok(());
    }
    let mem = RemoteMem::open(t.pid())?;
    // Its own ids, as it sees them (inside a container they are not ours).
    let tgid = inj.call("getpid", libc::SYS_getpid, [0; 6])?;
    let tid = inj.call("gettid", libc::SYS_gettid, [0; 6])?;
    for info in deferred {
        let signo = u32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        mem.write(scratch, &info)?;
        inj.call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            [tgid, tid, signo.into(), scratch, 0, 0],
        )?;
    }
    Ok(())
}

fn read_with_scratch(
    t: &Tracee,
    inj: &Injector<'_>,
    scratch: u64,
    whole_process: bool,
    (caught, ignored): (u64, u64),
    timers: &[PosixTimer],
) -> Result<InjectedState, DumpError> {
    let mem = RemoteMem::open(t.pid())?;
    let mut st = InjectedState::default();
    let mut buf = [0u8; 32];
    for sig in 1..=SIGMAX {
        if !whole_process || is_fixed_signal(sig) {
            continue;
        }
        let bit = 1u64 << (sig - 1);
        if caught & bit == 0 && sig != libc::SIGCHLD as u32 {
            st.sigactions.push(SaEntry {
                sigaction: u64::from(ignored & bit != 0), // SIG_IGN is 1, SIG_DFL 0
                ..Default::default()
            });
            continue;
        }
        inj.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig.into(), 0, scratch, 8, 0, 0],
        )?;
        mem.read(scratch, &mut buf)?;
        st.sigactions.push(SaEntry {
            sigaction: u64_at(&buf, 0),
            flags: u64_at(&buf, 8),
            restorer: u64_at(&buf, 16),
            mask: u64_at(&buf, 24),
            compat_sigaction: None,
            mask_extended: None,
        });
    }
    inj.call("sigaltstack", libc::SYS_sigaltstack, [0, scratch, 0, 0, 0, 0])?;
    let mut ss = [0u8; 24];
    mem.read(scratch, &mut ss)?;
    st.altstack = ThreadSasEntry {
        ss_sp: u64_at(&ss, 0),
        ss_flags: u32::from_le_bytes(ss[8..12].try_into().unwrap_or([0; 4])),
        ss_size: u64_at(&ss, 16),
    };
    inj.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
    )?;
    let mut word = [0u8; 8];
    mem.read(scratch, &mut word)?;
    st.clear_tid_addr = u64::from_le_bytes(word);
    // prctl(option, int *out)
    let prctl_int = |name: &'static str, option: i32| -> Result<u32, DumpError> {
        inj.call(name, libc::SYS_prctl, [option as u64, scratch, 0, 0, 0, 0])?;
        let mut int = [0u8; 4];
        mem.read(scratch, &mut int)?;
        Ok(u32::from_le_bytes(int))
    };
    st.pdeath_sig = prctl_int("prctl(PR_GET_PDEATHSIG)", libc::PR_GET_PDEATHSIG)?;
    // These two return their value.
    st.securebits = inj.call(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
    )? as u32;
    if !whole_process {
        return Ok(st);
    }
    st.brk = inj.call("brk", libc::SYS_brk, [0; 6])?;
    // struct utsname: six fields of 65 bytes; nodename second, domainname sixth.
    inj.call("uname", libc::SYS_uname, [scratch, 0, 0, 0, 0, 0])?;
    let mut uts = [0u8; 390];
    mem.read(scratch, &mut uts)?;
    let field = |i: usize| {
        let f = &uts[i * 65..(i + 1) * 65];
        String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(65)]).into_owned()
    };
    st.uts = (field(1), field(5));
    st.dumpable = inj.call(
        "prctl(PR_GET_DUMPABLE)",
        libc::SYS_prctl,
        [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0],
    )? as u32;
    st.child_subreaper = prctl_int("prctl(PR_GET_CHILD_SUBREAPER)", libc::PR_GET_CHILD_SUBREAPER)? != 0;
    const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
    let registered = inj.raw(libc::SYS_membarrier, [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0])?;
    st.membarrier = u32::try_from(registered).ok();
    for timer in timers {
        inj.call(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [timer.id.into(), scratch, 0, 0, 0, 0],
        )?;
        let mut its = [0u8; 32];
        mem.read(scratch, &mut its)?;
        let overrun = inj.call(
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [timer.id.into(), 0, 0, 0, 0, 0],
        )?;
        st.posix_timers.push(PosixTimerEntry {
            it_id: timer.id,
            clock_id: timer.clock_id,
            si_signo: timer.signo,
            it_sigev_notify: timer.notify,
            sival_ptr: timer.sival,
            overrun: overrun as u32,
            isec: u64_at(&its, 0),
            insec: u64_at(&its, 8),
            vsec: u64_at(&its, 16),
            vnsec: u64_at(&its, 24),
            notify_thread_id: timer.notify_tid,
        });
    }
    st.posix_timers.sort_by_key(|t| t.it_id); // /proc lists the newest first
    for (which, slot) in st.itimers.iter_mut().enumerate() {
        inj.call("getitimer", libc::SYS_getitimer, [which as u64, scratch, 0, 0, 0, 0])?;
        let mut t = [0u8; 32];
        mem.read(scratch, &mut t)?;
        let (isec, iusec) = (u64_at(&t, 0), u64_at(&t, 8));
        // A periodic timer caught as it fired shows no time left: saved as going off one
        // interval later, so that any restorer arms it again.
        let (vsec, vusec) = match (u64_at(&t, 16), u64_at(&t, 24)) {
            (0, 0) => (isec, iusec),
            left => left,
        };
        *slot = ItimerEntry {
            isec,
            iusec,
            vsec,
            vusec,
        };
    }
    Ok(st)
}
