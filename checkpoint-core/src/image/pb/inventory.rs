//! `inventory.img`.

use super::TaskKobjIdsEntry;

criu_enum! {
    /// Linux security module in use at dump time.
    pub enum Lsmtype {
        NoLsm = 0 => "NO_LSM",
        Selinux = 1 => "SELINUX",
        Apparmor = 2 => "APPARMOR",
    }
}

/// The plugins a dump used.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PluginsEntry {
    #[prost(string, repeated, tag = "12")]
    pub plugins: Vec<String>,
}

/// The one entry of `inventory.img`: format version and the root task's object ids.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InventoryEntry {
    /// 2 = images v1.1 (head magics); the only layout written.
    #[prost(uint32, required, tag = "1")]
    pub img_version: u32,
    /// Must be true: CRIU refuses older images.
    #[prost(bool, optional, tag = "2")]
    pub fdinfo_per_id: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub root_ids: Option<TaskKobjIdsEntry>,
    #[prost(bool, optional, tag = "4")]
    pub ns_per_id: Option<bool>,
    #[prost(uint32, optional, tag = "5")]
    pub root_cg_set: Option<u32>,
    #[prost(enumeration = "Lsmtype", optional, tag = "6")]
    #[serde(serialize_with = "super::opt_enum_name::<Lsmtype, _>")]
    pub lsmtype: Option<i32>,
    /// Host uptime at dump, in microseconds.
    #[prost(uint64, optional, tag = "8")]
    pub dump_uptime: Option<u64>,
    #[prost(uint32, optional, tag = "9")]
    pub pre_dump_mode: Option<u32>,
    #[prost(bool, optional, tag = "10")]
    pub tcp_close: Option<bool>,
    #[prost(uint32, optional, tag = "11")]
    pub network_lock_method: Option<u32>,
    #[prost(message, optional, tag = "12")]
    pub plugins_entry: Option<PluginsEntry>,
    #[prost(string, optional, tag = "13")]
    pub dump_criu_run_id: Option<String>,
    #[prost(bool, optional, tag = "14")]
    pub allow_uprobes: Option<bool>,
}
