//! `stasis dump` and `stasis restore` on real processes (root, real ptrace): the workload
//! proves by itself that it continued intact; failures leave it running, untraced.

use std::process::{Command, Stdio};
use std::time::Duration;

use ctests::workload::{
    assert_running_untraced, stasis, stasis_ok, status_field, test_dirs, wait_for_file, Scratch, Workload,
};
use ctests::{crit_decode, files_of, workspace_bin};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `stasis ARGS` (a dump of `pid`) and returns once it has attached to `pid`.
fn dump_in_background(pid: i32, args: &[&str]) -> std::process::Child {
    let child = Command::new(workspace_bin("stasis"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while status_field(pid, "TracerPid").as_deref().unwrap_or("0") == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the dump never attached to pid {pid}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    child
}

/// Restores `images` detached and has the workload verify itself; returns its result line.
fn restore_and_verify(w: &Workload, images: &std::path::Path) -> String {
    stasis_ok(&["restore", "-D", s(images), "--detach"]);
    finish_verify(w)
}

/// Sends SIGUSR1 to the restored workload, reaps it, and returns what it wrote to `result`.
fn finish_verify(w: &Workload) -> String {
    w.signal(libc::SIGUSR1);
    // The result comes first: a process that missed the signal fails here instead of hanging.
    wait_for_file(&w.dir.join("result"), Duration::from_secs(20));
    let status = checkpoint_core::sys::wait_exit(w.pid).unwrap();
    let result = std::fs::read_to_string(w.dir.join("result")).unwrap();
    assert!(
        libc::WIFEXITED(status),
        "restored workload died: status {status:#x}, result {result}"
    );
    result
}

fn dump_kill_restore(name: &str, extra_dump: &[&str]) -> (Scratch, Workload) {
    let (scratch, work, images) = test_dirs(name);
    let mut w = Workload::start("verify", &work, None);
    let mut args = vec!["dump", "-t", &w.pid.to_string()]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.extend(["-D".into(), s(&images).into()]);
    args.extend(extra_dump.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stasis_ok(&args);
    let st = w.reap_original();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "the dump kills the task"
    );
    let pidfile = scratch.join("pid");
    stasis_ok(&["restore", "-D", s(&images), "--detach", "--pid-file", s(&pidfile)]);
    let restored: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(restored, w.pid, "restored at the dumped pid");
    assert_running_untraced(restored);
    (scratch, w)
}

#[test]
fn a_dumped_killed_and_restored_process_continues_with_everything_intact() {
    let (_scratch, w) = dump_kill_restore("full", &[]);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
    let spins: u64 = result.trim().strip_prefix("OK spins=").unwrap().parse().unwrap();
    assert!(spins > 0, "the counter kept counting");
}

#[test]
fn every_image_we_write_decodes_with_crit_and_shows() {
    let (_scratch, work, images) = test_dirs("crit");
    let w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images), "--leave-running"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&images).unwrap().permissions().mode() & 0o777, 0o700);
    let mut decoded = 0;
    for f in files_of(&images) {
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
        if f.file_name().unwrap().to_str().unwrap().starts_with("pages-") {
            continue;
        }
        let v = crit_decode(&f);
        assert!(
            v["entries"].as_array().is_some_and(|e| !e.is_empty()),
            "{}",
            f.display()
        );
        decoded += 1;
    }
    assert!(decoded >= 10, "only {decoded} images");
    let ps = ctests::crit(&["x", s(&images), "ps"]);
    assert!(
        ps.contains(&w.pid.to_string()) && ps.contains("stasis-test-wor"),
        "{ps}"
    );
    let out = stasis(&["show", s(&images)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/null") && text.contains("work/input") && text.contains("work/log"),
        "{text}"
    );
}

#[test]
fn leave_running_keeps_the_process_free_and_the_images_restore_after_it_is_killed() {
    let (_scratch, work, images) = test_dirs("leave");
    let mut w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images), "--leave-running"]);
    assert_running_untraced(w.pid);
    std::thread::sleep(Duration::from_millis(50));
    assert_running_untraced(w.pid);
    w.signal(libc::SIGKILL);
    w.reap_original();
    let result = restore_and_verify(&w, &images);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn restore_without_detach_waits_and_exits_as_the_process_did() {
    let (scratch, work, images) = test_dirs("wait");
    let mut w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.reap_original();
    let pidfile = scratch.join("pid");
    let mut restore = Command::new(workspace_bin("stasis"))
        .args(["restore", "-D", s(&images), "--pid-file", s(&pidfile)])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The pid file is written once the process runs on its own.
    wait_for_file(&pidfile, Duration::from_secs(20));
    assert_running_untraced(w.pid);
    assert!(
        restore.try_wait().unwrap().is_none(),
        "stasis restore returned before the process exited"
    );
    w.signal(libc::SIGUSR1);
    let st = restore.wait().unwrap();
    assert_eq!(st.code(), Some(0), "stasis restore exits with the process's code");
    let result = std::fs::read_to_string(work.join("result")).unwrap();
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn a_dump_that_fails_on_a_full_filesystem_leaves_the_process_running() {
    let (scratch, work, _) = test_dirs("full-fs");
    let tiny = scratch.join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs", s(&tiny)])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let w = Workload::start("verify", &work, None);
    let out = stasis(&["dump", "-t", &w.pid.to_string(), "-D", s(&tiny.join("images"))]);
    let umount = Command::new("umount").arg(&tiny).status().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dump into 256 KiB succeeded?");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(umount.success());
    assert_running_untraced(w.pid);
    let result = finish_verify(&w);
    assert!(
        result.starts_with("OK"),
        "after a failed dump the process is intact: {result}"
    );
}

#[test]
fn a_second_dump_of_a_process_being_dumped_is_refused_and_the_first_succeeds() {
    let (scratch, work, _) = test_dirs("twice");
    let w = Workload::start("hold", &work, Some(768));
    let first = dump_in_background(
        w.pid,
        &[
            "dump",
            "-t",
            &w.pid.to_string(),
            "-D",
            s(&scratch.join("a")),
            "--leave-running",
        ],
    );
    let second = stasis(&["dump", "-t", &w.pid.to_string(), "-D", s(&scratch.join("b"))]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains(&format!("pid {}: already traced by pid", w.pid)), "{err}");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_running_untraced(w.pid);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn a_target_that_dies_during_the_dump_fails_it_with_the_cause() {
    let (_scratch, work, images) = test_dirs("dies");
    let mut w = Workload::start("hold", &work, Some(1024));
    let dump = dump_in_background(w.pid, &["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.signal(libc::SIGKILL);
    let out = dump.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dump of a killed process succeeded: {err}");
    assert!(err.contains(&format!("pid {}", w.pid)), "{err}");
    assert!(
        !images.join("inventory.img").exists(),
        "an incomplete dump must not look complete"
    );
    w.reap_original();
}

#[test]
fn a_restore_whose_pid_is_taken_fails_and_leaves_nothing() {
    let (_scratch, work, images) = test_dirs("taken");
    let w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images), "--leave-running"]);
    let before = children_of_us();
    let out = stasis(&["restore", "-D", s(&images), "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("pid {} is already in use", w.pid)), "{err}");
    assert_eq!(children_of_us(), before, "a failed restore left a process behind");
    assert_running_untraced(w.pid);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn a_restore_from_damaged_images_fails_and_leaves_nothing() {
    let (_scratch, work, images) = test_dirs("damaged");
    let mut w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.reap_original();
    let mm = images.join(format!("mm-{}.img", w.pid));
    let bytes = std::fs::read(&mm).unwrap();
    std::fs::write(&mm, &bytes[..bytes.len() / 2]).unwrap();
    let out = stasis(&["restore", "-D", s(&images), "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("mm-{}.img", w.pid)) && err.contains("truncated"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", w.pid)).exists(),
        "a process was left at the pid"
    );
    // A pages image shorter than the pagemap says is refused before anything is created too.
    std::fs::write(&mm, &bytes).unwrap();
    let pages = images.join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let out = stasis(&["restore", "-D", s(&images), "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pages-1.img"), "{err}");
    assert!(!std::path::Path::new(&format!("/proc/{}", w.pid)).exists());
}

fn children_of_us() -> String {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default()
}

#[test]
fn a_pipe_of_the_caller_is_refused_by_name_unless_inherited_then_the_process_continues() {
    let (_scratch, work, images) = test_dirs("pipe");
    let (_reader, writer) = std::io::pipe().unwrap();
    let mut w = Workload::start_with("verify", &work, None, [Stdio::null(), writer.into(), Stdio::null()]);
    let key = std::fs::read_link(format!("/proc/{}/fd/1", w.pid))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(key.starts_with("pipe:["), "{key}");
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.reap_original();
    let out = stasis(&["restore", "-D", s(&images), "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("fd 1 was {key}")) && err.contains("--inherit-fd"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", w.pid)).exists(),
        "a process was left behind"
    );
    let (_new_reader, new_writer) = std::io::pipe().unwrap();
    let new_key = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&new_writer)
    ))
    .unwrap();
    let out = Command::new(workspace_bin("stasis"))
        .args([
            "restore",
            "-D",
            s(&images),
            "--detach",
            "--inherit-fd",
            &format!("fd[1]:{key}"),
        ])
        .stdin(Stdio::null())
        .stdout(new_writer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_link(format!("/proc/{}/fd/1", w.pid)).unwrap(), new_key);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn a_terminal_needs_shell_job_on_dump_and_restore() {
    let (_scratch, work, images) = test_dirs("tty");
    let (_master, slave) = checkpoint_core::sys::open_pty().unwrap();
    let tty = || -> Stdio {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave)
            .unwrap()
            .into()
    };
    let mut w = Workload::start_with("verify", &work, None, [tty(), tty(), tty()]);
    let out = stasis(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fd 0 is a terminal") && err.contains("--shell-job"),
        "{err}"
    );
    assert_running_untraced(w.pid);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images), "--shell-job"]);
    w.reap_original();
    let out = stasis(&["restore", "-D", s(&images), "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("fd 0 was {}", slave.display())) && err.contains("--shell-job"),
        "{err}"
    );
    let out = Command::new(workspace_bin("stasis"))
        .args(["restore", "-D", s(&images), "--detach", "--shell-job"])
        .stdin(tty())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_link(format!("/proc/{}/fd/2", w.pid)).unwrap(), slave);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn check_reports_every_feature_and_what_restore_needs_is_there() {
    let out = stasis(&["check"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "pidfd_getfd",
        "clone3 set_tid",
        "PTRACE_GET_RSEQ_CONFIGURATION",
        "PAGEMAP_SCAN",
        "userfaultfd WP async",
        "cgroup v1 freezer",
        "cgroup v2 freezer",
        "PR_TIMER_CREATE_RESTORE_IDS",
        "soft-dirty",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.contains(" ok") || line.contains("missing ("), "{line}");
    }
    for needed in ["pidfd_getfd", "clone3 set_tid", "PTRACE_GET_RSEQ_CONFIGURATION"] {
        assert!(
            text.lines().any(|l| l.starts_with(needed) && l.ends_with(" ok")),
            "{needed}:\n{text}"
        );
    }
}

fn criu() -> std::path::PathBuf {
    ctests::reference_criu("4.1")
}

#[test]
fn criu_restores_what_stasis_dumped() {
    let (_scratch, work, images) = test_dirs("to-criu");
    let mut w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.reap_original();
    let out = Command::new(criu())
        .args(["restore", "-D", s(&images), "--shell-job", "-d", "-o", "restore.log"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "CRIU could not restore our images:\n{}",
        log.lines()
            .filter(|l| l.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_running_untraced(w.pid);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn stasis_restores_what_criu_dumped() {
    let (_scratch, work, images) = test_dirs("from-criu");
    std::fs::create_dir(&images).unwrap();
    let mut w = Workload::start("verify", &work, None);
    let out = Command::new(criu())
        .args([
            "dump",
            "-t",
            &w.pid.to_string(),
            "-D",
            s(&images),
            "--shell-job",
            "-o",
            "dump.log",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CRIU dump failed: {}",
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default()
    );
    w.reap_original();
    stasis_ok(&["restore", "-D", s(&images), "--shell-job", "--detach"]);
    assert_running_untraced(w.pid);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

/// A process dumped inside pause() and signalled right after its restore must see the signal:
/// the restored pause() returns EINTR rather than being re-entered after the handler ran.
#[test]
fn a_signal_right_after_restore_wakes_a_process_that_was_in_pause() {
    for round in 0..3 {
        let (_scratch, work, images) = test_dirs(&format!("pause{round}"));
        let mut w = Workload::start("hold", &work, Some(4));
        std::thread::sleep(Duration::from_millis(20)); // let it reach pause()
        stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
        w.reap_original();
        stasis_ok(&["restore", "-D", s(&images), "--detach"]);
        w.signal(libc::SIGUSR1);
        let start = std::time::Instant::now();
        while !work.join("result").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "round {round}: the wake-up was lost"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = checkpoint_core::sys::wait_exit(w.pid);
        let result = std::fs::read_to_string(work.join("result")).unwrap();
        assert!(result.starts_with("OK"), "{result}");
    }
}

/// On tmpfs the pages image is filled through a shared mapping (elsewhere with write(2)): that
/// path too must give images that restore intact.
#[test]
fn images_on_tmpfs_restore_intact() {
    let (_scratch, work, _) = test_dirs("tmpfs-images");
    let images = Scratch(std::path::PathBuf::from(format!(
        "/dev/shm/stasis-images-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&images.0);
    let mut w = Workload::start("verify", &work, None);
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images.0)]);
    w.reap_original();
    stasis_ok(&["restore", "-D", s(&images.0), "--detach"]);
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

/// Ctrl-C during a dump waits for the dump to let the task go: it is never left with a patched
/// instruction or stopped.
#[test]
fn an_interrupted_dump_still_lets_the_process_go_intact() {
    let (scratch, work, images) = test_dirs("sigint");
    let w = Workload::start("hold", &work, Some(768));
    let dump = dump_in_background(
        w.pid,
        &["dump", "-t", &w.pid.to_string(), "-D", s(&images), "--leave-running"],
    );
    checkpoint_core::sys::send_signal(dump.id() as i32, libc::SIGINT).unwrap();
    let out = dump.wait_with_output().unwrap();
    assert!(!out.status.success(), "SIGINT is still honoured, once the task is free");
    assert_running_untraced(w.pid);
    assert!(
        images.join("inventory.img").exists(),
        "the dump completed before stopping"
    );
    let result = finish_verify(&w);
    assert!(result.starts_with("OK"), "{result}");
    drop(scratch);
}

/// Dumps the `threads` workload with `dumper` and restores it with `restorer` ("stasis" or
/// "criu"); the workload checks every thread's TLS, name, mask, altstack and progress, and joins
/// them (clear-tid wake-ups).
fn threads_round_trip(name: &str, dumper: &str, restorer: &str) {
    let (_scratch, work, images) = test_dirs(name);
    std::fs::create_dir(&images).unwrap();
    let mut w = Workload::start("threads", &work, None);
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", w.pid))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(tids.len(), 4, "the workload runs 3 threads besides main");
    let run = |tool: &str, args: &[&str]| {
        let out = if tool == "criu" {
            Command::new(criu())
                .args(args)
                .args(["--shell-job", "-o", "criu.log"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        } else {
            stasis(args)
        };
        let log = std::fs::read_to_string(images.join("criu.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(dumper, &["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    w.reap_original();
    run(restorer, &["restore", "-D", s(&images), "-d"]);
    let mut now: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", w.pid))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    now.sort();
    let mut before = tids;
    before.sort();
    assert_eq!(now, before, "every thread back at its tid");
    let result = finish_verify(&w);
    assert!(result.starts_with("OK threads=3"), "{result}");
}

#[test]
fn a_multithreaded_process_restores_with_every_thread_intact() {
    threads_round_trip("threads", "stasis", "stasis");
}

#[test]
fn criu_restores_our_multithreaded_dump_and_we_restore_its() {
    threads_round_trip("threads-to-criu", "stasis", "criu");
    threads_round_trip("threads-from-criu", "criu", "stasis");
}

/// Queued signals (per process with their values, per thread) and itimers come back: the
/// workload checks they are still pending, arrive in order with their data, and the timer
/// keeps its rate. CRIU restores our dump of it too.
#[test]
fn queued_signals_and_itimers_survive() {
    for restorer in ["stasis", "criu"] {
        let (_scratch, work, images) = test_dirs(&format!("signals-{restorer}"));
        let mut w = Workload::start("signals", &work, None);
        stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
        w.reap_original();
        // crit sees what the process had: 2 POSIX timers (ids 1, 2), 2 signals queued for the
        // process (SIGRTMIN+1 twice), 1 for each thread (raise(): SIGWINCH; SIGUSR2).
        let core = ctests::crit_decode(&images.join(format!("core-{}.img", w.pid)));
        let tc = &core["entries"][0]["tc"];
        let ids: Vec<i64> = tc["timers"]["posix"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["it_id"].as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(ids, [1, 2], "POSIX timers in crit's decode: {}", tc["timers"]);
        // (A signal of the 20 ms timer may be pending too: only sigqueue()'s, si_code
        // SI_QUEUE = -1, are counted.)
        let queued = tc["signals_s"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| ctests::base64_decode(s["siginfo"].as_str()?))
            .filter(|b| b.len() == 128 && i32::from_le_bytes([b[8], b[9], b[10], b[11]]) == -1)
            .count();
        assert_eq!(queued, 2, "{}", tc["signals_s"]);
        let tids: Vec<u64> = std::fs::read_dir(&images)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("core-")?
                    .strip_suffix(".img")?
                    .parse()
                    .ok()
            })
            .collect();
        let thread_signals: usize = tids
            .iter()
            .map(|t| {
                let c = ctests::crit_decode(&images.join(format!("core-{t}.img")));
                c["entries"][0]["thread_core"]["signals_p"]["signals"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum();
        assert_eq!(thread_signals, 2, "one signal queued for each thread");
        restore_with(restorer, &images);
        let result = finish_verify(&w);
        assert!(result.starts_with("OK"), "{restorer}: {result}");
    }
}

/// A process in a namespace of its own (here ipc) would come back in ours: refused, by name.
#[test]
fn a_process_in_its_own_namespace_is_refused_and_runs_on() {
    let (_scratch, work, images) = test_dirs("own-ns");
    let bin = ctests::workload::workload_bin();
    let (mut child, pid) = in_new_namespace(&["--ipc", s(&bin), "hold", s(&work), "4"], &work);
    let _guard = ctests::workload::TreeGuard(vec![pid]);
    let out = stasis(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("pid {pid}: runs in its own ipc namespace")),
        "{err}"
    );
    assert_running_untraced(pid);
    checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
    wait_for_file(&work.join("result"), Duration::from_secs(20));
    let result = std::fs::read_to_string(work.join("result")).unwrap();
    assert!(result.starts_with("OK"), "{result}");
    child.wait().unwrap();
}

/// A process in a UTS namespace of its own comes back in a new one with its names (also by
/// CRIU from our images).
#[test]
fn a_uts_namespace_comes_back_with_its_names() {
    for restorer in ["stasis", "criu"] {
        let (_scratch, work, images) = test_dirs(&format!("uts-{restorer}"));
        let script = format!(
            "hostname stasis-uts-{restorer} && domainname stasis.test && exec {} hold {} 4",
            ctests::workload::workload_bin().display(),
            work.display()
        );
        let (mut child, pid) = in_new_namespace(&["--uts", "sh", "-c", &script], &work);
        let _guard = ctests::workload::TreeGuard(vec![pid]);
        stasis_ok(&["dump", "-t", &pid.to_string(), "-D", s(&images)]);
        child.wait().unwrap();
        let uts = ctests::crit_decode(&images.join(format!("ids-{pid}.img")));
        let id = uts["entries"][0]["uts_ns_id"].as_i64().unwrap();
        let names = ctests::crit_decode(&images.join(format!("utsns-{id}.img")));
        assert_eq!(
            names["entries"][0]["nodename"],
            format!("stasis-uts-{restorer}"),
            "{names}"
        );
        restore_with(restorer, &images);
        let ns = |who: &str| std::fs::read_link(format!("/proc/{who}/ns/uts")).unwrap();
        assert_ne!(
            ns(&pid.to_string()),
            ns("self"),
            "{restorer}: restored into our UTS namespace"
        );
        let inside = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-u", "sh", "-c", "hostname; domainname"])
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&inside.stdout).into_owned();
        assert_eq!(got, format!("stasis-uts-{restorer}\nstasis.test\n"), "{restorer}");
        checkpoint_core::sys::send_signal(pid, libc::SIGUSR1).unwrap();
        wait_for_file(&work.join("result"), Duration::from_secs(20));
        let _ = checkpoint_core::sys::wait_exit(pid);
        let result = std::fs::read_to_string(work.join("result")).unwrap();
        assert!(result.starts_with("OK"), "{restorer}: {result}");
    }
}

/// Restores `images` detached with `restorer` ("stasis" or "criu"), which must succeed.
fn restore_with(restorer: &str, images: &std::path::Path) {
    if restorer == "criu" {
        let out = Command::new(criu())
            .args(["restore", "-D", s(images), "-d", "-o", "restore.log"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
        assert!(out.status.success(), "criu restore: {log}");
    } else {
        stasis_ok(&["restore", "-D", s(images), "-d"]);
    }
}

/// `unshare ARGS` (which ends by exec'ing a workload writing `work`/ready, at the same pid).
fn in_new_namespace(args: &[&str], work: &std::path::Path) -> (std::process::Child, i32) {
    let child = Command::new("unshare")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for_file(&work.join("ready"), Duration::from_secs(20));
    (child, pid)
}
