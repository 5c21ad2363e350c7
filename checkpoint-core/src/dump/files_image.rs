//! files.img and the images beside it (tty-info, memfd, ghost files, remaps, socket queues,
//! file locks, pipe and FIFO contents) for the whole tree: one entry per open file description,
//! however many fds and tasks share it, built fd by fd and written once the tree is dumped.

use std::collections::BTreeMap;
use std::fs;

use super::files::{self, FileKind};
use super::DumpError;
use crate::image::pb::{self, FdTypes};
use crate::image::{ImageDir, ImageKind};
use crate::{fds, sys};

/// Our copy of fd `fd` of (stopped) task `pid`, the same open file (pidfd_getfd).
fn fd_copy(pid: i32, fd: i32) -> Result<std::os::fd::OwnedFd, DumpError> {
    sys::copy_fd_of(pid, fd).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: pidfd_getfd"), e))
}

/// The entry (and bytes) of what pipe or FIFO `ino` holds, read without taking it through our
/// fd `ours` on it (fd `fd` of `pid`, for errors); none for an empty pipe of the default size.
fn pipe_contents(
    ino: u64,
    (pid, fd): (i32, i32),
    ours: std::os::fd::BorrowedFd<'_>,
) -> Result<Option<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
    let (data, cap) = sys::peek_pipe(ours).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: tee"), e))?;
    if data.is_empty() && cap == DEFAULT_PIPE_CAPACITY {
        return Ok(None);
    }
    let entry = pb::PipeDataEntry {
        pipe_id: ino as u32,
        bytes: data.len() as u32,
        size: Some(cap),
    };
    Ok(Some((entry, data)))
}

/// What a new pipe holds (16 pages).
const DEFAULT_PIPE_CAPACITY: u32 = 65536;

/// An open file already in files.img: a pid, its fd on the file, and the entry id.
type SeenFile = (i32, i32, u32);

/// The files.img entries of the whole tree: one per mapped path and one per open file
/// description, however many fds and tasks share it.
#[derive(Default)]
pub(super) struct FilesImage {
    pub(super) entries: Vec<pb::FileEntry>,
    by_path: BTreeMap<String, u32>,
    tty_infos: Vec<pb::TtyInfoEntry>,
    /// Open files seen so far, by (device, inode): a task's fd on one and the entry id.
    by_inode: BTreeMap<(u64, u64), Vec<SeenFile>>,
    /// Pipes by inode: a (pid, fd) of their read end, and whether a write end was seen.
    pipes: BTreeMap<u64, (Option<(i32, i32)>, bool)>,
    /// Every unix socket of the network namespace, read once the tree is frozen.
    pub(super) sockets: fds::unix::Table,
    /// filelocks.img.
    pub(super) locks: Vec<pb::FileLockEntry>,
    /// The pty masters held in the tree (their slaves are rebuilt, not the caller's).
    pub(super) pty_masters: std::collections::BTreeSet<u32>,
    /// Sessions with a controlling terminal: by the terminal's device, the session and its
    /// foreground group.
    pub(super) ctty: BTreeMap<u64, (u32, u32)>,
    /// memfd.img: one entry per memfd, by inode; and where to read each one's contents.
    memfd_inodes: Vec<(u64, pb::MemfdInodeEntry)>,
    pub(super) memfd_sources: Vec<(u64, i32, String, u64)>,
    /// FIFOs by inode, with a (pid, fd) through which to read what they hold.
    fifos: Vec<(u64, i32, i32)>,
    /// Unlinked files: their ghost-file images (by inode: one per file, however many opens).
    pub(super) ghosts: Vec<((u64, u64), pb::GhostFileEntry, fds::ghost::Chunks)>,
    /// remap-fpath.img: which files.img entries are ghosts.
    pub(super) remaps: Vec<pb::RemapFilePathEntry>,
    /// Unlinked files linked back (`--link-remap`): the links (removed if the dump fails), and
    /// the files.img id of each one's link, by device and inode.
    pub(super) links: fds::link_remap::Links,
    pub(super) linked: Vec<((u64, u64), u32)>,
    /// inotify watches on files since deleted: (pid, fd, watch descriptor, device and inode).
    pub(super) deleted_watches: Vec<(i32, i32, u32, (u64, u64))>,
    /// The files.img entries of unlinked mapped files (ghosts or linked back), by device and
    /// inode.
    pub(super) mapped_ghosts: Vec<((u64, u64), u32)>,
    /// sk-queues.img: the data queued in each socket (by the id of the socket that reads it).
    sk_queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
    /// How TCP connections are dumped: (--tcp-established, --tcp-close).
    pub(super) tcp_mode: (bool, bool),
    /// The largest unlinked file saved (`--ghost-limit`).
    pub(super) ghost_limit: u64,
    /// The TCP connections to read in repair mode once every file is seen.
    pub(super) tcp: Vec<fds::tcp::Pending>,
    /// The processes of the tree (our pids), and the pids they have inside: what a pidfd may
    /// name.
    pub(super) tree_pids: std::collections::BTreeSet<i32>,
    pub(super) pids: crate::ns::pid::PidMap,
}

impl FilesImage {
    fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    pub(super) fn reg(&mut self, path: &str, flags: u32, pos: u64, mnt_id: i32) -> u32 {
        let id = self.next_id();
        let meta = fs::metadata(path).ok();
        use std::os::unix::fs::MetadataExt;
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: pb::FownEntry::default(),
                name: path.to_owned(),
                mnt_id: (mnt_id >= 0).then_some(mnt_id),
                size: meta.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
                mode: meta.as_ref().map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        id
    }

    /// Records who gets the signals of open file `id` (of task `pid`, whose `status` gives the
    /// ids F_SETOWN recorded when the kernel does not tell them): the owner by its pid inside.
    pub(super) fn set_owner(
        &mut self,
        pid: i32,
        id: u32,
        owner: sys::FileOwner,
        pids: &crate::ns::pid::PidMap,
        status: &crate::procfs::Status,
    ) -> Result<(), DumpError> {
        let inside = if owner.pid == 0 { 0 } else { pids.inside(owner.pid) };
        if owner.pid != 0 && inside == 0 {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "an open file sends its signals (F_SETOWN) to {}, outside the dump",
                    owner.pid
                ),
            });
        }
        let (uid, euid) = owner.uids.unwrap_or((status.uids[0], status.uids[1]));
        let fown = pb::FownEntry {
            uid,
            euid,
            signum: owner.signal,
            pid_type: owner.kind,
            pid: inside as u32,
        };
        // A FIFO's owner is kept in the entry of its path.
        let mut at = id as usize - 1;
        if let Some(regf) = self
            .entries
            .get(at)
            .and_then(|e| e.fifo.as_ref())
            .and_then(|f| f.regf_id)
        {
            at = regf as usize - 1;
        }
        match self.entries.get_mut(at).map(|e| e.set_owner(fown)) {
            Some(true) => Ok(()),
            _ => Err(DumpError::Unsupported {
                pid,
                what: format!("file {id} has an owner (F_SETOWN) that its kind of image cannot hold"),
            }),
        }
    }

    /// One REG entry per path, shared by mappings, exe, cwd and root.
    pub(super) fn path(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.by_path.get(path) {
            return id;
        }
        let id = self.reg(path, 0, 0, -1);
        self.by_path.insert(path.to_owned(), id);
        id
    }

    fn pipe(&mut self, ino: u64, flags: u32) -> u32 {
        self.anon(FdTypes::Pipe, |id, e| {
            e.pipe = Some(pb::PipeEntry {
                id,
                pipe_id: ino as u32,
                flags,
                fown: pb::FownEntry::default(),
            })
        })
    }

    /// A TTY entry of CRIU's console or vt kind (reopened by path).
    fn console(&mut self, path: &str, rdev: u64, flags: u32) -> u32 {
        let id = self.tty(path, rdev, flags);
        let kind = if libc::major(rdev) == 5 {
            pb::TtyType::Console
        } else {
            pb::TtyType::Vt
        };
        if let Some(info) = self.tty_infos.last_mut() {
            info.r#type = kind as i32;
            info.pty = None;
        }
        id
    }

    fn tty(&mut self, path: &str, rdev: u64, flags: u32) -> u32 {
        let regf = self.reg(path, flags, 0, -1);
        let id = self.next_id();
        // Above the ids of the ptys made in the tree (2 x index, + 1).
        let info_id = (1 << 21) + self.tty_infos.len() as u32;
        self.tty_infos.push(pb::TtyInfoEntry {
            id: info_id,
            r#type: pb::TtyType::Pty as i32,
            rdev: rdev as u32,
            pty: Some(pb::TtyPtyEntry {
                index: libc::minor(rdev),
            }),
            ..Default::default()
        });
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info_id,
                flags,
                fown: pb::FownEntry::default(),
                regf_id: Some(regf),
            }),
            ..Default::default()
        });
        id
    }

    /// A TTY entry for an end of a pty made in the tree, with its settings (read through a
    /// copy of fd `f.first_fd` of `pid`).
    fn pty(&mut self, pid: i32, f: &files::OpenFile, path: &str, rdev: u64, index: u32) -> Result<u32, DumpError> {
        use std::os::fd::AsFd;
        let fd = f.first_fd;
        let ours = fd_copy(pid, fd)?;
        let slave_rdev = libc::makedev(136 + index / 256, index % 256);
        let session = self.ctty.get(&slave_rdev).copied().unwrap_or((0, 0));
        let mut info = fds::tty::collect(ours.as_fd(), index, rdev, session)
            .map_err(|e| DumpError::proc(pid, &format!("fd {fd}: pty {index}"), e))?;
        // What waits to be read on a pty cannot be read without taking it: refused rather
        // than lost.
        let unread =
            sys::inq_len(ours.as_fd()).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: pty {index}"), e))?;
        if unread > 0 {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("fd {fd}: {path} (pty {index}) holds {unread} unread bytes, which are not saved yet"),
            });
        }
        let regf = self.reg(path, f.flags, 0, -1);
        // One tty-info per end of a pty, however many open files: the master's id is the
        // slave's with the low bit set (CRIU pairs the two ends by it).
        let master = (libc::major(rdev), libc::minor(rdev)) == fds::tty::PTMX;
        info.id = 2 * index + u32::from(master);
        let info_id = info.id;
        if !self.tty_infos.iter().any(|t| t.id == info_id) {
            self.tty_infos.push(info);
        }
        let entry = pb::TtyFileEntry {
            id: 0,
            tty_info_id: info_id,
            flags: f.flags,
            fown: pb::FownEntry::default(),
            regf_id: Some(regf),
        };
        Ok(self.anon(FdTypes::Tty, |id, e| e.tty = Some(pb::TtyFileEntry { id, ..entry })))
    }

    /// A MEMFD entry (an open file with `flags` at `pos`) on memfd `ino` of `pid`, readable at
    /// `path`; the memfd itself (name, size, seals) is noted once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn memfd(
        &mut self,
        pid: i32,
        path: String,
        name: &str,
        size: u64,
        ino: u64,
        flags: u32,
        pos: u64,
    ) -> Result<u32, DumpError> {
        use std::os::fd::AsRawFd;
        let inode_id = match self.memfd_inodes.iter().position(|(i, _)| *i == ino) {
            Some(n) => n as u32 + 1,
            None => {
                use std::os::unix::fs::MetadataExt;
                let file = fs::File::open(&path).map_err(|e| DumpError::proc(pid, &path, e))?;
                let meta = file.metadata().map_err(|e| DumpError::proc(pid, &path, e))?;
                let seals = sys::seals(file.as_raw_fd()).map_err(|e| DumpError::proc(pid, &path, e))?;
                let inode_id = self.memfd_inodes.len() as u32 + 1;
                self.memfd_inodes.push((
                    ino,
                    pb::MemfdInodeEntry {
                        name: name.to_owned(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        size: size.max(meta.len()),
                        shmid: ino as u32,
                        seals,
                        inode_id: inode_id.into(),
                        mode: Some(meta.mode()),
                        ..Default::default()
                    },
                ));
                self.memfd_sources.push((ino, pid, path, size.max(meta.len())));
                inode_id
            }
        };
        let entry = pb::MemfdFileEntry {
            id: 0,
            flags,
            pos,
            fown: pb::FownEntry::default(),
            inode_id,
        };
        Ok(self.anon(FdTypes::Memfd, |id, f| {
            f.memfd = Some(pb::MemfdFileEntry { id, ..entry })
        }))
    }

    /// The entry of unix socket `d` (fd `f.first_fd` of `pid`), its queued data, and an entry
    /// for its peer when that is outside the tree.
    /// An inet socket's entry; an established TCP connection also goes to the list read
    /// in repair mode later (or is saved closed with --tcp-close).
    fn inet_socket(&mut self, pid: i32, f: &files::OpenFile, p: &fds::inet::InetProbe) -> Result<u32, DumpError> {
        use std::os::fd::AsFd;
        let fd = f.first_fd;
        let ours = fd_copy(pid, fd)?;
        let ctx = |e: std::io::Error| DumpError::proc(pid, &format!("fd {fd}: {}", p.describe()), e);
        // Looked at again now that the tree is stopped.
        let now = fds::inet::InetProbe::of_task(pid, ours.as_fd(), p.ino).map_err(ctx)?;
        let mut entry = fds::inet::collect(&now, f.flags, ours.as_fd()).map_err(ctx)?;
        let refuse = |what: String| DumpError::Unsupported {
            pid,
            what: format!("fd {fd} (socket:[{}], {}): {what}", now.ino, now.describe()),
        };
        // A raw socket's queue holds copies of traffic, which it may always lose (as when
        // its buffer is full): not kept. A ping socket's holds its own replies: refused.
        if now.is_ping() && sys::has_queued(ours.as_fd()).map_err(ctx)? {
            return Err(refuse(
                "echo replies wait in its receive queue, which is not saved".into(),
            ));
        }
        // Datagrams waiting to be read are kept, with their senders.
        let datagrams = if now.is_udp() && sys::inq_len(ours.as_fd()).map_err(ctx)? > 0 {
            sys::peek_datagrams(ours.as_fd())
                .map_err(|e| refuse(format!("datagrams wait in its receive queue and cannot be read: {e}")))?
        } else {
            Vec::new()
        };
        let connected = now.is_tcp() && fds::inet::state::connected(now.state);
        let (established, close) = self.tcp_mode;
        if connected && close {
            entry.state = fds::inet::state::CLOSE.into();
        } else if connected && !established {
            return Err(refuse(
                "an established TCP connection: dump with --tcp-established".into(),
            ));
        }
        let id = self.anon(FdTypes::Inetsk, |id, f| {
            f.isk = Some(pb::InetSkEntry { id, ..entry.clone() })
        });
        for (from, data) in datagrams {
            let e = pb::SkPacketEntry {
                id_for: id,
                length: data.len() as u32,
                addr: Some(fds::udp::encode_addr(from)),
                scm: Vec::new(),
            };
            self.sk_queues.push((e, data));
        }
        if connected && !close {
            let (Some(local), Some(remote)) = (now.local, now.peer) else {
                return Err(refuse("a connection without addresses".into()));
            };
            self.tcp.push(fds::tcp::Pending {
                pid,
                fd,
                ino: now.ino,
                conn: crate::netlock::Conn { local, remote },
                what: now.describe(),
                sock: ours,
                reuseaddr: entry.opts.reuseaddr == Some(true),
            });
        }
        Ok(id)
    }

    fn unix_socket(&mut self, pid: i32, f: &files::OpenFile, d: &sys::UnixDiag) -> Result<u32, DumpError> {
        use std::os::fd::AsFd;
        let fd = f.first_fd;
        let ours = fd_copy(pid, fd)?;
        let ctx = |e: std::io::Error| DumpError::proc(pid, &format!("fd {fd}: unix socket {}", d.ino), e);
        let entry = fds::unix::collect(&self.sockets, d, f.flags, ours.as_fd()).map_err(ctx)?;
        // A listener's queue length counts waiting connections, not data.
        let peeked = if d.rqlen.0 > 0 && u32::from(d.state) != fds::unix::TCP_LISTEN {
            // Seqpacket messages keep their boundaries, like datagrams.
            let stream = i32::from(d.kind) == libc::SOCK_STREAM;
            // (Of a stream or seqpacket socket, the diag's queue length is its bytes; of a
            // datagram socket, its first datagram's.)
            let seqpacket = i32::from(d.kind) == libc::SOCK_SEQPACKET;
            let total = seqpacket.then_some(u64::from(d.rqlen.0));
            Some(sys::peek_queue(ours.as_fd(), stream, total).map_err(ctx)?)
        } else {
            None
        };
        if peeked.as_ref().is_some_and(|p| p.passes_fds) {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "fd {fd}: unix socket {}: its queue holds passed fds (SCM_RIGHTS)",
                    d.ino
                ),
            });
        }
        let id = self.anon(FdTypes::Unixsk, |id, f| {
            f.usk = Some(pb::UnixSkEntry { id, ..entry.clone() })
        });
        for m in peeked.into_iter().flat_map(|p| p.messages) {
            let e = pb::SkPacketEntry {
                id_for: id,
                length: m.len() as u32,
                addr: None,
                scm: Vec::new(),
            };
            self.sk_queues.push((e, m));
        }
        Ok(id)
    }

    /// Entries for the sockets outside the tree that its datagram sockets are connected to
    /// (the preflight refused any other outside peer), so a restore can reconnect by name.
    pub(super) fn add_external_peers(&mut self) {
        let inside: std::collections::BTreeSet<u32> = self
            .entries
            .iter()
            .filter_map(|e| e.usk.as_ref())
            .map(|u| u.ino)
            .collect();
        let wanted: std::collections::BTreeSet<u32> = self
            .entries
            .iter()
            .filter_map(|e| e.usk.as_ref())
            .map(|u| u.peer)
            .filter(|p| *p != 0 && !inside.contains(p))
            .collect();
        for ino in wanted {
            if let Some(ext) = self.sockets.by_ino.get(&ino).map(fds::unix::external) {
                self.anon(FdTypes::Unixsk, |id, f| f.usk = Some(pb::UnixSkEntry { id, ..ext }));
            }
        }
    }

    /// A new entry of type `kind`, its body filled in by `fill` (given the new id).
    fn anon(&mut self, kind: FdTypes, fill: impl FnOnce(u32, &mut pb::FileEntry)) -> u32 {
        let id = self.next_id();
        let mut entry = pb::FileEntry {
            r#type: kind as i32,
            id,
            ..Default::default()
        };
        fill(id, &mut entry);
        self.entries.push(entry);
        id
    }

    /// The entry of open file `f` of task `pid`: an existing one if another fd of the tree
    /// is the same open file description (kcmp), else a new one.
    pub(super) fn open_file(&mut self, pid: i32, f: &files::OpenFile) -> Result<(u32, FdTypes), DumpError> {
        let kind = match &f.kind {
            FileKind::Reg { .. } | FileKind::Ghost { .. } | FileKind::Linked { .. } => FdTypes::Reg,
            FileKind::Tty { .. } | FileKind::Console { .. } => FdTypes::Tty,
            FileKind::Pipe { .. } => FdTypes::Pipe,
            FileKind::Fifo { .. } => FdTypes::Fifo,
            FileKind::Memfd { .. } => FdTypes::Memfd,
            FileKind::PtyMaster { .. } | FileKind::PtySlave { .. } => FdTypes::Tty,
            FileKind::EventFd(_) => FdTypes::Eventfd,
            FileKind::SignalFd(_) => FdTypes::Signalfd,
            FileKind::TimerFd(_) => FdTypes::Timerfd,
            FileKind::Epoll(_) => FdTypes::Eventpoll,
            FileKind::Pidfd { .. } => FdTypes::Pidfd,
            FileKind::Inotify(_) => FdTypes::Inotify,
            FileKind::Fanotify(_) => FdTypes::Fanotify,
            FileKind::Unix(_) => FdTypes::Unixsk,
            FileKind::Inet(_) => FdTypes::Inetsk,
            FileKind::Netlink(_) => FdTypes::Netlinksk,
            FileKind::Packet(_) => FdTypes::Packetsk,
        };
        for &(other_pid, other_fd, id) in self.by_inode.get(&f.dev_ino).map(Vec::as_slice).unwrap_or(&[]) {
            if sys::same_file(pid, f.first_fd, other_pid, other_fd).map_err(|e| DumpError::proc(pid, "kcmp", e))? {
                return Ok((id, kind));
            }
        }
        let id = match &f.kind {
            FileKind::Reg { path, .. } => self.reg(path, f.flags, f.pos, f.mnt_id),
            FileKind::PtyMaster { index } => self.pty(pid, f, "/dev/ptmx", libc::makedev(5, 2), *index)?,
            FileKind::PtySlave { path, rdev } if self.pty_masters.contains(&fds::tty::pty_index(*rdev)) => {
                self.pty(pid, f, path, *rdev, fds::tty::pty_index(*rdev))?
            }
            // The caller's terminal (the preflight asked for --shell-job).
            FileKind::PtySlave { path, rdev } => self.tty(path, *rdev, f.flags),
            FileKind::Memfd { name, size } => {
                let path = format!("/proc/{pid}/fd/{}", f.first_fd);
                self.memfd(pid, path, name, *size, f.dev_ino.1, f.flags, f.pos)?
            }
            FileKind::Fifo { path, ino, ghost } => {
                let regf = self.reg(path, f.flags, 0, if ghost.is_some() { -1 } else { f.mnt_id });
                if let Some(ghost) = ghost {
                    // An unlinked FIFO: its node is a ghost (no contents), its data the pipe's.
                    let remap_id = self.ghost(pid, f, ghost)?;
                    self.remap(regf, remap_id, pb::RemapType::Ghost);
                }
                if !self.fifos.iter().any(|(i, ..)| i == ino) {
                    self.fifos.push((*ino, pid, f.first_fd));
                }
                let fifo = pb::FifoEntry {
                    id: 0,
                    pipe_id: *ino as u32,
                    regf_id: Some(regf),
                };
                self.anon(FdTypes::Fifo, |id, e| e.fifo = Some(pb::FifoEntry { id, ..fifo }))
            }
            FileKind::Linked { path } => self.linked(pid, f, path)?,
            FileKind::Ghost { path, ghost } => {
                // No mount id: CRIU looks a ghost's mount up in the mounts of the dump, and
                // this dump has none (its mount namespace is the restorer's).
                let id = self.reg(path, f.flags, f.pos, -1);
                let remap_id = self.ghost(pid, f, ghost)?;
                self.remap(id, remap_id, pb::RemapType::Ghost);
                id
            }
            FileKind::Tty { path, rdev } => self.tty(path, *rdev, f.flags),
            FileKind::Console { path, rdev } => self.console(path, *rdev, f.flags),
            FileKind::Pipe { ino } => {
                let ends = self.pipes.entry(*ino).or_insert((None, false));
                let access = f.flags as i32 & libc::O_ACCMODE;
                if access != libc::O_WRONLY && ends.0.is_none() {
                    ends.0 = Some((pid, f.first_fd));
                }
                if access != libc::O_RDONLY {
                    ends.1 = true;
                }
                self.pipe(*ino, f.flags)
            }
            FileKind::EventFd(e) => self.anon(kind, |id, f| f.efd = Some(pb::EventfdFileEntry { id, ..e.clone() })),
            FileKind::SignalFd(e) => self.anon(kind, |id, f| f.sgfd = Some(pb::SignalfdEntry { id, ..e.clone() })),
            FileKind::TimerFd(e) => self.anon(kind, |id, f| f.tfd = Some(pb::TimerfdEntry { id, ..e.clone() })),
            FileKind::Pidfd { pid: target } => {
                if !self.tree_pids.contains(target) {
                    return Err(DumpError::Unsupported {
                        pid,
                        what: format!("fd {}: a pidfd of pid {target}, outside the dump", f.first_fd),
                    });
                }
                let nspid = self.pids.inside(*target);
                let ino = f.dev_ino.1 as u32;
                self.anon(kind, |id, e| {
                    e.pidfd = Some(pb::PidfdEntry {
                        id,
                        ino,
                        flags: f.flags,
                        nspid,
                        fown: pb::FownEntry::default(),
                    })
                })
            }
            FileKind::Epoll(e) => self.anon(kind, |id, f| {
                let tfd = e
                    .tfd
                    .iter()
                    .map(|t| pb::EventpollTfdEntry { id, ..t.clone() })
                    .collect();
                f.epfd = Some(pb::EventpollFileEntry { id, tfd, ..e.clone() })
            }),
            FileKind::Unix(d) => self.unix_socket(pid, f, d)?,
            FileKind::Inet(p) => self.inet_socket(pid, f, p)?,
            FileKind::Packet(d) => {
                use std::os::fd::AsFd;
                let ours = fd_copy(pid, f.first_fd)?;
                let entry = fds::packet::collect(d, f.flags, ours.as_fd()).map_err(|e| DumpError::Unsupported {
                    pid,
                    what: format!(
                        "fd {} ({}): {e}",
                        f.first_fd,
                        fds::packet::describe(d.ino, d.num.to_be().into(), d.ifindex)
                    ),
                })?;
                self.anon(FdTypes::Packetsk, |id, f| {
                    f.psk = Some(pb::PacketSockEntry { id, ..entry })
                })
            }
            FileKind::Netlink(ino) => {
                use std::os::fd::AsFd;
                let ours = fd_copy(pid, f.first_fd)?;
                let entry = fds::netlink::collect(*ino, f.flags, ours.as_fd())
                    .map_err(|e| DumpError::proc(pid, &format!("fd {}: netlink socket {ino}", f.first_fd), e))?;
                self.anon(FdTypes::Netlinksk, |id, f| {
                    f.nlsk = Some(pb::NetlinkSkEntry { id, ..entry })
                })
            }
            FileKind::Fanotify(e) => self.anon(kind, |id, f| {
                let mark = e
                    .mark
                    .iter()
                    .map(|m| pb::FanotifyMarkEntry { id, ..m.clone() })
                    .collect();
                f.ffy = Some(pb::FanotifyFileEntry { id, mark, ..e.clone() })
            }),
            FileKind::Inotify(e) => {
                // A watch on a file since deleted is made again on the file's ghost: one the
                // tree holds open (checked once every file is seen).
                for w in e.wd.iter().filter(|w| fds::inotify::on_deleted(w)) {
                    let key = (fds::user_dev(w.s_dev), w.i_ino);
                    self.deleted_watches.push((pid, f.first_fd, w.wd, key));
                }
                self.anon(kind, |id, f| {
                    let wd = e.wd.iter().map(|w| pb::InotifyWdEntry { id, ..w.clone() }).collect();
                    f.ify = Some(pb::InotifyFileEntry { id, wd, ..e.clone() })
                })
            }
        };
        self.by_inode.entry(f.dev_ino).or_default().push((pid, f.first_fd, id));
        Ok((id, kind))
    }

    /// pipes-data.img: the bytes buffered in every pipe whose both ends are in the tree (a
    /// pipe with an end outside is the caller's, and keeps its data).
    /// fifo-data.img: the bytes buffered in each FIFO of the tree, read (and left) through a
    /// new open of it.
    fn fifo_data(&self) -> Result<Vec<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = Vec::new();
        for &(ino, pid, fd) in &self.fifos {
            let path = format!("/proc/{pid}/fd/{fd}");
            let ours = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| DumpError::proc(pid, &path, e))?;
            out.extend(pipe_contents(ino, (pid, fd), ours.as_fd())?);
        }
        Ok(out)
    }

    fn pipe_data(&self) -> Result<Vec<(pb::PipeDataEntry, Vec<u8>)>, DumpError> {
        let mut out = Vec::new();
        for (&ino, &(reader, writer)) in &self.pipes {
            let Some((pid, fd)) = reader else {
                continue;
            };
            use std::os::fd::AsFd;
            let ours = fd_copy(pid, fd)?;
            if writer {
                out.extend(pipe_contents(ino, (pid, fd), ours.as_fd())?);
                continue;
            }
            // Only its read end is in the tree: if every writer has closed (the reader sees
            // the end after the data), the pipe is the tree's: saved, even empty (its entry
            // says so), and made again without a writer. Otherwise it is the caller's.
            let gone =
                sys::pipe_widowed(ours.as_fd()).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: poll"), e))?;
            if gone {
                let (data, cap) =
                    sys::peek_pipe(ours.as_fd()).map_err(|e| DumpError::proc(pid, &format!("fd {fd}: tee"), e))?;
                let entry = pb::PipeDataEntry {
                    pipe_id: ino as u32,
                    bytes: data.len() as u32,
                    size: Some(cap),
                };
                out.push((entry, data));
            }
        }
        Ok(out)
    }

    /// Writes the images of the objects behind the entries: ghost files, file locks, remaps,
    /// socket queues, memfd inodes (their contents go with the shared memory).
    pub(super) fn write_objects(&self, dir: &ImageDir) -> Result<(), DumpError> {
        for (i, (_, ghost, chunks)) in self.ghosts.iter().enumerate() {
            let mut w = dir.writer(ImageKind::GhostFile, i as u64 + 1)?;
            w.write(ghost)?;
            for (off, data) in chunks {
                if ghost.chunks == Some(true) {
                    w.write(&pb::GhostChunkEntry {
                        len: data.len() as u64,
                        off: *off,
                    })?;
                }
                w.write_payload(data)?;
            }
            w.finish()?;
        }
        if !self.locks.is_empty() {
            dir.write_all(ImageKind::FileLocks, 0, &self.locks)?;
        }
        if !self.remaps.is_empty() {
            dir.write_all(ImageKind::RemapFpath, 0, &self.remaps)?;
        }
        if !self.sk_queues.is_empty() {
            let mut w = dir.writer(ImageKind::SkQueues, 0)?;
            for (entry, data) in &self.sk_queues {
                w.write(entry)?;
                w.write_payload(data)?;
            }
            w.finish()?;
        }
        if !self.memfd_inodes.is_empty() {
            let inodes: Vec<pb::MemfdInodeEntry> = self.memfd_inodes.iter().map(|(_, e)| e.clone()).collect();
            dir.write_all(ImageKind::MemfdInode, 0, &inodes)?;
        }
        Ok(())
    }

    /// Writes files.img, tty-info.img, and what the pipes and FIFOs of the tree hold.
    pub(super) fn write_table(&self, dir: &ImageDir) -> Result<(), DumpError> {
        dir.write_all(ImageKind::Files, 0, &self.entries)?;
        if !self.tty_infos.is_empty() {
            dir.write_all(ImageKind::TtyInfo, 0, &self.tty_infos)?;
        }
        for (kind, data) in [
            (ImageKind::PipesData, self.pipe_data()?),
            (ImageKind::FifoData, self.fifo_data()?),
        ] {
            if data.is_empty() {
                continue;
            }
            let mut w = dir.writer(kind, 0)?;
            for (entry, bytes) in &data {
                w.write(entry)?;
                w.write_payload(bytes)?;
            }
            w.finish()?;
        }
        Ok(())
    }
}
