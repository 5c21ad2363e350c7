//! `cgroup.img`: cgroup sets of the tasks and the controllers' directory trees.

/// Permissions of a cgroup file or directory.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgroupPerms {
    #[prost(uint32, required, tag = "1")]
    pub mode: u32,
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
}

/// One controller property (cpu.shares, memory.limit_in_bytes, ...).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgroupPropEntry {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
    #[prost(message, optional, tag = "3")]
    pub perms: Option<CgroupPerms>,
}

/// A cgroup directory and its children.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgroupDirEntry {
    #[prost(string, required, tag = "1")]
    pub dir_name: String,
    #[prost(message, repeated, tag = "2")]
    pub children: Vec<CgroupDirEntry>,
    #[prost(message, repeated, tag = "3")]
    pub properties: Vec<CgroupPropEntry>,
    #[prost(message, optional, tag = "4")]
    pub dir_perms: Option<CgroupPerms>,
}

/// One controller hierarchy.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgControllerEntry {
    #[prost(string, repeated, tag = "1")]
    pub cnames: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub dirs: Vec<CgroupDirEntry>,
    #[prost(bool, optional, tag = "3")]
    pub is_threaded: Option<bool>,
}

/// Membership in one hierarchy.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgMemberEntry {
    /// Controller list ("cpu,cpuacct"), empty for the v2 unified hierarchy.
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(string, required, tag = "2")]
    pub path: String,
    #[prost(uint32, optional, tag = "3")]
    pub cgns_prefix: Option<u32>,
}

/// A set of memberships shared by tasks.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgSetEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(message, repeated, tag = "2")]
    pub ctls: Vec<CgMemberEntry>,
}

/// The one entry of `cgroup.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgroupEntry {
    #[prost(message, repeated, tag = "1")]
    pub sets: Vec<CgSetEntry>,
    #[prost(message, repeated, tag = "2")]
    pub controllers: Vec<CgControllerEntry>,
}
