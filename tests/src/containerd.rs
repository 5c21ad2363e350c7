//! A containerd of the test's own (root, state and socket in a scratch dir, a namespace of
//! its own), with a busybox image built locally with umoci (no registry). On drop its tasks
//! are killed and deleted, containerd is stopped by pid, and runc's state for the namespace
//! goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::container::ok;

/// A running containerd of the test's own.
pub struct Containerd {
    pub dir: PathBuf,
    pub ns: String,
    child: Child,
}

/// The image the tests run: busybox-static as /bin/busybox and /bin/sh.
pub const IMAGE: &str = "localhost/busybox:busybox";

impl Containerd {
    /// Starts containerd with everything under `dir`, answering on `dir/ctd.sock`.
    pub fn start(dir: &Path, ns: &str) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{0}/ctd.sock\"\n[debug]\n  level = \"debug\"\n",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        // The shims' scratch (ctrd-checkpoint* work directories they leave behind) goes under
        // `dir`, which the test removes, not into /tmp.
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let ctd = Containerd {
            dir: dir.to_owned(),
            ns: format!("{ns}-{}", std::process::id()),
            child,
        };
        let start = Instant::now();
        while !ctd.ctr(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd does not answer: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ctd
    }

    /// `ctr -a SOCK -n NS ARGS...`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("-a")
            .arg(self.dir.join("ctd.sock"))
            .args(["-n", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ctr` that must succeed; its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&ok(&format!("ctr {args:?}"), self.ctr(args))).into_owned()
    }

    /// Imports the busybox image (built into `dir/busybox.tar` the first time).
    pub fn import_busybox(&self) {
        let tar = busybox_oci_tar(&self.dir);
        self.ctr_ok(&[
            "image",
            "import",
            "--base-name",
            "localhost/busybox",
            tar.to_str().unwrap(),
        ]);
    }

    /// The rootfs of task `id` as its shim mounted it.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
            .join("rootfs")
    }

    /// The status `ctr task ls` gives task `id` (RUNNING, STOPPED...).
    pub fn task_status(&self, id: &str) -> String {
        self.ctr_ok(&["task", "ls"])
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .unwrap_or_default()
    }

    /// Waits until task `id` has `status`.
    pub fn wait_task(&self, id: &str, status: &str) {
        let start = Instant::now();
        while self.task_status(id) != status {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "task {id} is {}",
                self.task_status(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a counting container `id` from the busybox image through `runtime`.
    pub fn run_counting(&self, runtime: &Path, id: &str) {
        self.ctr_ok(&[
            "run",
            "-d",
            "--null-io",
            "--runc-binary",
            runtime.to_str().unwrap(),
            IMAGE,
            id,
            "/bin/sh",
            "-c",
            crate::container::COUNTER,
        ]);
    }

    /// Kills and deletes every task and container of the namespace.
    pub fn remove_all(&self) {
        let list = |what: &str| -> Vec<String> {
            String::from_utf8_lossy(&self.ctr(&[what, "ls", "-q"]).stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        };
        for t in list("task") {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", &t]);
        }
        for t in list("task") {
            let start = Instant::now();
            while self.task_status(&t) == "RUNNING" && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.ctr(&["task", "delete", "--force", &t]);
        }
        for c in list("container") {
            let _ = self.ctr(&["container", "delete", &c]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all();
        let _ = checkpoint_core::sys::send_signal(self.child.id() as i32, libc::SIGTERM);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.ns));
        // Shims of deleted tasks exit; as the subreaper we reap them.
        crate::workload::reap_all_children();
        // The cgroups of the namespace's containers are /NS/ID: the shims remove ID.
        crate::workload::remove_cgroup_dirs(&self.ns);
    }
}

/// An OCI image archive of busybox (umoci), made once in `dir`.
pub fn busybox_oci_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("busybox.tar");
    if tar.exists() {
        return tar;
    }
    let layout = dir.join("oci");
    let bundle = dir.join("oci-bundle");
    let umoci = |args: &[&str]| {
        ok(
            &format!("umoci {args:?}"),
            Command::new("umoci").args(args).output().unwrap(),
        );
    };
    let image = format!("{}:busybox", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    umoci(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    umoci(&["config", "--image", &image, "--config.cmd", "/bin/sh"]);
    ok(
        "tar",
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap(),
    );
    tar
}
