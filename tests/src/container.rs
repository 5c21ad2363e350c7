//! Containers for the runtime tests: a busybox bundle whose container counts into a file of
//! its rootfs, and the test's own runc root, whose containers are deleted however the test
//! ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `bin` with `args`, stdin from /dev/null, output captured.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs stasis-runc.
pub fn stasis_runc(args: &[&str]) -> Output {
    run(crate::workspace_bin("stasis-runc").to_str().unwrap(), args)
}

/// Asserts `out` succeeded (showing its stderr otherwise); returns its stdout.
pub fn ok(what: &str, out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// The shell loop of the counting container: `i` lives in the shell's memory only.
pub const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; /bin/busybox sleep 0.05; done";

/// Makes a busybox bundle in `dir` (from `runc spec`) whose container counts into /tmp/count.
pub fn counting_bundle(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    ok("runc spec", run("runc", &["spec", "--bundle", dir.to_str().unwrap()]));
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", COUNTER]);
    config["root"]["readonly"] = false.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// The counter the container at `rootfs` wrote last (0 if none yet). The shell truncates the
/// file before each write: a read between the two (empty, or without its newline) is read
/// again.
pub fn count(rootfs: &Path) -> u64 {
    for _ in 0..200 {
        match std::fs::read_to_string(rootfs.join("tmp/count")) {
            Err(_) => return 0,
            Ok(s) => {
                if let Some(n) = s.strip_suffix('\n').and_then(|n| n.parse().ok()) {
                    return n;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    0
}

/// Waits until the counter passes `n`; returns it.
pub fn wait_count_above(rootfs: &Path, n: u64) -> u64 {
    let start = Instant::now();
    loop {
        let c = count(rootfs);
        if c > n {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the counter stays at {c}, not above {n}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that a restored counter at `rootfs` goes on from at least `from` (the value it had
/// at the checkpoint, or earlier): nothing below it is written (a new shell would start at 1;
/// 0 is no file yet), and it passes `from + 3`.
pub fn assert_counts_on_from(rootfs: &Path, from: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        let now = count(rootfs);
        assert!(
            now == 0 || now >= from,
            "the restored counter wrote {now}, below {from}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_count_above(rootfs, from + 3);
}

/// A container of the test's own runc root; deleted (forced) on drop.
pub struct Container {
    pub root: String,
    pub id: String,
    pub bundle: PathBuf,
}

impl Container {
    /// A counting container `id` under `scratch` (its bundle and runc root), not created yet.
    pub fn counting(scratch: &Path, id: &str) -> Container {
        let bundle = scratch.join("bundle");
        counting_bundle(&bundle);
        Container {
            root: scratch.join("runc-root").to_str().unwrap().to_owned(),
            id: format!("{id}-{}", std::process::id()),
            bundle,
        }
    }

    /// A container `id` whose process is `program` (copied to /bin in the busybox rootfs) with
    /// `args`, not created yet.
    pub fn running(scratch: &Path, id: &str, program: &Path, args: &[&str]) -> Container {
        let c = Container::counting(scratch, id);
        let name = program.file_name().unwrap().to_str().unwrap();
        std::fs::copy(program, c.rootfs().join("bin").join(name)).unwrap();
        let path = c.bundle.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut argv = vec![format!("/bin/{name}")];
        argv.extend(args.iter().map(|a| a.to_string()));
        config["process"]["args"] = serde_json::json!(argv);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        c
    }

    /// Puts the container in a user namespace of its own: its ids 0..65536 are ours from
    /// `host_id` (its rootfs is given to them).
    pub fn in_user_namespace(&self, host_id: u32) {
        let path = self.bundle.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        fn chown_all(p: &Path, id: u32) {
            std::os::unix::fs::lchown(p, Some(id), Some(id)).unwrap();
            if std::fs::symlink_metadata(p).unwrap().is_dir() {
                for e in std::fs::read_dir(p).unwrap().flatten() {
                    chown_all(&e.path(), id);
                }
            }
        }
        chown_all(&self.rootfs(), host_id);
    }

    /// Gives the container's process capability `cap` too (bounding, effective, permitted).
    pub fn add_cap(&self, cap: &str) {
        let path = self.bundle.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(cap.into());
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// The container's root directory (in its bundle).
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Runs `bin` (runc or stasis-runc) with `--root ROOT` and `args` (`{}` stands for the
    /// container id).
    pub fn cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(["--root", &self.root]);
        cmd.args(args.iter().map(|a| if *a == "{}" { self.id.as_str() } else { a }));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `runc --root ROOT ARGS`, output captured.
    pub fn runc(&self, args: &[&str]) -> Output {
        self.cmd("runc", args).output().unwrap()
    }

    /// `stasis-runc --root ROOT ARGS`, output captured.
    pub fn stasis_runc(&self, args: &[&str]) -> Output {
        self.cmd(crate::workspace_bin("stasis-runc").to_str().unwrap(), args)
            .output()
            .unwrap()
    }

    /// Runs a command whose stdio the container inherits: files in `dir`, not pipes a test
    /// would wait on forever.
    pub fn run_detached(&self, mut cmd: Command, dir: &Path) -> std::process::ExitStatus {
        let io = |name: &str| {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(name))
                    .unwrap(),
            )
        };
        cmd.stdout(io("out")).stderr(io("err")).status().unwrap()
    }

    /// `runc run -d --pid-file`: the container counting, its init's pid. Its stdio are files
    /// in `dir` (out, err).
    pub fn start(&self, dir: &Path) -> i32 {
        self.run(dir, false)
    }

    /// `runc run -d` with stdio on /dev/null (CRIU refuses a container whose stdio is a file
    /// of ours): its init's pid.
    pub fn start_quiet(&self, dir: &Path) -> i32 {
        self.run(dir, true)
    }

    fn run(&self, dir: &Path, quiet: bool) -> i32 {
        let pid_file = dir.join("init.pid");
        let bundle = self.bundle.to_str().unwrap();
        let mut cmd = self.cmd(
            "runc",
            &[
                "run",
                "-d",
                "--bundle",
                bundle,
                "--pid-file",
                pid_file.to_str().unwrap(),
                "{}",
            ],
        );
        let status = if quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap()
        } else {
            self.run_detached(cmd, dir)
        };
        assert!(
            status.success(),
            "runc run: {}",
            std::fs::read_to_string(dir.join("err")).unwrap_or_default()
        );
        std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap()
    }

    /// runc's `state`.
    pub fn state(&self) -> Value {
        serde_json::from_slice(&ok("runc state", self.runc(&["state", "{}"]))).unwrap()
    }

    /// Waits until runc calls the container `status`. Meanwhile the processes of the
    /// container that ended re-parented to us (the subreaper) are reaped: a pid namespace's
    /// init ends only once every other process of it is reaped.
    pub fn wait_status(&self, status: &str) {
        let start = Instant::now();
        loop {
            crate::workload::reap_ended_children();
            let s = self.state();
            if s["status"] == status {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "still {s}, not {status}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `runc kill ID KILL`, then `runc delete ID` once it stopped: runc still owns it.
    pub fn kill_and_delete(&self) {
        ok("runc kill", self.runc(&["kill", "{}", "KILL"]));
        self.wait_status("stopped");
        ok("runc delete", self.runc(&["delete", "{}"]));
    }

    /// Waits until runc no longer knows the container (a checkpoint without
    /// `--leave-running` removes it, as runc does), reaping what ended meanwhile.
    pub fn wait_gone(&self) {
        let start = Instant::now();
        while self.exists() {
            crate::workload::reap_ended_children();
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "still there: {}",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether runc knows the container.
    pub fn exists(&self) -> bool {
        self.runc(&["state", "{}"]).status.success()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", "{}"]);
    }
}
