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

/// Runs `f` in a short-lived thread whose filesystem context (root, cwd, umask) is its own
/// copy of the caller's, with umask `mask`: what it creates gets that umask, and no other
/// thread's files do.
pub fn with_umask<T: Send>(mask: u32, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask as libc::mode_t));
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a thread with its own umask panicked")))
    })
}

/// Opens `path` itself, never a symlink's target (O_PATH | O_NOFOLLOW): a handle to change
/// that very file's owner and mode.
pub fn open_nofollow(path: &std::path::Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?)
}

/// (mode, uid, gid, inode) of the file `fd` refers to (an O_PATH fd too).
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_mode, st.st_uid, st.st_gid, st.st_ino))
}

/// Changes the owner and group of the file `fd` (an O_PATH fd too) refers to: fchownat
/// with AT_EMPTY_PATH, no path looked up.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // Raw: nix's fchownat needs its `user` feature, which this crate does not enable.
    // SAFETY: an empty NUL-terminated path and plain integers; the kernel reads only the path.
    let ret = unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) };
    super::cvt(ret).map(drop)
}

/// Our effective uid.
pub fn euid() -> u32 {
    // Raw: nix's geteuid needs its `user` feature.
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Changes the mode of the file `fd` (an O_PATH fd too) refers to: fchmodat2 with
/// AT_EMPTY_PATH (Linux 6.6), else through /proc/self/fd (an O_PATH fd cannot fchmod).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // Raw: nix 0.31 has no fchmodat2, and glibc's fchmodat takes no AT_EMPTY_PATH.
    // SAFETY: an empty NUL-terminated path and plain integers; the kernel reads only the path.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode as libc::mode_t,
            libc::AT_EMPTY_PATH,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    use std::os::unix::fs::PermissionsExt;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// mkfifo(3) at `path` with `mode` (through nix).
pub fn mkfifo(path: &std::path::Path, mode: u32) -> io::Result<()> {
    Ok(nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?)
}

/// mknod(2) at `path`: a device node (`mode` holds its kind, S_IFCHR or S_IFBLK, and its
/// permissions, less the umask) for device `rdev` (the kernel's encoding, as stat gives it).
pub fn mknod(path: &std::path::Path, mode: u32, rdev: u64) -> io::Result<()> {
    use nix::sys::stat::{Mode, SFlag};
    Ok(nix::sys::stat::mknod(
        path,
        SFlag::from_bits_truncate(mode & libc::S_IFMT),
        Mode::from_bits_truncate(mode & 0o7777),
        rdev,
    )?)
}

/// The target of the symlink `fd` is open on (O_PATH|O_NOFOLLOW, or a /proc/PID/fd link
/// opened with O_PATH): readlinkat(fd, "").
pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<std::ffi::OsString> {
    Ok(nix::fcntl::readlinkat(fd, "")?)
}

/// The access and modification times of `path` itself (not what a symlink points to).
pub fn set_times_nofollow(path: &std::path::Path, atime: libc::timespec, mtime: libc::timespec) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    Ok(utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::from(atime),
        &TimeSpec::from(mtime),
        UtimensatFlags::NoFollowSymlink,
    )?)
}
