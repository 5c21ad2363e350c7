//! `stats-dump` / `stats-restore` (service images).

/// Timings (µs) and page counters of a dump.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    pub freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    pub frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    pub memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pub pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pub pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pub pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    #[prost(uint64, required, tag = "9")]
    pub pages_lazy: u64,
    #[prost(uint64, optional, tag = "10")]
    pub page_pipes: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub page_pipe_bufs: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub shpages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub shpages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub shpages_written: Option<u64>,
}

/// Timings (µs) and page counters of a restore.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pub pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pub pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    pub forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// The one entry of a stats image.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}
