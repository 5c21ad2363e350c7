//! Fidelity (issue 12): states a process can be in that come back as they were, and CRIU's
//! command line taken as it is. Each test sets the state up, dumps, restores, and has the
//! restored process check it from inside.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctests::scripted::*;
use ctests::workload::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `stasis ARGS`, which must end within `limit` (it is killed and the test fails otherwise).
fn stasis_within(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(ctests::workspace_bin("stasis"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stasis {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A seqpacket socket whose peer has closed with messages still queued: the dump used to loop
/// for ever on reads that say "end" (at 100 % CPU, the process traced). It ends, and the
/// restored socket holds the same messages, each whole, then the end.
const CLOSED_PEER: &str = r#"
import json, os, signal, socket, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
b.send(b"x")
b.send(b"yz")
b.close()
s, t = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
t.sendall(b"stream bytes")
t.close()
ready_and_wait()
got = [a.recv(10).decode(), a.recv(10).decode(), a.recv(10).decode(), s.recv(100).decode(), s.recv(100).decode()]
report(got)
"#;

#[test]
fn a_queue_whose_peer_has_closed_is_dumped_in_bounded_time_and_restored_with_its_end() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-closed-peer");
    let mut child = python(CLOSED_PEER, &work);
    let pid = child.id() as i32;
    let out = stasis_within(
        &["dump", "-t", &pid.to_string(), "-D", s(&images)],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!child.wait().unwrap().success());
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    wait_for_file(&work.join("result"), Duration::from_secs(20));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("result")).unwrap()).unwrap();
    assert_eq!(result, serde_json::json!(["x", "yz", "", "stream bytes", ""]));
    let _ = checkpoint_core::sys::wait_exit(pid);
}

/// A process holding a 1.5 MiB unlinked file: on SIGUSR1 it checks the file's contents.
const UNLINKED: &str = r#"
import hashlib, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
data = bytes(range(256)) * 6144
f = open(os.path.join(d, "big"), "w+b")
f.write(data)
f.flush()
os.unlink(os.path.join(d, "big"))
ready_and_wait()
f.seek(0)
ok = f.read() == data
open(os.path.join(d, "result.tmp"), "w").write("OK" if ok else "DIFFERENT")
os.rename(os.path.join(d, "result.tmp"), os.path.join(d, "result"))
"#;

/// CRIU's options as a caller passes them: verbosity, log file, cgroup mode, timeouts,
/// dedup, evasive devices, --ghost-limit with CRIU's units, --pidfile: taken; the log lands in
/// the images directory; a 1.5 MiB unlinked file is refused by default naming --ghost-limit,
/// and saved with --ghost-limit 2M; options asking for what is not done are refused by name
/// before anything is stopped.
#[test]
fn criu_command_lines_are_taken_and_ghost_limit_is_an_option() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-criu-args");
    let mut child = python(UNLINKED, &work);
    let pid = child.id().to_string();
    let refused = stasis(&["dump", "-t", &pid, "-D", s(&images), "--lazy-pages"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("--lazy-pages:"), "{err}");
    let refused = stasis(&["dump", "-t", &pid, "-D", s(&images), "-v4"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("--ghost-limit"), "{err}");
    assert_running_untraced(child.id() as i32);
    stasis_ok(&[
        "dump",
        "-t",
        &pid,
        "-D",
        s(&images),
        "-v4",
        "-o",
        "dump.log",
        "--manage-cgroups",
        "--auto-dedup",
        "--evasive-devices",
        "--timeout",
        "10",
        "--ghost-limit",
        "2M",
        "--file-locks",
        "--ext-unix-sk",
    ]);
    assert!(!child.wait().unwrap().success());
    let pidfile = work.join("restored.pid");
    stasis_ok(&[
        "restore",
        "-D",
        s(&images),
        "-vvvv",
        "--log-file=restore.log",
        "--restore-detached",
        "--pidfile",
        s(&pidfile),
        "--manage-cgroups=soft",
        "--file-locks",
        "--ext-unix-sk",
        "--tcp-established",
    ]);
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid);
    for log in ["dump.log", "restore.log"] {
        let text = std::fs::read_to_string(images.join(log)).unwrap_or_default();
        assert!(text.contains("stasis: done"), "{log}: {text:?}");
    }
    checkpoint_core::sys::send_signal(child.id() as i32, libc::SIGUSR1).unwrap();
    wait_for_file(&work.join("result"), Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(work.join("result")).unwrap(), "OK");
    let _ = checkpoint_core::sys::wait_exit(child.id() as i32);
}

/// A process with a second thread, counting in both into DIR/count (atomically replaced).
const COUNTING: &str = r#"
import os, sys, threading, time
d = sys.argv[1]
os.closerange(3, 65536)
n = [0]
def work():
    while True:
        n[0] += 1
        time.sleep(0.01)
threading.Thread(target=work, daemon=True).start()
open(os.path.join(d, "ready"), "w").close()
while True:
    open(os.path.join(d, "count.tmp"), "w").write(str(n[0]))
    os.rename(os.path.join(d, "count.tmp"), os.path.join(d, "count"))
    time.sleep(0.01)
"#;

fn count(work: &Path) -> u64 {
    std::fs::read_to_string(work.join("count"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The state letter of `pid` in /proc/PID/stat ('T' stopped).
fn state(pid: i32) -> char {
    proc_ids(pid).map_or('?', |(.., st)| st)
}

/// A stopped process (SIGSTOP) stays stopped: after a dump left running, after a restore
/// (every thread: nothing counts), and goes on once continued.
#[test]
fn a_stopped_process_stays_stopped_across_dump_and_restore() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-stopped");
    let mut child = python(COUNTING, &work);
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(200));
    checkpoint_core::sys::send_signal(pid, libc::SIGSTOP).unwrap();
    let start = Instant::now();
    while state(pid) != 'T' {
        assert!(start.elapsed() < Duration::from_secs(10), "never stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped_at = count(&work);
    let left = work.join("left");
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&left), "--leave-running"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (state(pid), count(&work)),
        ('T', stopped_at),
        "running after a dump left it stopped"
    );
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let _ = child.wait();
    let core = ctests::crit_decode(&images.join(format!("core-{pid}.img")));
    assert_eq!(
        core["entries"][0]["tc"]["task_state"], 3,
        "{}",
        core["entries"][0]["tc"]
    );
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (state(pid), count(&work)),
        ('T', stopped_at),
        "running after the restore"
    );
    checkpoint_core::sys::send_signal(pid, libc::SIGCONT).unwrap();
    let start = Instant::now();
    while count(&work) <= stopped_at + 5 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "it did not go on once continued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = checkpoint_core::sys::send_signal(pid, libc::SIGKILL);
    let _ = checkpoint_core::sys::wait_exit(pid);
}

/// A pipe whose every writer has closed, with data left: read to its end after the restore.
const WIDOWED_PIPE: &str = r#"
import json, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
r, w = os.pipe()
os.write(w, b"left behind")
os.close(w)
r2, w2 = os.pipe()
os.close(w2)
ready_and_wait()
got = [os.read(r, 100).decode(), os.read(r, 100).decode(), os.read(r2, 100).decode()]
report(got)
"#;

/// A pipe whose writers have all closed is the tree's, not "outside the dump": it comes back
/// with its data, then the end (an empty one too).
#[test]
fn a_pipe_whose_writers_have_closed_comes_back_with_its_data_and_its_end() {
    let result = dumped_and_restored("fidelity-widowed-pipe", WIDOWED_PIPE);
    assert_eq!(result, serde_json::json!(["left behind", "", ""]));
}

/// An epoll set whose registrations outlived their fd numbers (the kernel keys them by file
/// and number): pipe A's read end registered as fd RA, then moved (dup, RA closed); pipe B's
/// registered as fd RB, which now holds pipe C's read end (close-on-exec), not registered.
/// After the restore each still reports under its old number, and RB still reads pipe C.
const EPOLL_MOVED: &str = r#"
import json, os, select, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
ep = select.epoll()
ra, wa = os.pipe()
rb, wb = os.pipe()
ep.register(ra, select.EPOLLIN)
ep.register(rb, select.EPOLLIN)
ra2 = os.dup(ra)
os.close(ra)
rb2 = os.dup(rb)
rc, wc = os.pipe()
os.dup2(rc, rb, inheritable=False)
os.close(rc)
def state():
    os.write(wa, b"a")
    os.write(wb, b"b")
    os.write(wc, b"c")
    ready = sorted(ep.poll(1))
    got = [os.read(ra2, 1).decode(), os.read(rb2, 1).decode(), os.read(rb, 1).decode()]
    return {"ready": ready, "read": got, "rb_inheritable": os.get_inheritable(rb), "ra": ra, "rb": rb}
report_around(state)
"#;

#[test]
fn epoll_registrations_whose_fds_were_closed_or_reused_come_back_as_they_were() {
    let result = dumped_and_restored("fidelity-epoll-moved", EPOLL_MOVED);
    let (before, after) = (&result[0], &result[1]);
    let (ra, rb) = (before["ra"].as_i64().unwrap(), before["rb"].as_i64().unwrap());
    assert_eq!(
        before["ready"],
        serde_json::json!([[ra, libc::EPOLLIN], [rb, libc::EPOLLIN]]),
        "the workload's own set-up: {before}"
    );
    assert_eq!(before["read"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(before["rb_inheritable"], false);
    assert_eq!(after, before);
}

/// Files of /proc held open: the process's own status (read past "Name:\t"), a thread's comm
/// (/proc/PID/task/TID/comm), a child's view of its parent's cmdline, and a /proc/sys file at
/// an offset. The tree's /proc/PID files exist only once its tasks do; /proc files say 0
/// bytes whatever they hold.
const PROC_FILES: &str = r#"
import json, os, sys, time, signal, threading
d = sys.argv[1]
os.closerange(3, 65536)
status = os.open("/proc/self/status", os.O_RDONLY)
os.read(status, 6)
ostype = os.open("/proc/sys/kernel/ostype", os.O_RDONLY)
os.read(ostype, 2)
named = threading.Event()
comm = []
def worker():
    threading.current_thread().name = "w"
    with open("/proc/thread-self/comm", "w") as f:
        f.write("worker-7")
    comm.append(os.open("/proc/thread-self/comm", os.O_RDONLY))
    named.set()
    threading.Event().wait()
threading.Thread(target=worker, daemon=True).start()
named.wait()
r, w = os.pipe()
child = os.fork()
if child == 0:
    cmd = os.open("/proc/%d/cmdline" % os.getppid(), os.O_RDONLY)
    os.read(r, 1)
    os.write(w, os.pread(cmd, 7, 0) + (b"ok" if os.readlink("/proc/self/fd/%d" % cmd) == "/proc/%d/cmdline" % os.getppid() else b"no"))
    os._exit(0)
ready_and_wait()
os.write(w, b"g")
time.sleep(0.5)
got = [os.read(status, 8).decode(), os.pread(status, 5, 0).decode(), os.pread(comm[0], 20, 0).decode(),
       os.read(ostype, 10).decode(), os.read(r, 9).decode(),
       os.readlink("/proc/self/fd/%d" % status) == "/proc/%d/status" % os.getpid()]
os.waitpid(child, 0)
report(got)
"#;

#[test]
fn files_of_proc_held_open_come_back_at_their_offsets() {
    let result = dumped_and_restored("fidelity-proc-files", PROC_FILES);
    assert_eq!(
        result,
        serde_json::json!(["python3\n", "Name:", "worker-7\n", "nux\n", "/usr/biok", true])
    );
}

/// A chroot'ed process (root WORK/jail, cwd /sub inside it, a file open there): after the
/// restore it is still shut in, at the same cwd, and sees the same files.
const CHROOTED: &str = r#"
import json, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
jail = os.path.join(d, "jail")
os.makedirs(os.path.join(jail, "sub"))
open(os.path.join(jail, "sub", "data"), "w").write("inside")
os.chroot(jail)
os.chdir("/sub")
f = open("data")
def state():
    f.seek(0)
    return [os.getcwd(), sorted(os.listdir("/")), f.read(), open("/sub/data").read(), os.path.exists("/proc")]
before = state()
go = False
def on(*_):
    global go
    go = True
signal.signal(signal.SIGUSR1, on)
open("/ready", "w").close()
while not go:
    time.sleep(0.05)
after = state()
open("/result.tmp", "w").write(json.dumps([before, after]))
os.rename("/result.tmp", "/result")
"#;

#[test]
fn a_chrooted_process_stays_in_its_root() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-chroot");
    let jail = work.join("jail");
    // The workload writes `ready` and `result` inside its jail.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", CHROOTED])
        .arg(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&jail.join("ready"), Duration::from_secs(30));
    let pid = child.id() as i32;
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let _ = child.wait();
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        jail,
        "its root as seen from outside"
    );
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    wait_for_file(&jail.join("result"), Duration::from_secs(20));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(jail.join("result")).unwrap()).unwrap();
    assert_eq!(
        result[0],
        serde_json::json!(["/sub", ["sub"], "inside", "inside", false]),
        "the workload's own set-up"
    );
    // The same, and the `ready` it wrote since.
    assert_eq!(
        result[1],
        serde_json::json!(["/sub", ["ready", "sub"], "inside", "inside", false])
    );
    let _ = checkpoint_core::sys::wait_exit(pid);
}

/// O_PATH fds, which only name a place: a symlink itself (O_NOFOLLOW), a FIFO, a unix socket's
/// file, a directory, /dev/null. Each names the same inode, of the same type, with the same
/// flags after the restore.
const O_PATH_FDS: &str = r#"
import fcntl, json, os, socket, stat, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
os.symlink("/etc/hostname", os.path.join(d, "link"))
os.mkfifo(os.path.join(d, "fifo"))
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(d, "sock"))
os.mkdir(os.path.join(d, "dir"))
fds = {
    "link": os.open(os.path.join(d, "link"), os.O_PATH | os.O_NOFOLLOW),
    "fifo": os.open(os.path.join(d, "fifo"), os.O_PATH),
    "sock": os.open(os.path.join(d, "sock"), os.O_PATH),
    "dir": os.open(os.path.join(d, "dir"), os.O_PATH | os.O_DIRECTORY),
    "null": os.open("/dev/null", os.O_PATH),
}
def state():
    out = {}
    for name, fd in fds.items():
        st = os.stat(fd)
        out[name] = [stat.S_IFMT(st.st_mode), st.st_ino, fcntl.fcntl(fd, fcntl.F_GETFL), os.readlink("/proc/self/fd/%d" % fd)]
    return out
report_around(state)
"#;

#[test]
fn o_path_fds_of_every_kind_of_file_come_back() {
    let result = dumped_and_restored("fidelity-o-path", O_PATH_FDS);
    let (before, after) = (&result[0], &result[1]);
    for (name, kind) in [
        ("link", libc::S_IFLNK),
        ("fifo", libc::S_IFIFO),
        ("sock", libc::S_IFSOCK),
        ("dir", libc::S_IFDIR),
        ("null", libc::S_IFCHR),
    ] {
        assert_eq!(before[name][0], kind, "the workload's own set-up of {name}: {before}");
    }
    assert_eq!(after, before);
}

/// pidfds: of a child (blocking) and of the process itself (PIDFD_NONBLOCK). After the
/// restore each names the same process: the child is ended through its pidfd and waited for
/// with waitid(P_PIDFD).
const PIDFDS: &str = r#"
import fcntl, json, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
child = os.fork()
if child == 0:
    while True:
        time.sleep(1)
of_child = os.pidfd_open(child)
of_self = os.pidfd_open(os.getpid(), os.O_NONBLOCK)  # PIDFD_NONBLOCK
def state():
    pid_of = lambda fd: [l.split()[1] for l in open("/proc/self/fdinfo/%d" % fd) if l.startswith("Pid:")][0]
    return [pid_of(of_child) == str(child), pid_of(of_self) == str(os.getpid()),
            bool(fcntl.fcntl(of_self, fcntl.F_GETFL) & os.O_NONBLOCK), bool(fcntl.fcntl(of_child, fcntl.F_GETFL) & os.O_NONBLOCK)]
before = state()
ready_and_wait()
after = state()
signal.pidfd_send_signal(of_child, signal.SIGTERM)
info = os.waitid(os.P_PIDFD, of_child, os.WEXITED)
after.append([info.si_pid == child, info.si_status == signal.SIGTERM])
report([before, after])
"#;

#[test]
fn pidfds_of_the_tree_come_back_naming_the_same_processes() {
    let result = dumped_and_restored("fidelity-pidfd", PIDFDS);
    assert_eq!(result[0], serde_json::json!([true, true, true, false]), "before");
    assert_eq!(
        result[1],
        serde_json::json!([true, true, true, false, [true, true]]),
        "after"
    );
}

/// File leases (--file-locks): a read lease and a write lease, each on its own file. After the
/// restore F_GETLEASE says the same, and the kernel lists them as active leases of those files
/// (fdinfo's lock lines). (Another opener would break them: not tried.)
const LEASES: &str = r#"
import fcntl, json, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
for n in ("r", "w"):
    open(os.path.join(d, n), "w").close()
rd = os.open(os.path.join(d, "r"), os.O_RDONLY)
fcntl.fcntl(rd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
wr = os.open(os.path.join(d, "w"), os.O_WRONLY)
fcntl.fcntl(wr, fcntl.F_SETLEASE, fcntl.F_WRLCK)
def held(fd):
    return [l.split()[2:4] for l in open("/proc/self/fdinfo/%d" % fd) if l.startswith("lock:")]
def state():
    return [fcntl.fcntl(rd, fcntl.F_GETLEASE), fcntl.fcntl(wr, fcntl.F_GETLEASE), held(rd), held(wr)]
report_around(state)
"#;

#[test]
fn file_leases_come_back_held() {
    let result = dumped_and_restored_with("fidelity-leases", LEASES, &["--file-locks"]);
    let held = serde_json::json!([
        libc::F_RDLCK,
        libc::F_WRLCK,
        [["LEASE", "ACTIVE"]],
        [["LEASE", "ACTIVE"]]
    ]);
    assert_eq!(result[0], held, "the workload's own set-up");
    assert_eq!(result[1], held);
}

/// A pty whose slave has input nobody read yet: the dump is refused naming the pty and the
/// bytes (they cannot be read without taking them), and the process runs on, untraced.
const PTY_UNREAD: &str = r#"
import os, pty, time
master, slave = os.openpty()
os.write(master, b"typed\n")
ready_and_wait()
report(os.read(slave, 100).decode())
"#;

#[test]
fn a_pty_with_unread_input_is_refused_and_the_process_runs_on() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-pty-unread");
    let mut child = python(PTY_UNREAD, &work);
    let pid = child.id() as i32;
    let out = stasis(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unread bytes") && err.contains("(pty "),
        "{err}"
    );
    assert_running_untraced(pid);
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    wait_for_file(&work.join("result"), Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(work.join("result")).unwrap(), "\"typed\\n\"");
    let _ = child.wait();
}

/// Unix sockets bound to a path: a listener no one has connected to; a listener whose file
/// was removed; a datagram socket whose name now holds a regular file. After the restore each
/// has its name, the removed file is not back, the regular file is still there with its
/// contents, the first listener takes a new connection, and the second cannot be reached.
const UNIX_NAMES: &str = r#"
import os, socket, sys
d = sys.argv[1]
os.closerange(3, 65536)
p = lambda n: os.path.join(d, n)
a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); a.bind(p("a")); a.listen(4)
b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); b.bind(p("b")); b.listen(4)
os.unlink(p("b"))
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.bind(p("c"))
os.unlink(p("c"))
open(p("c"), "w").write("another file")
def names():
    return [a.getsockname() == p("a"), b.getsockname() == p("b"), c.getsockname() == p("c"),
            sorted(n for n in os.listdir(d) if n in "abc"), open(p("c")).read()]
before = names()
ready_and_wait()
after = names()
k = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
k.connect(p("a"))
s, _ = a.accept()
k.send(b"new")
after.append(s.recv(10).decode())
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(p("b"))
    after.append("b reached")
except FileNotFoundError:
    after.append("b unreachable")
report([before, after])
"#;

#[test]
fn unix_sockets_whose_files_were_removed_or_replaced_keep_their_names() {
    let result = dumped_and_restored("fidelity-unix-names", UNIX_NAMES);
    let names = serde_json::json!([true, true, true, ["a", "c"], "another file"]);
    assert_eq!(result[0], names, "the workload's own set-up");
    let mut after = names.as_array().unwrap().clone();
    after.extend([serde_json::json!("new"), serde_json::json!("b unreachable")]);
    assert_eq!(result[1], serde_json::Value::Array(after));
}

/// Memfds: one held by an fd (mode 0600, owned by 1234:4321, sealed against writes), one held
/// only by its mappings (shared read-only and private written, mode 0640, sealed against
/// shrinking and growing), and a memfd without sealing. After the restore each has its
/// mode, owner, seals and contents, and the mappings their protections.
const MEMFDS: &str = r#"
import fcntl, mmap, os, sys
os.closerange(3, 65536)
a = os.memfd_create("held", os.MFD_ALLOW_SEALING)
os.write(a, b"a" * 4096)
os.fchmod(a, 0o600)
os.fchown(a, 1234, 4321)
fcntl.fcntl(a, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
b = os.memfd_create("mapped", os.MFD_ALLOW_SEALING)
os.write(b, b"b" * 8192)
os.fchmod(b, 0o640)
fcntl.fcntl(b, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
shared = mmap.mmap(b, 8192, mmap.MAP_SHARED, mmap.PROT_READ)
private = mmap.mmap(b, 8192, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
private[0:1] = b"p"
os.close(b)
c = os.memfd_create("plain", 0)
os.write(c, b"c")
def mapped():
    start = [l.split("-")[0] for l in open("/proc/self/maps") if "/memfd:mapped" in l][0]
    return os.open("/proc/self/map_files/%s-%x" % (start, int(start, 16) + 8192), os.O_RDONLY)
def attrs(fd):
    st = os.fstat(fd)
    return [oct(st.st_mode & 0o7777), st.st_uid, st.st_gid, fcntl.fcntl(fd, fcntl.F_GET_SEALS), os.pread(fd, 1, 0).decode()]
def state():
    m = mapped()
    out = [attrs(a), attrs(m), attrs(c), shared[0:1].decode(), private[0:2].decode(),
           sorted(l.split()[1] for l in open("/proc/self/maps") if "/memfd:mapped" in l)]
    os.close(m)
    return out
report_around(state)
"#;

#[test]
fn memfds_keep_their_mode_owner_seals_and_mappings() {
    let result = dumped_and_restored("fidelity-memfds", MEMFDS);
    let seals = (
        libc::F_SEAL_WRITE,
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
        libc::F_SEAL_SEAL,
    );
    let expected = serde_json::json!([
        ["0o600", 1234, 4321, seals.0, "a"],
        ["0o640", 0, 0, seals.1, "b"],
        ["0o777", 0, 0, seals.2, "c"],
        "b",
        "pb",
        ["r--s", "rw-p"]
    ]);
    assert_eq!(result[0], expected, "the workload's own set-up");
    assert_eq!(result[1], expected);
}

/// The console and a virtual terminal held open (not the controlling terminal): saved as CRIU's
/// console and vt terminals, reopened by path; after the restore the fds are on the same devices
/// with the same flags, and the process has no controlling terminal still.
const CONSOLE: &str = r#"
import fcntl, os, sys
os.closerange(3, 65536)
fds = [os.open("/dev/console", os.O_WRONLY | os.O_NOCTTY), os.open("/dev/tty1", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)]
def state():
    out = []
    for fd in fds:
        st = os.fstat(fd)
        out.append([os.major(st.st_rdev), os.minor(st.st_rdev), fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_NONBLOCK)])
    tty_nr = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[4])
    return [out, tty_nr]
report_around(state)
"#;

#[test]
fn the_console_and_a_virtual_terminal_held_open_are_reopened() {
    let result = dumped_and_restored("fidelity-console", CONSOLE);
    let expected = serde_json::json!([[[5, 1, libc::O_WRONLY], [4, 1, libc::O_RDONLY | libc::O_NONBLOCK]], 0]);
    assert_eq!(result[0], expected, "the workload's own set-up");
    assert_eq!(result[1], expected);
}
