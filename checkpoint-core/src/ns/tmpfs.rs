//! tmpfs contents of a container (its /dev/shm, a /run...): a container's runtime mounts its
//! tmpfs mounts again, empty, so what the workload wrote there is saved as a gzip'd tar
//! (`tmpfs-dev-<mnt_id>.tar.gz.img`, as CRIU names it) and unpacked into the new mount before
//! anything is opened. Unpacking treats the archive as hostile: every path is resolved inside
//! the mount (openat2 RESOLVE_IN_ROOT), `..` and absolute names are refused, links are not
//! followed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Archives the tree at `dir` (regular files, directories, symlinks; not followed) into
/// `out`; returns the number of entries. Anything else (a device, a FIFO, a socket) is refused.
pub fn archive(dir: &Path, out: File) -> io::Result<u64> {
    let gz = flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut count = 0;
    add_dir(&mut tar, dir, Path::new(""), &mut count)?;
    let gz = tar.into_inner()?;
    let mut w = gz.finish()?;
    w.flush()?;
    Ok(count)
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, base: &Path, rel: &Path, count: &mut u64) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(base.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let path = base.join(&name);
        let meta = std::fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let ft = meta.file_type();
        if ft.is_dir() {
            tar.append_data(&mut header, &name, io::empty())?;
            add_dir(tar, base, &name, count)?;
        } else if ft.is_file() {
            tar.append_data(&mut header, &name, File::open(&path)?)?;
        } else if ft.is_symlink() {
            tar.append_link(&mut header, &name, std::fs::read_link(&path)?)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} is neither a file, a directory nor a symlink", name.display()),
            ));
        }
        *count += 1;
    }
    Ok(())
}

/// A relative archive path split into its parent and its last component; `None` for the
/// root itself, an error for `..`, absolute or odd paths.
fn split(path: &Path) -> io::Result<Option<(PathBuf, std::ffi::OsString)>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: a path leaving the tmpfs", path.display()),
                ))
            }
        }
    }
    let Some(last) = parts.pop() else { return Ok(None) };
    Ok(Some((parts.iter().collect(), last)))
}

/// `/proc/self/fd/N/NAME`: NAME inside the directory we hold open as `dir`.
fn at(dir: &OwnedFd, name: &std::ffi::OsStr) -> PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Unpacks a tar made by [`archive`] (gzip'd) into the directory `root` (a tmpfs mount).
/// Existing entries are replaced; owners, modes and times are set as archived.
pub fn extract(root: BorrowedFd<'_>, input: impl Read) -> io::Result<u64> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let mut count = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some((parent, name)) = split(&path)? else { continue };
        let parent_path = format!("/{}", parent.display());
        let dir = crate::sys::open_in_root(root, &parent_path, libc::O_PATH | libc::O_DIRECTORY)?;
        let target = at(&dir, &name);
        let h = entry.header();
        let (mode, uid, gid) = (h.mode()? & 0o7777, h.uid()? as u32, h.gid()? as u32);
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(h.mtime()?);
        match h.entry_type() {
            tar::EntryType::Directory => {
                match std::fs::create_dir(&target) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                let d = File::from(crate::sys::open_in_root(
                    dir.as_fd(),
                    &format!("/{}", name.to_string_lossy()),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                )?);
                std::os::unix::fs::fchown(&d, Some(uid), Some(gid))?;
                d.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            tar::EntryType::Regular => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .mode(0o600)
                    .open(&target)?;
                if !f.metadata()?.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: not a file", path.display()),
                    ));
                }
                io::copy(&mut entry, &mut f)?;
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                f.set_modified(mtime)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a symlink without a target"))?;
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target)?,
                    Ok(_) => std::fs::remove_file(&target)?,
                    Err(_) => {}
                }
                std::os::unix::fs::symlink(&link, &target)?;
                std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: an entry of type {other:?} in a tmpfs archive", path.display()),
                ))
            }
        }
        count += 1;
    }
    Ok(count)
}

/// Whether `dir` holds anything.
pub fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_are_refused() {
        assert!(split(Path::new("../x")).is_err());
        assert!(split(Path::new("/etc/passwd")).is_err());
        assert!(split(Path::new("a/../../b")).is_err());
        assert_eq!(split(Path::new("./")).unwrap(), None);
        let (p, n) = split(Path::new("./a/b/c")).unwrap().unwrap();
        assert_eq!((p, n.to_str().unwrap()), (PathBuf::from("a/b"), "c"));
    }

    #[test]
    fn a_tree_goes_through_an_archive_and_symlinks_stay_inside() {
        let base = std::env::temp_dir().join(format!("stasis-tmpfs-unit-{}", std::process::id()));
        let (src, dst) = (base.join("src"), base.join("dst"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("d/e/f"), b"hello").unwrap();
        std::fs::set_permissions(src.join("d/e/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("out")).unwrap();
        let img = base.join("a.tar.gz");
        assert_eq!(archive(&src, File::create(&img).unwrap()).unwrap(), 4);
        let root = File::open(&dst).unwrap();
        assert_eq!(extract(root.as_fd(), File::open(&img).unwrap()).unwrap(), 4);
        assert_eq!(std::fs::read(dst.join("d/e/f")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(dst.join("d/e/f")).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read_link(dst.join("out")).unwrap(), Path::new("/etc"));
        // An archive writing through that symlink lands inside the root, not in /etc.
        let evil = base.join("evil.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(File::create(&evil).unwrap(), flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, "out/stasis-escape-test", &b"bad"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let r = extract(root.as_fd(), File::open(&evil).unwrap());
        assert!(!Path::new("/etc/stasis-escape-test").exists());
        assert!(r.is_err() || dst.join("etc/stasis-escape-test").exists(), "{r:?}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
