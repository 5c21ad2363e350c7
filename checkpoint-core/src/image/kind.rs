//! The table of image kinds: file name, head and type magic of each (CRIU's image-desc table).

use super::magic;

/// Which words open an image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `IMG_COMMON`, then the type magic.
    Common,
    /// `IMG_SERVICE`, then the type magic.
    Service,
    /// Only the type magic (inventory).
    TypeOnly,
    /// No magic: foreign bytes (pages, iproute2 dumps, tarballs).
    Raw,
}

/// How the file name carries the image's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// One file per dump: the name is fixed.
    Fixed(&'static str),
    /// `prefix<decimal id>suffix`.
    Dec(&'static str, &'static str),
    /// `prefix<hex id>suffix`.
    Hex(&'static str, &'static str),
}

macro_rules! image_kinds {
    ($($(#[$doc:meta])* $kind:ident => ($label:literal, $naming:expr, $head:ident, $magic:expr)),* $(,)?) => {
        /// One kind of image file.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ImageKind { $($(#[$doc])* $kind),* }

        impl ImageKind {
            /// Every kind, in table order (longer name prefixes before shorter ones).
            pub const ALL: &'static [ImageKind] = &[$(ImageKind::$kind),*];

            /// CRIU's name of the kind, as crit prints it in `"magic"`.
            pub fn label(self) -> &'static str {
                match self { $(ImageKind::$kind => $label),* }
            }

            /// How files of this kind are named.
            pub fn naming(self) -> Naming {
                match self { $(ImageKind::$kind => $naming),* }
            }

            /// Which magic words open the file.
            pub fn head(self) -> Head {
                match self { $(ImageKind::$kind => Head::$head),* }
            }

            /// The type magic (0 for raw images).
            pub fn magic(self) -> u32 {
                match self { $(ImageKind::$kind => $magic),* }
            }
        }
    };
}

use Naming::{Dec, Fixed, Hex};

image_kinds! {
    Inventory => ("INVENTORY", Fixed("inventory.img"), TypeOnly, magic::INVENTORY),
    /// `stats-dump`.
    StatsDump => ("STATS", Fixed("stats-dump"), Service, magic::STATS),
    /// `stats-restore`.
    StatsRestore => ("STATS", Fixed("stats-restore"), Service, magic::STATS),
    IrmapCache => ("IRMAP_CACHE", Fixed("irmap-cache"), Service, magic::IRMAP_CACHE),
    Pstree => ("PSTREE", Fixed("pstree.img"), Common, magic::PSTREE),
    /// One per thread, named by tid.
    Core => ("CORE", Dec("core-", ".img"), Common, magic::CORE),
    Ids => ("IDS", Dec("ids-", ".img"), Common, magic::IDS),
    Mm => ("MM", Dec("mm-", ".img"), Common, magic::MM),
    /// Shared anonymous memory / memfd contents, named by shmem id.
    ShmemPagemap => ("PAGEMAP", Dec("pagemap-shmem-", ".img"), Common, magic::PAGEMAP),
    Pagemap => ("PAGEMAP", Dec("pagemap-", ".img"), Common, magic::PAGEMAP),
    /// Raw 4 KiB pages, named by `pagemap_head.pages_id`.
    Pages => ("PAGES", Dec("pages-", ".img"), Raw, magic::RAW),
    Fs => ("FS", Dec("fs-", ".img"), Common, magic::FS),
    /// One per fd table, named by `ids.files_id`.
    Fdinfo => ("FDINFO", Dec("fdinfo-", ".img"), Common, magic::FDINFO),
    Files => ("FILES", Fixed("files.img"), Common, magic::FILES),
    ExtFiles => ("EXT_FILES", Fixed("ext-files.img"), Common, magic::EXT_FILES),
    NsFiles => ("NS_FILES", Fixed("ns-files.img"), Common, magic::NS_FILES),
    PipesData => ("PIPES_DATA", Fixed("pipes-data.img"), Common, magic::PIPES_DATA),
    FifoData => ("FIFO_DATA", Fixed("fifo-data.img"), Common, magic::FIFO_DATA),
    SkQueues => ("SK_QUEUES", Fixed("sk-queues.img"), Common, magic::SK_QUEUES),
    /// Named by socket inode, in hex.
    TcpStream => ("TCP_STREAM", Hex("tcp-stream-", ".img"), Common, magic::TCP_STREAM),
    Utsns => ("UTSNS", Dec("utsns-", ".img"), Common, magic::UTSNS),
    IpcVar => ("IPC_VAR", Dec("ipcns-var-", ".img"), Common, magic::IPC_VAR),
    IpcnsShm => ("IPCNS_SHM", Dec("ipcns-shm-", ".img"), Common, magic::IPCNS_SHM),
    IpcnsMsg => ("IPCNS_MSG", Dec("ipcns-msg-", ".img"), Common, magic::IPCNS_MSG),
    IpcnsSem => ("IPCNS_SEM", Dec("ipcns-sem-", ".img"), Common, magic::IPCNS_SEM),
    Mnts => ("MNTS", Dec("mountpoints-", ".img"), Common, magic::MNTS),
    Netdev => ("NETDEV", Dec("netdev-", ".img"), Common, magic::NETDEV),
    NetnsCt => ("NETNS_CT", Dec("netns-ct-", ".img"), Raw, magic::RAW),
    NetnsExp => ("NETNS_EXP", Dec("netns-exp-", ".img"), Raw, magic::RAW),
    Netns => ("NETNS", Dec("netns-", ".img"), Common, magic::NETNS),
    Ifaddr => ("IFADDR", Dec("ifaddr-", ".img"), Raw, magic::RAW),
    Route6 => ("ROUTE6", Dec("route6-", ".img"), Raw, magic::RAW),
    Route => ("ROUTE", Dec("route-", ".img"), Raw, magic::RAW),
    Rule => ("RULE", Dec("rule-", ".img"), Raw, magic::RAW),
    Ip6tables => ("IP6TABLES", Dec("ip6tables-", ".img"), Raw, magic::RAW),
    Iptables => ("IPTABLES", Dec("iptables-", ".img"), Raw, magic::RAW),
    Nftables => ("NFTABLES", Dec("nftables-", ".img"), Raw, magic::RAW),
    /// Stasis's own (CRIU keeps no neighbours): permanent neighbour entries, as text.
    Neigh => ("NEIGH", Dec("neigh-", ".img"), Raw, magic::RAW),
    Userns => ("USERNS", Dec("userns-", ".img"), Common, magic::USERNS),
    /// `timens-0.img` holds the host clocks when the task has no time namespace of its own.
    Timens => ("TIMENS", Dec("timens-", ".img"), Common, magic::TIMENS),
    Pidns => ("PIDNS", Dec("pidns-", ".img"), Common, magic::PIDNS),
    Cgroup => ("CGROUP", Fixed("cgroup.img"), Common, magic::CGROUP),
    Seccomp => ("SECCOMP", Fixed("seccomp.img"), Common, magic::SECCOMP),
    Apparmor => ("APPARMOR", Fixed("apparmor.img"), Common, magic::APPARMOR),
    TtyInfo => ("TTY_INFO", Fixed("tty-info.img"), Common, magic::TTY_INFO),
    TtyData => ("TTY_DATA", Fixed("tty-data.img"), Common, magic::TTY_DATA),
    FileLocks => ("FILE_LOCKS", Fixed("filelocks.img"), Common, magic::FILE_LOCKS),
    RemapFpath => ("REMAP_FPATH", Fixed("remap-fpath.img"), Common, magic::REMAP_FPATH),
    /// Named by remap id, in hex.
    GhostFile => ("GHOST_FILE", Hex("ghost-file-", ".img"), Common, magic::GHOST_FILE),
    MemfdInode => ("MEMFD_INODE", Fixed("memfd.img"), Common, magic::MEMFD_INODE),
    Cpuinfo => ("CPUINFO", Fixed("cpuinfo.img"), Common, magic::CPUINFO),
    BinfmtMisc => ("BINFMT_MISC", Fixed("binfmt-misc.img"), Common, magic::BINFMT_MISC),
    Autofs => ("AUTOFS", Dec("autofs-", ".img"), Common, magic::AUTOFS),
    BpfmapFile => ("BPFMAP_FILE", Fixed("bpfmap-file.img"), Common, magic::BPFMAP_FILE),
    BpfmapData => ("BPFMAP_DATA", Fixed("bpfmap-data.img"), Common, magic::BPFMAP_DATA),
    /// gzip tarball of a tmpfs mounted on /dev, named by mount id.
    TmpfsDev => ("TMPFS_DEV", Dec("tmpfs-dev-", ".tar.gz.img"), Raw, magic::RAW),
    /// gzip tarball of a tmpfs, named by mount id.
    TmpfsImg => ("TMPFS_IMG", Dec("tmpfs-", ".tar.gz.img"), Raw, magic::RAW),
}

impl ImageKind {
    /// The file name of this kind for `id` (ignored by fixed names).
    pub fn file_name(self, id: u64) -> String {
        match self.naming() {
            Fixed(name) => name.to_owned(),
            Dec(prefix, suffix) => format!("{prefix}{id}{suffix}"),
            Hex(prefix, suffix) => format!("{prefix}{id:x}{suffix}"),
        }
    }

    /// Recognises a CRIU image file name; returns the kind and the id it carries (0 if fixed).
    pub fn from_file_name(name: &str) -> Option<(ImageKind, u64)> {
        Self::ALL.iter().find_map(|&kind| {
            let (prefix, suffix, radix) = match kind.naming() {
                Fixed(fixed) => return (name == fixed).then_some((kind, 0)),
                Dec(p, s) => (p, s, 10),
                Hex(p, s) => (p, s, 16),
            };
            let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(digits, radix).ok().map(|id| (kind, id))
        })
    }

    /// Whether the file is foreign bytes with no magic or framing.
    pub fn is_raw(self) -> bool {
        self.head() == Head::Raw
    }

    /// The kinds a type magic may stand for (several kinds share PAGEMAP and STATS).
    pub fn by_magic(head: Head, magic: u32) -> Option<ImageKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.head() == head && k.magic() == magic && !k.is_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_kind() {
        for &kind in ImageKind::ALL {
            let name = kind.file_name(0x2a);
            let (back, id) = ImageKind::from_file_name(&name).expect(&name);
            assert_eq!(back, kind, "{name}");
            if !matches!(kind.naming(), Fixed(_)) {
                assert_eq!(id, 0x2a, "{name}");
            }
        }
    }

    #[test]
    fn prefixes_that_nest_resolve_to_the_longer_one() {
        assert_eq!(
            ImageKind::from_file_name("pagemap-shmem-3979.img"),
            Some((ImageKind::ShmemPagemap, 3979))
        );
        assert_eq!(
            ImageKind::from_file_name("pagemap-12.img"),
            Some((ImageKind::Pagemap, 12))
        );
        assert_eq!(
            ImageKind::from_file_name("tmpfs-dev-41.tar.gz.img"),
            Some((ImageKind::TmpfsDev, 41))
        );
        assert_eq!(
            ImageKind::from_file_name("ghost-file-1f.img"),
            Some((ImageKind::GhostFile, 0x1f))
        );
        assert_eq!(
            ImageKind::from_file_name("netns-ct-3.img"),
            Some((ImageKind::NetnsCt, 3))
        );
        assert_eq!(ImageKind::from_file_name("core-.img"), None);
        assert_eq!(ImageKind::from_file_name("core-1.img.bak"), None);
        assert_eq!(ImageKind::from_file_name("descriptors.json"), None);
    }
}
