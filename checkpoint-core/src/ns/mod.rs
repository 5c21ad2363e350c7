//! Namespaces of a dumped tree. A plain dump needs its tree in the dumper's namespaces (a UTS
//! namespace of its own aside, whose names are saved); a container's tree may have its own
//! pid, mount, network, IPC, UTS and cgroup namespaces, which the container's runtime makes
//! again on restore: here they are checked to hold nothing that would be lost.

pub mod cgroup;
pub mod ids;
pub mod ipc;
pub mod mnt;
pub mod net;
pub mod pid;
pub mod tmpfs;
pub mod user;

use std::os::unix::fs::MetadataExt;

/// The namespace kinds, as named under /proc/PID/ns.
pub const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

/// What the container's runtime recreates on restore, as its config declares it.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    /// Mount points the runtime mounts again (mounts, masked and read-only paths): the
    /// container's mounts must all be among them.
    pub declared_mounts: Vec<String>,
    /// Namespace kinds (as /proc/PID/ns names them) whose contents are not the container's
    /// to save: joined at a path its config names, or set up by the caller (`--empty-ns`).
    pub external: Vec<String>,
    /// `--external` values (CRIU's forms): `veth[IF]` and `macvlan[IF]` declare devices of its
    /// own network namespace whose other side is outside (see [`net::parse_external`]).
    pub externals: Vec<String>,
}

/// The inode of `pid`'s namespace of `kind` (`pid` may be "self").
pub fn inode(pid: &str, kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// The kinds of namespace in which `pid` differs from us.
pub fn own_kinds(pid: i32) -> Vec<&'static str> {
    KINDS
        .into_iter()
        .filter(|kind| {
            let (ours, theirs) = (inode("self", kind), inode(&pid.to_string(), kind));
            ours.is_some() && theirs.is_some() && ours != theirs
        })
        .collect()
}
