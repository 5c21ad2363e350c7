//! File locks: flock and OFD locks belong to an open file, POSIX locks to a process. Read
//! from the `lock:` lines of /proc/PID/fdinfo; set again by the restored task itself.

use crate::image::pb::FileLockEntry;

/// Kinds of lock, as CRIU's image numbers them (not the kernel's FL_* values).
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFDLCK: u32 = 4;
/// A lease (F_SETLEASE): it belongs to the open file, as a flock does.
pub const FL_LEASE: u32 = 8;
const F_RDLCK: u32 = 0;
const F_WRLCK: u32 = 1;

/// The locks held through fd `fd` of `pid` (whose fdinfo is `info`): its open file's flock
/// and OFD locks, and the POSIX locks `pid` itself took through it.
pub fn collect(info: &str, pid: i32, fd: i32) -> Option<Vec<FileLockEntry>> {
    let mut out = Vec::new();
    for line in info.lines().filter_map(|l| l.strip_prefix("lock:")) {
        // "1: POSIX  ADVISORY  WRITE 1234 fe:00:567 100 149"
        let f: Vec<&str> = line.split_whitespace().collect();
        let (kind, mode, access, owner, start, end) =
            (f.get(1)?, f.get(2)?, f.get(3)?, f.get(4)?, f.get(6)?, f.get(7)?);
        let flag = match (*kind, *mode) {
            ("POSIX", "ADVISORY") => FL_POSIX,
            ("FLOCK", "ADVISORY") => FL_FLOCK,
            ("OFDLCK", "ADVISORY") => FL_OFDLCK,
            // A lease being broken (BREAKING) waits on another opener: not kept.
            ("LEASE", "ACTIVE") => FL_LEASE,
            _ => return None,
        };
        if flag == FL_POSIX && owner.parse::<i32>().ok()? != pid {
            continue; // another process's lock on a shared file
        }
        let start: i64 = start.parse().ok()?;
        let len = match *end {
            "EOF" => 0,
            e => e.parse::<i64>().ok()? - start + 1,
        };
        out.push(FileLockEntry {
            flag,
            r#type: if *access == "WRITE" { F_WRLCK } else { F_RDLCK },
            pid,
            fd,
            start,
            len,
        });
    }
    Some(out)
}

/// `struct flock` for fcntl: type, whence (SEEK_SET), start, length.
pub fn flock_bytes(l: &FileLockEntry) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..2].copy_from_slice(&(l.r#type as i16).to_le_bytes());
    b[8..16].copy_from_slice(&l.start.to_le_bytes());
    b[16..24].copy_from_slice(&l.len.to_le_bytes());
    b
}

/// Whether `l` is an exclusive lock.
pub fn is_write(l: &FileLockEntry) -> bool {
    l.r#type == F_WRLCK
}
