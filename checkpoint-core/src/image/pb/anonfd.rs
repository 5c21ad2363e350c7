//! Anonymous-inode files: eventfd, epoll, signalfd, timerfd, pidfd, memfd, plugin files.

use super::FownEntry;

/// An eventfd and its counter.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventfdFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "3")]
    pub fown: FownEntry,
    #[prost(uint64, required, tag = "4")]
    pub counter: u64,
}

/// One watched target of an epoll instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventpollTfdEntry {
    /// The epoll file id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Target fd number.
    #[prost(uint32, required, tag = "2")]
    pub tfd: u32,
    #[prost(uint32, required, tag = "3")]
    pub events: u32,
    #[prost(uint64, required, tag = "4")]
    pub data: u64,
    #[prost(uint32, optional, tag = "5")]
    pub dev: Option<u32>,
    #[prost(uint64, optional, tag = "6")]
    pub inode: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub pos: Option<u64>,
    /// Stasis's own field (CRIU's readers skip it): when fd `tfd` was closed or now holds
    /// another file, the fd of the task that holds the watched file. The kernel keys a
    /// registration by file and fd number, so the restore puts that file at `tfd` for the
    /// moment it registers it.
    #[prost(uint32, optional, tag = "64")]
    pub held_at: Option<u32>,
}

/// An epoll instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventpollFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "3")]
    pub fown: FownEntry,
    #[prost(message, repeated, tag = "4")]
    pub tfd: Vec<EventpollTfdEntry>,
}

/// A signalfd and its mask.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SignalfdEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "3")]
    pub fown: FownEntry,
    #[prost(uint64, required, tag = "4")]
    pub sigmask: u64,
}

/// A timerfd: clock, unread expirations, value and interval.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TimerfdEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(message, required, tag = "3")]
    pub fown: FownEntry,
    #[prost(uint32, required, tag = "4")]
    pub clockid: u32,
    #[prost(uint64, required, tag = "5")]
    pub ticks: u64,
    #[prost(uint32, required, tag = "6")]
    pub settime_flags: u32,
    #[prost(uint64, required, tag = "7")]
    pub vsec: u64,
    #[prost(uint64, required, tag = "8")]
    pub vnsec: u64,
    #[prost(uint64, required, tag = "9")]
    pub isec: u64,
    #[prost(uint64, required, tag = "10")]
    pub insec: u64,
}

/// A pidfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PidfdEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    #[prost(int32, required, tag = "4")]
    pub nspid: i32,
    #[prost(message, required, tag = "5")]
    pub fown: FownEntry,
}

/// A file handled by a plugin.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ExtFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(message, required, tag = "5")]
    pub fown: FownEntry,
}

/// An open memfd; the inode is in `memfd.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MemfdFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    #[prost(message, required, tag = "4")]
    pub fown: FownEntry,
    #[prost(uint32, required, tag = "5")]
    pub inode_id: u32,
}

/// A memfd inode (`memfd.img`); contents are in `pagemap-shmem-<shmid>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MemfdInodeEntry {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
    #[prost(uint64, required, tag = "4")]
    pub size: u64,
    #[prost(uint32, required, tag = "5")]
    pub shmid: u32,
    /// F_SEAL_* bits.
    #[prost(uint32, required, tag = "6")]
    pub seals: u32,
    #[prost(uint64, required, tag = "7")]
    pub inode_id: u64,
    #[prost(uint32, optional, tag = "8")]
    pub hugetlb_flag: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub mode: Option<u32>,
}
