//! Making a connection again on a new socket.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{bind, connect, send, shutdown, MsgFlags, Shutdown, SockaddrStorage};

use crate::half_closed::{self, fins, send_as_peer, Fins, TH_ACK, TH_FIN};
use crate::sys::{self, *};
use crate::{set_repair, Connection, Error, TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE};

fn nix_err(step: &'static str) -> impl Fn(nix::Error) -> Error {
    move |e| Error::Sys { step, source: e.into() }
}

fn other(step: &'static str, msg: String) -> Error {
    Error::Sys {
        step,
        source: std::io::Error::other(msg),
    }
}

fn select_queue(fd: BorrowedFd<'_>, q: i32) -> Result<(), Error> {
    setsockopt(fd, libc::SOL_TCP, TCP_REPAIR_QUEUE, q, "TCP_REPAIR_QUEUE")
}

/// The sequence numbers the new socket starts from: the first byte of each queue. The saved
/// ones are the kernel's `rcv_nxt` and `write_seq`, which count a FIN; the FINs are made
/// again at the end (see [`make_fins`]).
pub fn start_seqs(c: &Connection, f: Fins) -> (u32, u32) {
    let inq_end = c.inq_seq.wrapping_sub(u32::from(f.received));
    let outq_end = c.outq_seq.wrapping_sub(u32::from(f.sent));
    (
        inq_end.wrapping_sub(c.inq.len() as u32),
        outq_end.wrapping_sub(c.outq.len() as u32),
    )
}

/// Makes sure one socket buffer (SO_SNDBUF or SO_RCVBUF) can hold `len` bytes of queue:
/// raised with the *FORCE option (CAP_NET_ADMIN) only when it is too small.
fn ensure_buffer(fd: BorrowedFd<'_>, len: usize, send_side: bool) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    let (get, force, step) = if send_side {
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, "SO_SNDBUFFORCE")
    } else {
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, "SO_RCVBUFFORCE")
    };
    // Room for the bytes and the kernel's per-buffer overhead.
    let want = len.saturating_mul(2).saturating_add(256 << 10);
    let have: i32 = sys::getsockopt(fd, libc::SOL_SOCKET, get, step)?;
    if (have.max(0) as usize) < want {
        // The kernel doubles the value it is given.
        let v = i32::try_from(want / 2).unwrap_or(i32::MAX);
        setsockopt(fd, libc::SOL_SOCKET, force, v, step)?;
    }
    Ok(())
}

/// Sends `buf` whole in chunks, halving the chunk while the kernel refuses one for memory.
fn send_all(fd: BorrowedFd<'_>, buf: &[u8], step: &'static str) -> Result<(), Error> {
    let mut off = 0;
    let mut chunk = buf.len();
    while off < buf.len() {
        let end = (off + chunk).min(buf.len());
        match send(
            fd.as_raw_fd(),
            &buf[off..end],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(0) => return Err(other(step, format!("sent 0 bytes at {off} of {}", buf.len()))),
            Ok(n) => off += n,
            Err(nix::Error::ENOMEM | nix::Error::EAGAIN | nix::Error::ENOBUFS) if chunk > 1024 => {
                chunk /= 2;
            }
            Err(e) => {
                return Err(Error::Sys {
                    step,
                    source: std::io::Error::new(
                        std::io::Error::from(e).kind(),
                        format!("{e} at byte {off} of {}", buf.len()),
                    ),
                })
            }
        }
    }
    Ok(())
}

fn repair_options(fd: BorrowedFd<'_>, c: &Connection) -> Result<(), Error> {
    let mut opts = Vec::with_capacity(4);
    if c.opt_mask & TCPI_OPT_SACK != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_SACK_PERM,
            val: 0,
        });
    }
    if c.opt_mask & TCPI_OPT_WSCALE != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_WINDOW,
            val: c.snd_wscale | (c.rcv_wscale << 16),
        });
    }
    if c.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_TIMESTAMP,
            val: 0,
        });
    }
    opts.push(RepairOpt {
        code: TCPOPT_MSS,
        val: c.mss_clamp,
    });
    setsockopt_slice(fd, libc::SOL_TCP, TCP_REPAIR_OPTIONS, &opts, "TCP_REPAIR_OPTIONS")?;
    if c.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        setsockopt(fd, libc::SOL_TCP, TCP_TIMESTAMP, c.timestamp, "TCP_TIMESTAMP")?;
    }
    Ok(())
}

/// The kernel's state of `fd`.
pub fn state(fd: BorrowedFd<'_>) -> Result<u8, Error> {
    let mut buf = [0u8; 8];
    getsockopt_bytes(fd, libc::SOL_TCP, TCP_INFO, &mut buf, "TCP_INFO")?;
    Ok(buf[0])
}

/// Waits (a little) until the socket reaches `want` (or `or`, where the real peer may move it
/// on at once): the segments we play as the peer are taken in by the kernel asynchronously.
fn wait_state(fd: BorrowedFd<'_>, want: u8, or: u8, step: &'static str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = state(fd)?;
        if s == want || s == or {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(other(
                step,
                format!(
                    "socket is {} ({s}), want {} ({want})",
                    half_closed::state_name(s),
                    half_closed::state_name(want)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Our FIN: shutdown(SHUT_WR) in repair mode. With the send queue selected the kernel takes
/// the FIN as sent already (not transmitted); with no queue it transmits it.
fn our_fin(fd: BorrowedFd<'_>, already_sent: bool) -> Result<(), Error> {
    select_queue(fd, if already_sent { TCP_SEND_QUEUE } else { TCP_NO_QUEUE })?;
    shutdown(fd.as_raw_fd(), Shutdown::Write).map_err(nix_err("shutdown(SHUT_WR) for our FIN"))?;
    select_queue(fd, TCP_NO_QUEUE)
}

/// Makes the FINs of a half-closed state again on an established socket, in the order the
/// kernel went through them.
fn make_fins(fd: BorrowedFd<'_>, c: &Connection, f: Fins, local: SocketAddr, remote: SocketAddr) -> Result<(), Error> {
    let (inq_start, outq_start) = start_seqs(c, f);
    // The peer's FIN has the sequence number after the last byte of the receive queue; it
    // acknowledges what the peer acknowledged (the start of our send queue).
    let peer_fin_seq = inq_start.wrapping_add(c.inq.len() as u32);
    let snd_una = outq_start;
    let window = match (c.window, c.opt_mask & TCPI_OPT_WSCALE != 0) {
        (Some(w), true) => (w.snd_wnd >> c.snd_wscale.min(14)).min(0xffff) as u16,
        (Some(w), false) => w.snd_wnd.min(0xffff) as u16,
        (None, _) => 0xffff,
    };
    if f.sent && !f.sent_second {
        // shutdown() moves the state at once: no wait.
        our_fin(fd, f.sent_acked)?;
    }
    if f.received {
        send_as_peer(remote, local, peer_fin_seq, snd_una, TH_FIN | TH_ACK, window)?;
        if f.sent && !f.sent_second {
            // The real peer may acknowledge our (retransmitted) FIN at once: CLOSING ends.
            wait_state(fd, half_closed::CLOSING, half_closed::CLOSE, "the peer's FIN")?;
        } else {
            wait_state(fd, half_closed::CLOSE_WAIT, half_closed::CLOSE_WAIT, "the peer's FIN")?;
        }
    }
    if f.sent_second {
        our_fin(fd, false)?;
    }
    if f.sent_acked {
        // The peer's ACK of our FIN: everything of ours up to and with the FIN.
        let ack = c.outq_seq.wrapping_sub(c.outq.len() as u32);
        send_as_peer(remote, local, peer_fin_seq, ack, TH_ACK, window)?;
        wait_state(
            fd,
            half_closed::FIN_WAIT2,
            half_closed::CLOSE,
            "the peer's ACK of our FIN",
        )?;
    }
    Ok(())
}

pub fn restore(fd: BorrowedFd<'_>, c: &Connection) -> Result<(), Error> {
    let f = fins(c.state)?;
    let (Some(local), Some(remote)) = (c.local, c.remote) else {
        return Err(other("restore", "the connection has no local or remote address".into()));
    };
    let unsent = c.unsq_len as usize;
    if unsent > c.outq.len() {
        return Err(other(
            "restore",
            format!("unsq_len {} is longer than the send queue ({})", unsent, c.outq.len()),
        ));
    }
    set_repair(fd, true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local)).map_err(nix_err("bind to the local address"))?;

    let (inq_start, outq_start) = start_seqs(c, f);
    select_queue(fd, TCP_RECV_QUEUE)?;
    setsockopt(
        fd,
        libc::SOL_TCP,
        TCP_QUEUE_SEQ,
        inq_start,
        "TCP_QUEUE_SEQ of the receive queue",
    )?;
    select_queue(fd, TCP_SEND_QUEUE)?;
    setsockopt(
        fd,
        libc::SOL_TCP,
        TCP_QUEUE_SEQ,
        outq_start,
        "TCP_QUEUE_SEQ of the send queue",
    )?;
    select_queue(fd, TCP_NO_QUEUE)?;

    // In repair mode connect() makes the connection established without a handshake.
    connect(fd.as_raw_fd(), &SockaddrStorage::from(remote)).map_err(nix_err("connect to the remote address"))?;
    repair_options(fd, c)?;

    ensure_buffer(fd, c.inq.len(), false)?;
    ensure_buffer(fd, c.outq.len(), true)?;
    if !c.inq.is_empty() {
        select_queue(fd, TCP_RECV_QUEUE)?;
        send_all(fd, &c.inq, "refill the receive queue")?;
    }
    let sent = c.outq.len() - unsent;
    if sent > 0 {
        // Sent before: in repair mode the kernel queues them as sent and not acknowledged.
        select_queue(fd, TCP_SEND_QUEUE)?;
        send_all(fd, &c.outq[..sent], "refill the sent part of the send queue")?;
    }
    select_queue(fd, TCP_NO_QUEUE)?;
    if unsent > 0 {
        // Never sent: queued by an ordinary send with repair off, as unsent data. The window
        // is still zero here, so nothing goes out yet.
        setsockopt(
            fd,
            libc::SOL_TCP,
            TCP_REPAIR,
            TCP_REPAIR_OFF_NO_WP,
            "TCP_REPAIR off (no probe)",
        )?;
        let r = send_all(fd, &c.outq[sent..], "queue the unsent part of the send queue");
        set_repair(fd, true)?;
        r?;
    }

    if let Some(w) = c.window {
        let mut w = RepairWindow {
            snd_wl1: w.snd_wl1,
            snd_wnd: w.snd_wnd,
            max_window: w.max_window,
            rcv_wnd: w.rcv_wnd,
            rcv_wup: w.rcv_wup,
        };
        if f.received {
            // The peer's FIN is not in rcv_nxt yet; the window must not start after it.
            w.rcv_wup = w.rcv_wup.wrapping_sub(1);
            w.rcv_wnd = w.rcv_wnd.wrapping_add(1);
        }
        setsockopt(fd, libc::SOL_TCP, TCP_REPAIR_WINDOW, w, "TCP_REPAIR_WINDOW")?;
    }

    make_fins(fd, c, f, local, remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::half_closed::{CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT2};

    fn conn(state: u8, inq_seq: u32, outq_seq: u32, inq: usize, outq: usize) -> Connection {
        Connection {
            state,
            inq_seq,
            outq_seq,
            inq: vec![0; inq],
            outq: vec![0; outq],
            ..Default::default()
        }
    }

    #[test]
    fn queues_start_before_their_bytes_and_fins() {
        let c = conn(ESTABLISHED, 1000, 5000, 100, 300);
        assert_eq!(start_seqs(&c, fins(c.state).unwrap()), (900, 4700));
        // The peer's FIN took one number after the receive queue.
        let c = conn(CLOSE_WAIT, 1001, 5000, 100, 300);
        assert_eq!(start_seqs(&c, fins(c.state).unwrap()), (900, 4700));
        // Our FIN, acknowledged: the send queue is empty and starts after it.
        let c = conn(FIN_WAIT2, 1000, 5001, 100, 0);
        assert_eq!(start_seqs(&c, fins(c.state).unwrap()), (900, 5000));
        let c = conn(CLOSING, 1001, 5001, 100, 300);
        assert_eq!(start_seqs(&c, fins(c.state).unwrap()), (900, 4700));
        // Sequence numbers wrap.
        let c = conn(CLOSE_WAIT, 10, 5, 100, 300);
        assert_eq!(
            start_seqs(&c, fins(c.state).unwrap()),
            (10u32.wrapping_sub(101), 5u32.wrapping_sub(300))
        );
    }
}
