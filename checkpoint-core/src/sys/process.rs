//! Processes: creation at a chosen pid (clone3 with set_tid), waiting, signals, the child
//! subreaper, kcmp, robust lists, securebits.

use std::io;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use super::cvt;

/// The robust futex list head and length of `pid` (get_robust_list; not in nix).
pub fn robust_list(pid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: head and len point to live locals of the sizes the kernel writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            pid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((head, len as u64))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 (a fork: no CLONE_VM) asking for pid `tid`; returns the raw result (0 in the child).
/// Raw: nix has no clone3, and its `clone` cannot ask for a pid.
///
/// # Safety
/// In the child, which shares nothing with us but a copy of our memory, the caller may only
/// make raw syscalls and must never return into code that assumes a single owner of our state.
pub(super) unsafe fn clone3_with_tid(tid: i32) -> libc::c_long {
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: &tid as *const i32 as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: args and tid live until the syscall returns (in both processes).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// What the puppet child does before it stops for the controller.
#[derive(Clone, Copy, Debug)]
pub struct PuppetSetup {
    /// Call setsid() (the task leads its own session).
    pub setsid: bool,
    /// Call setpgid(0, 0) (the task leads its own process group).
    pub setpgid: bool,
    /// Enter a new UTS namespace with this host name and domain name (NUL-padded).
    pub uts: Option<([u8; 65], [u8; 65])>,
}

/// Forks a puppet with pid `pid` (clone3 set_tid). The child only makes raw syscalls (no
/// libc or nix wrappers: it is a bare copy of us): it applies `setup`, asks to be traced,
/// and stops itself with SIGSTOP. Returns the child's pid.
pub fn fork_puppet(pid: i32, setup: PuppetSetup) -> io::Result<i32> {
    // SAFETY: the child below runs only raw syscalls and never returns into Rust code.
    let ret = unsafe { clone3_with_tid(pid) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        // SAFETY: raw syscalls in the child, with integer arguments or a pointer to a local
        // array; it never returns.
        unsafe {
            // Every signal to its default action: the restore then sets only what differs.
            let dfl = [0u64; 4]; // handler SIG_DFL, flags, restorer, mask
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0, 8);
                }
            }
            if let Some((host, domain)) = &setup.uts {
                let len = |b: &[u8; 65]| b.iter().position(|&c| c == 0).unwrap_or(64);
                libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS);
                libc::syscall(libc::SYS_sethostname, host.as_ptr(), len(host));
                libc::syscall(libc::SYS_setdomainname, domain.as_ptr(), len(domain));
            }
            if setup.setsid {
                libc::syscall(libc::SYS_setsid);
            } else if setup.setpgid {
                libc::syscall(libc::SYS_setpgid, 0, 0);
            }
            libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
            let me = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
            loop {
                libc::syscall(libc::SYS_exit_group, 127);
            }
        }
    }
    Ok(ret as i32)
}

/// Makes the caller a child subreaper (orphans below it are re-parented to it).
pub fn set_child_subreaper() -> io::Result<()> {
    Ok(nix::sys::prctl::set_child_subreaper(true)?)
}

/// waitpid on `pid` for its exit; returns the raw status.
pub fn wait_exit(pid: i32) -> io::Result<i32> {
    parasite::sys::waitpid(pid, 0)
}

/// Reaps `pid` (or any child, with -1) if it has ended, without waiting: its raw status.
pub fn reap_if_ended(pid: i32) -> io::Result<Option<i32>> {
    parasite::sys::waitpid_nohang(pid)
}

/// kill(2) on a pid.
pub fn send_signal(pid: i32, sig: i32) -> io::Result<()> {
    parasite::sys::kill(pid, sig)
}

/// Whether fd `a` of `pid_a` and fd `b` of `pid_b` are the same open file (kcmp KCMP_FILE;
/// not in nix).
pub fn same_file(pid_a: i32, a: i32, pid_b: i32, b: i32) -> io::Result<bool> {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid_a, pid_b, KCMP_FILE, a, b) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret == 0)
}

/// Whether fd `fd` of `pid` is the file that epoll fd `epfd` of the same task watches as its
/// `toff`-th registration under fd number `tfd` (kcmp KCMP_EPOLL_TFD; not in nix).
pub fn epoll_watches(pid: i32, fd: i32, epfd: i32, tfd: u32, toff: u32) -> io::Result<bool> {
    const KCMP_EPOLL_TFD: libc::c_int = 7;
    // struct kcmp_epoll_slot: efd, tfd, toff.
    let slot: [u32; 3] = [epfd as u32, tfd, toff];
    // SAFETY: `slot` is a live kcmp_epoll_slot the kernel only reads.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fd, slot.as_ptr()) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        // EBADF: `fd` is not open; ENOENT: no such registration.
        return match e.raw_os_error() {
            Some(libc::EBADF) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(ret == 0)
}

/// Our own securebits (PR_GET_SECUREBITS; nix's prctl module has no securebits).
pub fn securebits() -> io::Result<u32> {
    // SAFETY: plain integer arguments; the result is the bits.
    cvt(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) }).map(|b| b as u32)
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the caller while it lives: a dump interrupted
/// between two ptrace requests could leave a patched instruction in its target, so it finishes
/// (or fails and cleans up) first. The previous mask is put back on drop.
pub struct HoldSignals {
    old: SigSet,
}

impl HoldSignals {
    /// Starts holding the signals.
    pub fn new() -> HoldSignals {
        let mut set = SigSet::empty();
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            set.add(sig);
        }
        let mut old = SigSet::empty();
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
        HoldSignals { old }
    }
}

impl Default for HoldSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}
