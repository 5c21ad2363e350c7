//! x86_64 thread state inside `core-<tid>.img`.

criu_enum! {
    /// user_regs_struct mode.
    pub enum UserX86RegsMode {
        Native = 1 => "NATIVE",
        Compat = 2 => "COMPAT",
    }
}

/// General registers, in the kernel's `user_regs_struct` order (PTRACE_GETREGSET NT_PRSTATUS).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86RegsEntry {
    #[prost(uint64, required, tag = "1")]
    pub r15: u64,
    #[prost(uint64, required, tag = "2")]
    pub r14: u64,
    #[prost(uint64, required, tag = "3")]
    pub r13: u64,
    #[prost(uint64, required, tag = "4")]
    pub r12: u64,
    #[prost(uint64, required, tag = "5")]
    pub bp: u64,
    #[prost(uint64, required, tag = "6")]
    pub bx: u64,
    #[prost(uint64, required, tag = "7")]
    pub r11: u64,
    #[prost(uint64, required, tag = "8")]
    pub r10: u64,
    #[prost(uint64, required, tag = "9")]
    pub r9: u64,
    #[prost(uint64, required, tag = "10")]
    pub r8: u64,
    #[prost(uint64, required, tag = "11")]
    pub ax: u64,
    #[prost(uint64, required, tag = "12")]
    pub cx: u64,
    #[prost(uint64, required, tag = "13")]
    pub dx: u64,
    #[prost(uint64, required, tag = "14")]
    pub si: u64,
    #[prost(uint64, required, tag = "15")]
    pub di: u64,
    #[prost(uint64, required, tag = "16")]
    pub orig_ax: u64,
    #[prost(uint64, required, tag = "17")]
    pub ip: u64,
    #[prost(uint64, required, tag = "18")]
    pub cs: u64,
    #[prost(uint64, required, tag = "19")]
    pub flags: u64,
    #[prost(uint64, required, tag = "20")]
    pub sp: u64,
    #[prost(uint64, required, tag = "21")]
    pub ss: u64,
    #[prost(uint64, required, tag = "22")]
    pub fs_base: u64,
    #[prost(uint64, required, tag = "23")]
    pub gs_base: u64,
    #[prost(uint64, required, tag = "24")]
    pub ds: u64,
    #[prost(uint64, required, tag = "25")]
    pub es: u64,
    #[prost(uint64, required, tag = "26")]
    pub fs: u64,
    #[prost(uint64, required, tag = "27")]
    pub gs: u64,
    #[prost(enumeration = "UserX86RegsMode", optional, tag = "28")]
    #[serde(serialize_with = "super::opt_enum_name::<UserX86RegsMode, _>")]
    pub mode: Option<i32>,
}

/// CET shadow-stack state.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86CetEntry {
    #[prost(uint64, required, tag = "1")]
    pub cet: u64,
    #[prost(uint64, required, tag = "2")]
    pub ssp: u64,
}

/// The XSAVE extension beyond the legacy FXSAVE area.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86XsaveEntry {
    #[prost(uint64, required, tag = "1")]
    pub xstate_bv: u64,
    /// Upper halves of YMM0-15 (64 words).
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub ymmh_space: Vec<u32>,
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub bndreg_state: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub bndcsr_state: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "5")]
    pub opmask_reg: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "6")]
    pub zmm_upper: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "7")]
    pub hi16_zmm: Vec<u64>,
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub pkru: Vec<u32>,
    #[prost(message, optional, tag = "9")]
    pub cet: Option<UserX86CetEntry>,
}

/// The FXSAVE area plus xsave.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86FpregsEntry {
    #[prost(uint32, required, tag = "1")]
    pub cwd: u32,
    #[prost(uint32, required, tag = "2")]
    pub swd: u32,
    #[prost(uint32, required, tag = "3")]
    pub twd: u32,
    #[prost(uint32, required, tag = "4")]
    pub fop: u32,
    #[prost(uint64, required, tag = "5")]
    pub rip: u64,
    #[prost(uint64, required, tag = "6")]
    pub rdp: u64,
    #[prost(uint32, required, tag = "7")]
    pub mxcsr: u32,
    #[prost(uint32, required, tag = "8")]
    pub mxcsr_mask: u32,
    /// 8 x87 registers, 16 bytes each (32 words).
    #[prost(uint32, repeated, packed = "false", tag = "9")]
    pub st_space: Vec<u32>,
    /// 16 XMM registers (64 words).
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub xmm_space: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub padding: Vec<u32>,
    #[prost(message, optional, tag = "13")]
    pub xsave: Option<UserX86XsaveEntry>,
}

/// A GDT TLS descriptor (`user_desc`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserDescT {
    #[prost(uint32, required, tag = "1")]
    pub entry_number: u32,
    #[prost(uint32, required, tag = "2")]
    pub base_addr: u32,
    #[prost(uint32, required, tag = "3")]
    pub limit: u32,
    #[prost(bool, required, tag = "4")]
    pub seg_32bit: bool,
    #[prost(bool, required, tag = "5")]
    pub contents_h: bool,
    #[prost(bool, required, tag = "6")]
    pub contents_l: bool,
    #[prost(bool, required, tag = "7", default = "true")]
    pub read_exec_only: bool,
    #[prost(bool, required, tag = "8")]
    pub limit_in_pages: bool,
    #[prost(bool, required, tag = "9", default = "true")]
    pub seg_not_present: bool,
    #[prost(bool, required, tag = "10")]
    pub usable: bool,
}

/// x86 registers of one thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadInfoX86 {
    #[prost(uint64, required, tag = "1")]
    pub clear_tid_addr: u64,
    #[prost(message, required, tag = "2")]
    pub gpregs: UserX86RegsEntry,
    #[prost(message, required, tag = "3")]
    pub fpregs: UserX86FpregsEntry,
    #[prost(message, repeated, tag = "4")]
    pub tls: Vec<UserDescT>,
}
