//! The puppet's files: every fd at its number (pulled from the open files the controller
//! prepared), epoll targets registered, file locks taken, the controlling terminal taken again,
//! cwd and umask.

use std::os::fd::AsRawFd;

use super::Remote;
use crate::restore::plan::Plan;
use crate::restore::prepare::{LateFile, LateOpen};
use crate::restore::{Prepared, RestoreError};

/// Installs the files of `plan` in the puppet, from what `prep` holds.
pub(super) fn install(r: &Remote<'_>, plan: &Plan, prep: &Prepared) -> Result<(), RestoreError> {
    for (fd, cloexec, file) in &prep.fds {
        let got = r.pull(file.as_raw_fd())?;
        let flags = if *cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        r.call("dup3", libc::SYS_dup3, [got, *fd as u64, flags, 0, 0, 0])?;
        r.close(got)?;
    }
    for (epfd, targets) in &prep.epoll {
        for t in targets {
            register(r, plan, *epfd, t)?;
        }
    }
    for l in &plan.locks {
        use crate::fds::locks::{flock_bytes, is_write, FL_FLOCK, FL_LEASE, FL_OFDLCK};
        const F_OFD_SETLK: u64 = 37;
        let fd = l.fd as u64;
        if l.flag == FL_LEASE {
            let kind = if is_write(l) { libc::F_WRLCK } else { libc::F_RDLCK };
            r.call(
                "fcntl(F_SETLEASE)",
                libc::SYS_fcntl,
                [fd, libc::F_SETLEASE as u64, kind as u64, 0, 0, 0],
            )
            .map_err(|e| RestoreError::Invalid {
                what: format!("pid {}: fd {fd}: its lease: {e}", r.pid),
            })?;
        } else if l.flag == FL_FLOCK {
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
    Ok(())
}

/// Shuts a chroot'ed task in its root again (chroot to it, then back to its cwd). Last of its
/// files: what the puppet opens by path (its /proc files) is opened before.
pub(super) fn chroot(r: &Remote<'_>, prep: &Prepared) -> Result<(), RestoreError> {
    let Some(root) = &prep.root else {
        return Ok(());
    };
    let failed = |what: &'static str| {
        move |e: RestoreError| RestoreError::Invalid {
            what: format!("pid {}: its root directory: {what}: {e}", r.pid),
        }
    };
    let fd = r.pull(root.as_raw_fd())?;
    r.call("fchdir", libc::SYS_fchdir, [fd, 0, 0, 0, 0, 0])
        .map_err(failed("fchdir"))?;
    r.close(fd)?;
    let dot = r.put(0, b".\0")?;
    r.call("chroot", libc::SYS_chroot, [dot, 0, 0, 0, 0, 0])
        .map_err(failed("chroot"))?;
    let cwd = r.pull(prep.cwd.as_raw_fd())?;
    r.call("fchdir", libc::SYS_fchdir, [cwd, 0, 0, 0, 0, 0])
        .map_err(failed("fchdir to the cwd"))?;
    r.close(cwd)
}

/// Opens the files the puppet opens itself (the tree's /proc files, pidfds), once its
/// threads exist (a thread's /proc/PID/task/TID exists only then).
pub(super) fn open_late_files(r: &Remote<'_>, prep: &Prepared) -> Result<(), RestoreError> {
    for (i, f) in prep.late_files.iter().enumerate() {
        open_late_file(r, f, prep.late_files[..i].iter().find(|o| o.file_id == f.file_id))?;
    }
    Ok(())
}

/// Opens one [`LateFile`] at its fd: a /proc file at its offset, a pidfd; or a duplicate of
/// `first`, an earlier fd on the same open file.
fn open_late_file(r: &Remote<'_>, f: &LateFile, first: Option<&LateFile>) -> Result<(), RestoreError> {
    let cloexec = if f.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
    if let Some(first) = first {
        return r
            .call("dup3", libc::SYS_dup3, [first.fd as u64, f.fd as u64, cloexec, 0, 0, 0])
            .map(drop);
    }
    let failed = |what: String| {
        move |e: RestoreError| RestoreError::Invalid {
            what: format!("pid {}: fd {}: {what}: {e}", r.pid, f.fd),
        }
    };
    let got = match &f.open {
        LateOpen::Proc { path, flags, pos } => {
            let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECTORY | libc::O_PATH;
            let mut bytes = path.as_bytes().to_vec();
            bytes.push(0);
            let at = r.put(0, &bytes)?;
            let oflags = (*flags as i32 & keep | libc::O_CLOEXEC) as u64;
            let got = r
                .call(
                    "openat(/proc)",
                    libc::SYS_openat,
                    [libc::AT_FDCWD as u64, at, oflags, 0, 0, 0],
                )
                .map_err(failed(format!("reopening {path}")))?;
            if *flags as i32 & libc::O_PATH == 0 && *pos != 0 {
                r.call("lseek", libc::SYS_lseek, [got, *pos, libc::SEEK_SET as u64, 0, 0, 0])
                    .map_err(failed(format!("seeking {path}")))?;
            }
            got
        }
        LateOpen::Pidfd { pid, flags } => {
            let nonblock = (*flags as i32 & libc::O_NONBLOCK) as u64;
            r.call("pidfd_open", libc::SYS_pidfd_open, [*pid as u64, nonblock, 0, 0, 0, 0])
                .map_err(failed(format!("a pidfd of {pid}")))?
        }
    };
    if got == f.fd as u64 {
        // It landed on its own number (the lowest free one).
        let fd_flags = if f.cloexec { libc::FD_CLOEXEC as u64 } else { 0 };
        return r
            .call(
                "fcntl(F_SETFD)",
                libc::SYS_fcntl,
                [got, libc::F_SETFD as u64, fd_flags, 0, 0, 0],
            )
            .map(drop);
    }
    r.call("dup3", libc::SYS_dup3, [got, f.fd as u64, cloexec, 0, 0, 0])?;
    r.close(got)
}

/// Registers `t` in epoll fd `epfd`. A registration whose file is now held at another fd
/// (`held_at`: its own fd was closed or reused) is made with that file put at its fd number
/// for the moment (the kernel keys registrations by file and number), and what that number
/// holds is put back after.
fn register(
    r: &Remote<'_>,
    plan: &Plan,
    epfd: i32,
    t: &crate::image::pb::EventpollTfdEntry,
) -> Result<(), RestoreError> {
    let ev = r.put(0, &crate::fds::epoll::event_bytes(t))?;
    let add = |fd: u64| {
        r.call(
            "epoll_ctl(ADD)",
            libc::SYS_epoll_ctl,
            [epfd as u64, libc::EPOLL_CTL_ADD as u64, fd, ev, 0, 0],
        )
    };
    let n = u64::from(t.tfd);
    let Some(held) = t.held_at.filter(|&h| h != t.tfd) else {
        return add(n).map(drop);
    };
    let there = plan.fds.iter().find(|f| f.fd as u32 == t.tfd);
    let saved = match there {
        Some(_) => Some(r.call(
            "fcntl(F_DUPFD)",
            libc::SYS_fcntl,
            [n, libc::F_DUPFD as u64, r.helper_base, 0, 0, 0],
        )?),
        None => None,
    };
    r.call("dup3", libc::SYS_dup3, [held.into(), n, 0, 0, 0, 0])?;
    add(n)?;
    match (saved, there) {
        (Some(h), Some(f)) => {
            let flags = if f.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            r.call("dup3", libc::SYS_dup3, [h, n, flags, 0, 0, 0])?;
            r.close(h)
        }
        _ => r.close(n),
    }
}

/// Gives each file its owner, signal and O_ASYNC again, from the puppet itself (the owner is
/// its pid inside, and O_ASYNC's signals carry the fd number that turned it on). Run once the
/// task's threads exist: a file may send its signals to one of them.
pub(super) fn set_owners(r: &Remote<'_>, plan: &Plan) -> Result<(), RestoreError> {
    let (setown_ex, setsig) = crate::sys::OWNER_COMMANDS;
    for p in &plan.fds {
        let Some((fown, async_io)) = &p.owner else { continue };
        let fd = p.fd as u64;
        let failed = |what: &str| {
            let what = format!("pid {}: fd {}: {what}", plan.pid, p.fd);
            move |e: RestoreError| RestoreError::Invalid {
                what: format!("{what}: {e}"),
            }
        };
        if fown.pid != 0 {
            let mut owner = fown.pid_type.to_le_bytes().to_vec();
            owner.extend_from_slice(&fown.pid.to_le_bytes());
            let at = r.put(0, &owner)?;
            r.call("fcntl(F_SETOWN_EX)", libc::SYS_fcntl, [fd, setown_ex, at, 0, 0, 0])
                .map_err(failed(&format!("its signals to {} (type {})", fown.pid, fown.pid_type)))?;
        }
        if fown.signum != 0 {
            r.call(
                "fcntl(F_SETSIG)",
                libc::SYS_fcntl,
                [fd, setsig, fown.signum.into(), 0, 0, 0],
            )
            .map_err(failed(&format!("signal {}", fown.signum)))?;
        }
        if *async_io {
            // Off first: a file opened with O_ASYNC has the flag without its registration,
            // and F_SETFL registers only on a change.
            let fl = r.call(
                "fcntl(F_GETFL)",
                libc::SYS_fcntl,
                [fd, libc::F_GETFL as u64, 0, 0, 0, 0],
            )?;
            let a = libc::O_ASYNC as u64;
            for flags in [fl & !a, fl | a] {
                r.call(
                    "fcntl(F_SETFL)",
                    libc::SYS_fcntl,
                    [fd, libc::F_SETFL as u64, flags, 0, 0, 0],
                )
                .map_err(failed("O_ASYNC"))?;
            }
        }
    }
    Ok(())
}
