//! Namespaces: ns files, UTS, IPC (and SysV objects), user, pid and time namespaces.

use super::Timespec;

/// An open /proc/PID/ns/* file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NsFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub ns_id: u32,
    /// CLONE_NEW* flag of the namespace kind.
    #[prost(uint32, required, tag = "3")]
    pub ns_cflag: u32,
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
}

/// `utsns-<id>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UtsnsEntry {
    #[prost(string, required, tag = "1")]
    pub nodename: String,
    #[prost(string, required, tag = "2")]
    pub domainname: String,
}

/// `ipcns-var-<id>.img`: the IPC namespace sysctls.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcVarEntry {
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    pub sem_ctls: Vec<u32>,
    #[prost(uint32, required, tag = "2")]
    pub msg_ctlmax: u32,
    #[prost(uint32, required, tag = "3")]
    pub msg_ctlmnb: u32,
    #[prost(uint32, required, tag = "4")]
    pub msg_ctlmni: u32,
    #[prost(uint32, required, tag = "5")]
    pub auto_msgmni: u32,
    #[prost(uint64, required, tag = "6")]
    pub shm_ctlmax: u64,
    #[prost(uint64, required, tag = "7")]
    pub shm_ctlall: u64,
    #[prost(uint32, required, tag = "8")]
    pub shm_ctlmni: u32,
    #[prost(uint32, required, tag = "9")]
    pub shm_rmid_forced: u32,
    #[prost(uint32, required, tag = "10")]
    pub mq_queues_max: u32,
    #[prost(uint32, required, tag = "11")]
    pub mq_msg_max: u32,
    #[prost(uint32, required, tag = "12")]
    pub mq_msgsize_max: u32,
    #[prost(uint32, optional, tag = "13")]
    pub mq_msg_default: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub mq_msgsize_default: Option<u32>,
    #[prost(uint32, optional, tag = "15")]
    pub msg_next_id: Option<u32>,
    #[prost(uint32, optional, tag = "16")]
    pub sem_next_id: Option<u32>,
    #[prost(uint32, optional, tag = "17")]
    pub shm_next_id: Option<u32>,
}

/// Common header of a SysV IPC object.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcDescEntry {
    #[prost(uint32, required, tag = "1")]
    pub key: u32,
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
    #[prost(uint32, required, tag = "4")]
    pub cuid: u32,
    #[prost(uint32, required, tag = "5")]
    pub cgid: u32,
    #[prost(uint32, required, tag = "6")]
    pub mode: u32,
    #[prost(uint32, required, tag = "7")]
    pub id: u32,
}

/// A SysV shared memory segment; `size` bytes (padded to 4) follow unless `in_pagemaps`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcShmEntry {
    #[prost(message, required, tag = "1")]
    pub desc: IpcDescEntry,
    #[prost(uint64, required, tag = "2")]
    pub size: u64,
    #[prost(bool, optional, tag = "3")]
    pub in_pagemaps: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    pub hugetlb_flag: Option<u32>,
}

/// A SysV semaphore set; `nsems` u16 values (padded to 8 bytes) follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcSemEntry {
    #[prost(message, required, tag = "1")]
    pub desc: IpcDescEntry,
    #[prost(uint32, required, tag = "2")]
    pub nsems: u32,
}

/// A SysV message queue; `qnum` (length, [`IpcMsg`], text padded to 8) records follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcMsgEntry {
    #[prost(message, required, tag = "1")]
    pub desc: IpcDescEntry,
    #[prost(uint32, required, tag = "2")]
    pub qbytes: u32,
    #[prost(uint32, required, tag = "3")]
    pub qnum: u32,
}

/// Header of one queued SysV message.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcMsg {
    #[prost(uint64, required, tag = "1")]
    pub mtype: u64,
    #[prost(uint32, required, tag = "2")]
    pub msize: u32,
}

/// One extent of a uid/gid map.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UidGidExtent {
    #[prost(uint32, required, tag = "1")]
    pub first: u32,
    #[prost(uint32, required, tag = "2")]
    pub lower_first: u32,
    #[prost(uint32, required, tag = "3")]
    pub count: u32,
}

/// `userns-<id>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UsernsEntry {
    #[prost(message, repeated, tag = "1")]
    pub uid_map: Vec<UidGidExtent>,
    #[prost(message, repeated, tag = "2")]
    pub gid_map: Vec<UidGidExtent>,
}

/// `pidns-<id>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PidnsEntry {
    #[prost(string, optional, tag = "1")]
    pub ext_key: Option<String>,
}

/// `timens-<id>.img`: clock offsets (or, for `timens-0.img`, host clocks at dump).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TimensEntry {
    #[prost(message, required, tag = "1")]
    pub monotonic: Timespec,
    #[prost(message, required, tag = "2")]
    pub boottime: Timespec,
}
