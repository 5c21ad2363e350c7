//! Reading a connection in repair mode.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{getpeername, getsockname, recv, MsgFlags, SockaddrStorage};

use crate::half_closed::fins;
use crate::sys::{self, *};
use crate::{Connection, Error, Window, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE};

/// The head of `struct tcp_info` this crate uses.
struct Info {
    state: u8,
    options: u8,
    snd_wscale: u8,
    rcv_wscale: u8,
}

fn tcp_info(fd: BorrowedFd<'_>) -> Result<Info, Error> {
    let mut buf = [0u8; 256];
    let n = getsockopt_bytes(fd, libc::SOL_TCP, TCP_INFO, &mut buf, "TCP_INFO")?;
    if n < 7 {
        return Err(Error::Sys {
            step: "TCP_INFO",
            source: std::io::Error::other(format!("only {n} bytes")),
        });
    }
    // tcpi_state, ca_state, retransmits, probes, backoff, options, then the wscale byte:
    // snd_wscale in its low 4 bits, rcv_wscale in its high 4 bits.
    Ok(Info {
        state: buf[0],
        options: buf[5],
        snd_wscale: buf[6] & 0xf,
        rcv_wscale: buf[6] >> 4,
    })
}

fn addr(a: nix::Result<SockaddrStorage>, step: &'static str) -> Result<Option<std::net::SocketAddr>, Error> {
    let a = a.map_err(|e| Error::Sys { step, source: e.into() })?;
    Ok(if let Some(v4) = a.as_sockaddr_in() {
        Some(std::net::SocketAddr::V4((*v4).into()))
    } else {
        a.as_sockaddr_in6().map(|v6| std::net::SocketAddr::V6((*v6).into()))
    })
}

/// Selects `queue`, reads its sequence number (TCP_QUEUE_SEQ) and peeks its `len` bytes.
fn queue(fd: BorrowedFd<'_>, queue: i32, len: u32, what: &'static str) -> Result<(u32, Vec<u8>), Error> {
    setsockopt(fd, libc::SOL_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")?;
    let seq: u32 = getsockopt(fd, libc::SOL_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")?;
    let mut buf = vec![0u8; len as usize + 1];
    let n = if len == 0 {
        0
    } else {
        // One byte more than the queue holds: a longer queue is an error, not a cut.
        recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT).map_err(|e| Error::Sys {
            step: what,
            source: e.into(),
        })?
    };
    if n != len as usize {
        return Err(Error::Sys {
            step: what,
            source: std::io::Error::other(format!(
                "read {n} bytes, the queue has {len} (is the connection's traffic stopped?)"
            )),
        });
    }
    buf.truncate(n);
    setsockopt(fd, libc::SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")?;
    Ok((seq, buf))
}

pub fn save(fd: BorrowedFd<'_>) -> Result<Connection, Error> {
    let info = tcp_info(fd)?;
    let f = fins(info.state)?;
    let mut outq_len = ioctl_int(fd, SIOCOUTQ, "SIOCOUTQ")?;
    let mut unsq_len = ioctl_int(fd, SIOCOUTQNSD, "SIOCOUTQNSD")?;
    // Our FIN is counted in the send queue's length while not acknowledged (and in the unsent
    // part while not sent); it is no byte of data.
    if f.sent {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    // SIOCINQ leaves the peer's FIN out already.
    let inq_len = ioctl_int(fd, SIOCINQ, "SIOCINQ")?;

    let mss_clamp: u32 = sys::getsockopt(fd, libc::SOL_TCP, TCP_MAXSEG, "TCP_MAXSEG")?;
    let opt_mask = u32::from(info.options);
    let (snd_wscale, rcv_wscale) = if opt_mask & TCPI_OPT_WSCALE != 0 {
        (u32::from(info.snd_wscale), u32::from(info.rcv_wscale))
    } else {
        (0, 0)
    };
    let timestamp = if opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        sys::getsockopt(fd, libc::SOL_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP")?
    } else {
        0
    };
    let window = match sys::getsockopt::<RepairWindow>(fd, libc::SOL_TCP, TCP_REPAIR_WINDOW, "TCP_REPAIR_WINDOW") {
        Ok(w) => Some(Window {
            snd_wl1: w.snd_wl1,
            snd_wnd: w.snd_wnd,
            max_window: w.max_window,
            rcv_wnd: w.rcv_wnd,
            rcv_wup: w.rcv_wup,
        }),
        Err(Error::Sys { source, .. }) if source.raw_os_error() == Some(libc::ENOPROTOOPT) => None,
        Err(e) => return Err(e),
    };

    let (inq_seq, inq) = queue(fd, TCP_RECV_QUEUE, inq_len, "peek the receive queue")?;
    let (outq_seq, outq) = queue(fd, TCP_SEND_QUEUE, outq_len, "peek the send queue")?;

    Ok(Connection {
        local: addr(getsockname(fd.as_raw_fd()), "getsockname")?,
        remote: addr(getpeername(fd.as_raw_fd()), "getpeername")?,
        state: info.state,
        inq_seq,
        outq_seq,
        inq,
        outq,
        unsq_len,
        opt_mask,
        snd_wscale,
        rcv_wscale,
        mss_clamp,
        timestamp,
        window,
    })
}
