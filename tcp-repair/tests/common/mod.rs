//! Helpers of the loopback tests: a private network namespace per test, connected pairs,
//! DROP rules for one direction of a connection, byte streams that prove order and count.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType};
use tcp_repair::Connection;

/// Moves the calling thread (and what it starts) into a new network namespace with `lo` up;
/// the namespace, its sockets and its netfilter rules go when the thread's last user does.
pub fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    run("ip", &["link", "set", "lo", "up"]);
}

pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A connected pair (client, accepted server side) on loopback.
pub fn pair(v6: bool) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    (a, b)
}

/// A connected pair of IPv6 sockets talking IPv4 (addresses ::ffff:127.0.0.1).
pub fn pair_mapped() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("[::]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let a = TcpStream::connect(("::ffff:127.0.0.1", port)).unwrap();
    let (b, _) = l.accept().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    (a, b)
}

/// A netfilter rule dropping the packets from `from` to `to` (one direction of a connection)
/// as they come in (INPUT: for the sender they were sent; a drop in OUTPUT would leave them
/// unsent), removed by the same spec on drop.
pub struct DropRule {
    args: Vec<String>,
    tool: &'static str,
    on: bool,
}

impl DropRule {
    pub fn new(from: SocketAddr, to: SocketAddr) -> DropRule {
        let unmap = |a: SocketAddr| match a {
            SocketAddr::V6(v) => match v.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), v.port()),
                None => a,
            },
            a => a,
        };
        let (from, to) = (unmap(from), unmap(to));
        let tool = if from.is_ipv6() { "ip6tables" } else { "iptables" };
        let args: Vec<String> = [
            "INPUT",
            "-p",
            "tcp",
            "-s",
            &from.ip().to_string(),
            "--sport",
            &from.port().to_string(),
            "-d",
            &to.ip().to_string(),
            "--dport",
            &to.port().to_string(),
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut r = DropRule { args, tool, on: false };
        r.apply("-I");
        r.on = true;
        r
    }

    fn apply(&self, op: &str) {
        let mut a = vec!["-w", op];
        a.extend(self.args.iter().map(String::as_str));
        run(self.tool, &a);
    }

    pub fn remove(&mut self) {
        if self.on {
            self.on = false;
            self.apply("-D");
        }
    }
}

impl Drop for DropRule {
    fn drop(&mut self) {
        if self.on {
            self.on = false;
            let mut a = vec!["-w".to_string(), "-D".to_string()];
            a.extend(self.args.iter().cloned());
            let _ = Command::new(self.tool).args(&a).status();
        }
    }
}

/// The byte at position `i` of stream `seed`: position-dependent, so a lost, doubled or
/// reordered piece shows.
pub fn byte(seed: u64, i: u64) -> u8 {
    let mut x = (i ^ (seed << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    (x >> 24) as u8
}

pub fn bytes(seed: u64, from: u64, n: usize) -> Vec<u8> {
    (0..n as u64).map(|k| byte(seed, from + k)).collect()
}

/// One direction of a connection: what was written and what was read of it.
pub struct Stream {
    pub seed: u64,
    pub written: u64,
    pub read: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream {
            seed,
            written: 0,
            read: 0,
        }
    }

    /// Writes `n` more bytes (blocking).
    pub fn write(&mut self, s: &mut TcpStream, n: usize) {
        let b = bytes(self.seed, self.written, n);
        s.write_all(&b).unwrap();
        self.written += n as u64;
    }

    /// Writes `n` more bytes without blocking; panics if the socket buffer takes fewer.
    pub fn write_nonblocking(&mut self, s: &mut TcpStream, n: usize) {
        s.set_nonblocking(true).unwrap();
        let b = bytes(self.seed, self.written, n);
        let mut off = 0;
        while off < n {
            match s.write(&b[off..]) {
                Ok(k) => off += k,
                Err(e) => panic!("write {n} bytes: {e} after {off}"),
            }
        }
        s.set_nonblocking(false).unwrap();
        self.written += n as u64;
    }

    /// Reads exactly `n` more bytes and checks each.
    pub fn read(&mut self, s: &mut TcpStream, n: usize) {
        let mut b = vec![0u8; n];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("read {n} bytes at {} of stream {}: {e}", self.read, self.seed));
        self.check(&b, self.read);
        self.read += n as u64;
    }

    /// Checks that `b` is the stream's bytes from `at`.
    pub fn check(&self, b: &[u8], at: u64) {
        let want = bytes(self.seed, at, b.len());
        if let Some(k) = (0..b.len()).find(|&k| b[k] != want[k]) {
            panic!("stream {}: byte {} differs", self.seed, at + k as u64);
        }
    }

    /// Reads what is left of what was written, then EOF, with no reset.
    pub fn read_to_eof(&mut self, s: &mut TcpStream) {
        let left = (self.written - self.read) as usize;
        self.read(s, left);
        let mut one = [0u8; 1];
        match s.read(&mut one) {
            Ok(0) => {}
            Ok(_) => panic!("stream {}: a byte after the {} written", self.seed, self.written),
            Err(e) => panic!("stream {}: {e} where EOF was due", self.seed),
        }
    }
}

/// Waits until `f` holds, up to 10 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn state(s: &TcpStream) -> u8 {
    tcp_repair::tcp_state(s.as_fd()).unwrap()
}

/// (unread, unacknowledged, unsent) bytes of `s`.
pub fn queues(s: &TcpStream) -> (u32, u32, u32) {
    tcp_repair::queue_lengths(s.as_fd()).unwrap()
}

pub fn set_buffers(s: &TcpStream, bytes: usize) {
    socket::setsockopt(s, sockopt::SndBufForce, &bytes).unwrap();
    socket::setsockopt(s, sockopt::RcvBufForce, &bytes).unwrap();
}

/// Saves `a` in repair mode, closes it (silently), makes a new socket of the connection,
/// checks that saving the new one gives the same state back, and turns repair mode off.
pub fn migrate(a: TcpStream) -> (Connection, TcpStream) {
    tcp_repair::set_repair(a.as_fd(), true).unwrap();
    let c = tcp_repair::save(a.as_fd()).unwrap();
    drop(a);
    let family = if c.local.unwrap().is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd: OwnedFd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    tcp_repair::restore(fd.as_fd(), &c).unwrap_or_else(|e| panic!("restore {c:?}: {e}"));
    let again = tcp_repair::save(fd.as_fd()).unwrap();
    assert_same(&c, &again);
    tcp_repair::set_repair(fd.as_fd(), false).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    (c, s)
}

/// The saved state of a restored socket is the one it was made from (the timestamp runs on).
pub fn assert_same(c: &Connection, again: &Connection) {
    let mut a = again.clone();
    assert!(
        a.timestamp.wrapping_sub(c.timestamp) < 60_000,
        "timestamp {} then {}",
        c.timestamp,
        a.timestamp
    );
    a.timestamp = c.timestamp;
    if c.state != tcp_repair::ESTABLISHED {
        // The FIN and ACK played as the peer's move the window's bookkeeping, not the window:
        // snd_wl1 (the sequence number of the last window update) may become theirs, and the
        // receive window may start one earlier (before the FIN) with its right edge in place.
        let (w, wa) = (c.window.unwrap(), a.window.unwrap());
        assert_eq!(
            (wa.snd_wnd, wa.max_window, wa.rcv_wup.wrapping_add(wa.rcv_wnd)),
            (w.snd_wnd, w.max_window, w.rcv_wup.wrapping_add(w.rcv_wnd)),
            "window after restore {wa:?}, saved {w:?}"
        );
        assert!(
            wa.snd_wl1 == w.snd_wl1 || wa.snd_wl1 == c.inq_seq.wrapping_sub(1) || wa.snd_wl1 == c.inq_seq,
            "snd_wl1 after restore {wa:?}, saved {w:?}"
        );
        a.window = c.window;
    }
    let strip = |x: &Connection| Connection {
        inq: Vec::new(),
        outq: Vec::new(),
        ..x.clone()
    };
    assert_eq!(strip(c), strip(&a), "state after restore differs");
    assert!(c.inq == a.inq, "receive queue differs after restore");
    assert!(c.outq == a.outq, "send queue differs after restore");
}

pub fn shut(s: &TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
}
