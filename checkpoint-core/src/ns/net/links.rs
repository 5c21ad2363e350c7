//! The links of a network namespace (`netdev-N.img`): read with `ip -d -j link show` (the
//! interface flags ioctl gives the exact IFF_* bits, which `ip` prints only in part), made
//! again with `ip link add`/`ip link set`. Made again: the loopback (state, MTU), the inside
//! end of a veth pair (name, index, MAC, MTU, state; its outside end is made in our namespace
//! under the name `--external veth[INSIDE]:OUTSIDE[@BRIDGE]` gives, on that bridge if named),
//! a macvlan (on the lower device `--external macvlan[INSIDE]:LOWER` names).

use serde_json::Value;

use super::{run, ExternalLink};
use crate::image::pb::{MacvlanLinkEntry, NdType, NetDeviceEntry};

/// IFF_* bits above the 16 the flags ioctl returns, by the names `ip` prints them with.
const HIGH_FLAGS: [(&str, u32); 3] = [("LOWER_UP", 0x1_0000), ("DORMANT", 0x2_0000), ("ECHO", 0x4_0000)];

/// macvlan modes (MACVLAN_MODE_*), by the names `ip` prints them with.
const MACVLAN_MODES: [(&str, u32); 5] = [
    ("private", 1),
    ("vepa", 2),
    ("bridge", 4),
    ("passthru", 8),
    ("source", 16),
];

/// MACVLAN_FLAG_NOPROMISC.
const MACVLAN_NOPROMISC: u32 = 1;

/// One link of a namespace, as read in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// Its kind (IFLA_INFO_KIND: "veth", "macvlan"...), else its link type ("loopback"...).
    pub kind: String,
    /// IFF_* flags.
    pub flags: u32,
    pub mtu: u32,
    pub mac: Option<Vec<u8>>,
    /// The index of its peer (veth) or lower device (macvlan), and whether that is in
    /// another namespace.
    pub link: Option<(u32, bool)>,
    /// The index of the device it is attached to (a bridge...).
    pub master: Option<u32>,
    pub macvlan: Option<MacvlanLinkEntry>,
}

impl Link {
    /// Its entry in `netdev-N.img` (namespace image id `ns_id`), without its sysctls.
    pub fn entry(&self, ns_id: u32) -> NetDeviceEntry {
        let r#type = match self.kind.as_str() {
            "loopback" => NdType::Loopback,
            "veth" => NdType::Veth,
            "macvlan" => NdType::Macvlan,
            _ => NdType::Extlink,
        };
        let (peer, outside) = self.link.unwrap_or((self.ifindex, false));
        NetDeviceEntry {
            r#type: r#type as i32,
            ifindex: self.ifindex,
            mtu: self.mtu,
            flags: self.flags,
            name: self.name.clone(),
            // As CRIU: a loopback's (all zeros) is not saved.
            address: self.mac.clone().filter(|_| r#type != NdType::Loopback),
            macvlan: self.macvlan.clone(),
            peer_ifindex: Some(peer),
            // A peer in a namespace that is not dumped has none.
            peer_nsid: (!outside).then_some(ns_id),
            master: self.master,
            ..Default::default()
        }
    }
}

fn mac(text: &str) -> Option<Vec<u8>> {
    text.split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect()
}

fn mac_text(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses the output of `ip -d -j link show`; `flags_of` gives a device's IFF_* flags (the
/// low 16 bits, from the ioctl) by name.
pub fn parse(json: &[u8], flags_of: impl Fn(&str) -> Option<u32>) -> Result<Vec<Link>, String> {
    let all: Vec<Value> = serde_json::from_slice(json).map_err(|e| format!("`ip -j link show`: {e}"))?;
    let index_of = |name: &str| {
        all.iter()
            .find(|l| l["ifname"] == name)
            .and_then(|l| l["ifindex"].as_u64())
            .map(|i| i as u32)
    };
    let mut out = Vec::new();
    for l in &all {
        let name = l["ifname"]
            .as_str()
            .ok_or("`ip -j link show`: a link without a name")?
            .to_owned();
        let ifindex = l["ifindex"].as_u64().ok_or_else(|| format!("{name}: no index"))? as u32;
        let names: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let high = HIGH_FLAGS
            .iter()
            .filter(|(n, _)| names.contains(n))
            .fold(0, |a, (_, b)| a | b);
        let low = flags_of(&name).ok_or_else(|| format!("{name}: its flags are unreadable"))?;
        let info = &l["linkinfo"];
        let kind = info["info_kind"]
            .as_str()
            .or_else(|| l["link_type"].as_str())
            .unwrap_or("unknown")
            .to_owned();
        // The peer or lower device: by index (and namespace id) when in another namespace,
        // by name in this one.
        let link = match (l["link_index"].as_u64(), l["link"].as_str()) {
            (Some(i), _) => Some((i as u32, l.get("link_netnsid").is_some())),
            (None, Some(peer)) => index_of(peer).map(|i| (i, false)),
            (None, None) => None,
        };
        let macvlan = (kind == "macvlan").then(|| {
            let data = &info["info_data"];
            let mode = data["mode"].as_str().unwrap_or("vepa");
            MacvlanLinkEntry {
                mode: MACVLAN_MODES.iter().find(|(n, _)| *n == mode).map_or(0, |(_, m)| *m),
                flags: Some(if data.get("nopromisc").is_some() {
                    MACVLAN_NOPROMISC
                } else {
                    0
                }),
            }
        });
        out.push(Link {
            ifindex,
            kind,
            flags: low | high,
            mtu: l["mtu"].as_u64().unwrap_or(0) as u32,
            mac: l["address"].as_str().and_then(mac),
            link,
            master: l["master"].as_str().and_then(index_of),
            macvlan,
            name,
        });
    }
    Ok(out)
}

/// The links of the calling thread's network namespace.
pub fn list() -> Result<Vec<Link>, String> {
    let json = run("ip", &["-d", "-j", "link", "show"], None, None)?;
    parse(&json, |name| crate::sys::if_flags_mtu(name).ok().map(|(f, _)| f))
}

fn external<'a>(externals: &'a [ExternalLink], kind: &str, name: &str) -> Option<&'a ExternalLink> {
    externals.iter().find(|e| e.kind == kind && e.inside == name)
}

/// Refuses the links that are not made again: any but a loopback, a veth whose peer is
/// outside and `externals` names, a macvlan `externals` names.
pub fn check(links: &[Link], externals: &[ExternalLink]) -> Result<(), String> {
    for l in links {
        let name = &l.name;
        match l.kind.as_str() {
            "loopback" => {}
            "veth" if !l.link.is_some_and(|(_, outside)| outside) => {
                return Err(format!(
                    "the veth device {name} (index {}) has its peer inside the namespace too: a pair inside is not made again",
                    l.ifindex
                ));
            }
            "veth" if external(externals, "veth", name).is_none() => {
                return Err(format!(
                    "the veth device {name} (index {}) has its peer outside: checkpoint with --external veth[{name}] and restore with --external veth[{name}]:OUTSIDE[@BRIDGE]",
                    l.ifindex
                ));
            }
            "macvlan" if external(externals, "macvlan", name).is_none() => {
                return Err(format!(
                    "the macvlan device {name} (index {}) sits on a device outside: checkpoint with --external macvlan[{name}] and restore with --external macvlan[{name}]:LOWER",
                    l.ifindex
                ));
            }
            "veth" | "macvlan" => {}
            kind => {
                return Err(format!(
                    "the device {name} (index {}) is a {kind}: only a loopback, veth and macvlan devices are made again",
                    l.ifindex
                ));
            }
        }
        if let Some(m) = l.master {
            return Err(format!(
                "the device {name} is attached to device {m} inside: not made again"
            ));
        }
    }
    Ok(())
}

/// What a restore made outside the container's namespace, removed again if it fails.
#[derive(Debug, Default)]
pub struct Made {
    /// Outside ends of veth pairs (removing one removes its pair).
    pub veths: Vec<String>,
}

impl Made {
    /// Removes what was made, by name.
    pub fn undo(&mut self) {
        for name in self.veths.drain(..) {
            let _ = run("ip", &["link", "del", "dev", &name], None, None);
        }
    }
}

/// `ip link set` arguments for a device's saved state: up or down, ARP, multicast, and the
/// promiscuous and all-multicast modes asked for.
fn state_args(flags: u32) -> Vec<&'static str> {
    let on = |bit: i32| flags & bit as u32 != 0;
    let mut args = vec![
        if on(libc::IFF_UP) { "up" } else { "down" },
        "arp",
        if on(libc::IFF_NOARP) { "off" } else { "on" },
    ];
    if on(libc::IFF_PROMISC) {
        args.extend(["promisc", "on"]);
    }
    if on(libc::IFF_ALLMULTI) {
        args.extend(["allmulticast", "on"]);
    }
    args
}

/// Makes device `dev` again in the namespace of `pid` (a new one, with its loopback), noting
/// in `made` what is made outside.
pub fn make(pid: i32, dev: &NetDeviceEntry, externals: &[ExternalLink], made: &mut Made) -> Result<(), String> {
    let name = dev.name.as_str();
    let (index, mtu) = (dev.ifindex.to_string(), dev.mtu.to_string());
    let address = dev.address.as_deref().map(mac_text);
    let mut common = vec!["name", name, "index", &index, "mtu", &mtu];
    if let Some(a) = &address {
        common.extend(["address", a.as_str()]);
    }
    let set_state = || {
        let mut args = vec!["link", "set", "dev", name];
        args.extend(state_args(dev.flags));
        super::in_ns(pid, || run("ip", &args, None, None).map(drop))
    };
    let kind = NdType::try_from(dev.r#type).map_or_else(|_| format!("type {}", dev.r#type), |t| format!("{t:?}"));
    let fail = |e: String| format!("network device {name} ({kind}): {e}");
    match NdType::try_from(dev.r#type) {
        Ok(NdType::Loopback) => {
            super::in_ns(pid, || {
                run("ip", &["link", "set", "dev", name, "mtu", &mtu], None, None).map(drop)
            })
            .map_err(fail)?;
            set_state().map_err(fail)
        }
        Ok(NdType::Veth) => {
            let ext = external(externals, "veth", name).and_then(|e| Some((e.outside.as_deref()?, e)));
            let Some((outside, ext)) = ext else {
                return Err(fail(format!(
                    "its peer was outside: name its outside end with --external veth[{name}]:OUTSIDE[@BRIDGE]"
                )));
            };
            let us = std::process::id().to_string();
            let mut args = vec!["link", "add"];
            args.extend(&common);
            args.extend(["type", "veth", "peer", "name", outside, "netns", &us]);
            super::in_ns(pid, || run("ip", &args, None, None).map(drop))
                .map_err(|e| fail(format!("making it with its outside end {outside}: {e}")))?;
            made.veths.push(outside.to_owned());
            // The outside end, in our namespace: on its bridge, and up.
            if let Some(bridge) = &ext.bridge {
                run("ip", &["link", "set", "dev", outside, "master", bridge], None, None)
                    .map_err(|e| fail(format!("attaching its outside end {outside} to {bridge}: {e}")))?;
            }
            run("ip", &["link", "set", "dev", outside, "up"], None, None)
                .map_err(|e| fail(format!("its outside end {outside}: {e}")))?;
            set_state().map_err(fail)
        }
        Ok(NdType::Macvlan) => {
            let Some(lower) = external(externals, "macvlan", name).and_then(|e| e.outside.as_deref()) else {
                return Err(fail(format!(
                    "it sat on a device outside: name it with --external macvlan[{name}]:LOWER"
                )));
            };
            let m = dev.macvlan.clone().unwrap_or(MacvlanLinkEntry { mode: 2, flags: None });
            let mode = MACVLAN_MODES
                .iter()
                .find(|(_, v)| *v == m.mode)
                .map_or("vepa", |(n, _)| *n);
            let target = pid.to_string();
            let mut args = vec!["link", "add", "link", lower];
            args.extend(&common);
            args.extend(["netns", &target, "type", "macvlan", "mode", mode]);
            if m.flags.unwrap_or(0) & MACVLAN_NOPROMISC != 0 {
                args.push("nopromisc");
            }
            // Made in our namespace (where its lower device is) straight into the container's.
            run("ip", &args, None, None).map_err(|e| fail(format!("making it on {lower}: {e}")))?;
            set_state().map_err(fail)
        }
        _ => Err(fail("only a loopback, veth and macvlan devices are made again".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWN: &str = r#"[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00"},
 {"ifindex":2,"link_index":6,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1400,
  "link_type":"ether","address":"a6:a4:fa:2e:b0:1d","link_netnsid":0,"linkinfo":{"info_kind":"veth"}},
 {"ifindex":3,"link":"eth0","ifname":"mv0","flags":["BROADCAST"],"mtu":1500,"link_type":"ether",
  "address":"02:00:00:00:00:01","linkinfo":{"info_kind":"macvlan","info_data":{"mode":"bridge"}}},
 {"ifindex":4,"ifname":"tun0","flags":["POINTOPOINT"],"mtu":1500,"link_type":"none","linkinfo":{"info_kind":"tun"}}
]"#;

    #[test]
    fn links_as_ip_shows_them() {
        let links = parse(SHOWN.as_bytes(), |n| Some(if n == "tun0" { 0x10 } else { 0x41 })).unwrap();
        assert_eq!(links.len(), 4);
        let eth0 = &links[1];
        assert_eq!(
            (eth0.kind.as_str(), eth0.mtu, eth0.link),
            ("veth", 1400, Some((6, true)))
        );
        assert_eq!(eth0.flags, 0x41 | 0x1_0000);
        assert_eq!(eth0.mac, Some(vec![0xa6, 0xa4, 0xfa, 0x2e, 0xb0, 0x1d]));
        let e = eth0.entry(7);
        assert_eq!(
            (e.r#type, e.peer_ifindex, e.peer_nsid),
            (NdType::Veth as i32, Some(6), None)
        );
        assert_eq!(links[0].entry(7).address, None);
        assert_eq!(links[0].entry(7).peer_nsid, Some(7));
        assert_eq!(links[2].link, Some((2, false)));
        assert_eq!(links[2].macvlan.as_ref().map(|m| m.mode), Some(4));
        assert_eq!(mac_text(&[0xa6, 0x0b]), "a6:0b");
    }

    #[test]
    fn a_veth_needs_its_external_and_other_kinds_are_refused() {
        let links = parse(SHOWN.as_bytes(), |_| Some(0)).unwrap();
        let veth = super::super::parse_external("veth[eth0]").unwrap().unwrap();
        let mv = super::super::parse_external("macvlan[mv0]").unwrap().unwrap();
        let e = check(&links[..2], &[]).unwrap_err();
        assert!(e.contains("eth0") && e.contains("--external veth[eth0]"), "{e}");
        check(&links[..2], std::slice::from_ref(&veth)).unwrap();
        let e = check(&links[..3], std::slice::from_ref(&veth)).unwrap_err();
        assert!(e.contains("mv0") && e.contains("macvlan[mv0]"), "{e}");
        let e = check(&links, &[veth, mv]).unwrap_err();
        assert!(e.contains("tun0") && e.contains("tun"), "{e}");
    }
}
