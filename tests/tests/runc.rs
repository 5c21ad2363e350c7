//! Containers through runc: `stasis-runc checkpoint` and `restore` of a busybox container that
//! counts in its shell's memory (`i`) and writes each value to a file of its rootfs. A restored
//! container must go on from the value it had, at its own pids inside, owned by runc as ever.

use std::path::Path;
use std::time::{Duration, Instant};

use ctests::container::{count, ok, wait_count_above, Container};
use ctests::workload::{status_field, test_dirs};

/// The values the counter writes during `ms` milliseconds.
fn sample(rootfs: &Path, ms: u64) -> Vec<u64> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_millis(ms) {
        seen.push(count(rootfs));
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

/// The freezer state of `pid`'s v1 freezer cgroup.
fn freezer_state(pid: i32) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_owned()))
        .unwrap();
    std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
        .unwrap()
        .trim()
        .to_owned()
}

fn restore(c: &Container, images: &Path, work: &Path, pid_file: &Path) -> std::process::ExitStatus {
    restore_with(c, images, work, pid_file, &[])
}

fn restore_with(
    c: &Container,
    images: &Path,
    work: &Path,
    pid_file: &Path,
    extra: &[&str],
) -> std::process::ExitStatus {
    let bin = ctests::workspace_bin("stasis-runc");
    let mut args = vec!["restore"];
    args.extend(extra);
    let cmd = c.cmd(
        bin.to_str().unwrap(),
        &[
            args.as_slice(),
            &[
                "--image-path",
                images.to_str().unwrap(),
                "--work-path",
                work.to_str().unwrap(),
                "--bundle",
                c.bundle.to_str().unwrap(),
                "--detach",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "{}",
            ],
        ]
        .concat(),
    );
    c.run_detached(cmd, work)
}

/// The value of `file` in `pid`'s cgroup of `controller` (v1).
fn cgroup_value(pid: i32, controller: &str, file: &str) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.split_once(&format!(":{controller}:")).map(|(_, p)| p.to_owned()))
        .unwrap();
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn cgroup_settings_changed_while_running_come_back_with_manage_cgroups_mode_full() {
    let (scratch, work, images) = test_dirs("runc-cgroup");
    let c = Container::counting(&scratch.0, "stasis-cgroup");
    let init = c.start(&work);
    wait_count_above(&c.rootfs(), 3);
    ok(
        "runc update",
        c.runc(&["update", "--pids-limit", "77", "--memory", "67108864", "{}"]),
    );
    assert_eq!(cgroup_value(init, "pids", "pids.max"), "77");
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    let settings = ctests::crit_decode(&images.join("cgroup.img")).to_string();
    assert!(
        settings.contains("\"pids.max\"") && settings.contains("\"77\""),
        "{settings}"
    );
    // soft (the default): the cgroups are as the config makes them.
    let pid_file = scratch.join("restored.pid");
    assert!(restore(&c, &images, &work, &pid_file).success());
    assert_eq!(cgroup_value(pid_in(&pid_file), "pids", "pids.max"), "max");
    c.kill_and_delete();
    // full: the settings it had when it was checkpointed.
    assert!(restore_with(&c, &images, &work, &pid_file, &["--manage-cgroups-mode", "full"]).success());
    let pid = pid_in(&pid_file);
    assert_eq!(cgroup_value(pid, "pids", "pids.max"), "77");
    assert_eq!(cgroup_value(pid, "memory", "memory.limit_in_bytes"), "67108864");
    let now = count(&c.rootfs());
    wait_count_above(&c.rootfs(), now + 2);
    c.kill_and_delete();
}

/// Restores, and shows the restore's stderr if it failed.
fn restore_ok(c: &Container, images: &Path, work: &Path, pid_file: &Path) {
    assert!(
        restore(c, images, work, pid_file).success(),
        "restore: {}",
        std::fs::read_to_string(work.join("err")).unwrap_or_default()
    );
}

fn pid_in(file: &Path) -> i32 {
    std::fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

#[test]
fn a_checkpointed_container_is_restored_and_counts_on() {
    let (scratch, work, images) = test_dirs("runc-cr");
    let c = Container::counting(&scratch.0, "stasis-cr");
    let rootfs = c.rootfs();
    c.start(&work);
    let before = wait_count_above(&rootfs, 20);
    let ckpt_work = scratch.join("ckpt-work");
    let img = images.to_str().unwrap();
    ok(
        "checkpoint",
        c.stasis_runc(&[
            "checkpoint",
            "--image-path",
            img,
            "--work-path",
            ckpt_work.to_str().unwrap(),
            "{}",
        ]),
    );
    // Without --leave-running the container is gone: stopped for runc, its counter still.
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    let dumped = count(&rootfs);
    assert!(dumped >= before);
    // runc's files: the init's stdio beside the images, the log and statistics in the work path.
    let descriptors: Vec<String> =
        serde_json::from_slice(&std::fs::read(images.join("descriptors.json")).unwrap()).unwrap();
    assert_eq!(descriptors.len(), 3);
    assert_eq!(descriptors[1], work.join("out").to_str().unwrap(), "{descriptors:?}");
    let log = std::fs::read_to_string(ckpt_work.join("dump.log")).unwrap();
    assert!(
        log.contains("checkpoint of container") && log.contains("2 processes"),
        "{log}"
    );
    assert!(ckpt_work.join("stats-dump").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&images).unwrap().permissions().mode() & 0o777, 0o700);
    // The tree is saved with the pids it saw: its init is pid 1 (crit, the format oracle).
    let pstree = ctests::crit_decode(&images.join("pstree.img"));
    assert_eq!(pstree["entries"][0]["pid"], 1, "{pstree}");
    assert_eq!(pstree["entries"][1]["ppid"], 1, "{pstree}");
    // Its mounts, each one its runtime makes again (external, keyed by its mount point).
    let mnts = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("mountpoints-"))
        .expect("no mountpoints image");
    let mnts = ctests::crit_decode(&mnts.path());
    let points: Vec<&str> = mnts["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountpoint"].as_str().unwrap())
        .collect();
    for p in ["/", "/proc", "/dev", "/dev/shm", "/sys"] {
        assert!(points.contains(&p), "{p} not in {points:?}");
    }
    assert!(mnts["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["ext_mount"] == true));
    assert!(
        sample(&rootfs, 150).iter().all(|&v| v == dumped),
        "something still counts"
    );

    let pid_file = scratch.join("restored.pid");
    let restored = restore(&c, &images, &work, &pid_file);
    assert!(
        restored.success(),
        "restore: {}",
        std::fs::read_to_string(work.join("err")).unwrap_or_default()
    );
    let pid = pid_in(&pid_file);
    let state = c.state();
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"], pid, "runc's init is the pid we wrote");
    // runc's files in the work path: the log, and CRIU's restore statistics (crit reads them).
    assert!(std::fs::read_to_string(work.join("restore.log"))
        .unwrap()
        .contains("restore of container"));
    let stats = ctests::crit_decode(&work.join("stats-restore"));
    assert!(
        stats["entries"][0]["restore"]["restore_time"].as_u64().unwrap() > 0,
        "{stats}"
    );
    let nspid = status_field(pid, "NSpid").unwrap();
    assert!(
        nspid.ends_with("\t1") || nspid.ends_with(" 1"),
        "the init is pid 1 inside: {nspid}"
    );
    // It goes on from the value in its memory: never below it (a new shell would start at 1).
    let seen = sample(&rootfs, 300);
    assert!(seen.iter().all(|&v| v >= dumped), "{dumped} then {seen:?}");
    wait_count_above(&rootfs, dumped + 3);
    let ps: Vec<i64> = serde_json::from_slice(&ok("runc ps", c.runc(&["ps", "--format", "json", "{}"]))).unwrap();
    assert!(ps.contains(&i64::from(pid)), "{ps:?}");

    // The restored container checkpoints again (leaving it running) and goes on.
    let again = scratch.join("again");
    ok(
        "second checkpoint",
        c.stasis_runc(&[
            "checkpoint",
            "--image-path",
            again.to_str().unwrap(),
            "--leave-running",
            "{}",
        ]),
    );
    assert_eq!(c.state()["status"], "running");
    let now = count(&rootfs);
    wait_count_above(&rootfs, now + 3);
    // runc still owns it: kill and delete as usual.
    c.kill_and_delete();
    assert!(!c.exists());
}

#[test]
fn a_leave_running_checkpoint_restores_the_moment_it_was_taken() {
    let (scratch, work, images) = test_dirs("runc-leave");
    let c = Container::counting(&scratch.0, "stasis-leave");
    let rootfs = c.rootfs();
    let init = c.start(&work);
    let before = wait_count_above(&rootfs, 10);
    ok(
        "checkpoint --leave-running",
        c.stasis_runc(&[
            "checkpoint",
            "--image-path",
            images.to_str().unwrap(),
            "--leave-running",
            "{}",
        ]),
    );
    // Left running, thawed and untraced; it counts on.
    assert_eq!(c.state()["status"], "running");
    assert_eq!(freezer_state(init), "THAWED");
    assert_eq!(status_field(init, "TracerPid").as_deref(), Some("0"));
    let after = count(&rootfs);
    let last = wait_count_above(&rootfs, after + 20);
    c.kill_and_delete();
    let last = count(&rootfs).max(last);

    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    // Its first value is the checkpoint's next one: well below where the original got to.
    let first = wait_next(&rootfs, last);
    assert!(
        first > before && first < last,
        "checkpoint at {before}..{after}, original reached {last}, restored wrote {first}"
    );
    assert_eq!(c.state()["pid"], pid_in(&pid_file));
    c.kill_and_delete();
}

/// The first value written that differs from `v`.
fn wait_next(rootfs: &Path, v: u64) -> u64 {
    let start = Instant::now();
    loop {
        let c = count(rootfs);
        if c != v {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the counter stays at {v}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn refused_and_failed_checkpoints_and_restores_leave_things_as_they_were() {
    let (scratch, work, images) = test_dirs("runc-fail");
    let c = Container::counting(&scratch.0, "stasis-fail");
    let rootfs = c.rootfs();
    let init = c.start(&work);
    wait_count_above(&rootfs, 3);
    // A FIFO in the container's /dev/shm: its tmpfs is saved while the tree is frozen, and a
    // FIFO cannot be. The dump fails there, and lets the container go, thawed and untraced.
    ok(
        "runc exec",
        c.runc(&["exec", "{}", "/bin/busybox", "mkfifo", "/dev/shm/fifo"]),
    );
    let out = c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains(&format!("pid {init}")) && why.contains("/dev/shm") && why.contains("fifo"),
        "{why}"
    );
    assert!(!images.join("inventory.img").exists());
    assert_still_running(&c, init);
    ok(
        "runc exec",
        c.runc(&["exec", "{}", "/bin/busybox", "rm", "/dev/shm/fifo"]),
    );

    // A file there is saved and comes back.
    ok(
        "runc exec",
        c.runc(&["exec", "{}", "/bin/sh", "-c", "echo kept > /dev/shm/note"]),
    );
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    let dumped = count(&rootfs);
    // The container's stdout was a file of the host: without its descriptor the restore
    // cannot find it inside the container, fails after runc created the container, and
    // deletes it again.
    let descriptors = images.join("descriptors.json");
    let saved = std::fs::read(&descriptors).unwrap();
    std::fs::write(&descriptors, b"[\"\", \"\", \"\"]").unwrap();
    let pid_file = scratch.join("restored.pid");
    assert!(!restore(&c, &images, &work, &pid_file).success());
    let err = std::fs::read_to_string(work.join("err")).unwrap();
    assert!(err.contains("reopening") && err.contains("deleted again"), "{err}");
    assert!(!c.exists(), "the failed restore left the container behind");
    assert!(
        !c.bundle.join(format!(".stasis-restore-{}", c.id)).exists(),
        "the shadow bundle stayed"
    );
    assert!(!pid_file.exists());
    assert!(sample(&rootfs, 150).iter().all(|&v| v == dumped), "something counts");
    // The images are untouched: with the descriptors back, the restore works.
    std::fs::write(&descriptors, saved).unwrap();
    assert!(restore(&c, &images, &work, &pid_file).success());
    wait_count_above(&rootfs, dumped + 2);
    let note = ok(
        "runc exec",
        c.runc(&["exec", "{}", "/bin/busybox", "cat", "/dev/shm/note"]),
    );
    assert_eq!(note, b"kept\n");

    // A process in the container but not below its init (`runc exec -d` leaves it to us, the
    // subreaper): the dump would lose it, so it is refused before anything is frozen.
    let init = pid_in(&pid_file);
    let nc = c.cmd("runc", &["exec", "-d", "{}", "/bin/busybox", "nc", "-l", "-p", "5555"]);
    assert!(c.run_detached(nc, &work).success());
    let refused = c.stasis_runc(&[
        "checkpoint",
        "--image-path",
        scratch.join("img3").to_str().unwrap(),
        "{}",
    ]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        // (Named busybox, or runc's init just before its exec: `exec -d` returns early.)
        why.contains("not a descendant") && why.contains("left as it was"),
        "{why}"
    );
    assert_still_running(&c, init);
    c.kill_and_delete();
}

/// The container is running, its cgroup thawed, its init untraced, and it counts on.
fn assert_still_running(c: &Container, init: i32) {
    assert_eq!(c.state()["status"], "running");
    assert_eq!(freezer_state(init), "THAWED");
    assert_eq!(status_field(init, "TracerPid").as_deref(), Some("0"));
    let now = count(&c.rootfs());
    wait_count_above(&c.rootfs(), now + 2);
}

#[test]
fn ipc_objects_sockets_and_files_of_a_container_come_back_inside_it() {
    let (scratch, work, images) = test_dirs("runc-sysv");
    let sysv = ctests::workload::sysv_bin();
    let c = Container::running(&scratch.0, "stasis-sysv", &sysv, &["run"]);
    let name = format!("/bin/{}", sysv.file_name().unwrap().to_str().unwrap());
    let rootfs = c.rootfs();
    c.start(&work);
    wait_count_above(&rootfs, 5);
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    // The segment, the semaphore set and the queue with its two messages, as crit reads them.
    let image = |prefix: &str| {
        let e = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} image"));
        ctests::crit_decode(&e.path())
    };
    let shm = image("ipcns-shm-");
    assert_eq!(shm["entries"][0]["desc"]["key"], 0x5354);
    assert_eq!(shm["entries"][0]["size"], 65536);
    assert_eq!(image("ipcns-sem-")["entries"][0]["nsems"], 3);
    let msg = image("ipcns-msg-");
    assert_eq!(msg["entries"][0]["qnum"], 2, "{msg}");
    let dumped = count(&rootfs);

    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    ctests::container::assert_counts_on_from(&rootfs, dumped);
    // Inside the new container: same ids for the same keys, the pattern and the count in the
    // segment the restored process still holds, the semaphores, both messages in order.
    let check = c.runc(&["exec", "{}", &name, "check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && said.starts_with("OK"), "{said}");
    // Its sockets (made again in the container's network namespace, the listener's name in
    // its filesystem) hold what was queued, and the listener takes new connections; its
    // unlinked file, FIFO, inotify watch and pty are back, made inside the container.
    ok("runc kill USR1", c.runc(&["kill", "{}", "USR1"]));
    ctests::workload::wait_for_file(&rootfs.join("tmp/socket"), std::time::Duration::from_secs(10));
    let start = Instant::now();
    while std::fs::read_to_string(rootfs.join("tmp/socket"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/socket")).unwrap(),
        "OK ping pong listen ghost fifo inotify pty\n"
    );
    c.kill_and_delete();
}

#[test]
fn a_tmpfs_the_container_mounted_itself_is_mounted_again_with_its_files() {
    let (scratch, work, images) = test_dirs("runc-mount");
    let c = Container::counting(&scratch.0, "stasis-mount");
    c.add_cap("CAP_SYS_ADMIN");
    for d in ["mnt/x", "mnt/b"] {
        std::fs::create_dir_all(c.rootfs().join(d)).unwrap();
    }
    let init = c.start(&work);
    wait_count_above(&c.rootfs(), 3);
    let sh = |script: &str| {
        ok(
            script,
            c.runc(&["exec", "--cap", "CAP_SYS_ADMIN", "{}", "/bin/sh", "-c", script]),
        )
    };
    // A bind mount made inside cannot be made again: refused, before anything is frozen.
    sh("/bin/busybox mount --bind /bin /mnt/b");
    let out = c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("/mnt/b") && why.contains("only tmpfs"),
        "{why}"
    );
    assert_eq!(freezer_state(init), "THAWED");
    sh("/bin/busybox umount /mnt/b");
    // A tmpfs made inside is: with its options and its files.
    sh("/bin/busybox mount -t tmpfs -o size=1m,mode=750 tmpfs /mnt/x && echo kept > /mnt/x/f");
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    let dumped = count(&c.rootfs());
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    ctests::container::assert_counts_on_from(&c.rootfs(), dumped);
    let mounts = String::from_utf8(sh("/bin/busybox grep ' /mnt/x ' /proc/mounts")).unwrap();
    assert!(
        mounts.starts_with("tmpfs /mnt/x tmpfs") && mounts.contains("size=1024k") && mounts.contains("mode=750"),
        "{mounts}"
    );
    assert_eq!(sh("/bin/busybox cat /mnt/x/f"), b"kept\n");
    c.kill_and_delete();
}

#[test]
fn the_loopback_comes_back_as_the_container_left_it() {
    let (scratch, work, images) = test_dirs("runc-net");
    let c = Container::counting(&scratch.0, "stasis-net");
    c.add_cap("CAP_NET_ADMIN");
    let init = c.start(&work);
    wait_count_above(&c.rootfs(), 3);
    let ip = |args: &[&str]| {
        let mut argv = vec!["exec", "--cap", "CAP_NET_ADMIN", "{}", "/bin/busybox", "ip"];
        argv.extend(args);
        String::from_utf8(ok(&format!("ip {args:?}"), c.runc(&argv))).unwrap()
    };
    // An address of its own on the loopback is saved too (ifaddr-N.img).
    ip(&["addr", "add", "10.9.9.9/32", "dev", "lo"]);
    assert_eq!(freezer_state(init), "THAWED");
    // Down, with another MTU: so it is after the restore (runc makes it up, MTU 65536).
    ip(&["link", "set", "lo", "down", "mtu", "1500"]);
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    let pid_file = scratch.join("restored.pid");
    assert!(restore(&c, &images, &work, &pid_file).success());
    let lo = ip(&["link", "show", "lo"]);
    assert!(lo.contains("<LOOPBACK>") && lo.contains("mtu 1500"), "{lo}");
    let addrs = ip(&["addr", "show", "lo"]);
    assert!(addrs.contains("10.9.9.9/32"), "{addrs}");
    c.kill_and_delete();
}

#[test]
fn a_container_in_a_user_namespace_comes_back_with_its_ids() {
    let (scratch, work, images) = test_dirs("runc-userns");
    let c = Container::counting(&scratch.0, "stasis-userns");
    c.in_user_namespace(100_000);
    let init = c.start(&work);
    assert_eq!(
        status_field(init, "Uid").unwrap().split_whitespace().next(),
        Some("100000")
    );
    wait_count_above(&c.rootfs(), 5);
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    // As runc does, the checkpointed container is gone.
    c.wait_gone();
    // Saved with the ids it has inside (crit's view of the core image).
    let core = ctests::crit_decode(&images.join("core-1.img"));
    assert_eq!(core["entries"][0]["thread_core"]["creds"]["uid"], 0, "{core}");
    let dumped = count(&c.rootfs());
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    ctests::container::assert_counts_on_from(&c.rootfs(), dumped);
    // Root inside, 100000 here; pid 1 inside.
    let pid = pid_in(&pid_file);
    assert_eq!(
        status_field(pid, "Uid").unwrap().split_whitespace().next(),
        Some("100000")
    );
    assert_eq!(ok("id", c.runc(&["exec", "{}", "/bin/busybox", "id", "-u"])), b"0\n");
    assert!(status_field(pid, "NSpid").unwrap().ends_with('1'));
    c.kill_and_delete();
}

#[test]
fn a_container_checkpointed_by_runc_with_criu_is_restored_by_stasis_runc() {
    let (scratch, work, images) = test_dirs("runc-from-criu");
    let criu = ctests::reference_criu("4.1");
    let c = Container::counting(&scratch.0, "stasis-from-criu");
    c.start_quiet(&work);
    wait_count_above(&c.rootfs(), 5);
    // CRIU 4.1.1 behind runc writes the images (its mount tree, its /dev and /dev/shm
    // archives, its namespaces)...
    let criu_work = scratch.join("criu-work");
    ok(
        "runc --criu checkpoint",
        c.runc(&[
            "--criu",
            criu.to_str().unwrap(),
            "checkpoint",
            "--image-path",
            images.to_str().unwrap(),
            "--work-path",
            criu_work.to_str().unwrap(),
            "{}",
        ]),
    );
    // (runc removes a container it checkpointed with CRIU.)
    assert!(!c.exists());
    let dumped = count(&c.rootfs());
    // ...and stasis-runc restores them: runc makes the container, the tree goes on.
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    ctests::container::assert_counts_on_from(&c.rootfs(), dumped);
    assert_eq!(c.state()["pid"], pid_in(&pid_file));
    c.kill_and_delete();
}

/// The inside pid, group and session (NSpid, NSpgid, NSsid) of the container's process whose
/// parent is `init` (our pid for it) and whose command line holds `mark`; with its our pid.
fn inside_ids(init: i32, mark: &str) -> (i32, [String; 3]) {
    let start = Instant::now();
    loop {
        for pid in std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if status_field(pid, "PPid").as_deref() == Some(&init.to_string())
                && String::from_utf8_lossy(&cmdline).contains(mark)
            {
                let last = |f: &str| {
                    status_field(pid, f)
                        .and_then(|v| v.split_whitespace().last().map(str::to_owned))
                        .unwrap_or_default()
                };
                return (pid, [last("NSpid"), last("NSpgid"), last("NSsid")]);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no child of {init} runs {mark}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon that forked twice inside the container: `setsid sh -c 'LOOP &'` leaves LOOP in a
/// session and group whose leader is gone, adopted by the container's init. After checkpoint
/// and restore it is the init's child again, in the same session and group (inside pids), and
/// counts on from its own value.
#[test]
fn a_daemon_whose_session_leader_is_gone_comes_back_inside_its_container() {
    let (scratch, work, images) = test_dirs("runc-daemon");
    let c = Container::counting(&scratch.0, "stasis-daemon");
    let path = c.bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let daemon = "j=0; while true; do j=$((j+1)); echo $j > /tmp/daemon; /bin/busybox sleep 0.05; done";
    let init_script = format!(
        "/bin/busybox setsid /bin/sh -c '{daemon} &'; {}",
        ctests::container::COUNTER
    );
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", init_script]);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let rootfs = c.rootfs();
    let daemon_count = || {
        std::fs::read_to_string(rootfs.join("tmp/daemon"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let init = c.start(&work);
    wait_count_above(&rootfs, 3);
    let (_, ids) = inside_ids(init, "/tmp/daemon");
    assert_ne!(ids[2], ids[0], "the daemon leads no session: {ids:?}");
    assert_ne!(ids[2], "1", "the daemon is in the init's session: {ids:?}");
    ok(
        "checkpoint",
        c.stasis_runc(&["checkpoint", "--image-path", images.to_str().unwrap(), "{}"]),
    );
    c.wait_gone();
    let dumped = daemon_count();
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    let (_, after) = inside_ids(pid_in(&pid_file), "/tmp/daemon");
    assert_eq!(after, ids, "the daemon's pid, group and session inside");
    let start = Instant::now();
    while daemon_count() < dumped + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon stays at {}",
            daemon_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill_and_delete();
}

/// A counting container whose shell first runs `setup`, and whose `org.criu.config`
/// annotation names the CRIU config file returned (empty for now).
fn with_criu_config(scratch: &Path, id: &str, setup: &str) -> (Container, std::path::PathBuf) {
    let c = Container::counting(scratch, id);
    let conf = scratch.join("runc.conf");
    std::fs::write(&conf, "").unwrap();
    let path = c.bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let init_script = format!("{setup}; {}", ctests::container::COUNTER);
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", init_script]);
    config["annotations"] = serde_json::json!({"org.criu.config": conf.to_str().unwrap()});
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    (c, conf)
}

/// CRIU's config file for runc, named by the container's `org.criu.config` annotation: its
/// options apply to stasis-runc's checkpoint. The container's shell holds a 2 MiB unlinked
/// file: refused under CRIU's 1 MiB ghost limit (the checkpoint names --ghost-limit), refused
/// by name when the file asks for what is not done (lazy-pages), saved with `ghost-limit 4M`
/// there; the restored container still holds the whole file.
#[test]
fn criu_options_from_the_runc_config_file_apply() {
    let (scratch, work, images) = test_dirs("runc-criu-conf");
    let (c, conf) = with_criu_config(
        &scratch.0,
        "stasis-conf",
        "/bin/busybox dd if=/dev/zero of=/tmp/big bs=1048576 count=2 2>/dev/null; exec 3</tmp/big; /bin/busybox rm /tmp/big",
    );
    let init = c.start(&work);
    wait_count_above(&c.rootfs(), 3);
    let img = images.to_str().unwrap();
    for (text, expect) in [("# nothing\n", "--ghost-limit"), ("lazy-pages\n", "lazy-pages")] {
        std::fs::write(&conf, text).unwrap();
        let out = c.stasis_runc(&["checkpoint", "--image-path", img, "{}"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{text:?}: {err}");
        assert_still_running(&c, init);
    }
    std::fs::write(&conf, "ghost-limit 4M\n").unwrap();
    ok("checkpoint", c.stasis_runc(&["checkpoint", "--image-path", img, "{}"]));
    c.wait_gone();
    let dumped = count(&c.rootfs());
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    ctests::container::assert_counts_on_from(&c.rootfs(), dumped);
    let size = ok(
        "stat",
        c.runc(&["exec", "{}", "/bin/busybox", "stat", "-L", "-c", "%s", "/proc/1/fd/3"]),
    );
    assert_eq!(String::from_utf8_lossy(&size).trim(), "2097152");
    c.kill_and_delete();
}

/// `link-remap` in the container's CRIU config: the container's shell holds a file unlinked
/// from one name but linked at another; the checkpoint refuses it without the option (naming
/// it), links it back inside the container with it (link_remap.N beside it), and the restored
/// shell holds that same file again (the other name's inode), the link gone.
#[test]
fn link_remap_works_inside_a_container() {
    let (scratch, work, images) = test_dirs("runc-link-remap");
    let (c, conf) = with_criu_config(
        &scratch.0,
        "stasis-linkremap",
        "echo x > /tmp/a; /bin/busybox ln /tmp/a /tmp/b; exec 4>>/tmp/a; /bin/busybox rm /tmp/a",
    );
    let init = c.start(&work);
    wait_count_above(&c.rootfs(), 3);
    let img = images.to_str().unwrap();
    let out = c.stasis_runc(&["checkpoint", "--image-path", img, "{}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--link-remap"), "{err}");
    assert_still_running(&c, init);
    std::fs::write(&conf, "link-remap\n").unwrap();
    ok("checkpoint", c.stasis_runc(&["checkpoint", "--image-path", img, "{}"]));
    c.wait_gone();
    assert!(
        c.rootfs().join("tmp/link_remap.1").exists(),
        "no link made in the container"
    );
    let pid_file = scratch.join("restored.pid");
    restore_ok(&c, &images, &work, &pid_file);
    let inode = |args: &[&str]| {
        let mut argv = vec!["exec", "{}", "/bin/busybox", "stat"];
        argv.extend(args);
        String::from_utf8(ok("stat", c.runc(&argv))).unwrap().trim().to_owned()
    };
    assert_eq!(
        inode(&["-L", "-c", "%i", "/proc/1/fd/4"]),
        inode(&["-c", "%i", "/tmp/b"])
    );
    assert!(!c.rootfs().join("tmp/link_remap.1").exists(), "the link is left");
    c.kill_and_delete();
}
