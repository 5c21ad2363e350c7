//! Sockets: AF_UNIX sockets and their names, fd passing, peeking at receive queues, integer
//! socket options.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, connect, recvmsg, send, sendmsg, sendto, socket, socketpair, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, Shutdown, SockFlag, SockType, UnixAddr,
};

use super::cvt;

/// Sends our `fd` over the unix socket `sock` (one byte, SCM_RIGHTS).
pub fn send_fd(sock: BorrowedFd<'_>, fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let n = sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[0u8])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if n != 1 {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// What `recvmsg(MSG_PEEK)` found in a socket's receive queue: the messages (one per
/// datagram; stream data in one piece), and whether any carried fds (SCM_RIGHTS).
pub struct Peeked {
    pub messages: Vec<Vec<u8>>,
    pub passes_fds: bool,
}

/// The most reads of one queue: a queue that does not end by then is an error, not a loop.
const MAX_PEEKS: usize = 100_000;

/// Reads a socket's receive queue without taking anything from it (SO_PEEK_OFF moves through
/// it; it is put back as it was). `total`, when known, is how many bytes it holds (a
/// connection-oriented socket whose peer has closed answers every read past them with 0, the
/// end: that is where reading stops).
pub fn peek_queue(fd: BorrowedFd<'_>, stream: bool, total: Option<u64>) -> io::Result<Peeked> {
    let old = sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    set_sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Peeked {
        messages: Vec::new(),
        passes_fds: false,
    };
    let mut buf = vec![0u8; 256 * 1024];
    // nix hands the kernel the buffer's length (not its capacity): zeroed bytes with room for
    // the most fds one message can pass (SCM_MAX_FD, 253) and credentials, a pidfd or a security
    // label beside them, so that nothing is cut short (MSG_CTRUNC, taken as passed fds) and
    // every passed fd is seen, and closed below.
    let mut cbuf = vec![0u8; 8192];
    let mut seen: u64 = 0;
    let mut peeks = 0;
    let result = loop {
        peeks += 1;
        if peeks > MAX_PEEKS {
            break Err(io::Error::other(format!(
                "its queue did not end after {MAX_PEEKS} reads ({seen} bytes)"
            )));
        }
        let peeked = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            recvmsg::<()>(
                fd.as_raw_fd(),
                &mut iov,
                Some(&mut cbuf),
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map(|r| {
                // A truncated control buffer (MSG_CTRUNC) held more fds than it had room for.
                let Ok(cmsgs) = r.cmsgs() else {
                    return (r.bytes, true);
                };
                let mut rights = false;
                for m in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = m {
                        rights = true;
                        // Even a peek installs the passed fds in our table: close them again.
                        for f in fds {
                            let _ = nix::unistd::close(f);
                        }
                    }
                }
                (r.bytes, rights)
            })
        };
        let (n, rights) = match peeked {
            Ok(p) => p,
            Err(Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(io::Error::from(e)),
        };
        if n == 0 && (stream || total.is_some_and(|t| seen >= t)) {
            break Ok(());
        }
        seen += n as u64;
        out.passes_fds |= rights;
        if stream && !out.messages.is_empty() {
            out.messages[0].extend_from_slice(&buf[..n]);
        } else {
            out.messages.push(buf[..n].to_vec());
        }
    };
    set_sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    result.map(|()| out)
}

/// An integer socket option of our fd. Raw libc: nix has typed options only, not a
/// getsockopt by level and name.
pub fn sockopt(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len are locals of the sizes passed.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Sets an integer socket option of our fd (raw, as [`sockopt`]).
pub fn set_sockopt(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: v is a local int of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `kind` (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) as nix's type.
fn sock_type(kind: i32) -> io::Result<SockType> {
    Ok(SockType::try_from(kind)?)
}

/// A new AF_UNIX socket of `kind`, close-on-exec.
pub fn unix_socket(kind: i32) -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        sock_type(kind)?,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// A connected pair of AF_UNIX sockets of `kind`, close-on-exec.
pub fn unix_pair(kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        sock_type(kind)?,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// The address of AF_UNIX name `name` as the kernel reports it: empty (unnamed: bind
/// autobinds), abstract (a leading NUL, then the exact bytes), or a path (up to its first
/// NUL, as the kernel reads it).
fn unix_addr(name: &[u8]) -> io::Result<UnixAddr> {
    let addr = match name {
        [] => Ok(UnixAddr::new_unnamed()),
        [0, abs @ ..] => UnixAddr::new_abstract(abs),
        path => UnixAddr::new(path.split(|&b| b == 0).next().unwrap_or_default()),
    };
    addr.map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// bind(2) an AF_UNIX socket to `name` (a path, or an abstract name starting with NUL).
pub fn unix_bind(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(bind(fd.as_raw_fd(), &unix_addr(name)?)?)
}

/// connect(2) an AF_UNIX socket to `name`.
pub fn unix_connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(connect(fd.as_raw_fd(), &unix_addr(name)?)?)
}

/// listen(2). Raw libc: nix's `Backlog` refuses values above SOMAXCONN (4096), while the
/// kernel's limit is net.core.somaxconn, which may be higher.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// accept4(2), close-on-exec.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let new = accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// send(2) one message (a datagram, or stream bytes), or sendto `name` when given.
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], name: Option<&[u8]>) -> io::Result<()> {
    let n = match name {
        Some(name) => sendto(fd.as_raw_fd(), data, &unix_addr(name)?, MsgFlags::MSG_DONTWAIT)?,
        None => send(fd.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT)?,
    };
    if n != data.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR.
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    let how = match how {
        libc::SHUT_RD => Shutdown::Read,
        libc::SHUT_WR => Shutdown::Write,
        libc::SHUT_RDWR => Shutdown::Both,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    Ok(nix::sys::socket::shutdown(fd.as_raw_fd(), how)?)
}
