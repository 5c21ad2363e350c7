//! The files.img side of files unlinked while open: saved as ghosts (their contents, CRIU's
//! ghost-file images) or linked back into the filesystem (`--link-remap`), whether held open
//! or mapped.

use std::fs;

use super::files;
use super::files_image::FilesImage;
use super::DumpError;
use crate::fds;
use crate::image::pb;

impl FilesImage {
    /// Records in remap-fpath.img that files.img entry `orig_id` is reached through
    /// `remap_id` (its ghost, or its link).
    pub(super) fn remap(&mut self, orig_id: u32, remap_id: u32, kind: pb::RemapType) {
        self.remaps.push(pb::RemapFilePathEntry {
            orig_id,
            remap_id,
            remap_type: Some(kind as i32),
        });
    }

    /// Links the unlinked file `source` leads to (once at `path`) back beside its old name
    /// (`--link-remap`); returns the files.img entry of the link.
    fn link_back(&mut self, pid: i32, source: &str, path: &str) -> Result<u32, DumpError> {
        let name = self
            .links
            .link_back(source, path)
            .map_err(|e| DumpError::proc(pid, &format!("{path} (deleted): linking it back"), e))?;
        Ok(self.reg(&name, libc::O_RDONLY as u32, 0, -1))
    }

    /// The files.img entry of unlinked file `f` of `pid`, linked back for the restore
    /// (`--link-remap`), once per file however many fds hold it.
    pub(super) fn linked(&mut self, pid: i32, f: &files::OpenFile, path: &str) -> Result<u32, DumpError> {
        let id = self.reg(path, f.flags, f.pos, -1);
        let remap_id = match self.linked.iter().find(|(k, _)| *k == f.dev_ino) {
            Some(&(_, remap_id)) => remap_id,
            None => {
                let remap_id = self.link_back(pid, &format!("/proc/{pid}/fd/{}", f.first_fd), path)?;
                self.linked.push((f.dev_ino, remap_id));
                remap_id
            }
        };
        self.remap(id, remap_id, pb::RemapType::Linked);
        Ok(id)
    }

    /// The ghost id of unlinked file `f` of `pid`, its contents read the first time.
    pub(super) fn ghost(
        &mut self,
        pid: i32,
        f: &files::OpenFile,
        ghost: &pb::GhostFileEntry,
    ) -> Result<u32, DumpError> {
        let path = format!("/proc/{pid}/fd/{}", f.first_fd);
        self.ghost_from(pid, f.dev_ino, &path, ghost)
    }

    /// The files.img entry of an unlinked file mapped by `pid` (read through `source`, its
    /// /proc/PID/map_files link), saved as a ghost once however many mappings share it.
    pub(super) fn mapped_ghost(&mut self, pid: i32, path: &str, source: &str) -> Result<u32, DumpError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(source).map_err(|e| DumpError::proc(pid, source, e))?;
        let key = (meta.dev(), meta.ino());
        if let Some(&(_, id)) = self.mapped_ghosts.iter().find(|(k, _)| *k == key) {
            return Ok(id);
        }
        // Linked elsewhere still (precheck let it through only with --link-remap): linked
        // back, and mapped from the link by the restore.
        let (remap_id, kind) = if meta.nlink() > 0 {
            (self.link_back(pid, source, path)?, pb::RemapType::Linked)
        } else {
            let entry = fds::ghost::entry(&meta, self.ghost_limit).map_err(|what| DumpError::Unsupported {
                pid,
                what: format!("the mapped file {path} (deleted): {what}"),
            })?;
            (self.ghost_from(pid, key, source, &entry)?, pb::RemapType::Ghost)
        };
        let id = self.reg(path, libc::O_RDONLY as u32, 0, -1);
        self.remap(id, remap_id, kind);
        self.mapped_ghosts.push((key, id));
        Ok(id)
    }

    /// The ghost-file image of the unlinked file `key` (read through `path`), once per file.
    fn ghost_from(
        &mut self,
        pid: i32,
        key: (u64, u64),
        path: &str,
        ghost: &pb::GhostFileEntry,
    ) -> Result<u32, DumpError> {
        if let Some(i) = self.ghosts.iter().position(|(k, ..)| *k == key) {
            return Ok(i as u32 + 1);
        }
        // Directories and FIFOs are saved without contents (a FIFO's data is the pipe's).
        let mut ghost = ghost.clone();
        let chunks = if fds::ghost::is_regular(&ghost) {
            let file = fs::File::open(path).map_err(|e| DumpError::proc(pid, path, e))?;
            let len = file.metadata().map_err(|e| DumpError::proc(pid, path, e))?.len();
            let (chunks, sparse) = fds::ghost::read_chunks(&file, len).map_err(|e| DumpError::proc(pid, path, e))?;
            if sparse {
                ghost.chunks = Some(true);
            }
            ghost.size = Some(len.max(chunks.iter().map(|(o, d)| o + d.len() as u64).max().unwrap_or(0)));
            chunks
        } else {
            if ghost.mode & libc::S_IFMT == libc::S_IFLNK {
                use std::os::unix::fs::OpenOptionsExt;
                // The magic link, followed, lands on the symlink itself.
                let link = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| DumpError::proc(pid, path, e))?;
                let target = crate::sys::readlink_fd(std::os::fd::AsFd::as_fd(&link))
                    .map_err(|e| DumpError::proc(pid, path, e))?;
                ghost.symlnk_target = Some(target.to_string_lossy().into_owned());
            }
            Vec::new()
        };
        if ghost.size.unwrap_or(0) > self.ghost_limit {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "{path}: the unlinked file grew past {} bytes (--ghost-limit)",
                    self.ghost_limit
                ),
            });
        }
        self.ghosts.push((key, ghost, chunks));
        Ok(self.ghosts.len() as u32)
    }

    /// Refuses an inotify watch on a deleted file that no ghost of the tree holds (nothing to
    /// watch again).
    pub(super) fn check_deleted_watches(&self) -> Result<(), DumpError> {
        for &(pid, fd, wd, key) in &self.deleted_watches {
            if !self.ghosts.iter().any(|(k, ..)| *k == key) {
                return Err(DumpError::Unsupported {
                    pid,
                    what: format!(
                        "fd {fd} (inotify): watch {wd} is on a deleted file the tree does not hold open: it cannot be watched again"
                    ),
                });
            }
        }
        Ok(())
    }
}
