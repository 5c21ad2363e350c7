//! The network lock: a peer outside the dumped tree (this test process) streams through one TCP
//! connection to a server at full speed both ways while the server is dumped and restored; the
//! lock's iptables rules (mark 0xc114) hold the connection meanwhile, so that afterwards both
//! ends agree byte for byte: nothing lost, nothing duplicated, no reset. A dump with
//! `--leave-running` lifts the lock when the server runs on; a dump that fails after the lock
//! was taken lifts it and leaves the connection working. Each with Stasis and CRIU 4.2.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ctests::net::{
    assert_no_lock_rules, expected_lock_rules, free_port, lock_rules, write_file, LockRulesCleanup, Server, Tool,
    PYTHON,
};
use ctests::workload::{assert_running_untraced, test_dirs, wait_for_file, Descendants};

const EST: &[&str] = &["--tcp-established"];

/// The stream's unit: an 8-byte little-endian block number, then a fixed pattern.
const BLOCK: usize = 4096;

fn pattern() -> Vec<u8> {
    (0..BLOCK - 8).map(|i| ((i * 131 + 7) & 0xff) as u8).collect()
}

/// The server: accepts one connection, sends back every byte plus one (mod 256) as it comes,
/// and checks every block it receives (number and pattern); at EOF it shuts its side and
/// writes what it counted to RESULT. An optional ballast of MB random MiB makes its memory big.
const STREAM_PY: &str = r#"
import os, socket, sys
host, port, ready, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ballast = os.urandom(int(sys.argv[5]) << 20) if len(sys.argv) > 5 else b""
BLOCK = 4096
pattern = bytes(((i * 131 + 7) & 0xff) for i in range(BLOCK - 8))
table = bytes((i + 1) & 0xff for i in range(256))
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
l = socket.socket(fam, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port))
l.listen(1)
open(ready, "w").close()
c, _ = l.accept()
got = block = bad = 0
buf = b""
while True:
    d = c.recv(262144)
    if not d:
        break
    c.sendall(d.translate(table))
    got += len(d)
    buf += d
    n = len(buf) // BLOCK
    mv = memoryview(buf)
    for i in range(n):
        b = mv[i * BLOCK:(i + 1) * BLOCK]
        if int.from_bytes(b[:8], "little") != block or b[8:] != pattern:
            bad += 1
        block += 1
    buf = bytes(mv[n * BLOCK:])
c.shutdown(socket.SHUT_WR)
with open(result + ".tmp", "w") as f:
    f.write(f"bytes={got} blocks={block} bad={bad} rest={len(buf)} ballast={len(ballast)}\n")
os.rename(result + ".tmp", result)
"#;

/// The peer: a writer thread sending numbered blocks as fast as the connection takes them,
/// and a reader thread checking every byte that comes back.
struct Stream {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    writer: JoinHandle<Result<(), String>>,
    reader: JoinHandle<Result<u64, String>>,
}

impl Stream {
    fn start(addr: SocketAddr) -> Stream {
        let s = TcpStream::connect(addr).unwrap();
        let local = s.local_addr().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let (stop, sent, received) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let mut w = s.try_clone().unwrap();
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let writer = std::thread::spawn(move || {
            let pat = pattern();
            let mut block = vec![0u8; BLOCK];
            block[8..].copy_from_slice(&pat);
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                block[..8].copy_from_slice(&n.to_le_bytes());
                w.write_all(&block).map_err(|e| format!("write of block {n}: {e}"))?;
                n += 1;
                sent2.store(n * BLOCK as u64, Ordering::Relaxed);
            }
            w.shutdown(Shutdown::Write).map_err(|e| e.to_string())
        });
        let mut r = s;
        let received2 = received.clone();
        let reader = std::thread::spawn(move || {
            let expected_pat: Vec<u8> = pattern().iter().map(|b| b.wrapping_add(1)).collect();
            let mut buf = vec![0u8; 1 << 18];
            let mut pending: Vec<u8> = Vec::new();
            let (mut total, mut block) = (0u64, 0u64);
            loop {
                let n = r.read(&mut buf).map_err(|e| format!("read after {total} bytes: {e}"))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                received2.store(total, Ordering::Relaxed);
                pending.extend_from_slice(&buf[..n]);
                let whole = pending.len() / BLOCK;
                for b in pending[..whole * BLOCK].chunks(BLOCK) {
                    let header: Vec<u8> = block.to_le_bytes().iter().map(|x| x.wrapping_add(1)).collect();
                    if b[..8] != header[..] || b[8..] != expected_pat[..] {
                        return Err(format!("block {block} came back wrong (lost or duplicated data)"));
                    }
                    block += 1;
                }
                pending.drain(..whole * BLOCK);
            }
            if !pending.is_empty() {
                return Err(format!("{} bytes of a block left at EOF", pending.len()));
            }
            Ok(total)
        });
        Stream {
            local,
            stop,
            sent,
            received,
            writer,
            reader,
        }
    }

    /// Waits until more than `than` bytes came back.
    fn wait_received_above(&self, than: u64, within: Duration) {
        let start = Instant::now();
        while self.received.load(Ordering::Relaxed) <= than {
            assert!(
                start.elapsed() < within,
                "the stream is stuck at {than} bytes after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops sending, waits for the echo of everything, and returns the bytes sent.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().unwrap().expect("the writer");
        let back = self.reader.join().unwrap().expect("the reader");
        let sent = self.sent.load(Ordering::Relaxed);
        assert_eq!(back, sent, "bytes sent and bytes echoed differ");
        sent
    }
}

struct Setup {
    server: Server,
    port: u16,
    addr: SocketAddr,
    result: std::path::PathBuf,
}

fn start_server(scratch: &Path, work: &Path, ipv6: bool, ballast_mb: Option<u32>) -> Setup {
    let port = free_port();
    let host = if ipv6 { "::1" } else { "127.0.0.1" };
    let addr = if ipv6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let script = write_file(scratch, "stream.py", STREAM_PY);
    let (ready, result) = (work.join("ready"), work.join("result"));
    let (p, mb) = (port.to_string(), ballast_mb.map(|m| m.to_string()));
    let mut argv = vec![
        PYTHON,
        script.to_str().unwrap(),
        host,
        &p,
        ready.to_str().unwrap(),
        result.to_str().unwrap(),
    ];
    argv.extend(mb.as_deref());
    let server = Server::start(&argv, &scratch.join("stderr"));
    wait_for_file(&ready, Duration::from_secs(60));
    Setup {
        server,
        port,
        addr,
        result,
    }
}

/// The server's own count, once it has seen EOF: must agree with `sent`.
fn check_server_result(result: &Path, sent: u64) {
    wait_for_file(result, Duration::from_secs(30));
    let text = std::fs::read_to_string(result).unwrap();
    let blocks = sent / BLOCK as u64;
    assert!(
        text.starts_with(&format!("bytes={sent} blocks={blocks} bad=0 rest=0 ")),
        "the server counted otherwise than the {sent} bytes sent: {text}"
    );
}

fn stream_across_dump_and_restore(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("netlock-{tool:?}"));
    let _reaper = Descendants;
    let mut s = start_server(&scratch.0, &work, false, None);
    let _rules = LockRulesCleanup(vec![s.port]);
    let stream = Stream::start(s.addr);
    stream.wait_received_above(64 << 20, Duration::from_secs(30));

    tool.dump_ok(s.server.pid, &images, EST);
    s.server.reap_original();
    let mut held = lock_rules(&[s.port]);
    held.sort();
    let mut expected = expected_lock_rules(s.addr, stream.local);
    expected.sort();
    assert_eq!(held, expected, "{tool:?}: the lock rules after the dump");
    // The peer goes on sending into the lock for a while.
    std::thread::sleep(Duration::from_millis(500));
    let at_restore = stream.received.load(Ordering::Relaxed);
    tool.restore_ok(&images, EST);
    assert_no_lock_rules(&[s.port], &format!("{tool:?}: after the restore"));
    assert_running_untraced(s.server.pid);

    // The stream resumes (after TCP's retransmission back-off) and runs on at full speed.
    stream.wait_received_above(at_restore, Duration::from_secs(30));
    let resumed = stream.received.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    let later = stream.received.load(Ordering::Relaxed);
    assert!(
        later > resumed + (16 << 20),
        "only {} bytes in 3 s after the restore",
        later - resumed
    );
    let sent = stream.finish();
    check_server_result(&s.result, sent);
    eprintln!("{tool:?}: {sent} bytes each way, {at_restore} of them before the restore");
}

#[test]
fn a_stream_through_the_dump_and_restore_loses_and_duplicates_nothing_stasis() {
    stream_across_dump_and_restore(Tool::Stasis);
}

#[test]
fn a_stream_through_the_dump_and_restore_loses_and_duplicates_nothing_criu() {
    stream_across_dump_and_restore(Tool::Criu);
}

fn leave_running(tool: Tool) {
    let (scratch, work, images) = test_dirs(&format!("netlock-leave-{tool:?}"));
    let _reaper = Descendants;
    let s = start_server(&scratch.0, &work, true, None);
    let _rules = LockRulesCleanup(vec![s.port]);
    let stream = Stream::start(s.addr);
    stream.wait_received_above(32 << 20, Duration::from_secs(30));
    let mut args = EST.to_vec();
    args.push("--leave-running");
    tool.dump_ok(s.server.pid, &images, &args);
    assert_no_lock_rules(&[s.port], &format!("{tool:?}: after a dump with --leave-running"));
    assert_running_untraced(s.server.pid);
    let after = stream.received.load(Ordering::Relaxed);
    stream.wait_received_above(after + (16 << 20), Duration::from_secs(30));
    let sent = stream.finish();
    check_server_result(&s.result, sent);
}

#[test]
fn a_dump_that_leaves_the_server_running_lifts_the_lock_and_the_ipv6_stream_goes_on_stasis() {
    leave_running(Tool::Stasis);
}

#[test]
fn a_dump_that_leaves_the_server_running_lifts_the_lock_and_the_ipv6_stream_goes_on_criu() {
    leave_running(Tool::Criu);
}

/// The dump fails after the connection was read and locked: its images go to a tmpfs too
/// small for the server's 48 MiB of random ballast, which is written after the sockets.
fn failed_dump(tool: Tool) {
    let (scratch, work, _) = test_dirs(&format!("netlock-fail-{tool:?}"));
    let _reaper = Descendants;
    let tiny = scratch.join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let _mount = Tmpfs::mount(&tiny, "16m");
    let s = start_server(&scratch.0, &work, false, Some(48));
    let _rules = LockRulesCleanup(vec![s.port]);
    let stream = Stream::start(s.addr);
    stream.wait_received_above(32 << 20, Duration::from_secs(30));

    let images = match tool {
        Tool::Stasis => scratch.join("images"),
        Tool::Criu => tiny.join("images"),
    };
    // CRIU writes the connections before the memory: a full disk fails it after the lock.
    // Stasis writes them after the memory (the lock is held for less time), so a full disk
    // fails it before the lock: it is failed on purpose once every connection is locked and
    // read instead (STASIS_FAULT; the same way out as any error there).
    let out = match tool {
        Tool::Stasis => Command::new(ctests::workspace_bin("stasis"))
            .args(["dump", "-t", &s.server.pid.to_string(), "-D", images.to_str().unwrap()])
            .args(EST)
            .env("STASIS_FAULT", "tcp-repaired")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
        Tool::Criu => tool.dump(s.server.pid, &images, EST),
    };
    let log = ctests::net::errors_of_log(&images.join("dump.log"));
    let err = format!("{}{log}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{tool:?}: the dump succeeded");
    let why = match tool {
        Tool::Stasis => "fault injected at tcp-repaired",
        Tool::Criu => "No space left on device",
    };
    assert!(err.contains(why), "{tool:?} failed otherwise than for {why:?}: {err}");
    // It failed after the sockets: the connection is in the images already.
    let files: Vec<String> = std::fs::read_dir(&images)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        files.iter().any(|f| f.starts_with("tcp-stream-")),
        "{tool:?}: the dump failed before it read the connection: {files:?}"
    );
    assert_no_lock_rules(&[s.port], &format!("{tool:?}: after a failed dump"));
    assert_running_untraced(s.server.pid);
    let after = stream.received.load(Ordering::Relaxed);
    stream.wait_received_above(after + (16 << 20), Duration::from_secs(30));
    let sent = stream.finish();
    check_server_result(&s.result, sent);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", at.display());
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_dump_failing_after_the_lock_lifts_it_and_the_connection_goes_on_stasis() {
    failed_dump(Tool::Stasis);
}

#[test]
fn a_dump_failing_after_the_lock_lifts_it_and_the_connection_goes_on_criu() {
    failed_dump(Tool::Criu);
}
