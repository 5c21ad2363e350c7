//! `core-<tid>.img` (per-process and per-thread state) and `ids-<pid>.img`.

use super::{hex, opt_hex, ThreadInfoX86};

criu_enum! {
    /// Machine architecture of a core image.
    pub enum March {
        Unknown = 0 => "UNKNOWN",
        X8664 = 1 => "X86_64",
        Arm = 2 => "ARM",
        Aarch64 = 3 => "AARCH64",
        Ppc64 = 4 => "PPC64",
        S390 = 5 => "S390",
        Mips = 6 => "MIPS",
        Loongarch64 = 7 => "LOONGARCH64",
        Riscv64 = 8 => "RISCV64",
    }
}

criu_enum! {
    /// SECCOMP_MODE_* of a thread.
    pub enum SeccompMode {
        Disabled = 0 => "disabled",
        Strict = 1 => "strict",
        Filter = 2 => "filter",
    }
}

/// `task_state` value of a live task.
pub const TASK_ALIVE: u32 = 0x01;
/// `task_state` value of a zombie.
pub const TASK_DEAD: u32 = 0x02;
/// `task_state` value of a stopped task.
pub const TASK_STOPPED: u32 = 0x03;

/// The one entry of `core-<tid>.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CoreEntry {
    #[prost(enumeration = "March", required, tag = "1")]
    #[serde(serialize_with = "super::enum_name::<March, _>")]
    pub mtype: i32,
    #[prost(message, optional, tag = "2")]
    pub thread_info: Option<ThreadInfoX86>,
    #[prost(message, optional, tag = "3")]
    pub tc: Option<TaskCoreEntry>,
    #[prost(message, optional, tag = "4")]
    pub ids: Option<TaskKobjIdsEntry>,
    #[prost(message, optional, tag = "5")]
    pub thread_core: Option<ThreadCoreEntry>,
}

/// Per-process state (meaningful in the main thread's core).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskCoreEntry {
    #[prost(uint32, required, tag = "1")]
    pub task_state: u32,
    #[prost(uint32, required, tag = "2")]
    pub exit_code: u32,
    #[prost(uint32, required, tag = "3")]
    pub personality: u32,
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
    #[prost(uint64, required, tag = "5")]
    pub blk_sigset: u64,
    #[prost(string, required, tag = "6")]
    pub comm: String,
    #[prost(message, optional, tag = "7")]
    pub timers: Option<TaskTimersEntry>,
    #[prost(message, optional, tag = "8")]
    pub rlimits: Option<TaskRlimitsEntry>,
    #[prost(uint32, optional, tag = "9")]
    pub cg_set: Option<u32>,
    #[prost(message, optional, tag = "10")]
    pub signals_s: Option<SignalQueueEntry>,
    #[prost(enumeration = "SeccompMode", optional, tag = "11")]
    #[serde(serialize_with = "super::opt_enum_name::<SeccompMode, _>")]
    pub old_seccomp_mode: Option<i32>,
    #[prost(uint32, optional, tag = "12")]
    pub old_seccomp_filter: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub loginuid: Option<u32>,
    #[prost(int32, optional, tag = "14")]
    pub oom_score_adj: Option<i32>,
    /// Handlers, index = signal - 1.
    #[prost(message, repeated, tag = "15")]
    pub sigactions: Vec<SaEntry>,
    #[prost(bool, optional, tag = "18")]
    pub child_subreaper: Option<bool>,
    #[prost(uint64, optional, tag = "20")]
    pub blk_sigset_extended: Option<u64>,
    #[prost(uint32, optional, tag = "21")]
    pub stop_signo: Option<u32>,
    #[prost(uint32, optional, tag = "22")]
    pub membarrier_registration_mask: Option<u32>,
}

/// Ids of the kernel objects a task uses (`ids-<pid>.img`, `core.ids`, `inventory.root_ids`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskKobjIdsEntry {
    #[prost(uint32, required, tag = "1")]
    pub vm_id: u32,
    /// Names `fdinfo-<files_id>.img`.
    #[prost(uint32, required, tag = "2")]
    pub files_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub fs_id: u32,
    #[prost(uint32, required, tag = "4")]
    pub sighand_id: u32,
    #[prost(uint32, optional, tag = "5")]
    pub pid_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub net_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub ipc_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub uts_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub mnt_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub user_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub cgroup_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "12")]
    pub time_ns_id: Option<u32>,
}

/// sigaltstack of a thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadSasEntry {
    #[prost(uint64, required, tag = "1")]
    pub ss_sp: u64,
    #[prost(uint64, required, tag = "2")]
    pub ss_size: u64,
    #[prost(uint32, required, tag = "3")]
    pub ss_flags: u32,
}

/// Per-thread state.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadCoreEntry {
    #[prost(uint64, required, tag = "1")]
    pub futex_rla: u64,
    #[prost(uint32, required, tag = "2")]
    pub futex_rla_len: u32,
    #[prost(sint32, optional, tag = "3")]
    pub sched_nice: Option<i32>,
    #[prost(uint32, optional, tag = "4")]
    pub sched_policy: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub sched_prio: Option<u32>,
    #[prost(uint64, optional, tag = "6")]
    pub blk_sigset: Option<u64>,
    #[prost(message, optional, tag = "7")]
    pub sas: Option<ThreadSasEntry>,
    #[prost(uint32, optional, tag = "8")]
    pub pdeath_sig: Option<u32>,
    #[prost(message, optional, tag = "9")]
    pub signals_p: Option<SignalQueueEntry>,
    #[prost(message, optional, tag = "10")]
    pub creds: Option<CredsEntry>,
    #[prost(enumeration = "SeccompMode", optional, tag = "11")]
    #[serde(serialize_with = "super::opt_enum_name::<SeccompMode, _>")]
    pub seccomp_mode: Option<i32>,
    /// Index in `seccomp.img` of the newest filter of this thread.
    #[prost(uint32, optional, tag = "12")]
    pub seccomp_filter: Option<u32>,
    #[prost(string, optional, tag = "13")]
    pub comm: Option<String>,
    #[prost(uint64, optional, tag = "14")]
    pub blk_sigset_extended: Option<u64>,
    #[prost(message, optional, tag = "15")]
    pub rseq_entry: Option<RseqEntry>,
    #[prost(uint32, optional, tag = "16")]
    pub cg_set: Option<u32>,
}

/// RLIMIT_* values in kernel order.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskRlimitsEntry {
    #[prost(message, repeated, tag = "1")]
    pub rlimits: Vec<RlimitEntry>,
}

/// One resource limit.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RlimitEntry {
    #[prost(uint64, required, tag = "1")]
    pub cur: u64,
    #[prost(uint64, required, tag = "2")]
    pub max: u64,
}

/// One signal disposition.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SaEntry {
    /// Handler address, or SIG_DFL (0) / SIG_IGN (1).
    #[prost(uint64, required, tag = "1")]
    pub sigaction: u64,
    #[prost(uint64, required, tag = "2")]
    pub flags: u64,
    #[prost(uint64, required, tag = "3")]
    pub restorer: u64,
    #[prost(uint64, required, tag = "4")]
    pub mask: u64,
    #[prost(bool, optional, tag = "5")]
    pub compat_sigaction: Option<bool>,
    #[prost(uint64, optional, tag = "6")]
    pub mask_extended: Option<u64>,
}

/// Pending signals.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SignalQueueEntry {
    #[prost(message, repeated, tag = "1")]
    pub signals: Vec<SiginfoEntry>,
}

/// One pending signal: the raw 128-byte kernel siginfo.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SiginfoEntry {
    #[prost(bytes = "vec", required, tag = "1")]
    #[serde(serialize_with = "hex")]
    pub siginfo: Vec<u8>,
}

/// A registered rseq area.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RseqEntry {
    #[prost(uint64, required, tag = "1")]
    pub rseq_abi_pointer: u64,
    #[prost(uint32, required, tag = "2")]
    pub rseq_abi_size: u32,
    #[prost(uint32, required, tag = "3")]
    pub signature: u32,
    #[prost(uint64, optional, tag = "4")]
    pub rseq_cs_pointer: Option<u64>,
}

/// Credentials of a thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CredsEntry {
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    #[prost(uint32, required, tag = "2")]
    pub gid: u32,
    #[prost(uint32, required, tag = "3")]
    pub euid: u32,
    #[prost(uint32, required, tag = "4")]
    pub egid: u32,
    #[prost(uint32, required, tag = "5")]
    pub suid: u32,
    #[prost(uint32, required, tag = "6")]
    pub sgid: u32,
    #[prost(uint32, required, tag = "7")]
    pub fsuid: u32,
    #[prost(uint32, required, tag = "8")]
    pub fsgid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "9")]
    pub cap_inh: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub cap_prm: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub cap_eff: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub cap_bnd: Vec<u32>,
    #[prost(uint32, required, tag = "13")]
    pub secbits: u32,
    #[prost(uint32, repeated, packed = "false", tag = "14")]
    pub groups: Vec<u32>,
    #[prost(string, optional, tag = "15")]
    pub lsm_profile: Option<String>,
    #[prost(string, optional, tag = "16")]
    pub lsm_sockcreate: Option<String>,
    #[prost(bytes = "vec", optional, tag = "17")]
    #[serde(serialize_with = "opt_hex")]
    pub apparmor_data: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "18")]
    pub no_new_privs: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "19")]
    pub cap_amb: Vec<u32>,
}

/// itimers and POSIX timers of a process.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskTimersEntry {
    #[prost(message, required, tag = "1")]
    pub real: ItimerEntry,
    #[prost(message, required, tag = "2")]
    pub virt: ItimerEntry,
    #[prost(message, required, tag = "3")]
    pub prof: ItimerEntry,
    #[prost(message, repeated, tag = "4")]
    pub posix: Vec<PosixTimerEntry>,
}

/// One itimer: interval and current value.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ItimerEntry {
    #[prost(uint64, required, tag = "1")]
    pub isec: u64,
    #[prost(uint64, required, tag = "2")]
    pub iusec: u64,
    #[prost(uint64, required, tag = "3")]
    pub vsec: u64,
    #[prost(uint64, required, tag = "4")]
    pub vusec: u64,
}

/// One POSIX timer.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PosixTimerEntry {
    #[prost(uint32, required, tag = "1")]
    pub it_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub clock_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub si_signo: u32,
    #[prost(uint32, required, tag = "4")]
    pub it_sigev_notify: u32,
    #[prost(uint64, required, tag = "5")]
    pub sival_ptr: u64,
    #[prost(uint32, required, tag = "6")]
    pub overrun: u32,
    #[prost(uint64, required, tag = "7")]
    pub isec: u64,
    #[prost(uint64, required, tag = "8")]
    pub insec: u64,
    #[prost(uint64, required, tag = "9")]
    pub vsec: u64,
    #[prost(uint64, required, tag = "10")]
    pub vnsec: u64,
    #[prost(int32, optional, tag = "11")]
    pub notify_thread_id: Option<i32>,
}
