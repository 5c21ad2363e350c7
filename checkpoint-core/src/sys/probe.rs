//! Feature probes: what the kernel and the CPU offer (clone3 set_tid, PAGEMAP_SCAN,
//! userfaultfd, timer id restore, XSAVE layout). Raw calls: nix has none of these.

use std::io;
use std::os::fd::AsRawFd;

use super::owned;
use super::process::{clone3_with_tid, wait_exit};

mod ioctl {
    /// struct uffdio_api.
    #[repr(C)]
    pub struct UffdioApi {
        pub api: u64,
        pub features: u64,
        pub ioctls: u64,
    }
    // UFFDIO_API = _IOWR(0xAA, 0x3F, struct uffdio_api).
    nix::ioctl_readwrite!(uffdio_api, 0xaa, 0x3f, UffdioApi);
}

/// Offset and size of XSAVE component `bit` in the standard (non-compacted) format.
pub fn xsave_component(bit: u32) -> Option<(usize, usize)> {
    // SAFETY: CPUID is available on every x86_64 CPU; leaf 0xD sub-leaf n is defined for n >= 2.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(0xd, bit) };
    (r.eax != 0).then_some((r.ebx as usize, r.eax as usize))
}

/// Raw syscall result of clone3 asking for pid 1 (which exists): EEXIST means set_tid works.
pub fn probe_clone3_set_tid() -> io::Result<()> {
    // SAFETY: pid 1 always exists, so the kernel refuses before creating anything (EEXIST),
    // or refuses the arguments outright on kernels without set_tid.
    let ret = unsafe { clone3_with_tid(1) };
    let err = io::Error::last_os_error();
    match (ret, err.raw_os_error()) {
        (r, Some(libc::EEXIST)) if r < 0 => Ok(()),
        (r, _) if r < 0 => Err(err),
        (0, _) => {
            // SAFETY: we are an unexpected child: leave at once.
            unsafe { libc::_exit(0) }
        }
        (child, _) => {
            let _ = wait_exit(child as i32);
            Err(io::Error::other("clone3 ignored set_tid"))
        }
    }
}

/// ioctl(PAGEMAP_SCAN) with no argument on our own pagemap: EFAULT means the ioctl exists.
pub fn probe_pagemap_scan() -> io::Result<()> {
    const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
    let f = std::fs::File::open("/proc/self/pagemap")?;
    // SAFETY: a NULL argument makes the kernel fail with EFAULT before touching memory.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN, std::ptr::null_mut::<libc::c_void>()) };
    let err = io::Error::last_os_error();
    if ret < 0 && err.raw_os_error() == Some(libc::EFAULT) {
        Ok(())
    } else {
        Err(err)
    }
}

/// The userfaultfd features the kernel offers (UFFDIO_API).
pub fn userfaultfd_features() -> io::Result<u64> {
    // SAFETY: plain integer flags; returns a new fd or -1.
    let fd = owned(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) } as libc::c_int)?;
    let mut api = ioctl::UffdioApi {
        api: 0xaa,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: api points to a live struct of the layout UFFDIO_API expects.
    unsafe { ioctl::uffdio_api(fd.as_raw_fd(), &mut api) }?;
    Ok(api.features)
}

/// prctl(PR_TIMER_CREATE_RESTORE_IDS, GET): whether POSIX timers can be recreated with their ids.
pub fn probe_timer_restore_ids() -> io::Result<()> {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
    const GET: libc::c_ulong = 2;
    // SAFETY: plain integer arguments; GET only reports the current mode.
    let ret = unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, GET, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
