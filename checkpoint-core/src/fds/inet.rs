//! IPv4 and IPv6 sockets: TCP (listening, established, closed) and UDP (bound, connected).
//!
//! The dump side reads a socket through our copy of its fd (pidfd_getfd): family, type,
//! protocol, addresses, state (TCP_INFO), options; the established connections' sequence
//! numbers and queues are read in repair mode by [`super::tcp`]. The restore side makes the
//! socket again in the controller (in the container's network namespace for a container):
//! options, then bind and listen, or bind and connect (UDP), or the connection made in
//! repair mode from its saved state (TCP); the tasks then pull it like any file.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::image::pb::{InetSkEntry, IpOptsEntry, IpOptsRawEntry, SkOptsEntry, TcpOptsEntry};
use crate::sys;

/// Kernel TCP states (include/net/tcp_states.h): the `tcp-repair` crate's, and how `ss`
/// names them in messages.
pub mod state {
    pub use tcp_repair::{
        CLOSE, CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, LAST_ACK, LISTEN, SYN_RECV, SYN_SENT, TIME_WAIT,
    };

    /// The state's name, as `ss` shows it.
    pub fn name(s: u8) -> String {
        tcp_repair::state_name(s).to_lowercase().replace('_', "-")
    }

    /// A state with a connection the peer knows of (its sequence numbers must be saved).
    pub fn connected(s: u8) -> bool {
        matches!(s, ESTABLISHED | FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING)
    }
}

/// What a look at an inet socket through a copy of its fd shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetProbe {
    pub ino: u32,
    pub family: i32,
    pub kind: i32,
    pub proto: i32,
    /// The TCP state; for UDP, ESTABLISHED when connected, else CLOSE.
    pub state: u8,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// A listener's connections not accepted yet, and its backlog.
    pub pending: u32,
    pub backlog: u32,
}

impl InetProbe {
    /// Reads socket `fd` (our copy), inode `ino`.
    pub fn of(fd: BorrowedFd<'_>, ino: u32) -> io::Result<InetProbe> {
        let (family, kind, proto) = sys::socket_kind(fd)?;
        let local = sys::inet_name(fd)?;
        let peer = sys::inet_peer(fd)?;
        let (state, pending, backlog) = if proto == libc::IPPROTO_TCP && kind == libc::SOCK_STREAM {
            sys::tcp_info(fd)?
        } else if peer.is_some() {
            (state::ESTABLISHED, 0, 0)
        } else {
            (state::CLOSE, 0, 0)
        };
        Ok(InetProbe {
            ino,
            family,
            kind,
            proto,
            state,
            local,
            peer,
            pending: if state == state::LISTEN { pending } else { 0 },
            backlog: if state == state::LISTEN { backlog } else { 0 },
        })
    }

    /// [`InetProbe::of`] for fd copy `fd` of task `pid`. A raw or ping socket connected to
    /// an address has no port, so getpeername says it is not connected: its peer and state
    /// are read from the task's `/proc/PID/net/{raw,raw6,icmp,icmp6}` line instead.
    pub fn of_task(pid: i32, fd: BorrowedFd<'_>, ino: u32) -> io::Result<InetProbe> {
        let mut p = InetProbe::of(fd, ino)?;
        if p.is_raw() || p.is_ping() {
            let v6 = p.family == libc::AF_INET6;
            let table = match (p.is_raw(), v6) {
                (true, false) => "raw",
                (true, true) => "raw6",
                (false, false) => "icmp",
                (false, true) => "icmp6",
            };
            let path = format!("/proc/{pid}/net/{table}");
            let text = std::fs::read_to_string(&path)?;
            if let Some((remote, st)) = proc_net_peer(&text, ino) {
                p.state = st;
                p.peer = (st == state::ESTABLISHED).then_some(remote);
            }
        }
        Ok(p)
    }

    pub fn is_tcp(&self) -> bool {
        self.proto == libc::IPPROTO_TCP && self.kind == libc::SOCK_STREAM
    }

    pub fn is_udp(&self) -> bool {
        self.proto == libc::IPPROTO_UDP && self.kind == libc::SOCK_DGRAM
    }

    /// A raw IP socket (SOCK_RAW, any protocol).
    pub fn is_raw(&self) -> bool {
        self.kind == libc::SOCK_RAW
    }

    /// An ICMP "ping" socket (SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6).
    pub fn is_ping(&self) -> bool {
        self.kind == libc::SOCK_DGRAM && matches!(self.proto, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6)
    }

    /// A kind this version saves: TCP, UDP, raw, ping.
    pub fn is_supported(&self) -> bool {
        self.is_tcp() || self.is_udp() || self.is_raw() || self.is_ping()
    }

    /// "TCP 127.0.0.1:80 <-> 127.0.0.1:5000 (established)", for messages.
    pub fn describe(&self) -> String {
        let v6 = self.family == libc::AF_INET6;
        let proto = match (self.is_tcp(), self.is_udp(), v6) {
            (true, _, false) => "TCP".to_owned(),
            (true, _, true) => "TCPv6".to_owned(),
            (_, true, false) => "UDP".to_owned(),
            (_, true, true) => "UDPv6".to_owned(),
            _ if self.is_ping() => if v6 { "ICMPv6 ping" } else { "ICMP ping" }.to_owned(),
            _ if self.is_raw() => format!("raw{} protocol {}", if v6 { "v6" } else { "" }, self.proto),
            _ => "inet".to_owned(),
        };
        let addr = |a: &Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        match self.peer {
            Some(_) => format!(
                "{proto} {} <-> {} ({})",
                addr(&self.local),
                addr(&self.peer),
                state::name(self.state)
            ),
            None => format!("{proto} {} ({})", addr(&self.local), state::name(self.state)),
        }
    }
}

/// The remote address and state of socket `ino` in a `/proc/net/{raw,icmp}[6]` table: the
/// address is printed as the kernel's 32-bit words in hex (each word its memory bytes read
/// as a native integer), then `:PORT` in hex; the state in hex.
fn proc_net_peer(text: &str, ino: u32) -> Option<(SocketAddr, u8)> {
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.get(9).and_then(|i| i.parse::<u32>().ok()) != Some(ino) {
            continue;
        }
        let (addr, port) = w.get(2)?.split_once(':')?;
        let words: Vec<u32> = (0..addr.len() / 8)
            .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok())
            .collect::<Option<_>>()?;
        let family = if words.len() == 4 {
            libc::AF_INET6
        } else {
            libc::AF_INET
        } as u32;
        let port = u32::from_str_radix(port, 16).ok()?;
        let st = u8::from_str_radix(w.get(3)?, 16).ok()?;
        return Some((words_addr(family, &words, port), st));
    }
    None
}

/// An address as the image keeps it: one 32-bit word (v4) or four (v6), each the network
/// byte order bytes read as a native integer (as the kernel's `__be32` words are copied).
pub fn addr_words(ip: IpAddr) -> Vec<u32> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The address of image words `w` in `family` (missing words read as zero).
pub fn words_addr(family: u32, w: &[u32], port: u32) -> SocketAddr {
    let mut bytes = [0u8; 16];
    for (i, word) in w.iter().take(4).enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    if family == libc::AF_INET6 as u32 {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(bytes), port as u16, 0, 0))
    } else {
        let [a, b, c, d, ..] = bytes;
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port as u16))
    }
}

fn unspecified(family: i32) -> SocketAddr {
    if family == libc::AF_INET6 {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    }
}

/// SO_BUF_LOCK (5.14): which of the buffer sizes the application set itself.
const SO_BUF_LOCK: i32 = 72;
const SNDBUF_LOCK: u32 = 1;
const RCVBUF_LOCK: u32 = 2;

fn timeval(fd: BorrowedFd<'_>, name: i32) -> io::Result<(u64, u64)> {
    let b = sys::sockopt_bytes(fd, libc::SOL_SOCKET, name, 16)?;
    let word = |o: usize| {
        b.get(o..o + 8)
            .map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])))
    };
    Ok((word(0), word(8)))
}

/// Socket-level options of our copy `fd` of an inet socket (CRIU's sk_opts_entry).
pub fn socket_opts(fd: BorrowedFd<'_>) -> io::Result<SkOptsEntry> {
    let int = |level, name| sys::sockopt(fd, level, name);
    // An option this kind of socket does not have (SO_PASSCRED of TCP on newer kernels) is
    // left out of the image.
    let maybe = |level, name| match sys::sockopt(fd, level, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => Ok(None),
        Err(e) => Err(e),
    };
    let flag = |level, name| maybe(level, name).map(|v| v.map(|v| v != 0));
    let (snd_s, snd_us) = timeval(fd, libc::SO_SNDTIMEO)?;
    let (rcv_s, rcv_us) = timeval(fd, libc::SO_RCVTIMEO)?;
    let linger = sys::sockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, 8)?;
    let lint = |o: usize| {
        linger
            .get(o..o + 4)
            .map_or(0, |s| i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let dev = sys::sockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)?;
    let dev = String::from_utf8_lossy(dev.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
    Ok(SkOptsEntry {
        so_sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_s,
        so_snd_tmo_usec: snd_us,
        so_rcv_tmo_sec: rcv_s,
        so_rcv_tmo_usec: rcv_us,
        reuseaddr: flag(libc::SOL_SOCKET, libc::SO_REUSEADDR)?,
        so_priority: maybe(libc::SOL_SOCKET, libc::SO_PRIORITY)?.map(|v| v as u32),
        so_rcvlowat: maybe(libc::SOL_SOCKET, libc::SO_RCVLOWAT)?.map(|v| v as u32),
        so_mark: maybe(libc::SOL_SOCKET, libc::SO_MARK)?.map(|v| v as u32),
        so_passcred: flag(libc::SOL_SOCKET, libc::SO_PASSCRED)?,
        so_passsec: flag(libc::SOL_SOCKET, libc::SO_PASSSEC)?,
        so_dontroute: flag(libc::SOL_SOCKET, libc::SO_DONTROUTE)?,
        so_no_check: flag(libc::SOL_SOCKET, libc::SO_NO_CHECK)?,
        so_bound_dev: (!dev.is_empty()).then_some(dev),
        so_reuseport: flag(libc::SOL_SOCKET, libc::SO_REUSEPORT)?,
        so_broadcast: flag(libc::SOL_SOCKET, libc::SO_BROADCAST)?,
        so_keepalive: flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE)?,
        so_oobinline: maybe(libc::SOL_SOCKET, libc::SO_OOBINLINE)?.map(|v| v as u32),
        so_linger: (lint(0) != 0).then_some(lint(4) as u32),
        so_buf_lock: maybe(libc::SOL_SOCKET, SO_BUF_LOCK)?.map(|v| v as u32),
        ..Default::default()
    })
}

/// Sets the socket-level options `o` on a new socket `fd` (before it is bound).
pub fn set_socket_opts(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> io::Result<()> {
    let set = |name, v: i32| {
        sys::set_sockopt(fd, libc::SOL_SOCKET, name, v)
            .map_err(|e| io::Error::new(e.kind(), format!("socket option {name}: {e}")))
    };
    let on = |v: Option<bool>| i32::from(v.unwrap_or(false));
    // The kernel doubles what is set and reports the doubled value: half of it is set again.
    // Setting a size locks it; SO_BUF_LOCK then says which sizes the application had chosen
    // (the others are the kernel's to tune again), as CRIU restores them.
    set(libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)?;
    set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    if let Some(lock) = o.so_buf_lock {
        set(SO_BUF_LOCK, (lock & (SNDBUF_LOCK | RCVBUF_LOCK)) as i32)?;
    }
    let tv = |s: u64, us: u64| {
        let mut b = s.to_ne_bytes().to_vec();
        b.extend_from_slice(&us.to_ne_bytes());
        b
    };
    if o.so_snd_tmo_sec | o.so_snd_tmo_usec != 0 {
        sys::set_sockopt_bytes(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec),
        )?;
    }
    if o.so_rcv_tmo_sec | o.so_rcv_tmo_usec != 0 {
        sys::set_sockopt_bytes(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
        )?;
    }
    for (name, v) in [
        (libc::SO_REUSEADDR, o.reuseaddr),
        (libc::SO_REUSEPORT, o.so_reuseport),
        (libc::SO_PASSCRED, o.so_passcred),
        (libc::SO_PASSSEC, o.so_passsec),
        (libc::SO_DONTROUTE, o.so_dontroute),
        (libc::SO_NO_CHECK, o.so_no_check),
        (libc::SO_BROADCAST, o.so_broadcast),
        (libc::SO_KEEPALIVE, o.so_keepalive),
    ] {
        if v.unwrap_or(false) {
            set(name, on(v))?;
        }
    }
    for (name, v) in [
        (libc::SO_PRIORITY, o.so_priority),
        (libc::SO_MARK, o.so_mark),
        (libc::SO_OOBINLINE, o.so_oobinline),
    ] {
        if let Some(v) = v.filter(|&v| v != 0) {
            set(name, v as i32)?;
        }
    }
    if let Some(v) = o.so_rcvlowat.filter(|&v| v > 1) {
        set(libc::SO_RCVLOWAT, v as i32)?;
    }
    if let Some(secs) = o.so_linger {
        let mut b = 1i32.to_ne_bytes().to_vec();
        b.extend_from_slice(&(secs as i32).to_ne_bytes());
        sys::set_sockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &b)?;
    }
    if let Some(dev) = o.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        sys::set_sockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())?;
    }
    Ok(())
}

/// The image entry of inet socket `p` (our copy `fd`; its id is set by the caller).
pub fn collect(p: &InetProbe, flags: u32, fd: BorrowedFd<'_>) -> io::Result<InetSkEntry> {
    let local = p.local.unwrap_or_else(|| unspecified(p.family));
    let peer = p.peer;
    let int = |level, name| sys::sockopt(fd, level, name);
    // As CRIU: flags only when set.
    let on = |level, name| int(level, name).map(|v| (v != 0).then_some(true));
    let tcp_opts = if p.is_tcp() {
        Some(TcpOptsEntry {
            nodelay: on(libc::IPPROTO_TCP, libc::TCP_NODELAY)?,
            cork: on(libc::IPPROTO_TCP, libc::TCP_CORK)?,
            keepcnt: Some(int(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)? as u32),
            keepidle: Some(int(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)? as u32),
            keepintvl: Some(int(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)? as u32),
        })
    } else {
        // CRIU writes an empty one for UDP.
        Some(TcpOptsEntry::default())
    };
    let v6 = p.family == libc::AF_INET6;
    let freebind = if v6 {
        int(libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)?
    } else {
        int(libc::IPPROTO_IP, libc::IP_FREEBIND)?
    };
    let mut opts = socket_opts(fd)?;
    if let Some(t) = &tcp_opts {
        opts.tcp_keepcnt = t.keepcnt;
        opts.tcp_keepidle = t.keepidle;
        opts.tcp_keepintvl = t.keepintvl;
    }
    Ok(InetSkEntry {
        id: 0,
        ino: p.ino,
        family: p.family as u32,
        r#type: p.kind as u32,
        proto: p.proto as u32,
        state: p.state.into(),
        src_port: local.port().into(),
        dst_port: peer.map_or(0, |a| a.port().into()),
        flags,
        // A listener's backlog; of a connection, its send queue's bytes (sock_diag's wqueue,
        // which CRIU stores there).
        backlog: if p.state == state::LISTEN {
            p.backlog
        } else if p.is_tcp() {
            sys::outq_len(fd)?
        } else {
            0
        },
        src_addr: addr_words(local.ip()),
        dst_addr: addr_words(peer.map_or_else(|| unspecified(p.family).ip(), |a| a.ip())),
        fown: Default::default(),
        opts,
        v6only: if v6 {
            Some(int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0)
        } else {
            None
        },
        ip_opts: Some(IpOptsEntry {
            raw: if p.is_raw() {
                Some(raw_opts(fd, v6, p.proto)?)
            } else {
                None
            },
            freebind: (freebind != 0).then_some(true),
            ttl: if v6 {
                None
            } else {
                Some(int(libc::IPPROTO_IP, libc::IP_TTL)? as u32)
            },
            ..Default::default()
        }),
        ifname: None,
        ns_id: None,
        shutdown: None,
        tcp_opts,
    })
}

/// SOL_RAW (255) options of a raw socket: ICMP_FILTER (1) of a raw ICMP socket.
const SOL_RAW: i32 = 255;
const ICMP_FILTER: i32 = 1;
/// ICMP6_FILTER (1) of a raw ICMPv6 socket, at level IPPROTO_ICMPV6: eight 32-bit words.
const ICMP6_FILTER: i32 = 1;
/// IP_NODEFRAG (22).
const IP_NODEFRAG: i32 = 22;

/// The options of a raw socket (CRIU's ip_opts_raw_entry).
fn raw_opts(fd: BorrowedFd<'_>, v6: bool, proto: i32) -> io::Result<IpOptsRawEntry> {
    let words = |b: Vec<u8>| -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut o = IpOptsRawEntry::default();
    if v6 {
        // IPV6_CHECKSUM: the offset of the checksum the kernel fills in, -1 for none.
        let sum = sys::sockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM)?;
        o.checksum = (sum >= 0).then_some(true);
        if proto == libc::IPPROTO_ICMPV6 {
            o.icmpv_filter = words(sys::sockopt_bytes(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, 32)?);
        }
    } else {
        o.hdrincl = (sys::sockopt(fd, libc::IPPROTO_IP, libc::IP_HDRINCL)? != 0).then_some(true);
        o.nodefrag = (sys::sockopt(fd, libc::IPPROTO_IP, IP_NODEFRAG)? != 0).then_some(true);
        if proto == libc::IPPROTO_ICMP {
            o.icmpv_filter = words(sys::sockopt_bytes(fd, SOL_RAW, ICMP_FILTER, 4)?);
        }
    }
    Ok(o)
}

/// Sets the options of raw socket `fd` saved in `o` (the checksum offset is not saved:
/// CRIU keeps whether one was set; an ICMPv6 socket's own is the kernel's).
fn set_raw_opts(fd: BorrowedFd<'_>, v6: bool, o: &IpOptsRawEntry) -> io::Result<()> {
    let bytes = |w: &[u32]| w.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    if v6 {
        if !o.icmpv_filter.is_empty() {
            sys::set_sockopt_bytes(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &bytes(&o.icmpv_filter))?;
        }
    } else {
        if o.hdrincl == Some(true) {
            sys::set_sockopt(fd, libc::IPPROTO_IP, libc::IP_HDRINCL, 1)?;
        }
        if o.nodefrag == Some(true) {
            sys::set_sockopt(fd, libc::IPPROTO_IP, IP_NODEFRAG, 1)?;
        }
        if !o.icmpv_filter.is_empty() {
            sys::set_sockopt_bytes(fd, SOL_RAW, ICMP_FILTER, &bytes(&o.icmpv_filter))?;
        }
    }
    Ok(())
}

/// The local and remote address of entry `e`.
pub fn addrs(e: &InetSkEntry) -> (SocketAddr, SocketAddr) {
    (
        words_addr(e.family, &e.src_addr, e.src_port),
        words_addr(e.family, &e.dst_addr, e.dst_port),
    )
}

/// "TCP 127.0.0.1:80 <-> 127.0.0.1:5000 (established)" of an image entry.
pub fn describe(e: &InetSkEntry) -> String {
    let (local, peer) = addrs(e);
    InetProbe {
        ino: e.ino,
        family: e.family as i32,
        kind: e.r#type as i32,
        proto: e.proto as i32,
        state: e.state as u8,
        local: Some(local),
        peer: (e.dst_port != 0).then_some(peer),
        pending: 0,
        backlog: e.backlog,
    }
    .describe()
}

fn ctx(e: &InetSkEntry, step: &str) -> impl FnOnce(io::Error) -> io::Error {
    let what = format!("socket {} ({})", e.ino, describe(e));
    let step = step.to_owned();
    move |source| io::Error::new(source.kind(), format!("{what}: {step}: {source}"))
}

/// A new socket in the state of entry `e`, but for a connection's sequence numbers and
/// queues: a listener bound and listening, a UDP socket bound and connected, a closed TCP
/// socket bound if it was. A connected TCP socket is returned unbound, for
/// [`super::tcp::restore`] to make the connection (or closed, with `--tcp-close`).
pub fn make(e: &InetSkEntry) -> io::Result<OwnedFd> {
    let fd = sys::new_socket(e.family as i32, e.r#type as i32, e.proto as i32).map_err(ctx(e, "socket"))?;
    let b = fd.as_fd();
    sys::set_status_flags(b, e.flags as i32 & libc::O_NONBLOCK).map_err(ctx(e, "file flags"))?;
    set_socket_opts(b, &e.opts).map_err(ctx(e, "socket options"))?;
    let v6 = e.family == libc::AF_INET6 as u32;
    if let Some(v6only) = e.v6only.filter(|_| v6) {
        sys::set_sockopt(b, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, i32::from(v6only)).map_err(ctx(e, "IPV6_V6ONLY"))?;
    }
    if e.ip_opts.as_ref().and_then(|o| o.freebind) == Some(true) {
        let (level, name) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
        } else {
            (libc::IPPROTO_IP, libc::IP_FREEBIND)
        };
        sys::set_sockopt(b, level, name, 1).map_err(ctx(e, "freebind"))?;
    }
    // A TTL the application chose (a new socket says the system's default otherwise).
    if let Some(ttl) = e.ip_opts.as_ref().and_then(|o| o.ttl).filter(|_| !v6) {
        if sys::sockopt(b, libc::IPPROTO_IP, libc::IP_TTL).map_err(ctx(e, "IP_TTL"))? as u32 != ttl {
            sys::set_sockopt(b, libc::IPPROTO_IP, libc::IP_TTL, ttl as i32).map_err(ctx(e, "IP_TTL"))?;
        }
    }
    if let Some(t) = &e.tcp_opts {
        for (name, v) in [
            (libc::TCP_NODELAY, t.nodelay.map(u32::from)),
            (libc::TCP_CORK, t.cork.map(u32::from)),
            (libc::TCP_KEEPCNT, t.keepcnt),
            (libc::TCP_KEEPIDLE, t.keepidle),
            (libc::TCP_KEEPINTVL, t.keepintvl),
        ] {
            if let Some(v) = v.filter(|&v| v != 0) {
                sys::set_sockopt(b, libc::IPPROTO_TCP, name, v as i32).map_err(ctx(e, "TCP option"))?;
            }
        }
    }
    if let Some(raw) = e.ip_opts.as_ref().and_then(|o| o.raw.as_ref()) {
        set_raw_opts(b, v6, raw).map_err(ctx(e, "raw socket options"))?;
    }
    let (mut local, mut peer) = addrs(e);
    if e.r#type == libc::SOCK_RAW as u32 {
        // A raw socket's "port" is its protocol: it binds and connects to addresses only.
        local.set_port(0);
        peer.set_port(0);
    }
    let tcp = e.proto == libc::IPPROTO_TCP as u32 && e.r#type == libc::SOCK_STREAM as u32;
    let st = e.state as u8;
    if tcp && state::connected(st) {
        return Ok(fd);
    }
    if e.src_port != 0 || !local.ip().is_unspecified() {
        sys::inet_bind(b, local).map_err(ctx(e, "bind"))?;
    }
    if tcp && st == state::LISTEN {
        sys::listen(b, e.backlog.max(1) as i32).map_err(ctx(e, "listen"))?;
    } else if !tcp && st == state::ESTABLISHED {
        sys::inet_connect(b, peer).map_err(ctx(e, "connect"))?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_sockets_peer_is_read_from_proc_net() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:0001 0100007F:0000 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n";
        assert_eq!(
            proc_net_peer(text, 4242),
            Some(("127.0.0.1:0".parse().unwrap(), state::ESTABLISHED))
        );
        assert_eq!(proc_net_peer(text, 1), None);
    }

    #[test]
    fn addresses_round_trip_through_image_words() {
        for a in ["127.0.0.1:80", "[::1]:443", "[::ffff:10.0.0.1]:5", "0.0.0.0:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let family = if a.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u32;
            assert_eq!(words_addr(family, &addr_words(a.ip()), a.port().into()), a);
        }
        // 127.0.0.1 is stored as the bytes 127 0 0 1 in memory.
        assert_eq!(
            addr_words("127.0.0.1".parse().unwrap()),
            [u32::from_ne_bytes([127, 0, 0, 1])]
        );
    }
}
