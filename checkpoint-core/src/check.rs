//! `stasis check`: each kernel feature Stasis relies on, probed for real on this machine, with
//! what breaks without it.

use std::fs;
use std::io;
use std::process::{Command, Stdio};

use crate::sys;

/// One probed feature.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: &'static str,
    pub ok: bool,
    /// Why it is missing (empty when ok).
    pub detail: String,
    /// What does not work without it.
    pub needed_for: &'static str,
}

fn feature(name: &'static str, needed_for: &'static str, probe: io::Result<()>) -> Feature {
    match probe {
        Ok(()) => Feature {
            name,
            ok: true,
            detail: String::new(),
            needed_for,
        },
        Err(e) => Feature {
            name,
            ok: false,
            detail: e.to_string(),
            needed_for,
        },
    }
}

fn probe_pidfd_getfd() -> io::Result<()> {
    let me = parasite::sys::pidfd_open(std::process::id() as i32)?;
    let null = fs::File::open("/dev/null")?;
    use std::os::fd::AsRawFd;
    parasite::sys::pidfd_getfd(me.as_raw_fd(), null.as_raw_fd()).map(drop)
}

/// Seizes a `sleep` child and asks for its rseq configuration.
fn probe_rseq_config() -> io::Result<()> {
    let mut child = Command::new("sleep")
        .arg("10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let result = parasite::Tracee::seize(pid)
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|t| t.rseq().map(drop).map_err(|e| io::Error::other(e.to_string())));
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn probe_uffd_wp_async() -> io::Result<()> {
    const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
    let features = sys::userfaultfd_features()?;
    if features & UFFD_FEATURE_WP_ASYNC == 0 {
        return Err(io::Error::other(format!("features {features:#x} lack WP_ASYNC")));
    }
    Ok(())
}

fn probe_v1_freezer() -> io::Result<()> {
    fs::metadata("/sys/fs/cgroup/freezer/freezer.state")
        .or_else(|_| fs::metadata("/sys/fs/cgroup/freezer/tasks"))
        .map(drop)
}

fn probe_v2_freezer() -> io::Result<()> {
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|r| fs::metadata(format!("{r}/cgroup.controllers")).is_ok())
        .ok_or_else(|| io::Error::other("no cgroup2 mount"))?;
    let probe = format!("{root}/stasis-check-{}", std::process::id());
    fs::create_dir(&probe)?;
    let has = fs::metadata(format!("{probe}/cgroup.freeze")).map(drop);
    fs::remove_dir(&probe)?;
    has
}

/// Soft-dirty works if a freshly written page of ours shows bit 55 in pagemap.
fn probe_soft_dirty() -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let page = vec![1u8; 4096 * 2];
    let addr = page.as_ptr() as u64 / 4096 * 4096 + 4096;
    let f = fs::File::open("/proc/self/pagemap")?;
    let mut entry = [0u8; 8];
    f.read_exact_at(&mut entry, addr / 4096 * 8)?;
    std::hint::black_box(&page);
    if u64::from_le_bytes(entry) & (1 << 55) == 0 {
        return Err(io::Error::other("CONFIG_MEM_SOFT_DIRTY is not set"));
    }
    Ok(())
}

/// Probes every feature.
pub fn check() -> Vec<Feature> {
    vec![
        feature(
            "pidfd_getfd",
            "restore: moving files into the puppet (fallback SCM_RIGHTS: not built)",
            probe_pidfd_getfd(),
        ),
        feature(
            "clone3 set_tid",
            "restore: recreating a process at its dumped pid",
            sys::probe_clone3_set_tid(),
        ),
        feature(
            "PTRACE_GET_RSEQ_CONFIGURATION",
            "dump/restore of tasks using rseq (every glibc 2.35+ thread)",
            probe_rseq_config(),
        ),
        feature(
            "PAGEMAP_SCAN",
            "faster scans of dirty/present pages (reading /proc/PID/pagemap works without)",
            sys::probe_pagemap_scan(),
        ),
        feature(
            "userfaultfd WP async",
            "incremental dumps without soft-dirty; lazy restore",
            probe_uffd_wp_async(),
        ),
        feature(
            "cgroup v1 freezer",
            "freezing containers in v1 cgroups",
            probe_v1_freezer(),
        ),
        feature(
            "cgroup v2 freezer",
            "freezing containers in cgroup2 (cgroup.freeze)",
            probe_v2_freezer(),
        ),
        feature(
            "PR_TIMER_CREATE_RESTORE_IDS",
            "restoring POSIX timers at their ids",
            sys::probe_timer_restore_ids(),
        ),
        feature(
            "sock_diag (AF_UNIX)",
            "dumping unix sockets: peers, names, waiting connections, queue lengths",
            sys::unix_sockets().map(drop),
        ),
        feature(
            "soft-dirty",
            "CRIU-style incremental dumps (Stasis uses userfaultfd WP instead)",
            probe_soft_dirty(),
        ),
    ]
}
