//! Fidelity tests' workloads: Python scripts that set a state up, wait to be dumped and
//! restored, and report what they see, run through one dump and restore.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::workload::{reap_all_children, stasis_ok, test_dirs, wait_for_file, Descendants};

/// What every workload script may call: `ready_and_wait()` writes WORK/ready and waits for
/// SIGUSR1 (sent after the restore); `report(value)` writes it as JSON to WORK/result;
/// `report_around(state)` reports `[state() before, state() after]` the dump and restore.
pub const HELPERS: &str = r#"
import json as _json, os as _os, signal as _signal, sys as _sys, time as _time
_go = False
def _on_go(*_):
    global _go
    _go = True
_signal.signal(_signal.SIGUSR1, _on_go)
def ready_and_wait():
    open(_os.path.join(_sys.argv[1], "ready"), "w").close()
    while not _go:
        _time.sleep(0.05)
def report(value):
    tmp = _os.path.join(_sys.argv[1], "result.tmp")
    open(tmp, "w").write(_json.dumps(value))
    _os.rename(tmp, _os.path.join(_sys.argv[1], "result"))
def report_around(state):
    before = state()
    ready_and_wait()
    report([before, state()])
"#;

/// `python3 -c SCRIPT WORK` (after [`HELPERS`]), its errors in WORK/stderr; returns once it
/// wrote WORK/ready.
pub fn python(script: &str, work: &Path) -> Child {
    let script = format!("{HELPERS}{script}");
    python_argv(&["-c".as_ref(), script.as_ref()], work)
}

/// `python3 ARGS WORK` in a session of its own (`setsid`, which does not fork here: CRIU
/// refuses a tree whose session leader is outside its pid namespace, as the caller's may be: a
/// CI runner's is), its errors in WORK/stderr; returns once it wrote WORK/ready.
pub fn python_argv(args: &[&std::ffi::OsStr], work: &Path) -> Child {
    let child = Command::new("setsid")
        .arg("/usr/bin/python3")
        .args(args)
        .arg(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&work.join("ready"), Duration::from_secs(30));
    child
}

/// Runs the Python `script`, dumps it (killing it), restores it, lets it go on (SIGUSR1) and
/// returns what it wrote to WORK/result.
pub fn dumped_and_restored(name: &str, script: &str) -> serde_json::Value {
    dumped_and_restored_with(name, script, &[])
}

/// [`dumped_and_restored`], with `flags` given to both the dump and the restore.
pub fn dumped_and_restored_with(name: &str, script: &str, flags: &[&str]) -> serde_json::Value {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs(name);
    let mut child = python(script, &work);
    let pid = child.id() as i32;
    let pid_s = pid.to_string();
    stasis_ok(&[&["dump", "-t", &pid_s, "-D", images.to_str().unwrap()], flags].concat());
    let _ = child.wait();
    // Its children, killed too, come back at their pids: reaped first.
    reap_all_children();
    stasis_ok(&[&["restore", "-D", images.to_str().unwrap(), "-d"], flags].concat());
    go_on_and_report(pid, &work)
}

/// The Python `script` dumped by `dumper` and restored by `restorer` (Stasis or CRIU 4.2.1,
/// both with --shell-job); returns what it wrote to WORK/result.
pub fn dumped_and_restored_by(
    name: &str,
    script: &str,
    dumper: crate::inet::Tool,
    restorer: crate::inet::Tool,
) -> serde_json::Value {
    let _d = Descendants;
    let (_scratch, work, images) = test_dirs(&format!("{name}-{}-{}", dumper.name(), restorer.name()));
    let mut child = python(script, &work);
    let pid = child.id() as i32;
    dumper.dump(pid, &images, &[]).unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    reap_all_children();
    restorer.restore(&images, &[]).unwrap_or_else(|e| panic!("{e}"));
    go_on_and_report(pid, &work)
}

/// Lets the workload `pid` (in `work`) go on (SIGUSR1), and returns what it wrote to
/// WORK/result once it has ended.
pub fn go_on_and_report(pid: i32, work: &Path) -> serde_json::Value {
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    wait_for_file(&work.join("result"), Duration::from_secs(20));
    let result = serde_json::from_str(&std::fs::read_to_string(work.join("result")).unwrap()).unwrap();
    let _ = checkpoint_core::sys::wait_exit(pid);
    result
}
