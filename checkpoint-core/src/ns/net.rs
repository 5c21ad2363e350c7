//! Network namespaces: a container's namespace is made again by its runtime with a loopback
//! device only. Its loopback's state (up or down, MTU) is saved in `netdev-N.img` and set
//! again; other devices, and addresses on the loopback besides 127.0.0.1 and ::1, are refused
//! (not saved). A namespace the config joins by path is someone else's: not looked at.

use crate::image::pb::{NdType, NetDeviceEntry};
use crate::image::{ImageDir, ImageKind};

/// The network devices of `pid`'s network namespace (/proc/PID/net/dev).
pub fn devices(pid: i32) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect())
}

fn ns(pid: i32) -> Result<std::fs::File, String> {
    std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("ns/net: {e}"))
}

/// Refuses addresses a new namespace's loopback would not have.
pub fn check(pid: i32) -> Result<(), String> {
    let addrs =
        crate::sys::in_net_ns(&ns(pid)?, crate::sys::if_addrs).map_err(|e| format!("its network namespace: {e}"))?;
    let usual = |ip: &std::net::IpAddr, prefix: u32| match ip {
        std::net::IpAddr::V4(v4) => *v4 == std::net::Ipv4Addr::LOCALHOST && prefix == 8,
        std::net::IpAddr::V6(v6) => *v6 == std::net::Ipv6Addr::LOCALHOST && prefix == 128,
    };
    if let Some((dev, ip, prefix)) = addrs.iter().find(|(_, ip, p)| !usual(ip, *p)) {
        return Err(format!(
            "its network namespace has the address {ip}/{prefix} on {dev}: only a loopback's usual addresses are made again"
        ));
    }
    Ok(())
}

/// Saves the loopback of `pid`'s network namespace (id `ns_id`).
pub fn dump(pid: i32, dir: &ImageDir, ns_id: u32) -> Result<(), String> {
    let (flags, mtu) = crate::sys::in_net_ns(&ns(pid)?, || crate::sys::if_flags_mtu("lo"))
        .map_err(|e| format!("its loopback: {e}"))?;
    let lo = NetDeviceEntry {
        r#type: NdType::Loopback as i32,
        ifindex: 1,
        mtu,
        flags,
        name: "lo".into(),
        ..Default::default()
    };
    dir.write_all(ImageKind::Netdev, ns_id.into(), &[lo])
        .map_err(|e| e.to_string())
}

/// Sets the saved loopback state in `pid`'s network namespace (a new container's).
pub fn restore(pid: i32, dir: &ImageDir) -> Result<(), String> {
    for (kind, id) in dir.list().map_err(|e| e.to_string())?.iter().filter_map(|l| l.kind) {
        if kind != ImageKind::Netdev {
            continue;
        }
        for dev in dir.read_all::<NetDeviceEntry>(kind, id).map_err(|e| e.to_string())? {
            if dev.r#type != NdType::Loopback as i32 || dev.name != "lo" {
                return Err(format!("network device {:?}: only a loopback is made again", dev.name));
            }
            crate::sys::in_net_ns(&ns(pid)?, || {
                let now = crate::sys::if_flags_mtu("lo")?;
                // Only the administrative state and the MTU: the rest is the kernel's.
                let want = (now.0 & !(libc::IFF_UP as u32)) | (dev.flags & libc::IFF_UP as u32);
                if (want, dev.mtu) != now {
                    crate::sys::set_if_flags_mtu("lo", want, dev.mtu)?;
                }
                Ok(())
            })
            .map_err(|e| format!("its loopback: {e}"))?;
        }
    }
    Ok(())
}
