//! Whole-file decoding of any image kind into typed messages plus their raw payloads, and the
//! exact re-encoding of such a decoded file. Used by `stasis show --json` and by the tests that
//! check our codec reproduces CRIU's files byte for byte.

use std::io::Read;
use std::path::{Path, PathBuf};

use prost::Message;
use serde::ser::SerializeMap;
use serde::Serialize;

use super::framing::{ImageError, ImageReader, ImageWriter, Limits};
use super::kind::ImageKind;
use super::pb::*;
use super::ImageDir;

macro_rules! any_message {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// One decoded entry of any image kind.
        // Entries are decoded a file at a time, for inspection and tests; boxing every
        // variant would cost more in clarity than the space it saves.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq)]
        pub enum AnyMessage { $($variant($ty)),* }

        impl AnyMessage {
            /// The protobuf encoding of the message.
            pub fn encode_to_vec(&self) -> Vec<u8> {
                match self { $(AnyMessage::$variant(m) => m.encode_to_vec()),* }
            }
        }

        impl Serialize for AnyMessage {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $(AnyMessage::$variant(m) => m.serialize(s)),* }
            }
        }
    };
}

any_message! {
    Inventory(InventoryEntry),
    Stats(StatsEntry),
    IrmapCache(IrmapCacheEntry),
    Pstree(PstreeEntry),
    Core(CoreEntry),
    Ids(TaskKobjIdsEntry),
    Mm(MmEntry),
    PagemapHead(PagemapHead),
    Pagemap(PagemapEntry),
    Fs(FsEntry),
    Fdinfo(FdinfoEntry),
    File(FileEntry),
    ExtFile(ExtFileEntry),
    NsFile(NsFileEntry),
    PipeData(PipeDataEntry),
    SkPacket(SkPacketEntry),
    TcpStream(TcpStreamEntry),
    Utsns(UtsnsEntry),
    IpcVar(IpcVarEntry),
    IpcShm(IpcShmEntry),
    IpcMsg(IpcMsgEntry),
    IpcSem(IpcSemEntry),
    Mnt(MntEntry),
    NetDevice(NetDeviceEntry),
    Netns(NetnsEntry),
    Userns(UsernsEntry),
    Timens(TimensEntry),
    Pidns(PidnsEntry),
    Cgroup(CgroupEntry),
    Seccomp(SeccompEntry),
    Apparmor(ApparmorEntry),
    TtyInfo(TtyInfoEntry),
    TtyData(TtyDataEntry),
    FileLock(FileLockEntry),
    RemapFpath(RemapFilePathEntry),
    GhostFile(GhostFileEntry),
    GhostChunk(GhostChunkEntry),
    MemfdInode(MemfdInodeEntry),
    Cpuinfo(CpuinfoEntry),
    BinfmtMisc(BinfmtMiscEntry),
    Autofs(AutofsEntry),
    BpfmapFile(BpfmapFileEntry),
    BpfmapData(BpfmapDataEntry),
}

/// One entry and the raw bytes that follow it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnyEntry {
    pub message: AnyMessage,
    pub payload: Payload,
}

/// Raw bytes after an entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    None,
    /// Loaded into memory.
    Bytes(Vec<u8>),
    /// Left on disk; only its length is known.
    Skipped(u64),
}

impl Payload {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::None => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::Skipped(n) => *n,
        }
    }

    /// Whether there are no payload bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for AnyEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.message).map_err(serde::ser::Error::custom)?;
        drop_unset(&mut value);
        let serde_json::Value::Object(fields) = value else {
            return Err(serde::ser::Error::custom("message did not serialize to an object"));
        };
        let mut map = s.serialize_map(None)?;
        for (k, v) in &fields {
            map.serialize_entry(k, v)?;
        }
        match &self.payload {
            Payload::None => {}
            Payload::Bytes(b) => {
                map.serialize_entry("extra_len", &b.len())?;
                map.serialize_entry("extra", &to_hex(b))?;
            }
            Payload::Skipped(n) => map.serialize_entry("extra_len", n)?,
        }
        map.end()
    }
}

/// Removes unset optional fields (null) and empty repeated fields, as crit does not show them.
fn drop_unset(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, f| !f.is_null() && !matches!(f, serde_json::Value::Array(a) if a.is_empty()));
            map.values_mut().for_each(drop_unset);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_unset),
        _ => {}
    }
}

/// A decoded image file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnyImage {
    #[serde(serialize_with = "kind_label")]
    pub magic: ImageKind,
    /// Entries of a protobuf image.
    pub entries: Vec<AnyEntry>,
    /// Size of a raw image (its bytes are never decoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_size: Option<u64>,
}

fn kind_label<S: serde::Serializer>(kind: &ImageKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.label())
}

/// Whether payloads are loaded or skipped while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payloads {
    Load,
    Skip,
}

impl AnyImage {
    /// Decodes the file at `path`; raw images (named as such) are only measured.
    pub fn open(path: &Path, payloads: Payloads, limits: Limits) -> Result<AnyImage, ImageError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some((kind, _)) = ImageKind::from_file_name(name) {
            if kind.is_raw() {
                let len = std::fs::metadata(path).map_err(|e| ImageError::io(path, e))?.len();
                return Ok(AnyImage {
                    magic: kind,
                    entries: Vec::new(),
                    raw_size: Some(len),
                });
            }
        }
        Self::decode(ImageReader::open(path, limits)?, payloads)
    }

    /// Decodes every entry (and payload) from an opened reader.
    pub fn decode<R: Read>(mut rd: ImageReader<R>, payloads: Payloads) -> Result<AnyImage, ImageError> {
        let kind = rd.kind();
        let mut entries = Vec::new();
        let mut ghost_chunked = false;
        while let Some(body) = rd.next_raw()? {
            let index = entries.len();
            let message = decode_message(&rd, kind, index, &body)?;
            if let AnyMessage::GhostFile(g) = &message {
                ghost_chunked = g.chunks.unwrap_or(false);
            }
            let payload = match payload_rule(&message, ghost_chunked) {
                Rule::None => Payload::None,
                Rule::Exact(n) => read_or_skip(&mut rd, n, payloads)?,
                Rule::RestOfFile => {
                    let n = rd.remaining();
                    read_or_skip(&mut rd, n, payloads)?
                }
                Rule::IpcMsgs(qnum) => Payload::Bytes(read_ipc_msgs(&mut rd, qnum)?),
            };
            entries.push(AnyEntry { message, payload });
        }
        Ok(AnyImage {
            magic: kind,
            entries,
            raw_size: None,
        })
    }

    /// Writes the image as `dir`'s file of its kind with `id`; returns the file's path.
    pub fn write(&self, dir: &ImageDir, id: u64) -> Result<PathBuf, ImageError> {
        let mut w = dir.writer(self.magic, id)?;
        for e in &self.entries {
            w.write_raw(&e.message.encode_to_vec())?;
            if let Payload::Bytes(b) = &e.payload {
                w.write_payload(b)?;
            }
        }
        w.sync()?;
        Ok(dir.image_path(self.magic, id))
    }

    /// Re-encodes the image exactly as it was read (payloads must have been loaded).
    pub fn encode(&self, path: &Path) -> Result<Vec<u8>, ImageError> {
        let mut w = ImageWriter::new(Vec::new(), self.magic, path)?;
        for e in &self.entries {
            w.write_raw(&e.message.encode_to_vec())?;
            if let Payload::Bytes(b) = &e.payload {
                w.write_payload(b)?;
            }
        }
        w.finish()
    }
}

fn read_or_skip<R: Read>(rd: &mut ImageReader<R>, n: u64, payloads: Payloads) -> Result<Payload, ImageError> {
    match payloads {
        Payloads::Load => rd.read_payload(n).map(Payload::Bytes),
        Payloads::Skip => rd.skip_payload(n).map(|()| Payload::Skipped(n)),
    }
}

/// The raw bytes that follow an entry.
enum Rule {
    None,
    Exact(u64),
    RestOfFile,
    IpcMsgs(u32),
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

fn payload_rule(msg: &AnyMessage, ghost_chunked: bool) -> Rule {
    match msg {
        AnyMessage::PipeData(p) => Rule::Exact(p.bytes.into()),
        AnyMessage::SkPacket(p) => Rule::Exact(p.length.into()),
        AnyMessage::TcpStream(t) => Rule::Exact(u64::from(t.inq_len) + u64::from(t.outq_len)),
        AnyMessage::BpfmapData(b) => Rule::Exact(u64::from(b.keys_bytes) + u64::from(b.values_bytes)),
        AnyMessage::IpcShm(s) if !s.in_pagemaps.unwrap_or(false) => Rule::Exact(round_up(s.size, 4)),
        AnyMessage::IpcSem(s) => Rule::Exact(round_up(u64::from(s.nsems) * 2, 8)),
        AnyMessage::IpcMsg(m) => Rule::IpcMsgs(m.qnum),
        AnyMessage::GhostFile(_) if !ghost_chunked => Rule::RestOfFile,
        AnyMessage::GhostChunk(c) => Rule::Exact(c.len),
        _ => Rule::None,
    }
}

/// SysV message queue contents: `qnum` records of (u32 length, `IpcMsg`, text padded to 8).
fn read_ipc_msgs<R: Read>(rd: &mut ImageReader<R>, qnum: u32) -> Result<Vec<u8>, ImageError> {
    let mut raw = Vec::new();
    for _ in 0..qnum {
        let len_bytes = rd.read_payload(4)?;
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let body = rd.read_payload(len.into())?;
        let msg: IpcMsg = rd.decode(&body)?;
        let text = rd.read_payload(round_up(msg.msize.into(), 8))?;
        raw.extend_from_slice(&len_bytes);
        raw.extend_from_slice(&body);
        raw.extend_from_slice(&text);
    }
    Ok(raw)
}

fn decode_message<R: Read>(
    rd: &ImageReader<R>,
    kind: ImageKind,
    index: usize,
    body: &[u8],
) -> Result<AnyMessage, ImageError> {
    use ImageKind as K;
    Ok(match kind {
        K::Inventory => AnyMessage::Inventory(rd.decode(body)?),
        K::StatsDump | K::StatsRestore => AnyMessage::Stats(rd.decode(body)?),
        K::IrmapCache => AnyMessage::IrmapCache(rd.decode(body)?),
        K::Pstree => AnyMessage::Pstree(rd.decode(body)?),
        K::Core => AnyMessage::Core(rd.decode(body)?),
        K::Ids => AnyMessage::Ids(rd.decode(body)?),
        K::Mm => AnyMessage::Mm(rd.decode(body)?),
        K::Pagemap | K::ShmemPagemap if index == 0 => AnyMessage::PagemapHead(rd.decode(body)?),
        K::Pagemap | K::ShmemPagemap => AnyMessage::Pagemap(rd.decode(body)?),
        K::Fs => AnyMessage::Fs(rd.decode(body)?),
        K::Fdinfo => AnyMessage::Fdinfo(rd.decode(body)?),
        K::Files => AnyMessage::File(rd.decode(body)?),
        K::ExtFiles => AnyMessage::ExtFile(rd.decode(body)?),
        K::NsFiles => AnyMessage::NsFile(rd.decode(body)?),
        K::PipesData | K::FifoData => AnyMessage::PipeData(rd.decode(body)?),
        K::SkQueues => AnyMessage::SkPacket(rd.decode(body)?),
        K::TcpStream => AnyMessage::TcpStream(rd.decode(body)?),
        K::Utsns => AnyMessage::Utsns(rd.decode(body)?),
        K::IpcVar => AnyMessage::IpcVar(rd.decode(body)?),
        K::IpcnsShm => AnyMessage::IpcShm(rd.decode(body)?),
        K::IpcnsMsg => AnyMessage::IpcMsg(rd.decode(body)?),
        K::IpcnsSem => AnyMessage::IpcSem(rd.decode(body)?),
        K::Mnts => AnyMessage::Mnt(rd.decode(body)?),
        K::Netdev => AnyMessage::NetDevice(rd.decode(body)?),
        K::Netns => AnyMessage::Netns(rd.decode(body)?),
        K::Userns => AnyMessage::Userns(rd.decode(body)?),
        K::Timens => AnyMessage::Timens(rd.decode(body)?),
        K::Pidns => AnyMessage::Pidns(rd.decode(body)?),
        K::Cgroup => AnyMessage::Cgroup(rd.decode(body)?),
        K::Seccomp => AnyMessage::Seccomp(rd.decode(body)?),
        K::Apparmor => AnyMessage::Apparmor(rd.decode(body)?),
        K::TtyInfo => AnyMessage::TtyInfo(rd.decode(body)?),
        K::TtyData => AnyMessage::TtyData(rd.decode(body)?),
        K::FileLocks => AnyMessage::FileLock(rd.decode(body)?),
        K::RemapFpath => AnyMessage::RemapFpath(rd.decode(body)?),
        K::GhostFile if index == 0 => AnyMessage::GhostFile(rd.decode(body)?),
        K::GhostFile => AnyMessage::GhostChunk(rd.decode(body)?),
        K::MemfdInode => AnyMessage::MemfdInode(rd.decode(body)?),
        K::Cpuinfo => AnyMessage::Cpuinfo(rd.decode(body)?),
        K::BinfmtMisc => AnyMessage::BinfmtMisc(rd.decode(body)?),
        K::Autofs => AnyMessage::Autofs(rd.decode(body)?),
        K::BpfmapFile => AnyMessage::BpfmapFile(rd.decode(body)?),
        K::BpfmapData => AnyMessage::BpfmapData(rd.decode(body)?),
        K::Pages
        | K::NetnsCt
        | K::NetnsExp
        | K::Ifaddr
        | K::Route6
        | K::Route
        | K::Rule
        | K::Ip6tables
        | K::Iptables
        | K::Nftables
        | K::Neigh
        | K::TmpfsDev
        | K::TmpfsImg => {
            return Err(ImageError::RawImage {
                path: rd.path().to_owned(),
                kind,
            })
        }
    })
}
