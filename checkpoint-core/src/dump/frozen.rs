//! The dump of the stopped tree: what /proc shows of each task read once, each task dumped in
//! turn, then the images of the whole tree (namespaces, files, shared memory, seccomp, the
//! process tree, statistics, and the inventory last).

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use parasite::Tracee;

use super::files_image::FilesImage;
use super::{container, files, mm, precheck, read_proc, task, tree, DumpError, DumpOpts, DumpReport};
use crate::image::pb;
use crate::image::{ImageDir, ImageKind};
use crate::model::seccomp::SeccompImage;
use crate::procfs;

/// What the tasks of a tree share or add up, gathered task by task.
#[derive(Default)]
pub(super) struct TreeObjects {
    /// The dumper's UTS namespace id, and the names of every other one the tree uses.
    pub(super) host_uts: Option<u32>,
    pub(super) utsns: BTreeMap<u32, pb::UtsnsEntry>,
    /// seccomp.img.
    pub(super) seccomp: SeccompImage,
    /// files.img and the images beside it.
    pub(super) files: FilesImage,
    /// Shared anonymous memory and memfds, dumped once for the tree.
    pub(super) shmem: mm::SharedMemory,
    pub(super) totals: Totals,
}

/// Totals over the tasks of a dump.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) vmas: usize,
    /// Pages looked at and pages written.
    pub(super) scanned: u64,
    pub(super) written: u64,
    /// Time spent reading and writing pages, in microseconds.
    pub(super) memdump_us: u32,
}

/// Dumps the stopped `tasks` (parents first) into `dir`; `mounts` are a container's.
pub(super) fn dump_frozen(
    tasks: &[tree::Task],
    dir: &ImageDir,
    opts: &DumpOpts,
    mounts: Option<&crate::ns::mnt::View>,
    frozen_since: Instant,
) -> Result<(DumpReport, crate::fds::tcp::Repaired), DumpError> {
    let mut tree_objects = TreeObjects::default();
    tree_objects.files.sockets = precheck::unix_table(opts)?;
    tree_objects.files.tcp_mode = (opts.tcp_established, opts.tcp_close);
    tree_objects.files.ghost_limit = opts.ghost_limit;
    if opts.container.is_some() {
        // A container's paths are under its root, for us.
        tree_objects.files.links = crate::fds::link_remap::Links::under(format!("/proc/{}/root", opts.pid).into());
    }
    // What /proc shows of each task, read once now that it is stopped: its stat, and for a
    // live task its fd table.
    let mut seen = Vec::with_capacity(tasks.len());
    for t in tasks {
        let stat = procfs::parse_stat(&read_proc(t.pid, "stat")?).ok_or(DumpError::Parse {
            pid: t.pid,
            file: "stat",
        })?;
        let fdt = match t.zombie {
            Some(_) => None,
            None => Some(files::collect(t.pid, opts, &tree_objects.files.sockets)?),
        };
        seen.push((stat, fdt));
    }
    tree_objects.files.pty_masters = precheck::pty_masters(seen.iter().filter_map(|(_, fdt)| fdt.as_ref()));
    for (t, (st, _)) in tasks.iter().zip(&seen) {
        if st.tty_nr != 0 && st.sid == t.pid as u32 {
            let (nr, minor_hi) = (u64::from(st.tty_nr), u64::from(st.tty_nr >> 12) & 0xfff00);
            let rdev = libc::makedev(((nr >> 8) & 0xfff) as u32, ((nr & 0xff) | minor_hi) as u32);
            tree_objects.files.ctty.insert(rdev, (st.sid, st.tpgid.max(0) as u32));
        }
    }
    // The namespaces of a container's own: read once.
    let own = match opts.container {
        Some(_) => crate::ns::own_kinds(opts.pid),
        None => Vec::new(),
    };
    // A container's tasks are saved with the pids they see.
    let mut pids = crate::ns::pid::PidMap::default();
    if own.contains(&"pid") {
        for t in tasks {
            let ids = std::iter::once(t.pid).chain(t.threads.iter().map(Tracee::pid));
            for id in ids {
                pids.add(id).map_err(|what| DumpError::Unsupported { pid: id, what })?;
            }
        }
    }
    tree_objects.files.tree_pids = tasks.iter().map(|t| t.pid).collect();
    tree_objects.files.pids = pids.clone();
    let mut ns = crate::ns::ids::NsIds::new(tasks.len() as u32 + 2);
    let root_ids = ns.ids("self", 1);
    tree_objects.host_uts = root_ids.uts_ns_id;
    let mut pstree = Vec::with_capacity(tasks.len());
    let mut root_task_ids = pb::TaskKobjIdsEntry::default();
    for (i, (task, (stat, fdt))) in tasks.iter().zip(seen).enumerate() {
        let pid = task.pid;
        let ppid = if i == 0 { 0 } else { stat.ppid };
        let threads = match (task.zombie, fdt) {
            (Some(exit_code), _) => {
                task::dump_zombie(dir, pids.inside(pid), exit_code, &stat)?;
                vec![pids.inside(pid) as u32]
            }
            (None, fdt) => {
                let ids = ns.ids(&pid.to_string(), i as u32 + 2);
                if i == 0 {
                    root_task_ids = ids.clone();
                }
                let proc_view = (&stat, fdt.unwrap_or_default(), task.stopped);
                task::dump_task(
                    &task.threads,
                    dir,
                    &ids,
                    i as u32 + 1,
                    proc_view,
                    &pids,
                    &mut tree_objects,
                )?;
                task.threads.iter().map(|t| pids.inside(t.pid()) as u32).collect()
            }
        };
        let inside = |p: u32| pids.inside(p as i32) as u32;
        // A group or session whose leader is gone has no pid of the tree to map: its id
        // inside is the kernel's (NSpgid, NSsid).
        let (mut pgid, mut sid) = (inside(stat.pgid), inside(stat.sid));
        if own.contains(&"pid") && (pgid == 0 || sid == 0) {
            if let Some((g, s)) = crate::ns::pid::inside_group_and_session(pid) {
                pgid = if pgid == 0 { g as u32 } else { pgid };
                sid = if sid == 0 { s as u32 } else { sid };
            }
        }
        pstree.push(pb::PstreeEntry {
            pid: inside(pid as u32),
            ppid: if ppid == 0 { 0 } else { inside(ppid) },
            pgid,
            sid,
            threads,
        });
    }

    let TreeObjects {
        host_uts: _,
        utsns,
        seccomp,
        mut files,
        shmem,
        mut totals,
    } = tree_objects;
    files.add_external_peers();
    if let Some(spec) = &opts.container {
        container::dump_container(dir, opts.pid, spec, &own, &root_task_ids, mounts)?;
    }
    for (id, names) in &utsns {
        dir.write_all(ImageKind::Utsns, (*id).into(), std::slice::from_ref(names))?;
    }
    // Every connection is locked and read in repair mode; the guard undoes it on error.
    let tcp = std::mem::take(&mut files.tcp);
    let net_ns = crate::ns::own_kinds(opts.pid)
        .contains(&"net")
        .then(|| fs::File::open(format!("/proc/{}/ns/net", opts.pid)))
        .transpose()
        .map_err(|e| DumpError::proc(opts.pid, "ns/net", e))?;
    let repaired = crate::fds::tcp::save_all(tcp, dir, opts.network_lock, net_ns)
        .map_err(|(pid, what)| DumpError::Unsupported { pid, what })?;
    files.check_deleted_watches()?;
    files.write_objects(dir)?;
    let mut shmem = shmem;
    for (ino, pid, path, size) in std::mem::take(&mut files.memfd_sources) {
        shmem.add_memfd(ino, pid, path, size);
    }
    let shm_stats = shmem.dump(dir, tasks.len() as u32 + 1)?;
    totals.scanned += shm_stats.scanned;
    totals.written += shm_stats.written;
    files.write_table(dir)?;
    dir.write_all(
        ImageKind::Seccomp,
        0,
        &[pb::SeccompEntry {
            seccomp_filters: seccomp.filters,
        }],
    )?;
    dir.write_all(ImageKind::Pstree, 0, &pstree)?;
    let elapsed_us = |t: Instant| t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    dir.write_all(
        ImageKind::StatsDump,
        0,
        &[pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 0,
                frozen_time: elapsed_us(frozen_since),
                memdump_time: totals.memdump_us,
                memwrite_time: totals.memdump_us,
                pages_scanned: totals.scanned,
                pages_skipped_parent: 0,
                pages_written: totals.written,
                pages_lazy: 0,
                ..Default::default()
            }),
            restore: None,
        }],
    )?;
    let uptime_us = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1e6) as u64);
    // Before the tasks are killed, everything must be durable (the inventory, whose presence
    // marks a complete dump, last). Tasks left running need no such guarantee.
    let durable = !opts.leave_running;
    if durable {
        dir.sync()?;
    }
    dir.write_all(
        ImageKind::Inventory,
        0,
        &[pb::InventoryEntry {
            img_version: crate::image::magic::IMAGES_V1_1,
            fdinfo_per_id: Some(true),
            root_ids: Some(root_ids),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: uptime_us,
            tcp_close: opts.tcp_close.then_some(true),
            network_lock_method: Some(opts.network_lock.inventory_value()),
            ..Default::default()
        }],
    )?;
    if durable {
        dir.sync()?;
    }
    // The dump is complete: the files it linked back stay for the restore.
    files.links.keep();
    let report = DumpReport {
        pid: opts.pid,
        tasks: tasks.len(),
        vmas: totals.vmas,
        pages_scanned: totals.scanned,
        pages_written: totals.written,
        frozen: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    Ok((report, repaired))
}
