//! Files and filesystems: openat2 in a root, file handles, syncfs, statfs, fallocate, and
//! the data extents of a sparse file.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, OFlag, OpenHow, ResolveFlag};
use nix::unistd::{lseek, Whence};

use super::owned;

/// syncfs(2) on the filesystem holding `f`.
pub fn syncfs(f: &File) -> io::Result<()> {
    Ok(nix::unistd::syncfs(f)?)
}

/// Reserves `len` bytes of `file` from `offset` (fallocate), so that writes through a mapping
/// cannot hit a full filesystem (which would be a SIGBUS, not an error). Filesystems without
/// fallocate are accepted as they are.
pub fn reserve(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    match nix::fcntl::fallocate(file, FallocateFlags::empty(), off, l) {
        Ok(()) | Err(Errno::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `file` lives on tmpfs.
pub fn is_tmpfs(file: &File) -> bool {
    use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};
    fstatfs(file).is_ok_and(|st| st.filesystem_type() == TMPFS_MAGIC)
}

/// Opens `path` as if `root` were `/` (openat2 with RESOLVE_IN_ROOT: `..` and symlinks stay
/// inside it) — a container's file, from outside the container.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str, flags: i32) -> io::Result<OwnedFd> {
    if path.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags | libc::O_CLOEXEC))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(nix::fcntl::openat2(root, path, how)?)
}

/// The ranges of `file` that hold data (SEEK_DATA/SEEK_HOLE) below `len`.
pub fn data_extents(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let data = match lseek(file, at as libc::off_t, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(Errno::ENXIO) => break, // no data after `at`
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = lseek(file, data as libc::off_t, Whence::SeekHole)?;
        let end = (hole as u64).min(len);
        out.push((data, end));
        at = end;
    }
    Ok(out)
}

/// open_by_handle_at(mount, handle) with O_PATH: the file a file handle names (not in nix).
pub fn open_by_handle(mount: BorrowedFd<'_>, kind: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    // struct file_handle: handle_bytes, handle_type, then the bytes.
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: buf is a complete struct file_handle the kernel only reads.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        ) as libc::c_int
    })
}
