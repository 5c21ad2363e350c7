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
//! Half-closed connections (FIN sent or received) are saved with their kernel state; see
//! [`restore`] for what is made of each.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

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
    /// Sequence number of the first byte of `inq` (TCP_QUEUE_SEQ of the receive queue).
    pub inq_seq: u32,
    /// Sequence number of the first byte of `outq` (TCP_QUEUE_SEQ of the send queue).
    pub outq_seq: u32,
    /// Received bytes the application has not read.
    pub inq: Vec<u8>,
    /// Bytes written and not acknowledged by the peer (sent or not).
    pub outq: Vec<u8>,
    /// Of `outq`, how many bytes at its end were never sent.
    pub unsq_len: u32,
    /// TCPI_OPT_* bits of tcp_info: timestamps, SACK, window scaling, ECN.
    pub opt_mask: u32,
    pub snd_wscale: u32,
    pub rcv_wscale: u32,
    pub mss_clamp: u32,
    /// TCP_TIMESTAMP of the connection.
    pub timestamp: u32,
    /// None when the kernel cannot say it (TCP_REPAIR_WINDOW missing).
    pub window: Option<Window>,
}

/// Turns repair mode on or off on `fd`.
pub fn set_repair(fd: BorrowedFd<'_>, on: bool) -> Result<(), Error> {
    let _ = (fd, on);
    todo!()
}

/// Reads the connection of `fd`, which is in repair mode.
pub fn save(fd: BorrowedFd<'_>) -> Result<Connection, Error> {
    let _ = fd;
    todo!()
}

/// Makes `fd` (a new TCP socket of the family of `c.local`, its socket options set) into
/// connection `c`: in repair mode, bound to `c.local`, connected to `c.remote` without a
/// handshake, with its sequence numbers, options, window and queues. Leaves repair mode on.
pub fn restore(fd: BorrowedFd<'_>, c: &Connection) -> Result<(), Error> {
    let _ = (fd, c);
    todo!()
}
