//! `stasis show` against `crit` on the CRIU fixtures: same pids, threads, fd kinds and
//! memory sizes; `--json` is valid JSON with one object per image file.

use std::path::Path;
use std::process::Command;

use checkpoint_core::image::ImageDir;
use checkpoint_core::show::{self, TaskSummary};
use ctests::{crit_decode, fixture_dirs, workspace_bin};
use serde_json::Value;

fn crit_entries(dir: &Path, file: &str) -> Vec<Value> {
    let v = crit_decode(&dir.join(file));
    v["entries"].as_array().cloned().unwrap_or_default()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// What crit says about one task, computed from its raw JSON.
fn check_task_against_crit(dir: &Path, t: &TaskSummary, pstree: &Value) {
    let pid = t.pid;
    assert_eq!(u64::from(t.ppid), u(&pstree["ppid"]), "{pid} ppid");
    assert_eq!(u64::from(t.pgid), u(&pstree["pgid"]), "{pid} pgid");
    assert_eq!(u64::from(t.sid), u(&pstree["sid"]), "{pid} sid");
    let core = &crit_entries(dir, &format!("core-{pid}.img"))[0];
    assert_eq!(t.comm, core["tc"]["comm"].as_str().unwrap(), "{pid} comm");
    if u(&core["tc"]["task_state"]) == 2 {
        assert_eq!(t.state, "zombie", "{pid}");
        assert_eq!(u64::from(t.exit_code.unwrap()), u(&core["tc"]["exit_code"]));
        return;
    }
    let threads: Vec<u64> = pstree["threads"].as_array().unwrap().iter().map(u).collect();
    assert_eq!(
        t.threads.iter().map(|&x| u64::from(x)).collect::<Vec<_>>(),
        threads,
        "{pid} threads"
    );

    // Memory: VMAs and mapped bytes from mm. Dumped bytes: CRIU 4.2 writes the page count only
    // in pagemap field 5, which crit 3.17 does not know, so the oracle is the size of the
    // pages image the pagemap head names.
    let mm = &crit_entries(dir, &format!("mm-{pid}.img"))[0];
    let vmas = mm["vmas"].as_array().unwrap();
    let mapped: u64 = vmas.iter().map(|v| u(&v["end"]) - u(&v["start"])).sum();
    let pagemap = crit_entries(dir, &format!("pagemap-{pid}.img"));
    let pages_file = dir.join(format!("pages-{}.img", u(&pagemap[0]["pages_id"])));
    let dumped = std::fs::metadata(&pages_file).unwrap().len();
    let m = t.memory.as_ref().unwrap_or_else(|| panic!("{pid}: no memory summary"));
    assert_eq!(m.vmas, vmas.len(), "{pid} vma count");
    assert_eq!(m.mapped_bytes, mapped, "{pid} mapped bytes");
    assert_eq!(m.dumped_bytes, dumped, "{pid} dumped bytes");
    assert!(dumped > 0, "{pid}: a live task with no dumped page");

    // Fds: numbers and kinds from fdinfo-<files_id> and files.img.
    let ids = &crit_entries(dir, &format!("ids-{pid}.img"))[0];
    let fdinfo = crit_entries(dir, &format!("fdinfo-{}.img", u(&ids["files_id"])));
    let mut expected: Vec<(u64, String)> = fdinfo
        .iter()
        .map(|f| (u(&f["fd"]), f["type"].as_str().unwrap().to_owned()))
        .collect();
    expected.sort();
    let got: Vec<(u64, String)> = t.fds.iter().map(|f| (u64::from(f.fd), f.kind.clone())).collect();
    assert_eq!(got, expected, "{pid} fds");
    let files = crit_entries(dir, "files.img");
    for f in &t.fds {
        if f.kind == "REG" {
            let id = fdinfo.iter().find(|e| u(&e["fd"]) == u64::from(f.fd)).unwrap()["id"].clone();
            let entry = files.iter().find(|e| e["id"] == id).unwrap();
            // An unlinked file is marked so, if and only if crit lists it in remap-fpath.img.
            let ghost = dir.join("remap-fpath.img").exists()
                && crit_entries(dir, "remap-fpath.img").iter().any(|r| r["orig_id"] == id);
            let name = entry["reg"]["name"].as_str().unwrap();
            let want = if ghost {
                format!("{name} (deleted; contents saved)")
            } else {
                name.to_owned()
            };
            assert_eq!(f.target, want, "{pid} fd {}", f.fd);
        }
    }
}

#[test]
fn summary_agrees_with_crit_on_every_fixture() {
    for dir in fixture_dirs() {
        let summary = show::summarize(&ImageDir::open(&dir).unwrap()).unwrap();
        let pstree = crit_entries(&dir, "pstree.img");
        assert_eq!(summary.tasks.len(), pstree.len(), "{}", dir.display());
        for (t, p) in summary.tasks.iter().zip(&pstree) {
            assert_eq!(u64::from(t.pid), u(&p["pid"]));
            check_task_against_crit(&dir, t, p);
        }
    }
}

#[test]
fn text_output_names_every_task_and_fd() {
    for dir in fixture_dirs() {
        let out = Command::new(workspace_bin("stasis"))
            .arg("show")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let summary = show::summarize(&ImageDir::open(&dir).unwrap()).unwrap();
        let threads: usize = summary.tasks.iter().map(|t| t.threads.len()).sum();
        assert!(
            text.contains(&format!("{} processes, {threads} threads", summary.tasks.len())),
            "{text}"
        );
        for t in &summary.tasks {
            assert!(text.contains(&t.pid.to_string()) && text.contains(&t.comm), "{text}");
            for f in &t.fds {
                assert!(
                    text.lines().any(|l| l.contains(&f.kind) && l.contains(&f.target)),
                    "fd {} in\n{text}",
                    f.fd
                );
            }
        }
    }
    // w_tree's zombie exited with 42; w_more holds TCP and UDP sockets on 127.0.0.1.
    let dirs = fixture_dirs();
    let run = |name: &str| {
        let dir = dirs.iter().find(|d| d.ends_with(name)).unwrap();
        String::from_utf8(
            Command::new(workspace_bin("stasis"))
                .arg("show")
                .arg(dir)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert!(run("w_tree").contains("zombie(exit 42)"));
    let more = run("w_more");
    assert!(
        more.contains("tcp 127.0.0.1:") && more.contains("listen") && more.contains("udp 127.0.0.1:"),
        "{more}"
    );
    let runc = run("runc-busybox");
    assert!(runc.contains("uts    id 12") && runc.contains("own"), "{runc}");
}

#[test]
fn json_output_is_one_object_per_image_with_crits_magic() {
    for dir in fixture_dirs() {
        let out = Command::new(workspace_bin("stasis"))
            .args(["show", "--json"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let files: Vec<Value> = serde_json::from_slice(&out.stdout).expect("valid JSON");
        let on_disk = ctests::files_of(&dir)
            .into_iter()
            .filter(|p| !p.ends_with("descriptors.json"))
            .count();
        assert_eq!(files.len(), on_disk, "{}", dir.display());
        for f in &files {
            let name = f["file"].as_str().unwrap();
            if f.get("raw_size").is_some() {
                continue; // pages and tarballs: crit has no magic for them either
            }
            let crit = crit_decode(&dir.join(name));
            assert_eq!(f["magic"], crit["magic"], "{name}");
            assert_eq!(
                f["entries"].as_array().unwrap().len(),
                crit["entries"].as_array().unwrap().len(),
                "{name}"
            );
        }
    }
}

#[test]
fn a_directory_without_images_is_refused_clearly() {
    let empty = std::env::temp_dir().join(format!("stasis-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(workspace_bin("stasis"))
        .arg("show")
        .arg(&empty)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no pstree.img"), "{err}");
}
