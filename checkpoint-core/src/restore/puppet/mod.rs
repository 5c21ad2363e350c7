//! The puppet: a process forked at a dumped pid, stopped under ptrace, that runs nothing but
//! the single syscalls we inject from a scratch area of its own. Here its life: the scratch
//! area, one syscall, a child forked, a zombie made, the remote helpers every step uses. What it
//! is turned into is built in [`mod@build`], from its memory ([`memory`]), files ([`files`]),
//! process-wide state ([`process`]), threads ([`threads`]) and credentials ([`creds`]).

pub mod build;
pub mod creds;
pub mod files;
pub mod memory;
pub mod process;
pub mod threads;

use parasite::mem::RemoteMem;
use parasite::{Injector, Tracee, GADGET};

pub use build::{build, build_memory, Memory};

use super::RestoreError;
use crate::image::pages::PAGE_SIZE;
use crate::image::pb;
use crate::procfs;

/// The scratch area: the gadget page, then room for syscall arguments.
const SCRATCH_LEN: u64 = 64 * 1024;
const DATA: u64 = PAGE_SIZE;
const IOV_MAX: usize = 1024;
const MAP_FIXED_NOREPLACE: u64 = 0x100000;

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A range free in both layouts, at or above 64 KiB.
fn free_range(len: u64, taken: &[(u64, u64)]) -> Option<u64> {
    let mut addr = 0x10000u64;
    while addr < 0x7fff_0000_0000 {
        match taken.iter().find(|&&r| overlaps((addr, addr + len), r)) {
            None => return Some(addr),
            Some(&(_, end)) => addr = end.next_multiple_of(0x10000),
        }
    }
    None
}

/// A puppet being built: its injector and memory, its scratch area, and its way to our fds.
struct Remote<'t> {
    pid: i32,
    inj: Injector<'t>,
    mem: RemoteMem,
    scratch: u64,
    /// First fd number above every fd the task will have: helpers live there.
    helper_base: u64,
    /// The puppet's pidfd of us, or its end of the control socket.
    ctl_pidfd: u64,
    /// Our end of the control socket, when fds go over it.
    ctl_socket: Option<std::rc::Rc<std::os::fd::OwnedFd>>,
}

impl Remote<'_> {
    fn call(&self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
        Ok(self.inj.call(name, nr, args)?)
    }

    /// Copies `bytes` to the argument area and returns its address.
    fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        let addr = self.scratch + DATA + off;
        self.mem.write(addr, bytes)?;
        Ok(addr)
    }

    /// Gives the puppet a copy of our fd `ours`, at a helper number; returns its number.
    fn pull(&self, ours: i32) -> Result<u64, RestoreError> {
        let fd = match &self.ctl_socket {
            None => self.call(
                "pidfd_getfd",
                libc::SYS_pidfd_getfd,
                [self.ctl_pidfd, ours as u64, 0, 0, 0, 0],
            )?,
            Some(sock) => self.receive(sock, ours)?,
        };
        let helper = self.call(
            "fcntl(F_DUPFD)",
            libc::SYS_fcntl,
            [fd, libc::F_DUPFD as u64, self.helper_base, 0, 0, 0],
        )?;
        self.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        Ok(helper)
    }

    /// Sends our fd `ours` over the control socket and has the puppet receive it (recvmsg
    /// into a msghdr laid out in the scratch area); returns the puppet's new fd.
    fn receive(&self, sock: &std::os::fd::OwnedFd, ours: i32) -> Result<u64, RestoreError> {
        use std::os::fd::AsFd;
        const AT: u64 = SCRATCH_LEN - DATA - 1024;
        crate::sys::send_fd(sock.as_fd(), ours).map_err(|e| RestoreError::Object {
            pid: self.pid,
            object: format!("sending our fd {ours} to the puppet"),
            source: e,
        })?;
        // struct msghdr {name, namelen, iov, iovlen, control, controllen, flags}, one iovec of
        // one byte, and a control buffer for one fd, all in the scratch area.
        let base = self.scratch + DATA + AT;
        let (iov, byte, control) = (base + 64, base + 80, base + 96);
        self.put(AT + 64, &words(&[byte, 1]))?;
        self.put(AT + 96, &[0u8; 32])?;
        self.put(AT, &words(&[0, 0, iov, 1, control, 24, 0]))?;
        let n = self.call("recvmsg", libc::SYS_recvmsg, [self.ctl_pidfd, base, 0, 0, 0, 0])?;
        let mut cmsg = [0u8; 24];
        self.mem.read(control, &mut cmsg)?;
        let level = i32::from_le_bytes([cmsg[8], cmsg[9], cmsg[10], cmsg[11]]);
        let kind = i32::from_le_bytes([cmsg[12], cmsg[13], cmsg[14], cmsg[15]]);
        if n != 1 || level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
            return Err(RestoreError::Invalid {
                what: format!("pid {}: no fd came over the control socket", self.pid),
            });
        }
        Ok(u64::from(u32::from_le_bytes([cmsg[16], cmsg[17], cmsg[18], cmsg[19]])))
    }

    fn close(&self, fd: u64) -> Result<(), RestoreError> {
        self.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0]).map(drop)
    }
}

/// Little-endian bytes of 64-bit words, as the kernel reads them.
fn words(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

type Call<'a> = &'a dyn Fn(&'static str, i64, [u64; 6]) -> Result<u64, RestoreError>;
type Put<'a> = &'a dyn Fn(u64, &[u8]) -> Result<u64, RestoreError>;

/// The scratch area's address: free in the puppet's layout (`own`, the controller's copy, which
/// every puppet inherits) and in every dumped layout of the tree.
pub fn choose_scratch(pid: i32, own: &[procfs::MapsEntry], targets: &[&pb::MmEntry]) -> Result<u64, RestoreError> {
    let mut taken: Vec<(u64, u64)> = own
        .iter()
        .map(|m| (m.start, m.end))
        .chain(targets.iter().flat_map(|mm| mm.vmas.iter().map(|v| (v.start, v.end))))
        .collect();
    taken.sort_unstable();
    free_range(SCRATCH_LEN, &taken).ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {pid}: no room for a scratch area"),
    })
}

/// The maps of a puppet.
pub fn own_maps(pid: i32) -> Result<Vec<procfs::MapsEntry>, RestoreError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| RestoreError::Object {
        pid,
        object: "the puppet's maps".into(),
        source: e,
    })?;
    procfs::parse_maps(&text).ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {pid}: unreadable maps"),
    })
}

/// Maps the scratch area (its first page a `syscall; int3` gadget) into the root puppet, from
/// a gadget patched over its current instruction. Processes it forks inherit it.
pub fn make_scratch(t: &Tracee, scratch: u64) -> Result<(), RestoreError> {
    let pid = t.pid();
    let inj = Injector::at_ip(t)?;
    let rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | MAP_FIXED_NOREPLACE;
    let got = inj.call(
        "mmap(scratch)",
        libc::SYS_mmap,
        [scratch, SCRATCH_LEN, rwx, flags, u64::MAX, 0],
    )?;
    if got != scratch {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: scratch area landed at {got:#x}, not {scratch:#x}"),
        });
    }
    RemoteMem::open(pid)?.write(scratch, &GADGET)?;
    // The patched code stays: everything the puppet had is unmapped when it is built.
    inj.release();
    Ok(())
}

/// One syscall in a puppet, from the scratch gadget.
pub fn call(t: &Tracee, scratch: u64, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
    let inj = Injector::at(t, scratch)?;
    let ret = inj.call(name, nr, args)?;
    inj.release();
    Ok(ret)
}

/// Has the puppet `parent` fork a process at `pid` (clone3 with set_tid); the child stops at
/// once under ptrace, in the parent's session and group, with the scratch area.
pub fn fork_child(parent: &Tracee, scratch: u64, pid: i32) -> Result<Tracee, RestoreError> {
    let mem = RemoteMem::open(parent.pid())?;
    let tid_addr = scratch + DATA + 128;
    mem.write(tid_addr, &(pid as u32).to_le_bytes())?;
    let args_addr = scratch + DATA;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    mem.write(
        args_addr,
        &words(&[0, 0, 0, 0, libc::SIGCHLD as u64, 0, 0, 0, tid_addr, 1, 0]),
    )?;
    let got = call(
        parent,
        scratch,
        "clone3(process)",
        libc::SYS_clone3,
        [args_addr, 88, 0, 0, 0, 0],
    )
    .map_err(|e| match e {
        RestoreError::Remote(parasite::Error::Syscall { ref source, .. })
            if source.raw_os_error() == Some(libc::EEXIST) =>
        {
            RestoreError::PidTaken { pid }
        }
        e => e,
    })?;
    if got != pid as u64 {
        return Err(RestoreError::Invalid {
            what: format!("pid {}: child created as {got}, not {pid}", parent.pid()),
        });
    }
    // Inside a container `pid` is the child's pid there; ptrace knows it by ours.
    let host = parent.take_new_child().ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {}: forked {pid}, but no fork event came", parent.pid()),
    })?;
    Ok(Tracee::adopt_thread(host)?)
}

/// Has the puppet (a container's init, in the container's mount namespace, before anything
/// else) mount a tmpfs at `target` with `flags` and `data` (its options). The strings go
/// below its stack pointer; its code and registers are put back after.
pub fn mount_tmpfs(t: &Tracee, target: &str, flags: u64, data: &str) -> Result<(), RestoreError> {
    let mem = RemoteMem::open(t.pid())?;
    let base = (t.regs()?.rsp - 16384) & !0xf;
    let mut at = base;
    let mut put = |s: &str| -> Result<u64, RestoreError> {
        let addr = at;
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        mem.write(addr, &bytes)?;
        at += bytes.len() as u64;
        Ok(addr)
    };
    let (source, target_at, fstype, data_at) = (put("tmpfs")?, put(target)?, put("tmpfs")?, put(data)?);
    if at - base > 8192 {
        return Err(RestoreError::Invalid {
            what: format!("the mount at {target}: options too long"),
        });
    }
    let inj = Injector::at_ip(t)?;
    inj.call(
        "mount(tmpfs)",
        libc::SYS_mount,
        [source, target_at, fstype, flags, data_at, 0],
    )?;
    inj.finish()?;
    Ok(())
}

/// Has the puppet set the host and domain names of its UTS namespace.
pub fn set_uts_names(t: &Tracee, scratch: u64, host: &str, domain: &str) -> Result<(), RestoreError> {
    let mem = RemoteMem::open(t.pid())?;
    for (name, nr, what) in [
        (host, libc::SYS_sethostname, "sethostname"),
        (domain, libc::SYS_setdomainname, "setdomainname"),
    ] {
        mem.write(scratch + DATA, name.as_bytes())?;
        call(t, scratch, what, nr, [scratch + DATA, name.len() as u64, 0, 0, 0, 0])?;
    }
    Ok(())
}

/// Turns a puppet into the zombie it was: it ends with wait status `exit_code`, left for its
/// parent to reap (we reap it only as its tracer).
pub fn make_zombie(t: Tracee, scratch: u64, exit_code: u32, comm: &str) -> Result<(), RestoreError> {
    let pid = t.pid();
    let status = exit_code as i32;
    let mut name = comm.as_bytes().to_vec();
    name.truncate(15);
    name.push(0);
    RemoteMem::open(pid)?.write(scratch + DATA, &name)?;
    call(
        &t,
        scratch,
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, scratch + DATA, 0, 0, 0, 0],
    )?;
    let got = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        call(&t, scratch, "rt_sigaction(SIG_DFL)", libc::SYS_rt_sigaction, {
            let act = scratch + DATA;
            RemoteMem::open(pid)?.write(act, &[0u8; 32])?;
            [sig as u64, act, 0, 8, 0, 0]
        })?;
        t.die_by(sig)?
    } else {
        let inj = Injector::at(&t, scratch)?;
        let code = libc::WEXITSTATUS(status) as u64;
        let got = inj.call_and_exit(libc::SYS_exit_group, [code, 0, 0, 0, 0, 0])?;
        t.forget();
        got
    };
    if got & 0x7f7f != status & 0x7f7f {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: the zombie ended with status {got:#x}, not {status:#x}"),
        });
    }
    Ok(())
}

/// Ends helper `h` (its pid `pid` as its parent sees it): it exits, and `parent` reaps it and
/// forgets its SIGCHLD, so that nothing of it is left.
pub fn end_helper(h: Tracee, parent: &Tracee, scratch: u64, pid: i32) -> Result<(), RestoreError> {
    make_zombie(h, scratch, 0, "stasis-helper")?;
    let inj = Injector::at(parent, scratch)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = inj.raw(
            libc::SYS_wait4,
            [pid as u64, 0, (libc::WNOHANG | libc::__WALL) as u64, 0, 0, 0],
        )?;
        if got == pid as i64 {
            break;
        }
        if got < 0 || std::time::Instant::now() > deadline {
            return Err(RestoreError::Invalid {
                what: format!("pid {}: reaping the helper {pid}: wait4 gave {got}", parent.pid()),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    inj.release();
    drain_sigchld(parent, scratch)
}

/// Discards the SIGCHLDs a puppet got from the zombies it had made (they were handled before
/// the dump).
pub fn drain_sigchld(t: &Tracee, scratch: u64) -> Result<(), RestoreError> {
    let mem = RemoteMem::open(t.pid())?;
    let set = scratch + DATA;
    let zero = scratch + DATA + 64;
    mem.write(set, &(1u64 << (libc::SIGCHLD - 1)).to_le_bytes())?;
    mem.write(zero, &[0u8; 16])?;
    let inj = Injector::at(t, scratch)?;
    while inj.raw(libc::SYS_rt_sigtimedwait, [set, 0, zero, 8, 0, 0])? > 0 {}
    inj.release();
    Ok(())
}
