//! Remote control of ptrace-stopped tasks.
//!
//! - [`Tracee`]: a task we have seized (dump) or adopted as a stopped child (restore); every
//!   ptrace request on it, and a detach on drop so that no failure leaves it traced.
//! - [`Injector`]: runs single system calls inside a tracee by pointing its registers at a
//!   `syscall; int3` pair — either poked over the current instruction (and put back), or
//!   placed in a scratch page we own. Signals are held blocked while injecting.
//! - [`mem`]: the tracee's memory, through `process_vm_readv`/`writev` or `/proc/PID/mem`.
//! - [`Pinned`]: keeps the controller and the tracee on one CPU while injecting (≈4 µs per
//!   injected syscall instead of ≈50 µs across the two CPUs of this machine).

pub mod mem;
pub mod sys;

use std::io;

pub use sys::{Regs, RseqConfig};

/// Why a remote operation failed; every variant names the task.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pid {pid}: {op}: {source}")]
    Sys {
        pid: i32,
        op: &'static str,
        source: io::Error,
    },
    #[error("pid {pid}: already traced by pid {tracer} (another dump or a debugger?)")]
    AlreadyTraced { pid: i32, tracer: i32 },
    #[error("pid {pid}: no such process")]
    NoSuchProcess { pid: i32 },
    #[error("pid {pid}: exited during {op} (wait status {status:#x})")]
    Exited { pid: i32, op: &'static str, status: i32 },
    #[error("pid {pid}: unexpected stop (wait status {status:#x}) during {op}")]
    UnexpectedStop { pid: i32, op: &'static str, status: i32 },
    #[error("pid {pid}: injected {name}: {source}")]
    Syscall {
        pid: i32,
        name: &'static str,
        source: io::Error,
    },
}

fn sys_err(pid: i32, op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| match source.raw_os_error() {
        Some(libc::ESRCH) if op == "PTRACE_SEIZE" => Error::NoSuchProcess { pid },
        _ => Error::Sys { pid, op, source },
    }
}

fn tracer_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A task under our ptrace control, stopped between operations.
#[derive(Debug)]
pub struct Tracee {
    pid: i32,
    attached: bool,
    /// Signals the tracee had already taken for delivery when it stopped for us (raw
    /// siginfos): kept from delivery, to be queued again (see [`Tracee::take_deferred`]).
    deferred: std::cell::RefCell<Vec<[u8; 128]>>,
    /// The pid (in our pid namespace) of the last process or thread it created under us.
    new_child: std::cell::Cell<Option<i32>>,
}

impl Tracee {
    /// Seizes a running task and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT). Injected syscalls
    /// bypass the task's seccomp filters.
    pub fn seize(pid: i32) -> Result<Tracee, Error> {
        let t = Self::seize_pending(pid)?;
        t.wait_seized()?;
        Ok(t)
    }

    /// Seizes `pid` and asks it to stop, without waiting for the stop (a task of a frozen
    /// cgroup stops only once thawed); [`Tracee::wait_seized`] waits.
    pub fn seize_pending(pid: i32) -> Result<Tracee, Error> {
        let options = libc::PTRACE_O_TRACESYSGOOD | sys::PTRACE_O_SUSPEND_SECCOMP;
        if let Err(e) = sys::seize(pid, options) {
            if e.raw_os_error() == Some(libc::EPERM) {
                if let Some(tracer) = tracer_of(pid).filter(|&t| t != 0) {
                    return Err(Error::AlreadyTraced { pid, tracer });
                }
            }
            return Err(sys_err(pid, "PTRACE_SEIZE")(e));
        }
        let t = Tracee::attached(pid);
        sys::interrupt(pid).map_err(sys_err(pid, "PTRACE_INTERRUPT"))?;
        Ok(t)
    }

    /// Waits for the stop a seize asked for. The task may first stop to deliver a signal it
    /// had just taken: that one is kept, and we wait for ours.
    pub fn wait_seized(&self) -> Result<(), Error> {
        while self.absorb(self.wait_stop("seize")?)? {
            sys::cont(self.pid, 0).map_err(sys_err(self.pid, "PTRACE_CONT"))?;
        }
        Ok(())
    }

    /// Whether `status` is the delivery stop of an asynchronous signal (one sent, not a fault
    /// of the instruction at hand); if so it is kept from delivery and remembered, to be
    /// queued again. A fault (SIGSEGV...) is not: resuming would only fault again.
    fn absorb(&self, status: i32) -> Result<bool, Error> {
        const FAULTS: [i32; 6] = [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ];
        // Event stops, our int3 and syscall stops (SIGTRAP | 0x80) are ours.
        let sig = libc::WSTOPSIG(status);
        if !libc::WIFSTOPPED(status) || status >> 16 != 0 || sig == libc::SIGTRAP || sig == libc::SIGTRAP | 0x80 {
            return Ok(false);
        }
        let info = sys::get_siginfo(self.pid).map_err(sys_err(self.pid, "PTRACE_GETSIGINFO"))?;
        let code = i32::from_le_bytes([info[8], info[9], info[10], info[11]]);
        if FAULTS.contains(&libc::WSTOPSIG(status)) && code > 0 {
            return Ok(false);
        }
        self.deferred.borrow_mut().push(info);
        Ok(true)
    }

    /// The signals kept from delivery while we held the tracee (raw siginfos), for the caller
    /// to queue again.
    pub fn take_deferred(&self) -> Vec<[u8; 128]> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }

    /// Adopts a child that called PTRACE_TRACEME and stopped itself with SIGSTOP. The child
    /// is killed if we die (PTRACE_O_EXITKILL).
    pub fn adopt_child(pid: i32) -> Result<Tracee, Error> {
        let t = Tracee::attached(pid);
        let status = sys::waitpid(pid, libc::__WALL).map_err(sys_err(pid, "waitpid"))?;
        if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGSTOP {
            return Err(Error::UnexpectedStop {
                pid,
                op: "adopting the puppet",
                status,
            });
        }
        sys::set_options(pid, Self::PUPPET_OPTIONS).map_err(sys_err(pid, "PTRACE_SETOPTIONS"))?;
        Ok(t)
    }

    /// A puppet's options: it dies with us, what it creates is ours, seccomp spares us.
    const PUPPET_OPTIONS: libc::c_int = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_EXITKILL
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEFORK
        | sys::PTRACE_O_SUSPEND_SECCOMP;

    fn attached(pid: i32) -> Tracee {
        Tracee {
            pid,
            attached: true,
            deferred: Default::default(),
            new_child: Default::default(),
        }
    }

    /// Seizes a task that is about to exec (a container's init waiting to be started), to
    /// take it as a puppet right after its exec: see [`Tracee::wait_exec`]. It is not stopped.
    pub fn seize_before_exec(pid: i32) -> Result<Tracee, Error> {
        let options = libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_EXITKILL
            | libc::PTRACE_O_TRACEEXEC
            | sys::PTRACE_O_SUSPEND_SECCOMP;
        sys::seize(pid, options).map_err(sys_err(pid, "PTRACE_SEIZE"))?;
        Ok(Tracee::attached(pid))
    }

    /// Whether the task seized by [`Tracee::seize_before_exec`] has exec'd (without waiting),
    /// passing on the signals it gets until then; once it has, it stays stopped, a puppet
    /// from here on. Call it until it says so (the exec happens when someone else starts it).
    pub fn exec_done(&self) -> Result<bool, Error> {
        loop {
            let Some(status) = sys::waitpid_nohang(self.pid).map_err(sys_err(self.pid, "waitpid"))? else {
                return Ok(false);
            };
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(Error::Exited {
                    pid: self.pid,
                    op: "waiting for its exec",
                    status,
                });
            }
            if status >> 8 == libc::SIGTRAP | (libc::PTRACE_EVENT_EXEC << 8) {
                // Still inside execve, whose return value would overwrite an injected
                // syscall's number: on to its syscall-exit stop.
                sys::cont_syscall(self.pid, 0).map_err(sys_err(self.pid, "PTRACE_SYSCALL"))?;
                let status = self.wait_stop("leaving its exec")?;
                if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP | 0x80 {
                    return Err(Error::UnexpectedStop {
                        pid: self.pid,
                        op: "leaving its exec",
                        status,
                    });
                }
                sys::set_options(self.pid, Self::PUPPET_OPTIONS).map_err(sys_err(self.pid, "PTRACE_SETOPTIONS"))?;
                return Ok(true);
            }
            let pass = if libc::WIFSTOPPED(status) && status >> 16 == 0 {
                libc::WSTOPSIG(status)
            } else {
                0
            };
            sys::cont(self.pid, pass).map_err(sys_err(self.pid, "PTRACE_CONT"))?;
        }
    }

    /// The pid, in our pid namespace, of the process or thread it last created (the fork or
    /// clone event of an injected syscall).
    pub fn take_new_child(&self) -> Option<i32> {
        self.new_child.take()
    }

    /// Takes a thread the adopted puppet just created with clone (PTRACE_O_TRACECLONE attaches
    /// it; it starts in a stop).
    /// Takes over a thread or process that a tracee just created (auto-attached by
    /// PTRACE_O_TRACECLONE/TRACEFORK): waits for its first stop.
    pub fn adopt_thread(tid: i32) -> Result<Tracee, Error> {
        let t = Tracee::attached(tid);
        let status = t.wait_stop("adopting a new thread")?;
        if !libc::WIFSTOPPED(status) {
            return Err(Error::UnexpectedStop {
                pid: tid,
                op: "adopting a new thread",
                status,
            });
        }
        Ok(t)
    }

    /// The task's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the next stop; exits and kills are errors.
    fn wait_stop(&self, op: &'static str) -> Result<i32, Error> {
        let status = sys::waitpid(self.pid, libc::__WALL).map_err(sys_err(self.pid, "waitpid"))?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Err(Error::Exited {
                pid: self.pid,
                op,
                status,
            });
        }
        Ok(status)
    }

    /// General registers.
    pub fn regs(&self) -> Result<Regs, Error> {
        sys::get_regs(self.pid).map_err(sys_err(self.pid, "PTRACE_GETREGSET(NT_PRSTATUS)"))
    }

    /// Sets the general registers.
    pub fn set_regs(&self, regs: &Regs) -> Result<(), Error> {
        sys::set_regs(self.pid, regs).map_err(sys_err(self.pid, "PTRACE_SETREGSET(NT_PRSTATUS)"))
    }

    /// The XSAVE area (standard format).
    pub fn xstate(&self) -> Result<Vec<u8>, Error> {
        sys::get_xstate(self.pid).map_err(sys_err(self.pid, "PTRACE_GETREGSET(NT_X86_XSTATE)"))
    }

    /// Sets the XSAVE area.
    pub fn set_xstate(&self, xstate: &[u8]) -> Result<(), Error> {
        sys::set_xstate(self.pid, xstate).map_err(sys_err(self.pid, "PTRACE_SETREGSET(NT_X86_XSTATE)"))
    }

    /// Blocked signals.
    pub fn sigmask(&self) -> Result<u64, Error> {
        sys::get_sigmask(self.pid).map_err(sys_err(self.pid, "PTRACE_GETSIGMASK"))
    }

    /// Sets the blocked signals.
    pub fn set_sigmask(&self, mask: u64) -> Result<(), Error> {
        sys::set_sigmask(self.pid, mask).map_err(sys_err(self.pid, "PTRACE_SETSIGMASK"))
    }

    /// The registered rseq area, if any.
    /// The seccomp filters of this thread, oldest first (raw BPF programs).
    pub fn seccomp_filters(&self) -> Result<Vec<Vec<u8>>, Error> {
        sys::seccomp_filters(self.pid).map_err(sys_err(self.pid, "PTRACE_SECCOMP_GET_FILTER"))
    }

    /// The signals queued for this thread (or, with `shared`, for its whole process), as raw
    /// 128-byte siginfos; they stay queued.
    pub fn pending_signals(&self, shared: bool) -> Result<Vec<[u8; 128]>, Error> {
        sys::peek_siginfo(self.pid, shared).map_err(sys_err(self.pid, "PTRACE_PEEKSIGINFO"))
    }

    pub fn rseq(&self) -> Result<Option<RseqConfig>, Error> {
        sys::get_rseq_config(self.pid).map_err(sys_err(self.pid, "PTRACE_GET_RSEQ_CONFIGURATION"))
    }

    /// Lets the task go, untraced (PTRACE_DETACH).
    pub fn detach(mut self) -> Result<(), Error> {
        self.attached = false;
        sys::detach(self.pid, 0).map_err(sys_err(self.pid, "PTRACE_DETACH"))
    }

    /// Kills the task and reaps it if it is our child.
    pub fn kill(mut self) {
        self.attached = false;
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::waitpid(self.pid, libc::__WALL);
    }

    /// Waits for the end of a task we killed (SIGKILL) while tracing it, which is reported to
    /// us first: its parent (or, for a thread, its process) is told only after.
    pub fn reap_killed(mut self) {
        self.attached = false;
        loop {
            match sys::waitpid(self.pid, libc::__WALL) {
                Ok(status) if libc::WIFSTOPPED(status) => {
                    // A stop that was under way: on to the kill.
                    let _ = sys::cont(self.pid, 0);
                }
                _ => return,
            }
        }
    }

    /// Forgets the task without detaching (it was killed or has exited).
    /// Ends the tracee by signal `sig` (whose disposition must be the default one): unblocks
    /// it, sends it, delivers it at the signal-delivery stop; returns the wait status.
    pub fn die_by(mut self, sig: i32) -> Result<i32, Error> {
        self.attached = false;
        let pid = self.pid;
        self.set_sigmask(0)?;
        sys::kill(pid, sig).map_err(sys_err(pid, "kill"))?;
        let mut deliver = 0;
        loop {
            sys::cont(pid, deliver).map_err(sys_err(pid, "PTRACE_CONT"))?;
            let status = sys::waitpid(pid, libc::__WALL).map_err(sys_err(pid, "waitpid"))?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(status);
            }
            deliver = if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == sig {
                sig
            } else {
                0
            };
        }
    }

    pub fn forget(mut self) {
        self.attached = false;
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if self.attached {
            // A signal kept from delivery is delivered as we let go (the others stay lost only
            // if the tracee had several in flight, which ptrace cannot hand back).
            let sig = self
                .deferred
                .borrow()
                .first()
                .map_or(0, |i| i32::from_le_bytes([i[0], i[1], i[2], i[3]]));
            let _ = sys::detach(self.pid, sig);
        }
    }
}

/// `syscall; int3`.
pub const GADGET: [u8; 3] = [0x0f, 0x05, 0xcc];

/// Runs single system calls inside a stopped tracee.
///
/// While it lives, the tracee's signals are blocked and (for [`Injector::at_ip`]) the code
/// under its instruction pointer is patched; [`Injector::finish`] (or drop) puts back the
/// code, the registers and the signal mask exactly as they were.
pub struct Injector<'t> {
    t: &'t Tracee,
    gadget: u64,
    patched: Option<(u64, u64)>,
    saved_regs: Regs,
    saved_mask: u64,
    done: bool,
}

impl<'t> Injector<'t> {
    /// Patches `syscall; int3` over the instruction at the tracee's ip.
    pub fn at_ip(t: &'t Tracee) -> Result<Injector<'t>, Error> {
        let regs = t.regs()?;
        let ip = regs.rip;
        let orig = sys::peek(t.pid, ip).map_err(sys_err(t.pid, "PTRACE_PEEKDATA"))?;
        let mut word = orig.to_le_bytes();
        word[..GADGET.len()].copy_from_slice(&GADGET);
        let inj = Self::new(t, ip, regs)?;
        sys::poke(t.pid, ip, u64::from_le_bytes(word)).map_err(sys_err(t.pid, "PTRACE_POKEDATA"))?;
        Ok(Injector {
            patched: Some((ip, orig)),
            ..inj
        })
    }

    /// Uses a `syscall; int3` already present at `gadget`.
    pub fn at(t: &'t Tracee, gadget: u64) -> Result<Injector<'t>, Error> {
        let regs = t.regs()?;
        Self::new(t, gadget, regs)
    }

    fn new(t: &'t Tracee, gadget: u64, saved_regs: Regs) -> Result<Injector<'t>, Error> {
        let saved_mask = t.sigmask()?;
        t.set_sigmask(!0)?;
        Ok(Injector {
            t,
            gadget,
            patched: None,
            saved_regs,
            saved_mask,
            done: false,
        })
    }

    /// The registers the tracee had when injection started.
    pub fn saved_regs(&self) -> &Regs {
        &self.saved_regs
    }

    /// The signal mask the tracee had when injection started.
    pub fn saved_mask(&self) -> u64 {
        self.saved_mask
    }

    /// Moves the gadget (after a scratch page with a gadget was mapped in the tracee).
    pub fn use_gadget(&mut self, gadget: u64) {
        self.gadget = gadget;
    }

    fn load(&self, nr: i64, args: [u64; 6]) -> Result<(), Error> {
        let mut r = self.saved_regs;
        r.rip = self.gadget;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        self.t.set_regs(&r)
    }

    /// The tracee it injects into.
    pub fn tracee(&self) -> &'t Tracee {
        self.t
    }

    /// Runs syscall `nr` with `args`; returns the raw result (negative errno on failure).
    pub fn raw(&self, nr: i64, args: [u64; 6]) -> Result<i64, Error> {
        self.load(nr, args)?;
        let pid = self.t.pid;
        sys::cont(pid, 0).map_err(sys_err(pid, "PTRACE_CONT"))?;
        let mut status = self.t.wait_stop("an injected syscall")?;
        // A clone reports a PTRACE_EVENT_CLONE stop before it returns, and a signal taken
        // before the mask was set stops for delivery (kept, to be queued again): go on to
        // our int3.
        while libc::WIFSTOPPED(status) && (status >> 16 != 0 || self.t.absorb(status)?) {
            let event = status >> 16;
            if [
                libc::PTRACE_EVENT_FORK,
                libc::PTRACE_EVENT_CLONE,
                libc::PTRACE_EVENT_VFORK,
            ]
            .contains(&event)
            {
                let child = sys::event_msg(pid).map_err(sys_err(pid, "PTRACE_GETEVENTMSG"))?;
                self.t.new_child.set(Some(child as i32));
            }
            sys::cont(pid, 0).map_err(sys_err(pid, "PTRACE_CONT"))?;
            status = self.t.wait_stop("an injected syscall")?;
        }
        if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP {
            return Err(Error::UnexpectedStop {
                pid,
                op: "an injected syscall",
                status,
            });
        }
        Ok(self.t.regs()?.rax as i64)
    }

    /// Runs syscall `nr` (called `name` in errors); a negative result is an error.
    pub fn call(&self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, Error> {
        let ret = self.raw(nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(Error::Syscall {
                pid: self.t.pid,
                name,
                source: io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// Runs syscall `nr` and leaves the tracee stopped at its syscall-exit stop (used for the
    /// last call, which unmaps the gadget itself). Consumes the injector without restoring.
    pub fn call_and_stop_at_exit(mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<i64, Error> {
        self.done = true;
        self.load(nr, args)?;
        let pid = self.t.pid;
        for stop in ["syscall entry", "syscall exit"] {
            sys::cont_syscall(pid, 0).map_err(sys_err(pid, "PTRACE_SYSCALL"))?;
            let mut status = self.t.wait_stop(stop)?;
            while self.t.absorb(status)? {
                sys::cont_syscall(pid, 0).map_err(sys_err(pid, "PTRACE_SYSCALL"))?;
                status = self.t.wait_stop(stop)?;
            }
            if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != (libc::SIGTRAP | 0x80) {
                return Err(Error::UnexpectedStop { pid, op: name, status });
            }
        }
        Ok(self.t.regs()?.rax as i64)
    }

    /// Runs syscall `nr`, which ends the tracee (exit_group), and waits for its end; returns
    /// the wait status.
    pub fn call_and_exit(mut self, nr: i64, args: [u64; 6]) -> Result<i32, Error> {
        self.done = true;
        self.load(nr, args)?;
        let pid = self.t.pid;
        loop {
            sys::cont(pid, 0).map_err(sys_err(pid, "PTRACE_CONT"))?;
            let status = sys::waitpid(pid, libc::__WALL).map_err(sys_err(pid, "waitpid"))?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(status);
            }
        }
    }

    /// Ends injection without putting anything back (the caller has set the final state).
    pub fn release(mut self) {
        self.done = true;
    }

    /// Puts back the patched code, the registers and the signal mask.
    pub fn finish(mut self) -> Result<(), Error> {
        self.done = true;
        self.restore()
    }

    fn restore(&self) -> Result<(), Error> {
        let pid = self.t.pid;
        if let Some((ip, word)) = self.patched {
            sys::poke(pid, ip, word).map_err(sys_err(pid, "PTRACE_POKEDATA"))?;
        }
        self.t.set_regs(&self.saved_regs)?;
        self.t.set_sigmask(self.saved_mask)
    }
}

impl Drop for Injector<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.restore();
        }
    }
}

/// Keeps the caller and a tracee on the caller's current CPU; puts both back on drop.
pub struct Pinned {
    pid: i32,
    mine: Option<sys::CpuMask>,
    theirs: Option<sys::CpuMask>,
}

impl Pinned {
    /// Pins the caller and `pid` together (best effort: failures only cost speed).
    pub fn new(pid: i32) -> Pinned {
        let cpu = sys::current_cpu();
        let one = sys::single_cpu(cpu);
        let mine = sys::get_affinity(0).ok().filter(|_| sys::set_affinity(0, &one).is_ok());
        let theirs = sys::get_affinity(pid)
            .ok()
            .filter(|_| sys::set_affinity(pid, &one).is_ok());
        Pinned { pid, mine, theirs }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(set) = &self.theirs {
            let _ = sys::set_affinity(self.pid, set);
        }
        if let Some(set) = &self.mine {
            let _ = sys::set_affinity(0, set);
        }
    }
}
