//! `stasis show`: what a person wants to know about a checkpoint — the process tree, each
//! task's memory and open files, namespaces, mounts and dump statistics — built from the images
//! into a plain [`Summary`], then rendered as text. `--json` instead decodes every image.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::image::pages::Pagemap;
use crate::image::pb::{self, vma_status, CriuEnum, FdTypes, FileEntry};
use crate::image::{AnyImage, ImageDir, ImageError, ImageKind, Payloads};

/// Why a checkpoint could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{}: no pstree.img: not a checkpoint directory", dir.display())]
    NoPstree { dir: std::path::PathBuf },
    #[error("{}: task {pid}: core-{pid}.img is missing", dir.display())]
    MissingCore { dir: std::path::PathBuf, pid: u32 },
}

/// Everything `stasis show` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub img_version: Option<u32>,
    pub tasks: Vec<TaskSummary>,
    pub namespaces: Vec<NsSummary>,
    pub mounts: Vec<MountSummary>,
    pub stats: Option<pb::DumpStatsEntry>,
}

/// One process.
#[derive(Clone, Debug, Serialize)]
pub struct TaskSummary {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub threads: Vec<u32>,
    pub comm: String,
    /// "alive", "zombie", "stopped" or the raw state.
    pub state: String,
    pub exit_code: Option<u32>,
    pub memory: Option<MemorySummary>,
    pub fds: Vec<FdSummary>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    /// One line each: credentials, confinement, signals and timers, locks, tree flags.
    pub details: Vec<String>,
}

/// A task's address space.
#[derive(Clone, Debug, Serialize)]
pub struct MemorySummary {
    pub vmas: usize,
    /// Sum of all VMA sizes.
    pub mapped_bytes: u64,
    /// Bytes of page data in the pages image.
    pub dumped_bytes: u64,
    pub exe: Option<String>,
    /// Files mapped into memory, each once.
    pub mapped_files: Vec<String>,
}

/// One open fd.
#[derive(Clone, Debug, Serialize)]
pub struct FdSummary {
    pub fd: u32,
    pub kind: String,
    pub target: String,
}

/// One namespace of the root task.
#[derive(Clone, Debug, Serialize)]
pub struct NsSummary {
    pub kind: &'static str,
    pub id: u32,
    pub detail: Option<String>,
}

/// One mount of a dumped mount namespace.
#[derive(Clone, Debug, Serialize)]
pub struct MountSummary {
    pub mnt_id: u32,
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
    pub external: bool,
}

struct Files {
    by_id: BTreeMap<u32, FileEntry>,
    memfd_names: BTreeMap<u32, String>,
    /// files.img ids of unlinked files whose contents are saved (remap-fpath.img).
    ghosts: BTreeSet<u32>,
    /// filelocks.img.
    locks: Vec<pb::FileLockEntry>,
}

impl Files {
    fn load(dir: &ImageDir) -> Result<Files, ImageError> {
        let by_id = dir
            .read_all::<FileEntry>(ImageKind::Files, 0)?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        let memfd_names = dir
            .read_all::<pb::MemfdInodeEntry>(ImageKind::MemfdInode, 0)?
            .into_iter()
            .map(|m| (u32::try_from(m.inode_id).unwrap_or(u32::MAX), m.name))
            .collect();
        let ghosts = dir
            .read_all::<pb::RemapFilePathEntry>(ImageKind::RemapFpath, 0)?
            .into_iter()
            .map(|r| r.orig_id)
            .collect();
        Ok(Files {
            by_id,
            memfd_names,
            ghosts,
            locks: dir.read_all(ImageKind::FileLocks, 0)?,
        })
    }

    fn reg_name(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id)?.reg.as_ref().map(|r| r.name.as_str())
    }

    /// A short description of what a file object is.
    fn describe(&self, id: u32) -> (String, String) {
        let Some(f) = self.by_id.get(&id) else {
            return ("?".into(), format!("file id {id} missing from files.img"));
        };
        let kind = FdTypes::proto_name(f.r#type).unwrap_or("?").to_owned();
        let target = if let Some(r) = &f.reg {
            if self.ghosts.contains(&r.id) {
                format!("{} (deleted; contents saved)", r.name)
            } else {
                r.name.clone()
            }
        } else if let Some(p) = &f.pipe {
            format!("pipe[{}]", p.pipe_id)
        } else if let Some(p) = &f.fifo {
            let path = p.regf_id.and_then(|r| self.reg_name(r)).unwrap_or("?");
            format!("fifo[{}] {path}", p.pipe_id)
        } else if let Some(u) = &f.usk {
            unix_target(u)
        } else if let Some(s) = &f.isk {
            inet_target(s)
        } else if let Some(n) = &f.nlsk {
            format!(
                "netlink protocol {} port {} groups {:?}",
                n.protocol, n.portid, n.groups
            )
        } else if let Some(p) = &f.psk {
            format!("packet socket protocol {:#06x} ifindex {}", p.protocol, p.ifindex)
        } else if let Some(e) = &f.efd {
            format!("eventfd counter={}", e.counter)
        } else if let Some(e) = &f.epfd {
            let fds: Vec<String> = e.tfd.iter().map(|t| t.tfd.to_string()).collect();
            format!("epoll watching fds [{}]", fds.join(","))
        } else if let Some(t) = &f.tfd {
            format!(
                "timerfd clock={} value={}.{:09}s interval={}.{:09}s ticks={}",
                t.clockid, t.vsec, t.vnsec, t.isec, t.insec, t.ticks
            )
        } else if let Some(s) = &f.sgfd {
            format!("signalfd mask={:#x}", s.sigmask)
        } else if let Some(i) = &f.ify {
            let paths: Vec<String> =
                i.wd.iter()
                    .map(|w| w.f_handle.path.clone().unwrap_or_else(|| format!("ino {}", w.i_ino)))
                    .collect();
            format!("inotify watching [{}]", paths.join(", "))
        } else if let Some(m) = &f.memfd {
            let name = self.memfd_names.get(&m.inode_id).map(String::as_str).unwrap_or("?");
            format!("memfd:{name} pos={}", m.pos)
        } else if let Some(t) = &f.tty {
            let path = t.regf_id.and_then(|r| self.reg_name(r)).unwrap_or("?");
            format!("tty {path}")
        } else if let Some(n) = &f.nsf {
            format!("ns id {} (flag {:#x})", n.ns_id, n.ns_cflag)
        } else if let Some(p) = &f.pidfd {
            format!("pidfd pid {}", p.nspid)
        } else {
            format!("id {id}")
        };
        (kind, target)
    }
}

fn sock_type(t: u32) -> &'static str {
    match t {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        _ => "?",
    }
}

fn tcp_state(s: u32) -> &'static str {
    match s {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-recv",
        4 => "fin-wait1",
        5 => "fin-wait2",
        6 => "time-wait",
        7 => "close",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        _ => "?",
    }
}

fn unix_target(u: &pb::UnixSkEntry) -> String {
    let mut s = format!("unix[{}", u.ino);
    if u.peer != 0 {
        let _ = write!(s, " -> {}", u.peer);
    }
    let _ = write!(s, "] {} {}", sock_type(u.r#type), tcp_state(u.state));
    if !u.name.is_empty() {
        let name = match u.name.split_first() {
            Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
            _ => String::from_utf8_lossy(&u.name).into_owned(),
        };
        let _ = write!(s, " {name}");
    }
    s
}

fn inet_addr(family: u32, words: &[u32], port: u32) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match (family, bytes.len()) {
        (2, 4) => format!("{}.{}.{}.{}:{port}", bytes[0], bytes[1], bytes[2], bytes[3]),
        (10, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes);
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        _ => format!("*:{port}"),
    }
}

fn inet_target(s: &pb::InetSkEntry) -> String {
    let proto = match s.proto {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    };
    let v = if s.family == 10 { "6" } else { "" };
    let mut out = format!("{proto}{v} {}", inet_addr(s.family, &s.src_addr, s.src_port));
    if s.dst_port != 0 {
        let _ = write!(out, " -> {}", inet_addr(s.family, &s.dst_addr, s.dst_port));
    }
    if s.proto == 6 {
        let _ = write!(out, " {}", tcp_state(s.state));
    }
    out
}

fn fstype_name(t: u32) -> String {
    i32::try_from(t)
        .ok()
        .and_then(|v| pb::Fstype::try_from(v).ok())
        .map(|f| format!("{f:?}").to_lowercase())
        .unwrap_or_else(|| format!("fstype {t}"))
}

/// Builds the summary of the checkpoint in `dir`.
pub fn summarize(dir: &ImageDir) -> Result<Summary, ShowError> {
    let pstree: Vec<pb::PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    if pstree.is_empty() {
        return Err(ShowError::NoPstree {
            dir: dir.path().to_owned(),
        });
    }
    let inventory: Option<pb::InventoryEntry> = dir.read_one(ImageKind::Inventory, 0)?;
    let files = Files::load(dir)?;
    let mut tasks = Vec::with_capacity(pstree.len());
    for p in &pstree {
        tasks.push(summarize_task(dir, &files, p)?);
    }
    // inventory.root_ids are the dumping tool's own namespaces; the tree's root task may differ.
    let host_ids = inventory.as_ref().and_then(|i| i.root_ids.clone());
    let (namespaces, mounts) = match task_ids(dir, pstree[0].pid)? {
        Some(ids) => (namespaces(dir, &ids, host_ids.as_ref())?, mounts(dir, &ids)?),
        None => (Vec::new(), Vec::new()),
    };
    let stats = dir
        .read_one::<pb::StatsEntry>(ImageKind::StatsDump, 0)?
        .and_then(|s| s.dump);
    Ok(Summary {
        img_version: inventory.map(|i| i.img_version),
        tasks,
        namespaces,
        mounts,
        stats,
    })
}

fn summarize_task(dir: &ImageDir, files: &Files, p: &pb::PstreeEntry) -> Result<TaskSummary, ShowError> {
    let pid = p.pid;
    let core: pb::CoreEntry = dir
        .read_one(ImageKind::Core, pid.into())?
        .ok_or_else(|| ShowError::MissingCore {
            dir: dir.path().to_owned(),
            pid,
        })?;
    let tc = core.tc.unwrap_or_default();
    let state = match tc.task_state {
        pb::TASK_ALIVE => "alive".to_owned(),
        pb::TASK_DEAD => "zombie".to_owned(),
        pb::TASK_STOPPED => "stopped".to_owned(),
        other => format!("state {other:#x}"),
    };
    let zombie = tc.task_state == pb::TASK_DEAD;
    let mut task = TaskSummary {
        pid,
        ppid: p.ppid,
        pgid: p.pgid,
        sid: p.sid,
        threads: if zombie { Vec::new() } else { p.threads.clone() },
        comm: tc.comm.clone(),
        state,
        exit_code: zombie.then_some(tc.exit_code),
        memory: None,
        fds: Vec::new(),
        cwd: None,
        root: None,
        details: Vec::new(),
    };
    if zombie {
        return Ok(task);
    }
    let ids = match core.ids {
        Some(ids) => Some(ids),
        None => task_ids(dir, pid)?,
    };
    if let Some(mm) = dir.read_one::<pb::MmEntry>(ImageKind::Mm, pid.into())? {
        let dumped = Pagemap::read(dir, ImageKind::Pagemap, pid.into())?.map_or(0, |m| m.present_bytes());
        let mut mapped_files = BTreeSet::new();
        for v in &mm.vmas {
            if v.status & (vma_status::FILE_PRIVATE | vma_status::FILE_SHARED) != 0 {
                if let Some(name) = u32::try_from(v.shmid).ok().and_then(|id| files.reg_name(id)) {
                    mapped_files.insert(name.to_owned());
                }
            }
        }
        task.memory = Some(MemorySummary {
            vmas: mm.vmas.len(),
            mapped_bytes: mm.vmas.iter().map(|v| v.end.saturating_sub(v.start)).sum(),
            dumped_bytes: dumped,
            exe: files.reg_name(mm.exe_file_id).map(str::to_owned),
            mapped_files: mapped_files.into_iter().collect(),
        });
    }
    if let Some(ids) = &ids {
        let fdinfo: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, ids.files_id.into())?;
        task.fds = fdinfo
            .iter()
            .map(|fd| {
                let (kind, target) = files.describe(fd.id);
                FdSummary {
                    fd: fd.fd,
                    kind,
                    target,
                }
            })
            .collect();
        task.fds.sort_by_key(|f| f.fd);
    }
    if let Some(fs) = dir.read_one::<pb::FsEntry>(ImageKind::Fs, pid.into())? {
        task.cwd = files.reg_name(fs.cwd_id).map(str::to_owned);
        task.root = files.reg_name(fs.root_id).map(str::to_owned);
    }
    task.details = task_details(dir, files, pid, (&tc, core.thread_core.as_ref()), &p.threads)?;
    Ok(task)
}

/// Lines about what a task holds besides memory and files.
fn task_details(
    dir: &ImageDir,
    files: &Files,
    pid: u32,
    (tc, thread): (&pb::TaskCoreEntry, Option<&pb::ThreadCoreEntry>),
    threads: &[u32],
) -> Result<Vec<String>, ShowError> {
    let mut out = Vec::new();
    if let Some(c) = thread.and_then(|t| t.creds.as_ref()) {
        let caps =
            |v: &[u32]| u64::from(v.first().copied().unwrap_or(0)) | u64::from(v.get(1).copied().unwrap_or(0)) << 32;
        out.push(format!(
            "creds: uid {}/{}/{} gid {}/{}/{} groups {:?} caps eff {:#x} prm {:#x} amb {:#x}{}",
            c.uid,
            c.euid,
            c.suid,
            c.gid,
            c.egid,
            c.sgid,
            c.groups,
            caps(&c.cap_eff),
            caps(&c.cap_prm),
            caps(&c.cap_amb),
            if c.no_new_privs.unwrap_or(0) != 0 {
                ", no_new_privs"
            } else {
                ""
            }
        ));
    }
    // seccomp and queued signals are per thread.
    let mut filtered = 0;
    let mut strict = 0;
    let mut queued = tc.signals_s.as_ref().map_or(0, |q| q.signals.len());
    let shared = queued;
    for &tid in threads {
        let core: Option<pb::CoreEntry> = if tid == pid {
            None
        } else {
            dir.read_one(ImageKind::Core, tid.into())?
        };
        let t = if tid == pid {
            thread.cloned()
        } else {
            core.and_then(|c| c.thread_core)
        };
        let Some(t) = t else { continue };
        match t.seccomp_mode.and_then(|m| pb::SeccompMode::try_from(m).ok()) {
            Some(pb::SeccompMode::Filter) => filtered += 1,
            Some(pb::SeccompMode::Strict) => strict += 1,
            _ => {}
        }
        queued += t.signals_p.as_ref().map_or(0, |q| q.signals.len());
    }
    if filtered + strict > 0 {
        out.push(format!("seccomp: {filtered} threads filtered, {strict} strict"));
    }
    if queued > 0 {
        out.push(format!("queued signals: {queued} ({shared} for the process)"));
    }
    if let Some(timers) = &tc.timers {
        let ids: Vec<String> = timers.posix.iter().map(|t| t.it_id.to_string()).collect();
        if !ids.is_empty() {
            out.push(format!("POSIX timers: ids {}", ids.join(",")));
        }
        for (name, t) in [
            ("real", &timers.real),
            ("virtual", &timers.virt),
            ("prof", &timers.prof),
        ] {
            if t.vsec != 0 || t.vusec != 0 {
                out.push(format!(
                    "itimer {name}: {}.{:06}s left, every {}.{:06}s",
                    t.vsec, t.vusec, t.isec, t.iusec
                ));
            }
        }
    }
    if tc.child_subreaper == Some(true) {
        out.push("child subreaper".into());
    }
    if let Some(sig) = thread.and_then(|t| t.pdeath_sig).filter(|&s| s != 0) {
        out.push(format!("parent-death signal {sig}"));
    }
    for l in files.locks.iter().filter(|l| l.pid as u32 == pid) {
        let kind = match l.flag {
            1 => "POSIX",
            2 => "flock",
            4 => "OFD",
            _ => "?",
        };
        let mode = if l.r#type == 1 { "write" } else { "read" };
        let range = if l.len == 0 {
            format!("{}-EOF", l.start)
        } else {
            format!("{}+{}", l.start, l.len)
        };
        out.push(format!("lock: {kind} {mode} on fd {} bytes {range}", l.fd));
    }
    Ok(out)
}

/// The object ids of task `pid` (`ids-<pid>.img`), if dumped.
fn task_ids(dir: &ImageDir, pid: u32) -> Result<Option<pb::TaskKobjIdsEntry>, ImageError> {
    dir.read_one(ImageKind::Ids, pid.into())
}

fn ns_ids(ids: &pb::TaskKobjIdsEntry) -> [(&'static str, Option<u32>); 8] {
    [
        ("pid", ids.pid_ns_id),
        ("net", ids.net_ns_id),
        ("ipc", ids.ipc_ns_id),
        ("uts", ids.uts_ns_id),
        ("mnt", ids.mnt_ns_id),
        ("user", ids.user_ns_id),
        ("cgroup", ids.cgroup_ns_id),
        ("time", ids.time_ns_id),
    ]
}

fn namespaces(
    dir: &ImageDir,
    ids: &pb::TaskKobjIdsEntry,
    host: Option<&pb::TaskKobjIdsEntry>,
) -> Result<Vec<NsSummary>, ShowError> {
    let mut out = Vec::new();
    let host_ids = host.map(ns_ids);
    for (i, (kind, id)) in ns_ids(ids).into_iter().enumerate() {
        let Some(id) = id else { continue };
        let shared = host_ids.is_some_and(|h| h[i].1 == Some(id));
        let own = match kind {
            "uts" => dir
                .read_one::<pb::UtsnsEntry>(ImageKind::Utsns, id.into())?
                .map(|u| format!("dumped: nodename {:?}, domainname {:?}", u.nodename, u.domainname)),
            "ipc" => {
                let saved: Vec<&str> = [
                    (ImageKind::IpcVar, "sysctls"),
                    (ImageKind::IpcnsShm, "SysV segments"),
                    (ImageKind::IpcnsSem, "semaphore sets"),
                    (ImageKind::IpcnsMsg, "message queues"),
                ]
                .into_iter()
                .filter(|(k, _)| dir.image_path(*k, id.into()).exists())
                .map(|(_, what)| what)
                .collect();
                (!saved.is_empty()).then(|| format!("dumped: {}", saved.join(", ")))
            }
            "mnt" => dir
                .reader(ImageKind::Mnts, id.into())?
                .is_some()
                .then(|| "dumped: mount tree".to_owned()),
            "net" => dir
                .reader(ImageKind::Netdev, id.into())?
                .is_some()
                .then(|| "dumped: devices".to_owned()),
            _ => None,
        };
        let detail = match (shared, own) {
            (true, _) => Some("the dumping host's".to_owned()),
            (false, Some(d)) => Some(format!("own, {d}")),
            (false, None) => Some("own".to_owned()),
        };
        out.push(NsSummary { kind, id, detail });
    }
    Ok(out)
}

fn mounts(dir: &ImageDir, ids: &pb::TaskKobjIdsEntry) -> Result<Vec<MountSummary>, ShowError> {
    let Some(id) = ids.mnt_ns_id else {
        return Ok(Vec::new());
    };
    let mnts: Vec<pb::MntEntry> = dir.read_all(ImageKind::Mnts, id.into())?;
    Ok(mnts
        .into_iter()
        .map(|m| MountSummary {
            mnt_id: m.mnt_id,
            mountpoint: m.mountpoint,
            fstype: m.fsname.unwrap_or_else(|| fstype_name(m.fstype)),
            source: m.source,
            external: m.ext_mount.unwrap_or(false) || m.ext_key.is_some(),
        })
        .collect())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Renders a summary as text.
pub fn render(dir: &Path, s: &Summary) -> String {
    let mut o = String::new();
    let threads: usize = s.tasks.iter().map(|t| t.threads.len()).sum();
    let _ = writeln!(o, "Checkpoint {}", dir.display());
    let _ = writeln!(o, "Process tree: {} processes, {} threads", s.tasks.len(), threads);
    let _ = writeln!(
        o,
        "  {:>7} {:>7} {:>7} {:>7}  {:<16} {:<16} THREADS",
        "PID", "PPID", "PGID", "SID", "STATE", "COMM"
    );
    for t in &s.tasks {
        let state = match t.exit_code {
            // The wait status: exit code in bits 8-15, or the killing signal in bits 0-6.
            Some(code) if code & 0x7f == 0 => format!("zombie(exit {})", (code >> 8) & 0xff),
            Some(code) => format!("zombie(signal {})", code & 0x7f),
            None => t.state.clone(),
        };
        let tids: Vec<String> = t.threads.iter().map(u32::to_string).collect();
        let _ = writeln!(
            o,
            "  {:>7} {:>7} {:>7} {:>7}  {:<16} {:<16} {}",
            t.pid,
            t.ppid,
            t.pgid,
            t.sid,
            state,
            t.comm,
            tids.join(",")
        );
    }
    for t in &s.tasks {
        if t.exit_code.is_some() {
            continue;
        }
        let _ = writeln!(o, "\nTask {} ({})", t.pid, t.comm);
        if let Some(m) = &t.memory {
            let _ = writeln!(
                o,
                "  memory: {} VMAs, {} mapped ({} bytes), {} dumped ({} bytes)",
                m.vmas,
                human_bytes(m.mapped_bytes),
                m.mapped_bytes,
                human_bytes(m.dumped_bytes),
                m.dumped_bytes
            );
            if let Some(exe) = &m.exe {
                let _ = writeln!(o, "  exe: {exe}");
            }
            for f in &m.mapped_files {
                let _ = writeln!(o, "  mapped: {f}");
            }
        }
        if let Some(cwd) = &t.cwd {
            let _ = writeln!(o, "  cwd: {cwd}");
        }
        if let Some(root) = &t.root {
            let _ = writeln!(o, "  root: {root}");
        }
        for d in &t.details {
            let _ = writeln!(o, "  {d}");
        }
        if !t.fds.is_empty() {
            let _ = writeln!(o, "  fds:");
            for f in &t.fds {
                let _ = writeln!(o, "    {:>4}  {:<9} {}", f.fd, f.kind, f.target);
            }
        }
    }
    if !s.namespaces.is_empty() {
        let _ = writeln!(o, "\nNamespaces of the root task:");
        for n in &s.namespaces {
            let _ = writeln!(
                o,
                "  {:<6} id {:<4} {}",
                n.kind,
                n.id,
                n.detail.as_deref().unwrap_or("")
            );
        }
    }
    if !s.mounts.is_empty() {
        let _ = writeln!(o, "\nMounts ({}):", s.mounts.len());
        for m in &s.mounts {
            let ext = if m.external { " (external)" } else { "" };
            let _ = writeln!(o, "  {:<28} {:<10} {}{ext}", m.mountpoint, m.fstype, m.source);
        }
    }
    if let Some(st) = &s.stats {
        let _ = writeln!(
            o,
            "\nDump stats: freezing {} us, frozen {} us, memdump {} us, memwrite {} us; pages scanned {}, written {}",
            st.freezing_time, st.frozen_time, st.memdump_time, st.memwrite_time, st.pages_scanned, st.pages_written
        );
    }
    o
}

/// One decoded file for `stasis show --json`.
#[derive(Debug, Serialize)]
pub struct JsonFile {
    pub file: String,
    #[serde(flatten)]
    pub image: AnyImage,
}

/// Decodes every image file of `dir` (files that are not CRIU images are left out).
pub fn decode_all(dir: &ImageDir) -> Result<Vec<JsonFile>, ShowError> {
    let mut out = Vec::new();
    for listed in dir.list()? {
        if listed.kind.is_none() {
            continue;
        }
        let image = AnyImage::open(&dir.path().join(&listed.name), Payloads::Load, dir.limits())?;
        out.push(JsonFile {
            file: listed.name,
            image,
        });
    }
    Ok(out)
}
