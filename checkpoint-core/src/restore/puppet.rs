//! Turning the stopped puppet into the dumped task, one injected syscall at a time.

use std::os::fd::AsRawFd;

use parasite::mem::RemoteMem;
use parasite::{Injector, Pinned, Tracee, GADGET};

use super::plan::Plan;
use super::{Inherited, Prepared, RestoreError};
use crate::image::pages::{PageRun, PAGE_SIZE};
use crate::image::pb::{self as pb, vma_status as st};
use crate::procfs;
use crate::x86;

/// The scratch area: the gadget page, then room for syscall arguments.
const SCRATCH_LEN: u64 = 64 * 1024;
const DATA: u64 = PAGE_SIZE;
const IOV_MAX: usize = 1024;
const MAP_FIXED_NOREPLACE: u64 = 0x100000;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

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

fn words(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

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

/// Builds the dumped task inside the puppet `t` (which has the scratch area at `scratch`) and
/// leaves it stopped, ready to be let go; returns its other threads, stopped too.
pub fn build(
    t: &Tracee,
    plan: &Plan,
    prep: &Prepared,
    scratch: u64,
    is_root: bool,
    filters: &[pb::SeccompFilter],
) -> Result<Vec<Tracee>, RestoreError> {
    // Ptrace and /proc know the puppet by our pid for it; its own syscalls by its pid in its
    // namespace (the dumped one: they differ inside a container).
    let (host, pid) = (t.pid(), plan.pid);
    let _pinned = Pinned::new(host);
    let own_maps = own_maps(host)?;
    let target: Vec<(u64, u64)> = plan.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    let mut taken: Vec<(u64, u64)> = own_maps
        .iter()
        .map(|m| (m.start, m.end))
        .chain(target.iter().copied())
        .collect();
    taken.sort_unstable();
    let inj = Injector::at(t, scratch)?;
    let mem = RemoteMem::open(host)?;
    let max_fd = plan.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    let mut r = Remote {
        pid,
        inj,
        mem,
        scratch,
        helper_base: (max_fd + 1).max(3) as u64,
        ctl_pidfd: 0,
        ctl_socket: prep.inherited.ctl_socket.clone(),
    };

    // 2. Forget what the fork gave the puppet: rseq, fds, every mapping but scratch/vdso/vvar.
    if let Some(rseq) = t.rseq()? {
        r.call(
            "rseq(unregister)",
            libc::SYS_rseq,
            [
                rseq.rseq_abi_pointer,
                rseq.rseq_abi_size.into(),
                RSEQ_FLAG_UNREGISTER,
                rseq.signature.into(),
                0,
                0,
            ],
        )?;
    }
    // Every fd goes but the pidfd of the controller a container's init was given (our pid
    // means nothing in its pid namespace); elsewhere the puppet opens one.
    let ctl = match prep.inherited.ctl_fd.map(|fd| fd as u64) {
        Some(ctl) => {
            if ctl > 0 {
                r.call("close_range", libc::SYS_close_range, [0, ctl - 1, 0, 0, 0, 0])?;
            }
            r.call(
                "close_range",
                libc::SYS_close_range,
                [ctl + 1, u64::from(u32::MAX), 0, 0, 0, 0],
            )?;
            ctl
        }
        None => {
            r.call(
                "close_range",
                libc::SYS_close_range,
                [0, u64::from(u32::MAX), 0, 0, 0, 0],
            )?;
            r.call(
                "pidfd_open",
                libc::SYS_pidfd_open,
                [std::process::id().into(), 0, 0, 0, 0, 0],
            )?
        }
    };
    r.ctl_pidfd = r.call(
        "fcntl(F_DUPFD)",
        libc::SYS_fcntl,
        [ctl, libc::F_DUPFD as u64, r.helper_base, 0, 0, 0],
    )?;
    r.close(ctl)?;
    // The thread-state helpers shared with the other threads run through these.
    let call = |name: &'static str, nr: i64, args: [u64; 6]| r.call(name, nr, args);
    let put = |off: u64, bytes: &[u8]| r.put(off, bytes);
    let special =
        |m: &procfs::MapsEntry| matches!(m.path.as_str(), "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]");
    // One munmap per gap between what stays (unmapped holes inside a range are fine).
    let mut keep: Vec<(u64, u64)> = own_maps
        .iter()
        .filter(|m| special(m) && m.path != "[vsyscall]")
        .map(|m| (m.start, m.end))
        .chain([(scratch, scratch + SCRATCH_LEN)])
        .collect();
    keep.sort_unstable();
    let mut from = PAGE_SIZE;
    let top = own_maps
        .iter()
        .filter(|m| m.path != "[vsyscall]")
        .map(|m| m.end)
        .max()
        .unwrap_or(0);
    for (start, end) in keep.into_iter().chain([(top, top)]) {
        if start > from {
            r.call("munmap", libc::SYS_munmap, [from, start - from, 0, 0, 0, 0])?;
        }
        from = from.max(end);
    }

    // 3. vdso and vvar to the dumped addresses (same kernel: same sizes).
    move_vdso(&r, host, plan, &own_maps, &taken)?;

    // 4. Every other mapping, writable while its pages are filled.
    let filled: Vec<bool> = plan
        .mm
        .vmas
        .iter()
        .map(|v| {
            plan.pagemap
                .runs
                .iter()
                .any(|p| p.is_present() && overlaps((p.vaddr, p.vaddr + p.len()), (v.start, v.end)))
        })
        .collect();
    let mut helpers = Vec::new();
    // Each mapped file is pulled into the puppet once, however many mappings share it.
    let mut pulled: Vec<(&std::rc::Rc<std::fs::File>, u64)> = Vec::new();
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if v.status & (st::VDSO | st::VVAR | st::VSYSCALL) != 0 {
            continue;
        }
        if let Some(&shmid) = plan.vma_sysv.get(&i) {
            // The segment is attached again where it was (it lives on in the host's IPC
            // namespace, contents and all).
            let mut flags = 0;
            if v.prot & libc::PROT_WRITE as u32 == 0 {
                flags |= libc::SHM_RDONLY;
            }
            if v.prot & libc::PROT_EXEC as u32 != 0 {
                flags |= libc::SHM_EXEC;
            }
            let got = r.call("shmat", libc::SYS_shmat, [shmid, v.start, flags as u64, 0, 0, 0])?;
            if got != v.start {
                return Err(RestoreError::Invalid {
                    what: format!(
                        "pid {pid}: SysV segment {shmid} attached at {got:#x}, not {:#x}",
                        v.start
                    ),
                });
            }
            continue;
        }
        let prot = u64::from(v.prot) | if filled[i] { libc::PROT_WRITE as u64 } else { 0 };
        let mut flags = u64::from(v.flags) | libc::MAP_FIXED as u64;
        let (fd, off) = match prep.mapped.iter().find(|(j, _)| *j == i) {
            Some((_, file)) => {
                let fd = match pulled.iter().find(|(k, _)| std::rc::Rc::ptr_eq(k, file)) {
                    Some(&(_, fd)) => fd,
                    None => {
                        let fd = r.pull(file.as_raw_fd())?;
                        pulled.push((file, fd));
                        helpers.push(fd);
                        fd
                    }
                };
                flags &= !(libc::MAP_ANONYMOUS as u64);
                (fd, v.pgoff)
            }
            None => (u64::MAX, 0),
        };
        r.call("mmap", libc::SYS_mmap, [v.start, v.end - v.start, prot, flags, fd, off])?;
    }

    // 5. Pages: the puppet reads them from the pages image straight into place (one copy).
    let pages_fd = r.pull(prep.pages.as_raw_fd())?;
    helpers.push(pages_fd);
    fill_pages(&r, plan, pages_fd)?;
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if filled[i] && v.prot & libc::PROT_WRITE as u32 == 0 {
            r.call(
                "mprotect",
                libc::SYS_mprotect,
                [v.start, v.end - v.start, v.prot.into(), 0, 0, 0],
            )?;
        }
    }

    // 6. Files at their numbers, cwd, umask.
    for (fd, cloexec, file) in &prep.fds {
        let got = r.pull(file.as_raw_fd())?;
        let flags = if *cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        r.call("dup3", libc::SYS_dup3, [got, *fd as u64, flags, 0, 0, 0])?;
        r.close(got)?;
    }
    for (epfd, targets) in &prep.epoll {
        for t in targets {
            let ev = r.put(0, &crate::fds::epoll::event_bytes(t))?;
            r.call(
                "epoll_ctl(ADD)",
                libc::SYS_epoll_ctl,
                [*epfd as u64, libc::EPOLL_CTL_ADD as u64, t.tfd.into(), ev, 0, 0],
            )?;
        }
    }
    for l in &plan.locks {
        use crate::fds::locks::{flock_bytes, is_write, FL_FLOCK, FL_OFDLCK};
        const F_OFD_SETLK: u64 = 37;
        let fd = l.fd as u64;
        if l.flag == FL_FLOCK {
            let op = if is_write(l) { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
            r.call("flock", libc::SYS_flock, [fd, op as u64, 0, 0, 0, 0])?;
        } else {
            let cmd = if l.flag == FL_OFDLCK {
                F_OFD_SETLK
            } else {
                libc::F_SETLK as u64
            };
            let at = r.put(0, &flock_bytes(l))?;
            r.call("fcntl(lock)", libc::SYS_fcntl, [fd, cmd, at, 0, 0, 0])?;
        }
    }
    if let Some((fd, pgrp)) = plan.ctty {
        // The session leader takes its terminal again, and gives it its foreground group.
        r.call(
            "ioctl(TIOCSCTTY)",
            libc::SYS_ioctl,
            [fd as u64, libc::TIOCSCTTY, 0, 0, 0, 0],
        )?;
        if pgrp != 0 {
            let at = r.put(0, &pgrp.to_le_bytes())?;
            r.call(
                "ioctl(TIOCSPGRP)",
                libc::SYS_ioctl,
                [fd as u64, libc::TIOCSPGRP, at, 0, 0, 0],
            )?;
        }
    }
    let cwd = r.pull(prep.cwd.as_raw_fd())?;
    r.call("fchdir", libc::SYS_fchdir, [cwd, 0, 0, 0, 0, 0])?;
    r.close(cwd)?;
    if let Some(mask) = plan.umask {
        r.call("umask", libc::SYS_umask, [mask.into(), 0, 0, 0, 0, 0])?;
    }

    // 7. Signal dispositions, limits, itimers; the thread's own state.
    let tc = plan.core.tc.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: "no task core".into(),
    })?;
    let mut sig = 0u64;
    for sa in &tc.sigactions {
        sig += 1;
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            sig += 1;
        }
        // Most signals of a puppet are at SIG_DFL already.
        let inherited_default = prep.inherited.non_default_signals & (1u64 << (sig - 1)) == 0;
        if (sa.sigaction, sa.flags, sa.mask) == (0, 0, 0) && inherited_default {
            continue;
        }
        let act = r.put(0, &words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]))?;
        r.call("rt_sigaction", libc::SYS_rt_sigaction, [sig, act, 0, 8, 0, 0])?;
    }
    let thread = plan.core.thread_core.clone().unwrap_or_default();
    if let Some(limits) = &tc.rlimits {
        for (res, l) in limits.rlimits.iter().enumerate() {
            if prep.inherited.limits.get(res) == Some(&(l.cur, l.max)) {
                continue; // inherited already
            }
            let new = r.put(0, &words(&[l.cur, l.max]))?;
            r.call("prlimit64", libc::SYS_prlimit64, [0, res as u64, new, 0, 0, 0])?;
        }
    }
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
    let ti = plan.core.thread_info.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: "no registers".into(),
    })?;
    let name = thread.comm.as_deref().unwrap_or(&tc.comm);
    thread_state(&call, &put, ti, &thread, name, !is_root)?;
    if tc.child_subreaper == Some(true) {
        r.call(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
        )?;
    }

    // 8. mm fields (code/data/brk/stack/args/env, auxv, exe) in one PR_SET_MM_MAP.
    // A container's init runs the dumped program already (and maps it again below, which
    // forbids replacing it): its exe is kept (-1).
    let same_exe = {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(format!("/proc/{host}/exe")).map(|m| (m.dev(), m.ino()));
        let want = prep.exe.metadata().map(|m| (m.dev(), m.ino()));
        matches!((now, want), (Ok(a), Ok(b)) if a == b)
    };
    let exe = if same_exe {
        u64::from(u32::MAX)
    } else {
        r.pull(prep.exe.as_raw_fd())?
    };
    let mm = &plan.mm;
    let auxv = r.put(256, &words(&mm.mm_saved_auxv))?;
    let mut map = words(&[
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv,
    ]);
    map.extend_from_slice(&((mm.mm_saved_auxv.len() * 8) as u32).to_le_bytes());
    map.extend_from_slice(&(exe as u32).to_le_bytes());
    let map_addr = r.put(0, &map)?;
    r.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, map_addr, map.len() as u64, 0, 0],
    )?;
    if !same_exe {
        r.close(exe)?;
    }
    if tc.personality != 0 {
        r.call(
            "personality",
            libc::SYS_personality,
            [tc.personality.into(), 0, 0, 0, 0, 0],
        )?;
    }
    // 9. The other threads: cloned into the puppet at their tids, then set up one by one.
    let mut thread_tracees = Vec::with_capacity(plan.threads.len());
    for (tid, core) in &plan.threads {
        thread_tracees.push(make_thread(&r, pid, *tid, core, !is_root, filters, &prep.inherited)?);
    }

    // POSIX timers once every thread they may notify exists.
    if let Some(timers) = tc.timers.as_ref().filter(|t| !t.posix.is_empty()) {
        posix_timers(&r, &timers.posix)?;
    }
    for fd in helpers {
        r.close(fd)?;
    }
    r.close(r.ctl_pidfd)?;
    // Signals queued for the process and for the main thread (all blocked until it runs).
    let queued = |q: &Option<pb::SignalQueueEntry>| q.iter().flat_map(|q| q.signals.clone()).collect::<Vec<_>>();
    queue_signals(&call, &put, pid, None, &queued(&tc.signals_s))?;
    queue_signals(&call, &put, pid, Some(pid), &queued(&thread.signals_p))?;

    // Filters and credentials, then dumpable (which a change of credentials resets).
    seccomp_and_creds(&call, &put, pid, &thread, filters, &prep.inherited)?;
    if let Some(d) = plan.mm.dumpable.filter(|d| matches!(d, 0 | 1)) {
        r.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0, 0],
        )?;
    }

    // 10. Last: unmap the scratch area itself; at that syscall's exit, the dumped registers.
    let Remote { inj, .. } = r;
    let ret = inj.call_and_stop_at_exit("munmap(scratch)", libc::SYS_munmap, [scratch, SCRATCH_LEN, 0, 0, 0, 0])?;
    if ret != 0 {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: unmapping the scratch area returned {ret}"),
        });
    }
    set_dumped_registers(t, ti, thread.blk_sigset.unwrap_or(tc.blk_sigset))?;
    Ok(thread_tracees)
}

/// The dumped registers, xstate and signal mask of a stopped thread; it resumes there when let go.
fn set_dumped_registers(t: &Tracee, ti: &pb::ThreadInfoX86, mask: u64) -> Result<(), RestoreError> {
    let mut xstate = t.xstate()?;
    x86::pb_to_xstate(&ti.fpregs, &mut xstate);
    t.set_xstate(&xstate)?;
    let mut regs = t.regs()?;
    x86::pb_to_regs(&ti.gpregs, &mut regs);
    // Not "in a syscall": no kernel restart logic applies to these registers.
    regs.orig_rax = u64::MAX;
    t.set_regs(&regs)?;
    t.set_sigmask(mask)?;
    Ok(())
}

/// The highest capability number the kernel knows.
fn cap_last() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn caps64(v: &[u32]) -> u64 {
    u64::from(v.first().copied().unwrap_or(0)) | u64::from(v.get(1).copied().unwrap_or(0)) << 32
}

/// The thread's seccomp filters, then its credentials, by syscalls it runs itself: last of its
/// setup, as they take away what the setup needs (our own later calls are not filtered: the
/// puppets are traced with PTRACE_O_SUSPEND_SECCOMP). Filters go first, while the thread may
/// still install them without no_new_privs.
fn seccomp_and_creds(
    call: Call<'_>,
    put: Put<'_>,
    tid: i32,
    tc: &pb::ThreadCoreEntry,
    filters: &[pb::SeccompFilter],
    inherited: &Inherited,
) -> Result<(), RestoreError> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECBIT_KEEP_CAPS: u64 = 0x10;
    let own = inherited.creds.as_ref();
    let mut chain: Vec<&[u8]> = Vec::new();
    match tc.seccomp_mode.and_then(|m| pb::SeccompMode::try_from(m).ok()) {
        Some(pb::SeccompMode::Strict) => {
            call(
                "prctl(PR_SET_SECCOMP, strict)",
                libc::SYS_prctl,
                [libc::PR_SET_SECCOMP as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Some(pb::SeccompMode::Filter) => {
            chain = tc
                .seccomp_filter
                .and_then(|n| crate::model::seccomp::chain(filters, n))
                .ok_or_else(|| RestoreError::Invalid {
                    what: format!("tid {tid}: its seccomp filter is not in seccomp.img"),
                })?;
        }
        _ => {}
    }
    // A container's profile is installed already (by its runtime, from the same config): it
    // stands for the start of the dumped chain, and only the task's own filters are added.
    // Compiled again, a profile may order its rules differently (runc does), so the programs
    // are matched by length, not byte for byte.
    let installed = inherited.filters.len();
    if installed > 0 {
        let same = chain.len() >= installed && chain.iter().zip(&inherited.filters).all(|(a, b)| a.len() == b.len());
        if !same {
            let sizes =
                |v: &mut dyn Iterator<Item = usize>| v.map(|n| (n / 8).to_string()).collect::<Vec<_>>().join("+");
            return Err(RestoreError::Unsupported {
                pid: tid,
                what: format!(
                    "the new container's seccomp profile ({} instructions) is not the one the dumped task ran under ({})",
                    sizes(&mut inherited.filters.iter().map(Vec::len)),
                    sizes(&mut chain.iter().map(|p| p.len())),
                ),
            });
        }
    }
    if !chain.is_empty() {
        {
            for prog in chain.into_iter().skip(installed) {
                let insns = put(64, prog)?;
                let mut fprog = ((prog.len() / 8) as u64).to_le_bytes().to_vec(); // u16 len, padding
                fprog.extend_from_slice(&insns.to_le_bytes());
                let at = put(0, &fprog)?;
                call(
                    "seccomp(SET_MODE_FILTER)",
                    libc::SYS_seccomp,
                    [SECCOMP_SET_MODE_FILTER, 0, at, 0, 0, 0],
                )?;
            }
        }
    }
    let Some(c) = tc.creds.as_ref().filter(|c| Some(*c) != own) else {
        return Ok(()); // none saved, or the ones the puppet inherited from us
    };
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let at = put(0, &groups)?;
    call(
        "setgroups",
        libc::SYS_setgroups,
        [c.groups.len() as u64, at, 0, 0, 0, 0],
    )?;
    let bnd = caps64(&c.cap_bnd);
    for cap in (0..=cap_last()).filter(|&cap| bnd & (1u64 << cap) == 0) {
        call(
            "prctl(PR_CAPBSET_DROP)",
            libc::SYS_prctl,
            [libc::PR_CAPBSET_DROP as u64, cap.into(), 0, 0, 0, 0],
        )?;
    }
    call(
        "prctl(PR_SET_SECUREBITS)",
        libc::SYS_prctl,
        [
            libc::PR_SET_SECUREBITS as u64,
            u64::from(c.secbits) | SECBIT_KEEP_CAPS,
            0,
            0,
            0,
            0,
        ],
    )?;
    call(
        "setresgid",
        libc::SYS_setresgid,
        [c.gid.into(), c.egid.into(), c.sgid.into(), 0, 0, 0],
    )?;
    call("setfsgid", libc::SYS_setfsgid, [c.fsgid.into(), 0, 0, 0, 0, 0])?;
    call(
        "setresuid",
        libc::SYS_setresuid,
        [c.uid.into(), c.euid.into(), c.suid.into(), 0, 0, 0],
    )?;
    call("setfsuid", libc::SYS_setfsuid, [c.fsuid.into(), 0, 0, 0, 0, 0])?;
    // struct __user_cap_header_struct (version 3, this thread), then two
    // __user_cap_data_struct {effective, permitted, inheritable}: low and high words.
    let (eff, prm, inh) = (caps64(&c.cap_eff), caps64(&c.cap_prm), caps64(&c.cap_inh));
    let mut data = Vec::with_capacity(32);
    for v in [0x2008_0522u32, 0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    for shift in [0, 32] {
        for set in [eff, prm, inh] {
            data.extend_from_slice(&((set >> shift) as u32).to_le_bytes());
        }
    }
    let at = put(0, &data)?;
    call("capset", libc::SYS_capset, [at, at + 8, 0, 0, 0, 0])?;
    if u64::from(c.secbits) & SECBIT_KEEP_CAPS == 0 {
        call(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::SYS_prctl,
            [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
        )?;
    }
    let amb = caps64(&c.cap_amb);
    for cap in (0..=cap_last()).filter(|&cap| amb & (1u64 << cap) != 0) {
        call(
            "prctl(PR_CAP_AMBIENT_RAISE)",
            libc::SYS_prctl,
            [
                libc::PR_CAP_AMBIENT as u64,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                cap.into(),
                0,
                0,
                0,
            ],
        )?;
    }
    if c.no_new_privs.unwrap_or(0) != 0 {
        call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Recreates POSIX timers at their ids (PR_TIMER_CREATE_RESTORE_IDS), armed with the time
/// they had left and their interval.
fn posix_timers(r: &Remote<'_>, timers: &[pb::PosixTimerEntry]) -> Result<(), RestoreError> {
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
fn queue_signals(
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

type Call<'a> = &'a dyn Fn(&'static str, i64, [u64; 6]) -> Result<u64, RestoreError>;
type Put<'a> = &'a dyn Fn(u64, &[u8]) -> Result<u64, RestoreError>;

/// A thread's own state, by syscalls the thread itself runs (`call`; `put` copies arguments into
/// the scratch area): parent-death signal (with `pdeath`: not for the root, whose parent is
/// not the dumped one), altstack, clear-tid address, robust list, rseq area, name.
fn thread_state(
    call: Call<'_>,
    put: Put<'_>,
    ti: &pb::ThreadInfoX86,
    tc: &pb::ThreadCoreEntry,
    name: &str,
    pdeath: bool,
) -> Result<(), RestoreError> {
    if let Some(sig) = tc.pdeath_sig.filter(|&s| pdeath && s != 0) {
        call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, sig.into(), 0, 0, 0, 0],
        )?;
    }
    if let Some(sas) = &tc.sas {
        let flags = u64::from(sas.ss_flags & !(libc::SS_ONSTACK as u32));
        let ss = put(0, &words(&[sas.ss_sp, flags, sas.ss_size]))?;
        call("sigaltstack", libc::SYS_sigaltstack, [ss, 0, 0, 0, 0, 0])?;
    }
    call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [ti.clear_tid_addr, 0, 0, 0, 0, 0],
    )?;
    if tc.futex_rla != 0 {
        call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [tc.futex_rla, tc.futex_rla_len.into(), 0, 0, 0, 0],
        )?;
    }
    if let Some(rseq) = &tc.rseq_entry {
        let args = [
            rseq.rseq_abi_pointer,
            rseq.rseq_abi_size.into(),
            0,
            rseq.signature.into(),
            0,
            0,
        ];
        call("rseq", libc::SYS_rseq, args)?;
    }
    let mut comm = name.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = put(0, &comm)?;
    call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, at, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Clones thread `tid` into the puppet (clone3 with set_tid, from the gadget: the new thread
/// stops at once under ptrace), gives it its own signal stack, clear-tid address, robust list,
/// rseq area and name, then its registers, xstate and mask. It stays stopped until released.
fn make_thread(
    r: &Remote<'_>,
    pid: i32,
    tid: i32,
    core: &pb::CoreEntry,
    pdeath: bool,
    filters: &[pb::SeccompFilter],
    inherited: &Inherited,
) -> Result<Tracee, RestoreError> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let tid_addr = r.put(128, &(tid as u32).to_le_bytes())?;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let args = r.put(0, &words(&[flags, 0, 0, 0, 0, 0, 0, 0, tid_addr, 1, 0]))?;
    let got = r.call("clone3(thread)", libc::SYS_clone3, [args, 88, 0, 0, 0, 0])?;
    if got != tid as u64 {
        return Err(RestoreError::Invalid {
            what: format!("pid {pid}: thread created as {got}, not {tid}"),
        });
    }
    let host = r.inj.tracee().take_new_child().ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {pid}: created thread {tid}, but no clone event came"),
    })?;
    let t = Tracee::adopt_thread(host)?;
    let ti = core.thread_info.as_ref().ok_or_else(|| RestoreError::Invalid {
        what: format!("tid {tid}: no registers"),
    })?;
    let tc = core.thread_core.clone().unwrap_or_default();
    let inj = Injector::at(&t, r.scratch)?;
    let call = |name, nr, args| inj.call(name, nr, args).map_err(RestoreError::from);
    let name = tc.comm.clone().unwrap_or_default();
    let put = |off: u64, bytes: &[u8]| r.put(off, bytes);
    thread_state(&call, &put, ti, &tc, &name, pdeath)?;
    let queued: Vec<pb::SiginfoEntry> = tc.signals_p.iter().flat_map(|q| q.signals.clone()).collect();
    queue_signals(&call, &put, pid, Some(tid), &queued)?;
    seccomp_and_creds(&call, &put, tid, &tc, filters, inherited)?;
    inj.release();
    set_dumped_registers(&t, ti, tc.blk_sigset.unwrap_or(0))?;
    Ok(t)
}

/// Moves the puppet's [vvar]/[vvar_vclock] span and [vdso] to where the dumped task had them.
fn move_vdso(
    r: &Remote<'_>,
    pid: i32,
    plan: &Plan,
    own: &[procfs::MapsEntry],
    taken: &[(u64, u64)],
) -> Result<(), RestoreError> {
    let span = |it: &mut dyn Iterator<Item = (u64, u64)>| -> Option<(u64, u64)> {
        it.fold(None, |acc, (s, e)| match acc {
            None => Some((s, e)),
            Some((s0, e0)) => Some((s0.min(s), e0.max(e))),
        })
    };
    let cur_vdso = span(&mut own.iter().filter(|m| m.path == "[vdso]").map(|m| (m.start, m.end)));
    let cur_vvar = span(
        &mut own
            .iter()
            .filter(|m| m.path.starts_with("[vvar"))
            .map(|m| (m.start, m.end)),
    );
    let want_vdso = span(
        &mut plan
            .mm
            .vmas
            .iter()
            .filter(|v| v.status & st::VDSO != 0)
            .map(|v| (v.start, v.end)),
    );
    let want_vvar = span(
        &mut plan
            .mm
            .vmas
            .iter()
            .filter(|v| v.status & st::VVAR != 0)
            .map(|v| (v.start, v.end)),
    );
    let size = |r: Option<(u64, u64)>| r.map(|(s, e)| e - s);
    if size(cur_vdso) != size(want_vdso) || size(cur_vvar) != size(want_vvar) {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!(
                "the vdso/vvar sizes differ from the dump's ({:?}/{:?} here, {:?}/{:?} dumped): restore on the kernel that dumped",
                size(cur_vdso),
                size(cur_vvar),
                size(want_vdso),
                size(want_vvar)
            ),
        });
    }
    let mremap = |from: (u64, u64), to: u64| -> Result<(), RestoreError> {
        if from.0 != to {
            let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
            r.call(
                "mremap(vdso)",
                libc::SYS_mremap,
                [from.0, from.1 - from.0, from.1 - from.0, flags, to, 0],
            )?;
        }
        Ok(())
    };
    let (Some(mut vvar), Some(vdso), Some(wvvar), Some(wvdso)) = (cur_vvar, cur_vdso, want_vvar, want_vdso) else {
        return Ok(());
    };
    let len = vvar.1 - vvar.0;
    if overlaps((wvdso.0, wvdso.1), vvar) || overlaps((wvvar.0, wvvar.1), vdso) {
        let mut busy = taken.to_vec();
        busy.push((r.scratch, r.scratch + SCRATCH_LEN));
        let tmp = free_range(len, &busy).ok_or_else(|| RestoreError::Invalid {
            what: "no room to move vvar".into(),
        })?;
        mremap(vvar, tmp)?;
        vvar = (tmp, tmp + len);
    }
    mremap(vdso, wvdso.0)?;
    mremap(vvar, wvvar.0)
}

/// Reads every present page run from the pages image into place with preadv, many runs a call.
fn fill_pages(r: &Remote<'_>, plan: &Plan, pages_fd: u64) -> Result<(), RestoreError> {
    let room = ((SCRATCH_LEN - DATA) / 16) as usize;
    // The vdso's saved pages are not written back: the running kernel's vdso was moved there.
    let in_vdso = |vaddr: u64| {
        plan.mm
            .vmas
            .iter()
            .any(|v| v.status & st::VDSO != 0 && v.start <= vaddr && vaddr < v.end)
    };
    // Pieces of at most 256 MiB (a run may be GiBs; one read(2) moves at most ~2 GiB).
    const PIECE: u64 = 256 << 20;
    let mut runs = Vec::new();
    for p in plan.pagemap.runs.iter().filter(|p| p.is_present() && !in_vdso(p.vaddr)) {
        let mut done = 0;
        while done < p.len() {
            let len = (p.len() - done).min(PIECE);
            runs.push(PageRun {
                vaddr: p.vaddr + done,
                nr_pages: len / PAGE_SIZE,
                flags: p.flags,
                offset: p.offset + done,
            });
            done += len;
        }
    }
    let mut i = 0;
    while i < runs.len() {
        let offset = runs[i].offset;
        let mut iov = Vec::new();
        let mut total = 0u64;
        // One call reads runs that follow each other in the pages image.
        while i < runs.len()
            && runs[i].offset == offset + total
            && iov.len() / 16 < room.min(IOV_MAX)
            && total < (1 << 30)
        {
            iov.extend_from_slice(&words(&[runs[i].vaddr, runs[i].len()]));
            total += runs[i].len();
            i += 1;
        }
        let addr = r.put(0, &iov)?;
        let n = r.call(
            "preadv(pages)",
            libc::SYS_preadv,
            [pages_fd, addr, (iov.len() / 16) as u64, offset, 0, 0],
        )?;
        if n != total {
            // preadv stops at the first range it cannot write: name it.
            let mut at = 0;
            let mut stuck = 0;
            for pair in iov.chunks_exact(16) {
                let vaddr = u64::from_le_bytes(pair[..8].try_into().unwrap_or([0; 8]));
                let len = u64::from_le_bytes(pair[8..].try_into().unwrap_or([0; 8]));
                if at + len > n {
                    stuck = vaddr + (n - at);
                    break;
                }
                at += len;
            }
            return Err(RestoreError::Invalid {
                what: format!(
                    "pid {}: pages image: read {n} of {total} bytes, stopped at {stuck:#x}",
                    r.pid
                ),
            });
        }
    }
    Ok(())
}
