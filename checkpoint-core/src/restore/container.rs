//! A restore into a container: its init (made by its runtime) checked and taken over, and what
//! the container's namespaces held made again before any file is opened: its own tmpfs mounts
//! and their contents, its SysV IPC objects, its network namespace, its cgroup settings.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use super::files::SharedFiles;
use super::plan::Tree;
use super::{object, puppet, Container, Inherited, RestoreError, RestoreOpts, Tracee};
use crate::image::pb::MntEntry;
use crate::image::{ImageDir, ImageKind};
use crate::sys;

/// Takes over the container's init: checks its start, makes again what the container's
/// namespaces held, and notes in `shared` its root, its console (with `--shell-job`) and its
/// pid (what is made by path is made inside it). Returns the init and what puppets inherit.
pub(super) fn prepare(
    dir: &ImageDir,
    tree: &Tree,
    opts: &RestoreOpts,
    (init, ctl_fd, ctl_socket): Container,
    shared: &mut SharedFiles,
) -> Result<(Tracee, Inherited), RestoreError> {
    let pid0 = tree.tasks[0].pid;
    let (root, mut inherited) = container_start(tree, init.pid(), &init, ctl_fd)?;
    inherited.ctl_socket = ctl_socket.map(Rc::new);
    // Before any file is opened or segment attached: what the container's tmpfs
    // mounts and IPC namespace held.
    let (listed, mounts) = listed_and_mounts(dir)?;
    replay_mounts(&mounts, &init, pid0, &opts.declared_mounts)?;
    restore_tmpfs(dir, &listed, &mounts, &root, pid0)?;
    shared.container = Some(init.pid());
    if opts.shell_job {
        // A container with a terminal: the console its runtime just gave the init.
        let console = sys::copy_fd_of(init.pid(), 0).map_err(object(init.pid(), "its console (fd 0)"))?;
        if !sys::isatty(console.as_raw_fd()) {
            return Err(RestoreError::Invalid {
                what: format!("pid {}: fd 0 of the container's init is not a terminal", init.pid()),
            });
        }
        shared.console = Some(console);
    }
    restore_ipc(dir, &listed, init.pid(), pid0)?;
    let root_ids: Option<crate::image::pb::TaskKobjIdsEntry> = dir.read_one(ImageKind::Ids, pid0 as u64)?;
    let net_ns_id = root_ids.and_then(|ids| ids.net_ns_id).unwrap_or(0);
    crate::ns::net::externals(&opts.externals)
        .and_then(|ext| crate::ns::net::restore(init.pid(), dir, net_ns_id, &ext))
        .map_err(|what| RestoreError::Unsupported { pid: pid0, what })?;
    if opts.cgroup_settings {
        if let Some(saved) = dir.read_one::<crate::image::pb::CgroupEntry>(ImageKind::Cgroup, 0)? {
            crate::ns::cgroup::apply(init.pid(), &saved)
                .map_err(|what| RestoreError::Unsupported { pid: pid0, what })?;
        }
    }
    shared.root = Some(root);
    Ok((init, inherited))
}

/// The state a container's init starts the restore with, checked against the image.
fn container_start(tree: &Tree, host: i32, init: &Tracee, ctl_fd: i32) -> Result<(OwnedFd, Inherited), RestoreError> {
    let pid = tree.tasks[0].pid;
    let inside = crate::ns::pid::levels(host).and_then(|l| l.last().copied());
    if inside != Some(pid) {
        return Err(RestoreError::Invalid {
            what: format!(
                "pid {host}: the container's init is pid {inside:?} in its namespace, the dumped root was {pid}"
            ),
        });
    }
    let stat = crate::procfs::parse_stat(
        &std::fs::read_to_string(format!("/proc/{host}/stat")).map_err(object(host, "stat"))?,
    )
    .ok_or_else(|| RestoreError::Invalid {
        what: format!("pid {host}: unreadable stat"),
    })?;
    let root = &tree.tasks[0];
    if root.sid != root.pid || stat.sid != host as u32 {
        return Err(RestoreError::Unsupported {
            pid,
            what: "the container's init must lead its session, dumped and now".into(),
        });
    }
    let root_dir = std::fs::File::open(format!("/proc/{host}/root")).map_err(object(host, "the container's root"))?;
    let mut inherited = Inherited::of(&host.to_string(), 0);
    inherited.filters = init.seccomp_filters()?;
    inherited.ctl_fd = Some(ctl_fd);
    Ok((root_dir.into(), inherited))
}

/// Unpacks each saved tmpfs (`tmpfs-dev-<dev>.tar.gz.img`, by its filesystem's device) into
/// the container's mount at the same place (`mountpoints-N.img`: the mount of that device
/// at its root), as the runtime made it again, empty.
fn restore_tmpfs(
    dir: &ImageDir,
    listed: &[(ImageKind, u64)],
    mounts: &[MntEntry],
    root: &OwnedFd,
    pid: i32,
) -> Result<(), RestoreError> {
    use std::os::fd::AsFd;
    let mut points = BTreeMap::new();
    for m in mounts {
        if m.root == "/" && m.fstype == crate::image::pb::Fstype::Tmpfs as u32 {
            points.entry(u64::from(m.root_dev)).or_insert(m.mountpoint.as_str());
        }
    }
    for &(kind, id) in listed {
        if kind != ImageKind::TmpfsDev {
            continue;
        }
        let point = points.get(&id).ok_or_else(|| RestoreError::Invalid {
            what: format!("tmpfs-dev-{id}.tar.gz.img: no tmpfs of device {id} in the mount images"),
        })?;
        // /dev is the runtime's to fill (a CRIU image holds its device nodes), and
        // /sys/fs/cgroup holds only mount points.
        if matches!(*point, "/dev" | "/sys/fs/cgroup") {
            continue;
        }
        let what = || format!("the tmpfs at {point}");
        let mount = File::from(
            sys::open_in_root(root.as_fd(), point, libc::O_RDONLY | libc::O_DIRECTORY).map_err(object(pid, what()))?,
        );
        if !sys::is_tmpfs(&mount) {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("{} is not a tmpfs in the new container", what()),
            });
        }
        let path = dir.image_path(kind, id);
        let archive = File::open(&path).map_err(object(pid, path.display().to_string()))?;
        crate::ns::tmpfs::extract(mount.as_fd(), archive).map_err(object(pid, what()))?;
    }
    Ok(())
}

/// Mounts again, through the container's init, the tmpfs mounts the container had made
/// itself (the runtime made the declared ones), parents first, as they were listed.
fn replay_mounts(mounts: &[MntEntry], init: &Tracee, pid: i32, declared: &[String]) -> Result<(), RestoreError> {
    use crate::image::pb::Fstype;
    let point = |id: u32| mounts.iter().find(|m| m.mnt_id == id).map(|m| m.mountpoint.as_str());
    let declared: std::collections::BTreeSet<&str> = declared.iter().map(|d| d.trim_end_matches('/')).collect();
    for m in mounts {
        // Ours mark the runtime's mounts external; in any image (CRIU's do not say), the
        // ones its config declares are the runtime's too.
        let parent = point(m.parent_mnt_id);
        let root = m.mountpoint == "/";
        if root || m.ext_mount == Some(true) || crate::ns::mnt::runtimes(&m.mountpoint, parent, &declared) {
            continue;
        }
        if m.fstype != Fstype::Tmpfs as u32 || !m.mountpoint.starts_with('/') {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!(
                    "the container's own mount at {:?}: only tmpfs mounts are made again",
                    m.mountpoint
                ),
            });
        }
        // Superblock options but the read-only state, which the flags carry.
        let data: Vec<&str> = m
            .options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | "seclabel" | "") && !o.contains('\0'))
            .collect();
        let ro = if m.options.split(',').any(|o| o == "ro") {
            libc::MS_RDONLY
        } else {
            0
        };
        let flags = u64::from(m.flags | ro as u32) & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_MOVE);
        puppet::mount_tmpfs(init, &m.mountpoint, flags, &data.join(","))?;
    }
    Ok(())
}

/// The images of a directory, by kind and id.
type Listed = Vec<(ImageKind, u64)>;

/// The images of the directory, and the mounts its mount images hold.
fn listed_and_mounts(dir: &ImageDir) -> Result<(Listed, Vec<MntEntry>), RestoreError> {
    let listed: Listed = dir.list()?.iter().filter_map(|l| l.kind).collect();
    let mut mounts = Vec::new();
    for &(kind, id) in listed.iter().filter(|(k, _)| *k == ImageKind::Mnts) {
        mounts.extend(dir.read_all::<MntEntry>(kind, id)?);
    }
    Ok((listed, mounts))
}

/// Makes the container's SysV objects again in its new IPC namespace.
fn restore_ipc(dir: &ImageDir, listed: &[(ImageKind, u64)], host: i32, pid: i32) -> Result<(), RestoreError> {
    let mut ids: Vec<u64> = listed
        .iter()
        .filter(|(k, _)| matches!(k, ImageKind::IpcnsShm | ImageKind::IpcnsSem | ImageKind::IpcnsMsg))
        .map(|&(_, id)| id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        crate::ns::ipc::restore(host, dir, id as u32).map_err(|what| RestoreError::Unsupported { pid, what })?;
    }
    Ok(())
}
