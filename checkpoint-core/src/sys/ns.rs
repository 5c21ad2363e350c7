//! Namespaces: short-lived threads that join another task's namespaces (nix `sched`).

use std::fs::File;
use std::io;

use nix::sched::{setns, unshare, CloneFlags};

/// Runs `f` in a short-lived thread that joins the IPC namespace `ns` (an open
/// /proc/PID/ns/ipc): an IPC namespace is per thread, so nothing else of ours moves. SysV
/// calls, /proc/sysvipc and /proc/sys/kernel/*_next_id there all see that namespace.
pub fn in_ipc_ns<T: Send>(ns: &File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    in_ns(ns, CloneFlags::CLONE_NEWIPC, f)
}

/// Runs `f` in a short-lived thread that joins the network namespace `ns` (an open
/// /proc/PID/ns/net): the sockets and netlink queries it makes are that namespace's.
pub fn in_net_ns<T: Send>(ns: &File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    in_ns(ns, CloneFlags::CLONE_NEWNET, f)
}

fn in_ns<T: Send>(ns: &File, kind: CloneFlags, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // An IPC or network namespace is per thread, so only this thread moves.
            setns(ns, kind)?;
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
    let mnt = File::open(format!("/proc/{pid}/ns/mnt"))?;
    let net = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // The thread's filesystem context is its own after the unshare, so only this
            // thread moves.
            unshare(CloneFlags::CLONE_FS)?;
            setns(&mnt, CloneFlags::CLONE_NEWNS)?;
            setns(&net, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a thread in a container panicked")))
    })
}
