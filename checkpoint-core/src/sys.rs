//! The system calls of the engine that are not ptrace (that lives in `parasite::sys`): process
//! creation at a chosen pid, robust-list and CPU feature queries. The only module of this
//! crate with `unsafe`.

use std::io;

/// Offset and size of XSAVE component `bit` in the standard (non-compacted) format.
pub fn xsave_component(bit: u32) -> Option<(usize, usize)> {
    // SAFETY: CPUID is available on every x86_64 CPU; leaf 0xD sub-leaf n is defined for n >= 2.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(0xd, bit) };
    (r.eax != 0).then_some((r.ebx as usize, r.eax as usize))
}

/// The robust futex list head and length of `pid` (get_robust_list).
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

/// What the puppet child does before it stops for the controller.
#[derive(Clone, Copy, Debug)]
pub struct PuppetSetup {
    /// Call setsid() (the task leads its own session).
    pub setsid: bool,
    /// Call setpgid(0, 0) (the task leads its own process group).
    pub setpgid: bool,
}

/// Forks a puppet with pid `pid` (clone3 set_tid). The child only makes raw syscalls: it
/// applies `setup`, asks to be traced, and stops itself with SIGSTOP. Returns the child's pid.
pub fn fork_puppet(pid: i32, setup: PuppetSetup) -> io::Result<i32> {
    let tid = pid;
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: &tid as *const i32 as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of our memory.
    // The child below runs only raw syscalls and never returns into Rust code.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        // SAFETY: raw syscalls with integer arguments in the child; it never returns.
        unsafe {
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
    // SAFETY: plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// waitpid on `pid` for its exit; returns the raw status.
pub fn wait_exit(pid: i32) -> io::Result<i32> {
    parasite::sys::waitpid(pid, 0)
}

/// Whether fd `a` of `pid_a` and fd `b` of `pid_b` are the same open file (kcmp KCMP_FILE).
pub fn same_file(pid_a: i32, a: i32, pid_b: i32, b: i32) -> io::Result<bool> {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid_a, pid_b, KCMP_FILE, a, b) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret == 0)
}

/// Whether our fd `fd` is a terminal.
pub fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the fd number.
    unsafe { libc::isatty(fd) == 1 }
}

/// A close-on-exec duplicate of our fd `fd`.
pub fn dup_cloexec(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC takes an fd number and returns a new fd or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// kill(2) on a pid.
pub fn send_signal(pid: i32, sig: i32) -> io::Result<()> {
    parasite::sys::kill(pid, sig)
}
