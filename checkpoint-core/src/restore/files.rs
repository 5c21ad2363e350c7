//! The files of the restored tree, opened in the controller before any puppet exists: one open
//! file per files.img id, shared by the fds and tasks that shared it; pipes and FIFOs made and
//! refilled, ptys made at their index, unlinked files made again, shared memory objects filled.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;

use super::plan::Tree;
use super::{in_place, object, RestoreError};
use crate::image::{ImageDir, ImageKind};
use crate::{fds, sys};

/// Opens the file a task had open at `path` again (inside `root`, a container's, if given).
pub(super) fn open_reg(root: Option<&OwnedFd>, pid: i32, path: &str, flags: u32) -> Result<File, RestoreError> {
    // A file made with O_TMPFILE says so in its flags (O_TMPFILE holds O_DIRECTORY): it is
    // reopened as the regular file it is.
    const TMPFILE_ONLY: u32 = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u32;
    let flags = if flags & TMPFILE_ONLY != 0 {
        flags & !(libc::O_TMPFILE as u32)
    } else {
        flags
    };
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_DIRECT
        | libc::O_NOATIME
        | libc::O_DIRECTORY
        | libc::O_NOFOLLOW
        | libc::O_PATH;
    let access = flags as i32 & libc::O_ACCMODE;
    if let Some(root) = root {
        use std::os::fd::AsFd;
        let custom = flags as i32 & keep;
        return sys::open_in_root(root.as_fd(), path, custom)
            .map(File::from)
            .map_err(object(pid, format!("reopening {path} in the container")));
    }
    OpenOptions::new()
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        // (O_NOCTTY: a terminal reopened here is never ours to control)
        .custom_flags((flags as i32 & keep & !libc::O_ACCMODE) | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(object(pid, format!("reopening {path}")))
}

/// Open files shared by the tasks of the tree: one per files.img id, and the pipes.
#[derive(Default)]
pub struct SharedFiles {
    /// Our open file for each files.img id opened so far (the unix sockets among them).
    pub(super) by_id: BTreeMap<u32, Rc<OwnedFd>>,
    /// By pipe id: our read and write ends, and whether each was handed out already.
    pipes: BTreeMap<u32, (OwnedFd, OwnedFd, bool, bool)>,
    /// Shared anonymous memory objects, by shmid.
    shmem: BTreeMap<u64, Rc<File>>,
    /// Unlinked files made again, by ghost id.
    ghosts: BTreeMap<u32, File>,
    /// FIFOs, held open for reading and writing while their ends are opened, by pipe id.
    fifos: BTreeMap<u32, File>,
    /// Pty masters made again, by index.
    ptys: BTreeMap<u32, OwnedFd>,
    /// The root of a container's mount namespace: paths are resolved inside it.
    pub(super) root: Option<OwnedFd>,
    /// A container's new console (its runtime made it; the init holds it as fd 0): the
    /// terminal the tree's terminal fds get.
    pub(super) console: Option<OwnedFd>,
    /// A container's init (our pid for it): what is made by path is made inside it.
    pub(super) container: Option<i32>,
}

impl SharedFiles {
    /// Runs `f` where the restored files live: inside the container (a thread that joins its
    /// mount and network namespaces), or here.
    pub(super) fn here<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        in_place(self.container, f)
    }

    /// Our fd on the master of pty `index`, made at that index the first time.
    pub(super) fn pty_master(&mut self, tree: &Tree, pid: i32, index: u32) -> Result<i32, RestoreError> {
        use std::os::fd::AsRawFd;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.ptys.entry(index) {
            let (master, slave) = tree.ptys.get(&index).cloned().unwrap_or_default();
            let master = master.ok_or_else(|| RestoreError::Invalid {
                what: format!("pid {pid}: pty {index} has no master in tty-info.img"),
            })?;
            let fd = in_place(self.container, || {
                crate::fds::tty::open_master(index, &master, slave.as_ref())
            })
            .map_err(object(pid, format!("pty {index}")))?;
            slot.insert(fd);
        }
        Ok(self.ptys[&index].as_raw_fd())
    }

    /// A new open of the FIFO at `path` with `flags`. The first open of each FIFO is ours,
    /// for reading and writing (so that no open blocks), and refills it.
    pub(super) fn fifo_end(
        &mut self,
        tree: &Tree,
        pid: i32,
        pipe_id: u32,
        path: &str,
        flags: u32,
        ghost_id: Option<u32>,
    ) -> Result<OwnedFd, RestoreError> {
        use std::os::fd::{AsFd, AsRawFd};
        let holding = (libc::O_RDWR | libc::O_NONBLOCK) as u32;
        if !self.fifos.contains_key(&pipe_id) {
            // An unlinked FIFO's node is made again (and unlinked) from its ghost.
            let holder = match ghost_id {
                Some(g) => self.ghost_file(tree, pid, g, path, holding)?,
                None => open_reg(self.root.as_ref(), pid, path, holding)?,
            };
            if let Some(d) = tree.fifos.get(&pipe_id).filter(|d| !d.data.is_empty()) {
                use std::io::Write;
                (&holder)
                    .write_all(&d.data)
                    .map_err(object(pid, format!("refilling the FIFO {path}")))?;
            }
            self.fifos.insert(pipe_id, holder);
        }
        let end = match ghost_id {
            Some(_) => {
                let holder = self.fifos[&pipe_id].as_raw_fd();
                open_reg(
                    None,
                    pid,
                    &format!("/proc/self/fd/{holder}"),
                    flags | libc::O_NONBLOCK as u32,
                )?
            }
            None => open_reg(self.root.as_ref(), pid, path, flags | libc::O_NONBLOCK as u32)?,
        };
        sys::set_status_flags(end.as_fd(), flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND))
            .map_err(object(pid, format!("the FIFO {path}")))?;
        Ok(end.into())
    }

    /// A new open file (its own description, with `flags`) on ghost `ghost_id`: the file is
    /// made the first time at its old path (or beside it, if that name is taken now) with its
    /// contents, mode, owner and times, then unlinked.
    pub(super) fn ghost_file(
        &mut self,
        tree: &Tree,
        pid: i32,
        ghost_id: u32,
        path: &str,
        flags: u32,
    ) -> Result<File, RestoreError> {
        use std::os::fd::AsRawFd;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.ghosts.entry(ghost_id) {
            let (entry, data) = tree.ghosts.get(&ghost_id).ok_or_else(|| RestoreError::Invalid {
                what: format!("pid {pid}: ghost file {ghost_id} is not in the checkpoint"),
            })?;
            let what = || format!("{path} (deleted)");
            let file = in_place(self.container, || fds::ghost::make(path, entry))
                .map_err(object(pid, format!("making {} again", what())))?;
            fds::ghost::fill(&file, entry, data).map_err(object(pid, format!("filling {}", what())))?;
            slot.insert(file);
        }
        let ours = &self.ghosts[&ghost_id];
        // The magic link is followed to the file (for a symlink: to the symlink itself, which
        // O_NOFOLLOW would not reach: it would stop at the magic link).
        let flags = flags & !(libc::O_NOFOLLOW as u32);
        open_reg(None, pid, &format!("/proc/self/fd/{}", ours.as_raw_fd()), flags)
    }

    /// The shared memory object `shmid`, created and filled with its saved pages the first
    /// time a task needs it.
    pub(super) fn shmem_object(
        &mut self,
        dir: &ImageDir,
        tree: &Tree,
        pid: i32,
        shmid: u64,
    ) -> Result<Rc<File>, RestoreError> {
        use std::os::unix::fs::FileExt;
        if let Some(f) = self.shmem.get(&shmid) {
            return Ok(f.clone());
        }
        let what = || format!("shared memory {shmid}");
        let obj = tree.shmem.get(&shmid).ok_or_else(|| RestoreError::Invalid {
            what: format!("pid {pid}: {} is not in the checkpoint", what()),
        })?;
        // CRIU names shared anonymous memory a memfd "/dev/zero"; it is remade as what it was.
        let memfd = obj.memfd.as_ref().filter(|(name, _)| name != "/dev/zero");
        let file = match memfd {
            Some((name, _)) => sys::new_memfd(name, obj.size),
            None => sys::new_shmem(obj.size),
        }
        .map_err(object(pid, what()))?;
        if let Some(pages) = &obj.pages {
            let path = dir.image_path(ImageKind::Pages, pages.pages_id.into());
            let src = File::open(&path).map_err(object(pid, path.display().to_string()))?;
            let mut buf = Vec::new();
            for r in pages.runs.iter().filter(|r| r.is_present()) {
                // (not past the object's size, which the last page may reach beyond)
                let run_len = r.len().min(obj.size.saturating_sub(r.vaddr));
                let mut done = 0;
                while done < run_len {
                    let len = (run_len - done).min(4 << 20);
                    buf.resize(len as usize, 0);
                    src.read_exact_at(&mut buf, r.offset + done)
                        .map_err(object(pid, path.display().to_string()))?;
                    file.write_all_at(&buf, r.vaddr + done).map_err(object(pid, what()))?;
                    done += len;
                }
            }
        }
        if let (Some(_), Some((mode, uid, gid))) = (memfd, obj.attrs) {
            // owner first: a chown clears set-id bits the mode may hold
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    file.set_permissions(std::fs::Permissions::from_mode(mode))
                })
                .map_err(object(pid, format!("owner and mode of {}", what())))?;
        }
        if let Some(&(_, seals)) = memfd.filter(|(_, s)| *s != 0) {
            sys::add_seals(&file, seals).map_err(object(pid, format!("sealing {}", what())))?;
        }
        let rc = Rc::new(file);
        self.shmem.insert(shmid, rc.clone());
        Ok(rc)
    }

    /// An open file for one end of pipe `pipe_id` with `flags`: the first of each end is the
    /// pipe's own, later ones are reopened (a distinct open file, as they were).
    pub(super) fn pipe_end(
        &mut self,
        tree: &Tree,
        pid: i32,
        pipe_id: u32,
        flags: u32,
    ) -> Result<OwnedFd, RestoreError> {
        use std::io::Write;
        use std::os::fd::AsFd;
        let what = || format!("pipe:[{pipe_id}]");
        let slot = match self.pipes.entry(pipe_id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let data = tree.pipes.get(&pipe_id).cloned().unwrap_or_default();
                let capacity = data.capacity.filter(|&c| c as usize >= data.data.len());
                let (r, w) = sys::new_pipe(capacity).map_err(object(pid, what()))?;
                if !data.data.is_empty() {
                    sys::set_status_flags(w.as_fd(), libc::O_NONBLOCK).map_err(object(pid, what()))?;
                    File::from(w.try_clone().map_err(object(pid, what()))?)
                        .write_all(&data.data)
                        .map_err(object(pid, format!("refilling {}", what())))?;
                }
                v.insert((r, w, false, false))
            }
        };
        let (r, w, r_used, w_used) = slot;
        let access = flags as i32 & libc::O_ACCMODE;
        let file: OwnedFd = match access {
            libc::O_RDONLY if !*r_used => {
                *r_used = true;
                r.try_clone().map_err(object(pid, what()))?
            }
            libc::O_WRONLY if !*w_used => {
                *w_used = true;
                w.try_clone().map_err(object(pid, what()))?
            }
            _ => {
                use std::os::fd::AsRawFd;
                let path = format!("/proc/self/fd/{}", r.as_raw_fd());
                open_reg(None, pid, &path, access as u32)?.into()
            }
        };
        let status = flags as i32 & (libc::O_NONBLOCK | libc::O_DIRECT);
        sys::set_status_flags(file.as_fd(), status).map_err(object(pid, what()))?;
        Ok(file)
    }
}

/// A new file on an anonymous inode, in the state of its files.img entry.
pub(super) fn open_anon(e: &crate::image::pb::FileEntry) -> io::Result<OwnedFd> {
    use crate::fds;
    if let Some(x) = &e.efd {
        fds::eventfd::open(x)
    } else if let Some(x) = &e.sgfd {
        fds::signalfd::open(x)
    } else if let Some(x) = &e.tfd {
        fds::timerfd::open(x)
    } else if let Some(x) = &e.epfd {
        fds::epoll::open(x)
    } else if let Some(x) = &e.ify {
        fds::inotify::open(x)
    } else if let Some(x) = &e.ffy {
        fds::fanotify::open(x)
    } else {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// A duplicate of our fd `fd` (named by the user with --inherit-fd, or our terminal).
pub(super) fn dup_ours(fd: i32) -> io::Result<OwnedFd> {
    sys::dup_cloexec(fd)
}
