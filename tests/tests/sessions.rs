//! Process trees whose sessions, groups or zombies need more than a fork to come back
//! (issue 12): a group or a session whose leader is gone, a zombie whose parent handles
//! SIGCHLD. Each workload checks from inside that it is as it was.

use ctests::scripted::*;

/// A process group whose leader is gone: the root (a subreaper) forked a group leader, which
/// forked two members and exited; they live on in its group, re-parented to the root. After
/// the restore both are in that group again (made by a helper at the leader's pid, gone
/// again), and a signal to the group reaches both.
const LEADERLESS_GROUP: &str = r#"
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r, w = os.pipe()
leader = os.fork()
if leader == 0:
    os.setpgid(0, 0)
    for n in (b"1", b"2"):
        if os.fork() == 0:
            got = []
            signal.signal(signal.SIGUSR2, lambda *_: got.append(1))
            while not got:
                time.sleep(0.02)
            os.write(w, n)
            os._exit(0)
    os._exit(0)
os.waitpid(leader, 0)
time.sleep(0.2)
members = sorted(int(p) for p in open("/proc/self/task/%d/children" % os.getpid()).read().split())
def state():
    return [[os.getpgid(m) == leader for m in members], os.path.exists("/proc/%d" % leader)]
before = state()
ready_and_wait()
after = state()
os.killpg(leader, signal.SIGUSR2)
after.append(sorted(os.read(r, 1) + os.read(r, 1)))
for m in members:
    os.waitpid(m, 0)
report([before, after])
"#;

#[test]
fn a_process_group_whose_leader_is_gone_comes_back_with_its_members() {
    let result = dumped_and_restored("fidelity-leaderless-group", LEADERLESS_GROUP);
    assert_eq!(result[0], serde_json::json!([[true, true], false]), "before");
    assert_eq!(result[1], serde_json::json!([[true, true], false, [49, 50]]), "after");
}

/// A zombie whose parent counts SIGCHLD (set `RESET` to set SIGCHLD back to its default once
/// the zombie is there): the restore makes the zombie again without the parent seeing a
/// SIGCHLD (its count and handlers are as they were), and the parent reaps it with its exit
/// code.
const ZOMBIE_HANDLERS: &str = r#"
import os, signal, sys, time
os.closerange(3, 65536)
n = [0]
signal.signal(signal.SIGCHLD, lambda *_: n.__setitem__(0, n[0] + 1))
pid = os.fork()
if pid == 0:
    os._exit(7)
while n[0] == 0:
    time.sleep(0.01)
if RESET:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
signal.signal(signal.SIGUSR2, lambda *_: n.__setitem__(0, n[0] + 100))
def state():
    status = open("/proc/%d/status" % pid).read()
    return [n[0], signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
            [l.split()[1] for l in status.splitlines() if l.startswith("State:")][0]]
before = state()
ready_and_wait()
after = state()
_, st = os.waitpid(pid, 0)
after.append(os.WEXITSTATUS(st))
report([before, after])
"#;

#[test]
fn a_zombie_comes_back_without_a_sigchld_its_parent_would_see() {
    for reset in [false, true] {
        let script = format!("RESET = {}\n{ZOMBIE_HANDLERS}", if reset { "True" } else { "False" });
        let result = dumped_and_restored(&format!("fidelity-zombie-handlers-{reset}"), &script);
        assert_eq!(
            result[0],
            serde_json::json!([1, reset, "Z"]),
            "the workload's own set-up"
        );
        assert_eq!(result[1], serde_json::json!([1, reset, "Z", 7]), "reset: {reset}");
    }
}

/// A daemon that forked twice: the root (a subreaper) forks A, A starts a session and forks
/// B, and A exits: B, adopted by the root, is in a session and group whose leader is gone;
/// B forks C, which starts a group of its own in that session. After the restore B and C are
/// in the same session and groups, B is the root's child and C is B's, and both still run.
const LEADERLESS_SESSION: &str = r#"
import ctypes, os, signal, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
r, w = os.pipe()
a = os.fork()
if a == 0:
    os.setsid()
    b = os.fork()
    if b == 0:
        c = os.fork()
        if c == 0:
            os.setpgid(0, 0)
            os.write(w, b"c")
            while True:
                time.sleep(1)
        os.write(w, b"b")
        while True:
            time.sleep(1)
    os._exit(0)
os.waitpid(a, 0)
assert sorted(os.read(r, 1) + os.read(r, 1)) == sorted(b"bc")
def ids(pid):
    st = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return [int(st[1]), int(st[2]), int(st[3])]  # ppid, pgid, sid
def kids(pid):
    return [int(p) for p in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
def state():
    b = kids(os.getpid())[0]
    c = kids(b)[0]
    return [a, ids(b) == [os.getpid(), a, a], ids(c) == [b, c, a], os.getsid(b) == a]
report_around(state)
"#;

#[test]
fn a_session_whose_leader_is_gone_comes_back_with_its_members() {
    let result = dumped_and_restored("fidelity-leaderless-session", LEADERLESS_SESSION);
    assert_eq!(
        result[0].as_array().map(|v| v[1..].to_vec()),
        Some(vec![true.into(); 3]),
        "the workload's own set-up: {result}"
    );
    assert_eq!(result[1], result[0]);
}
