//! `stasis-runc`, the runc-compatible runtime: the command line containerd and podman use, the
//! verbs handed to runc untouched, and errors in the log shape containerd reads. (Checkpoint
//! and restore of containers: `runc.rs`.)

use std::process::{Command, Output, Stdio};

use ctests::workload::Scratch;
use ctests::workspace_bin;

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap()
}

fn stasis_runc(args: &[&str]) -> Output {
    run(workspace_bin("stasis-runc").to_str().unwrap(), args)
}

/// runc's messages without their timestamps (two runs a second apart differ only there).
fn untimed(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.remove("time");
                serde_json::Value::Object(m).to_string()
            }
            _ => match l.strip_prefix("time=\"").and_then(|r| r.split_once("\" ")) {
                Some((_, rest)) => rest.to_owned(),
                None => l.to_owned(),
            },
        })
        .collect()
}

#[test]
fn version_and_the_checkpoint_probe_answer() {
    let v = stasis_runc(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains("stasis-runc version"));
    // podman and containerd ask `checkpoint --help` before each checkpoint: only exit 0 counts.
    for verb in ["checkpoint", "restore"] {
        let h = stasis_runc(&[verb, "--help"]);
        assert!(h.status.success(), "{verb} --help");
        assert!(String::from_utf8_lossy(&h.stdout).contains("--image-path"));
    }
}

#[test]
fn other_verbs_are_runcs_with_the_argv_untouched() {
    let scratch = Scratch::new("runc-passthrough");
    let root = scratch.join("root");
    let root = root.to_str().unwrap();
    for args in [
        vec!["--root", root, "list"],
        vec!["--root", root, "state", "no-such-container"],
        vec!["--root", root, "--log-format", "json", "kill", "no-such-container", "9"],
        vec!["spec", "--help"],
    ] {
        let ours = stasis_runc(&args);
        let theirs = run("runc", &args);
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        assert_eq!(ours.stdout, theirs.stdout, "{args:?}");
        assert_eq!(untimed(&ours.stderr), untimed(&theirs.stderr), "{args:?}");
    }
    // Our own flag is not passed on.
    let ours = stasis_runc(&["--delegate", "runc", "--root", root, "list"]);
    assert_eq!(ours.stdout, run("runc", &["--root", root, "list"]).stdout);
}

#[test]
fn a_container_checkpoint_is_refused_in_containerds_log_shape() {
    let scratch = Scratch::new("runc-refuse");
    let log = scratch.join("log.json");
    let log_s = log.to_str().unwrap();
    let out = stasis_runc(&[
        "--root",
        "/run/stasis-test-none",
        "--log",
        log_s,
        "--log-format",
        "json",
        "checkpoint",
        "--image-path",
        "/tmp/x",
        "--work-path",
        "/tmp/w",
        "--leave-running",
        "--leave-running",
        "c1",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    // No such container under that root: runc's own answer, passed on.
    assert!(line["msg"].as_str().unwrap().contains("state c1"), "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    let bad = stasis_runc(&["checkpoint", "--lazy-pagez", "c1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("flag provided but not defined: -lazy-pagez"));
}

/// A busybox bundle whose container counts into /tmp/count of its rootfs.
fn counting_bundle(dir: &std::path::Path) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let spec = run("runc", &["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(
        spec.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&spec.stderr)
    );
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!([
        "/bin/sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; /bin/busybox sleep 0.05; done"
    ]);
    config["root"]["readonly"] = false.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// Deletes the test's container (by id, under its own root) however the test ends.
struct ContainerGuard {
    root: String,
    id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = run("runc", &["--root", &self.root, "delete", "--force", &self.id]);
    }
}

fn count(rootfs: &std::path::Path) -> u64 {
    std::fs::read_to_string(rootfs.join("tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_runc_container_lives_its_life_through_stasis_runc() {
    let scratch = Scratch::new("runc-life");
    let bundle = scratch.join("bundle");
    counting_bundle(&bundle);
    let root = scratch.join("state");
    let root = root.to_str().unwrap().to_owned();
    let id = format!("stasis-test-{}", std::process::id());
    let _guard = ContainerGuard {
        root: root.clone(),
        id: id.clone(),
    };
    let b = bundle.to_str().unwrap();
    let pid_file = scratch.join("init.pid");
    let ok = |args: &[&str]| {
        let out = stasis_runc(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    // The container inherits create's stdio: files, not pipes we would wait on forever.
    let io = |name: &str| Stdio::from(std::fs::File::create(scratch.join(name)).unwrap());
    let created = Command::new(workspace_bin("stasis-runc"))
        .args([
            "--root",
            &root,
            "create",
            "--bundle",
            b,
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(io("out"))
        .stderr(io("err"))
        .status()
        .unwrap();
    let err = std::fs::read_to_string(scratch.join("err")).unwrap_or_default();
    assert!(created.success(), "create: {err}");
    ok(&["--root", &root, "start", &id]);
    let state: serde_json::Value = serde_json::from_slice(&ok(&["--root", &root, "state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(state["pid"], pid, "the pid file and runc agree");
    let start = std::time::Instant::now();
    while count(&bundle.join("rootfs")) < 5 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the container does not count"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ps: Vec<i64> = serde_json::from_slice(&ok(&["--root", &root, "ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&pid), "ps lists the init process: {ps:?}");
    ok(&["--root", &root, "kill", &id, "9"]);
    let start = std::time::Instant::now();
    loop {
        let s: serde_json::Value = serde_json::from_slice(&ok(&["--root", &root, "state", &id]).stdout).unwrap();
        if s["status"] == "stopped" {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "still {s}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&["--root", &root, "delete", &id]);
}
