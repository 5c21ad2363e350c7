//! Saving a TCP connection and making it again, with the kernel's repair mode (TCP_REPAIR):
//! what CRIU ships as libsoccr, as a small crate usable alone.
//!
//! ```text
//! set_repair(fd, true)?;           // the connection stops sending; its state can be read
//! let c = save(fd)?;               // sequence numbers, queues, options, window
//! ...                              // (the socket may be closed: in repair mode no RST goes out)
//! let new = socket(c.local family, SOCK_STREAM)?;
//! restore(new, &c)?;               // bound, "connected" without a handshake, queues refilled
//! set_repair(new, false)?;         // it talks again
//! ```
//!
//! Repair mode needs CAP_NET_ADMIN. While a connection is saved its traffic must be stopped
//! (e.g. a netfilter rule dropping its packets, as CRIU's network lock does): an ACK that comes
//! in between the length and the bytes of a queue makes [`save`] fail.
//!
//! # States
//!
//! Supported: ESTABLISHED and the half-closed states FIN_WAIT1 (our FIN not acknowledged),
//! FIN_WAIT2 (our FIN acknowledged), CLOSE_WAIT (the peer's FIN received), LAST_ACK (both,
//! ours second and not acknowledged) and CLOSING (both, ours not acknowledged). [`restore`]
//! makes each as established first and then replays the FINs in the kernel's order: our FIN
//! with shutdown(SHUT_WR) in repair mode (with the send queue selected when it was already
//! sent, so the kernel takes it as sent; otherwise it is transmitted again), the peer's FIN and
//! its ACK of our FIN as segments sent from the peer's address to ours on a raw socket
//! (marked 0xC114, the mark CRIU's netfilter lock lets through).
//! Any other state (SYN_SENT, SYN_RECV, TIME_WAIT, CLOSE, LISTEN) is [`Error::State`].
//!
//! # Fields
//!
//! The fields of [`Connection`] mean exactly what the same-named fields of CRIU's
//! `tcp_stream_entry` (images/tcp-stream.proto) mean, so an image can be written from one and
//! one read from an image: `inq_len` = `inq.len()`, `outq_len` = `outq.len()` (the FINs are
//! not counted in either), `inq_seq`/`outq_seq` are the kernel's `rcv_nxt`/`write_seq` (the
//! sequence number after the last byte of the queue, a FIN counted), the window fields are
//! `struct tcp_repair_window`, and the inet socket entry's `state` is [`Connection::state`].
//! The queue bytes follow the entry in the image: first `inq`, then `outq`.
//!
//! Not carried over (as in CRIU): ECN (TCPI_OPT_ECN is saved in `opt_mask` but the kernel has
//! no repair option for it), microsecond timestamps (they follow the route), urgent data.
//!
//! Turning repair mode off resets SO_REUSEADDR (the kernel sets `sk_reuse` to "no"): a
//! caller that wants it set again sets it after `set_repair(fd, false)`.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

mod half_closed;
mod restore;
mod save;
mod sys;

pub use half_closed::{
    state_name, CLOSE, CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, LAST_ACK, LISTEN, SYN_RECV, SYN_SENT,
    TIME_WAIT,
};

/// `tcpi_options` bit: timestamps are on.
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
/// `tcpi_options` bit: SACK is on.
pub const TCPI_OPT_SACK: u32 = 2;
/// `tcpi_options` bit: window scaling is on.
pub const TCPI_OPT_WSCALE: u32 = 4;
/// `tcpi_options` bit: ECN was negotiated.
pub const TCPI_OPT_ECN: u32 = 8;

/// What went wrong, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket option or call the step needs failed.
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The connection is in a state this crate cannot save or make.
    #[error("TCP state {state} ({name}) is not supported")]
    State { state: u8, name: &'static str },
}

/// The receive window state (TCP_REPAIR_WINDOW).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

/// Everything needed to make a TCP connection again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The kernel's TCP state (1 established, 4 FIN_WAIT1, 5 FIN_WAIT2, 8 CLOSE_WAIT,
    /// 9 LAST_ACK, 11 CLOSING).
    pub state: u8,
    /// The kernel's `rcv_nxt` (TCP_QUEUE_SEQ of the receive queue): the sequence number
    /// after the last byte of `inq`, plus one when the peer's FIN was received. CRIU's
    /// `inq_seq`; the first byte of `inq` is `inq_seq - inq.len()` (- 1 after a FIN).
    pub inq_seq: u32,
    /// The kernel's `write_seq` (TCP_QUEUE_SEQ of the send queue): the sequence number after
    /// the last byte of `outq`, plus one when we sent a FIN. CRIU's `outq_seq`.
    pub outq_seq: u32,
    /// Received bytes the application has not read (CRIU's `inq_len` is its length).
    pub inq: Vec<u8>,
    /// Bytes written and not acknowledged by the peer, sent or not (CRIU's `outq_len` is its
    /// length; our FIN is not in it).
    pub outq: Vec<u8>,
    /// Of `outq`, how many bytes at its end were never sent (SIOCOUTQNSD, FIN not counted).
    pub unsq_len: u32,
    /// TCPI_OPT_* bits of tcp_info: timestamps, SACK, window scaling, ECN.
    pub opt_mask: u32,
    /// Our send window scale (tcpi_snd_wscale); 0 unless `opt_mask` has TCPI_OPT_WSCALE.
    pub snd_wscale: u32,
    /// Our receive window scale (tcpi_rcv_wscale); 0 unless `opt_mask` has TCPI_OPT_WSCALE.
    pub rcv_wscale: u32,
    /// TCP_MAXSEG read in repair mode: the MSS clamp (`rx_opt.mss_clamp`).
    pub mss_clamp: u32,
    /// TCP_TIMESTAMP of the connection; 0 unless `opt_mask` has TCPI_OPT_TIMESTAMPS.
    pub timestamp: u32,
    /// None when the kernel cannot say it (TCP_REPAIR_WINDOW missing).
    pub window: Option<Window>,
}

/// Turns repair mode on or off on `fd`.
pub fn set_repair(fd: BorrowedFd<'_>, on: bool) -> Result<(), Error> {
    let (val, step) = if on {
        (sys::TCP_REPAIR_ON, "TCP_REPAIR on")
    } else {
        (sys::TCP_REPAIR_OFF, "TCP_REPAIR off")
    };
    sys::setsockopt(fd, libc::SOL_TCP, sys::TCP_REPAIR, val, step)
}

/// Reads the connection of `fd`, which is in repair mode (and stays so).
pub fn save(fd: BorrowedFd<'_>) -> Result<Connection, Error> {
    save::save(fd)
}

/// Makes `fd` (a new TCP socket of the family of `c.local`, its socket options set) into
/// connection `c`: in repair mode, bound to `c.local`, connected to `c.remote` without a
/// handshake, with its sequence numbers, options, window and queues. Leaves repair mode on.
///
/// The bytes of `outq` that were sent are queued in repair mode as sent and unacknowledged
/// (they go out again when the retransmission timer says so); the last `unsq_len` were never
/// sent and are queued by an ordinary send with repair mode off for a moment, while the
/// window is still zero, so nothing is transmitted then. A socket buffer too small for a
/// queue is raised with SO_SNDBUFFORCE/SO_RCVBUFFORCE. Half-closed states: see the crate
/// docs.
pub fn restore(fd: BorrowedFd<'_>, c: &Connection) -> Result<(), Error> {
    restore::restore(fd, c)
}

/// The kernel's TCP state of `fd` (tcpi_state: [`ESTABLISHED`], [`CLOSE_WAIT`]...).
pub fn tcp_state(fd: BorrowedFd<'_>) -> Result<u8, Error> {
    restore::state(fd)
}

/// The queue lengths of `fd` as the kernel says them: (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD), i.e.
/// unread bytes, unacknowledged bytes (with our FIN), unsent bytes (with our FIN).
pub fn queue_lengths(fd: BorrowedFd<'_>) -> Result<(u32, u32, u32), Error> {
    Ok((
        sys::ioctl_int(fd, sys::SIOCINQ, "SIOCINQ")?,
        sys::ioctl_int(fd, sys::SIOCOUTQ, "SIOCOUTQ")?,
        sys::ioctl_int(fd, sys::SIOCOUTQNSD, "SIOCOUTQNSD")?,
    ))
}

impl Connection {
    /// CRIU's `inq_len`.
    pub fn inq_len(&self) -> u32 {
        self.inq.len() as u32
    }

    /// CRIU's `outq_len`.
    pub fn outq_len(&self) -> u32 {
        self.outq.len() as u32
    }

    /// The sequence number of the first byte of `inq`.
    pub fn inq_start(&self) -> Result<u32, Error> {
        Ok(restore::start_seqs(self, half_closed::fins(self.state)?).0)
    }

    /// The sequence number of the first byte of `outq` (the peer acknowledged all before).
    pub fn outq_start(&self) -> Result<u32, Error> {
        Ok(restore::start_seqs(self, half_closed::fins(self.state)?).1)
    }
}
