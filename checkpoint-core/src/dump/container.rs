//! A container's dump: its namespaces checked before anything is frozen (it is a whole
//! container, and holds nothing its runtime would not make again), then what they hold saved
//! (mounts, tmpfs contents, SysV IPC, its network namespace, cgroup settings).

use std::collections::BTreeSet;
use std::path::Path;

use super::files::{FdTable, FileKind};
use super::DumpError;
use crate::image::pb;
use crate::image::{ImageDir, ImageKind};

/// A container's namespaces, checked at its root (its init) before anything is frozen: it is
/// the init of its pid namespace, its network namespace has only devices made again, its IPC
/// namespace is empty, and its mounts are those its runtime makes. Returns the container's
/// mounts, if it has its own mount namespace.
pub(super) fn check_container(
    root: i32,
    spec: &crate::ns::ContainerSpec,
) -> Result<Option<crate::ns::mnt::View>, DumpError> {
    use crate::ns;
    let own = ns::own_kinds(root);
    let refuse = |what: String| DumpError::Unsupported { pid: root, what };
    if own.contains(&"pid") {
        let levels = ns::pid::levels(root).unwrap_or_default();
        if levels.len() != 2 || levels[1] != 1 {
            return Err(refuse(format!(
                "is not the init of a pid namespace just below ours (pids {levels:?}): only a whole container is dumped"
            )));
        }
    }
    if own.contains(&"net") && !spec.external.iter().any(|k| k == "net") {
        let externals = ns::net::externals(&spec.externals).map_err(refuse)?;
        ns::net::check(root, &externals).map_err(refuse)?;
    }
    if own.contains(&"ipc") && !spec.external.iter().any(|k| k == "ipc") {
        let n = ns::ipc::posix_queues(root);
        if n > 0 {
            return Err(refuse(format!(
                "its IPC namespace holds {n} POSIX message queue(s): they are not saved yet"
            )));
        }
    }
    if own.contains(&"mnt") {
        return ns::mnt::check(root, &spec.declared_mounts).map(Some).map_err(refuse);
    }
    Ok(None)
}

/// Files a restore inside a container cannot make again yet, or that live outside the
/// container (on a mount it does not have: only its stdio, which the runtime passes again).
/// With `console`, a terminal whose master is outside is the container's console (its
/// runtime makes a new one on restore).
pub(super) fn check_container_files(
    pid: i32,
    fdt: &FdTable,
    mounts: &BTreeSet<i32>,
    console: bool,
) -> Result<(), DumpError> {
    for fd in &fdt.fds {
        let f = &fdt.files[fd.file];
        let kind = match &f.kind {
            FileKind::Tty { .. } | FileKind::PtySlave { .. } if console => continue,
            FileKind::Reg { path, .. } if !mounts.contains(&f.mnt_id) && fd.fd > 2 => {
                format!("{path}, which is outside the container (on a mount it does not have)")
            }
            FileKind::Tty { path, .. } | FileKind::Console { path, .. } => format!("the terminal {path}"),
            FileKind::Fanotify(_) => "a fanotify group (its marks name mounts by id)".into(),
            _ => continue,
        };
        return Err(DumpError::Unsupported {
            pid,
            what: format!("fd {}: {kind}: not restored inside a container yet", fd.fd),
        });
    }
    Ok(())
}

/// What a container's own namespaces (`own`, of root task `root` with namespace ids `ids`)
/// and cgroups hold that its runtime does not make again: its mounts and tmpfs contents, its
/// SysV objects (made again at their ids), its network namespace, its cgroups' settings.
pub(super) fn dump_container(
    dir: &ImageDir,
    root: i32,
    spec: &crate::ns::ContainerSpec,
    own: &[&str],
    ids: &pb::TaskKobjIdsEntry,
    mounts: Option<&crate::ns::mnt::View>,
) -> Result<(), DumpError> {
    let saved = |kind: &str| own.contains(&kind) && !spec.external.iter().any(|k| k == kind);
    let refuse = |what: String| DumpError::Unsupported { pid: root, what };
    if let Some(view) = mounts {
        dump_mounts(dir, root, ids.mnt_ns_id.unwrap_or(0), view)?;
    }
    if saved("net") {
        let externals = crate::ns::net::externals(&spec.externals).map_err(refuse)?;
        crate::ns::net::dump(root, dir, ids.net_ns_id.unwrap_or(0), &externals).map_err(refuse)?;
    }
    if saved("ipc") {
        crate::ns::ipc::dump(root, dir, ids.ipc_ns_id.unwrap_or(0)).map_err(refuse)?;
    }
    let cgroups = crate::ns::cgroup::dump(root).map_err(|e| DumpError::proc(root, "cgroup", e))?;
    dir.write_all(ImageKind::Cgroup, 0, &[cgroups])?;
    Ok(())
}

/// A container's mount namespace: its mounts (all made again by its runtime) and the contents
/// of its tmpfs mounts, read while the tree is frozen.
fn dump_mounts(dir: &ImageDir, root: i32, mnt_ns_id: u32, view: &crate::ns::mnt::View) -> Result<(), DumpError> {
    use crate::ns::tmpfs;
    dir.write_all(ImageKind::Mnts, mnt_ns_id.into(), &crate::ns::mnt::entries(view))?;
    for (mnt_id, mount_point) in &view.tmpfs {
        let path = Path::new(&format!("/proc/{root}/root")).join(mount_point.trim_start_matches('/'));
        if tmpfs::is_empty(&path) {
            continue;
        }
        // Named by the filesystem's device (the kernel's encoding), as CRIU names them.
        let Some(m) = view.mounts.iter().find(|m| m.id == *mnt_id) else {
            continue;
        };
        let (file, _) = dir.create_raw(ImageKind::TmpfsDev, u64::from((m.dev.0 << 20) | m.dev.1))?;
        tmpfs::archive(&path, file).map_err(|e| DumpError::Unsupported {
            pid: root,
            what: format!("the tmpfs at {mount_point}: {e}"),
        })?;
    }
    Ok(())
}
