//! Cross-process memory: process_vm_readv/writev (nix `sys::uio`).

use std::io::{self, IoSlice, IoSliceMut};

use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};

use super::pid as npid;

/// process_vm_readv of one remote range into `buf`; returns the bytes read.
pub fn read_remote(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    Ok(process_vm_readv(npid(pid), &mut [IoSliceMut::new(buf)], &remote)?)
}

/// process_vm_writev of `buf` to one remote range; returns the bytes written.
pub fn write_remote(pid: i32, addr: u64, buf: &[u8]) -> io::Result<usize> {
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    Ok(process_vm_writev(npid(pid), &[IoSlice::new(buf)], &remote)?)
}

/// process_vm_readv of several remote ranges into several local slices (same total length);
/// returns the bytes read.
pub fn read_remote_iov(pid: i32, local: &mut [&mut [u8]], remote: &[(u64, usize)]) -> io::Result<usize> {
    let mut liov: Vec<IoSliceMut<'_>> = local.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    let riov: Vec<RemoteIoVec> = remote
        .iter()
        .map(|&(base, len)| RemoteIoVec {
            base: base as usize,
            len,
        })
        .collect();
    Ok(process_vm_readv(npid(pid), &mut liov, &riov)?)
}
