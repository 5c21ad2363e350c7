//! Network namespaces: devices (`netdev-<id>.img`), sysctls (`netns-<id>.img`), tun files.

use super::opt_hex;

criu_enum! {
    /// Kind of a network device.
    pub enum NdType {
        Loopback = 1 => "LOOPBACK",
        Veth = 2 => "VETH",
        Tun = 3 => "TUN",
        Extlink = 4 => "EXTLINK",
        Venet = 5 => "VENET",
        Bridge = 6 => "BRIDGE",
        Macvlan = 7 => "MACVLAN",
        Sit = 8 => "SIT",
    }
}

criu_enum! {
    /// Type of a sysctl value.
    pub enum SysctlType {
        CtlStr = 5 => "CTL_STR",
        Ctl32 = 6 => "CTL_32",
    }
}

/// One sysctl value.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SysctlEntry {
    #[prost(enumeration = "SysctlType", required, tag = "1")]
    #[serde(serialize_with = "super::enum_name::<SysctlType, _>")]
    pub r#type: i32,
    #[prost(int32, optional, tag = "2")]
    pub iarg: Option<i32>,
    #[prost(string, optional, tag = "3")]
    pub sarg: Option<String>,
}

/// tun/tap device settings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TunLinkEntry {
    #[prost(uint32, required, tag = "1")]
    pub flags: u32,
    #[prost(int32, required, tag = "2")]
    pub owner: i32,
    #[prost(int32, required, tag = "3")]
    pub group: i32,
    #[prost(uint32, required, tag = "4")]
    pub vnethdr: u32,
    #[prost(uint32, required, tag = "5")]
    pub sndbuf: u32,
}

/// An open /dev/net/tun file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TunfileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(string, optional, tag = "2")]
    pub netdev: Option<String>,
    #[prost(bool, optional, tag = "3")]
    pub detached: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    pub ns_id: Option<u32>,
}

/// macvlan settings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MacvlanLinkEntry {
    #[prost(uint32, required, tag = "1")]
    pub mode: u32,
    #[prost(uint32, optional, tag = "2")]
    pub flags: Option<u32>,
}

/// sit tunnel settings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SitEntry {
    #[prost(uint32, optional, tag = "1")]
    pub link: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub local: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub remote: Vec<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub ttl: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub tos: Option<u32>,
    #[prost(bool, optional, tag = "6")]
    pub pmtudisc: Option<bool>,
    #[prost(uint32, optional, tag = "7")]
    pub proto: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub flags: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub encap_type: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub encap_flags: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub encap_sport: Option<u32>,
    #[prost(uint32, optional, tag = "12")]
    pub encap_dport: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub rd_prefixlen: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "14")]
    pub rd_prefix: Vec<u32>,
    #[prost(uint32, optional, tag = "15")]
    pub relay_prefixlen: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "16")]
    pub relay_prefix: Vec<u32>,
}

/// One network device of a namespace.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NetDeviceEntry {
    #[prost(enumeration = "NdType", required, tag = "1")]
    #[serde(serialize_with = "super::enum_name::<NdType, _>")]
    pub r#type: i32,
    #[prost(uint32, required, tag = "2")]
    pub ifindex: u32,
    #[prost(uint32, required, tag = "3")]
    pub mtu: u32,
    /// IFF_* flags.
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
    #[prost(string, required, tag = "5")]
    pub name: String,
    #[prost(message, optional, tag = "6")]
    pub tun: Option<TunLinkEntry>,
    /// MAC address.
    #[prost(bytes = "vec", optional, tag = "7")]
    #[serde(serialize_with = "opt_hex")]
    pub address: Option<Vec<u8>>,
    #[prost(int32, repeated, packed = "false", tag = "8")]
    pub conf: Vec<i32>,
    #[prost(message, repeated, tag = "9")]
    pub conf4: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "10")]
    pub conf6: Vec<SysctlEntry>,
    #[prost(message, optional, tag = "11")]
    pub macvlan: Option<MacvlanLinkEntry>,
    #[prost(uint32, optional, tag = "12")]
    pub peer_ifindex: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub peer_nsid: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub master: Option<u32>,
    #[prost(message, optional, tag = "15")]
    pub sit: Option<SitEntry>,
}

/// A peer namespace id known to a netns.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NetnsId {
    #[prost(uint32, required, tag = "1")]
    pub target_ns_id: u32,
    #[prost(int32, required, tag = "2")]
    pub netnsid_value: i32,
}

/// `netns-<id>.img`: namespace-wide sysctls.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NetnsEntry {
    #[prost(int32, repeated, packed = "false", tag = "1")]
    pub def_conf: Vec<i32>,
    #[prost(int32, repeated, packed = "false", tag = "2")]
    pub all_conf: Vec<i32>,
    #[prost(message, repeated, tag = "3")]
    pub def_conf4: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "4")]
    pub all_conf4: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "5")]
    pub def_conf6: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "6")]
    pub all_conf6: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "7")]
    pub nsids: Vec<NetnsId>,
    #[prost(string, optional, tag = "8")]
    pub ext_key: Option<String>,
    #[prost(message, repeated, tag = "9")]
    pub unix_conf: Vec<SysctlEntry>,
    #[prost(message, repeated, tag = "10")]
    pub ipv4_sysctl: Vec<SysctlEntry>,
}
