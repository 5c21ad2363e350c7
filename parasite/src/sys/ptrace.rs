//! ptrace requests: nix's `sys::ptrace` where it has the request, raw `libc::ptrace` for
//! PTRACE_GETSIGMASK/SETSIGMASK, PEEKSIGINFO, SECCOMP_GET_FILTER, GET_RSEQ_CONFIGURATION,
//! GETREGSET/SETREGSET of NT_X86_XSTATE (nix 0.31 has none of them), and for resuming with a
//! real-time signal.

use std::io;
use std::mem::size_of;

use nix::sys::ptrace::{self, regset, Options};

use super::{check, nix_signal, pid as npid};

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

const NT_X86_XSTATE: libc::c_int = 0x202;
/// PTRACE_O_SUSPEND_SECCOMP: injected syscalls bypass the task's own seccomp filters.
pub const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 1 << 21;

/// A raw ptrace request, for what nix lacks.
fn raw(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: every caller passes a request whose addr/data are either plain integers or
    // pointers to live buffers of the size the request expects.
    check(unsafe { libc::ptrace(req, pid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

/// `options` as nix's flags, keeping bits it has no name for (PTRACE_O_SUSPEND_SECCOMP).
fn options(options: libc::c_int) -> Options {
    Options::from_bits_retain(options)
}

/// PTRACE_SEIZE with `options`.
pub fn seize(pid: i32, opts: libc::c_int) -> io::Result<()> {
    Ok(ptrace::seize(npid(pid), options(opts))?)
}

/// PTRACE_GETEVENTMSG: the pid of a new child or thread at a fork/clone event stop.
pub fn event_msg(pid: i32) -> io::Result<u64> {
    Ok(ptrace::getevent(npid(pid))? as u64)
}

/// PTRACE_INTERRUPT.
pub fn interrupt(pid: i32) -> io::Result<()> {
    Ok(ptrace::interrupt(npid(pid))?)
}

/// PTRACE_SETOPTIONS.
pub fn set_options(pid: i32, opts: libc::c_int) -> io::Result<()> {
    Ok(ptrace::setoptions(npid(pid), options(opts))?)
}

/// PTRACE_CONT delivering `sig` (0: none).
pub fn cont(pid: i32, sig: i32) -> io::Result<()> {
    match nix_signal(sig) {
        Some(s) => Ok(ptrace::cont(npid(pid), s)?),
        None => raw(libc::PTRACE_CONT, pid, 0, sig as usize).map(drop),
    }
}

/// PTRACE_SYSCALL: continue to the next syscall entry or exit.
pub fn cont_syscall(pid: i32, sig: i32) -> io::Result<()> {
    match nix_signal(sig) {
        Some(s) => Ok(ptrace::syscall(npid(pid), s)?),
        None => raw(libc::PTRACE_SYSCALL, pid, 0, sig as usize).map(drop),
    }
}

/// PTRACE_DETACH delivering `sig` (0: none).
pub fn detach(pid: i32, sig: i32) -> io::Result<()> {
    match nix_signal(sig) {
        Some(s) => Ok(ptrace::detach(npid(pid), s)?),
        None => raw(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop),
    }
}

/// General registers (PTRACE_GETREGSET NT_PRSTATUS).
pub fn get_regs(pid: i32) -> io::Result<Regs> {
    Ok(ptrace::getregset::<regset::NT_PRSTATUS>(npid(pid))?)
}

/// Sets the general registers (PTRACE_SETREGSET NT_PRSTATUS).
pub fn set_regs(pid: i32, regs: &Regs) -> io::Result<()> {
    Ok(ptrace::setregset::<regset::NT_PRSTATUS>(npid(pid), *regs)?)
}

/// The XSAVE area (legacy FXSAVE + header + extended components, standard format).
pub fn get_xstate(pid: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    raw(
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
    raw(
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
    raw(
        libc::PTRACE_GETSIGMASK,
        pid,
        size_of::<u64>(),
        &mut mask as *mut u64 as usize,
    )?;
    Ok(mask)
}

/// Sets the blocked-signal mask of a stopped thread.
pub fn set_sigmask(pid: i32, mask: u64) -> io::Result<()> {
    raw(
        libc::PTRACE_SETSIGMASK,
        pid,
        size_of::<u64>(),
        &mask as *const u64 as usize,
    )
    .map(drop)
}

/// The siginfo of the signal a thread stopped to deliver (PTRACE_GETSIGINFO), as raw bytes.
pub fn get_siginfo(pid: i32) -> io::Result<[u8; 128]> {
    let info = ptrace::getsiginfo(npid(pid))?;
    // SAFETY: siginfo_t is 128 bytes of plain data (transmute checks the size); every byte
    // pattern is a valid [u8; 128].
    Ok(unsafe { std::mem::transmute::<libc::siginfo_t, [u8; 128]>(info) })
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
        let n = raw(
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
        let n = match raw(PTRACE_SECCOMP_GET_FILTER, pid, out.len(), 0) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            // EINVAL: the thread has no filter (mode 0 or strict).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && out.is_empty() => return Ok(out),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n * 8];
        raw(PTRACE_SECCOMP_GET_FILTER, pid, out.len(), buf.as_mut_ptr() as usize)?;
        out.push(buf);
    }
}

/// The rseq registration of a stopped thread, `None` if it has none.
pub fn get_rseq_config(pid: i32) -> io::Result<Option<RseqConfig>> {
    let mut conf = RseqConfig::default();
    raw(
        libc::PTRACE_GET_RSEQ_CONFIGURATION,
        pid,
        size_of::<RseqConfig>(),
        &mut conf as *mut RseqConfig as usize,
    )?;
    Ok((conf.rseq_abi_pointer != 0).then_some(conf))
}

/// Reads one word of the tracee's memory (PTRACE_PEEKDATA).
pub fn peek(pid: i32, addr: u64) -> io::Result<u64> {
    Ok(ptrace::read(npid(pid), addr as ptrace::AddressType)? as u64)
}

/// Writes one word of the tracee's memory (works on read-only text).
pub fn poke(pid: i32, addr: u64, word: u64) -> io::Result<()> {
    Ok(ptrace::write(
        npid(pid),
        addr as ptrace::AddressType,
        word as libc::c_long,
    )?)
}

/// All-zero registers.
pub fn zero_regs() -> Regs {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}
