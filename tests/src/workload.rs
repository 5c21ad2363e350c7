//! The C workload (tests/workloads/workload.c) and the processes the tests start: compiled once
//! per target directory, started with stdio on /dev/null, killed and reaped by pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::workspace_bin;

/// Path of the compiled workload, building it with gcc if needed.
pub fn workload_bin() -> PathBuf {
    c_bin("workload", &[])
}

/// `tests/workloads/inet.c`: the inet, netlink and many-connections workload.
pub fn inet_bin() -> PathBuf {
    c_bin("inet", &[])
}

/// `tests/workloads/sysv.c`, built static (it runs in a busybox container).
pub fn sysv_bin() -> PathBuf {
    c_bin("sysv", &["-static"])
}

/// `tests/workloads/NAME.c` compiled with gcc if needed. The name carries a hash of the
/// source, and a built binary is never replaced (a running workload may be using it).
fn c_bin(name: &str, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("workloads/{name}.c"));
    let text = std::fs::read(&src).unwrap();
    let hash = text.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let out = workspace_bin("stasis").with_file_name(format!("stasis-test-{name}-{hash:016x}"));
    if !out.exists() {
        // Test processes may race here: build privately, then link into place unless already there.
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-O1", "-Wall", "-Wno-format-truncation", "-Wno-unused-result"])
            .args(extra)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("gcc is needed to build the test workload");
        assert!(st.success(), "building {} failed", src.display());
        match std::fs::hard_link(&tmp, &out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{}: {e}", out.display()),
        }
        std::fs::remove_file(&tmp).unwrap();
    }
    out
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates a fresh directory named after `name` and this test process.
    pub fn new(name: &str) -> Scratch {
        no_inherited_fds();
        let p = std::env::temp_dir().join(format!("stasis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A started workload; killed (by pid) and reaped on drop if still there.
pub struct Workload {
    pub child: Option<Child>,
    pub pid: i32,
    pub dir: PathBuf,
}

impl Workload {
    /// Starts `workload MODE DIR [MB]` and waits until it reports ready.
    pub fn start(mode: &str, dir: &Path, mb: Option<u32>) -> Workload {
        Self::start_with(mode, dir, mb, [Stdio::null(), Stdio::null(), Stdio::null()])
    }

    /// Like [`Workload::start`], with the given stdin, stdout and stderr.
    pub fn start_with(mode: &str, dir: &Path, mb: Option<u32>, stdio: [Stdio; 3]) -> Workload {
        let args: Vec<String> = mb.iter().map(u32::to_string).collect();
        Self::start_args(mode, dir, &args, &[], stdio)
    }

    /// `workload MODE DIR ARGS...` with `env` added and the given stdio; waits until it
    /// reports ready.
    pub fn start_args(mode: &str, dir: &Path, args: &[String], env: &[(&str, &str)], stdio: [Stdio; 3]) -> Workload {
        Self::start_command(Command::new(workload_bin()), mode, dir, args, env, stdio)
    }

    /// `CMD MODE DIR ARGS...` (another workload binary, or `setsid PROGRAM`...) with `env`
    /// added and the given stdio; waits until it reports ready.
    pub fn start_command(
        mut cmd: Command,
        mode: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, &str)],
        stdio: [Stdio; 3],
    ) -> Workload {
        cmd.arg(mode).arg(dir).args(args).envs(env.iter().copied());
        let [i, o, e] = stdio;
        let child = cmd.stdin(i).stdout(o).stderr(e).spawn().unwrap();
        let pid = child.id() as i32;
        let w = Workload {
            child: Some(child),
            pid,
            dir: dir.to_owned(),
        };
        wait_for_file(&dir.join("ready"), Duration::from_secs(60));
        w
    }

    /// Sends `sig` to the workload's pid.
    pub fn signal(&self, sig: i32) {
        checkpoint_core::sys::send_signal(self.pid, sig).unwrap();
    }

    /// Waits for the original child to end (after a dump killed it); returns its wait status.
    pub fn reap_original(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("not reaped yet").wait().unwrap()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        } else if Path::new(&format!("/proc/{}", self.pid)).exists() {
            // A restored process re-parented to us (we are the subreaper): kill and reap it.
            let _ = checkpoint_core::sys::send_signal(self.pid, libc::SIGKILL);
            let _ = checkpoint_core::sys::wait_exit(self.pid);
        }
    }
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < timeout,
            "{} did not appear in {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `stasis ARGS` and returns its output.
pub fn stasis(args: &[&str]) -> Output {
    Command::new(workspace_bin("stasis"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `stasis ARGS`, which must succeed; returns stderr.
pub fn stasis_ok(args: &[&str]) -> String {
    let out = stasis(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stasis {args:?} failed: {err}");
    err
}

/// One field of /proc/PID/status.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Asserts `pid` runs free: not traced, not stopped.
pub fn assert_running_untraced(pid: i32) {
    assert_eq!(
        status_field(pid, "TracerPid").as_deref(),
        Some("0"),
        "pid {pid} is still traced"
    );
    let state = status_field(pid, "State").unwrap_or_default();
    assert!(state.starts_with('R') || state.starts_with('S'), "pid {pid} is {state}");
}

/// The fds the test runner left us (beyond stdio) are not passed on to what we start: a
/// workload holding one would be dumped with it (a pipe outside the tree, say).
pub fn no_inherited_fds() {
    checkpoint_core::sys::cloexec_from(3).unwrap();
}

/// Becomes the subreaper of everything we start, so restored orphans come back to us.
pub fn become_subreaper() {
    checkpoint_core::sys::set_child_subreaper().unwrap();
}

/// The pids a `tree` workload wrote to `DIR/pids`, the root first.
pub fn tree_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .collect()
}

/// (ppid, pgid, sid, state) of `pid`, from /proc/PID/stat.
pub fn proc_ids(pid: i32) -> Option<(u32, u32, u32, char)> {
    let st = checkpoint_core::procfs::parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some((st.ppid, st.pgid, st.sid, st.state))
}

/// Reaps every child we have, processes re-parented to us (the subreaper) included, until
/// none is left. Only for when every one of them is dying.
pub fn reap_all_children() {
    while checkpoint_core::sys::wait_exit(-1).is_ok() {}
}

/// Reaps the children of ours that have ended, without waiting for the others.
pub fn reap_ended_children() {
    while let Ok(Some(_)) = checkpoint_core::sys::reap_if_ended(-1) {}
}

/// Removes the (empty) cgroup directories named `name` in every hierarchy, and what is below
/// them: what a runtime made for the test's containers and left (containerd leaves its
/// namespace's directory).
pub fn remove_cgroup_dirs(name: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten();
    for h in hierarchies {
        let dir = h.path().join(name);
        if dir.is_dir() {
            rm(&dir);
        }
    }
}

/// The processes of a tree we started: on drop, the ones still there are killed by pid and
/// everything is reaped.
pub struct TreeGuard(pub Vec<i32>);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        let ours = |ppid: u32| ppid == std::process::id() || self.0.contains(&(ppid as i32));
        for &pid in &self.0 {
            // Only a process still in the tree (its parent us or one of it), never a reused pid.
            if proc_ids(pid).is_some_and(|(ppid, ..)| ours(ppid)) {
                let _ = checkpoint_core::sys::send_signal(pid, libc::SIGKILL);
            }
        }
        reap_all_children();
    }
}

/// On drop, kills (by pid) and reaps every process whose parent is this test process: what it
/// started, and what was re-parented to it as the subreaper of everything it started.
pub struct Descendants;

impl Drop for Descendants {
    fn drop(&mut self) {
        let me = std::process::id();
        for _ in 0..100 {
            let ours: Vec<i32> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| proc_ids(pid).is_some_and(|(ppid, ..)| ppid == me))
                .collect();
            if ours.is_empty() {
                return;
            }
            for pid in ours {
                let _ = checkpoint_core::sys::send_signal(pid, libc::SIGKILL);
            }
            // Not a blocking wait: a grandchild re-parented to us after the listing would be
            // waited for forever; the next round kills it.
            std::thread::sleep(std::time::Duration::from_millis(10));
            reap_ended_children();
        }
    }
}

/// Becomes the subreaper and makes a scratch dir named after `name`, with `work/` (created) and
/// `images/` (not yet): what most tests start with.
pub fn test_dirs(name: &str) -> (Scratch, PathBuf, PathBuf) {
    become_subreaper();
    no_inherited_fds();
    let scratch = Scratch::new(name);
    let work = scratch.join("work");
    let images = scratch.join("images");
    std::fs::create_dir(&work).unwrap();
    (scratch, work, images)
}
