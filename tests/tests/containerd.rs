//! Containers under containerd 1.6 with `--runc-binary stasis-runc`: `ctr task checkpoint`
//! (leaving it running, and `--exit`), `ctr container checkpoint --task --image --rw` then
//! `ctr container restore --live --rw` — on the same containerd and on a fresh one (a
//! migration on one host). Each containerd is the test's own; the counter lives in the
//! container shell's memory.

use std::path::Path;
use std::time::Duration;

use ctests::container::{assert_counts_on_from, count, wait_count_above};
use ctests::containerd::Containerd;
use ctests::workload::test_dirs;

fn stasis_runc() -> std::path::PathBuf {
    ctests::workspace_bin("stasis-runc")
}

/// The digest of image `name` (its index).
fn image_digest(ctd: &Containerd, name: &str) -> String {
    ctd.ctr_ok(&["image", "ls"])
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&name)).then(|| f[2].to_owned())
        })
        .unwrap_or_else(|| panic!("no image {name}"))
}

/// Unpacks the CRIU-image tar of checkpoint image `name` into `dir`.
fn checkpoint_images(ctd: &Containerd, name: &str, dir: &Path) {
    let index: serde_json::Value =
        serde_json::from_str(&ctd.ctr_ok(&["content", "get", &image_digest(ctd, name)])).unwrap();
    let criu = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mediaType"] == "application/vnd.containerd.container.criu.checkpoint.criu.tar")
        .unwrap_or_else(|| panic!("no CRIU images in {index}"));
    let out = ctd.ctr(&["content", "get", criu["digest"].as_str().unwrap()]);
    assert!(out.status.success());
    std::fs::create_dir_all(dir).unwrap();
    let tar = dir.with_extension("tar");
    std::fs::write(&tar, &out.stdout).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-xf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", String::from_utf8_lossy(&untar.stderr));
}

/// The counter of a restored container at `rootfs`: it starts from the value in the layer it
/// was restored with and goes on from there (a new shell would write 1).
fn assert_counts_on(rootfs: &Path) {
    let from = count(rootfs);
    assert!(from > 5, "the restored rootfs holds {from}");
    assert_counts_on_from(rootfs, from);
}

#[test]
fn ctr_task_checkpoint_leaves_the_task_running_or_ends_it() {
    let (scratch, _, images) = test_dirs("ctd-task");
    let ctd = Containerd::start(&scratch.join("containerd"), "stasis-task");
    ctd.import_busybox();
    ctd.run_counting(&stasis_runc(), "c1");
    let rootfs = ctd.rootfs("c1");
    wait_count_above(&rootfs, 5);
    // containerd pauses the task around the checkpoint; it is resumed and counts on.
    let out = ctd.ctr_ok(&["task", "checkpoint", "c1"]);
    let name = out.lines().last().unwrap().trim().to_owned();
    assert!(name.starts_with("containerd.io/checkpoint/c1:"), "{out}");
    assert_eq!(ctd.task_status("c1"), "RUNNING");
    let now = count(&rootfs);
    wait_count_above(&rootfs, now + 3);
    // The checkpoint holds our images: the tree with its pids inside, the init's stdio.
    checkpoint_images(&ctd, &name, &images);
    assert!(images.join("inventory.img").exists());
    let descriptors: Vec<String> =
        serde_json::from_slice(&std::fs::read(images.join("descriptors.json")).unwrap()).unwrap();
    assert_eq!(descriptors.len(), 3, "{descriptors:?}");
    let pstree = ctests::crit_decode(&images.join("pstree.img"));
    assert_eq!(pstree["entries"][0]["pid"], 1, "{pstree}");

    // --exit: the task ends with the checkpoint.
    ctd.run_counting(&stasis_runc(), "c2");
    let rootfs2 = ctd.rootfs("c2");
    wait_count_above(&rootfs2, 5);
    ctd.ctr_ok(&["task", "checkpoint", "--exit", "c2"]);
    ctd.wait_task("c2", "STOPPED");
    let last = count(&rootfs2);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(count(&rootfs2), last, "the task counts after --exit");
    assert_eq!(ctd.task_status("c1"), "RUNNING", "the other task was disturbed");
}

#[test]
fn ctr_container_restore_goes_on_here_and_on_a_fresh_containerd() {
    let (scratch, _, _) = test_dirs("ctd-restore");
    let ctd = Containerd::start(&scratch.join("containerd"), "stasis-restore");
    ctd.import_busybox();
    ctd.run_counting(&stasis_runc(), "c3");
    wait_count_above(&ctd.rootfs("c3"), 10);
    ctd.ctr_ok(&["container", "checkpoint", "--task", "--image", "--rw", "c3", "ck3"]);
    assert_eq!(ctd.task_status("c3"), "RUNNING");
    // Restored beside the original, under a new id: its own rootfs (with the checkpoint's
    // rw layer) and its counter going on from the checkpoint.
    ctd.ctr_ok(&["container", "restore", "--live", "--rw", "c4", "ck3"]);
    assert_eq!(ctd.task_status("c4"), "RUNNING");
    assert_counts_on(&ctd.rootfs("c4"));
    let pid: i32 = std::fs::read_to_string(ctd.rootfs("c4").with_file_name("init.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let nspid = ctests::workload::status_field(pid, "NSpid").unwrap();
    assert!(nspid.ends_with('1'), "the restored init is pid 1 inside: {nspid}");

    // Migration: the checkpoint image goes to a fresh containerd, the original stops.
    let archive = scratch.join("ck3.tar");
    ctd.ctr_ok(&[
        "image",
        "export",
        "--skip-manifest-json",
        "--all-platforms",
        archive.to_str().unwrap(),
        "ck3",
    ]);
    ctd.remove_all();
    let first_ns = ctd.ns.clone();
    drop(ctd);
    let fresh = Containerd::start(&scratch.join("containerd-2"), "stasis-migrated");
    fresh.import_busybox();
    fresh.ctr_ok(&["image", "import", "--no-unpack", archive.to_str().unwrap()]);
    fresh.ctr_ok(&["container", "restore", "--live", "--rw", "c3", "ck3"]);
    assert_eq!(fresh.task_status("c3"), "RUNNING");
    assert_counts_on(&fresh.rootfs("c3"));
    fresh.ctr_ok(&["task", "kill", "-s", "KILL", "c3"]);
    fresh.wait_task("c3", "STOPPED");
    // containerd 1.6 keeps the original's cgroups path for a restored container: the first
    // namespace's directory holds the migrated one's cgroup until it is gone.
    drop(fresh);
    ctests::workload::remove_cgroup_dirs(&first_ns);
}
