//! The preflight: what this version cannot dump is refused, naming the pid and the object,
//! before any task is stopped (namespaces, open files, pty and unix socket peers, memory).

use std::collections::BTreeSet;

use super::files::{self, FdTable, FileKind};
use super::{mm, read_proc, DumpError, DumpOpts};
use crate::{fds, procfs};

/// A task in namespaces other than ours would come back in ours: only a UTS namespace (whose
/// names are saved) and a container's namespaces (made again by its runtime, checked by
/// [`super::container::check_container`]) are accepted; each task of a container shares its root's.
pub(super) fn check_namespaces(pid: i32, root: i32, opts: &DumpOpts) -> Result<(), DumpError> {
    for kind in crate::ns::own_kinds(pid).into_iter().filter(|&k| k != "uts") {
        let refuse = |what: String| Err(DumpError::Unsupported { pid, what });
        if opts.container.is_none() {
            return refuse(format!(
                "runs in its own {kind} namespace: only a container's namespaces are saved (checkpoint it with stasis-runc)"
            ));
        }
        if kind == "time" {
            return refuse(format!("runs in its own {kind} namespace, which is not saved yet"));
        }
        // (A task ending as we look has no namespaces to read: not a nested one.)
        let theirs = crate::ns::inode(&pid.to_string(), kind);
        if theirs.is_some() && theirs != crate::ns::inode(&root.to_string(), kind) {
            return refuse(format!(
                "runs in a {kind} namespace of its own inside the container: nested namespaces are not saved"
            ));
        }
    }
    Ok(())
}

/// Refuses what this version cannot dump in task `pid`, before anything is stopped.
pub(super) fn precheck(
    pid: i32,
    opts: &DumpOpts,
    sockets: &fds::unix::Table,
    container_mounts: Option<&BTreeSet<i32>>,
) -> Result<Option<FdTable>, DumpError> {
    let file_locks = opts.file_locks;
    let stat = procfs::parse_stat(&read_proc(pid, "stat")?).ok_or(DumpError::Parse { pid, file: "stat" })?;
    if stat.state == 'Z' {
        return Ok(None); // a zombie holds nothing but its exit status
    }
    let status = procfs::parse_status(&read_proc(pid, "status")?).ok_or(DumpError::Parse { pid, file: "status" })?;
    if status.tracer_pid != 0 {
        return Err(DumpError::Remote(parasite::Error::AlreadyTraced {
            pid,
            tracer: status.tracer_pid,
        }));
    }
    check_namespaces(pid, opts.pid, opts)?;
    let fdt = files::collect(pid, opts, sockets)?;
    if let Some(mounts) = container_mounts {
        super::container::check_container_files(pid, &fdt, mounts, opts.shell_job)?;
    }
    if let Some(f) = fdt.files.iter().find(|f| !f.locks.is_empty()).filter(|_| !file_locks) {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "fd {} holds file locks: dump with --file-locks to save them",
                f.first_fd
            ),
        });
    }
    check_inet(pid, &fdt, opts)?;
    let maps = procfs::parse_maps(&read_proc(pid, "maps")?).ok_or(DumpError::Parse { pid, file: "maps" })?;
    for v in mm::classify(pid, &maps)?.iter().filter(|v| v.unlinked) {
        // An unlinked mapped file is saved whole: one over --ghost-limit is refused now.
        let source = format!("/proc/{pid}/map_files/{:x}-{:x}", v.entry.start, v.entry.end);
        let meta = std::fs::metadata(&source).map_err(|e| DumpError::proc(pid, &source, e))?;
        let linked_elsewhere = {
            use std::os::unix::fs::MetadataExt;
            meta.nlink() > 0
        };
        if linked_elsewhere && !opts.link_remap {
            // A copy would not be the file its other names reach.
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "mapping {:#x}-{:#x} of {} (deleted): the file has other links, which a copy would not reach: dump with --link-remap to link it back for the restore",
                    v.entry.start,
                    v.entry.end,
                    v.path.as_deref().unwrap_or("?")
                ),
            });
        }
        if linked_elsewhere {
            continue;
        }
        fds::ghost::entry(&meta, opts.ghost_limit).map_err(|what| DumpError::Unsupported {
            pid,
            what: format!(
                "mapping {:#x}-{:#x} of {} (deleted): {what}",
                v.entry.start,
                v.entry.end,
                v.path.as_deref().unwrap_or("?")
            ),
        })?;
    }
    Ok(Some(fdt))
}

/// Refuses inet sockets this dump would lose: connections without `--tcp-established`
/// (or `--tcp-close`), connections waiting in a listener's queue without
/// `--skip-in-flight`, TCP states no socket can be made in.
pub(super) fn check_inet(pid: i32, fdt: &FdTable, opts: &DumpOpts) -> Result<(), DumpError> {
    use fds::inet::state;
    for fd in &fdt.fds {
        let FileKind::Inet(p) = &fdt.files[fd.file].kind else {
            continue;
        };
        let refuse = |what: String| DumpError::Unsupported {
            pid,
            what: format!("fd {} (socket:[{}], {}): {what}", fd.fd, p.ino, p.describe()),
        };
        if p.is_tcp() && state::connected(p.state) && !opts.tcp_established && !opts.tcp_close {
            return Err(refuse(
                "an established TCP connection: dump with --tcp-established to save it (or --tcp-close to restore it closed)".into(),
            ));
        }
        if p.is_tcp() && matches!(p.state, state::SYN_SENT | state::SYN_RECV) {
            return Err(refuse("a connection being set up cannot be saved".into()));
        }
        if p.pending > 0 && !opts.skip_in_flight {
            return Err(refuse(format!(
                "{} connection(s) wait to be accepted: dump with --skip-in-flight to leave them out (their clients see them reset)",
                p.pending
            )));
        }
    }
    Ok(())
}

/// The indices of the pty masters the fd tables hold (their slaves are the tree's own).
pub(super) fn pty_masters<'a>(tables: impl Iterator<Item = &'a FdTable>) -> BTreeSet<u32> {
    tables
        .flat_map(|t| &t.files)
        .filter_map(|f| match f.kind {
            FileKind::PtyMaster { index } => Some(index),
            _ => None,
        })
        .collect()
}

/// A pty slave whose master is outside the tree is the caller's terminal: --shell-job.
pub(super) fn check_ptys(tables: &[(i32, FdTable)], shell_job: bool) -> Result<(), DumpError> {
    let masters = pty_masters(tables.iter().map(|(_, t)| t));
    for (pid, t) in tables {
        for fd in &t.fds {
            if let FileKind::PtySlave { path, rdev } = &t.files[fd.file].kind {
                if !shell_job && !masters.contains(&fds::tty::pty_index(*rdev)) {
                    return Err(DumpError::NeedShellJob {
                        pid: *pid,
                        fd: fd.fd,
                        path: path.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Refuses unix sockets whose other end is outside the tree (a datagram peer is allowed with
/// `--ext-unix-sk`), and connections waiting in a listener that a restore would lose.
pub(super) fn check_unix_peers(
    tables: &[(i32, FdTable)],
    sockets: &fds::unix::Table,
    ext_unix_sk: bool,
) -> Result<(), DumpError> {
    let held: BTreeSet<u32> = tables
        .iter()
        .flat_map(|(_, t)| &t.files)
        .filter_map(|f| match &f.kind {
            FileKind::Unix(d) => Some(d.ino),
            _ => None,
        })
        .collect();
    for (pid, t) in tables {
        for fd in &t.fds {
            let FileKind::Unix(d) = &t.files[fd.file].kind else {
                continue;
            };
            let refuse = |what: String| DumpError::Unsupported {
                pid: *pid,
                what: format!("fd {}: unix socket {}: {what}", fd.fd, d.ino),
            };
            let peer = sockets.peer_of(d);
            let stream = i32::from(d.kind) != libc::SOCK_DGRAM;
            if peer != 0 && !held.contains(&peer) && (stream || !ext_unix_sk) {
                return Err(refuse(format!(
                    "its peer (socket {peer}) is outside the dumped tree{}",
                    if stream {
                        ""
                    } else {
                        "; dump with --ext-unix-sk to reconnect to it by name"
                    }
                )));
            }
            for &client in &d.icons {
                if !held.contains(&client) {
                    return Err(refuse(format!(
                        "a connection from outside the tree (socket {client}) waits to be accepted"
                    )));
                }
                // The server side of the waiting connection is the client's peer.
                let embryo = sockets.by_ino.get(&client).and_then(|c| sockets.by_ino.get(&c.peer));
                if embryo.is_some_and(|e| e.rqlen.0 > 0) {
                    return Err(refuse("a connection not accepted yet has unread data".into()));
                }
            }
        }
    }
    Ok(())
}

/// The unix sockets the tree may hold: those of its network namespace (a container's own).
pub(super) fn unix_table(opts: &DumpOpts) -> Result<fds::unix::Table, DumpError> {
    let own_net = opts.container.is_some() && crate::ns::own_kinds(opts.pid).contains(&"net");
    let table = if own_net {
        fds::unix::Table::query_in(opts.pid)
    } else {
        fds::unix::Table::query()
    };
    table.map_err(|e| DumpError::proc(opts.pid, "sock_diag", e))
}
