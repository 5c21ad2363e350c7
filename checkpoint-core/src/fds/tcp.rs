//! Established TCP connections (`--tcp-established`): their state in `tcp-stream-<ino>.img`,
//! read and made again with the `tcp-repair` crate, under the network lock.
//!
//! Dump: every connection of the tree is locked ([`crate::netlock`]), then read in repair
//! mode, and taken out of it again at once: the lock (not repair mode) keeps the connection
//! still while the tree is frozen, so a dumper killed at any point leaves no connection stuck
//! in repair mode (and its lock's keeper lifts the lock). The [`Repaired`] guard then holds
//! them: a dump that fails or leaves the tree running unlocks them; a dump whose tasks are
//! killed puts them back in repair mode just before, so that they close without a FIN or a
//! reset and leave no state behind, and leaves the lock for the restore to lift.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tcp_repair::{Connection, Window};

use crate::image::pb::{InetSkEntry, TcpStreamEntry};
use crate::image::{ImageDir, ImageKind};
use crate::netlock::{Conn, NetLock};

/// The image entry and the bytes after it (receive queue, then send queue) of `c`.
pub fn stream_entry(c: &Connection) -> (TcpStreamEntry, Vec<u8>) {
    let w = c.window;
    let entry = TcpStreamEntry {
        inq_len: c.inq.len() as u32,
        inq_seq: c.inq_seq,
        outq_len: c.outq.len() as u32,
        outq_seq: c.outq_seq,
        opt_mask: c.opt_mask,
        snd_wscale: c.snd_wscale,
        mss_clamp: c.mss_clamp,
        rcv_wscale: Some(c.rcv_wscale),
        timestamp: Some(c.timestamp),
        cork: None,
        nodelay: None,
        unsq_len: Some(c.unsq_len),
        snd_wl1: w.map(|w| w.snd_wl1),
        snd_wnd: w.map(|w| w.snd_wnd),
        max_window: w.map(|w| w.max_window),
        rcv_wnd: w.map(|w| w.rcv_wnd),
        rcv_wup: w.map(|w| w.rcv_wup),
    };
    let mut data = c.inq.clone();
    data.extend_from_slice(&c.outq);
    (entry, data)
}

/// The connection of socket `e` from its stream image `s` and queues.
pub fn connection(e: &InetSkEntry, s: &TcpStreamEntry, inq: Vec<u8>, outq: Vec<u8>) -> Connection {
    let (local, remote) = super::inet::addrs(e);
    let window = match (s.snd_wl1, s.snd_wnd, s.max_window, s.rcv_wnd, s.rcv_wup) {
        (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(rcv_wnd), Some(rcv_wup)) => Some(Window {
            snd_wl1,
            snd_wnd,
            max_window,
            rcv_wnd,
            rcv_wup,
        }),
        _ => None,
    };
    Connection {
        local: Some(local),
        remote: Some(remote),
        state: e.state as u8,
        inq_seq: s.inq_seq,
        outq_seq: s.outq_seq,
        inq,
        outq,
        unsq_len: s.unsq_len.unwrap_or(0),
        opt_mask: s.opt_mask,
        snd_wscale: s.snd_wscale,
        rcv_wscale: s.rcv_wscale.unwrap_or(0),
        mss_clamp: s.mss_clamp,
        timestamp: s.timestamp.unwrap_or(0),
        window,
    }
}

/// A connection of the tree to save: our copy of its socket and its files.img identity.
#[derive(Debug)]
pub struct Pending {
    pub pid: i32,
    pub fd: i32,
    pub ino: u32,
    pub conn: Conn,
    pub what: String,
    pub sock: OwnedFd,
    /// SO_REUSEADDR, which leaving repair mode clears: set again after.
    pub reuseaddr: bool,
}

/// The connections a dump put in repair mode, and their lock.
#[derive(Debug)]
pub struct Repaired {
    /// Our copies of the connections, and whether each had SO_REUSEADDR.
    socks: Vec<(OwnedFd, bool)>,
    lock: Option<NetLock>,
}

impl Repaired {
    /// Nothing was repaired or locked.
    pub fn none() -> Repaired {
        Repaired {
            socks: Vec::new(),
            lock: None,
        }
    }

    /// The tasks run on: the connections are unlocked.
    pub fn resume(mut self) -> io::Result<()> {
        self.socks.clear();
        if let Some(lock) = self.lock.take() {
            lock.unlock().map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// The tasks are about to be killed: their connections go back to repair mode, so that
    /// closing them sends nothing and leaves nothing.
    pub fn before_kill(&self) {
        for (s, _) in &self.socks {
            let _ = tcp_repair::set_repair(s.as_fd(), true);
        }
    }

    /// The tasks were killed: our copies are closed (in repair mode: nothing reaches the
    /// peer), and the lock stays for the restore.
    pub fn keep_locked(mut self) {
        self.socks.clear();
        if let Some(lock) = self.lock.take() {
            lock.keep();
        }
    }
}

impl Drop for Repaired {
    fn drop(&mut self) {
        // A failed dump: a connection put back in repair mode for a kill that did not come
        // leaves it. (The lock unlocks itself when dropped.)
        for (s, reuseaddr) in &self.socks {
            let _ = leave_repair(s.as_fd(), *reuseaddr);
        }
    }
}

/// Locks every connection of `pending` (in network namespace `ns`, ours if none), reads each
/// in repair mode, and writes its tcp-stream image. On error, what was done is undone.
pub fn save_all(
    pending: Vec<Pending>,
    dir: &ImageDir,
    method: crate::netlock::Method,
    ns: Option<std::fs::File>,
) -> Result<Repaired, (i32, String)> {
    if pending.is_empty() {
        return Ok(Repaired::none());
    }
    let first_pid = pending[0].pid;
    let conns = pending.iter().map(|p| p.conn).collect();
    let lock = NetLock::lock(conns, ns, method).map_err(|e| (first_pid, e.to_string()))?;
    let mut repaired = Repaired {
        socks: Vec::with_capacity(pending.len()),
        lock: Some(lock),
    };
    crate::fault::point("tcp-locked").map_err(|e| (first_pid, e.to_string()))?;
    for p in pending {
        let fail = |e: &dyn std::fmt::Display| (p.pid, format!("fd {} ({}): {e}", p.fd, p.what));
        tcp_repair::set_repair(p.sock.as_fd(), true).map_err(|e| fail(&e))?;
        let saved = save(p.sock.as_fd());
        let left = leave_repair(p.sock.as_fd(), p.reuseaddr);
        repaired.socks.push((p.sock, p.reuseaddr));
        let c = saved.map_err(|e| fail(&e))?;
        left.map_err(|e| fail(&e))?;
        let (entry, data) = stream_entry(&c);
        let write = || -> Result<(), crate::image::ImageError> {
            let mut w = dir.writer(ImageKind::TcpStream, p.ino.into())?;
            w.write(&entry)?;
            w.write_payload(&data)?;
            w.finish().map(drop)
        };
        write().map_err(|e| fail(&e))?;
    }
    crate::fault::point("tcp-repaired").map_err(|e| (first_pid, e.to_string()))?;
    Ok(repaired)
}

fn save(fd: BorrowedFd<'_>) -> Result<Connection, tcp_repair::Error> {
    tcp_repair::save(fd)
}

/// The saved connection of socket `e`, from its tcp-stream image in `dir`.
pub fn load(e: &InetSkEntry, dir: &ImageDir) -> io::Result<Connection> {
    let what = format!("socket {} ({})", e.ino, super::inet::describe(e));
    let err = |step: &str, x: &dyn std::fmt::Display| io::Error::other(format!("{what}: {step}: {x}"));
    let mut rd = dir
        .reader(ImageKind::TcpStream, e.ino.into())
        .map_err(|x| err("tcp-stream image", &x))?
        .ok_or_else(|| err("tcp-stream image", &"missing (was it dumped with --tcp-established?)"))?;
    let s: TcpStreamEntry = rd
        .next_entry()
        .map_err(|x| err("tcp-stream image", &x))?
        .ok_or_else(|| err("tcp-stream image", &"empty"))?;
    let inq = rd
        .read_payload(s.inq_len.into())
        .map_err(|x| err("receive queue", &x))?;
    let outq = rd.read_payload(s.outq_len.into()).map_err(|x| err("send queue", &x))?;
    Ok(connection(e, &s, inq, outq))
}

/// Makes new socket `fd` (options set, unbound) into connection `c` of socket `e`; it is
/// left in repair mode (see [`leave_repair`]).
pub fn restore(fd: BorrowedFd<'_>, e: &InetSkEntry, c: &Connection) -> io::Result<()> {
    tcp_repair::restore(fd, c)
        .map_err(|x| io::Error::other(format!("socket {} ({}): repair: {x}", e.ino, super::inet::describe(e))))
}

/// Takes a connection out of repair mode: from here on it talks to its peer. Leaving repair
/// mode clears SO_REUSEADDR (the kernel forces reuse while in it): it is set again if the
/// socket had it.
pub fn leave_repair(fd: BorrowedFd<'_>, reuseaddr: bool) -> io::Result<()> {
    tcp_repair::set_repair(fd, false).map_err(io::Error::other)?;
    if reuseaddr {
        crate::sys::set_sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    Ok(())
}
