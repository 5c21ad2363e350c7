//! Files unlinked while open that are linked back into the filesystem for the restore
//! (`--link-remap`, CRIU's "linked remap"): a file whose name was removed but which still has
//! other links (its contents cannot be copied without the restored process losing them: it
//! would hold a copy, not the file), or an unlinked file too large to save. The dump makes a
//! hard link to the open file beside its old name (`link_remap.N`), and records it as the
//! file's remap (CRIU's REMAP_TYPE LINKED); the restore opens the file through it, then removes
//! it. A dump that fails removes the links it made.

use std::io;
use std::path::{Path, PathBuf};

/// The links a dump made: removed when dropped, unless [`Links::keep`] (the dump succeeded).
#[derive(Debug, Default)]
pub struct Links {
    made: Vec<PathBuf>,
    /// Where the tasks' paths are, for us (a container's root: `/proc/PID/root`).
    root: Option<PathBuf>,
}

impl Links {
    /// Links for tasks whose paths are under `root` for us (a container's).
    pub fn under(root: PathBuf) -> Links {
        Links {
            made: Vec::new(),
            root: Some(root),
        }
    }

    /// The dump succeeded: the links stay for the restore.
    pub fn keep(&mut self) {
        self.made.clear();
    }

    /// Links the file `source` (a /proc/PID/fd or /proc/PID/map_files link) leads to, once at
    /// `path` (as /proc shows it to us), back into the directory `path` was in, as
    /// `link_remap.N` with the first free N. Returns the link's name.
    pub fn link_back(&mut self, source: &str, path: &str) -> io::Result<String> {
        use nix::fcntl::{AtFlags, AT_FDCWD};
        use nix::unistd::linkat;
        let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
        for n in 1..1000 {
            let name = dir.join(format!("link_remap.{n}"));
            let ours = match &self.root {
                Some(root) => root.join(name.strip_prefix("/").unwrap_or(&name)),
                None => name.clone(),
            };
            match linkat(AT_FDCWD, source, AT_FDCWD, &ours, AtFlags::AT_SYMLINK_FOLLOW) {
                Ok(()) => {
                    self.made.push(ours);
                    return Ok(name.to_string_lossy().into_owned());
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(nix::errno::Errno::ENOENT) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "the kernel does not link back a file with no name left (only O_TMPFILE files can be)",
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "link_remap.1 to .999 are all taken",
        ))
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for p in &self.made {
            let _ = std::fs::remove_file(p);
        }
    }
}
