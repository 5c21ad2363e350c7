//! `fdinfo-<files_id>.img` (fd tables) and `files.img` (open file objects).

use super::{
    BpfmapFileEntry, EventfdFileEntry, EventpollFileEntry, ExtFileEntry, FanotifyFileEntry, FifoEntry, InetSkEntry,
    InotifyFileEntry, MemfdFileEntry, NetlinkSkEntry, NsFileEntry, PacketSockEntry, PidfdEntry, PipeEntry,
    RegFileEntry, SignalfdEntry, TimerfdEntry, TtyFileEntry, TunfileEntry, UnixSkEntry,
};

criu_enum! {
    /// Kind of an open file.
    pub enum FdTypes {
        Und = 0 => "UND",
        Reg = 1 => "REG",
        Pipe = 2 => "PIPE",
        Fifo = 3 => "FIFO",
        Inetsk = 4 => "INETSK",
        Unixsk = 5 => "UNIXSK",
        Eventfd = 6 => "EVENTFD",
        Eventpoll = 7 => "EVENTPOLL",
        Inotify = 8 => "INOTIFY",
        Signalfd = 9 => "SIGNALFD",
        Packetsk = 10 => "PACKETSK",
        Tty = 11 => "TTY",
        Fanotify = 12 => "FANOTIFY",
        Netlinksk = 13 => "NETLINKSK",
        Ns = 14 => "NS",
        Tunf = 15 => "TUNF",
        Ext = 16 => "EXT",
        Timerfd = 17 => "TIMERFD",
        Memfd = 18 => "MEMFD",
        Bpfmap = 19 => "BPFMAP",
        Pidfd = 20 => "PIDFD",
        CtlTty = 65534 => "CTL_TTY",
        AutofsPipe = 65535 => "AUTOFS_PIPE",
    }
}

/// One fd of an fd table.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FdinfoEntry {
    /// `file_entry.id` of the open file.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// FD_CLOEXEC.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(enumeration = "FdTypes", required, tag = "3")]
    #[serde(serialize_with = "super::enum_name::<FdTypes, _>")]
    pub r#type: i32,
    #[prost(uint32, required, tag = "4")]
    pub fd: u32,
    #[prost(string, optional, tag = "5")]
    pub xattr_security_selinux: Option<String>,
}

/// One open file object, shared by every fd (in any task) that refers to it.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FileEntry {
    #[prost(enumeration = "FdTypes", required, tag = "1")]
    #[serde(serialize_with = "super::enum_name::<FdTypes, _>")]
    pub r#type: i32,
    #[prost(uint32, required, tag = "2")]
    pub id: u32,
    #[prost(message, optional, tag = "3")]
    pub reg: Option<RegFileEntry>,
    #[prost(message, optional, tag = "4")]
    pub isk: Option<InetSkEntry>,
    #[prost(message, optional, tag = "5")]
    pub nsf: Option<NsFileEntry>,
    #[prost(message, optional, tag = "6")]
    pub psk: Option<PacketSockEntry>,
    #[prost(message, optional, tag = "7")]
    pub nlsk: Option<NetlinkSkEntry>,
    #[prost(message, optional, tag = "8")]
    pub efd: Option<EventfdFileEntry>,
    #[prost(message, optional, tag = "9")]
    pub epfd: Option<EventpollFileEntry>,
    #[prost(message, optional, tag = "10")]
    pub sgfd: Option<SignalfdEntry>,
    #[prost(message, optional, tag = "11")]
    pub tunf: Option<TunfileEntry>,
    #[prost(message, optional, tag = "12")]
    pub tfd: Option<TimerfdEntry>,
    #[prost(message, optional, tag = "13")]
    pub ify: Option<InotifyFileEntry>,
    #[prost(message, optional, tag = "14")]
    pub ffy: Option<FanotifyFileEntry>,
    #[prost(message, optional, tag = "15")]
    pub ext: Option<ExtFileEntry>,
    #[prost(message, optional, tag = "16")]
    pub usk: Option<UnixSkEntry>,
    #[prost(message, optional, tag = "17")]
    pub fifo: Option<FifoEntry>,
    #[prost(message, optional, tag = "18")]
    pub pipe: Option<PipeEntry>,
    #[prost(message, optional, tag = "19")]
    pub tty: Option<TtyFileEntry>,
    #[prost(message, optional, tag = "20")]
    pub memfd: Option<MemfdFileEntry>,
    #[prost(message, optional, tag = "21")]
    pub bpf: Option<BpfmapFileEntry>,
    #[prost(message, optional, tag = "22")]
    pub pidfd: Option<PidfdEntry>,
}

/// Runs `$body` with `$e` bound to whichever kind of entry `$file` holds that has an owner
/// (`fown`) and open flags: a FIFO's are in the entry of its path.
macro_rules! with_owned_entry {
    ($file:expr, $how:ident, $e:ident => $body:expr) => {{
        let f = $file;
        if let Some($e) = f.reg.$how() {
            Some($body)
        } else if let Some($e) = f.isk.$how() {
            Some($body)
        } else if let Some($e) = f.usk.$how() {
            Some($body)
        } else if let Some($e) = f.psk.$how() {
            Some($body)
        } else if let Some($e) = f.nlsk.$how() {
            Some($body)
        } else if let Some($e) = f.pipe.$how() {
            Some($body)
        } else if let Some($e) = f.efd.$how() {
            Some($body)
        } else if let Some($e) = f.epfd.$how() {
            Some($body)
        } else if let Some($e) = f.sgfd.$how() {
            Some($body)
        } else if let Some($e) = f.tfd.$how() {
            Some($body)
        } else if let Some($e) = f.ify.$how() {
            Some($body)
        } else if let Some($e) = f.ffy.$how() {
            Some($body)
        } else if let Some($e) = f.tty.$how() {
            Some($body)
        } else if let Some($e) = f.memfd.$how() {
            Some($body)
        } else if let Some($e) = f.pidfd.$how() {
            Some($body)
        } else {
            None
        }
    }};
}

impl FileEntry {
    /// The owner (F_SETOWN) and open flags of the file, whatever its kind; `None` for kinds
    /// that have neither here (a FIFO's are in its path's entry).
    pub fn owner_and_flags(&self) -> Option<(super::FownEntry, u32)> {
        with_owned_entry!(self, as_ref, e => (e.fown.clone(), e.flags))
    }

    /// Sets the owner of the file; false for a kind that has none.
    pub fn set_owner(&mut self, fown: super::FownEntry) -> bool {
        with_owned_entry!(self, as_mut, e => e.fown = fown).is_some()
    }
}
