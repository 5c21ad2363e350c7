//! Files reached by path: regular files, `fs-<pid>.img`, unlinked files (`remap-fpath.img`,
//! `ghost-file-<id>.img`) and `filelocks.img`.

use super::{FownEntry, Timeval};

/// An open regular file (or directory, or the target of a mapping, cwd, root, exe).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RegFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// open(2) flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    #[prost(message, required, tag = "5")]
    pub fown: FownEntry,
    /// Path relative to the mount namespace root, with a leading "/".
    #[prost(string, required, tag = "6")]
    pub name: String,
    #[prost(sint32, optional, tag = "7", default = "-1")]
    pub mnt_id: Option<i32>,
    /// Size at dump; restore checks it.
    #[prost(uint64, optional, tag = "8")]
    pub size: Option<u64>,
    #[prost(bool, optional, tag = "9")]
    pub ext: Option<bool>,
    #[prost(uint32, optional, tag = "10")]
    pub mode: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub build_id: Vec<u32>,
    #[prost(uint32, optional, tag = "12")]
    pub checksum: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub checksum_config: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub checksum_parameter: Option<u32>,
}

/// The one entry of `fs-<pid>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FsEntry {
    /// files.img id of the cwd directory.
    #[prost(uint32, required, tag = "1")]
    pub cwd_id: u32,
    /// files.img id of the root directory.
    #[prost(uint32, required, tag = "2")]
    pub root_id: u32,
    #[prost(uint32, optional, tag = "3")]
    pub umask: Option<u32>,
}

criu_enum! {
    /// How an unlinked file is brought back.
    pub enum RemapType {
        Linked = 0 => "LINKED",
        Ghost = 1 => "GHOST",
        Procfs = 2 => "PROCFS",
    }
}

/// `remap-fpath.img`: file `orig_id` is restored from remap `remap_id`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RemapFilePathEntry {
    #[prost(uint32, required, tag = "1")]
    pub orig_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub remap_id: u32,
    #[prost(enumeration = "RemapType", optional, tag = "3")]
    #[serde(serialize_with = "super::opt_enum_name::<RemapType, _>")]
    pub remap_type: Option<i32>,
}

/// First entry of `ghost-file-<id>.img`; the file contents follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct GhostFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    #[prost(uint32, required, tag = "2")]
    pub gid: u32,
    #[prost(uint32, required, tag = "3")]
    pub mode: u32,
    #[prost(uint32, optional, tag = "4")]
    pub dev: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub ino: Option<u64>,
    #[prost(uint32, optional, tag = "6")]
    pub rdev: Option<u32>,
    #[prost(message, optional, tag = "7")]
    pub atim: Option<Timeval>,
    #[prost(message, optional, tag = "8")]
    pub mtim: Option<Timeval>,
    /// Contents are stored as (chunk entry, bytes) pairs instead of one raw tail.
    #[prost(bool, optional, tag = "9")]
    pub chunks: Option<bool>,
    #[prost(uint64, optional, tag = "10")]
    pub size: Option<u64>,
    #[prost(string, optional, tag = "11")]
    pub symlnk_target: Option<String>,
}

/// One chunk of a ghost file's contents (sparse files).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct GhostChunkEntry {
    #[prost(uint64, required, tag = "1")]
    pub len: u64,
    #[prost(uint64, required, tag = "2")]
    pub off: u64,
}

/// One file lock (`filelocks.img`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FileLockEntry {
    /// FL_POSIX / FL_FLOCK / FL_OFD ...
    #[prost(uint32, required, tag = "1")]
    pub flag: u32,
    /// F_RDLCK / F_WRLCK.
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    #[prost(int32, required, tag = "3")]
    pub pid: i32,
    #[prost(int32, required, tag = "4")]
    pub fd: i32,
    #[prost(int64, required, tag = "5")]
    pub start: i64,
    #[prost(int64, required, tag = "6")]
    pub len: i64,
}
