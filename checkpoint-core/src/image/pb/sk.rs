//! Sockets: options, unix, inet, packet, netlink, queued packets (`sk-queues.img`) and
//! TCP streams (`tcp-stream-<ino>.img`).

use super::{hex, FownEntry};

criu_enum! {
    /// Which directions of a socket are shut down.
    pub enum SkShutdown {
        None = 0 => "NONE",
        Read = 1 => "READ",
        Write = 2 => "WRITE",
        Both = 3 => "BOTH",
    }
}

/// Socket options common to every family.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SkOptsEntry {
    #[prost(uint32, required, tag = "1")]
    pub so_sndbuf: u32,
    #[prost(uint32, required, tag = "2")]
    pub so_rcvbuf: u32,
    #[prost(uint64, required, tag = "3")]
    pub so_snd_tmo_sec: u64,
    #[prost(uint64, required, tag = "4")]
    pub so_snd_tmo_usec: u64,
    #[prost(uint64, required, tag = "5")]
    pub so_rcv_tmo_sec: u64,
    #[prost(uint64, required, tag = "6")]
    pub so_rcv_tmo_usec: u64,
    #[prost(bool, optional, tag = "7")]
    pub reuseaddr: Option<bool>,
    #[prost(uint32, optional, tag = "8")]
    pub so_priority: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub so_rcvlowat: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub so_mark: Option<u32>,
    #[prost(bool, optional, tag = "11")]
    pub so_passcred: Option<bool>,
    #[prost(bool, optional, tag = "12")]
    pub so_passsec: Option<bool>,
    #[prost(bool, optional, tag = "13")]
    pub so_dontroute: Option<bool>,
    #[prost(bool, optional, tag = "14")]
    pub so_no_check: Option<bool>,
    #[prost(string, optional, tag = "15")]
    pub so_bound_dev: Option<String>,
    /// Classic BPF socket filter.
    #[prost(fixed64, repeated, packed = "false", tag = "16")]
    pub so_filter: Vec<u64>,
    #[prost(bool, optional, tag = "17")]
    pub so_reuseport: Option<bool>,
    #[prost(bool, optional, tag = "18")]
    pub so_broadcast: Option<bool>,
    #[prost(bool, optional, tag = "19")]
    pub so_keepalive: Option<bool>,
    #[prost(uint32, optional, tag = "20")]
    pub tcp_keepcnt: Option<u32>,
    #[prost(uint32, optional, tag = "21")]
    pub tcp_keepidle: Option<u32>,
    #[prost(uint32, optional, tag = "22")]
    pub tcp_keepintvl: Option<u32>,
    #[prost(uint32, optional, tag = "23")]
    pub so_oobinline: Option<u32>,
    #[prost(uint32, optional, tag = "24")]
    pub so_linger: Option<u32>,
    #[prost(uint32, optional, tag = "25")]
    pub so_buf_lock: Option<u32>,
}

/// Permissions of a bound unix socket's inode.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FilePermsEntry {
    #[prost(uint32, required, tag = "1")]
    pub mode: u32,
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
}

/// A unix socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UnixSkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Socket inode; peers refer to it.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "4")]
    pub state: u32,
    #[prost(uint32, required, tag = "5")]
    pub flags: u32,
    #[prost(uint32, required, tag = "6")]
    pub uflags: u32,
    #[prost(uint32, required, tag = "7")]
    pub backlog: u32,
    /// Peer inode, 0 if none.
    #[prost(uint32, required, tag = "8")]
    pub peer: u32,
    #[prost(message, required, tag = "9")]
    pub fown: FownEntry,
    #[prost(message, required, tag = "10")]
    pub opts: SkOptsEntry,
    /// Bound address; abstract names start with NUL.
    #[prost(bytes = "vec", required, tag = "11")]
    #[serde(serialize_with = "hex")]
    pub name: Vec<u8>,
    #[prost(enumeration = "SkShutdown", optional, tag = "12")]
    #[serde(serialize_with = "super::opt_enum_name::<SkShutdown, _>")]
    pub shutdown: Option<i32>,
    #[prost(message, optional, tag = "13")]
    pub file_perms: Option<FilePermsEntry>,
    #[prost(string, optional, tag = "14")]
    pub name_dir: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub deleted: Option<bool>,
    #[prost(uint32, optional, tag = "16")]
    pub ns_id: Option<u32>,
    #[prost(sint32, optional, tag = "17", default = "-1")]
    pub mnt_id: Option<i32>,
}

/// Options of raw IP sockets.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpOptsRawEntry {
    #[prost(bool, optional, tag = "1")]
    pub hdrincl: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub nodefrag: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub checksum: Option<bool>,
    #[prost(uint32, repeated, packed = "false", tag = "4")]
    pub icmpv_filter: Vec<u32>,
}

/// IP-level socket options.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpOptsEntry {
    #[prost(bool, optional, tag = "1")]
    pub freebind: Option<bool>,
    #[prost(message, optional, tag = "4")]
    pub raw: Option<IpOptsRawEntry>,
    #[prost(bool, optional, tag = "5")]
    pub pktinfo: Option<bool>,
    #[prost(uint32, optional, tag = "6")]
    pub tos: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub ttl: Option<u32>,
}

/// TCP-level socket options.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TcpOptsEntry {
    #[prost(bool, optional, tag = "1")]
    pub cork: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub nodelay: Option<bool>,
    #[prost(uint32, optional, tag = "3")]
    pub keepcnt: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub keepidle: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub keepintvl: Option<u32>,
}

/// An IPv4/IPv6 socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InetSkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Inode; names `tcp-stream-<ino hex>.img`.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub family: u32,
    #[prost(uint32, required, tag = "4")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "5")]
    pub proto: u32,
    #[prost(uint32, required, tag = "6")]
    pub state: u32,
    #[prost(uint32, required, tag = "7")]
    pub src_port: u32,
    #[prost(uint32, required, tag = "8")]
    pub dst_port: u32,
    #[prost(uint32, required, tag = "9")]
    pub flags: u32,
    #[prost(uint32, required, tag = "10")]
    pub backlog: u32,
    /// One word (v4) or four (v6), network byte order.
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub src_addr: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub dst_addr: Vec<u32>,
    #[prost(message, required, tag = "13")]
    pub fown: FownEntry,
    #[prost(message, required, tag = "14")]
    pub opts: SkOptsEntry,
    #[prost(bool, optional, tag = "15")]
    pub v6only: Option<bool>,
    #[prost(message, optional, tag = "16")]
    pub ip_opts: Option<IpOptsEntry>,
    #[prost(string, optional, tag = "17")]
    pub ifname: Option<String>,
    #[prost(uint32, optional, tag = "18")]
    pub ns_id: Option<u32>,
    #[prost(enumeration = "SkShutdown", optional, tag = "19")]
    #[serde(serialize_with = "super::opt_enum_name::<SkShutdown, _>")]
    pub shutdown: Option<i32>,
    #[prost(message, optional, tag = "20")]
    pub tcp_opts: Option<TcpOptsEntry>,
}

/// A multicast membership of a packet socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketMclist {
    #[prost(uint32, required, tag = "1")]
    pub index: u32,
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    #[prost(bytes = "vec", required, tag = "3")]
    #[serde(serialize_with = "hex")]
    pub addr: Vec<u8>,
}

/// A packet socket ring.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketRing {
    #[prost(uint32, required, tag = "1")]
    pub block_size: u32,
    #[prost(uint32, required, tag = "2")]
    pub block_nr: u32,
    #[prost(uint32, required, tag = "3")]
    pub frame_size: u32,
    #[prost(uint32, required, tag = "4")]
    pub frame_nr: u32,
    #[prost(uint32, required, tag = "5")]
    pub retire_tmo: u32,
    #[prost(uint32, required, tag = "6")]
    pub sizeof_priv: u32,
    #[prost(uint32, required, tag = "7")]
    pub features: u32,
}

/// An AF_PACKET socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketSockEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "3")]
    pub protocol: u32,
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
    #[prost(uint32, required, tag = "5")]
    pub ifindex: u32,
    #[prost(message, required, tag = "6")]
    pub fown: FownEntry,
    #[prost(message, required, tag = "7")]
    pub opts: SkOptsEntry,
    #[prost(uint32, required, tag = "8")]
    pub version: u32,
    #[prost(uint32, required, tag = "9")]
    pub reserve: u32,
    #[prost(bool, required, tag = "10")]
    pub aux_data: bool,
    #[prost(bool, required, tag = "11")]
    pub orig_dev: bool,
    #[prost(bool, required, tag = "12")]
    pub vnet_hdr: bool,
    #[prost(bool, required, tag = "13")]
    pub loss: bool,
    #[prost(uint32, required, tag = "14")]
    pub timestamp: u32,
    #[prost(uint32, required, tag = "15")]
    pub copy_thresh: u32,
    #[prost(message, repeated, tag = "16")]
    pub mclist: Vec<PacketMclist>,
    #[prost(uint32, optional, tag = "17", default = "4294967295")]
    pub fanout: Option<u32>,
    #[prost(message, optional, tag = "18")]
    pub rx_ring: Option<PacketRing>,
    #[prost(message, optional, tag = "19")]
    pub tx_ring: Option<PacketRing>,
    #[prost(uint32, optional, tag = "20")]
    pub ns_id: Option<u32>,
}

/// A netlink socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NetlinkSkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub protocol: u32,
    #[prost(uint32, required, tag = "4")]
    pub state: u32,
    #[prost(uint32, required, tag = "6")]
    pub flags: u32,
    #[prost(uint32, required, tag = "7")]
    pub portid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub groups: Vec<u32>,
    #[prost(uint32, required, tag = "9")]
    pub dst_portid: u32,
    #[prost(uint32, required, tag = "10")]
    pub dst_group: u32,
    #[prost(message, required, tag = "11")]
    pub fown: FownEntry,
    #[prost(message, required, tag = "12")]
    pub opts: SkOptsEntry,
    #[prost(uint32, optional, tag = "13")]
    pub ns_id: Option<u32>,
}

/// Ancillary data of a queued packet (SCM_RIGHTS carries file ids).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ScmEntry {
    #[prost(uint32, required, tag = "1")]
    pub r#type: u32,
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub rights: Vec<u32>,
}

/// One packet queued on a socket (`sk-queues.img`); `length` raw bytes follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SkPacketEntry {
    /// Socket id whose receive queue holds the packet.
    #[prost(uint32, required, tag = "1")]
    pub id_for: u32,
    #[prost(uint32, required, tag = "2")]
    pub length: u32,
    /// The sender's address (a sockaddr_in or sockaddr_in6, as the kernel lays it out): the
    /// field CRIU's format reserves for it; written for UDP datagrams.
    #[prost(bytes = "vec", optional, tag = "3")]
    #[serde(serialize_with = "super::opt_hex")]
    pub addr: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "4")]
    pub scm: Vec<ScmEntry>,
}

/// State of an established TCP connection; `inq_len` then `outq_len` raw bytes follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TcpStreamEntry {
    #[prost(uint32, required, tag = "1")]
    pub inq_len: u32,
    #[prost(uint32, required, tag = "2")]
    pub inq_seq: u32,
    #[prost(uint32, required, tag = "3")]
    pub outq_len: u32,
    #[prost(uint32, required, tag = "4")]
    pub outq_seq: u32,
    #[prost(uint32, required, tag = "5")]
    pub opt_mask: u32,
    #[prost(uint32, required, tag = "6")]
    pub snd_wscale: u32,
    #[prost(uint32, required, tag = "7")]
    pub mss_clamp: u32,
    #[prost(uint32, optional, tag = "8")]
    pub rcv_wscale: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub timestamp: Option<u32>,
    #[prost(bool, optional, tag = "10")]
    pub cork: Option<bool>,
    #[prost(bool, optional, tag = "11")]
    pub nodelay: Option<bool>,
    #[prost(uint32, optional, tag = "12")]
    pub unsq_len: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub snd_wl1: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub snd_wnd: Option<u32>,
    #[prost(uint32, optional, tag = "15")]
    pub max_window: Option<u32>,
    #[prost(uint32, optional, tag = "16")]
    pub rcv_wnd: Option<u32>,
    #[prost(uint32, optional, tag = "17")]
    pub rcv_wup: Option<u32>,
}
