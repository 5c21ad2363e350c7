//! Files unlinked while a process holds them (issue 12): FIFOs, directories, mapped files,
//! files with holes. Each comes back unlinked, as it was, and is checked from inside.

use std::path::Path;

use ctests::scripted::*;
use ctests::workload::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Unlinked while open: a FIFO holding data (its two ends), and a directory (mode 0750). After
/// the restore the FIFO gives its data and carries new bytes, the directory is still an empty
/// unlinked directory of that mode, and neither name is back.
const UNLINKED_NODES: &str = r#"
import json, os, stat, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
os.mkfifo(os.path.join(d, "fifo"))
r = os.open(os.path.join(d, "fifo"), os.O_RDONLY | os.O_NONBLOCK)
w = os.open(os.path.join(d, "fifo"), os.O_WRONLY)
os.write(w, b"queued")
os.unlink(os.path.join(d, "fifo"))
os.mkdir(os.path.join(d, "dir"), 0o750)
os.chmod(os.path.join(d, "dir"), 0o750)
dfd = os.open(os.path.join(d, "dir"), os.O_RDONLY | os.O_DIRECTORY)
os.rmdir(os.path.join(d, "dir"))
def nodes():
    fst, dst = os.fstat(r), os.fstat(dfd)
    return [stat.S_ISFIFO(fst.st_mode), fst.st_nlink, stat.S_ISDIR(dst.st_mode), oct(dst.st_mode & 0o7777),
            dst.st_nlink, os.listdir(dfd), sorted(n for n in os.listdir(d) if n in ("fifo", "dir"))]
before = nodes()
ready_and_wait()
after = nodes()
got = os.read(r, 100)
os.write(w, b"more")
after += [got.decode(), os.read(r, 100).decode()]
report([before, after])
"#;

#[test]
fn an_unlinked_fifo_and_an_unlinked_directory_come_back_unlinked() {
    let result = dumped_and_restored("fidelity-unlinked-nodes", UNLINKED_NODES);
    let nodes = serde_json::json!([true, 0, true, "0o750", 0, [], []]);
    assert_eq!(result[0], nodes, "the workload's own set-up");
    let mut after = nodes.as_array().unwrap().clone();
    after.extend([serde_json::json!("queued"), serde_json::json!("more")]);
    assert_eq!(result[1], serde_json::Value::Array(after));
}

/// An unlinked file with holes (6 MiB: 4 KiB of data at 0 and at 4 MiB, a hole between and
/// after): after the restore SEEK_DATA/SEEK_HOLE find the same runs, the size is the same, few
/// blocks are allocated, and the bytes are the same; the image holds it in CRIU's chunks.
const SPARSE_GHOST: &str = r#"
import hashlib, os, sys
d = sys.argv[1]
os.closerange(3, 65536)
fd = os.open(os.path.join(d, "sparse"), os.O_RDWR | os.O_CREAT, 0o640)
os.pwrite(fd, b"a" * 4096, 0)
os.pwrite(fd, b"b" * 4096, 4 << 20)
os.ftruncate(fd, 6 << 20)
os.unlink(os.path.join(d, "sparse"))
def layout():
    runs, at = [], 0
    size = os.fstat(fd).st_size
    while at < size:
        try:
            data = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        runs.append([data, hole])
        at = hole
    whole = os.pread(fd, size, 0)
    return [runs, size, os.fstat(fd).st_blocks * 512 <= 64 << 10, hashlib.sha256(whole).hexdigest(),
            os.fstat(fd).st_nlink]
report_around(layout)
"#;

#[test]
fn an_unlinked_file_with_holes_keeps_them() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-sparse-ghost");
    let mut child = python(SPARSE_GHOST, &work);
    let pid = child.id() as i32;
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images), "--ghost-limit", "8M"]);
    let _ = child.wait();
    let ghost = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("ghost-file-"))
        .expect("a ghost-file image");
    let decoded = ctests::crit_decode(&ghost);
    assert_eq!(decoded["entries"][0]["chunks"], true, "{decoded}");
    assert!(
        std::fs::metadata(&ghost).unwrap().len() < 64 << 10,
        "the holes were saved as zeros"
    );
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    let result = go_on_and_report(pid, &work);
    let runs = serde_json::json!([[0, 4096], [4 << 20, (4 << 20) + 4096]]);
    assert_eq!(result[0][0], runs, "the workload's own set-up: {result}");
    assert_eq!(result[0][2], true, "the workload's own set-up: {result}");
    assert_eq!(result[1], result[0]);
}

/// Mappings of an unlinked file (8 KiB of "A"): a private one the process wrote a page of, and
/// a shared one it shares with its child (inherited over fork). After the restore the private
/// mapping has its written page and the file's other page, and a byte the parent writes into
/// the shared mapping reaches the child.
const UNLINKED_MAPPINGS: &str = r#"
import json, mmap, os, sys, time, signal
d = sys.argv[1]
os.closerange(3, 65536)
path = os.path.join(d, "mapped")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
os.write(fd, b"A" * 8192)
shared = mmap.mmap(fd, 8192, mmap.MAP_SHARED)
private = mmap.mmap(fd, 8192, mmap.MAP_PRIVATE)
os.close(fd)
os.unlink(path)
private[0:1] = b"P"
r, w = os.pipe()
child = os.fork()
if child == 0:
    while shared[0:1] != b"Z":
        time.sleep(0.01)
    os.write(w, b"seen " + shared[1:2])
    os._exit(0)
before = [private[0:1].decode(), private[4096:4097].decode(), shared[0:1].decode(), os.path.exists(path)]
ready_and_wait()
after = [private[0:1].decode(), private[4096:4097].decode(), shared[0:1].decode(), os.path.exists(path)]
shared[1:2] = b"Y"
shared[0:1] = b"Z"
after.append(os.read(r, 20).decode())
os.waitpid(child, 0)
report([before, after])
"#;

#[test]
fn mappings_of_an_unlinked_file_come_back_private_and_shared() {
    let result = dumped_and_restored("fidelity-unlinked-mappings", UNLINKED_MAPPINGS);
    assert_eq!(result[0], serde_json::json!(["P", "A", "A", false]), "before");
    assert_eq!(result[1], serde_json::json!(["P", "A", "A", false, "seen Y"]), "after");
}

/// Unlinked while open: a device node (a copy of /dev/null, mode 0620, owned by 1234:5678),
/// written through, and a symlink held by an O_PATH|O_NOFOLLOW fd (owned by 1234). After the
/// restore each fd is still on an unlinked node of its kind, device, target, mode and owner,
/// the device still takes writes, and neither name is back.
const UNLINKED_SPECIAL: &str = r#"
import ctypes, os, stat, sys
d = sys.argv[1]
os.closerange(3, 65536)
libc = ctypes.CDLL(None, use_errno=True)
dev = os.path.join(d, "null")
os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
os.chmod(dev, 0o620)
os.chown(dev, 1234, 5678)
fd = os.open(dev, os.O_WRONLY)
os.unlink(dev)
lnk = os.path.join(d, "lnk")
os.symlink("/etc/hostname", lnk)
os.lchown(lnk, 1234, 1234)
lfd = os.open(lnk, os.O_PATH | os.O_NOFOLLOW)
os.unlink(lnk)
def target():
    buf = ctypes.create_string_buffer(256)
    n = libc.readlinkat(lfd, b"", buf, 256)
    return buf.raw[:n].decode() if n >= 0 else "errno %d" % ctypes.get_errno()
def nodes():
    st, lst = os.fstat(fd), os.fstat(lfd)
    return [stat.S_ISCHR(st.st_mode), [os.major(st.st_rdev), os.minor(st.st_rdev)], oct(st.st_mode & 0o7777),
            [st.st_uid, st.st_gid], st.st_nlink, os.write(fd, b"gone"),
            stat.S_ISLNK(lst.st_mode), target(), lst.st_uid, lst.st_nlink,
            sorted(n for n in os.listdir(d) if n in ("null", "lnk"))]
report_around(nodes)
"#;

#[test]
fn an_unlinked_device_node_and_symlink_come_back_unlinked() {
    let result = dumped_and_restored("fidelity-unlinked-special", UNLINKED_SPECIAL);
    let nodes = serde_json::json!([
        true,
        [1, 3],
        "0o620",
        [1234, 5678],
        0,
        4,
        true,
        "/etc/hostname",
        1234,
        0,
        []
    ]);
    assert_eq!(result[0], nodes, "the workload's own set-up");
    assert_eq!(result[1], nodes);
}

/// A file unlinked from one name but linked at another ("other"), and a 2 MiB file made with
/// O_TMPFILE (no name, over the ghost limit): a copy would not be the first, the second is
/// too large to save (and a small one, saved with the dump). The dump refuses them, naming --link-remap, and the process runs on;
/// with --link-remap the dump links them back (link_remap.N), the restore opens them through
/// the links and removes them. After the restore the process writes through its fds: the
/// write reaches "other" (through its fd and through a shared mapping of it), and the second
/// file still holds its bytes, unnamed.
const LINKED_ELSEWHERE: &str = r#"
import hashlib, mmap, os, sys
d = sys.argv[1]
os.closerange(3, 65536)
f = open(os.path.join(d, "orig"), "w+")
f.write("hello")
f.flush()
os.link(os.path.join(d, "orig"), os.path.join(d, "other"))
m = mmap.mmap(f.fileno(), 5, mmap.MAP_SHARED)
os.unlink(os.path.join(d, "orig"))
t = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
big = bytes(range(256)) * 8192
os.write(t, big)
small = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(small, b"small")
def state():
    return [os.fstat(f.fileno()).st_nlink, os.fstat(t).st_nlink, hashlib.sha256(os.pread(t, len(big) + 1, 0)).hexdigest(),
            sorted(n for n in os.listdir(d) if n not in ("ready", "result", "result.tmp", "stderr")),
            os.pread(small, 10, 0).decode(), os.lseek(small, 0, os.SEEK_CUR)]
before = state()
ready_and_wait()
after = state()
f.write(" more")
f.flush()
m[0:1] = b"H"
after.append(open(os.path.join(d, "other")).read())
report([before, after])
"#;

#[test]
fn unlinked_files_that_cannot_be_saved_are_linked_back_with_link_remap() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("fidelity-link-remap");
    let mut child = python(LINKED_ELSEWHERE, &work);
    let pid = child.id() as i32;
    let refused = stasis(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("--link-remap") && err.contains("orig"),
        "{err}"
    );
    assert_running_untraced(pid);
    stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images), "--link-remap"]);
    let _ = child.wait();
    let mut links: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("link_remap."))
        .collect();
    links.sort();
    // the file (for its fd and for its mapping) and the O_TMPFILE one
    assert_eq!(
        links,
        ["link_remap.1", "link_remap.2", "link_remap.3"],
        "the links the dump made"
    );
    stasis_ok(&["restore", "-D", s(&images), "-d", "--link-remap"]);
    let result = go_on_and_report(pid, &work);
    assert_eq!(
        (&result[0][0], &result[0][1]),
        (&1.into(), &0.into()),
        "the workload's own set-up: {result}"
    );
    assert_eq!(result[0][3], serde_json::json!(["other"]), "{result}");
    assert_eq!((&result[0][4], &result[0][5]), (&"small".into(), &5.into()), "{result}");
    let mut expected = result[0].as_array().unwrap().clone();
    expected.push("Hello more".into());
    assert_eq!(result[1], serde_json::Value::Array(expected));
}

/// An inotify watch on a file since deleted, which the process holds open (the kernel keeps the
/// watch until the last close): after the restore the watch is on the file's ghost at its
/// descriptor, a write through the fd is reported on it, and a watch on the directory still
/// reports. The same watch on a deleted file only a process outside the tree holds open is
/// refused by name, and the process runs on.
const WATCHED_DELETED: &str = r#"
import ctypes, os, struct, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
libc = ctypes.CDLL(None, use_errno=True)
p = os.path.join(d, "watched")
f = open(p, "w+")
f.write("x")
f.flush()
ifd = libc.inotify_init1(os.O_NONBLOCK)
wd_file = libc.inotify_add_watch(ifd, p.encode(), 0x2)  # IN_MODIFY
wd_dir = libc.inotify_add_watch(ifd, d.encode(), 0x100)  # IN_CREATE
os.unlink(p)
def events():
    time.sleep(0.1)
    out = []
    try:
        buf = os.read(ifd, 4096)
    except BlockingIOError:
        return out
    at = 0
    while at < len(buf):
        wd, mask, _, n = struct.unpack_from("iIII", buf, at)
        out.append([wd, mask])
        at += 16 + n
    return out
before = [wd_file, wd_dir, events()]
ready_and_wait()
f.write("more")
f.flush()
open(os.path.join(d, "new"), "w").close()
report([before, events()])
"#;

#[test]
fn an_inotify_watch_on_a_deleted_file_held_open_comes_back() {
    let result = dumped_and_restored("unlinked-inotify", WATCHED_DELETED);
    assert_eq!(
        result[0],
        serde_json::json!([1, 2, []]),
        "the workload's own set-up: {result}"
    );
    assert_eq!(result[1], serde_json::json!([[1, 2], [2, 256]]), "{result}");
}

#[test]
fn an_inotify_watch_on_a_deleted_file_held_only_outside_is_refused() {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs("unlinked-inotify-outside");
    // The file is opened by us (outside the tree) before the workload watches and unlinks it;
    // the workload's own fd on it is closed first.
    let held = std::fs::File::create(work.join("watched")).unwrap();
    let script = WATCHED_DELETED.replace(
        "f = open(p, \"w+\")",
        "f = open(p, \"w+\"); os.dup2(os.open(\"/dev/null\", os.O_WRONLY), f.fileno())",
    );
    let mut child = python(&script, &work);
    let pid = child.id() as i32;
    let out = stasis(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("inotify") && err.contains("watch 1"),
        "{err}"
    );
    assert_running_untraced(pid);
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}
