//! `mountpoints-<id>.img`: one entry per mount, parents first.

criu_enum! {
    /// Filesystem kinds CRIU knows.
    pub enum Fstype {
        Unsupported = 0 => "UNSUPPORTED",
        Proc = 1 => "PROC",
        Sysfs = 2 => "SYSFS",
        Devtmpfs = 3 => "DEVTMPFS",
        BinfmtMisc = 4 => "BINFMT_MISC",
        Tmpfs = 5 => "TMPFS",
        Devpts = 6 => "DEVPTS",
        Simfs = 7 => "SIMFS",
        Pstore = 8 => "PSTORE",
        Securityfs = 9 => "SECURITYFS",
        Fusectl = 10 => "FUSECTL",
        Debugfs = 11 => "DEBUGFS",
        Cgroup = 12 => "CGROUP",
        Aufs = 13 => "AUFS",
        Mqueue = 14 => "MQUEUE",
        Fuse = 15 => "FUSE",
        Auto = 16 => "AUTO",
        Overlayfs = 17 => "OVERLAYFS",
        Autofs = 18 => "AUTOFS",
        Tracefs = 19 => "TRACEFS",
        Cgroup2 = 23 => "CGROUP2",
    }
}

/// One mount.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MntEntry {
    /// [`Fstype`] value.
    #[prost(uint32, required, tag = "1")]
    pub fstype: u32,
    #[prost(uint32, required, tag = "2")]
    pub mnt_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub root_dev: u32,
    #[prost(uint32, required, tag = "4")]
    pub parent_mnt_id: u32,
    #[prost(uint32, required, tag = "5")]
    pub flags: u32,
    #[prost(string, required, tag = "6")]
    pub root: String,
    #[prost(string, required, tag = "7")]
    pub mountpoint: String,
    #[prost(string, required, tag = "8")]
    pub source: String,
    #[prost(string, required, tag = "9")]
    pub options: String,
    #[prost(uint32, optional, tag = "10")]
    pub shared_id: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub master_id: Option<u32>,
    #[prost(bool, optional, tag = "12")]
    pub with_plugin: Option<bool>,
    #[prost(bool, optional, tag = "13")]
    pub ext_mount: Option<bool>,
    #[prost(string, optional, tag = "14")]
    pub fsname: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub internal_sharing: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub deleted: Option<bool>,
    #[prost(uint32, optional, tag = "17")]
    pub sb_flags: Option<u32>,
    #[prost(string, optional, tag = "18")]
    pub ext_key: Option<String>,
}
