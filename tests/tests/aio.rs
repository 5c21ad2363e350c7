//! AIO contexts (io_setup, issue 12): a ring holding completed events the process has not
//! reaped yet comes back at its address, with those events, and takes new requests.

use ctests::inet::Tool;
use ctests::scripted::*;

/// Two contexts: one whose three reads of a file completed and one of them was reaped (two
/// events wait in the ring), and one that went round its ring (four events wait, its tail
/// behind its head). After the restore the contexts are at the same
/// addresses with the same head and tail, the two waiting events are reaped with their tags,
/// results and data, a new read completes through the first, and both are destroyed cleanly.
const AIO: &str = r#"
import ctypes, os, sys, time
d = sys.argv[1]
os.closerange(3, 65536)
libc = ctypes.CDLL(None, use_errno=True)
SYS_io_setup, SYS_io_destroy, SYS_io_getevents, SYS_io_submit = 206, 207, 208, 209
class IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]
class Iocb(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("key", ctypes.c_uint32), ("rw_flags", ctypes.c_uint32),
                ("opcode", ctypes.c_uint16), ("reqprio", ctypes.c_int16), ("fildes", ctypes.c_uint32),
                ("buf", ctypes.c_uint64), ("nbytes", ctypes.c_uint64), ("offset", ctypes.c_int64),
                ("reserved2", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("resfd", ctypes.c_uint32)]
def setup(n):
    ctx = ctypes.c_ulong(0)
    assert libc.syscall(SYS_io_setup, n, ctypes.byref(ctx)) == 0, ctypes.get_errno()
    return ctx.value
def ring(ctx):
    return list(ctypes.cast(ctx, ctypes.POINTER(ctypes.c_uint32))[1:4])  # nr, head, tail
path = os.path.join(d, "data")
open(path, "wb").write(b"".join(bytes([65 + i]) * 4096 for i in range(4)))
fd = os.open(path, os.O_RDONLY)
bufs = [ctypes.create_string_buffer(4096) for _ in range(4)]
def read(ctx, tags):
    cbs = [Iocb(data=t, opcode=0, fildes=fd, buf=ctypes.addressof(bufs[t]), nbytes=4096, offset=4096 * t) for t in tags]
    arr = (ctypes.POINTER(Iocb) * len(cbs))(*[ctypes.pointer(c) for c in cbs])
    assert libc.syscall(SYS_io_submit, ctypes.c_ulong(ctx), len(cbs), arr) == len(cbs), ctypes.get_errno()
    return cbs
def reap(ctx, n):
    evs = (IoEvent * n)()
    got = libc.syscall(SYS_io_getevents, ctypes.c_ulong(ctx), n, n, evs, None)
    return [[e.data, e.res, bufs[e.data].raw[:1].decode()] for e in evs[:got]]
a, b = setup(128), setup(16)
keep = read(a, [0, 1, 2])
while ring(a)[2] != 3:
    time.sleep(0.01)
first = reap(a, 1)
# b goes round: 125 reads submitted and reaped, then 4 more left waiting across the end of
# its ring (its tail behind its head)
for _ in range(25):
    read(b, [0] * 5)
    reap(b, 5)
read(b, [0, 1, 2, 3])
while ring(b)[2] != (125 + 4) % ring(b)[0]:
    time.sleep(0.01)
def state():
    return [a, b, ring(a), ring(b), sorted(l.split()[1] for l in open("/proc/self/maps") if "/[aio]" in l)]
before = state()
ready_and_wait()
after = state()
waiting = reap(a, 2)
keep2 = read(a, [3])
new = reap(a, 1)
around = sorted(e[0] for e in reap(b, 4))
destroyed = [libc.syscall(SYS_io_destroy, ctypes.c_ulong(a)), libc.syscall(SYS_io_destroy, ctypes.c_ulong(b))]
report([before, after, first, waiting, new, destroyed, around])
"#;

#[test]
fn an_aio_context_comes_back_with_its_waiting_events_and_takes_new_requests() {
    check(&dumped_and_restored("aio-rings", AIO));
}

/// CRIU 4.2.1 restores the rings Stasis dumped...
#[test]
fn criu_restores_aio_contexts_stasis_dumped() {
    check(&dumped_and_restored_by("aio-rings", AIO, Tool::Stasis, Tool::Criu));
}

/// ... and Stasis those CRIU dumped.
#[test]
fn stasis_restores_aio_contexts_criu_dumped() {
    check(&dumped_and_restored_by("aio-rings", AIO, Tool::Criu, Tool::Stasis));
}

/// What [`AIO`] reported, checked.
fn check(result: &serde_json::Value) {
    let (before, after) = (&result[0], &result[1]);
    // [nr, head, tail]: three events in, one reaped; the other round its ring
    assert_eq!(
        (&before[2][1], &before[2][2]),
        (&1.into(), &3.into()),
        "the workload's own set-up: {result}"
    );
    assert_eq!(before[3], serde_json::json!([127, 125, 2]), "{result}");
    assert_eq!(before[4], serde_json::json!(["rw-s", "rw-s"]), "{result}");
    assert_eq!(after, before);
    assert_eq!(result[2], serde_json::json!([[0, 4096, "A"]]));
    let mut waiting = result[3].as_array().unwrap().clone();
    waiting.sort_by_key(|e| e[0].as_u64());
    assert_eq!(
        waiting,
        [serde_json::json!([1, 4096, "B"]), serde_json::json!([2, 4096, "C"])]
    );
    assert_eq!(result[4], serde_json::json!([[3, 4096, "D"]]));
    assert_eq!(result[5], serde_json::json!([0, 0]));
    assert_eq!(result[6], serde_json::json!([0, 1, 2, 3]));
}
