//! `mm-<pid>.img` (address space) and `pagemap-*.img` (which pages were dumped).

/// VMA status bits (CRIU's `VMA_*`), part of the image ABI.
pub mod vma_status {
    pub const REGULAR: u32 = 1 << 0;
    pub const STACK: u32 = 1 << 1;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const HEAP: u32 = 1 << 5;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    pub const SYSVIPC: u32 = 1 << 10;
    pub const SOCKET: u32 = 1 << 11;
    pub const VVAR: u32 = 1 << 12;
    pub const AIORING: u32 = 1 << 13;
    pub const MEMFD: u32 = 1 << 14;
    pub const SHSTK: u32 = 1 << 15;
    pub const GUARD: u32 = 1 << 16;
    pub const UPROBES: u32 = 1 << 17;
    pub const EXT_PLUGIN: u32 = 1 << 27;
    pub const UNSUPP: u32 = 1 << 31;
}

/// Pagemap entry flags.
pub mod pe_flags {
    /// Pages are in the parent image directory.
    pub const PARENT: u32 = 1 << 0;
    /// Pages will be served lazily.
    pub const LAZY: u32 = 1 << 1;
    /// Pages are in this directory's `pages-<id>.img`.
    pub const PRESENT: u32 = 1 << 2;
}

/// One AIO ring.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct AioRingEntry {
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    #[prost(uint32, required, tag = "2")]
    pub nr_req: u32,
    #[prost(uint32, required, tag = "3")]
    pub ring_len: u32,
}

/// One mapping of the address space.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct VmaEntry {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Exclusive.
    #[prost(uint64, required, tag = "2")]
    pub end: u64,
    /// File offset in bytes.
    #[prost(uint64, required, tag = "3")]
    pub pgoff: u64,
    /// File id (files.img) for file maps, shmem id for shared anonymous memory.
    #[prost(uint64, required, tag = "4")]
    pub shmid: u64,
    #[prost(uint32, required, tag = "5")]
    pub prot: u32,
    #[prost(uint32, required, tag = "6")]
    pub flags: u32,
    /// [`vma_status`] bits.
    #[prost(uint32, required, tag = "7")]
    pub status: u32,
    /// Unused; written as -1.
    #[prost(sint64, required, tag = "8")]
    pub fd: i64,
    #[prost(uint64, optional, tag = "9")]
    pub madv: Option<u64>,
    #[prost(uint32, optional, tag = "10")]
    pub fdflags: Option<u32>,
}

/// The one entry of `mm-<pid>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MmEntry {
    #[prost(uint64, required, tag = "1")]
    pub mm_start_code: u64,
    #[prost(uint64, required, tag = "2")]
    pub mm_end_code: u64,
    #[prost(uint64, required, tag = "3")]
    pub mm_start_data: u64,
    #[prost(uint64, required, tag = "4")]
    pub mm_end_data: u64,
    #[prost(uint64, required, tag = "5")]
    pub mm_start_stack: u64,
    #[prost(uint64, required, tag = "6")]
    pub mm_start_brk: u64,
    #[prost(uint64, required, tag = "7")]
    pub mm_brk: u64,
    #[prost(uint64, required, tag = "8")]
    pub mm_arg_start: u64,
    #[prost(uint64, required, tag = "9")]
    pub mm_arg_end: u64,
    #[prost(uint64, required, tag = "10")]
    pub mm_env_start: u64,
    #[prost(uint64, required, tag = "11")]
    pub mm_env_end: u64,
    /// files.img id of /proc/PID/exe.
    #[prost(uint32, required, tag = "12")]
    pub exe_file_id: u32,
    /// /proc/PID/auxv as (key, value) pairs.
    #[prost(uint64, repeated, packed = "false", tag = "13")]
    pub mm_saved_auxv: Vec<u64>,
    #[prost(message, repeated, tag = "14")]
    pub vmas: Vec<VmaEntry>,
    #[prost(int32, optional, tag = "15")]
    pub dumpable: Option<i32>,
    #[prost(message, repeated, tag = "16")]
    pub aios: Vec<AioRingEntry>,
    #[prost(bool, optional, tag = "17")]
    pub thp_disabled: Option<bool>,
}

/// First entry of a pagemap image: which `pages-<id>.img` holds the data.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PagemapHead {
    #[prost(uint32, required, tag = "1")]
    pub pages_id: u32,
}

/// One run of pages.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PagemapEntry {
    #[prost(uint64, required, tag = "1")]
    pub vaddr: u64,
    /// Legacy 32-bit page count; CRIU writes it and `nr_pages` both.
    #[prost(uint32, required, tag = "2")]
    pub compat_nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    pub in_parent: Option<bool>,
    /// [`pe_flags`] bits.
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub nr_pages: Option<u64>,
}

impl PagemapEntry {
    /// The page count, from the 64-bit field when present.
    pub fn pages(&self) -> u64 {
        self.nr_pages.unwrap_or(u64::from(self.compat_nr_pages))
    }

    /// Whether this run's bytes are in this directory's pages image.
    pub fn is_present(&self) -> bool {
        match self.flags {
            Some(f) => f & pe_flags::PRESENT != 0,
            // Images older than the flags field: present unless in the parent.
            None => !self.in_parent.unwrap_or(false),
        }
    }
}
