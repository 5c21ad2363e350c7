//! Fidelity (issue 12): what a process can read about itself besides its memory and files —
//! scheduling of each thread, oom_score_adj, login uid, the advice and locks on its mappings,
//! its THP setting — is the same after a restore. Each workload records its state as it sees
//! it, is dumped and restored, and records it again; the two must be equal, and hold what the
//! workload set (so that defaults on both sides cannot pass).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ctests::workload::*;

/// Set-up for every workload: `state()` is defined by the test's own part.
const PRELUDE: &str = r#"
import ctypes, json, mmap, os, signal, sys, threading, time
d = sys.argv[1]
os.closerange(3, 65536)
libc = ctypes.CDLL(None, use_errno=True)
go = False
def on(*_):
    global go
    go = True
signal.signal(signal.SIGUSR1, on)
"#;

/// The state before (before.json, then `ready`) and after the restore (after.json, on SIGUSR1).
const EPILOGUE: &str = r#"
json.dump(state(), open(os.path.join(d, "before.json"), "w"))
open(os.path.join(d, "ready"), "w").close()
while not go:
    time.sleep(0.05)
open(os.path.join(d, "after.tmp"), "w").write(json.dumps(state()))
os.rename(os.path.join(d, "after.tmp"), os.path.join(d, "after.json"))
"#;

/// Runs `body` (which sets its state up and defines `state()`), dumps and restores it, and
/// returns what it recorded before and after.
fn before_and_after(name: &str, body: &str) -> (serde_json::Value, serde_json::Value) {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs(name);
    let script = format!("{PRELUDE}{body}{EPILOGUE}");
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .arg(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let ready = work.join("ready");
    let start = std::time::Instant::now();
    while !ready.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the workload ended ({status}): {}",
                std::fs::read_to_string(work.join("stderr")).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the workload never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let images_s = images.to_str().unwrap();
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", images_s]);
    let _ = child.wait();
    stasis_ok(&["restore", "-D", images_s, "-d"]);
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    let after = work.join("after.json");
    wait_for_file(&after, Duration::from_secs(20));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (before, after) = (read(&work.join("before.json")), read(&after));
    let _ = checkpoint_core::sys::wait_exit(pid);
    (before, after)
}

/// Three threads under three policies: the main one SCHED_BATCH at nice 7, one SCHED_FIFO at
/// priority 12 that resets on fork (and keeps nice -3 aside), one SCHED_IDLE at nice 15.
const SCHEDULING: &str = r#"
def fifo(ev):
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, -3)
    os.sched_setscheduler(tid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(12))
    ev.set()
    threading.Event().wait()
def idle(ev):
    tid = threading.get_native_id()
    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    os.setpriority(os.PRIO_PROCESS, tid, 15)
    ev.set()
    threading.Event().wait()
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
os.setpriority(os.PRIO_PROCESS, 0, 7)
for f in (fifo, idle):
    ev = threading.Event()
    threading.Thread(target=f, args=(ev,), daemon=True).start()
    ev.wait()
def state():
    out = []
    for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
        out.append([os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority,
                    os.getpriority(os.PRIO_PROCESS, tid)])
    return out
"#;

#[test]
fn the_scheduling_of_every_thread_comes_back() {
    let (before, after) = before_and_after("attr-sched", SCHEDULING);
    let reset_on_fork = 0x4000_0000;
    assert_eq!(
        before,
        serde_json::json!([[3, 0, 7], [1 | reset_on_fork, 12, -3], [5, 0, 15]]),
        "the workload's own set-up"
    );
    assert_eq!(after, before);
}

/// oom_score_adj raised to 321 and the audit login uid set to 4242.
const PROC_ATTRS: &str = r#"
open("/proc/self/oom_score_adj", "w").write("321")
open("/proc/self/loginuid", "w").write("4242")
def state():
    return {n: open("/proc/self/" + n).read().strip() for n in ("oom_score_adj", "loginuid")}
"#;

#[test]
fn oom_score_adj_and_the_login_uid_come_back() {
    let (before, after) = before_and_after("attr-proc", PROC_ATTRS);
    assert_eq!(
        before,
        serde_json::json!({"oom_score_adj": "321", "loginuid": "4242"}),
        "the workload's own set-up"
    );
    assert_eq!(after, before);
}

/// Nine mappings of 16 pages, each with other advice or a lock, data in each; THP disabled
/// for the process. Each mapping's VmFlags (as smaps says them), its data's checksum, and the
/// THP line are the state.
const MEMORY: &str = r#"
import hashlib
PAGE, LEN = mmap.PAGESIZE, 16 * mmap.PAGESIZE
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
def check(ret, what):
    if ret != 0:
        raise OSError(ctypes.get_errno(), what)
# Private anonymous mappings (MADV_WIPEONFORK takes no other), one with a shared one.
ADVICE = {"dontfork": [mmap.MADV_DONTFORK], "dontdump": [mmap.MADV_DONTDUMP],
          "hugepage": [mmap.MADV_HUGEPAGE], "nohugepage": [mmap.MADV_NOHUGEPAGE],
          "wipeonfork": [18], "random": [mmap.MADV_RANDOM],  # 18: MADV_WIPEONFORK
          "sequential+dontfork": [mmap.MADV_SEQUENTIAL, mmap.MADV_DONTFORK],
          "shared+dontfork": [mmap.MADV_DONTFORK], "locked": []}
maps = {}
for i, (name, advice) in enumerate(ADVICE.items()):
    flags = (mmap.MAP_SHARED if name.startswith("shared") else mmap.MAP_PRIVATE) | mmap.MAP_ANONYMOUS
    a = libc.mmap(None, LEN, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    ctypes.memset(a, i + 1, LEN)
    for adv in advice:
        check(libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(LEN), adv), "madvise %s" % name)
    maps[name] = a
check(libc.mlock(ctypes.c_void_p(maps["locked"]), ctypes.c_size_t(LEN)), "mlock")
check(libc.prctl(41, 1, 0, 0, 0), "prctl(PR_SET_THP_DISABLE)")
KEEP = {"dc", "dd", "hg", "nh", "wf", "rr", "sr", "lo"}
def vmflags():
    flags, start = {}, None
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if not head.endswith(":"):
            start = int(head.split("-")[0], 16)
        elif head == "VmFlags:":
            flags[start] = sorted(f for f in line.split()[1:] if f in KEEP)
    return flags
def state():
    f = vmflags()
    out = {name: [f.get(a), hashlib.sha256(ctypes.string_at(a, LEN)).hexdigest()[:16]] for name, a in maps.items()}
    out["THP_enabled"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("THP_enabled")]
    return out
"#;

#[test]
fn memory_advice_locks_and_the_thp_setting_come_back() {
    let (before, after) = before_and_after("attr-memory", MEMORY);
    let flags = |name: &str| before[name][0].clone();
    for (name, want) in [
        ("dontfork", serde_json::json!(["dc"])),
        ("dontdump", serde_json::json!(["dd"])),
        ("hugepage", serde_json::json!(["hg"])),
        ("nohugepage", serde_json::json!(["nh"])),
        ("wipeonfork", serde_json::json!(["wf"])),
        ("random", serde_json::json!(["rr"])),
        ("sequential+dontfork", serde_json::json!(["dc", "sr"])),
        ("shared+dontfork", serde_json::json!(["dc"])),
        ("locked", serde_json::json!(["lo"])),
    ] {
        assert_eq!(flags(name), want, "the workload's own set-up of {name}: {before}");
    }
    assert_eq!(before["THP_enabled"], serde_json::json!(["0"]));
    assert_eq!(after, before);
}

/// A POSIX timer aimed at one thread (SIGEV_THREAD_ID), firing every 20 ms: that thread takes
/// its signal with sigwaitinfo; the main thread leaves the signal open, with a handler that
/// counts what reaches it (a timer aimed at the process would go there).
const THREAD_TIMER: &str = r#"
SIG = signal.SIGRTMIN + 1
ticks, main_got = [0], [0]
def on_main(*_):
    main_got[0] += 1
signal.signal(SIG, on_main)
started, tid = threading.Event(), [0]
def worker():
    signal.pthread_sigmask(signal.SIG_BLOCK, [SIG])
    tid[0] = threading.get_native_id()
    started.set()
    while True:
        signal.sigwaitinfo([SIG])
        ticks[0] += 1
threading.Thread(target=worker, daemon=True).start()
started.wait()
class sigevent(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("tid", ctypes.c_int), ("pad", ctypes.c_byte * 44)]
class itimerspec(ctypes.Structure):
    _fields_ = [("isec", ctypes.c_long), ("insec", ctypes.c_long), ("vsec", ctypes.c_long), ("vnsec", ctypes.c_long)]
timer = ctypes.c_void_p()
SIGEV_THREAD_ID, CLOCK_MONOTONIC = 4, 1
if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(sigevent(None, SIG, SIGEV_THREAD_ID, tid[0])), ctypes.byref(timer)):
    raise OSError(ctypes.get_errno(), "timer_create")
if libc.timer_settime(timer, 0, ctypes.byref(itimerspec(0, 20000000, 0, 20000000)), None):
    raise OSError(ctypes.get_errno(), "timer_settime")
def state():
    before = ticks[0]
    time.sleep(0.5)
    notify = [l.split()[1] for l in open("/proc/self/timers") if l.startswith("notify")]
    return {"notify": notify, "ticking": ticks[0] - before >= 5, "main_got": main_got[0]}
"#;

#[test]
fn a_timer_aimed_at_one_thread_still_fires_at_that_thread() {
    let (before, after) = before_and_after("attr-thread-timer", THREAD_TIMER);
    let notify = before["notify"][0].as_str().unwrap_or_default().to_owned();
    assert!(notify.starts_with("signal/tid."), "the workload's own set-up: {before}");
    assert_eq!(before["ticking"], true, "{before}");
    assert_eq!(before["main_got"], 0, "{before}");
    assert_eq!(after, before);
}

/// Open files with owners: a pipe whose signals (SIGUSR2, O_ASYNC) go to the process, a socket
/// whose go to one thread (F_OWNER_TID), a FIFO's to the process group (F_OWNER_PGRP) with
/// SIGRTMIN+2, a file's with only F_SETSIG. State: each file's owner, signal and O_ASYNC, and
/// that a byte written into the pipe does send SIGUSR2 (POLL_IN, taken with sigtimedwait).
const FILE_OWNERS: &str = r#"
import fcntl, socket, stat
F_SETSIG, F_GETSIG, F_SETOWN_EX, F_GETOWN_EX = 10, 11, 15, 16
class owner_ex(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("pid", ctypes.c_int)]
def set_owner(fd, kind, pid, sig=0, async_io=False):
    if pid and libc.fcntl(fd, F_SETOWN_EX, ctypes.byref(owner_ex(kind, pid))):
        raise OSError(ctypes.get_errno(), "F_SETOWN_EX")
    if sig:
        fcntl.fcntl(fd, F_SETSIG, sig)
    if async_io:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
os.setpgid(0, 0)
r, w = os.pipe()
set_owner(r, 1, os.getpid(), signal.SIGUSR2, True)
a, b = socket.socketpair()
started, tid = threading.Event(), [0]
def worker():
    tid[0] = threading.get_native_id()
    started.set()
    threading.Event().wait()
threading.Thread(target=worker, daemon=True).start()
started.wait()
set_owner(a.fileno(), 0, tid[0], 0, True)
os.mkfifo(os.path.join(d, "fifo"))
fr = os.open(os.path.join(d, "fifo"), os.O_RDONLY | os.O_NONBLOCK)
fw = os.open(os.path.join(d, "fifo"), os.O_WRONLY)
set_owner(fr, 2, os.getpgrp(), signal.SIGRTMIN + 2)
f = os.open(os.path.join(d, "file"), os.O_RDWR | os.O_CREAT)
set_owner(f, 0, 0, signal.SIGRTMIN + 3)
def owner(fd):
    o = owner_ex()
    if libc.fcntl(fd, F_GETOWN_EX, ctypes.byref(o)):
        raise OSError(ctypes.get_errno(), "F_GETOWN_EX")
    return [o.type, o.pid, fcntl.fcntl(fd, F_GETSIG), bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ASYNC)]
def state():
    out = {name: owner(fd) for name, fd in (("pipe", r), ("socket", a.fileno()), ("fifo", fr), ("file", f))}
    out["tid"] = tid[0] == out["socket"][1]
    os.write(w, b"x")
    info = signal.sigtimedwait([signal.SIGUSR2], 5)
    os.read(r, 1)
    out["sent"] = None if info is None else [info.si_signo, info.si_code]
    return out
"#;

#[test]
fn the_owners_signals_and_o_async_of_open_files_come_back() {
    let (before, after) = before_and_after("attr-file-owners", FILE_OWNERS);
    let sig = |name: &str| before[name][2].as_i64().unwrap_or(-1);
    assert_eq!(
        (before["pipe"][0].clone(), sig("pipe"), before["pipe"][3].clone()),
        (serde_json::json!(1), libc::SIGUSR2 as i64, serde_json::json!(true)),
        "the workload's own set-up: {before}"
    );
    assert_eq!(before["socket"][0], 0, "{before}");
    assert_eq!(before["tid"], true, "{before}");
    assert_eq!(before["fifo"][0], 2, "{before}");
    assert_eq!(sig("fifo"), libc::SIGRTMIN() as i64 + 2, "{before}");
    assert_eq!(sig("file"), libc::SIGRTMIN() as i64 + 3, "{before}");
    // POLL_IN (1) from the pipe's O_ASYNC.
    assert_eq!(before["sent"], serde_json::json!([libc::SIGUSR2, 1]), "{before}");
    assert_eq!(after, before);
}

/// Two read-only shared mappings of one file: one through an fd opened for reading and
/// writing, one through a read-only fd. Only the first may be made writable (mprotect); the
/// state is whether each can, tried and taken back.
const MAY_WRITE: &str = r#"
path = os.path.join(d, "file")
open(path, "wb").write(b"F" * 8192)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
maps = {}
for name, mode in (("rdwr", os.O_RDWR), ("rdonly", os.O_RDONLY)):
    fd = os.open(path, mode)
    maps[name] = libc.mmap(None, 8192, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    os.close(fd)
def may_write(a):
    if libc.mprotect(ctypes.c_void_p(a), ctypes.c_size_t(8192), mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        return ctypes.get_errno()
    libc.mprotect(ctypes.c_void_p(a), ctypes.c_size_t(8192), mmap.PROT_READ)
    return 0
def state():
    return {name: [may_write(a), ctypes.string_at(a, 1).decode()] for name, a in maps.items()}
"#;

#[test]
fn shared_file_mappings_may_be_made_writable_only_as_before() {
    let (before, after) = before_and_after("attr-may-write", MAY_WRITE);
    assert_eq!(
        before,
        serde_json::json!({"rdwr": [0, "F"], "rdonly": [libc::EACCES, "F"]}),
        "the workload's own set-up"
    );
    assert_eq!(after, before);
}

/// membarrier registrations (private expedited, global expedited): the registered set the
/// kernel reports, and that a private expedited barrier is allowed (EPERM unregistered).
const MEMBARRIER: &str = r#"
SYS_membarrier = 324
libc.syscall.restype = ctypes.c_long
def membarrier(cmd):
    if libc.syscall(SYS_membarrier, cmd, 0, 0) < 0:
        return -ctypes.get_errno()
    return 0
for cmd in (16, 4):  # MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, _REGISTER_GLOBAL_EXPEDITED
    if membarrier(cmd):
        raise OSError(ctypes.get_errno(), "membarrier register")
def state():
    return [libc.syscall(SYS_membarrier, 512, 0, 0), membarrier(8)]  # GET_REGISTRATIONS, PRIVATE_EXPEDITED
"#;

#[test]
fn membarrier_registrations_come_back() {
    let (before, after) = before_and_after("attr-membarrier", MEMBARRIER);
    assert_eq!(before, serde_json::json!([16 | 4, 0]), "the workload's own set-up");
    assert_eq!(after, before);
}
