//! Helpers of the network tests: free ports, the two dumpers (Stasis and the reference CRIU)
//! behind one interface, servers started in a session of their own and killed by pid, the
//! network-lock rules (mark 0xc114) of the test's ports in iptables, and small clients (lines,
//! RESP, HTTP/1.1 keep-alive) over one `TcpStream` that stays open across a checkpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's python3 (not a pyenv shim that PATH may find first).
pub const PYTHON: &str = "/usr/bin/python3";

/// The mark CRIU's (and our) network-lock rules exempt packets by.
pub const LOCK_MARK: &str = "0xc114";

/// A TCP port free on 127.0.0.1 and ::1 (TCP and UDP) right now, chosen by the kernel.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let free = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

/// Which program checkpoints and restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Our `stasis`.
    Stasis,
    /// The reference CRIU 4.2.1.
    Criu,
}

impl Tool {
    /// `TOOL dump -t PID -D IMAGES ARGS...` (CRIU logs to IMAGES/dump.log). The images dir is
    /// made first.
    pub fn dump(self, pid: i32, images: &Path, args: &[&str]) -> Output {
        std::fs::create_dir_all(images).unwrap();
        let pid = pid.to_string();
        let mut all = vec!["dump", "-t", &pid, "-D", images.to_str().unwrap()];
        all.extend(args);
        self.run(&all, "dump.log")
    }

    /// `TOOL restore -D IMAGES -d ARGS...` (CRIU logs to IMAGES/restore.log).
    pub fn restore(self, images: &Path, args: &[&str]) -> Output {
        let mut all = vec!["restore", "-D", images.to_str().unwrap(), "-d"];
        all.extend(args);
        self.run(&all, "restore.log")
    }

    fn run(self, args: &[&str], log: &str) -> Output {
        let mut cmd = match self {
            Tool::Stasis => Command::new(crate::workspace_bin("stasis")),
            Tool::Criu => {
                let mut c = Command::new(crate::reference_criu("4.2"));
                c.args(["-o", log]);
                c
            }
        };
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// A dump that must succeed.
    pub fn dump_ok(self, pid: i32, images: &Path, args: &[&str]) {
        let out = self.dump(pid, images, args);
        self.check(&out, images, "dump.log", &format!("dump -t {pid} {args:?}"));
    }

    /// A restore that must succeed.
    pub fn restore_ok(self, images: &Path, args: &[&str]) {
        let out = self.restore(images, args);
        self.check(&out, images, "restore.log", &format!("restore {args:?}"));
    }

    fn check(self, out: &Output, images: &Path, log: &str, what: &str) {
        if out.status.success() {
            return;
        }
        panic!(
            "{self:?} {what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            errors_of_log(&images.join(log))
        );
    }
}

/// The error lines of a CRIU log ("" if there is none).
pub fn errors_of_log(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Error") || l.contains("Warn"))
        .map(|l| format!("\n  {l}"))
        .collect()
}

/// A server the test started in a session of its own (`setsid`, which does not fork here):
/// after a dump killed it, the restored process has its pid and was re-parented to us.
pub struct Server {
    pub child: Option<Child>,
    pub pid: i32,
}

impl Server {
    /// Starts `argv` through `setsid`, stdio on /dev/null except stderr into `log`.
    pub fn start(argv: &[&str], log: &Path) -> Server {
        let child = Command::new("setsid")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Server {
            pid: child.id() as i32,
            child: Some(child),
        }
    }

    /// Reaps the original process once a dump has killed it.
    pub fn reap_original(&mut self) {
        if let Some(mut c) = self.child.take() {
            let st = c.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&st),
                Some(libc::SIGKILL),
                "the dump kills pid {}",
                self.pid
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own child (the original, or the restored one re-parented to us).
        let ours = crate::workload::proc_ids(self.pid).is_some_and(|(ppid, ..)| ppid == std::process::id());
        if ours {
            let _ = checkpoint_core::sys::send_signal(self.pid, libc::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        } else if ours {
            let _ = checkpoint_core::sys::wait_exit(self.pid);
        }
    }
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(start.elapsed() < timeout, "nothing listens on {addr} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The network-lock rules (mark 0xc114) in iptables and ip6tables that name one of `ports`,
/// as `iptables -S` prints them, each prefixed with its tool.
pub fn lock_rules(ports: &[u16]) -> Vec<String> {
    let mut rules = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        let out = Command::new(tool).args(["-w", "-S"]).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} -S: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ours = ports
                .iter()
                .any(|p| line.contains(&format!("--sport {p} ")) || line.contains(&format!("--dport {p} ")));
            if line.contains(LOCK_MARK) && ours {
                rules.push(format!("{tool} {line}"));
            }
        }
    }
    rules
}

/// On drop, deletes (by their exact spec) the lock rules left for its ports: what a dump that
/// went wrong left behind.
pub struct LockRulesCleanup(pub Vec<u16>);

impl Drop for LockRulesCleanup {
    fn drop(&mut self) {
        for rule in lock_rules(&self.0) {
            let (tool, spec) = rule.split_once(' ').unwrap();
            let Some(spec) = spec.strip_prefix("-A ") else { continue };
            let _ = Command::new(tool)
                .args(["-w", "-D"])
                .args(spec.split_whitespace())
                .status();
        }
    }
}

/// Asserts no lock rule names one of `ports`.
pub fn assert_no_lock_rules(ports: &[u16], when: &str) {
    let left = lock_rules(ports);
    assert!(left.is_empty(), "{when}, lock rules are left:\n{}", left.join("\n"));
}

/// A line-oriented client on one TCP connection.
pub struct LineClient {
    pub reader: BufReader<TcpStream>,
}

impl LineClient {
    /// Connects to `addr`; every read times out after 20 s.
    pub fn connect(addr: SocketAddr) -> LineClient {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        LineClient {
            reader: BufReader::new(s),
        }
    }

    /// Sends `line` and returns the reply line (without its newline).
    pub fn ask(&mut self, line: &str) -> String {
        self.try_ask(line)
            .unwrap_or_else(|e| panic!("{line:?} to {:?}: {e}", self.reader.get_ref().peer_addr()))
    }

    /// Sends `line` and reads the reply line; EOF is an error (UnexpectedEof).
    pub fn try_ask(&mut self, line: &str) -> std::io::Result<String> {
        self.reader.get_mut().write_all(format!("{line}\n").as_bytes())?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(reply.trim_end().to_owned())
    }

    /// The connection's local and peer addresses.
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        let s = self.reader.get_ref();
        (s.local_addr().unwrap(), s.peer_addr().unwrap())
    }
}

/// A Redis client speaking RESP on one connection.
pub struct RespClient(pub BufReader<TcpStream>);

impl RespClient {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RespClient {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        RespClient(BufReader::new(s))
    }

    /// Sends one command and returns its reply: a simple string or integer as text, a bulk
    /// string's content, `(nil)`, or `-ERR...`.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        assert!(
            self.0.read_line(&mut line).unwrap() > 0,
            "redis closed the connection on {args:?}"
        );
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'+' | b':') => line[1..].to_owned(),
            Some(b'-') => line.to_owned(),
            Some(b'$') if line == "$-1" => "(nil)".to_owned(),
            Some(b'$') => {
                let n: usize = line[1..].parse().unwrap();
                let mut buf = vec![0; n + 2];
                self.0.read_exact(&mut buf).unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            _ => panic!("unexpected reply to {args:?}: {line:?}"),
        }
    }
}

/// An HTTP/1.1 client on one keep-alive connection.
pub struct HttpClient(pub BufReader<TcpStream>);

impl HttpClient {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> HttpClient {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        HttpClient(BufReader::new(s))
    }

    /// GET `path` on this connection; returns (status code, headers lowercased, body).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
        self.0.get_mut().write_all(req.as_bytes())?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.0.read_exact(&mut body)?;
        Ok((status, head, body))
    }
}

/// A read on `s` that ends the connection as a closed or reset one must: EOF or an error, not
/// data (waits up to `timeout`). Returns what happened, for messages.
pub fn expect_closed(s: &mut TcpStream, timeout: Duration) -> String {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => "EOF".to_owned(),
        Ok(n) => panic!(
            "the connection was restored open: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("the connection neither answered nor ended in {timeout:?}")
        }
        Err(e) => e.to_string(),
    }
}

/// Writes `text` as file `name` in `dir`; returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The processes whose parent is `pid` (from /proc/*/stat).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut kids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| crate::workload::proc_ids(p).is_some_and(|(ppid, ..)| ppid as i32 == pid))
        .collect();
    kids.sort();
    kids
}

/// The fd of `pid` that holds the IPv4 TCP connection `local` <-> `peer` (through
/// /proc/PID/net/tcp and the fd links), if any.
pub fn fd_of_connection(pid: i32, local: SocketAddr, peer: SocketAddr) -> Option<i32> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, p) = (hex(local), hex(peer));
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    let inode = table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == p).then(|| f[9].to_owned())
    })?;
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            (link.to_str()? == want).then(|| e.file_name().to_str()?.parse().ok())?
        })
}

/// The two rules of the lock of the connection `local` (the dumped side) <-> `peer`, as
/// `iptables -S` (or `ip6tables -S`) prints them, prefixed with the tool like [`lock_rules`]:
/// INPUT drops what comes from the peer, OUTPUT what goes to it, marked packets excepted.
pub fn expected_lock_rules(local: SocketAddr, peer: SocketAddr) -> Vec<String> {
    let (tool, bits) = if local.is_ipv4() {
        ("iptables", 32)
    } else {
        ("ip6tables", 128)
    };
    let rule = |chain: &str, from: SocketAddr, to: SocketAddr| {
        format!(
            "{tool} -A {chain} -s {}/{bits} -d {}/{bits} -p tcp -m mark ! --mark {LOCK_MARK} -m tcp --sport {} --dport {} -j DROP",
            from.ip(),
            to.ip(),
            from.port(),
            to.port()
        )
    };
    vec![rule("INPUT", peer, local), rule("OUTPUT", local, peer)]
}
