//! inotify and fanotify instances, their marks, and file handles.

use super::FownEntry;

/// A file handle (name_to_handle_at) locating a watched inode.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FhEntry {
    #[prost(uint32, required, tag = "1")]
    pub bytes: u32,
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub handle: Vec<u64>,
    #[prost(string, optional, tag = "4")]
    pub path: Option<String>,
    #[prost(uint32, optional, tag = "5")]
    pub mnt_id: Option<u32>,
}

/// One entry of `irmap-cache`: where an inode was found.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IrmapCacheEntry {
    #[prost(uint32, required, tag = "1")]
    pub dev: u32,
    #[prost(uint64, required, tag = "2")]
    pub inode: u64,
    #[prost(string, required, tag = "3")]
    pub path: String,
}

/// One inotify watch.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InotifyWdEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint64, required, tag = "2")]
    pub i_ino: u64,
    #[prost(uint32, required, tag = "3")]
    pub mask: u32,
    #[prost(uint32, required, tag = "4")]
    pub ignored_mask: u32,
    #[prost(uint32, required, tag = "5")]
    pub s_dev: u32,
    #[prost(uint32, required, tag = "6")]
    pub wd: u32,
    #[prost(message, required, tag = "7")]
    pub f_handle: FhEntry,
}

/// An inotify instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InotifyFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "4")]
    pub fown: FownEntry,
    #[prost(message, repeated, tag = "5")]
    pub wd: Vec<InotifyWdEntry>,
}

criu_enum! {
    /// Kind of a fanotify mark.
    pub enum MarkType {
        Inode = 1 => "INODE",
        Mount = 2 => "MOUNT",
    }
}

/// An inode mark of fanotify.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyInodeMarkEntry {
    #[prost(uint64, required, tag = "1")]
    pub i_ino: u64,
    #[prost(message, required, tag = "2")]
    pub f_handle: FhEntry,
}

/// A mount mark of fanotify.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyMountMarkEntry {
    #[prost(uint32, required, tag = "1")]
    pub mnt_id: u32,
    #[prost(string, optional, tag = "2")]
    pub path: Option<String>,
}

/// One fanotify mark.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyMarkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(enumeration = "MarkType", required, tag = "2")]
    #[serde(serialize_with = "super::enum_name::<MarkType, _>")]
    pub r#type: i32,
    #[prost(uint32, required, tag = "3")]
    pub mflags: u32,
    #[prost(uint32, required, tag = "4")]
    pub mask: u32,
    #[prost(uint32, required, tag = "5")]
    pub ignored_mask: u32,
    #[prost(uint32, required, tag = "6")]
    pub s_dev: u32,
    #[prost(message, optional, tag = "7")]
    pub ie: Option<FanotifyInodeMarkEntry>,
    #[prost(message, optional, tag = "8")]
    pub me: Option<FanotifyMountMarkEntry>,
}

/// A fanotify instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "3")]
    pub fown: FownEntry,
    #[prost(uint32, required, tag = "4")]
    pub faflags: u32,
    #[prost(uint32, required, tag = "5")]
    pub evflags: u32,
    #[prost(message, repeated, tag = "6")]
    pub mark: Vec<FanotifyMarkEntry>,
}
