//! Hand-written protobuf messages of CRIU's image format (proto2), one file per image family.
//!
//! Field numbers, types and labels follow the CRIU image format tables; the structs are ours.
//! Conventions: proto2 `required` scalars and messages are plain fields and are always encoded;
//! `optional` ones are `Option`s; repeated scalars are unpacked (`packed = "false"`), as CRIU
//! writes them. Enum-typed fields are `i32` tagged with their enumeration.

/// Defines a proto enum: a prost enumeration plus the value names crit prints.
macro_rules! criu_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($variant:ident = $val:literal => $label:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
        #[repr(i32)]
        pub enum $name { $($variant = $val),* }

        impl $crate::image::pb::CriuEnum for $name {
            fn proto_name(value: i32) -> Option<&'static str> {
                match value { $($val => Some($label),)* _ => None }
            }
        }
    };
}

mod anonfd;
mod cgroup;
mod core;
mod core_x86;
mod fdinfo;
mod fsnotify;
mod inventory;
mod misc;
mod mm;
mod mnt;
mod net;
mod ns;
mod pipe;
mod pstree;
mod regfile;
mod sk;
mod stats;
mod tty;

pub use self::core::*;
pub use anonfd::*;
pub use cgroup::*;
pub use core_x86::*;
pub use fdinfo::*;
pub use fsnotify::*;
pub use inventory::*;
pub use misc::*;
pub use mm::*;
pub use mnt::*;
pub use net::*;
pub use ns::*;
pub use pipe::*;
pub use pstree::*;
pub use regfile::*;
pub use sk::*;
pub use stats::*;
pub use tty::*;

/// Serializes raw bytes as a lowercase hex string (JSON output of `bytes` fields).
pub(crate) fn hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(bytes))
}

/// Serializes optional raw bytes as hex, or null.
pub(crate) fn opt_hex<S: serde::Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => hex(b, s),
        None => s.serialize_none(),
    }
}

/// A proto enum whose value names are known.
pub trait CriuEnum {
    /// The proto name of `value` (as crit prints it), if `value` is defined.
    fn proto_name(value: i32) -> Option<&'static str>;
}

/// Serializes an enum field by name (by number if the value is unknown).
pub(crate) fn enum_name<E: CriuEnum, S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    match E::proto_name(*v) {
        Some(name) => s.serialize_str(name),
        None => s.serialize_i32(*v),
    }
}

/// Serializes an optional enum field by name.
pub(crate) fn opt_enum_name<E: CriuEnum, S: serde::Serializer>(v: &Option<i32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => enum_name::<E, S>(v, s),
        None => s.serialize_none(),
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `fown_entry`: the F_SETOWN state of an open file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FownEntry {
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    #[prost(uint32, required, tag = "2")]
    pub euid: u32,
    #[prost(uint32, required, tag = "3")]
    pub signum: u32,
    #[prost(uint32, required, tag = "4")]
    pub pid_type: u32,
    #[prost(uint32, required, tag = "5")]
    pub pid: u32,
}

/// `timeval` (seconds + microseconds).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct Timeval {
    #[prost(uint64, required, tag = "1")]
    pub tv_sec: u64,
    #[prost(uint64, required, tag = "2")]
    pub tv_usec: u64,
}

/// `timespec` (seconds + nanoseconds).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct Timespec {
    #[prost(uint64, required, tag = "1")]
    pub tv_sec: u64,
    #[prost(uint64, required, tag = "2")]
    pub tv_nsec: u64,
}
