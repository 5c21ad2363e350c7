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

/// clone3 (a fork: no CLONE_VM) asking for pid `tid`; returns the raw result (0 in the child).
///
/// # Safety
/// In the child, which shares nothing with us but a copy of our memory, the caller may only
/// make raw syscalls and must never return into code that assumes a single owner of our state.
unsafe fn clone3_with_tid(tid: i32) -> libc::c_long {
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

/// Forks a puppet with pid `pid` (clone3 set_tid). The child only makes raw syscalls: it
/// applies `setup`, asks to be traced, and stops itself with SIGSTOP. Returns the child's pid.
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

/// Reaps `pid` (or any child, with -1) if it has ended, without waiting: its raw status.
pub fn reap_if_ended(pid: i32) -> io::Result<Option<i32>> {
    parasite::sys::waitpid_nohang(pid)
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

/// Raw syscall result of clone3 asking for pid 1 (which exists): EEXIST means set_tid works.
pub fn probe_clone3_set_tid() -> io::Result<()> {
    // SAFETY: pid 1 always exists, so the kernel refuses before creating anything (EEXIST),
    // or refuses the arguments outright on kernels without set_tid.
    let ret = unsafe { clone3_with_tid(1) };
    let err = io::Error::last_os_error();
    match (ret, err.raw_os_error()) {
        (r, Some(libc::EEXIST)) if r < 0 => Ok(()),
        (r, _) if r < 0 => Err(err),
        (0, _) => {
            // SAFETY: we are an unexpected child: leave at once.
            unsafe { libc::_exit(0) }
        }
        (child, _) => {
            let _ = wait_exit(child as i32);
            Err(io::Error::other("clone3 ignored set_tid"))
        }
    }
}

/// ioctl(PAGEMAP_SCAN) with no argument on our own pagemap: EFAULT means the ioctl exists.
pub fn probe_pagemap_scan() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
    let f = std::fs::File::open("/proc/self/pagemap")?;
    // SAFETY: a NULL argument makes the kernel fail with EFAULT before touching memory.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN, std::ptr::null_mut::<libc::c_void>()) };
    let err = io::Error::last_os_error();
    if ret < 0 && err.raw_os_error() == Some(libc::EFAULT) {
        Ok(())
    } else {
        Err(err)
    }
}

/// The userfaultfd features the kernel offers (UFFDIO_API).
pub fn userfaultfd_features() -> io::Result<u64> {
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    // SAFETY: plain integer flags.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut api = UffdioApi {
        api: 0xaa,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: api points to a live struct of the layout UFFDIO_API expects.
    let ret = unsafe { libc::ioctl(fd as i32, UFFDIO_API, &mut api as *mut UffdioApi) };
    let err = io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd as i32) };
    if ret < 0 {
        return Err(err);
    }
    Ok(api.features)
}

/// prctl(PR_TIMER_CREATE_RESTORE_IDS, GET): whether POSIX timers can be recreated with their ids.
pub fn probe_timer_restore_ids() -> io::Result<()> {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
    const GET: libc::c_ulong = 2;
    // SAFETY: plain integer arguments; GET only reports the current mode.
    let ret = unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, GET, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// syncfs(2) on the filesystem holding `f`.
pub fn syncfs(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is borrowed from a live File.
    if unsafe { libc::syncfs(f.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a new pseudo-terminal: returns the master and the slave's path (for tests and tools).
pub fn open_pty() -> io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")?;
    let unlock: libc::c_int = 0;
    let mut index: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int and TIOCGPTN writes an unsigned int, both live locals.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut index) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((master, std::path::PathBuf::from(format!("/dev/pts/{index}"))))
}

/// A shared, writable mapping of a range of a file (MAP_SHARED): writes land in the page cache.
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

impl SharedMap {
    /// Maps `len` bytes of `file` from `offset` (page aligned) for writing.
    pub fn new(file: &std::fs::File, offset: u64, len: usize) -> io::Result<SharedMap> {
        use std::os::fd::AsRawFd;
        let off = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh mapping chosen by the kernel; it aliases nothing we hold.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { ptr: ptr.cast(), len })
    }

    /// The mapped bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is our live mapping, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no slice of it outlives &mut borrows of self.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Drops our page-table entries for `buf`, part of a shared file mapping: the data stays in the
/// file (page cache), and our resident memory stays small.
pub fn release_mapped(buf: &mut [u8]) {
    // SAFETY: MADV_DONTNEED on a MAP_SHARED file range only unmaps pages; reading them again
    // faults the same file data back in.
    unsafe { libc::madvise(buf.as_mut_ptr().cast(), buf.len(), libc::MADV_DONTNEED) };
}

/// Reserves `len` bytes of `file` from `offset` (fallocate), so that writes through a mapping
/// cannot hit a full filesystem (which would be a SIGBUS, not an error). Filesystems without
/// fallocate are accepted as they are.
pub fn reserve(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: plain integer arguments on an fd borrowed from a live File.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, l) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether `file` lives on tmpfs.
pub fn is_tmpfs(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: st points to a live statfs the kernel fills.
    if unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return false;
    }
    // SAFETY: zero-initialised plain-old-data, filled by the kernel.
    unsafe { st.assume_init() }.f_type as libc::c_long == TMPFS_MAGIC
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the caller while it lives: a dump interrupted
/// between two ptrace requests could leave a patched instruction in its target, so it finishes
/// (or fails and cleans up) first. The previous mask is put back on drop.
pub struct HoldSignals {
    old: libc::sigset_t,
}

impl HoldSignals {
    /// Starts holding the signals.
    pub fn new() -> HoldSignals {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: both sets are live locals initialised by sigemptyset before use.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(set.as_mut_ptr(), sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
            HoldSignals { old: old.assume_init() }
        }
    }
}

impl Default for HoldSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new pipe (read end, write end), both close-on-exec, with room for `capacity` bytes
/// when given.
pub fn new_pipe(capacity: Option<u32>) -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fd numbers into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned these two new fds to us.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if let Some(cap) = capacity {
        // SAFETY: F_SETPIPE_SZ takes an integer; the fd is ours.
        cvt(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, cap as libc::c_int) })?;
    }
    Ok((r, w))
}

/// The bytes buffered in the pipe behind our fd `fd`, left where they are (tee), and the
/// pipe's capacity.
pub fn peek_pipe(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let cap = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })? as u32;
    let (r, w) = new_pipe(Some(cap))?;
    // SAFETY: tee between two pipe fds we hold; no memory is passed.
    let n = unsafe { libc::tee(fd.as_raw_fd(), w.as_raw_fd(), cap as usize, libc::SPLICE_F_NONBLOCK) };
    let n = match n {
        n if n >= 0 => n as usize,
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => 0,
        _ => return Err(io::Error::last_os_error()),
    };
    drop(w);
    let mut data = Vec::with_capacity(n);
    std::fs::File::from(r).read_to_end(&mut data)?;
    Ok((data, cap))
}

/// Sends our `fd` over the unix socket `sock` (one byte, SCM_RIGHTS).
pub fn send_fd(sock: std::os::fd::BorrowedFd<'_>, fd: std::os::fd::RawFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: msghdr and cmsghdr are plain data laid out in local buffers that outlive the
    // sendmsg call; CMSG_* compute offsets inside `control`, which has room for one fd.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Our copy of fd `fd` of task `pid`: the same open file (pidfd_open + pidfd_getfd).
pub fn copy_fd_of(pid: i32, fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let pidfd = parasite::sys::pidfd_open(pid)?;
    parasite::sys::pidfd_getfd(pidfd.as_raw_fd(), fd)
}

/// A pidfd of this process (for a container's init: its way to our fds).
pub fn pidfd_self() -> io::Result<std::os::fd::OwnedFd> {
    parasite::sys::pidfd_open(std::process::id() as i32)
}

/// Makes `cmd`'s child hold `fd` at fd number 3 (not close-on-exec), as a runtime's
/// `--preserve-fds 1` passes it on to the container's process.
pub fn pass_as_fd3(cmd: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls dup2/fcntl,
    // which are async-signal-safe; `fd` is held open by the caller until the child is spawned.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it.
                cvt(libc::fcntl(3, libc::F_SETFD, 0))?;
            } else {
                cvt(libc::dup2(fd, 3))?;
            }
            Ok(())
        });
    }
}

/// Runs `f` in a short-lived thread that joins the IPC namespace `ns` (an open
/// /proc/PID/ns/ipc): an IPC namespace is per thread, so nothing else of ours moves. SysV
/// calls, /proc/sysvipc and /proc/sys/kernel/*_next_id there all see that namespace.
pub fn in_ipc_ns<T: Send>(ns: &std::fs::File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    in_ns(ns, libc::CLONE_NEWIPC, f)
}

/// Runs `f` in a short-lived thread that joins the network namespace `ns` (an open
/// /proc/PID/ns/net): the sockets and netlink queries it makes are that namespace's.
pub fn in_net_ns<T: Send>(ns: &std::fs::File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    in_ns(ns, libc::CLONE_NEWNET, f)
}

fn in_ns<T: Send>(ns: &std::fs::File, kind: libc::c_int, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns takes an fd we hold open for the whole call; an IPC or network
            // namespace is per thread, so only this thread moves.
            cvt(unsafe { libc::setns(fd, kind) })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a thread in another namespace panicked")))
    })
}

/// Runs `f` in a short-lived thread that enters the mount and network namespaces of `pid`
/// (a container's): its own filesystem context first (unshare CLONE_FS, so that a thread may
/// join a mount namespace), then the container's root and cwd, mounts, and network. Paths,
/// socket names and the sockets it makes are the container's.
pub fn in_container<T: Send>(pid: i32, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let mnt = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let (mnt, net) = (mnt.as_raw_fd(), net.as_raw_fd());
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain integer arguments and fds held open for the whole call; the
            // thread's filesystem context is its own after the unshare, so only this thread
            // moves.
            unsafe {
                cvt(libc::unshare(libc::CLONE_FS))?;
                cvt(libc::setns(mnt, libc::CLONE_NEWNS))?;
                cvt(libc::setns(net, libc::CLONE_NEWNET))?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a thread in a container panicked")))
    })
}

/// A network interface's flags (IFF_*) and MTU, by name, in the calling thread's namespace.
pub fn if_flags_mtu(name: &str) -> io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd;
    let sock = inet_dgram()?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCGIFMTU fill the union of a zeroed ifreq naming the device.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        let flags = req.ifr_ifru.ifru_flags as u16 as u32;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req))?;
        Ok((flags, req.ifr_ifru.ifru_mtu as u32))
    }
}

/// Sets a network interface's flags (IFF_UP...) and MTU, in the calling thread's namespace.
pub fn set_if_flags_mtu(name: &str, flags: u32, mtu: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = inet_dgram()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU/SIOCSIFFLAGS read the union of an ifreq naming the device.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &req))?;
        req.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

fn inet_dgram() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain integer arguments; the new fd is owned here.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// The IP addresses of the calling thread's network namespace: interface, address, prefix.
pub fn if_addrs() -> io::Result<Vec<(String, std::net::IpAddr, u32)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    // SAFETY: we walk the list getifaddrs made, reading each sockaddr by its family (an
    // AF_INET one is a sockaddr_in, an AF_INET6 one a sockaddr_in6), then free it.
    unsafe {
        while !cur.is_null() {
            let a = &*cur;
            cur = a.ifa_next;
            if a.ifa_addr.is_null() || a.ifa_netmask.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(a.ifa_name).to_string_lossy().into_owned();
            match i32::from((*a.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let addr = &*(a.ifa_addr as *const libc::sockaddr_in);
                    let mask = &*(a.ifa_netmask as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                    out.push((name, ip.into(), u32::from_be(mask.sin_addr.s_addr).count_ones()));
                }
                libc::AF_INET6 => {
                    let addr = &*(a.ifa_addr as *const libc::sockaddr_in6);
                    let mask = &*(a.ifa_netmask as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(addr.sin6_addr.s6_addr);
                    let prefix = mask.sin6_addr.s6_addr.iter().map(|b| b.count_ones()).sum();
                    out.push((name, ip.into(), prefix));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// Owner, group and mode of a SysV object, as IPC_SET sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcPerm {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The contents of SysV shared memory segment `id` (`size` bytes), read through a
/// read-only attachment in our address space.
pub fn shm_read(id: i32, size: usize) -> io::Result<Vec<u8>> {
    // SAFETY: the kernel picks the address; the attachment is read as `size` bytes (the
    // segment's size, which the kernel rounds up to pages) and detached before returning.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let data = std::slice::from_raw_parts(p as *const u8, size).to_vec();
        libc::shmdt(p);
        Ok(data)
    }
}

/// Creates SysV shared memory segment `key` of `data.len()` bytes (IPC_EXCL) and fills it;
/// returns its id.
pub fn shm_create(key: i32, data: &[u8], perm: IpcPerm) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::shmget(key, data.len(), libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: a fresh attachment of the new segment, `data.len()` bytes long, written and
    // detached before returning; shmid_ds is plain data read back from the kernel.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        libc::shmdt(p);
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        cvt(libc::shmctl(id, libc::IPC_STAT, &mut ds))?;
        ds.shm_perm.uid = perm.uid;
        ds.shm_perm.gid = perm.gid;
        ds.shm_perm.mode = perm.mode as _;
        cvt(libc::shmctl(id, libc::IPC_SET, &mut ds))?;
    }
    Ok(id)
}

/// The values of the `nsems` semaphores of set `id`.
pub fn sem_values(id: i32, nsems: usize) -> io::Result<Vec<u16>> {
    let mut vals = vec![0u16; nsems];
    // SAFETY: GETALL writes `nsems` unsigned shorts into the array passed as semun.array.
    cvt(unsafe { libc::semctl(id, 0, libc::GETALL, vals.as_mut_ptr()) })?;
    Ok(vals)
}

/// Creates semaphore set `key` with `vals` (IPC_EXCL); returns its id.
pub fn sem_create(key: i32, vals: &[u16], perm: IpcPerm) -> io::Result<i32> {
    let n = i32::try_from(vals.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::semget(key, n, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: SETALL reads `n` unsigned shorts from semun.array; semid_ds is plain data read
    // back from the kernel and passed again as semun.buf.
    unsafe {
        cvt(libc::semctl(id, 0, libc::SETALL, vals.as_ptr()))?;
        let mut ds: libc::semid_ds = std::mem::zeroed();
        cvt(libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds))?;
        ds.sem_perm.uid = perm.uid;
        ds.sem_perm.gid = perm.gid;
        ds.sem_perm.mode = perm.mode as _;
        cvt(libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds))?;
    }
    Ok(id)
}

/// A SysV message: its type and its text.
pub type SysvMessage = (i64, Vec<u8>);

/// The queued messages of queue `id` (oldest first, left queued: MSG_COPY) and its byte
/// limit.
pub fn msg_queue(id: i32, count: usize) -> io::Result<(Vec<SysvMessage>, u64)> {
    const MSG_COPY: i32 = 0o40000;
    // SAFETY: msqid_ds is plain data written by the kernel.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the local struct.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    let max = ds.msg_qbytes as usize;
    let mut buf = vec![0u8; 8 + max];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `buf` has room for the type (8 bytes) and `max` bytes of text, as told.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, i as i64, libc::IPC_NOWAIT | MSG_COPY) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
        out.push((mtype, buf[8..8 + n as usize].to_vec()));
    }
    Ok((out, ds.msg_qbytes as u64))
}

/// Creates message queue `key` (IPC_EXCL) holding `messages`, with byte limit `qbytes`;
/// returns its id.
pub fn msg_create(key: i32, messages: &[SysvMessage], qbytes: u64, perm: IpcPerm) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: msqid_ds is plain data read back from the kernel; each message is a local
    // buffer of its type then its text, whose text length is passed.
    unsafe {
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        cvt(libc::msgctl(id, libc::IPC_STAT, &mut ds))?;
        ds.msg_qbytes = qbytes as _;
        ds.msg_perm.uid = perm.uid;
        ds.msg_perm.gid = perm.gid;
        ds.msg_perm.mode = perm.mode as _;
        cvt(libc::msgctl(id, libc::IPC_SET, &mut ds))?;
        for (mtype, text) in messages {
            let mut buf = mtype.to_ne_bytes().to_vec();
            buf.extend_from_slice(text);
            cvt(libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT))?;
        }
    }
    Ok(id)
}

/// Opens `path` as if `root` were `/` (openat2 with RESOLVE_IN_ROOT: `..` and symlinks stay
/// inside it) — a container's file, from outside the container.
pub fn open_in_root(root: std::os::fd::BorrowedFd<'_>, path: &str, flags: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let c_path = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how: [u64; 3] = [
        (flags | libc::O_CLOEXEC) as u64,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ];
    // SAFETY: a NUL-terminated path and a 24-byte open_how that outlive the call.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            how.as_ptr(),
            std::mem::size_of_val(&how),
        )
    } as i32)?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sets the file status flags (O_NONBLOCK, O_APPEND...) of the open file behind our `fd`.
pub fn set_status_flags(fd: std::os::fd::BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFL takes an integer; the fd is ours.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

/// A new shared-memory object of `len` bytes, like the one behind a MAP_SHARED|MAP_ANONYMOUS
/// mapping (it is one: mapped once, reopened through /proc/self/map_files, unmapped).
pub fn new_shmem(len: u64) -> io::Result<std::fs::File> {
    let size = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh mapping chosen by the kernel; it aliases nothing we hold, and is unmapped
    // below without ever being dereferenced.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = ptr as usize;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/map_files/{start:x}-{:x}", start + size));
    // SAFETY: the mapping made above, never handed out.
    unsafe { libc::munmap(ptr, size) };
    file
}

/// The ranges of `file` that hold data (SEEK_DATA/SEEK_HOLE) below `len`.
pub fn data_extents(file: &std::fs::File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        // SAFETY: lseek only moves the offset of our own fd.
        let data = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENXIO) => break, // no data after `at`
                e => return Err(e),
            }
        }
        let data = data as u64;
        if data >= len {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = (hole as u64).min(len);
        out.push((data, end));
        at = end;
    }
    Ok(out)
}

/// A new memfd named `name` that accepts seals, `len` bytes long.
pub fn new_memfd(name: &str, len: u64) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: memfd_create reads the NUL-terminated name we own and returns a new fd or -1.
    let fd = cvt(unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: the kernel just returned this new fd to us.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(len)?;
    Ok(file)
}

/// Adds `seals` (F_SEAL_*) to a memfd.
pub fn add_seals(file: &std::fs::File, seals: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_ADD_SEALS takes an integer; the fd is ours.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) }).map(drop)
}

fn owned(fd: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// eventfd2 with count 0 and `flags` (EFD_SEMAPHORE, EFD_NONBLOCK); close-on-exec.
pub fn eventfd(flags: i32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer arguments; returns a new fd or -1.
    owned(unsafe { libc::eventfd(0, flags | libc::EFD_CLOEXEC) })
}

/// signalfd4 on a new fd for `mask`, with `flags` (SFD_NONBLOCK); close-on-exec.
pub fn signalfd(mask: u64, flags: i32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the mask is a local 8-byte value whose size we pass.
    owned(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            8usize,
            flags | libc::SFD_CLOEXEC,
        ) as libc::c_int
    })
}

/// A timerfd on `clock` with `flags` (TFD_NONBLOCK), close-on-exec, armed with `value` and
/// `interval` (seconds, nanoseconds) under `settime_flags`, and holding `ticks` expirations.
pub fn timerfd(
    clock: i32,
    flags: i32,
    settime_flags: i32,
    value: (i64, i64),
    interval: (i64, i64),
    ticks: u64,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments; returns a new fd or -1.
    let fd = owned(unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) })?;
    if value != (0, 0) {
        let its = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: interval.0,
                tv_nsec: interval.1,
            },
            it_value: libc::timespec {
                tv_sec: value.0,
                tv_nsec: value.1,
            },
        };
        // SAFETY: its is a local itimerspec; no old value is asked for.
        cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), settime_flags, &its, std::ptr::null_mut()) })?;
    }
    if ticks != 0 {
        const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400; // _IOW('T', 0, u64)
                                                              // SAFETY: the ioctl reads one u64 from the local we pass.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) })?;
    }
    Ok(fd)
}

/// The current time of `clock`, (seconds, nanoseconds).
pub fn clock_now(clock: i32) -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a local timespec the kernel fills.
    cvt(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// A new epoll instance, close-on-exec.
pub fn epoll() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer argument; returns a new fd or -1.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// A new inotify instance with `flags` (IN_NONBLOCK), close-on-exec.
pub fn inotify(flags: i32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer argument; returns a new fd or -1.
    owned(unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) })
}

/// inotify_add_watch on `path` (given as /proc/self/fd/N of an O_PATH fd, or any path).
pub fn inotify_add_watch(fd: std::os::fd::BorrowedFd<'_>, path: &str, mask: u32) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the path is a NUL-terminated string we own.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) })
}

/// open_by_handle_at(mount, handle) with O_PATH: the file a file handle names.
pub fn open_by_handle(
    mount: std::os::fd::BorrowedFd<'_>,
    kind: i32,
    handle: &[u8],
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // struct file_handle: handle_bytes, handle_type, then the bytes.
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: buf is a complete struct file_handle the kernel only reads.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        ) as libc::c_int
    })
}

/// inotify_rm_watch.
pub fn inotify_rm_watch(fd: std::os::fd::BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments.
    cvt(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) }).map(drop)
}

/// Writes all of `bytes` to our fd `fd`.
pub fn write_all(fd: i32, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: bytes is a live slice; the kernel only reads it.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != bytes.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// read(2) from our fd `fd` into `buf`.
pub fn read(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, writable slice of the length we pass.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One AF_UNIX socket as sock_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)...
    pub state: u8,
    /// The bound name as the kernel keeps it (abstract names start with a NUL).
    pub name: Option<Vec<u8>>,
    pub peer: u32,
    /// For a listener: the sockets of connections not accepted yet.
    pub icons: Vec<u32>,
    /// Bytes (stream) or datagrams queued to read; for a listener, pending connections and
    /// the backlog.
    pub rqlen: (u32, u32),
    /// The kernel's RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2) bits.
    pub shutdown: u8,
    /// Device and inode of the bound file, for a socket bound to a path.
    pub vfs: Option<(u32, u32)>,
}

/// Every AF_UNIX socket of our network namespace, from NETLINK_SOCK_DIAG.
pub fn unix_sockets() -> io::Result<Vec<UnixDiag>> {
    use std::os::fd::AsRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10; // name, vfs, peer, icons, rqlen
    const UDIAG_SHOW_SHUTDOWN_ATTR: u16 = 6;
    // SAFETY: integer arguments; returns a new fd or -1.
    let sock = owned(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // every inode
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
                                       // SAFETY: req is a live buffer of the length we pass.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    loop {
        // SAFETY: buf is a live, writable buffer of the length we pass.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + 16 <= data.len() {
            let len = u32_at(data, off).unwrap_or(0) as usize;
            let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            if len < 16 || off + len > data.len() {
                return Err(io::Error::other("sock_diag: malformed reply"));
            }
            if kind == libc::NLMSG_DONE as u16 {
                return Ok(out);
            }
            if kind == libc::NLMSG_ERROR as u16 {
                let err = u32_at(data, off + 16).unwrap_or(0) as i32;
                return Err(io::Error::from_raw_os_error(-err));
            }
            let msg = &data[off + 16..off + len];
            if msg.len() >= 16 {
                let mut d = UnixDiag {
                    kind: msg[1],
                    state: msg[2],
                    ino: u32_at(msg, 4).unwrap_or(0),
                    ..Default::default()
                };
                let mut a = 16;
                while a + 4 <= msg.len() {
                    let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
                    let atype = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
                    if alen < 4 || a + alen > msg.len() {
                        break;
                    }
                    let p = &msg[a + 4..a + alen];
                    match atype {
                        0 => d.name = Some(p.to_vec()),
                        1 => d.vfs = Some((u32_at(p, 4).unwrap_or(0), u32_at(p, 0).unwrap_or(0))),
                        2 => d.peer = u32_at(p, 0).unwrap_or(0),
                        3 => d.icons = p.chunks_exact(4).filter_map(|c| u32_at(c, 0)).collect(),
                        4 => d.rqlen = (u32_at(p, 0).unwrap_or(0), u32_at(p, 4).unwrap_or(0)),
                        UDIAG_SHOW_SHUTDOWN_ATTR => d.shutdown = p.first().copied().unwrap_or(0),
                        _ => {}
                    }
                    a += alen.next_multiple_of(4);
                }
                out.push(d);
            }
            off += len.next_multiple_of(4);
        }
    }
}

/// What `recvmsg(MSG_PEEK)` found in a socket's receive queue: the messages (one per
/// datagram; stream data in one piece), and whether any carried fds (SCM_RIGHTS).
pub struct Peeked {
    pub messages: Vec<Vec<u8>>,
    pub passes_fds: bool,
}

/// Whether the control messages in `c` hold an SCM_RIGHTS.
fn has_scm_rights(c: &[u8]) -> bool {
    let mut at = 0;
    while at + 16 <= c.len() {
        let len = u64::from_ne_bytes(c[at..at + 8].try_into().unwrap_or([0; 8])) as usize;
        let level = i32::from_ne_bytes(c[at + 8..at + 12].try_into().unwrap_or([0; 4]));
        let kind = i32::from_ne_bytes(c[at + 12..at + 16].try_into().unwrap_or([0; 4]));
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            return true;
        }
        if len < 16 {
            break;
        }
        at += len.next_multiple_of(8);
    }
    false
}

/// Reads a socket's receive queue without taking anything from it (SO_PEEK_OFF moves through
/// it; it is put back as it was).
pub fn peek_queue(fd: std::os::fd::BorrowedFd<'_>, stream: bool) -> io::Result<Peeked> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    let mut old: libc::c_int = -1;
    let mut olen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: old/olen are locals of the sizes passed.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&mut old as *mut libc::c_int).cast(),
            &mut olen,
        )
    })?;
    let set = |v: libc::c_int| {
        // SAFETY: v is a local int.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEEK_OFF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(0)?;
    let mut out = Peeked {
        messages: Vec::new(),
        passes_fds: false,
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut cbuf = [0u8; 512];
    let result = loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr is valid; the pointers set below stay live across the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        // SAFETY: msg points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(libc::EAGAIN) {
                Ok(())
            } else {
                Err(e)
            };
        }
        if n == 0 && stream {
            break Ok(());
        }
        if has_scm_rights(&cbuf[..msg.msg_controllen.min(cbuf.len())]) {
            out.passes_fds = true;
        }
        if stream && !out.messages.is_empty() {
            out.messages[0].extend_from_slice(&buf[..n as usize]);
        } else {
            out.messages.push(buf[..n as usize].to_vec());
        }
    };
    set(old)?;
    result.map(|()| out)
}

/// An integer socket option of our fd.
pub fn sockopt(fd: std::os::fd::BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len are locals of the sizes passed.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Sets an integer socket option of our fd.
pub fn set_sockopt(fd: std::os::fd::BorrowedFd<'_>, level: i32, name: i32, v: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: v is a local int of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A new AF_UNIX socket of `kind`, close-on-exec.
pub fn unix_socket(kind: i32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer arguments; returns a new fd or -1.
    owned(unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) })
}

/// A connected pair of AF_UNIX sockets of `kind`, close-on-exec.
pub fn unix_pair(kind: i32) -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fd numbers into the array we own.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: the kernel just returned these two new fds to us.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

fn sockaddr_un(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > sa.sun_path.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    Ok((
        sa,
        (std::mem::size_of::<libc::sa_family_t>() + name.len()) as libc::socklen_t,
    ))
}

/// bind(2) an AF_UNIX socket to `name` (a path, or an abstract name starting with NUL).
pub fn unix_bind(fd: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (sa, len) = sockaddr_un(name)?;
    // SAFETY: sa is a local sockaddr_un of the length passed.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) }).map(drop)
}

/// connect(2) an AF_UNIX socket to `name`.
pub fn unix_connect(fd: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (sa, len) = sockaddr_un(name)?;
    // SAFETY: sa is a local sockaddr_un of the length passed.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) }).map(drop)
}

/// listen(2).
pub fn listen(fd: std::os::fd::BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// accept4(2), close-on-exec.
pub fn accept(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: no address is asked for; returns a new fd or -1.
    owned(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })
}

/// send(2) one message (a datagram, or stream bytes), or sendto `name` when given.
pub fn send_to(fd: std::os::fd::BorrowedFd<'_>, data: &[u8], name: Option<&[u8]>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let n = match name {
        Some(name) => {
            let (sa, len) = sockaddr_un(name)?;
            // SAFETY: data and sa are live for the call, of the lengths passed.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_DONTWAIT,
                    (&sa as *const libc::sockaddr_un).cast(),
                    len,
                )
            }
        }
        // SAFETY: data is live for the call, of the length passed.
        None => unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT) },
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR.
pub fn shutdown(fd: std::os::fd::BorrowedFd<'_>, how: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// The seals of a memfd (F_GET_SEALS).
pub fn seals(fd: i32) -> io::Result<u32> {
    // SAFETY: F_GET_SEALS takes no argument.
    cvt(unsafe { libc::fcntl(fd, libc::F_GET_SEALS) }).map(|s| s as u32)
}

/// The termios of a terminal fd.
pub fn tty_termios(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::termios> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed termios is valid; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: t is a live local termios.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    Ok(t)
}

/// Sets the termios of a terminal fd (at once).
pub fn tty_set_termios(fd: std::os::fd::BorrowedFd<'_>, t: &libc::termios) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: t is a live termios the kernel only reads.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, t) }).map(drop)
}

/// The window size of a terminal fd.
pub fn tty_winsize(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::winsize> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ws is a live local winsize the ioctl fills.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok(ws)
}

/// Sets the window size of a terminal fd.
pub fn tty_set_winsize(fd: std::os::fd::BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: ws is a live winsize the ioctl only reads.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) }).map(drop)
}

/// An int-valued terminal ioctl (TIOCGPTN, TIOCGPTLCK, TIOCGPKT, TIOCGEXCL).
pub fn tty_int(fd: std::os::fd::BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    // SAFETY: v is a live local int the ioctl fills.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// An int-setting terminal ioctl (TIOCSPTLCK, TIOCPKT) on our fd `fd`.
pub fn tty_set_int(fd: i32, req: libc::c_ulong, v: i32) -> io::Result<()> {
    // SAFETY: v is a live local int the ioctl only reads.
    cvt(unsafe { libc::ioctl(fd, req, &v) }).map(drop)
}

/// A new pty master (/dev/ptmx), not our controlling terminal, close-on-exec.
pub fn open_ptmx() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: a static NUL-terminated path; returns a new fd or -1.
    owned(unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })
}

/// The locked termios bits of a terminal fd (TIOCGLCKTRMIOS).
pub fn tty_locked_termios(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::termios> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed termios is valid; the ioctl fills its leading kernel termios part.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: t is a live local termios, larger than what the ioctl writes.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGLCKTRMIOS, &mut t) })?;
    Ok(t)
}

/// The size of SysV shared memory segment `shmid` (IPC_STAT), if it exists.
pub fn shm_size(shmid: i32) -> io::Result<u64> {
    // SAFETY: a zeroed shmid_ds is valid; IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a live local shmid_ds.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    Ok(ds.shm_segsz as u64)
}

/// Marks SysV shared memory segment `shmid` for removal (IPC_RMID).
pub fn shm_remove(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// Our own securebits (PR_GET_SECUREBITS).
pub fn securebits() -> io::Result<u32> {
    // SAFETY: plain integer arguments; the result is the bits.
    cvt(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) }).map(|b| b as u32)
}

/// fanotify_init(flags, event_f_flags).
pub fn fanotify_init(flags: u32, event_flags: u32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: integer arguments; returns a new fd or -1.
    owned(unsafe { libc::fanotify_init(flags, event_flags) })
}

/// fanotify_mark on `path`.
pub fn fanotify_mark(fd: i32, flags: u32, mask: u64, path: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the path is a NUL-terminated string we own.
    cvt(unsafe { libc::fanotify_mark(fd, flags, mask, libc::AT_FDCWD, c.as_ptr()) }).map(drop)
}
