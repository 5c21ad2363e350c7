//! A podman of the test's own: storage, run and temp dirs in a scratch dir, its own
//! containers.conf (this machine's nofile limit) and storage.conf, cgroupfs, file events,
//! `--runtime stasis-runc`, and a busybox image imported from a directory (no registry). On
//! drop its containers are removed (forced), its images too, and what it left mounted under
//! its dir is unmounted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::container::ok;

/// A podman of the test's own (its dirs and confs under `dir`).
pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    /// Writes its confs into `dir`.
    pub fn new(dir: &Path) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{0}/runroot\"\ngraphroot = \"{0}/root\"\n",
                dir.display()
            ),
        )
        .unwrap();
        Podman { dir: dir.to_owned() }
    }

    /// `podman` with this instance's dirs and `--runtime stasis-runc`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let d = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d("storage.conf"))
            .args(["--root", &d("root"), "--runroot", &d("runroot"), "--tmpdir", &d("tmp")])
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(crate::workspace_bin("stasis-runc"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// A podman command, output captured.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// A podman command that must succeed; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&ok(&format!("podman {args:?}"), self.run(args)))
            .trim()
            .to_owned()
    }

    /// Imports busybox (as /bin/busybox and /bin/sh) as `localhost/bb:latest`.
    pub fn import_busybox(&self) {
        let rootfs = self.dir.join("bb-rootfs");
        for d in ["bin", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh"));
        let tar = self.dir.join("bb.tar");
        ok(
            "tar",
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .output()
                .unwrap(),
        );
        self.ok(&[
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            "localhost/bb:latest",
        ]);
    }

    /// Runs a counting container `name` (no network).
    pub fn run_counting(&self, name: &str) {
        self.run_counting_with(name, &[]);
    }

    /// Runs a counting container `name` (no network) with more `podman run` flags.
    pub fn run_counting_with(&self, name: &str, flags: &[&str]) {
        let mut args = vec!["run", "-d"];
        args.extend(flags);
        args.extend([
            "--network",
            "none",
            "--name",
            name,
            "localhost/bb:latest",
            "/bin/sh",
            "-c",
            crate::container::COUNTER,
        ]);
        self.ok(&args);
    }

    /// The container's rootfs as mounted on the host (`podman mount`).
    pub fn rootfs(&self, name: &str) -> PathBuf {
        PathBuf::from(self.ok(&["mount", name]))
    }

    /// The container's state (running, exited...).
    pub fn status(&self, name: &str) -> String {
        self.ok(&["inspect", "--format", "{{.State.Status}}", name])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--force", "--all", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        // conmon double-forks, and runs `podman container cleanup` when its container ends
        // (which mounts podman's storage again): as the subreaper we wait for all of them.
        crate::workload::reap_all_children();
        // What podman's storage left mounted under our dir, deepest first.
        let prefix = self.dir.to_str().unwrap().to_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        // podman's parent cgroup, once no container of any podman is below it.
        crate::workload::remove_cgroup_dirs("libpod_parent");
    }
}
