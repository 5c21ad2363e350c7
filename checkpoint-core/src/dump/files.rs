//! Open files of a task, from `/proc/PID/fd` and `/proc/PID/fdinfo`. Regular files, directories
//! and character devices reopened by path (/dev/null...) are supported; terminals with
//! `--shell-job`; everything else is refused, naming the fd and its kind, before freezing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::DumpError;
use crate::image::pb;
use crate::procfs;
use crate::{fds, sys};

/// Character devices a task may hold that are simply reopened by path.
const REOPENABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// What an open file is.
#[derive(Clone, Debug, PartialEq)]
pub enum FileKind {
    /// A file, directory or plain device, reopened by path.
    Reg {
        path: String,
        size: u64,
        mode: u32,
    },
    /// The master side of a pty (/dev/ptmx), whose slave is /dev/pts/`index`.
    PtyMaster {
        index: u32,
    },
    /// A pty slave (/dev/pts/N).
    PtySlave {
        path: String,
        rdev: u64,
    },
    /// A memfd (its contents are saved once, with the memory objects).
    Memfd {
        name: String,
        size: u64,
    },
    /// An end of a named pipe; its buffered bytes are saved. An unlinked one has a ghost
    /// entry (no contents) for its node.
    Fifo {
        path: String,
        ino: u64,
        ghost: Option<pb::GhostFileEntry>,
    },
    /// A regular file unlinked while open, linked back for the restore (`--link-remap`).
    Linked {
        path: String,
    },
    /// A regular file unlinked while open (a "ghost"): its contents are saved.
    Ghost {
        path: String,
        ghost: pb::GhostFileEntry,
    },
    /// The system console (/dev/console) or a virtual terminal (/dev/ttyN), not the task's
    /// controlling terminal: reopened by its path (CRIU's console and vt terminals).
    Console {
        path: String,
        rdev: u64,
    },
    /// A terminal (restored from the caller's terminal with `--shell-job`).
    Tty {
        path: String,
        rdev: u64,
    },
    /// One end of a pipe. Its buffered bytes are saved when both ends are in the tree;
    /// otherwise the caller passes the pipe with `--inherit-fd fd[N]:pipe:[INO]`.
    Pipe {
        ino: u64,
    },
    EventFd(pb::EventfdFileEntry),
    SignalFd(pb::SignalfdEntry),
    TimerFd(pb::TimerfdEntry),
    Epoll(pb::EventpollFileEntry),
    Inotify(pb::InotifyFileEntry),
    Fanotify(pb::FanotifyFileEntry),
    /// An AF_UNIX socket, as sock_diag shows it.
    Unix(sys::UnixDiag),
    /// An IPv4/IPv6 socket (TCP or UDP).
    Inet(fds::inet::InetProbe),
    /// A netlink socket, by inode.
    Netlink(u32),
    /// An AF_PACKET socket, as sock_diag shows it.
    Packet(sys::PacketDiag),
    /// A pidfd of process `pid` (ours: as /proc shows it to us).
    Pidfd {
        pid: i32,
    },
}

/// One open file description, possibly behind several fds.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenFile {
    pub kind: FileKind,
    /// open(2) flags without O_CLOEXEC.
    pub flags: u32,
    pub pos: u64,
    pub mnt_id: i32,
    /// Device and inode of the file, and the first fd found on it (for kcmp across tasks).
    pub dev_ino: (u64, u64),
    pub first_fd: i32,
    /// The file locks held through it.
    pub locks: Vec<pb::FileLockEntry>,
    /// Who gets its signals (F_SETOWN, F_SETSIG), when anyone was set.
    pub owner: Option<sys::FileOwner>,
}

/// One fd: its number, close-on-exec, and the index of its open file.
#[derive(Clone, Debug, PartialEq)]
pub struct Fd {
    pub fd: i32,
    pub cloexec: bool,
    pub file: usize,
}

/// The fd table of a task.
#[derive(Clone, Debug, Default)]
pub struct FdTable {
    pub files: Vec<OpenFile>,
    pub fds: Vec<Fd>,
}

/// /dev/console (5:1), or a virtual terminal /dev/tty0../dev/tty63 (4:0..63).
fn is_console_or_vt(rdev: u64) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (major, minor) == (5, 1) || (major == 4 && minor < 64)
}

/// Whether terminal `rdev` is the controlling terminal of `pid` (tty_nr of its stat).
fn is_ctty(pid: i32, rdev: u64) -> bool {
    let Some(st) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::procfs::parse_stat(&s))
    else {
        return true; // unknown: as a terminal (refused without --shell-job)
    };
    let nr = u64::from(st.tty_nr);
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
    nr != 0 && libc::makedev(major as u32, minor as u32) == rdev
}

fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    // 4: tty/ttyS, 5: /dev/tty & ptmx, 136-143: Unix98 pty slaves
    major == 4 || major == 5 || (136..=143).contains(&major)
}

/// An unlinked regular file small enough to be saved with the dump.
fn ghost(path: &str, meta: &fs::Metadata, limit: u64) -> Result<FileKind, String> {
    Ok(FileKind::Ghost {
        path: path.to_owned(),
        ghost: fds::ghost::entry(meta, limit)?,
    })
}

/// A socket that is not AF_UNIX, looked at through our copy of fd `fd` of `pid`.
fn other_socket(pid: i32, fd: i32, ino: u32) -> Result<FileKind, String> {
    use std::os::fd::AsFd;
    let ours = sys::copy_fd_of(pid, fd).map_err(|e| format!("pidfd_getfd: {e}"))?;
    let (family, kind, proto) = sys::socket_kind(ours.as_fd()).map_err(|e| format!("socket kind: {e}"))?;
    match family {
        libc::AF_INET | libc::AF_INET6 => {
            let p = fds::inet::InetProbe::of_task(pid, ours.as_fd(), ino).map_err(|e| e.to_string())?;
            if !p.is_supported() {
                return Err(format!(
                    "{} sockets (type {kind}, protocol {proto}) are not supported: only TCP, UDP, raw and ICMP ping sockets",
                    if family == libc::AF_INET { "IPv4" } else { "IPv6" }
                ));
            }
            Ok(FileKind::Inet(p))
        }
        libc::AF_NETLINK => Ok(FileKind::Netlink(ino)),
        libc::AF_PACKET => fds::packet::diag(pid, ino).map(FileKind::Packet),
        _ => Err(format!("sockets of address family {family} are not supported")),
    }
}

/// The owner of fd `fd` of `pid` (read through our copy of it), if one was set. An O_PATH fd
/// has none.
fn owner(pid: i32, fd: i32, flags: u32) -> Result<Option<sys::FileOwner>, DumpError> {
    if flags & libc::O_PATH as u32 != 0 {
        return Ok(None);
    }
    use std::os::fd::AsFd;
    let failed = |e| DumpError::proc(pid, &format!("fd {fd}: its owner (F_GETOWN_EX)"), e);
    let ours = sys::copy_fd_of(pid, fd).map_err(failed)?;
    let owner = sys::file_owner(ours.as_fd()).map_err(failed)?;
    Ok((owner.pid != 0 || owner.signal != 0).then_some(owner))
}

/// Reads the fd table of `pid`; unsupported fds are errors naming the fd.
pub fn collect(pid: i32, opts: &super::DumpOpts, sockets: &fds::unix::Table) -> Result<FdTable, DumpError> {
    let shell_job = opts.shell_job;
    let dir = format!("/proc/{pid}/fd");
    let mut numbers: Vec<i32> = fs::read_dir(&dir)
        .map_err(|e| DumpError::proc(pid, &dir, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut table = FdTable::default();
    // inode -> indices of open files with that inode, for kcmp dedup
    let mut by_inode: BTreeMap<(u64, u64), Vec<(usize, i32)>> = BTreeMap::new();
    for fd in numbers {
        let link_path = format!("{dir}/{fd}");
        let Ok(link) = fs::read_link(&link_path) else { continue }; // closed meanwhile
        let link = link.to_string_lossy().into_owned();
        let info_path = format!("/proc/{pid}/fdinfo/{fd}");
        // Gone since its link was read (closed, or the task ended: only before the tree is
        // frozen, when the precheck looks): as if it had not been listed.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let info_text = match fs::read_to_string(&info_path) {
            Err(e) if gone(&e) => continue,
            r => r.map_err(|e| DumpError::proc(pid, &info_path, e))?,
        };
        let info = procfs::parse_fdinfo(&info_text).ok_or(DumpError::Parse { pid, file: "fdinfo" })?;
        let meta = match fs::metadata(&link_path) {
            Err(e) if gone(&e) => continue,
            r => r.map_err(|e| DumpError::proc(pid, &link_path, e))?,
        };
        let ft = meta.file_type();
        let unsupported = |what: &str| DumpError::Unsupported {
            pid,
            what: format!("fd {fd} ({link}): {what}"),
        };
        // An O_PATH fd only names a place (a symlink itself with O_NOFOLLOW, a FIFO, a socket
        // file, a device...): reopened by path, whatever is there.
        let o_path = info.flags & libc::O_PATH as u32 != 0;
        let kind = if o_path && link.starts_with('/') && !link.ends_with(" (deleted)") {
            FileKind::Reg {
                path: link.clone(),
                size: 0,
                mode: meta.mode(),
            }
        } else if let Some(path) = link.strip_suffix(" (deleted)").filter(|p| p.starts_with('/')) {
            if let Some(name) = path.strip_prefix("/memfd:") {
                FileKind::Memfd {
                    name: name.to_owned(),
                    size: meta.len(),
                }
            } else if ft.is_fifo() {
                FileKind::Fifo {
                    path: path.to_owned(),
                    ino: meta.ino(),
                    ghost: Some(fds::ghost::entry(&meta, opts.ghost_limit).map_err(|what| unsupported(&what))?),
                }
            } else if meta.nlink() > 0 || (opts.link_remap && meta.is_file() && meta.len() > opts.ghost_limit) {
                // A copy would not be the file its other names still reach; one over the limit
                // is not copied.
                if !opts.link_remap {
                    return Err(unsupported(&format!(
                        "the file was unlinked from this name but has {} other link(s): a copy would not be it; dump with --link-remap to link it back for the restore",
                        meta.nlink()
                    )));
                }
                FileKind::Linked { path: path.to_owned() }
            } else {
                ghost(path, &meta, opts.ghost_limit).map_err(|what| unsupported(&what))?
            }
        } else if ft.is_file() || ft.is_dir() {
            FileKind::Reg {
                path: link.clone(),
                size: meta.len(),
                mode: meta.mode(),
            }
        } else if ft.is_char_device() && (libc::major(meta.rdev()), libc::minor(meta.rdev())) == (5, 2) {
            let index = fds::field_of(&info_text, "tty-index").and_then(|v| v.parse().ok());
            FileKind::PtyMaster {
                index: index.ok_or(DumpError::Parse { pid, file: "fdinfo" })?,
            }
        } else if ft.is_char_device() && (136..=143).contains(&libc::major(meta.rdev())) {
            // A pty slave: ours to rebuild if its master is in the tree, else the caller's
            // terminal (the tree-wide check decides).
            FileKind::PtySlave {
                path: link.clone(),
                rdev: meta.rdev(),
            }
        } else if ft.is_char_device() && is_console_or_vt(meta.rdev()) && !is_ctty(pid, meta.rdev()) {
            FileKind::Console {
                path: link.clone(),
                rdev: meta.rdev(),
            }
        } else if ft.is_char_device() && is_tty(meta.rdev()) {
            if !shell_job {
                return Err(DumpError::NeedShellJob { pid, fd, path: link });
            }
            FileKind::Tty {
                path: link.clone(),
                rdev: meta.rdev(),
            }
        } else if ft.is_char_device() && REOPENABLE_DEVICES.contains(&link.as_str()) {
            FileKind::Reg {
                path: link.clone(),
                size: 0,
                mode: meta.mode(),
            }
        } else if ft.is_fifo() && link.starts_with("pipe:[") {
            FileKind::Pipe { ino: meta.ino() }
        } else if ft.is_fifo() {
            FileKind::Fifo {
                path: link.clone(),
                ino: meta.ino(),
                ghost: None,
            }
        } else if ft.is_socket() {
            match sockets.by_ino.get(&(meta.ino() as u32)) {
                Some(d) => FileKind::Unix(d.clone()),
                None => other_socket(pid, fd, meta.ino() as u32).map_err(|what| unsupported(&what))?,
            }
        } else if let Some(kind) = link.strip_prefix("anon_inode:") {
            let flags = info.flags & !(libc::O_CLOEXEC as u32);
            let parsed = match kind {
                "[eventfd]" => fds::eventfd::collect(&info_text, flags).map(FileKind::EventFd),
                "[signalfd]" => fds::signalfd::collect(&info_text, flags).map(FileKind::SignalFd),
                "[timerfd]" => fds::timerfd::collect(&info_text, flags).map(FileKind::TimerFd),
                "[eventpoll]" => fds::epoll::collect(&info_text, flags).map(FileKind::Epoll),
                "[pidfd]" => {
                    let pid: Option<i32> = fds::field_of(&info_text, "Pid").and_then(|v| v.parse().ok());
                    match pid {
                        Some(p) if p <= 0 => return Err(unsupported("a pidfd of a process that has ended")),
                        // PIDFD_THREAD (O_EXCL): a pidfd of one thread.
                        Some(_) if flags & libc::O_EXCL as u32 != 0 => {
                            return Err(unsupported("a pidfd of one thread (PIDFD_THREAD) is not supported yet"))
                        }
                        p => p.map(|pid| FileKind::Pidfd { pid }),
                    }
                }
                "inotify" => fds::inotify::collect(pid, &info_text, flags).map(FileKind::Inotify),
                "[fanotify]" => match fds::fanotify::collect(pid, &info_text, flags) {
                    Some(f) => Some(FileKind::Fanotify(f)),
                    None => {
                        return Err(unsupported(
                            "a fanotify mark on a superblock or on a file no longer reachable",
                        ))
                    }
                },
                _ => return Err(unsupported(&format!("{kind} files are not supported"))),
            };
            match parsed {
                Some(FileKind::Inotify(i)) if i.wd.iter().any(|w| w.f_handle.path.is_none()) => {
                    return Err(unsupported("an inotify watch on a file no longer reachable by path"));
                }
                Some(k) => k,
                None => return Err(DumpError::Parse { pid, file: "fdinfo" }),
            }
        } else {
            return Err(unsupported("this kind of file is not supported"));
        };
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let key = (meta.dev(), meta.ino());
        let mut shared = None;
        for &(idx, other_fd) in by_inode.get(&key).map(Vec::as_slice).unwrap_or(&[]) {
            if sys::same_file(pid, fd, pid, other_fd).map_err(|e| DumpError::proc(pid, "kcmp", e))? {
                shared = Some(idx);
                break;
            }
        }
        let file = match shared {
            Some(idx) => idx,
            None => {
                table.files.push(OpenFile {
                    kind,
                    flags: info.flags & !(libc::O_CLOEXEC as u32),
                    pos: info.pos,
                    mnt_id: info.mnt_id,
                    dev_ino: key,
                    first_fd: fd,
                    locks: fds::locks::collect(&info_text, pid, fd).ok_or_else(|| {
                        unsupported("a lock of a kind not supported (a lease being broken, a delegation...)")
                    })?,
                    owner: owner(pid, fd, info.flags)?,
                });
                let idx = table.files.len() - 1;
                by_inode.entry(key).or_default().push((idx, fd));
                idx
            }
        };
        table.fds.push(Fd { fd, cloexec, file });
    }
    // Epoll registrations whose fd was closed or moved, by the fd holding their file now.
    let numbers: Vec<i32> = table.fds.iter().map(|f| f.fd).collect();
    for f in &mut table.files {
        if let FileKind::Epoll(e) = &mut f.kind {
            fds::epoll::resolve(pid, f.first_fd, e, &numbers).map_err(|what| DumpError::Unsupported { pid, what })?;
        }
    }
    Ok(table)
}
