//! Network namespaces a container owns (no path in its config): the runtime makes a new one
//! with a loopback only; what the old one held is saved in CRIU's images and made again in it.
//!
//! * links (`netdev-N.img`, [`links`]): the loopback (state, MTU), the inside end of a veth
//!   pair whose outside end `--external veth[INSIDE]:OUTSIDE[@BRIDGE]` names, a macvlan whose
//!   lower device `--external macvlan[INSIDE]:LOWER` names; anything else is refused before
//!   the tree is frozen, naming the device and its kind;
//! * addresses, routes and rules (`ifaddr-N.img`, `route-N.img`, `route6-N.img`,
//!   `rule-N.img`, [`routing`]);
//! * permanent neighbour entries (`neigh-N.img`, Stasis's own, [`neigh`]);
//! * netfilter rules (`nftables-N.img`, `iptables-N.img`, `ip6tables-N.img`, [`netfilter`]);
//! * sysctls (`net.ipv4.conf`/`net.ipv6.conf` of "all", "default" in `netns-N.img` and of each
//!   device in its `netdev-N.img` entry, [`sysctl`]).
//!
//! Design: the routing and netfilter images are, in CRIU, the raw output of iproute2's
//! `ip addr save`/`ip route save`/`ip -6 route save`/`ip rule save` (its own binary netlink
//! dump format) and of `nft list ruleset` and `iptables-save`/`ip6tables-save` (or their
//! legacy flavours: see [`netfilter`]). Running those same programs, inside
//! the namespace, is what keeps these images byte-for-byte what CRIU writes and reads (a
//! CRIU image restores here, ours with CRIU), and needs no netlink parser of ours. Links go
//! through `ip` too (`ip -d -j link show` to read them, `ip link add`/`set` to make them), so
//! that no hand-written rtnetlink code (and no `unsafe` beyond the interface-flags ioctl)
//! is needed: iproute2, iptables and nft are on every host that runs containers (Debian 12:
//! packages iproute2, iptables, nftables). The programs run in a thread moved into the namespace
//! (`setns` is per thread; a child takes its parent thread's namespaces). A namespace joined
//! by path is the manager's and not looked at.

pub mod links;
pub mod neigh;
pub mod netfilter;
pub mod routing;
pub mod sysctl;

use std::fs::File;
use std::process::{Command, Stdio};

use crate::image::pb::{NetDeviceEntry, NetnsEntry};
use crate::image::{ImageDir, ImageKind};

/// A network device whose other side is outside the container, as `--external` names it:
/// `veth[INSIDE]:OUTSIDE[@BRIDGE]` (the outside end of a veth pair, and a bridge to attach it
/// to) or `macvlan[INSIDE]:LOWER` (the device a macvlan sits on). At dump time the part after
/// the colon may be left out (`veth[eth0]`): it only says that the device's peer is outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalLink {
    /// "veth" or "macvlan".
    pub kind: String,
    /// Its name inside the container.
    pub inside: String,
    /// The outside end's name (veth) or the lower device's (macvlan).
    pub outside: Option<String>,
    /// A bridge the outside end of a veth is attached to.
    pub bridge: Option<String>,
}

/// Parses an `--external` value; `None` if it is not about a network device.
pub fn parse_external(s: &str) -> Result<Option<ExternalLink>, String> {
    let Some((kind, rest)) = s.split_once('[') else {
        return Ok(None);
    };
    if kind != "veth" && kind != "macvlan" {
        return Ok(None);
    }
    let (inside, after) = rest
        .split_once(']')
        .ok_or_else(|| format!("--external {s}: expected {kind}[INSIDE]:OUTSIDE"))?;
    let valid = |n: &str| !n.is_empty() && n.len() < libc::IFNAMSIZ && !n.contains(['/', ' ', ':', '@']);
    if !valid(inside) {
        return Err(format!("--external {s}: {inside:?} is not a device name"));
    }
    let (outside, bridge) = match after.strip_prefix(':') {
        None if after.is_empty() => (None, None),
        None => return Err(format!("--external {s}: expected {kind}[INSIDE]:OUTSIDE")),
        Some(v) => match v.split_once('@') {
            Some((o, b)) if kind == "veth" => (Some(o), Some(b)),
            Some(_) => return Err(format!("--external {s}: only a veth's outside end goes on a bridge")),
            None => (Some(v), None),
        },
    };
    for n in outside.into_iter().chain(bridge) {
        if !valid(n) {
            return Err(format!("--external {s}: {n:?} is not a device name"));
        }
    }
    Ok(Some(ExternalLink {
        kind: kind.into(),
        inside: inside.into(),
        outside: outside.map(str::to_owned),
        bridge: bridge.map(str::to_owned),
    }))
}

/// The network devices `--external` values name (others ignored).
pub fn externals(values: &[String]) -> Result<Vec<ExternalLink>, String> {
    Ok(values
        .iter()
        .map(|v| parse_external(v))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect())
}

fn ns(pid: i32) -> Result<File, String> {
    File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("pid {pid}: ns/net: {e}"))
}

/// Runs `f` in a thread inside the network namespace of `pid`.
fn in_ns<T: Send>(pid: i32, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    let mut inner = None;
    let r = crate::sys::in_net_ns(&ns(pid)?, || {
        inner = Some(f());
        Ok(())
    });
    match (r, inner) {
        (_, Some(result)) => result,
        (Err(e), None) => Err(format!("pid {pid}'s network namespace: {e}")),
        (Ok(()), None) => Err(format!("pid {pid}'s network namespace: nothing done")),
    }
}

/// Runs `program args` (in the calling thread's network namespace), its stdin from `input`
/// and its stdout into `output` if given; returns its stdout otherwise. An error names the
/// command and what it said.
fn run(program: &str, args: &[&str], input: Option<File>, output: Option<File>) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C").stderr(Stdio::piped());
    cmd.stdin(input.map_or_else(Stdio::null, Stdio::from));
    let captured = output.is_none();
    cmd.stdout(output.map_or_else(Stdio::piped, Stdio::from));
    let out = cmd.output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(if captured { out.stdout } else { Vec::new() })
}

/// A program started by [`Running::start`], writing into an image.
struct Running {
    child: std::process::Child,
    what: String,
    /// An image left empty if the program fails (else the failure is an error).
    may_fail: Option<std::path::PathBuf>,
}

impl Running {
    /// Starts `program args` (in the calling thread's network namespace), its stdout into
    /// `output`.
    fn start(program: &str, args: &[&str], output: File, may_fail: Option<std::path::PathBuf>) -> Result<Self, String> {
        let child = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        Ok(Running {
            child,
            what: format!("{program} {}", args.join(" ")),
            may_fail,
        })
    }

    /// Waits for it; an error names the command and what it said.
    fn finish(self) -> Result<(), String> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| format!("{}: {e}", self.what))?;
        match self.may_fail {
            _ if out.status.success() => Ok(()),
            Some(path) => std::fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display())),
            None => Err(format!(
                "`{}` failed ({}): {}",
                self.what,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
}

/// Whether `program` is on the PATH.
fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Refuses, before anything is frozen, what the namespace of `pid` holds that is not made
/// again: devices other than the loopback, a veth (`externals` naming its peer outside) and a
/// macvlan (naming its lower device).
pub fn check(pid: i32, externals: &[ExternalLink]) -> Result<(), String> {
    let devices = in_ns(pid, links::list)?;
    links::check(&devices, externals).map_err(|e| format!("its network namespace: {e}"))?;
    in_ns(pid, neigh::list)
        .map(drop)
        .map_err(|e| format!("its network namespace: {e}"))
}

/// Saves the network namespace of `pid` (image id `ns_id`): devices and their sysctls,
/// namespace sysctls, addresses, routes, rules, netfilter rules.
pub fn dump(pid: i32, dir: &ImageDir, ns_id: u32, externals: &[ExternalLink]) -> Result<(), String> {
    let id = u64::from(ns_id);
    let raw = |kind| dir.create_raw(kind, id).map_err(|e| e.to_string());
    let images = routing::Images {
        ifaddr: raw(ImageKind::Ifaddr)?,
        route: raw(ImageKind::Route)?,
        route6: raw(ImageKind::Route6)?,
        rule: raw(ImageKind::Rule)?,
    };
    let tables = netfilter::Images {
        v4: raw(ImageKind::Iptables)?,
        v6: raw(ImageKind::Ip6tables)?,
        nft: netfilter::have_nft().then(|| raw(ImageKind::Nftables)).transpose()?,
    };
    // The tree is frozen meanwhile: the programs run side by side, while the links and
    // sysctls are read.
    let (devices, netns, neighbours) = in_ns(pid, move || {
        let mut running = routing::start_save(images)?;
        running.extend(netfilter::start_save(tables)?);
        let read = (|| -> Result<_, String> {
            let devices = links::list()?;
            links::check(&devices, externals)?;
            let mut entries: Vec<NetDeviceEntry> = devices.into_iter().map(|d| d.entry(ns_id)).collect();
            for e in &mut entries {
                e.conf4 = sysctl::read_conf(sysctl::V4, &e.name);
                e.conf6 = sysctl::read_conf(sysctl::V6, &e.name);
            }
            Ok((entries, sysctl::read_netns(), neigh::list()?))
        })();
        let saved: Result<Vec<()>, String> = running.into_iter().map(Running::finish).collect();
        let read = read?;
        saved.map(|_| read)
    })
    .map_err(|e| format!("its network namespace: {e}"))?;
    dir.write_all(ImageKind::Netdev, id, &devices)
        .map_err(|e| e.to_string())?;
    if !neighbours.is_empty() {
        let (mut f, path) = raw(ImageKind::Neigh)?;
        std::io::Write::write_all(&mut f, &neigh::encode(&neighbours))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    dir.write_all(ImageKind::Netns, id, &[netns]).map_err(|e| e.to_string())
}

/// Makes the saved network namespace `ns_id` again in the new one of `pid` (a new container's
/// init): namespace sysctls, links and their sysctls, addresses, routes, rules, netfilter
/// rules. What is made outside (a veth pair's outside end) is removed again if this fails.
pub fn restore(pid: i32, dir: &ImageDir, ns_id: u32, externals: &[ExternalLink]) -> Result<(), String> {
    // The namespace the tree's root was in (its ids image names it, as CRIU reads it): not a
    // listing of the directory, which may hold an earlier dump's images too.
    let id = u64::from(ns_id);
    if !dir.image_path(ImageKind::Netdev, id).exists() {
        return Ok(()); // joined by path: the manager's, not saved
    }
    let devices: Vec<NetDeviceEntry> = dir.read_all(ImageKind::Netdev, id).map_err(|e| e.to_string())?;
    let netns: Option<NetnsEntry> = dir.read_one(ImageKind::Netns, id).map_err(|e| e.to_string())?;
    // Only into a new namespace: one joined by path (the manager's) is not ours to change.
    let present = in_ns(pid, links::list)?;
    if let Some(other) = present.iter().find(|l| l.kind != "loopback") {
        return Err(format!(
            "the container's network namespace is not a new one (it has the device {}): the saved one is not made again in it",
            other.name
        ));
    }
    let mut made = links::Made::default();
    let result = (|| {
        if let Some(n) = &netns {
            in_ns(pid, || sysctl::write_netns(n)).map_err(|e| format!("network namespace sysctls: {e}"))?;
        }
        let mut sorted = devices.clone();
        sorted.sort_by_key(|d| d.ifindex);
        for dev in &sorted {
            links::make(pid, dev, externals, &mut made)?;
            in_ns(pid, || {
                sysctl::write_conf(sysctl::V4, &dev.name, &dev.conf4)?;
                sysctl::write_conf(sysctl::V6, &dev.name, &dev.conf6)
            })
            .map_err(|e| format!("network device {}: {e}", dev.name))?;
        }
        let open = |kind| {
            let path = dir.image_path(kind, id);
            match File::open(&path) {
                Ok(f) if f.metadata().is_ok_and(|m| m.len() > 0) => Ok(Some(f)),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", path.display())),
            }
        };
        let images = routing::Saved {
            ifaddr: open(ImageKind::Ifaddr)?,
            route: open(ImageKind::Route)?,
            route6: open(ImageKind::Route6)?,
            rule: open(ImageKind::Rule)?,
        };
        let tables = netfilter::Saved {
            v4: open(ImageKind::Iptables)?,
            v6: open(ImageKind::Ip6tables)?,
            nft: open(ImageKind::Nftables)?,
            nft_image: dir.image_path(ImageKind::Nftables, id).exists(),
        };
        let neighbours = match open(ImageKind::Neigh)? {
            Some(mut f) => {
                let mut text = Vec::new();
                // bounded: an image is untrusted input (a MiB is some 20,000 entries)
                std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, 1 << 20), &mut text)
                    .map_err(|e| format!("neigh image: {e}"))?;
                neigh::decode(&text)?
            }
            None => Vec::new(),
        };
        in_ns(pid, move || {
            routing::restore(images)?;
            neigh::restore(&neighbours)?;
            netfilter::restore(tables)
        })
        .map_err(|e| format!("its network namespace: {e}"))
    })();
    if result.is_err() {
        made.undo();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn externals_take_criu_forms_and_refuse_malformed_ones() {
        let e = parse_external("veth[eth0]:vethXYZ@br0").unwrap().unwrap();
        assert_eq!(
            (
                e.kind.as_str(),
                e.inside.as_str(),
                e.outside.as_deref(),
                e.bridge.as_deref()
            ),
            ("veth", "eth0", Some("vethXYZ"), Some("br0"))
        );
        let e = parse_external("veth[eth0]").unwrap().unwrap();
        assert_eq!((e.outside, e.bridge), (None, None));
        let e = parse_external("macvlan[mv0]:eno1").unwrap().unwrap();
        assert_eq!((e.kind.as_str(), e.outside.as_deref()), ("macvlan", Some("eno1")));
        assert_eq!(parse_external("mnt[/a]:/b"), Ok(None));
        assert!(parse_external("veth[eth0]x").is_err());
        assert!(parse_external("veth[]:x").is_err());
        assert!(parse_external("veth[eth0]:").is_err());
        assert!(parse_external("macvlan[m]:a@b").is_err());
        assert!(parse_external("veth[eth0]:averyveryverylongname").is_err());
    }
}
