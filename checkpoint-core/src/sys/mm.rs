//! Memory: shared file mappings, anonymous shared memory objects, memfds and their seals.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{madvise, mmap, mmap_anonymous, munmap, MapFlags, MmapAdvise, ProtFlags};

/// `len` as a mapping length; mmap refuses 0 with EINVAL, and so do we.
fn map_len(len: usize) -> io::Result<NonZeroUsize> {
    NonZeroUsize::new(len).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A shared, writable mapping of a range of a file (MAP_SHARED): writes land in the page cache.
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    /// Maps `len` bytes of `file` from `offset` (page aligned) for writing.
    pub fn new(file: &File, offset: u64, len: usize) -> io::Result<SharedMap> {
        let off = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let size = map_len(len)?;
        // SAFETY: a fresh mapping chosen by the kernel; it aliases nothing we hold.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                off,
            )
        }?;
        Ok(SharedMap { ptr: ptr.cast(), len })
    }

    /// The mapped bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is our live mapping, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no slice of it outlives &mut borrows of self.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Drops our page-table entries for `buf`, part of a shared file mapping: the data stays in the
/// file (page cache), and our resident memory stays small.
pub fn release_mapped(buf: &mut [u8]) {
    let ptr = NonNull::from(&mut *buf).cast();
    // SAFETY: MADV_DONTNEED on a MAP_SHARED file range only unmaps pages; reading them again
    // faults the same file data back in.
    let _ = unsafe { madvise(ptr, buf.len(), MmapAdvise::MADV_DONTNEED) };
}

/// A new shared-memory object of `len` bytes, like the one behind a MAP_SHARED|MAP_ANONYMOUS
/// mapping (it is one: mapped once, reopened through /proc/self/map_files, unmapped).
pub fn new_shmem(len: u64) -> io::Result<File> {
    let size = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh mapping chosen by the kernel; it aliases nothing we hold, and is unmapped
    // below without ever being dereferenced.
    let ptr = unsafe {
        mmap_anonymous(
            None,
            map_len(size)?,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }?;
    let start = ptr.as_ptr() as usize;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/map_files/{start:x}-{:x}", start + size));
    // SAFETY: the mapping made above, never handed out.
    let _ = unsafe { munmap(ptr, size) };
    file
}

/// A new memfd named `name` that accepts seals, `len` bytes long.
pub fn new_memfd(name: &str, len: u64) -> io::Result<File> {
    let cname = super::cstring(name)?;
    let fd = memfd_create(cname.as_c_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let file = File::from(fd);
    file.set_len(len)?;
    Ok(file)
}

/// Adds `seals` (F_SEAL_*) to a memfd.
pub fn add_seals(file: &File, seals: u32) -> io::Result<()> {
    fcntl(
        file,
        FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(seals as libc::c_int)),
    )?;
    Ok(())
}

/// The seals of a memfd (F_GET_SEALS) behind our fd `fd`.
pub fn seals(fd: RawFd) -> io::Result<u32> {
    // SAFETY: the caller's fd, open during the call.
    Ok(fcntl(unsafe { super::borrow(fd) }?, FcntlArg::F_GET_SEALS)? as u32)
}
