//! Dumping a tree through its cgroup's freezer (v1 and v2), as a container's dump does; a cgroup
//! frozen by its owner before the dump is frozen again after it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use checkpoint_core::freeze::Freezer;
use ctests::workload::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A cgroup made for the test: the given processes moved in; on drop, thawed, emptied into
/// its parent and removed.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn new(hierarchy: &str, name: &str, pids: &[i32]) -> TestCgroup {
        let dir = Path::new(hierarchy).join(format!("stasis-test-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let cg = TestCgroup { dir };
        for &pid in pids {
            // A zombie cannot move; it does not need to.
            if proc_ids(pid).is_some_and(|(.., state)| state != 'Z') {
                std::fs::write(cg.dir.join("cgroup.procs"), pid.to_string())
                    .unwrap_or_else(|e| panic!("moving {pid}: {e}"));
            }
        }
        cg
    }

    fn freezer(&self) -> Freezer {
        Freezer::at(&self.dir).unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.freezer().thaw();
        let parent = self.dir.parent().unwrap().join("cgroup.procs");
        for pid in std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
        {
            let _ = std::fs::write(&parent, pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn dump_restore_through(hierarchy: &str, name: &str) {
    let (_scratch, work, images) = test_dirs(name);
    let mut w = Workload::start("tree", &work, None);
    let pids = tree_pids(&work);
    let _guard = TreeGuard(pids.clone());
    let cg = TestCgroup::new(hierarchy, name, &pids);
    stasis_ok(&[
        "dump",
        "-t",
        &w.pid.to_string(),
        "-D",
        s(&images),
        "--freeze-cgroup",
        s(&cg.dir),
    ]);
    w.reap_original();
    reap_all_children();
    assert!(!cg.freezer().is_frozen().unwrap(), "the dump left the cgroup frozen");
    stasis_ok(&["restore", "-D", s(&images), "-d"]);
    verify(&w);
    let _ = checkpoint_core::sys::wait_exit(w.pid);
}

/// Has the workload check itself; its result must be OK.
fn verify(w: &Workload) {
    w.signal(libc::SIGUSR1);
    wait_for_file(&w.dir.join("result"), Duration::from_secs(20));
    let result = std::fs::read_to_string(w.dir.join("result")).unwrap();
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn a_tree_dumped_through_a_cgroup_v2_freezer_restores() {
    dump_restore_through("/sys/fs/cgroup/unified", "freeze-v2");
}

#[test]
fn a_tree_dumped_through_a_v1_freezer_restores() {
    dump_restore_through("/sys/fs/cgroup/freezer", "freeze-v1");
}

/// containerd pauses a container before its checkpoint: the dump must seize it anyway, and a
/// --leave-running dump must leave it paused, untraced.
#[test]
fn a_paused_cgroup_stays_paused_after_a_leave_running_dump() {
    let (_scratch, work, images) = test_dirs("freeze-paused");
    let w = Workload::start("threads", &work, None);
    let cg = TestCgroup::new("/sys/fs/cgroup/unified", "paused", &[w.pid]);
    cg.freezer().freeze().unwrap();
    stasis_ok(&[
        "dump",
        "-t",
        &w.pid.to_string(),
        "-D",
        s(&images),
        "--leave-running",
        "--freeze-cgroup",
        s(&cg.dir),
    ]);
    assert!(cg.freezer().is_frozen().unwrap(), "the owner's pause was undone");
    assert_eq!(status_field(w.pid, "TracerPid").as_deref(), Some("0"), "still traced");
    assert!(images.join("inventory.img").exists());
    cg.freezer().thaw().unwrap();
    assert_running_untraced(w.pid);
    verify(&w);
}
