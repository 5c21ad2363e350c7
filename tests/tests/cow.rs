//! Memory shared copy-on-write after fork (issue 12): pages a parent and its children share
//! (never written since the fork) are still shared after the restore, not copies; pages one
//! of them wrote are its own, with its bytes.

use ctests::scripted::*;

/// A parent with 32 MiB of anonymous memory (a distinct byte pattern per page) forks three
/// children; the second writes 16 of the pages. The parent counts, through /proc/PID/pagemap
/// (page frame numbers, which root sees), how many pages each child shares with it, and each
/// process hashes its copy. After the restore the counts and hashes are the same.
const COW: &str = r#"
import hashlib, mmap, os, signal, struct, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
PAGES = 8192
m = mmap.mmap(-1, PAGES * 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for p in range(PAGES):
    m[p * 4096:p * 4096 + 8] = struct.pack("Q", p * 2654435761 % (1 << 64))
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
kids = []
ready_r, ready_w = os.pipe()
for k in range(3):
    pid = os.fork()
    if pid == 0:
        if k == 1:
            for p in range(100, 116):
                m[p * 4096] = 0x55
        def hash_me(*_):
            path = os.path.join(d, "child-%d" % os.getpid())
            open(path + ".tmp", "w").write(hashlib.sha256(m).hexdigest())
            os.rename(path + ".tmp", path)  # whole when it appears
        signal.signal(signal.SIGUSR2, hash_me)
        os.write(ready_w, b"k")  # its pages as they stay, its handler set
        while True:
            time.sleep(0.05)
    kids.append(pid)
got = b""
while len(got) < 3:
    got += os.read(ready_r, 3 - len(got))
def frames(pid):
    with open("/proc/%d/pagemap" % pid, "rb") as f:
        f.seek(addr // 4096 * 8)
        raw = f.read(PAGES * 8)
    return [e & ((1 << 55) - 1) if e >> 63 else None for e in struct.unpack("%dQ" % PAGES, raw)]
def state():
    mine = frames(os.getpid())
    shared = [sum(1 for a, b in zip(mine, frames(k)) if a is not None and a == b) for k in kids]
    hashes = []
    for k in kids:
        path = os.path.join(d, "child-%d" % k)
        if os.path.exists(path):
            os.unlink(path)
        os.kill(k, signal.SIGUSR2)
        while not os.path.exists(path):
            time.sleep(0.01)
        hashes.append(open(path).read())
    return [shared, hashlib.sha256(m).hexdigest(), hashes, addr]
report_around(state)
"#;

#[test]
fn pages_shared_after_fork_stay_shared() {
    let result = dumped_and_restored("cow", COW);
    let (before, after) = (&result[0], &result[1]);
    assert_eq!(
        before[0],
        serde_json::json!([8192, 8192 - 16, 8192]),
        "the workload's own set-up: {result}"
    );
    assert_eq!(before[2][0], before[1], "{result}");
    assert_ne!(before[2][1], before[1], "{result}");
    assert_eq!(after, before);
}

/// A dump that leaves the tree running does not unshare its memory: reading a page shared
/// copy-on-write with process_vm_readv would (the kernel unshares a page it pins), doubling the
/// live tree's memory; after the dump the counts of shared pages are the same.
#[test]
fn a_dump_left_running_keeps_the_tree_pages_shared() {
    use ctests::workload::*;
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("cow-left-running");
    let mut child = python(COW, &work);
    let pid = child.id() as i32;
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", images.to_str().unwrap(), "-R"]);
    let result = go_on_and_report(pid, &work);
    let _ = child.wait();
    assert_eq!(
        result[0][0],
        serde_json::json!([8192, 8192 - 16, 8192]),
        "the workload's own set-up: {result}"
    );
    assert_eq!(result[1], result[0]);
}
