//! `stasis-runc`, the runc-compatible runtime: the command line containerd and podman use, the
//! verbs handed to runc untouched, and checkpoint/restore refusing clearly what this version
//! cannot do yet (containers), in the log shape containerd reads.

use std::process::{Command, Output, Stdio};

use ctests::workload::Scratch;
use ctests::workspace_bin;

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap()
}

fn stasis_runc(args: &[&str]) -> Output {
    run(workspace_bin("stasis-runc").to_str().unwrap(), args)
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
        assert_eq!(ours.stderr, theirs.stderr, "{args:?}");
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
    assert!(line["msg"].as_str().unwrap().contains("not supported yet"), "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    let bad = stasis_runc(&["checkpoint", "--lazy-pagez", "c1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("flag provided but not defined: -lazy-pagez"));
}
