//! The raw system calls behind the puppet: ptrace requests, waitpid, pidfds, cross-process
//! memory access, CPU affinity. The only module of this crate with `unsafe`.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// x86_64 general registers, in the kernel's `user_regs_struct` layout.
pub type Regs = libc::user_regs_struct;

/// The rseq registration of a thread (PTRACE_GET_RSEQ_CONFIGURATION).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

const NT_PRSTATUS: libc::c_int = 1;
const NT_X86_XSTATE: libc::c_int = 0x202;
/// PTRACE_O_SUSPEND_SECCOMP: injected syscalls bypass the task's own seccomp filters.
pub const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 1 << 21;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: every caller passes a request whose addr/data are either plain integers or
    // pointers to live buffers of the size the request expects.
    check(unsafe { libc::ptrace(req, pid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

/// PTRACE_SEIZE with `options`.
pub fn seize(pid: i32, options: libc::c_int) -> io::Result<()> {
    ptrace(libc::PTRACE_SEIZE, pid, 0, options as usize).map(drop)
}

/// PTRACE_GETEVENTMSG: the pid of a new child or thread at a fork/clone event stop.
pub fn event_msg(pid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, std::ptr::addr_of_mut!(msg) as usize)?;
    Ok(msg)
}

/// PTRACE_INTERRUPT.
pub fn interrupt(pid: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// PTRACE_SETOPTIONS.
pub fn set_options(pid: i32, options: libc::c_int) -> io::Result<()> {
    ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options as usize).map(drop)
}

/// PTRACE_CONT delivering `sig` (0: none).
pub fn cont(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, pid, 0, sig as usize).map(drop)
}

/// PTRACE_SYSCALL: continue to the next syscall entry or exit.
pub fn cont_syscall(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_SYSCALL, pid, 0, sig as usize).map(drop)
}

/// PTRACE_DETACH delivering `sig` (0: none).
pub fn detach(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

/// General registers (PTRACE_GETREGSET NT_PRSTATUS).
pub fn get_regs(pid: i32) -> io::Result<Regs> {
    let mut regs = MaybeUninit::<Regs>::zeroed();
    let mut iov = libc::iovec {
        iov_base: regs.as_mut_ptr().cast(),
        iov_len: size_of::<Regs>(),
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        pid,
        NT_PRSTATUS as usize,
        &mut iov as *mut libc::iovec as usize,
    )?;
    // SAFETY: zero-initialised plain-old-data, filled by the kernel.
    Ok(unsafe { regs.assume_init() })
}

/// Sets the general registers.
pub fn set_regs(pid: i32, regs: &Regs) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: (regs as *const Regs).cast_mut().cast(),
        iov_len: size_of::<Regs>(),
    };
    ptrace(
        libc::PTRACE_SETREGSET,
        pid,
        NT_PRSTATUS as usize,
        &mut iov as *mut libc::iovec as usize,
    )
    .map(drop)
}

/// The XSAVE area (legacy FXSAVE + header + extended components, standard format).
pub fn get_xstate(pid: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        pid,
        NT_X86_XSTATE as usize,
        &mut iov as *mut libc::iovec as usize,
    )?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Sets the XSAVE area.
pub fn set_xstate(pid: i32, xstate: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr().cast_mut().cast(),
        iov_len: xstate.len(),
    };
    ptrace(
        libc::PTRACE_SETREGSET,
        pid,
        NT_X86_XSTATE as usize,
        &mut iov as *mut libc::iovec as usize,
    )
    .map(drop)
}

/// The blocked-signal mask of a stopped thread.
pub fn get_sigmask(pid: i32) -> io::Result<u64> {
    let mut mask = 0u64;
    ptrace(
        libc::PTRACE_GETSIGMASK,
        pid,
        size_of::<u64>(),
        &mut mask as *mut u64 as usize,
    )?;
    Ok(mask)
}

/// Sets the blocked-signal mask of a stopped thread.
pub fn set_sigmask(pid: i32, mask: u64) -> io::Result<()> {
    ptrace(
        libc::PTRACE_SETSIGMASK,
        pid,
        size_of::<u64>(),
        &mask as *const u64 as usize,
    )
    .map(drop)
}

/// The siginfo of the signal a thread stopped to deliver (PTRACE_GETSIGINFO).
pub fn get_siginfo(pid: i32) -> io::Result<[u8; 128]> {
    let mut info = [0u8; 128];
    ptrace(libc::PTRACE_GETSIGINFO, pid, 0, info.as_mut_ptr() as usize)?;
    Ok(info)
}

/// The queued siginfos (128 bytes each) of a stopped thread: its own, or with `shared` the
/// process-wide queue; the signals stay queued.
pub fn peek_siginfo(pid: i32, shared: bool) -> io::Result<Vec<[u8; 128]>> {
    const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
    const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
    #[repr(C)]
    struct PeekArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let mut out = Vec::new();
    let mut buf = vec![[0u8; 128]; 32];
    loop {
        let args = PeekArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: buf.len() as i32,
        };
        let n = ptrace(
            PTRACE_PEEKSIGINFO,
            pid,
            &args as *const PeekArgs as usize,
            buf.as_mut_ptr() as usize,
        )?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// The seccomp filters of a stopped thread, oldest first (the kernel counts from the first
/// installed), each as raw `struct sock_filter`s.
pub fn seccomp_filters(pid: i32) -> io::Result<Vec<Vec<u8>>> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    let mut out = Vec::new();
    loop {
        let n = match ptrace(PTRACE_SECCOMP_GET_FILTER, pid, out.len(), 0) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            // EINVAL: the thread has no filter (mode 0 or strict).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && out.is_empty() => return Ok(out),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n * 8];
        ptrace(PTRACE_SECCOMP_GET_FILTER, pid, out.len(), buf.as_mut_ptr() as usize)?;
        out.push(buf);
    }
}

/// The rseq registration of a stopped thread, `None` if it has none.
pub fn get_rseq_config(pid: i32) -> io::Result<Option<RseqConfig>> {
    let mut conf = RseqConfig::default();
    ptrace(
        libc::PTRACE_GET_RSEQ_CONFIGURATION,
        pid,
        size_of::<RseqConfig>(),
        &mut conf as *mut RseqConfig as usize,
    )?;
    Ok((conf.rseq_abi_pointer != 0).then_some(conf))
}

/// Reads one word of the tracee's memory.
pub fn peek(pid: i32, addr: u64) -> io::Result<u64> {
    // PEEKDATA returns the word itself; -1 is a valid word, so errno tells errors apart.
    // SAFETY: errno is thread-local; resetting it is always sound.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: PEEKDATA takes an address in the tracee and no buffer of ours.
    let word = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, pid, addr as *mut libc::c_void, 0usize) };
    let err = io::Error::last_os_error();
    if word == -1 && err.raw_os_error() != Some(0) {
        return Err(err);
    }
    Ok(word as u64)
}

/// Writes one word of the tracee's memory (works on read-only text).
pub fn poke(pid: i32, addr: u64, word: u64) -> io::Result<()> {
    ptrace(libc::PTRACE_POKEDATA, pid, addr as usize, word as usize).map(drop)
}

/// waitpid with `flags`; returns the raw status.
pub fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status points to a live i32.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret >= 0 {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// waitpid(WNOHANG | __WALL): the status if `pid` changed state, `None` if not yet.
pub fn waitpid_nohang(pid: i32) -> io::Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: status points to a live i32.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    match ret {
        0 => Ok(None),
        r if r > 0 => Ok(Some(status)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_getfd(2): a duplicate of another process's fd.
pub fn pidfd_getfd(pidfd: RawFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) })?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// process_vm_readv of one remote range into `buf`; returns the bytes read.
pub fn read_remote(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local points to `buf`, which outlives the call; remote is only an address.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// process_vm_writev of `buf` to one remote range; returns the bytes written.
pub fn write_remote(pid: i32, addr: u64, buf: &[u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local points to `buf`, which outlives the call; remote is only an address.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// The CPUs `pid` (0: the caller) may run on.
pub fn get_affinity(pid: i32) -> io::Result<libc::cpu_set_t> {
    let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: set points to a live cpu_set_t of the size passed.
    check(unsafe { libc::sched_getaffinity(pid, size_of::<libc::cpu_set_t>(), set.as_mut_ptr()) }.into())?;
    // SAFETY: zero-initialised plain-old-data, filled by the kernel.
    Ok(unsafe { set.assume_init() })
}

/// Sets the CPUs `pid` (0: the caller) may run on.
pub fn set_affinity(pid: i32, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: set points to a live cpu_set_t of the size passed.
    check(unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), set) }.into()).map(drop)
}

/// A set holding only `cpu`.
pub fn single_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain-old-data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes inside `set`, and `cpu` is below CPU_SETSIZE (checked by caller).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// The CPU the caller runs on now.
pub fn current_cpu() -> usize {
    // SAFETY: no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).unwrap_or(0)
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// All-zero registers.
pub fn zero_regs() -> Regs {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// process_vm_readv of several remote ranges into several local slices (same total length);
/// returns the bytes read.
pub fn read_remote_iov(pid: i32, local: &mut [&mut [u8]], remote: &[(u64, usize)]) -> io::Result<usize> {
    let liov: Vec<libc::iovec> = local
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let riov: Vec<libc::iovec> = remote
        .iter()
        .map(|&(a, l)| libc::iovec {
            iov_base: a as *mut libc::c_void,
            iov_len: l,
        })
        .collect();
    // SAFETY: every local iovec points into a live mutable slice that outlives the call; remote
    // iovecs are only addresses in the other process.
    let n = unsafe {
        libc::process_vm_readv(
            pid,
            liov.as_ptr(),
            liov.len() as libc::c_ulong,
            riov.as_ptr(),
            riov.len() as libc::c_ulong,
            0,
        )
    };
    check(n as libc::c_long).map(|n| n as usize)
}
