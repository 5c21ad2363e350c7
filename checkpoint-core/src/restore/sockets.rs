//! The IPv4/IPv6 and netlink sockets of the restored tree, made in the controller before any
//! puppet exists (in a container's network namespace for a container), under the network
//! lock: listeners first (connections share their ports), then UDP and closed sockets,
//! netlink sockets, and the connections, made in TCP repair mode from their saved state.
//! Once the tree is built the connections leave repair mode; once it runs, the lock goes.

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use super::plan::Tree;
use super::{object, RestoreError, RestoreOpts};
use crate::fds::inet::{self, state};
use crate::image::ImageDir;
use crate::netlock::{Conn, NetLock};

/// The sockets made, and what is left to do with them.
#[derive(Debug, Default)]
pub struct MadeSockets {
    /// Our fd for each socket, by files.img id.
    pub by_id: Vec<(u32, Rc<OwnedFd>)>,
    /// The connections in repair mode, and whether each had SO_REUSEADDR.
    repaired: Vec<(Rc<OwnedFd>, bool)>,
    /// The lock held until the tree runs, and the connections whose lock (ours, or the
    /// dump's) is lifted then.
    lock: Option<NetLock>,
    conns: Vec<Conn>,
    ns: Option<std::fs::File>,
    method: crate::netlock::Method,
}

fn is_connection(e: &crate::image::pb::InetSkEntry) -> bool {
    e.proto == libc::IPPROTO_TCP as u32 && e.r#type == libc::SOCK_STREAM as u32 && state::connected(e.state as u8)
}

/// Makes every inet and netlink socket of `tree`; `container` is the init's pid (our view)
/// when the sockets belong in its network namespace.
pub fn make(
    tree: &Tree,
    dir: &ImageDir,
    opts: &RestoreOpts,
    container: Option<i32>,
) -> Result<MadeSockets, RestoreError> {
    let pid0 = tree.tasks[0].pid;
    let mut made = MadeSockets {
        method: tree.net_lock,
        ..Default::default()
    };
    if tree.inet.is_empty() && tree.netlink.is_empty() && tree.packet.is_empty() {
        return Ok(made);
    }
    let connections: Vec<&crate::image::pb::InetSkEntry> = tree.inet.iter().filter(|e| is_connection(e)).collect();
    if let Some(e) = connections.first().filter(|_| !opts.tcp_established && !opts.tcp_close) {
        return Err(RestoreError::Unsupported {
            pid: pid0,
            what: format!(
                "socket {} ({}) is an established TCP connection: restore with --tcp-established (or --tcp-close)",
                e.ino,
                inet::describe(e)
            ),
        });
    }
    made.ns = match container {
        Some(pid) => Some(
            std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(object(pid0, "the container's network namespace"))?,
        ),
        None => None,
    };
    made.conns = connections
        .iter()
        .map(|e| {
            let (local, remote) = inet::addrs(e);
            Conn { local, remote }
        })
        .collect();
    // The dump's lock (CRIU's or ours) is kept, or taken here (another host, or skip).
    let ns_copy = made.ns.as_ref().map(std::fs::File::try_clone).transpose();
    let ns_copy = ns_copy.map_err(object(pid0, "the network namespace"))?;
    if opts.tcp_established && !opts.tcp_close {
        made.lock =
            Some(
                NetLock::lock(made.conns.clone(), ns_copy, tree.net_lock).map_err(|e| RestoreError::Invalid {
                    what: format!("pid {pid0}: {e}"),
                })?,
            );
    }
    let tcp_close = opts.tcp_close || !opts.tcp_established;
    // Read here: the sockets are made inside a container's mount namespace, where the
    // images are not.
    let mut saved = std::collections::BTreeMap::new();
    if !tcp_close {
        for e in &connections {
            let c = crate::fds::tcp::load(e, dir).map_err(object(pid0, "a TCP connection's image"))?;
            saved.insert(e.id, c);
        }
    }
    // Which task and fd held each socket, for errors.
    let holder = |id: u32| {
        tree.alive()
            .flat_map(|(_, p)| p.fds.iter().map(move |f| (p.pid, f)))
            .find(|(_, f)| f.file_id == id)
            .map_or((pid0, -1), |(pid, f)| (pid, f.fd))
    };
    let failed = |id: u32| {
        move |e: std::io::Error| {
            let (pid, fd) = holder(id);
            std::io::Error::new(e.kind(), format!("pid {pid}: fd {fd}: {e}"))
        }
    };
    let reuse: std::collections::BTreeMap<u32, bool> = tree
        .inet
        .iter()
        .map(|e| (e.id, e.opts.reuseaddr == Some(true)))
        .collect();
    let build = || -> std::io::Result<Vec<(u32, OwnedFd, bool)>> {
        let mut out = Vec::new();
        let order = |e: &&crate::image::pb::InetSkEntry| match e.state as u8 {
            state::LISTEN => 0,
            s if state::connected(s) => 2,
            _ => 1,
        };
        let mut inet_entries: Vec<&crate::image::pb::InetSkEntry> = tree.inet.iter().collect();
        inet_entries.sort_by_key(order);
        for e in inet_entries {
            if is_connection(e) && tcp_close {
                // A closed socket of the same kind: reads and writes fail as after a reset.
                let mut closed = e.clone();
                closed.state = state::CLOSE.into();
                closed.src_port = 0;
                closed.src_addr.iter_mut().for_each(|w| *w = 0);
                let fd = inet::make(&closed).map_err(failed(e.id))?;
                // Shut down both ways: a read says end of file, a write EPIPE, as after the
                // peer closed (the kernel records the shutdown though it says ENOTCONN).
                match crate::sys::shutdown(fd.as_fd(), libc::SHUT_RDWR) {
                    Err(x) if x.raw_os_error() != Some(libc::ENOTCONN) => return Err(failed(e.id)(x)),
                    _ => {}
                }
                out.push((e.id, fd, false));
                continue;
            }
            let fd = inet::make(e).map_err(failed(e.id))?;
            let repaired = is_connection(e);
            if repaired {
                let c = saved
                    .get(&e.id)
                    .ok_or_else(|| std::io::Error::other(format!("socket {}: no saved connection", e.ino)))
                    .map_err(failed(e.id))?;
                crate::fds::tcp::restore(fd.as_fd(), e, c).map_err(failed(e.id))?;
            }
            out.push((e.id, fd, repaired));
        }
        // Datagrams waiting in UDP sockets come again from their senders.
        for (id, fd, _) in &out {
            let Some(queue) = tree.inet_queues.get(id) else {
                continue;
            };
            let local =
                crate::sys::inet_name(fd.as_fd())?.ok_or_else(|| std::io::Error::other("an unnamed UDP socket"))?;
            for (from, data) in queue {
                let dst = crate::fds::udp::destination(local, *from);
                let packet = crate::fds::udp::packet(*from, dst, data)?;
                crate::sys::send_raw_ip(dst, &packet)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("a datagram from {from} to {dst}: {e}")))
                    .map_err(failed(*id))?;
            }
        }
        for e in &tree.packet {
            out.push((e.id, crate::fds::packet::make(e, e.id).map_err(failed(e.id))?, false));
        }
        for e in &tree.netlink {
            out.push((e.id, crate::fds::netlink::make(e).map_err(failed(e.id))?, false));
        }
        Ok(out)
    };
    let sockets = match container {
        Some(pid) => crate::sys::in_container(pid, build),
        None => build(),
    }
    .map_err(object(pid0, "sockets"))?;
    for (id, fd, repaired) in sockets {
        let fd = Rc::new(fd);
        if repaired {
            made.repaired
                .push((fd.clone(), reuse.get(&id).copied().unwrap_or(false)));
        }
        made.by_id.push((id, fd));
    }
    Ok(made)
}

impl MadeSockets {
    /// The tree is built: the connections leave repair mode.
    pub fn connect(&mut self, pid: i32) -> Result<(), RestoreError> {
        for (fd, reuseaddr) in self.repaired.drain(..) {
            crate::fds::tcp::leave_repair(fd.as_fd(), reuseaddr)
                .map_err(object(pid, "a TCP connection leaving repair mode"))?;
        }
        Ok(())
    }

    /// The tree runs: the lock goes, ours or the one the dump left.
    pub fn unlock(mut self, pid: i32) -> Result<(), RestoreError> {
        let held = self.lock.take();
        let result = match held {
            Some(lock) => lock.unlock(),
            None if self.method == crate::netlock::Method::Skip || self.conns.is_empty() => Ok(()),
            None => crate::netlock::unlock(&self.conns, self.ns.as_ref()),
        };
        result.map_err(|e| RestoreError::Invalid {
            what: format!("pid {pid}: {e}"),
        })
    }
}
