//! Files unlinked while open ("ghost" files): the dump saves their attributes and contents
//! (up to `--ghost-limit`, [`DEFAULT_GHOST_LIMIT`] by default); the restore makes each again at its old path (or beside it), fills
//! it, and unlinks it, so that the tasks hold an unlinked file again.
//!
//! A file with holes (SEEK_HOLE finds one below its size) is saved in CRIU's chunked form:
//! the entry says `chunks`, and each run of data follows as a chunk entry (offset, length)
//! and its bytes; the restore writes the runs at their offsets into a file of the saved size,
//! so that the holes are holes again.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use crate::image::pb;

/// The largest unlinked file whose contents a dump saves by default (CRIU's default
/// `--ghost-limit`).
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// The ghost-file entry of an unlinked file (`meta` its attributes, not followed if a
/// symlink; a symlink's target is the caller's to add): refused, with the reason, if it is a
/// socket file or a regular file of more than `limit` bytes (`--ghost-limit`).
pub fn entry(meta: &fs::Metadata, limit: u64) -> Result<pb::GhostFileEntry, String> {
    let ft = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    let device = ft.is_char_device() || ft.is_block_device();
    if !(ft.is_file() || ft.is_dir() || ft.is_fifo() || ft.is_symlink() || device) {
        return Err("an unlinked socket file".into());
    }
    if meta.len() > limit {
        return Err(format!(
            "an unlinked file of {} bytes: more than the {limit} saved with the dump (--ghost-limit)",
            meta.len()
        ));
    }
    let time = |s: i64, ns: i64| pb::Timeval {
        tv_sec: s as u64,
        tv_usec: (ns / 1000) as u64,
    };
    Ok(pb::GhostFileEntry {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        // The kernel's encoding of the device (CRIU finds the mount by it).
        dev: Some(super::kernel_dev(meta.dev())),
        ino: Some(meta.ino()),
        atim: Some(time(meta.atime(), meta.atime_nsec())),
        mtim: Some(time(meta.mtime(), meta.mtime_nsec())),
        size: ft.is_file().then_some(meta.len()),
        // (the kernel's encoding of the device, as CRIU writes it)
        rdev: device.then(|| super::kernel_dev(meta.rdev())),
        ..Default::default()
    })
}

/// Whether a ghost-file entry is of a regular file (the others, directories and FIFOs, have
/// no contents in the image).
pub fn is_regular(entry: &pb::GhostFileEntry) -> bool {
    entry.mode & libc::S_IFMT == libc::S_IFREG
}

/// A new file of `entry`'s kind (regular file, directory, FIFO, symlink, device node) made at
/// `path` (its filesystem, its directory), or beside it if that name is taken, opened and
/// unlinked at once: a regular file's contents go in through the open file. A symlink or a
/// device node is opened O_PATH (a device is not opened for real here: the task's own open
/// does that), and gets its owner, mode and times by name before it is unlinked.
pub fn make(path: &str, entry: &pb::GhostFileEntry) -> io::Result<File> {
    let kind = entry.mode & libc::S_IFMT;
    let by_name = |name: &std::path::Path| -> io::Result<File> {
        std::os::unix::fs::lchown(name, Some(entry.uid), Some(entry.gid))?;
        if kind != libc::S_IFLNK {
            fs::set_permissions(name, fs::Permissions::from_mode(entry.mode & 0o7777))?;
        }
        if let (Some(a), Some(m)) = (&entry.atim, &entry.mtim) {
            let ts = |t: &pb::Timeval| libc::timespec {
                tv_sec: t.tv_sec as libc::time_t,
                tv_nsec: (t.tv_usec.min(999_999) * 1000) as libc::c_long,
            };
            crate::sys::set_times_nofollow(name, ts(a), ts(m))?;
        }
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_PATH | libc::O_NOFOLLOW)
            .open(name)
    };
    let create = |name: &std::path::Path| -> io::Result<File> {
        match kind {
            libc::S_IFDIR => {
                fs::create_dir(name)?;
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY)
                    .open(name)
            }
            libc::S_IFIFO => {
                crate::sys::mkfifo(name, 0o600)?;
                // Read and write: a FIFO opened so does not wait for a peer.
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
                    .open(name)
            }
            libc::S_IFLNK => {
                let target = entry
                    .symlnk_target
                    .as_deref()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a symlink without its target"))?;
                std::os::unix::fs::symlink(target, name)?;
                by_name(name).inspect_err(|_| drop(fs::remove_file(name)))
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                let rdev = entry
                    .rdev
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a device node without its device"))?;
                crate::sys::mknod(name, kind | 0o600, super::user_dev(rdev))?;
                by_name(name).inspect_err(|_| drop(fs::remove_file(name)))
            }
            _ => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(name),
        }
    };
    let mut name = std::path::PathBuf::from(path);
    let mut tries = 0;
    let file = loop {
        match create(&name) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => {
                tries += 1;
                name = std::path::PathBuf::from(format!("{path}.stasis-ghost-{}-{tries}", std::process::id()));
            }
            Err(e) => return Err(e),
        }
    };
    if kind == libc::S_IFDIR {
        fs::remove_dir(&name)?;
    } else {
        fs::remove_file(&name)?;
    }
    Ok(file)
}

/// Whether a ghost of `entry`'s kind is opened O_PATH and got its attributes when it was
/// made (a symlink, a device node).
pub fn is_by_name(entry: &pb::GhostFileEntry) -> bool {
    matches!(entry.mode & libc::S_IFMT, libc::S_IFLNK | libc::S_IFCHR | libc::S_IFBLK)
}

/// A ghost file's contents: runs of data, each at its offset (one at 0 for a file without
/// holes).
pub type Chunks = Vec<(u64, Vec<u8>)>;

/// The contents of the regular file `file` of `len` bytes, as runs of data; `true` if it has
/// holes (and is to be saved in chunks).
pub fn read_chunks(file: &File, len: u64) -> io::Result<(Chunks, bool)> {
    use std::os::unix::fs::FileExt;
    let extents = crate::sys::data_extents(file, len)?;
    let sparse = len > 0 && extents.as_slice() != [(0, len)];
    // Without holes the file is read whole, as it is now (it may have grown since its size
    // was taken: the caller checks the limit against what was read).
    if !sparse {
        // (from 0: the seeks above moved the offset)
        let mut data = Vec::with_capacity(len as usize);
        io::Seek::rewind(&mut &*file)?;
        io::Read::read_to_end(&mut &*file, &mut data)?;
        return Ok((vec![(0, data)], false));
    }
    let mut chunks = Vec::with_capacity(extents.len());
    for (start, end) in extents {
        let mut data = vec![0; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        chunks.push((start, data));
    }
    Ok((chunks, true))
}

/// Writes a ghost file's contents `chunks` into `file` (of the saved size first, so that what
/// no chunk covers is a hole) and gives it the mode, owner and times of `entry`.
pub fn fill(file: &File, entry: &pb::GhostFileEntry, chunks: &[(u64, Vec<u8>)]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if is_by_name(entry) {
        return Ok(());
    }
    if is_regular(entry) {
        if let Some(size) = entry.size {
            file.set_len(size)?;
        }
        for (off, data) in chunks {
            file.write_all_at(data, *off)?;
        }
    }
    file.set_permissions(fs::Permissions::from_mode(entry.mode & 0o7777))?;
    std::os::unix::fs::fchown(file, Some(entry.uid), Some(entry.gid))?;
    let t = |tv: &Option<pb::Timeval>| {
        tv.as_ref()
            .map(|t| std::time::UNIX_EPOCH + Duration::new(t.tv_sec, (t.tv_usec * 1000) as u32))
    };
    let times = fs::FileTimes::new();
    let times = match t(&entry.atim) {
        Some(a) => times.set_accessed(a),
        None => times,
    };
    let times = match t(&entry.mtim) {
        Some(m) => times.set_modified(m),
        None => times,
    };
    file.set_times(times)
}
