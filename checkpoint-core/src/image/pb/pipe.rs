//! Pipes and FIFOs, and their buffered data (`pipes-data.img`, `fifo-data.img`).

use super::FownEntry;

/// One end of a pipe.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PipeEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Pipe inode; both ends share it.
    #[prost(uint32, required, tag = "2")]
    pub pipe_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    #[prost(message, required, tag = "4")]
    pub fown: FownEntry,
}

/// An open FIFO; its path is the REG entry `regf_id`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FifoEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub pipe_id: u32,
    #[prost(uint32, optional, tag = "3")]
    pub regf_id: Option<u32>,
}

/// Data buffered in a pipe or FIFO; `bytes` raw bytes follow the entry.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PipeDataEntry {
    #[prost(uint32, required, tag = "1")]
    pub pipe_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub bytes: u32,
    /// Pipe capacity (F_GETPIPE_SZ).
    #[prost(uint32, optional, tag = "3")]
    pub size: Option<u32>,
}
