//! `pstree.img`.

/// One process of the dumped tree; entries are written parents first.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PstreeEntry {
    #[prost(uint32, required, tag = "1")]
    pub pid: u32,
    /// 0 for the root of the dumped tree.
    #[prost(uint32, required, tag = "2")]
    pub ppid: u32,
    #[prost(uint32, required, tag = "3")]
    pub pgid: u32,
    #[prost(uint32, required, tag = "4")]
    pub sid: u32,
    /// Every thread id, main thread first; a `core-<tid>.img` exists for each.
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    pub threads: Vec<u32>,
}
