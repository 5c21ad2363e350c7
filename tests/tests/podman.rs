//! Containers under podman 4.3 with `--runtime stasis-runc`: `container checkpoint` (plain,
//! `-R`, `--export`) and `container restore` (plain, `--import`, `--import --name`), the
//! counter in the container shell's memory going on each time; the exported archive read by
//! checkpointctl (go-criu's parser, a second oracle besides crit). podman's own CRIU probe is
//! answered by Debian's criu package (installed for crit), which cannot dump here but answers.

use ctests::container::{assert_counts_on_from, count, wait_count_above};
use ctests::podman::Podman;
use ctests::workload::test_dirs;

#[test]
fn podman_checkpoints_and_restores_through_stasis_runc() {
    let (scratch, _, _) = test_dirs("podman");
    let podman = Podman::new(&scratch.join("podman"));
    podman.import_busybox();
    podman.run_counting("p1");
    let rootfs = podman.rootfs("p1");
    wait_count_above(&rootfs, 10);

    // -R: checkpointed and left running.
    podman.ok(&["container", "checkpoint", "-R", "p1"]);
    assert_eq!(podman.status("p1"), "running");
    let now = count(&rootfs);
    wait_count_above(&rootfs, now + 3);

    // Plain: the container stops with the checkpoint, and comes back where it was.
    podman.ok(&["container", "checkpoint", "p1"]);
    assert_eq!(podman.status("p1"), "exited");
    let dumped = count(&rootfs);
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(count(&rootfs), dumped, "it counts after its checkpoint");
    podman.ok(&["container", "restore", "p1"]);
    assert_eq!(podman.status("p1"), "running");
    assert_counts_on_from(&rootfs, dumped);

    // --export: an archive checkpointctl reads (tree, files, mounts, statistics).
    let archive = scratch.join("p1.tar.gz");
    podman.ok(&["container", "checkpoint", "--export", archive.to_str().unwrap(), "p1"]);
    let exported = count(&rootfs);
    let inspect = std::process::Command::new(ctests::checkpointctl())
        .args(["inspect", "--all"])
        .arg(&archive)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    for wanted in [
        "Process tree",
        "[1]  /bin/sh -c i=0",
        "/bin/busybox sleep",
        "Open files",
        "[cwd]  /",
        "Overview of mounts",
        "Destination: /proc",
        "CRIU dump statistics",
        "Pages written",
    ] {
        assert!(text.contains(wanted), "checkpointctl does not show {wanted:?}:\n{text}");
    }

    // --import: as itself (the original removed), and beside it under another name.
    podman.ok(&["rm", "p1"]);
    podman.ok(&["container", "restore", "--import", archive.to_str().unwrap()]);
    assert_eq!(podman.status("p1"), "running");
    assert_counts_on_from(&podman.rootfs("p1"), exported);
    podman.ok(&[
        "container",
        "restore",
        "--import",
        archive.to_str().unwrap(),
        "--name",
        "p2",
    ]);
    assert_eq!(podman.status("p2"), "running");
    assert_counts_on_from(&podman.rootfs("p2"), exported);
    assert_eq!(podman.status("p1"), "running", "the second restore disturbed the first");
}

#[test]
fn a_container_with_a_terminal_writes_to_its_new_console_after_a_restore() {
    let (scratch, _, _) = test_dirs("podman-tty");
    let podman = Podman::new(&scratch.join("podman"));
    podman.import_busybox();
    let script = ctests::container::COUNTER.replace("echo $i > /tmp/count;", "echo $i > /tmp/count; echo tick $i;");
    podman.ok(&[
        "run",
        "-dt",
        "--network",
        "none",
        "--name",
        "t1",
        "localhost/bb:latest",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let rootfs = podman.rootfs("t1");
    wait_count_above(&rootfs, 5);
    podman.ok(&["container", "checkpoint", "t1"]);
    let dumped = count(&rootfs);
    podman.ok(&["container", "restore", "t1"]);
    assert_counts_on_from(&rootfs, dumped);
    // The shell writes on the console runc made for the restored container: podman's log of
    // it goes on past the checkpoint.
    let log = podman.ok(&["logs", "t1"]);
    let last: u64 = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        last > dumped,
        "the console shows nothing after {dumped}: {}",
        &log[log.len().saturating_sub(200)..]
    );
    for fd in ["0", "1", "2"] {
        let link = podman.ok(&["exec", "t1", "/bin/busybox", "readlink", &format!("/proc/1/fd/{fd}")]);
        assert_eq!(link, "/dev/pts/0", "the restored init's fd {fd} is not the console");
    }
}
