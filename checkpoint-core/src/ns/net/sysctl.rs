//! The sysctls of a network namespace: `net.ipv4.conf` and `net.ipv6.conf` of "all" and
//! "default" (with `net.unix.max_dgram_qlen` and `net.ipv4.ping_group_range`) in
//! `netns-N.img`, those of each device in its `netdev-N.img` entry. The entries follow
//! CRIU's lists, in its order (an image's entries are known by their position); one missing
//! on this kernel has no value. Read and written through /proc/sys/net by a thread in the
//! namespace (it shows the namespace of the thread that opens it).

use crate::image::pb::{NetnsEntry, SysctlEntry, SysctlType};

/// A family's configuration: its directory under /proc/sys/net and its entries.
pub struct Family {
    pub dir: &'static str,
    pub names: &'static [&'static str],
}

/// net.ipv4.conf.*, in CRIU's order.
pub const V4: &Family = &Family {
    dir: "ipv4",
    names: &[
        "accept_local",
        "accept_redirects",
        "accept_source_route",
        "arp_accept",
        "arp_announce",
        "arp_filter",
        "arp_ignore",
        "arp_notify",
        "bootp_relay",
        "disable_policy",
        "disable_xfrm",
        "force_igmp_version",
        "forwarding",
        "igmpv2_unsolicited_report_interval",
        "igmpv3_unsolicited_report_interval",
        "log_martians",
        "medium_id",
        "promote_secondaries",
        "proxy_arp",
        "proxy_arp_pvlan",
        "route_localnet",
        "rp_filter",
        "secure_redirects",
        "send_redirects",
        "shared_media",
        "src_valid_mark",
        "tag",
        "ignore_routes_with_linkdown",
        "drop_gratuitous_arp",
        "drop_unicast_in_l2_multicast",
    ],
};

/// net.ipv6.conf.*, in CRIU's order.
pub const V6: &Family = &Family {
    dir: "ipv6",
    names: &[
        "accept_dad",
        "accept_ra",
        "accept_ra_defrtr",
        "accept_ra_from_local",
        "accept_ra_min_hop_limit",
        "accept_ra_mtu",
        "accept_ra_pinfo",
        "accept_ra_rt_info_max_plen",
        "accept_ra_rtr_pref",
        "accept_redirects",
        "accept_source_route",
        "autoconf",
        "dad_transmits",
        "disable_ipv6",
        "drop_unicast_in_l2_multicast",
        "drop_unsolicited_na",
        "force_mld_version",
        "force_tllao",
        "forwarding",
        "hop_limit",
        "ignore_routes_with_linkdown",
        "keep_addr_on_down",
        "max_addresses",
        "max_desync_factor",
        "mldv1_unsolicited_report_interval",
        "mldv2_unsolicited_report_interval",
        "mtu",
        "ndisc_notify",
        "optimistic_dad",
        "proxy_ndp",
        "regen_max_retry",
        "router_probe_interval",
        "router_solicitation_delay",
        "router_solicitation_interval",
        "router_solicitations",
        "stable_secret",
        "suppress_frag_ndisc",
        "temp_prefered_lft",
        "temp_valid_lft",
        "use_oif_addrs_only",
        "use_optimistic",
        "use_tempaddr",
    ],
};

/// String-valued entries (the rest are integers).
const STRINGS: [&str; 2] = ["stable_secret", "ping_group_range"];

fn read(path: &str, name: &str) -> SysctlEntry {
    // (An unset stable_secret reads as EIO: no value.)
    let text = std::fs::read_to_string(path).ok();
    if STRINGS.contains(&name) {
        SysctlEntry {
            r#type: SysctlType::CtlStr as i32,
            iarg: None,
            sarg: text.map(|t| t.trim_end_matches('\n').to_owned()),
        }
    } else {
        SysctlEntry {
            r#type: SysctlType::Ctl32 as i32,
            iarg: text.and_then(|t| t.trim().parse().ok()),
            sarg: None,
        }
    }
}

/// Writes `e` at `path` unless it holds that value already (or `e` has none).
fn write(path: &str, e: &SysctlEntry) -> Result<(), String> {
    let value = match (e.iarg, &e.sarg) {
        (Some(i), _) => i.to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => return Ok(()),
    };
    let now = std::fs::read_to_string(path).unwrap_or_default();
    // Tabs and spaces alike: multi-valued entries read back tab-separated.
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    if words(&now) == words(&value) {
        return Ok(());
    }
    std::fs::write(path, &value).map_err(|err| format!("{path} = {value}: {err}"))
}

/// The configuration of `target` ("all", "default" or a device) in `family`.
pub fn read_conf(family: &Family, target: &str) -> Vec<SysctlEntry> {
    family
        .names
        .iter()
        .map(|n| read(&format!("/proc/sys/net/{}/conf/{target}/{n}", family.dir), n))
        .collect()
}

/// Writes the saved configuration of `target` in `family` (entries beyond CRIU's list, or
/// without a value, are left alone). accept_redirects goes last: forwarding changes it.
pub fn write_conf(family: &Family, target: &str, saved: &[SysctlEntry]) -> Result<(), String> {
    let mut order: Vec<(&str, &SysctlEntry)> = family.names.iter().copied().zip(saved).collect();
    order.sort_by_key(|(n, _)| *n == "accept_redirects");
    for (name, e) in order {
        write(&format!("/proc/sys/net/{}/conf/{target}/{name}", family.dir), e)?;
    }
    Ok(())
}

/// The namespace-wide sysctls of the calling thread's namespace.
pub fn read_netns() -> NetnsEntry {
    NetnsEntry {
        def_conf4: read_conf(V4, "default"),
        all_conf4: read_conf(V4, "all"),
        def_conf6: read_conf(V6, "default"),
        all_conf6: read_conf(V6, "all"),
        unix_conf: vec![read("/proc/sys/net/unix/max_dgram_qlen", "max_dgram_qlen")],
        ipv4_sysctl: vec![read("/proc/sys/net/ipv4/ping_group_range", "ping_group_range")],
        ..Default::default()
    }
}

/// Writes the saved namespace-wide sysctls ("all" before "default", as CRIU).
pub fn write_netns(n: &NetnsEntry) -> Result<(), String> {
    write_conf(V4, "all", &n.all_conf4)?;
    write_conf(V4, "default", &n.def_conf4)?;
    write_conf(V6, "all", &n.all_conf6)?;
    write_conf(V6, "default", &n.def_conf6)?;
    if let Some(e) = n.unix_conf.first() {
        write("/proc/sys/net/unix/max_dgram_qlen", e)?;
    }
    if let Some(e) = n.ipv4_sysctl.first() {
        write("/proc/sys/net/ipv4/ping_group_range", e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_lists_and_value_types() {
        assert_eq!((V4.names.len(), V6.names.len()), (30, 42));
        let secret = read("/nonexistent", "stable_secret");
        assert_eq!((secret.r#type, secret.sarg), (SysctlType::CtlStr as i32, None));
        let n = read("/nonexistent", "forwarding");
        assert_eq!((n.r#type, n.iarg), (SysctlType::Ctl32 as i32, None));
    }
}
