//! IPv4/IPv6 and netlink sockets of a process on the host: listeners, UDP, netlink and
//! connections (with --tcp-established), dumped and restored by Stasis; what is refused, and
//! what a failed dump leaves (nothing locked, nothing in repair mode).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ctests::crit_decode;
use ctests::inet::Tool;
use ctests::workload::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

use ctests::scripted::python_argv as python;

/// The socket server of tests/workloads/sockets.py, started in `work`.
struct Server {
    child: Option<Child>,
    pid: i32,
    work: PathBuf,
    /// TCP v4, TCP v6, UDP v4, UDP sink ports.
    ports: [u16; 4],
}

impl Server {
    fn start(work: &Path) -> Server {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/sockets.py");
        let child = python(&[script.as_os_str()], work);
        let pid = child.id() as i32;
        let text = std::fs::read_to_string(work.join("ports")).unwrap();
        let p: Vec<u16> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
        Server {
            child: Some(child),
            pid,
            work: work.to_owned(),
            ports: [p[0], p[1], p[2], p[3]],
        }
    }

    /// A new connection to the v4 (or v6) listener, past its greeting (returned).
    fn connect(&self, v6: bool) -> (BufReader<TcpStream>, String) {
        let addr = if v6 {
            format!("[::1]:{}", self.ports[1])
        } else {
            format!("127.0.0.1:{}", self.ports[0])
        };
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(c);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (r, line.trim().to_owned())
    }

    fn options(&self, file: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.work.join(file)).unwrap()).unwrap()
    }

    /// Asks the server for its sockets' options after a restore, and compares them with
    /// what they were at its start.
    fn assert_same_options(&self) {
        checkpoint_core::sys::send_signal(self.pid, libc::SIGUSR1).unwrap();
        wait_for_file(&self.work.join("result"), Duration::from_secs(20));
        assert_eq!(self.options("result"), self.options("before"));
    }

    /// Reaps the original process, killed by a dump.
    fn reap_original(&mut self) {
        let st = self.child.take().unwrap().wait().unwrap();
        assert!(!st.success(), "the server ended by itself: {st}");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.work.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        } else if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let _ = checkpoint_core::sys::send_signal(self.pid, libc::SIGKILL);
            let _ = checkpoint_core::sys::wait_exit(self.pid);
        }
    }
}

/// `stasis dump -t SERVER -D IMAGES EXTRA...`, which must succeed.
fn dump(srv: &Server, images: &Path, extra: &[&str]) {
    let pid = srv.pid.to_string();
    let mut args = vec!["dump", "-t", &pid, "-D", s(images)];
    args.extend(extra);
    stasis_ok(&args);
}

/// `stasis dump --tcp-established` of the server, told to fail (or stop) at `point`.
fn faulty_dump(srv: &Server, images: &Path, point: &str) -> Command {
    let mut cmd = Command::new(ctests::workspace_bin("stasis"));
    cmd.args(["dump", "-t", &srv.pid.to_string(), "-D", s(images), "--tcp-established"])
        .env("STASIS_FAULT", point);
    cmd
}

fn ping(c: &mut BufReader<TcpStream>) -> String {
    c.get_mut().write_all(b"ping\n").unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    line.trim().to_owned()
}

fn udp_echo(port: u16, data: &str) -> String {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    u.send_to(data.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 256];
    let n = u.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The lock rules (mark 0xc114) naming `port`, in both families.
fn lock_rules(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        let text = Command::new(tool).args(["-w", "-S"]).output().unwrap().stdout;
        out.extend(
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| l.contains("0xc114") && l.contains(&format!("port {port} ")))
                .map(str::to_owned),
        );
    }
    out
}

/// Whether socket inode `ino`'s connection is in repair mode cannot be read from outside; a
/// connection out of repair mode answers: that is what is checked.
#[test]
fn listeners_udp_and_netlink_sockets_come_back_with_their_options() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-listeners");
    let mut srv = Server::start(&work);
    assert_eq!(srv.connect(false).1, "hello 1");
    assert_eq!(udp_echo(srv.ports[2], "a"), "echo 2:a");
    // The connection above is closed by us: the server's end is left closing; wait for it
    // to be gone from its table (it closes on EOF).
    std::thread::sleep(Duration::from_millis(300));
    dump(&srv, &images, &[]);
    srv.reap_original();
    let files = crit_decode(&images.join("files.img"));
    let kinds: Vec<&str> = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| t.ends_with("SK"))
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "INETSK").count(), 5, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "NETLINKSK").count(), 1, "{kinds:?}");
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    assert_eq!(srv.connect(false).1, "hello 3");
    assert_eq!(srv.connect(true).1, "hello 4");
    assert_eq!(udp_echo(srv.ports[2], "b"), "echo 5:b");
    srv.assert_same_options();
    assert!(srv.stderr().is_empty(), "{}", srv.stderr());
}

#[test]
fn an_established_connection_is_refused_without_tcp_established_and_the_server_serves_on() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-refused");
    let srv = Server::start(&work);
    let (mut c, hello) = srv.connect(false);
    assert_eq!(hello, "hello 1");
    assert_eq!(ping(&mut c), "pong 1");
    let out = stasis(&["dump", "-t", &srv.pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let local = format!("127.0.0.1:{}", srv.ports[0]);
    let peer = c.get_ref().local_addr().unwrap().to_string();
    for want in [&format!("pid {}", srv.pid), "fd ", &local, &peer, "--tcp-established"] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    assert_running_untraced(srv.pid);
    assert_eq!(ping(&mut c), "pong 2");
    assert_eq!(srv.connect(false).1, "hello 2");
    assert!(lock_rules(srv.ports[0]).is_empty());
}

/// Datagrams waiting in a UDP socket are kept: after the restore the server reads the same
/// bytes from the same senders (CRIU drops them).
#[test]
fn datagrams_waiting_in_a_udp_socket_come_back_from_their_senders() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-udp-queue");
    let mut srv = Server::start(&work);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (from, what) in [(&a, "one"), (&a, "two"), (&b, "three")] {
        from.send_to(what.as_bytes(), ("127.0.0.1", srv.ports[3])).unwrap();
    }
    dump(&srv, &images, &[]);
    srv.reap_original();
    let queues = crit_decode(&images.join("sk-queues.img"));
    assert_eq!(queues["entries"].as_array().unwrap().len(), 3, "{queues}");
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    srv.assert_same_options();
    let sink: Value = serde_json::from_str(&std::fs::read_to_string(work.join("sink")).unwrap()).unwrap();
    let port = |u: &UdpSocket| u.local_addr().unwrap().port();
    assert_eq!(
        sink,
        serde_json::json!([["one", port(&a)], ["two", port(&a)], ["three", port(&b)]])
    );
    assert_eq!(udp_echo(srv.ports[2], "c"), "echo 1:c");
}

#[test]
fn a_connection_to_a_peer_outside_the_tree_continues_after_a_restore() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-established");
    let mut srv = Server::start(&work);
    let (mut c4, _) = srv.connect(false);
    let (mut c6, _) = srv.connect(true);
    assert_eq!(ping(&mut c4), "pong 1");
    assert_eq!(ping(&mut c6), "pong 2");
    // Unread by the server at the dump: a ping it has not answered yet.
    dump(&srv, &images, &["--tcp-established"]);
    c4.get_mut().write_all(b"pi").unwrap();
    srv.reap_original();
    // The dump's lock holds until the restore.
    assert_eq!(lock_rules(srv.ports[0]).len(), 2, "{:?}", lock_rules(srv.ports[0]));
    assert_eq!(lock_rules(srv.ports[1]).len(), 2);
    stasis_ok(&["restore", "-D", s(&images), "-d", "--tcp-established"]);
    c4.get_mut().write_all(b"ng\n").unwrap();
    let mut line = String::new();
    c4.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "pong 3");
    assert_eq!(ping(&mut c6), "pong 4");
    assert_eq!(srv.connect(false).1, "hello 3");
    assert!(lock_rules(srv.ports[0]).is_empty() && lock_rules(srv.ports[1]).is_empty());
    srv.assert_same_options();
    // Leaving repair mode clears SO_REUSEADDR: the v4 connection (from the listener that
    // has it) have it again, the v6 one (whose listener has not) has not.
    let reuse: Value = serde_json::from_str(&std::fs::read_to_string(work.join("conns")).unwrap()).unwrap();
    assert_eq!(reuse, serde_json::json!([false, true]));
    // The server ends the connection cleanly when we close ours.
    drop(c6);
    c4.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c4.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// A dump that fails after the connections are locked and read leaves them working and
/// unlocked, the server running untraced; a failure right after the lock too.
#[test]
fn a_dump_failing_after_the_lock_leaves_connections_working_and_unlocked() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-fault");
    let srv = Server::start(&work);
    let (mut c, _) = srv.connect(false);
    for (i, point) in ["tcp-locked", "tcp-repaired"].into_iter().enumerate() {
        let out = faulty_dump(&srv, &images, point).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(point), "{err}");
        assert_running_untraced(srv.pid);
        assert!(
            lock_rules(srv.ports[0]).is_empty(),
            "{point}: {:?}",
            lock_rules(srv.ports[0])
        );
        assert_eq!(ping(&mut c), format!("pong {}", i + 1));
        let _ = std::fs::remove_dir_all(&images);
    }
}

/// A restore whose listening port is taken fails naming the task, fd and address, and leaves
/// nothing behind; once the port is free it succeeds.
#[test]
fn a_restore_whose_port_is_taken_fails_naming_it_and_leaves_nothing() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-port-taken");
    let mut srv = Server::start(&work);
    dump(&srv, &images, &[]);
    srv.reap_original();
    let blocker = std::net::TcpListener::bind(("127.0.0.1", srv.ports[0])).unwrap();
    let out = stasis(&["restore", "-D", s(&images), "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let addr = format!("127.0.0.1:{}", srv.ports[0]);
    for want in [&format!("pid {}", srv.pid), "fd 3", &addr, "bind", "in use"] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    assert!(
        !Path::new(&format!("/proc/{}", srv.pid)).exists(),
        "a restored process is left"
    );
    drop(blocker);
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    assert_eq!(srv.connect(false).1, "hello 1");
}

/// A restore of a connection that fails (the server's port is taken) lifts the lock its dump
/// left for it, as it removes everything else it made: nothing stays locked.
#[test]
fn a_failed_restore_of_a_connection_lifts_its_lock() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-failed-restore-lock");
    let mut srv = Server::start(&work);
    let (_c, _) = srv.connect(false);
    dump(&srv, &images, &["--tcp-established"]);
    srv.reap_original();
    assert_eq!(
        lock_rules(srv.ports[0]).len(),
        2,
        "the dump leaves the connection locked"
    );
    let blocker = std::net::TcpListener::bind(("127.0.0.1", srv.ports[0])).unwrap();
    let out = stasis(&["restore", "-D", s(&images), "-d", "--tcp-established"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in use"), "{err}");
    assert!(
        lock_rules(srv.ports[0]).is_empty(),
        "locked after the failed restore: {:?}",
        lock_rules(srv.ports[0])
    );
    assert!(
        !Path::new(&format!("/proc/{}", srv.pid)).exists(),
        "a restored process is left"
    );
    drop(blocker);
}

/// A dumper killed (SIGKILL) once the connections are locked and read leaves the server
/// running untraced, its connection working and unlocked (the lock's keeper lifts it).
#[test]
fn a_dumper_killed_after_the_lock_leaves_connections_working_and_unlocked() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-killed");
    let srv = Server::start(&work);
    let (mut c, _) = srv.connect(false);
    let mut dumper = faulty_dump(&srv, &images, "tcp-repaired:stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dpid = dumper.id() as i32;
    let start = std::time::Instant::now();
    while !status_field(dpid, "State").unwrap_or_default().starts_with('T') {
        assert!(start.elapsed() < Duration::from_secs(20), "the dumper never stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lock_rules(srv.ports[0]).len(), 2, "locked while the dumper is there");
    dumper.kill().unwrap();
    dumper.wait().unwrap();
    let start = std::time::Instant::now();
    while !lock_rules(srv.ports[0]).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            lock_rules(srv.ports[0])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = std::time::Instant::now();
    while status_field(srv.pid, "TracerPid").as_deref() != Some("0") {
        assert!(start.elapsed() < Duration::from_secs(20), "still traced");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_running_untraced(srv.pid);
    assert_eq!(ping(&mut c), "pong 1");
}

/// A connection its client shut down on its side (the server's end in CLOSE_WAIT, ours in
/// FIN_WAIT2) comes back half-closed: the server still writes to it, then closes it, and we
/// see its bytes and then the end.
#[test]
fn a_half_closed_connection_comes_back_half_closed() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("inet-half-closed");
    let mut srv = Server::start(&work);
    let (mut c, _) = srv.connect(false);
    c.get_mut().write_all(b"keep\n").unwrap();
    assert_eq!(ping(&mut c), "pong 1");
    c.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert_eq!(line, "eof\n");
    dump(&srv, &images, &["--tcp-established"]);
    srv.reap_original();
    let files = crit_decode(&images.join("files.img"));
    let states: Vec<String> = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["isk"].is_object())
        .map(|e| e["isk"]["state"].to_string())
        .collect();
    // crit names some states and not others: CLOSE_WAIT is 8.
    assert!(states.iter().any(|s| s == "\"CLOSE_WAIT\"" || s == "8"), "{states:?}");
    stasis_ok(&["restore", "-D", s(&images), "-d", "--tcp-established"]);
    srv.assert_same_options();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye\n");
    assert_eq!(srv.connect(false).1, "hello 2");
}

/// `net.ipv4.ping_group_range` set for the test and put back as it was on drop (ICMP ping
/// sockets need the caller's group in it; Debian's default allows none).
struct PingGroups(String);

impl PingGroups {
    fn allow_root() -> PingGroups {
        let path = "/proc/sys/net/ipv4/ping_group_range";
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, "0 0").unwrap();
        PingGroups(old)
    }
}

impl Drop for PingGroups {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", self.0.trim());
    }
}

/// A raw ICMP socket with its ICMP filter and an ICMP ping socket connected to 127.0.0.1 come
/// back: after the restore the ping socket's echo request (sent without an address: it is
/// still connected) is answered, the raw socket sees the reply (its filter lets only echo
/// replies through) and the filter is as it was.
const RAW_PING: &str = r#"
import json, os, signal, socket, struct, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
raw.setsockopt(255, 1, struct.pack("I", 0xffffffff & ~1))
ping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
ping.connect(("127.0.0.1", 0))
ping.settimeout(10)
raw.settimeout(10)
def check(*_):
    ping.send(struct.pack("!BBHHH", 8, 0, 0, 0, 7) + b"still here")
    reply = ping.recv(100)
    seen = raw.recv(200)
    ihl = (seen[0] & 15) * 4
    out = {"reply": [reply[0], reply[8:].decode()], "raw": [seen[ihl], seen[ihl + 8:].decode()],
           "filter": struct.unpack("I", raw.getsockopt(255, 1, 4))[0]}
    open(os.path.join(d, "result.tmp"), "w").write(json.dumps(out))
    os.rename(os.path.join(d, "result.tmp"), os.path.join(d, "result"))
signal.signal(signal.SIGUSR1, check)
open(os.path.join(d, "ready"), "w").close()
# (not signal.pause(): a signal handled just as the restored task re-enters pause() would
# leave it waiting; a short sleep runs the Python handler at the latest when it ends)
while True:
    time.sleep(0.1)
"#;

#[test]
fn raw_and_ping_sockets_come_back_and_answer() {
    let _d = Descendants;
    let _groups = PingGroups::allow_root();
    let (_scratch, work, images) = test_dirs("inet-raw");
    let mut child = python(&["-c".as_ref(), RAW_PING.as_ref()], &work);
    let pid = child.id() as i32;
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    assert!(!child.wait().unwrap().success());
    let files = crit_decode(&images.join("files.img"));
    let raw = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["isk"]["type"] == "RAW" || e["isk"]["type"] == 3)
        .count();
    assert_eq!(raw, 1, "{files}");
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    let start = std::time::Instant::now();
    while !work.join("result").exists() {
        let err = std::fs::read_to_string(work.join("stderr")).unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(20) && err.is_empty(),
            "no result: {err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(work.join("result")).unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"reply": [0, "still here"], "raw": [0, "still here"],
                           "filter": 0xffff_fffe_u32}),
        "{}",
        std::fs::read_to_string(work.join("stderr")).unwrap_or_default()
    );
    let _ = checkpoint_core::sys::send_signal(pid, libc::SIGKILL);
    let _ = checkpoint_core::sys::wait_exit(pid);
}

/// An AF_PACKET socket bound to lo for IPv4 with PACKET_AUXDATA and a promiscuous membership
/// comes back: after the restore it sees a datagram sent on lo, its options and binding are
/// as they were, and the image holds its membership.
const PACKET: &str = r#"
import json, os, signal, socket, struct, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
p.bind(("lo", 0x0800))
p.setsockopt(263, 8, 1)
lo = socket.if_nametoindex("lo")
p.setsockopt(263, 1, struct.pack("iHH8s", lo, 1, 0, b""))
p.settimeout(10)
def check(*_):
    marker = b"packet-" + str(os.getpid()).encode()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(marker, ("127.0.0.1", 9))
    seen = False
    for _ in range(10000):
        if marker in p.recv(65536):
            seen = True
            break
    out = {"seen": seen, "auxdata": p.getsockopt(263, 8), "name": list(p.getsockname()[:2])}
    open(os.path.join(d, "result.tmp"), "w").write(json.dumps(out))
    os.rename(os.path.join(d, "result.tmp"), os.path.join(d, "result"))
signal.signal(signal.SIGUSR1, check)
open(os.path.join(d, "ready"), "w").close()
# (not signal.pause(): a signal handled just as the restored task re-enters pause() would
# leave it waiting; a short sleep runs the Python handler at the latest when it ends)
while True:
    time.sleep(0.1)
"#;

#[test]
fn a_packet_socket_comes_back_bound_with_its_options_and_membership() {
    packet_socket(Tool::Stasis, Tool::Stasis);
}

/// The same socket across CRIU 4.2.1 and Stasis: CRIU restores what Stasis dumped.
#[test]
fn criu_restores_a_packet_socket_stasis_dumped() {
    packet_socket(Tool::Stasis, Tool::Criu);
}

/// ... and Stasis restores what CRIU dumped.
#[test]
fn stasis_restores_a_packet_socket_criu_dumped() {
    packet_socket(Tool::Criu, Tool::Stasis);
}

/// The PACKET workload dumped by `dumper` and restored by `restorer`.
fn packet_socket(dumper: Tool, restorer: Tool) {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs(&format!("inet-packet-{}-{}", dumper.name(), restorer.name()));
    let mut child = python(&["-c".as_ref(), PACKET.as_ref()], &work);
    let pid = child.id() as i32;
    dumper.dump(pid, &images, &[]).unwrap();
    assert!(!child.wait().unwrap().success());
    let files = crit_decode(&images.join("files.img"));
    let psk = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e.get("psk"))
        .unwrap_or_else(|| panic!("no packet socket in {files}"))
        .clone();
    assert_eq!(psk["mclist"].as_array().map(Vec::len), Some(1), "{psk}");
    assert_eq!(psk["aux_data"], true, "{psk}");
    // ETH_P_IP in network byte order, as socket(2) takes it and CRIU records it
    assert_eq!(psk["protocol"], 0x0008, "{psk}");
    restorer.restore(&images, &[]).unwrap();
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    let start = std::time::Instant::now();
    while !work.join("result").exists() {
        let err = std::fs::read_to_string(work.join("stderr")).unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(20) && err.is_empty(),
            "no result: {err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(work.join("result")).unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"seen": true, "auxdata": 1, "name": ["lo", 0x0800]})
    );
    let _ = checkpoint_core::sys::send_signal(pid, libc::SIGKILL);
    let _ = checkpoint_core::sys::wait_exit(pid);
}
