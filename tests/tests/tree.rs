//! Process trees: a dump of a tree (sessions, groups, an orphan, a zombie, pipes shared between
//! tasks) restored by Stasis and by CRIU, checked by the workload itself and against `crit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use checkpoint_core::image::pb;
use checkpoint_core::image::{ImageDir, ImageKind};
use ctests::workload::*;
use ctests::{crit_decode, reference_criu};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn criu() -> PathBuf {
    reference_criu("4.1")
}

/// pid, parent, group, session, and 'Z' for a zombie or 'A' for a live process (whether it is
/// running or sleeping at that instant is chance).
type Ids = (i32, u32, u32, u32, char);

/// The ids of every process of the tree as /proc shows them, the root's parent as 0.
fn ids_now(pids: &[i32]) -> Vec<Ids> {
    pids.iter()
        .enumerate()
        .map(|(i, &pid)| {
            let (ppid, pgid, sid, state) = proc_ids(pid).unwrap_or_else(|| panic!("pid {pid} is gone"));
            let state = if state == 'Z' { 'Z' } else { 'A' };
            (pid, if i == 0 { 0 } else { ppid }, pgid, sid, state)
        })
        .collect()
}

/// Starts the tree workload; returns it, its pids and their ids.
fn start_tree(work: &Path) -> (Workload, TreeGuard, Vec<Ids>) {
    let w = Workload::start("tree", work, None);
    let pids = tree_pids(work);
    assert_eq!(pids.len(), 7, "the tree workload has 7 processes");
    let ids = ids_now(&pids);
    (w, TreeGuard(pids), ids)
}

/// Dumps the tree with `tool` (stasis or criu), which kills it; reaps every process.
fn dump_tree(tool: &str, w: &mut Workload, images: &Path) {
    std::fs::create_dir_all(images).unwrap();
    let pid = w.pid.to_string();
    let args = ["dump", "-t", &pid, "-D", s(images)];
    let out = if tool == "criu" {
        Command::new(criu())
            .args(args)
            .args(["-o", "criu.log"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    } else {
        stasis(&args)
    };
    let log = std::fs::read_to_string(images.join("criu.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{tool} dump: {}{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.reap_original();
    reap_all_children();
}

fn restore_tree(tool: &str, images: &Path) {
    let out = if tool == "criu" {
        Command::new(criu())
            .args(["restore", "-D", s(images), "-d", "-o", "restore.log"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    } else {
        stasis(&["restore", "-D", s(images), "-d"])
    };
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{tool} restore: {}{log}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Has the restored root check the whole tree; returns its result line.
fn verify(w: &Workload) -> String {
    w.signal(libc::SIGUSR1);
    wait_for_file(&w.dir.join("result"), Duration::from_secs(20));
    let status = checkpoint_core::sys::wait_exit(w.pid).unwrap();
    let result = std::fs::read_to_string(w.dir.join("result")).unwrap();
    assert!(libc::WIFEXITED(status), "the restored root died: {status:#x}, {result}");
    result
}

fn setup(name: &str) -> (Scratch, PathBuf) {
    let (scratch, work, _) = test_dirs(name);
    (scratch, work)
}

#[test]
fn a_tree_comes_back_with_its_pids_sessions_groups_zombie_and_pipe_data() {
    let (scratch, work) = setup("tree");
    let images = scratch.join("images");
    let (mut w, _guard, before) = start_tree(&work);
    dump_tree("stasis", &mut w, &images);

    // crit agrees with what /proc showed: pid, parent, group, session of each process.
    let tree = crit_decode(&images.join("pstree.img"));
    let listed: Vec<(i64, i64, i64, i64)> = tree["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_i64().unwrap();
            (n("pid"), n("ppid"), n("pgid"), n("sid"))
        })
        .collect();
    let mut want: Vec<(i64, i64, i64, i64)> = before
        .iter()
        .map(|&(p, pp, g, s, _)| (p.into(), pp.into(), g.into(), s.into()))
        .collect();
    let mut got = listed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "pstree.img (crit) against /proc");
    let zombie = before.iter().find(|t| t.4 == 'Z').expect("the tree has a zombie").0;
    let core = crit_decode(&images.join(format!("core-{zombie}.img")));
    let tc = &core["entries"][0]["tc"];
    assert_eq!(tc["exit_code"].as_i64(), Some(42 << 8), "zombie core: {tc}");
    let data = crit_decode(&images.join("pipes-data.img"));
    assert_eq!(
        data["entries"].as_array().map(Vec::len),
        Some(1),
        "one pipe holds data: {data}"
    );

    restore_tree("stasis", &images);
    let pids: Vec<i32> = before.iter().map(|t| t.0).collect();
    let after = ids_now(&pids);
    assert_eq!(after, before, "ids after the restore");
    let result = verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

/// The parts of a checkpoint that describe the tree, not where or when it was taken.
fn summary(dir: &Path) -> Vec<String> {
    let dir = ImageDir::open(dir).unwrap();
    let mut out = Vec::new();
    let tree: Vec<pb::PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    let files: Vec<pb::FileEntry> = dir.read_all(ImageKind::Files, 0).unwrap();
    let kind_of = |id: u32| files.iter().find(|f| f.id == id).map(|f| f.r#type);
    for t in &tree {
        out.push(format!(
            "task {} ppid {} pgid {} sid {} threads {:?}",
            t.pid, t.ppid, t.pgid, t.sid, t.threads
        ));
        let core: pb::CoreEntry = dir.read_one(ImageKind::Core, t.pid.into()).unwrap().unwrap();
        let tc = core.tc.unwrap();
        out.push(format!(
            "  state {} exit {} comm {} subreaper {:?} sigactions {:?}",
            tc.task_state,
            tc.exit_code,
            tc.comm,
            tc.child_subreaper,
            tc.sigactions
                .iter()
                .map(|s| (s.sigaction, s.flags, s.mask))
                .collect::<Vec<_>>()
        ));
        if let Some(th) = core.thread_core {
            out.push(format!("  mask {:?} pdeath {:?}", th.blk_sigset, th.pdeath_sig));
        }
        let Some(ids) = dir
            .read_one::<pb::TaskKobjIdsEntry>(ImageKind::Ids, t.pid.into())
            .unwrap()
        else {
            continue;
        };
        let fds: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, ids.files_id.into()).unwrap();
        for fd in fds {
            out.push(format!("  fd {} type {:?} cloexec {}", fd.fd, kind_of(fd.id), fd.flags));
        }
        let mm: pb::MmEntry = dir.read_one(ImageKind::Mm, t.pid.into()).unwrap().unwrap();
        for v in mm.vmas.iter().filter(|v| v.status & pb::vma_status::VDSO == 0) {
            out.push(format!(
                "  vma {:#x}-{:#x} prot {} flags {:#x}",
                v.start, v.end, v.prot, v.flags
            ));
        }
    }
    out
}

#[test]
fn a_restored_tree_dumps_again_to_an_equivalent_checkpoint() {
    let (scratch, work) = setup("tree-again");
    let first = scratch.join("first");
    let second = scratch.join("second");
    let (mut w, _guard, _) = start_tree(&work);
    dump_tree("stasis", &mut w, &first);
    restore_tree("stasis", &first);
    // The restored root is our child again (re-parented to us, the subreaper).
    w.child = None;
    std::fs::create_dir_all(&second).unwrap();
    stasis_ok(&["dump", "-t", &w.pid.to_string(), "-D", s(&second)]);
    reap_all_children();
    let (a, b) = (summary(&first), summary(&second));
    let differences: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("first:  {x}\nsecond: {y}"))
        .collect();
    assert!(
        differences.is_empty() && a.len() == b.len(),
        "{}",
        differences.join("\n")
    );
    restore_tree("stasis", &second);
    let result = verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

/// `dumper` dumps the tree, `restorer` restores it, the ids and the workload's checks agree.
fn cross(name: &str, dumper: &str, restorer: &str) {
    let (scratch, work) = setup(name);
    let images = scratch.join("images");
    let (mut w, _guard, before) = start_tree(&work);
    dump_tree(dumper, &mut w, &images);
    restore_tree(restorer, &images);
    let pids: Vec<i32> = before.iter().map(|t| t.0).collect();
    assert_eq!(
        ids_now(&pids),
        before,
        "ids after {restorer}'s restore of {dumper}'s dump"
    );
    let result = verify(&w);
    assert!(result.starts_with("OK"), "{result}");
}

#[test]
fn criu_restores_a_tree_stasis_dumped() {
    cross("tree-to-criu", "stasis", "criu");
}

#[test]
fn stasis_restores_a_tree_criu_dumped() {
    cross("tree-from-criu", "criu", "stasis");
}

#[test]
fn an_unsupported_object_deep_in_the_tree_is_refused_before_anything_stops() {
    let (scratch, work) = setup("tree-refused");
    let w = Workload::start("uring-child", &work, None);
    let pids = tree_pids(&work);
    let _guard = TreeGuard(pids.clone());
    let child = pids[1];
    let images = scratch.join("images");
    let out = stasis(&["dump", "-t", &w.pid.to_string(), "-D", s(&images)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump of an io_uring succeeded");
    assert!(
        err.contains(&format!("pid {child}: fd")) && err.contains("io_uring"),
        "the refusal names the child, its fd and the io_uring: {err}"
    );
    for pid in pids {
        assert_running_untraced(pid);
    }
    assert!(
        !images.join("inventory.img").exists(),
        "a refused dump left an inventory"
    );
}
