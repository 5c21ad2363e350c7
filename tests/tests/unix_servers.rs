//! Real servers that answer on a unix socket file, each running as its own user: dumped and
//! restored by Stasis, the restored socket file keeps the owner, group and mode the server
//! gave it, so the clients it let in before (other users) are let in again, and the ones it
//! kept out stay out; the servers carry on with their data.

use std::os::unix::fs::{chown, FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctests::crit_decode;
use ctests::workload::*;

/// nobody:nogroup, the servers' user.
const NOBODY: u32 = 65534;
/// Users and groups without a passwd entry, for clients and servers.
const OTHER: u32 = 65533;
const GROUP: u32 = 65532;

const PYTHON: &str = "/usr/bin/python3";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory of the scratch dir owned by `uid`:`gid`, where a server makes its socket.
fn server_dir(scratch: &Scratch, name: &str, uid: u32, gid: u32) -> PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, Some(uid), Some(gid)).unwrap();
    dir
}

/// `program ARGS...` with only fds 0-2: started through Python, which closes the rest (what
/// the test's own harness leaks) and execs it, same pid.
fn with_stdio_only(program: &str) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.args([
        "-c",
        "import os, sys; os.closerange(3, 1 << 20); os.execvp(sys.argv[1], sys.argv[1:])",
    ]);
    cmd.arg(program);
    cmd
}

/// Starts `cmd` as `uid`:`gid` (no supplementary groups) in `dir`, stdio on /dev/null; killed
/// and reaped (by pid) on drop.
fn start_as(cmd: &mut Command, uid: u32, gid: u32, dir: &Path) -> Workload {
    let child = cmd
        .uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Workload {
        pid: child.id() as i32,
        child: Some(child),
        dir: dir.to_owned(),
    }
}

/// Runs `cmd` to its end as `uid`:`gid`.
fn run_as(cmd: &mut Command, uid: u32, gid: u32, dir: &Path) -> Output {
    cmd.uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Waits until a stream server accepts connections on `path`.
fn wait_listening(path: &Path) {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nobody listens on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (owner, group, permission bits) of socket file `path`, which must be a socket.
fn perms(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert!(m.file_type().is_socket(), "{} is not a socket", path.display());
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// The file_perms the dump recorded for the socket named `path`, read by crit.
fn image_perms(images: &Path, path: &Path) -> (u32, u32, u32) {
    let files = crit_decode(&images.join("files.img"));
    let name = ctests::quopri_decode(s(path)).unwrap();
    let entry = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "UNIXSK")
        .map(|e| &e["usk"])
        .find(|u| {
            u["name"]
                .as_str()
                .and_then(ctests::quopri_decode)
                .is_some_and(|n| n.strip_suffix(&[0]).unwrap_or(&n) == name.as_slice())
                && !u["file_perms"].is_null()
        })
        .unwrap_or_else(|| panic!("no unix socket named {} with file_perms in files.img", path.display()));
    let p = &entry["file_perms"];
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("file_perms.{k}: {p}")) as u32;
    (n("uid"), n("gid"), n("mode") & 0o7777)
}

/// Dumps the tree of `w` (which the dump kills), reaps it (`children` too: re-parented to
/// us, the subreaper), and restores it detached.
fn dump_and_restore(w: &mut Workload, children: &[i32], images: &Path) {
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(images)]);
    let status = w.reap_original();
    assert!(!status.success(), "pid {} was not killed by the dump: {status}", w.pid);
    let start = Instant::now();
    for pid in std::iter::once(w.pid).chain(children.iter().copied()) {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "pid {pid} still there after the dump"
            );
            reap_ended_children();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stasis_ok(&["restore", "-D", s(images), "-d"]);
    assert_running_untraced(w.pid);
}

fn redis_cli(sock: &Path, uid: u32, gid: u32, dir: &Path, args: &[&str]) -> Output {
    run_as(Command::new("redis-cli").arg("-s").arg(sock).args(args), uid, gid, dir)
}

/// `redis-cli` as `uid`:`gid`, which must succeed; returns its stdout lines.
fn redis_ok(sock: &Path, uid: u32, gid: u32, dir: &Path, args: &[&str]) -> Vec<String> {
    let out = redis_cli(sock, uid, gid, dir, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && !stdout.contains("Could not connect") && !stderr.contains("Could not connect"),
        "redis-cli {} ({} args) as {uid}:{gid}: {stdout} {stderr}",
        args[0],
        args.len() - 1
    );
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn redis_as_nobody_is_open_to_other_users_after_restore_with_its_keys() {
    let _descendants = Descendants;
    let (scratch, _work, images) = test_dirs("redis-perms");
    let dir = server_dir(&scratch, "redis", NOBODY, NOBODY);
    let sock = dir.join("redis.sock");
    let mut server = start_as(
        with_stdio_only("redis-server")
            .args(["--port", "0", "--unixsocket", s(&sock), "--unixsocketperm", "777"])
            .args([
                "--daemonize",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                s(&dir),
            ]),
        NOBODY,
        NOBODY,
        &dir,
    );
    wait_listening(&sock);
    assert_eq!(perms(&sock), (NOBODY, NOBODY, 0o777), "redis made its socket");

    // Another user fills it: 200 keys, a counter at 5.
    let mut mset = vec!["MSET".to_owned()];
    for i in 0..200 {
        mset.push(format!("key{i}"));
        mset.push(format!("value-{i}-{}", i * i));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(redis_ok(&sock, OTHER, OTHER, &dir, &mset), ["OK"]);
    for n in 1..=5 {
        assert_eq!(
            redis_ok(&sock, OTHER, OTHER, &dir, &["INCR", "counter"]),
            [n.to_string()]
        );
    }

    dump_and_restore(&mut server, &[], &images);
    assert_eq!(
        image_perms(&images, &sock),
        (NOBODY, NOBODY, 0o777),
        "files.img file_perms"
    );
    assert_eq!(
        perms(&sock),
        (NOBODY, NOBODY, 0o777),
        "the restored socket file has the owner and mode redis gave it"
    );

    // A user without a passwd entry, neither the server's nor root: let in as before.
    let keys: Vec<String> = (0..200).map(|i| format!("key{i}")).collect();
    let mget: Vec<&str> = std::iter::once("MGET").chain(keys.iter().map(String::as_str)).collect();
    let values = redis_ok(&sock, OTHER, OTHER, &dir, &mget);
    let want: Vec<String> = (0..200).map(|i| format!("value-{i}-{}", i * i)).collect();
    assert_eq!(values, want, "the keys set before the checkpoint");
    assert_eq!(redis_ok(&sock, OTHER, OTHER, &dir, &["INCR", "counter"]), ["6"]);
    assert_eq!(
        redis_ok(&sock, GROUP, GROUP, &dir, &["SET", "after", "restore"]),
        ["OK"]
    );
    assert_eq!(redis_ok(&sock, OTHER, OTHER, &dir, &["GET", "after"]), ["restore"]);
    assert_eq!(redis_ok(&sock, OTHER, OTHER, &dir, &["DBSIZE"]), ["202"]);
}

/// The Python servers and clients of the tests below (argv[1] says which).
const PY: &str = r#"
import os, selectors, signal, socket, sys, time

mode, d = sys.argv[1], sys.argv[2]

def mark(name):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(d, name))

def readline(c):
    out = b""
    while not out.endswith(b"\n"):
        b = c.recv(1)
        if not b:
            raise EOFError("connection closed")
        out += b
    return out.decode().strip()

if mode == "stream-server":
    # Counts INC requests from every connection; its socket file: group argv[3], 0770.
    path, gid = os.path.join(d, "count.sock"), int(sys.argv[3])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    os.umask(0o077)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chown(path, -1, gid)
    os.chmod(path, 0o770)
    srv.listen(8)
    if os.fork() == 0:
        # A client of the tree that stays connected across the checkpoint, a request half sent.
        srv.close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        replies = []
        for _ in range(3):
            c.sendall(b"INC\n")
            replies.append(readline(c))
        c.sendall(b"IN")
        mark("held")
        while not os.path.exists(os.path.join(d, "go")):
            time.sleep(0.02)
        c.sendall(b"C\n")
        replies.append(readline(c))
        c.sendall(b"INC\n")
        replies.append(readline(c))
        with open(os.path.join(d, "held.out.tmp"), "w") as f:
            f.write(" ".join(replies))
        os.rename(os.path.join(d, "held.out.tmp"), os.path.join(d, "held.out"))
        os._exit(0)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    count, bufs = 0, {}
    mark("ready")
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is srv:
                c, _ = srv.accept()
                bufs[c] = b""
                sel.register(c, selectors.EVENT_READ)
                continue
            data = s.recv(4096)
            if not data:
                sel.unregister(s)
                del bufs[s]
                s.close()
                continue
            bufs[s] += data
            while b"\n" in bufs[s]:
                line, bufs[s] = bufs[s].split(b"\n", 1)
                if line == b"INC":
                    count += 1
                    s.sendall(b"%d\n" % count)
elif mode == "stream-client":
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(os.path.join(d, "count.sock"))
    for _ in range(int(sys.argv[3])):
        c.sendall(b"INC\n")
        print(readline(c))
elif mode == "dgram-server":
    # Answers each INC datagram with the count so far; its socket file: 0700.
    path = os.path.join(d, "dgram.sock")
    os.umask(0o077)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o700)
    count = 0
    mark("ready")
    while True:
        data, addr = s.recvfrom(4096)
        if data == b"INC":
            count += 1
            s.sendto(b"%d" % count, addr)
elif mode == "dgram-client":
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.bind("")  # an abstract name of its own, for the answers
    for _ in range(int(sys.argv[3])):
        c.sendto(b"INC", os.path.join(d, "dgram.sock"))
        print(c.recv(64).decode())
"#;

fn python(script: &Path, mode: &str, dir: &Path, arg: &str) -> Command {
    let mut cmd = with_stdio_only(PYTHON);
    cmd.arg(script).arg(mode).arg(dir).arg(arg);
    cmd
}

/// Runs a Python client that sends `n` INC requests; its answers, or its error output.
fn py_client(script: &Path, mode: &str, dir: &Path, n: u32, uid: u32, gid: u32) -> Result<Vec<u32>, String> {
    let out = run_as(&mut python(script, mode, dir, &n.to_string()), uid, gid, dir);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect())
}

fn assert_refused(r: Result<Vec<u32>, String>, who: &str) {
    match r {
        Err(e) => assert!(e.contains("PermissionError"), "{who}: {e}"),
        Ok(v) => panic!("{who} was let in: {v:?}"),
    }
}

fn write_script(scratch: &Scratch) -> PathBuf {
    let script = scratch.join("servers.py");
    std::fs::write(&script, PY).unwrap();
    script
}

#[test]
fn a_python_stream_server_keeps_its_group_socket_its_connection_and_its_count() {
    let _descendants = Descendants;
    let (scratch, _work, images) = test_dirs("py-stream-perms");
    let script = write_script(&scratch);
    let dir = server_dir(&scratch, "stream", NOBODY, NOBODY);
    let sock = dir.join("count.sock");
    let mut server = start_as(
        &mut python(&script, "stream-server", &dir, &GROUP.to_string()),
        NOBODY,
        GROUP,
        &dir,
    );
    wait_for_file(&dir.join("ready"), Duration::from_secs(30));
    wait_for_file(&dir.join("held"), Duration::from_secs(30));
    let held_pid: i32 = std::fs::read_to_string(dir.join("held")).unwrap().parse().unwrap();
    assert_eq!(perms(&sock), (NOBODY, GROUP, 0o770));

    // The held connection made 3 requests; a member of the group makes 4 more.
    let member = py_client(&script, "stream-client", &dir, 4, OTHER, GROUP);
    assert_eq!(member, Ok(vec![4, 5, 6, 7]), "a member of the group");
    assert_refused(py_client(&script, "stream-client", &dir, 1, OTHER, OTHER), "a stranger");

    dump_and_restore(&mut server, &[held_pid], &images);
    assert_eq!(
        image_perms(&images, &sock),
        (NOBODY, GROUP, 0o770),
        "files.img file_perms"
    );
    assert_eq!(perms(&sock), (NOBODY, GROUP, 0o770), "the restored socket file");

    // The held connection finishes its half-sent request, then sends one more.
    std::fs::write(dir.join("go"), "").unwrap();
    wait_for_file(&dir.join("held.out"), Duration::from_secs(30));
    let held = std::fs::read_to_string(dir.join("held.out")).unwrap();
    assert_eq!(held, "1 2 3 8 9", "the connection held across the checkpoint");
    let member = py_client(&script, "stream-client", &dir, 2, OTHER, GROUP);
    assert_eq!(member, Ok(vec![10, 11]), "a new member's connection");
    assert_refused(py_client(&script, "stream-client", &dir, 1, OTHER, OTHER), "a stranger");
    assert_running_untraced(server.pid);
}

#[test]
fn a_bound_datagram_socket_of_a_user_keeps_its_0700_file() {
    let _descendants = Descendants;
    let (scratch, _work, images) = test_dirs("py-dgram-perms");
    let script = write_script(&scratch);
    let dir = server_dir(&scratch, "dgram", OTHER, OTHER);
    let sock = dir.join("dgram.sock");
    let mut server = start_as(&mut python(&script, "dgram-server", &dir, "-"), OTHER, OTHER, &dir);
    wait_for_file(&dir.join("ready"), Duration::from_secs(30));
    assert_eq!(perms(&sock), (OTHER, OTHER, 0o700));
    assert_eq!(
        py_client(&script, "dgram-client", &dir, 3, OTHER, OTHER),
        Ok(vec![1, 2, 3])
    );
    assert_refused(
        py_client(&script, "dgram-client", &dir, 1, GROUP, OTHER),
        "another user",
    );

    dump_and_restore(&mut server, &[], &images);
    assert_eq!(
        image_perms(&images, &sock),
        (OTHER, OTHER, 0o700),
        "files.img file_perms"
    );
    assert_eq!(perms(&sock), (OTHER, OTHER, 0o700), "the restored socket file");
    assert_eq!(
        py_client(&script, "dgram-client", &dir, 2, OTHER, OTHER),
        Ok(vec![4, 5]),
        "its user, after the restore"
    );
    assert_refused(
        py_client(&script, "dgram-client", &dir, 1, GROUP, OTHER),
        "another user",
    );
}
