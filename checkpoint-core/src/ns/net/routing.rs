//! Addresses, routes and rules of a network namespace: `ifaddr-N.img`, `route-N.img`,
//! `route6-N.img`, `rule-N.img`, each the raw output of iproute2's `ip addr save`,
//! `ip route save`, `ip -6 route save`, `ip rule save` (its netlink dump format), as CRIU
//! writes them; made again with `ip addr restore`, `ip route restore` (both route images),
//! `ip rule restore`. Addresses and routes name their devices by index: the links are made
//! again at their saved indices first.

use std::fs::File;
use std::path::PathBuf;

use std::io::Read;

use super::{run, Running};

/// The images a dump writes (created, empty).
pub struct Images {
    pub ifaddr: (File, PathBuf),
    pub route: (File, PathBuf),
    pub route6: (File, PathBuf),
    pub rule: (File, PathBuf),
}

/// The saved images a restore reads (those missing or empty are left out, as CRIU does).
pub struct Saved {
    pub ifaddr: Option<File>,
    pub route: Option<File>,
    pub route6: Option<File>,
    pub rule: Option<File>,
}

/// Whether the calling thread's namespace has IPv6 (without it `ip -6 route save` would save
/// every route).
fn ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// Starts saving the calling thread's namespace's addresses, routes and rules.
pub(super) fn start_save(images: Images) -> Result<Vec<Running>, String> {
    let mut running = vec![
        Running::start("ip", &["addr", "save"], images.ifaddr.0, None)?,
        Running::start("ip", &["route", "save"], images.route.0, None)?,
    ];
    if ipv6() {
        running.push(Running::start("ip", &["-6", "route", "save"], images.route6.0, None)?);
    }
    // As CRIU: an `ip` that cannot save rules leaves the image empty, not the dump failed.
    let (rule, path) = images.rule;
    running.push(Running::start("ip", &["rule", "save"], rule, Some(path))?);
    Ok(running)
}

/// Makes the saved addresses, routes and rules again in the calling thread's namespace.
pub fn restore(saved: Saved) -> Result<(), String> {
    if let Some(f) = saved.ifaddr {
        run("ip", &["addr", "restore"], Some(f), None).map_err(|e| format!("addresses: {e}"))?;
    }
    for f in [saved.route, saved.route6].into_iter().flatten() {
        let dump = without_link_state(&read(f)?);
        run_with_input("ip", &["route", "restore"], &dump).map_err(|e| format!("routes: {e}"))?;
    }
    if let Some(f) = saved.rule {
        // A new namespace has the kernel's default rules, which the image holds too: they
        // go first, so that they are not there twice.
        run("ip", &["rule", "flush"], None, None).map_err(|e| format!("rules: {e}"))?;
        let _ = run("ip", &["rule", "delete", "table", "local"], None, None);
        run("ip", &["rule", "restore"], Some(f), None).map_err(|e| format!("rules: {e}"))?;
    }
    Ok(())
}

fn read(mut f: File) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| format!("reading a route image: {e}"))?;
    Ok(bytes)
}

/// Runs `program args` with `input` on its stdin (through a temporary file, as it may be
/// larger than a pipe holds).
pub(super) fn run_with_input(program: &str, args: &[&str], input: &[u8]) -> Result<(), String> {
    use std::io::{Seek, Write};
    let mut tmp = tempfile().map_err(|e| format!("a temporary file: {e}"))?;
    tmp.write_all(input)
        .and_then(|()| tmp.rewind())
        .map_err(|e| format!("a temporary file: {e}"))?;
    run(program, args, Some(tmp), None).map(drop)
}

/// An unnamed file (O_TMPFILE) in /tmp, or in the images' stead /dev/shm.
fn tempfile() -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |dir: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
    };
    open("/tmp").or_else(|_| open("/dev/shm"))
}

/// The magic an `ip ... save` dump starts with.
const IP_DUMP_MAGIC: u32 = 0x4531_1224;
/// RTNH_F_DEAD and RTNH_F_LINKDOWN: the kernel's view of a route whose device has no carrier,
/// which it refuses from us.
const LINK_STATE_FLAGS: u32 = 0x01 | 0x10;

/// An `ip route save` dump whose routes lose the flags that say their device had no carrier
/// (the kernel sets them again as it sees the new device's state). Anything it does not
/// understand is left as it is.
pub fn without_link_state(dump: &[u8]) -> Vec<u8> {
    let mut out = dump.to_vec();
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_ne_bytes(s.try_into().unwrap()));
    if u32_at(dump, 0) != Some(IP_DUMP_MAGIC) {
        return out;
    }
    let mut at = 4;
    // struct nlmsghdr (16 bytes), then struct rtmsg: its flags at 8 bytes in.
    while let Some(len) = u32_at(&out, at) {
        let len = len as usize;
        if len < 16 + 12 || at + len > out.len() {
            break;
        }
        let flags_at = at + 16 + 8;
        if let Some(flags) = u32_at(&out, flags_at) {
            out[flags_at..flags_at + 4].copy_from_slice(&(flags & !LINK_STATE_FLAGS).to_ne_bytes());
        }
        at += (len + 3) & !3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_flags_are_cleared_and_the_rest_kept() {
        let mut dump = IP_DUMP_MAGIC.to_ne_bytes().to_vec();
        for flags in [0x10u32, 0x104] {
            let mut msg = 32u32.to_ne_bytes().to_vec(); // nlmsg_len
            msg.extend([0u8; 12]); // type, flags, seq, pid
            msg.extend([2, 24, 0, 0, 254, 4, 253, 1]); // rtmsg up to its flags
            msg.extend(flags.to_ne_bytes());
            msg.extend([9u8; 4]); // an attribute's bytes
            dump.extend(msg);
        }
        let out = without_link_state(&dump);
        assert_eq!(out.len(), dump.len());
        assert_eq!(&out[4 + 24..4 + 28], &0u32.to_ne_bytes());
        assert_eq!(&out[36 + 24..36 + 28], &0x104u32.to_ne_bytes());
        assert_eq!(without_link_state(b"junk"), b"junk");
    }
}
