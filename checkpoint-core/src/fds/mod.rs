//! Open files, one module per kind: what `/proc/PID/fdinfo` (or the file itself) shows of each
//! (the dump side) and how the controller makes a new one in that state (the restore side).
//! Files on anonymous inodes (eventfd, epoll, signalfd, timerfd, inotify, fanotify), unix
//! sockets, ptys, unlinked ("ghost") files, file locks.

pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod ghost;
pub mod inet;
pub mod inotify;
pub mod link_remap;
pub mod locks;
pub mod netlink;
pub mod packet;
pub mod signalfd;
pub mod tcp;
pub mod timerfd;
pub mod tty;
pub mod udp;
pub mod unix;

/// A device number (`st_dev`/`st_rdev`) in the kernel's own encoding, `major << 20 | minor`,
/// which fdinfo shows and CRIU's images keep.
pub fn kernel_dev(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

/// A device number in the kernel's encoding as `st_dev`/`st_rdev` give it.
pub fn user_dev(kdev: u32) -> u64 {
    libc::makedev(kdev >> 20, kdev & 0xf_ffff)
}

/// The value after `key:` on the first fdinfo line that starts with it.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The value of fdinfo line `key:`, for other modules.
pub fn field_of<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    field(info, key)
}

/// `key:value` pairs of one fdinfo line (`tfd: 5 events: 19 ...` or `wd:1 ino:...`).
fn pairs(line: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut words = line.split_whitespace().peekable();
    std::iter::from_fn(move || loop {
        let w = words.next()?;
        let (k, v) = w.split_once(':')?;
        if !v.is_empty() {
            return Some((k, v));
        }
        if let Some(v) = words.next() {
            return Some((k, v));
        }
    })
}

/// The bytes of a hex string (a file handle in fdinfo).
fn hex_bytes(v: &str) -> Option<Vec<u8>> {
    (0..v.len() / 2)
        .map(|i| u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A file handle's bytes as the image keeps them: little-endian 64-bit words.
fn handle_words(bytes: &[u8]) -> Vec<u64> {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().next_multiple_of(8), 0);
    padded
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

fn hex(v: &str) -> Option<u64> {
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}
