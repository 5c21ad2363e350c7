//! Smaller image families: seccomp filters, BPF maps, CPU info, autofs, binfmt_misc, AppArmor.

use super::{hex, FownEntry};

/// One classic-BPF seccomp filter; `prev` links filters into a tree.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SeccompFilter {
    /// `struct sock_filter` array, 8 bytes per instruction.
    #[prost(bytes = "vec", required, tag = "1")]
    #[serde(serialize_with = "hex")]
    pub filter: Vec<u8>,
    #[prost(uint32, optional, tag = "2")]
    pub prev: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
}

/// The one entry of `seccomp.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SeccompEntry {
    #[prost(message, repeated, tag = "1")]
    pub seccomp_filters: Vec<SeccompFilter>,
}

/// An open BPF map.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct BpfmapFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    #[prost(message, required, tag = "4")]
    pub fown: FownEntry,
    #[prost(uint32, required, tag = "5")]
    pub map_type: u32,
    #[prost(uint32, required, tag = "6")]
    pub key_size: u32,
    #[prost(uint32, required, tag = "7")]
    pub value_size: u32,
    #[prost(uint32, required, tag = "8")]
    pub map_id: u32,
    #[prost(uint32, required, tag = "9")]
    pub max_entries: u32,
    #[prost(uint32, required, tag = "10")]
    pub map_flags: u32,
    #[prost(uint64, required, tag = "11")]
    pub memlock: u64,
    #[prost(bool, required, tag = "12")]
    pub frozen: bool,
    #[prost(string, required, tag = "13")]
    pub map_name: String,
    #[prost(uint32, required, tag = "14")]
    pub ifindex: u32,
    #[prost(sint32, optional, tag = "15", default = "-1")]
    pub mnt_id: Option<i32>,
    #[prost(uint64, optional, tag = "16")]
    pub map_extra: Option<u64>,
}

/// Contents of a BPF map; `keys_bytes + values_bytes` raw bytes follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct BpfmapDataEntry {
    #[prost(uint32, required, tag = "1")]
    pub map_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub keys_bytes: u32,
    #[prost(uint32, required, tag = "3")]
    pub values_bytes: u32,
    #[prost(uint32, required, tag = "4")]
    pub count: u32,
}

criu_enum! {
    /// x86 CPU vendor.
    pub enum CpuVendor {
        Unknown = 0 => "UNKNOWN",
        Intel = 1 => "INTEL",
        Amd = 2 => "AMD",
    }
}

/// x86 CPU description (`cpuinfo.img`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CpuinfoX86Entry {
    #[prost(enumeration = "CpuVendor", required, tag = "1")]
    #[serde(serialize_with = "super::enum_name::<CpuVendor, _>")]
    pub vendor_id: i32,
    #[prost(uint32, required, tag = "2")]
    pub cpu_family: u32,
    #[prost(uint32, required, tag = "3")]
    pub model: u32,
    #[prost(uint32, required, tag = "4")]
    pub stepping: u32,
    #[prost(uint32, required, tag = "5")]
    pub capability_ver: u32,
    #[prost(uint32, repeated, packed = "false", tag = "6")]
    pub capability: Vec<u32>,
    #[prost(string, optional, tag = "7")]
    pub model_id: Option<String>,
    #[prost(uint64, optional, tag = "8")]
    pub xfeatures_mask: Option<u64>,
    #[prost(uint32, optional, tag = "9")]
    pub xsave_size: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub xsave_size_max: Option<u32>,
}

/// The one entry of `cpuinfo.img` (x86 only here).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CpuinfoEntry {
    #[prost(message, repeated, tag = "1")]
    pub x86_entry: Vec<CpuinfoX86Entry>,
}

/// An autofs mount's state.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct AutofsEntry {
    #[prost(int32, required, tag = "1")]
    pub fd: i32,
    #[prost(int32, required, tag = "2")]
    pub pgrp: i32,
    #[prost(int32, required, tag = "3")]
    pub timeout: i32,
    #[prost(int32, required, tag = "4")]
    pub minproto: i32,
    #[prost(int32, required, tag = "5")]
    pub maxproto: i32,
    #[prost(int32, required, tag = "6")]
    pub mode: i32,
    #[prost(int32, optional, tag = "7")]
    pub uid: Option<i32>,
    #[prost(int32, optional, tag = "8")]
    pub gid: Option<i32>,
    #[prost(int32, optional, tag = "9")]
    pub read_fd: Option<i32>,
}

/// One binfmt_misc handler.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct BinfmtMiscEntry {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(bool, required, tag = "2")]
    pub enabled: bool,
    #[prost(string, required, tag = "3")]
    pub interpreter: String,
    #[prost(string, optional, tag = "4")]
    pub flags: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub extension: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub magic: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub mask: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub offset: Option<i32>,
}

/// One AppArmor policy blob.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct AaPolicy {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(bytes = "vec", required, tag = "2")]
    #[serde(serialize_with = "hex")]
    pub blob: Vec<u8>,
}

/// An AppArmor namespace and its sub-namespaces.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct AaNamespace {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub policies: Vec<AaPolicy>,
    #[prost(message, repeated, tag = "3")]
    pub namespaces: Vec<AaNamespace>,
}

/// The one entry of `apparmor.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ApparmorEntry {
    #[prost(message, repeated, tag = "1")]
    pub namespaces: Vec<AaNamespace>,
}
