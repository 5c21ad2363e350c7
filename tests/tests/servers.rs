//! Real servers on the host checkpointed with their clients' connections open (`--tcp-established`):
//! redis, nginx (master and two workers), and a Python server with TCP and UDP on IPv4 and
//! IPv6. Each is checked by real clients after its restore: the connection held across the
//! checkpoint goes on (same connection, state intact both ways) and new clients are served.
//! Also `--tcp-close`, the refusal of a connection without `--tcp-established`, and a server
//! running as nobody. Every scenario runs with Stasis and, where it can, with the reference
//! CRIU 4.2 (which validates the scenario and compares the two).

use std::net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ctests::net::{
    assert_no_lock_rules, children_of, errors_of_log, expect_closed, fd_of_connection, free_port, lock_rules,
    wait_listening, write_file, HttpClient, LineClient, LockRulesCleanup, RespClient, Server, Tool, PYTHON,
};
use ctests::workload::{assert_running_untraced, status_field, test_dirs, wait_for_file, Descendants};

const EST: &[&str] = &["--tcp-established"];

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

/// Dumps `server` (killed by the dump) with `dump_args`, checks the lock rules the dump leaves
/// for `port`, restores with `restore_args`, and checks the rules are gone and the server runs
/// free.
fn checkpoint(tool: Tool, server: &mut Server, images: &Path, port: u16, dump_args: &[&str], restore_args: &[&str]) {
    let kids = children_of(server.pid);
    tool.dump_ok(server.pid, images, dump_args);
    server.reap_original();
    // The killed children were re-parented to us (the subreaper): reaped, their pids are free.
    for k in kids {
        let _ = checkpoint_core::sys::wait_exit(k);
    }
    let held = lock_rules(&[port]);
    assert!(
        !held.is_empty(),
        "{tool:?}: after the dump no lock rule holds the connections of port {port}"
    );
    tool.restore_ok(images, restore_args);
    assert_no_lock_rules(&[port], &format!("{tool:?}: after the restore"));
    assert_running_untraced(server.pid);
}

// ---------------------------------------------------------------------------------------------
// redis

fn redis(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("redis-{tool:?}"));
    let _reaper = Descendants;
    let port = free_port();
    let _rules = LockRulesCleanup(vec![port]);
    let p = port.to_string();
    let mut server = Server::start(
        &[
            "redis-server",
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            work.to_str().unwrap(),
            "--logfile",
            work.join("redis.log").to_str().unwrap(),
        ],
        &scratch.join("stderr"),
    );
    wait_listening(v4(port), Duration::from_secs(20));

    let mut held = RespClient::connect(v4(port));
    assert_eq!(held.cmd(&["SET", "greeting", "hello across a checkpoint"]), "OK");
    for i in 1..=5 {
        assert_eq!(held.cmd(&["INCR", "n"]), i.to_string());
    }
    assert_eq!(held.cmd(&["RPUSH", "list", "a", "b", "c"]), "3");

    checkpoint(tool, &mut server, &images, port, EST, EST);

    // The same connection: its data and the server's state, both ways.
    assert_eq!(held.cmd(&["GET", "greeting"]), "hello across a checkpoint");
    assert_eq!(held.cmd(&["INCR", "n"]), "6");
    assert_eq!(held.cmd(&["LLEN", "list"]), "3");
    assert_eq!(held.cmd(&["SET", "after", "written after the restore"]), "OK");
    // New clients: redis-cli.
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &p])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(cli(&["GET", "after"]), "written after the restore");
    assert_eq!(cli(&["LRANGE", "list", "0", "-1"]), "a\nb\nc");
    assert_eq!(cli(&["INCR", "n"]), "7");
    assert_eq!(cli(&["DBSIZE"]), "4");
    assert_eq!(
        held.cmd(&["GET", "n"]),
        "7",
        "the held connection sees the new client's write"
    );
    let clients = cli(&["CLIENT", "LIST"]);
    assert_eq!(clients.lines().count(), 2, "the held client and redis-cli: {clients}");
}

#[test]
fn redis_keeps_its_client_connection_and_data_stasis() {
    redis(Tool::Stasis);
}

#[test]
fn redis_keeps_its_client_connection_and_data_criu() {
    redis(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// nginx

fn nginx(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("nginx-{tool:?}"));
    let _reaper = Descendants;
    let port = free_port();
    let _rules = LockRulesCleanup(vec![port]);
    let html = work.join("html");
    std::fs::create_dir(&html).unwrap();
    let page = "hello from nginx, before and after\n".repeat(20);
    write_file(&html, "index.html", &page);
    let w = work.to_str().unwrap();
    // The workers run as nobody (nginx's default for a root master), except under CRIU, which
    // cannot read the rlimits of a process of another user here (no CAP_SYS_RESOURCE).
    let user = if tool == Tool::Criu { "user root root;\n" } else { "" };
    let conf = write_file(
        &work,
        "nginx.conf",
        &format!(
            "{user}worker_processes 2;\npid {w}/nginx.pid;\nerror_log {w}/error.log notice;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {w}/access.log;\n  client_body_temp_path {w}/body;\n\
               keepalive_timeout 300s;\n  keepalive_requests 10000;\n\
               server {{\n    listen 127.0.0.1:{port};\n    listen [::1]:{port};\n    root {w}/html;\n  }}\n}}\n"
        ),
    );
    let mut server = Server::start(
        &[
            "nginx",
            "-p",
            w,
            "-c",
            conf.to_str().unwrap(),
            "-e",
            &format!("{w}/error.log"),
            "-g",
            "daemon off; master_process on;",
        ],
        &scratch.join("stderr"),
    );
    wait_listening(v4(port), Duration::from_secs(20));
    wait_listening(v6(port), Duration::from_secs(20));
    let workers = wait_workers(server.pid, &[]);

    let get_ok = |c: &mut HttpClient, what: &str| {
        let (status, head, body) = c.get("/").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(status, 200, "{what}: {head}");
        assert_eq!(String::from_utf8_lossy(&body), page, "{what}");
        assert!(!head.contains("connection: close"), "{what}: {head}");
    };
    let mut held4 = HttpClient::connect(v4(port));
    let mut held6 = HttpClient::connect(v6(port));
    get_ok(&mut held4, "IPv4 keep-alive before");
    get_ok(&mut held6, "IPv6 keep-alive before");

    checkpoint(tool, &mut server, &images, port, EST, EST);
    assert_eq!(children_of(server.pid), workers, "the workers came back at their pids");

    for i in 0..3 {
        get_ok(&mut held4, &format!("IPv4 keep-alive after, request {i}"));
        get_ok(&mut held6, &format!("IPv6 keep-alive after, request {i}"));
    }
    get_ok(&mut HttpClient::connect(v4(port)), "a new IPv4 connection");
    get_ok(&mut HttpClient::connect(v6(port)), "a new IPv6 connection");

    // The master still manages its workers: a reload starts new ones, which serve.
    checkpoint_core::sys::send_signal(server.pid, libc::SIGHUP).unwrap();
    let new_workers = wait_workers(server.pid, &workers);
    assert!(
        new_workers.iter().all(|w| !workers.contains(w)),
        "{workers:?} -> {new_workers:?}"
    );
    get_ok(
        &mut HttpClient::connect(v4(port)),
        "a new IPv4 connection after the reload",
    );
    get_ok(
        &mut HttpClient::connect(v6(port)),
        "a new IPv6 connection after the reload",
    );
    // nginx logs a request when it finalizes it, after the client has its response: wait
    // for the twelfth line rather than read the log at once.
    let start = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(work.join("access.log")).unwrap();
        if log.lines().count() >= 12 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the nginx master `master` has exactly two workers, none of them in `old`.
fn wait_workers(master: i32, old: &[i32]) -> Vec<i32> {
    let start = std::time::Instant::now();
    loop {
        let kids = children_of(master);
        if kids.len() == 2 && kids.iter().all(|k| !old.contains(k)) {
            return kids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nginx {master} has workers {kids:?} (old ones {old:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nginx_master_and_workers_keep_their_keepalive_connections_stasis() {
    nginx(Tool::Stasis);
}

#[test]
fn nginx_master_and_workers_keep_their_keepalive_connections_criu() {
    nginx(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// A Python server: a counter over TCP (IPv4 and IPv6) and UDP sockets it reads on request.

/// The counter server: `INC` and `GET` on TCP lines; `UDP4`/`UDP6` read one datagram (without
/// waiting) from the UDP socket bound to the same port ("none" if the queue is empty).
const COUNTER_PY: &str = r#"
import os, selectors, socket, sys
port, ready = int(sys.argv[1]), sys.argv[2]
sel = selectors.DefaultSelector()
udp = {}
for fam, host, name in ((socket.AF_INET, "127.0.0.1", "4"), (socket.AF_INET6, "::1", "6")):
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    t.bind((host, port))
    t.listen(16)
    sel.register(t, selectors.EVENT_READ, "listen")
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((host, port))
    udp[name] = u
count = 0
pending = {}
open(ready, "w").close()
def answer(line):
    global count
    if line == "INC":
        count += 1
        return str(count)
    if line == "GET":
        return str(count)
    if line in ("UDP4", "UDP6"):
        try:
            data, addr = udp[line[3]].recvfrom(65536, socket.MSG_DONTWAIT)
            return data.decode()
        except BlockingIOError:
            return "none"
    if line == "PID":
        return str(os.getpid())
    return "ERR " + line
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if key.data == "listen":
            c, _ = s.accept()
            sel.register(c, selectors.EVENT_READ, "conn")
            pending[c] = b""
            continue
        data = s.recv(4096)
        if not data:
            sel.unregister(s)
            del pending[s]
            s.close()
            continue
        pending[s] += data
        while b"\n" in pending[s]:
            line, pending[s] = pending[s].split(b"\n", 1)
            s.sendall((answer(line.decode()) + "\n").encode())
"#;

/// Starts the counter server on a free port (as `user` if given, through setpriv).
fn start_counter(scratch: &Path, work: &Path, user: Option<&str>) -> (Server, u16) {
    let port = free_port();
    let script = write_file(scratch, "counter.py", COUNTER_PY);
    let ready = work.join("ready");
    let p = port.to_string();
    let mut argv: Vec<&str> = Vec::new();
    let reuid;
    if let Some(u) = user {
        reuid = format!("--reuid={u}");
        argv.extend(["setpriv", &reuid, "--regid=nogroup", "--clear-groups"]);
    }
    argv.extend([PYTHON, script.to_str().unwrap(), &p, ready.to_str().unwrap()]);
    let server = Server::start(&argv, &scratch.join("stderr"));
    wait_for_file(&ready, Duration::from_secs(20));
    (server, port)
}

fn python_tcp_udp(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("pyserver-{tool:?}"));
    let _reaper = Descendants;
    let (mut server, port) = start_counter(&scratch.0, &work, None);
    let _rules = LockRulesCleanup(vec![port]);
    let mut c4 = LineClient::connect(v4(port));
    let mut c6 = LineClient::connect(v6(port));
    for i in 1..=3 {
        assert_eq!(c4.ask("INC"), (2 * i - 1).to_string());
        assert_eq!(c6.ask("INC"), (2 * i).to_string());
    }
    let u4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let u6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    u4.send_to(b"read before", v4(port)).unwrap();
    u6.send_to(b"read before 6", v6(port)).unwrap();
    assert_eq!(c4.ask("UDP4"), "read before");
    assert_eq!(c6.ask("UDP6"), "read before 6");
    // One datagram each, queued unread at the checkpoint.
    u4.send_to(b"queued at the checkpoint", v4(port)).unwrap();
    u6.send_to(b"queued at the checkpoint 6", v6(port)).unwrap();
    std::thread::sleep(Duration::from_millis(50));

    checkpoint(tool, &mut server, &images, port, EST, EST);

    assert_eq!(c4.ask("INC"), "7", "the IPv4 connection goes on");
    assert_eq!(c6.ask("INC"), "8", "the IPv6 connection goes on");
    if tool == Tool::Stasis {
        assert_eq!(c4.ask("UDP4"), "queued at the checkpoint");
        assert_eq!(c6.ask("UDP6"), "queued at the checkpoint 6");
    } else {
        // CRIU does not save a UDP socket's receive queue: the datagrams are lost.
        assert_eq!(c4.ask("UDP4"), "none");
        assert_eq!(c6.ask("UDP6"), "none");
    }
    assert_eq!(c4.ask("UDP4"), "none");
    u4.send_to(b"sent after", v4(port)).unwrap();
    u6.send_to(b"sent after 6", v6(port)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c6.ask("UDP4"), "sent after");
    assert_eq!(c4.ask("UDP6"), "sent after 6");
    assert_eq!(LineClient::connect(v4(port)).ask("INC"), "9");
    assert_eq!(LineClient::connect(v6(port)).ask("GET"), "9");
    assert_eq!(c4.ask("PID"), server.pid.to_string());
}

#[test]
fn a_python_server_keeps_tcp_and_udp_on_ipv4_and_ipv6_stasis() {
    python_tcp_udp(Tool::Stasis);
}

#[test]
fn a_python_server_keeps_tcp_and_udp_on_ipv4_and_ipv6_criu() {
    python_tcp_udp(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// --tcp-close

fn tcp_close(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("tcp-close-{tool:?}"));
    let _reaper = Descendants;
    let (mut server, port) = start_counter(&scratch.0, &work, None);
    let _rules = LockRulesCleanup(vec![port]);
    let mut held = LineClient::connect(v4(port));
    assert_eq!(held.ask("INC"), "1");
    assert_eq!(held.ask("INC"), "2");

    tool.dump_ok(server.pid, &images, EST);
    server.reap_original();
    assert!(!lock_rules(&[port]).is_empty(), "{tool:?}: no lock rule after the dump");
    tool.restore_ok(&images, &["--tcp-close"]);
    assert_running_untraced(server.pid);
    if tool == Tool::Criu {
        // CRIU lifts the lock of the connections it restores in repair mode only: after
        // --tcp-close its rules stay (and the peer would hang); here they are lifted by hand.
        assert!(
            !lock_rules(&[port]).is_empty(),
            "CRIU lifted its lock rules after --tcp-close"
        );
        drop(LockRulesCleanup(vec![port]));
    }
    assert_no_lock_rules(&[port], &format!("{tool:?}: after a restore with --tcp-close"));

    // The held connection was restored closed: the client sees it end (EOF or reset).
    let mut s: TcpStream = held.reader.get_ref().try_clone().unwrap();
    let _ = std::io::Write::write_all(&mut s, b"INC\n");
    let how = expect_closed(&mut s, Duration::from_secs(10));
    eprintln!("the held connection ended: {how}");
    // The listener serves on, the state intact.
    let mut fresh = LineClient::connect(v4(port));
    assert_eq!(fresh.ask("GET"), "2");
    assert_eq!(fresh.ask("INC"), "3");
    assert_eq!(LineClient::connect(v6(port)).ask("INC"), "4");
}

#[test]
fn tcp_close_restores_the_connection_closed_and_the_listener_serves_stasis() {
    tcp_close(Tool::Stasis);
}

#[test]
fn tcp_close_restores_the_connection_closed_and_the_listener_serves_criu() {
    tcp_close(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// Refusal without --tcp-established

fn refused_without_tcp_established(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("tcp-refused-{tool:?}"));
    let _reaper = Descendants;
    let (server, port) = start_counter(&scratch.0, &work, None);
    let _rules = LockRulesCleanup(vec![port]);
    let mut held = LineClient::connect(v4(port));
    assert_eq!(held.ask("INC"), "1");
    let (client, srv) = held.addrs();
    let fd = fd_of_connection(server.pid, srv, client).expect("the server's fd of the connection");

    let out = tool.dump(server.pid, &images, &[]);
    assert!(
        !out.status.success(),
        "{tool:?}: a dump of an established connection without --tcp-established succeeded"
    );
    let text = match tool {
        Tool::Stasis => String::from_utf8_lossy(&out.stderr).into_owned(),
        Tool::Criu => errors_of_log(&images.join("dump.log")),
    };
    assert!(
        text.contains("tcp-established"),
        "{tool:?} does not name the flag: {text}"
    );
    if tool == Tool::Stasis {
        for wanted in [
            format!("pid {}", server.pid),
            format!("fd {fd}"),
            srv.to_string(),
            client.to_string(),
            "--tcp-established".to_owned(),
        ] {
            assert!(text.contains(&wanted), "the refusal does not name {wanted:?}: {text}");
        }
    }
    // The server runs on, untraced, and serves the same connection and new ones.
    assert_running_untraced(server.pid);
    assert_eq!(status_field(server.pid, "TracerPid").as_deref(), Some("0"));
    assert_eq!(held.ask("INC"), "2");
    assert_eq!(LineClient::connect(v4(port)).ask("INC"), "3");
    assert_no_lock_rules(&[port], &format!("{tool:?}: after a refused dump"));
}

#[test]
fn an_established_connection_is_refused_without_tcp_established_stasis() {
    refused_without_tcp_established(Tool::Stasis);
}

#[test]
fn an_established_connection_is_refused_without_tcp_established_criu() {
    refused_without_tcp_established(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// In-flight connections: accepted by the kernel, not yet by the server

/// Accepts only once the file GO exists; then answers every connection "hi" and closes it.
const LAZY_PY: &str = r#"
import os, socket, sys, time
port, ready, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port))
l.listen(8)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.02)
while True:
    c, _ = l.accept()
    c.sendall(b"hi\n")
    c.close()
"#;

fn in_flight(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("in-flight-{tool:?}"));
    let _reaper = Descendants;
    let port = free_port();
    let _rules = LockRulesCleanup(vec![port]);
    let script = write_file(&scratch.0, "lazy.py", LAZY_PY);
    let (ready, go) = (work.join("ready"), work.join("go"));
    let p = port.to_string();
    let mut server = Server::start(
        &[
            PYTHON,
            script.to_str().unwrap(),
            &p,
            ready.to_str().unwrap(),
            go.to_str().unwrap(),
        ],
        &scratch.join("stderr"),
    );
    wait_for_file(&ready, Duration::from_secs(20));
    // Connected by the kernel, waiting in the listener's accept queue.
    let mut pending = TcpStream::connect(v4(port)).unwrap();

    let out = tool.dump(server.pid, &images, EST);
    assert!(
        !out.status.success(),
        "{tool:?}: a listener with an in-flight connection was dumped"
    );
    let text = match tool {
        Tool::Stasis => String::from_utf8_lossy(&out.stderr).into_owned(),
        Tool::Criu => errors_of_log(&images.join("dump.log")),
    };
    assert!(
        text.contains("--skip-in-flight"),
        "{tool:?} does not name --skip-in-flight: {text}"
    );
    if tool == Tool::Stasis {
        assert!(text.contains(&format!("pid {}", server.pid)), "{text}");
    }
    assert_running_untraced(server.pid);
    assert_no_lock_rules(&[port], &format!("{tool:?}: after the refused dump"));

    // With --skip-in-flight: the pending connection is dropped (its client sees it end), the
    // listener is restored and serves.
    std::fs::remove_dir_all(&images).unwrap();
    tool.dump_ok(server.pid, &images, &["--tcp-established", "--skip-in-flight"]);
    server.reap_original();
    tool.restore_ok(&images, EST);
    assert_running_untraced(server.pid);
    std::fs::write(&go, "").unwrap();
    let how = expect_closed(&mut pending, Duration::from_secs(10));
    eprintln!("the in-flight connection ended: {how}");
    let mut fresh = TcpStream::connect(v4(port)).unwrap();
    fresh.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hi = String::new();
    std::io::Read::read_to_string(&mut fresh, &mut hi).unwrap();
    assert_eq!(hi, "hi\n");
    assert_no_lock_rules(&[port], &format!("{tool:?}: after the restore"));
}

#[test]
fn an_in_flight_connection_is_refused_unless_skipped_then_the_listener_serves_stasis() {
    in_flight(Tool::Stasis);
}

#[test]
fn an_in_flight_connection_is_refused_unless_skipped_then_the_listener_serves_criu() {
    in_flight(Tool::Criu);
}

// ---------------------------------------------------------------------------------------------
// A server running as nobody (CRIU cannot dump it here: it lacks CAP_SYS_RESOURCE)

#[test]
fn a_server_running_as_nobody_keeps_its_connection_stasis() {
    let (scratch, work, images) = test_dirs("pyserver-nobody");
    let _reaper = Descendants;
    // The server (nobody) writes its ready file in work/.
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (mut server, port) = start_counter(&scratch.0, &work, Some("nobody"));
    let _rules = LockRulesCleanup(vec![port]);
    assert_eq!(
        status_field(server.pid, "Uid").unwrap().split_whitespace().next(),
        Some("65534")
    );
    let mut held = LineClient::connect(v4(port));
    assert_eq!(held.ask("INC"), "1");
    checkpoint(Tool::Stasis, &mut server, &images, port, EST, EST);
    assert_eq!(
        status_field(server.pid, "Uid").unwrap().split_whitespace().next(),
        Some("65534")
    );
    assert_eq!(held.ask("INC"), "2");
    assert_eq!(LineClient::connect(v6(port)).ask("INC"), "3");
}
