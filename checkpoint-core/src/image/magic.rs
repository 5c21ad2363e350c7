//! Magic numbers of CRIU's image format (host byte order, little-endian on x86_64).

/// Head magic of ordinary images.
pub const IMG_COMMON: u32 = 0x5456_4319;
/// Head magic of service images (`stats-*`, `irmap-cache`).
pub const IMG_SERVICE: u32 = 0x5510_5940;
/// Type magic of raw images, which carry no magic at all.
pub const RAW: u32 = 0;
/// `inventory.img_version` of the layout with head magics (images v1.1).
pub const IMAGES_V1_1: u32 = 2;

pub const INVENTORY: u32 = 0x5831_3116;
pub const STATS: u32 = 0x5709_3306;
pub const IRMAP_CACHE: u32 = 0x5700_4059;
pub const PSTREE: u32 = 0x5027_3030;
pub const CORE: u32 = 0x5505_3847;
pub const IDS: u32 = 0x5443_2030;
pub const MM: u32 = 0x5749_2820;
pub const PAGEMAP: u32 = 0x5608_4025;
pub const FS: u32 = 0x5140_3912;
pub const FDINFO: u32 = 0x5621_3732;
pub const FILES: u32 = 0x5630_3138;
pub const EXT_FILES: u32 = 0x5925_5641;
pub const NS_FILES: u32 = 0x6139_4011;
pub const PIPES_DATA: u32 = 0x5645_3709;
pub const FIFO_DATA: u32 = 0x5933_3054;
pub const SK_QUEUES: u32 = 0x5626_4026;
pub const TCP_STREAM: u32 = 0x5146_5506;
pub const UTSNS: u32 = 0x5447_3203;
pub const IPC_VAR: u32 = 0x5311_5007;
pub const IPCNS_SHM: u32 = 0x4628_3044;
pub const IPCNS_MSG: u32 = 0x5545_3737;
pub const IPCNS_SEM: u32 = 0x5957_3019;
pub const MNTS: u32 = 0x5556_3928;
pub const NETDEV: u32 = 0x5737_3951;
pub const NETNS: u32 = 0x5593_3752;
pub const USERNS: u32 = 0x5547_4906;
pub const TIMENS: u32 = 0x4311_4433;
pub const PIDNS: u32 = 0x6115_7326;
pub const CGROUP: u32 = 0x5938_3330;
pub const SECCOMP: u32 = 0x6441_3049;
pub const APPARMOR: u32 = 0x5942_3047;
pub const TTY_INFO: u32 = 0x5945_3036;
pub const TTY_DATA: u32 = 0x5941_3026;
pub const FILE_LOCKS: u32 = 0x5432_3616;
pub const REMAP_FPATH: u32 = 0x5913_3954;
pub const GHOST_FILE: u32 = 0x5258_3605;
pub const MEMFD_INODE: u32 = 0x4845_3499;
pub const CPUINFO: u32 = 0x6140_4013;
pub const BINFMT_MISC: u32 = 0x6734_3323;
pub const AUTOFS: u32 = 0x4935_3943;
pub const BPFMAP_FILE: u32 = 0x5750_6142;
pub const BPFMAP_DATA: u32 = 0x6432_4033;
