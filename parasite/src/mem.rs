//! A tracee's memory: `process_vm_readv`/`writev` for mapped, accessible pages, and
//! `/proc/PID/mem` (which may read and write through page protections) for the rest.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use crate::{sys, Error};

/// Memory of one task.
pub struct RemoteMem {
    pid: i32,
    file: File,
}

impl RemoteMem {
    /// Opens `/proc/PID/mem` for reading and writing.
    pub fn open(pid: i32) -> Result<RemoteMem, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|source| Error::Sys {
                pid,
                op: "open /proc/PID/mem",
                source,
            })?;
        Ok(RemoteMem { pid, file })
    }

    /// Reads `buf.len()` bytes at `addr` with process_vm_readv.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < buf.len() {
            let n = sys::read_remote(self.pid, addr + done as u64, &mut buf[done..]).map_err(|source| Error::Sys {
                pid: self.pid,
                op: "process_vm_readv",
                source,
            })?;
            if n == 0 {
                return Err(short(self.pid, "process_vm_readv"));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads several remote ranges into consecutive slices of `buf` with one process_vm_readv
    /// per 1024 ranges; `ranges` are (remote address, length) and their lengths sum to `buf.len()`.
    pub fn read_many(&self, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<(), Error> {
        let mut rest = buf;
        for group in ranges.chunks(1024) {
            let total: usize = group.iter().map(|r| r.1).sum();
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(total);
            let mut slices = Vec::with_capacity(group.len());
            let mut left = head;
            for &(_, len) in group {
                let (a, b) = std::mem::take(&mut left).split_at_mut(len);
                slices.push(a);
                left = b;
            }
            let n = sys::read_remote_iov(self.pid, &mut slices, group).map_err(|source| Error::Sys {
                pid: self.pid,
                op: "process_vm_readv",
                source,
            })?;
            if n != total {
                return Err(short(self.pid, "process_vm_readv"));
            }
            rest = tail;
        }
        Ok(())
    }

    /// Reads through `/proc/PID/mem` (also pages the task itself may not read).
    pub fn read_forced(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.file.read_exact_at(buf, addr).map_err(|source| Error::Sys {
            pid: self.pid,
            op: "read /proc/PID/mem",
            source,
        })
    }

    /// Writes `buf` at `addr` with process_vm_writev.
    pub fn write(&self, addr: u64, buf: &[u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < buf.len() {
            let n = sys::write_remote(self.pid, addr + done as u64, &buf[done..]).map_err(|source| Error::Sys {
                pid: self.pid,
                op: "process_vm_writev",
                source,
            })?;
            if n == 0 {
                return Err(short(self.pid, "process_vm_writev"));
            }
            done += n;
        }
        Ok(())
    }

    /// Writes through `/proc/PID/mem` (also into read-only pages).
    pub fn write_forced(&self, addr: u64, buf: &[u8]) -> Result<(), Error> {
        self.file.write_all_at(buf, addr).map_err(|source| Error::Sys {
            pid: self.pid,
            op: "write /proc/PID/mem",
            source,
        })
    }
}

fn short(pid: i32, op: &'static str) -> Error {
    Error::Sys {
        pid,
        op,
        source: io::Error::from(io::ErrorKind::UnexpectedEof),
    }
}
