//! `stasis dump`: checkpoint a running process from the outside.
//!
//! Checks that every object is supported before freezing, seizes the task with ptrace, reads
//! what `/proc` and ptrace show, injects single syscalls for the rest ([`task`]), streams the
//! pages ([`mm`]), writes CRIU images, and only then kills the task (or lets it run on). Any
//! error detaches: the task keeps running as if nothing happened.

pub mod files;
pub mod mm;
pub mod task;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parasite::Tracee;

use crate::image::pages::PageImageWriter;
use crate::image::pb::{self, FdTypes};
use crate::image::{ImageDir, ImageError, ImageKind};
use crate::{procfs, sys, x86};
use files::{FdTable, FileKind};

/// What to dump and how.
#[derive(Clone, Debug)]
pub struct DumpOpts {
    pub pid: i32,
    pub images: PathBuf,
    /// Let the task run on after the dump instead of killing it.
    pub leave_running: bool,
    /// The task belongs to the caller's shell session: its terminal fds are recorded.
    pub shell_job: bool,
}

/// What a dump did.
#[derive(Clone, Debug)]
pub struct DumpReport {
    pub pid: i32,
    pub vmas: usize,
    pub pages_scanned: u64,
    pub pages_written: u64,
    /// How long the task was stopped.
    pub frozen: Duration,
    pub elapsed: Duration,
}

/// Why a dump failed; the task was left running, untraced.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] parasite::Error),
    #[error("pid {pid}: {path}: {source}")]
    Proc { pid: i32, path: String, source: io::Error },
    #[error("pid {pid}: cannot parse /proc/{pid}/{file}")]
    Parse { pid: i32, file: &'static str },
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("pid {pid}: fd {fd} is a terminal ({path}); dump a shell job with --shell-job")]
    NeedShellJob { pid: i32, fd: i32, path: String },
}

impl DumpError {
    fn proc(pid: i32, path: &str, source: io::Error) -> DumpError {
        DumpError::Proc {
            pid,
            path: path.to_owned(),
            source,
        }
    }
}

fn read_proc(pid: i32, file: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{file}");
    fs::read_to_string(&path).map_err(|e| DumpError::proc(pid, &path, e))
}

fn readlink_proc(pid: i32, file: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{file}");
    fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| DumpError::proc(pid, &path, e))
}

/// Pending signals are not saved yet: refuse them rather than lose them.
fn refuse_pending_signals(pid: i32, who: &str, status: &procfs::Status) -> Result<(), DumpError> {
    let pending = status.sig_pending | status.shared_pending;
    if pending != 0 {
        return Err(DumpError::Unsupported {
            pid,
            what: format!("{who}pending signals (mask {pending:#x}): saving them comes with a later milestone"),
        });
    }
    Ok(())
}

/// Refuses what this version cannot dump, before the task is stopped.
fn precheck(pid: i32, shell_job: bool) -> Result<(), DumpError> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::Remote(parasite::Error::NoSuchProcess { pid }));
    }
    let status = procfs::parse_status(&read_proc(pid, "status")?).ok_or(DumpError::Parse { pid, file: "status" })?;
    refuse_pending_signals(pid, "", &status)?;
    if !read_proc(pid, "timers")?.trim().is_empty() {
        return Err(DumpError::Unsupported {
            pid,
            what: "POSIX timers are not supported yet".into(),
        });
    }
    if status.seccomp != 0 {
        return Err(DumpError::Unsupported {
            pid,
            what: "seccomp filters are not supported yet".into(),
        });
    }
    let children = read_proc(pid, &format!("task/{pid}/children"))?;
    if !children.trim().is_empty() {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "has child processes ({}): process trees come with a later milestone",
                children.trim()
            ),
        });
    }
    files::collect(pid, shell_job)?;
    let maps = procfs::parse_maps(&read_proc(pid, "maps")?).ok_or(DumpError::Parse { pid, file: "maps" })?;
    mm::classify(pid, &maps)?;
    Ok(())
}

/// Dumps the process `opts.pid` into `opts.images`.
pub fn dump(opts: &DumpOpts) -> Result<DumpReport, DumpError> {
    let start = Instant::now();
    // Ctrl-C and friends wait until the task is let go (they are delivered when this returns).
    let _held = sys::HoldSignals::new();
    precheck(opts.pid, opts.shell_job)?;
    let dir = ImageDir::create(&opts.images)?;
    let threads = seize_threads(opts.pid)?;
    let frozen_at = Instant::now();
    let mut report = dump_frozen(&threads, &dir, opts)?; // on error every thread detaches on drop
    if opts.leave_running {
        for t in threads {
            t.detach()?;
        }
    } else {
        let _ = parasite::sys::kill(opts.pid, libc::SIGKILL);
        // The leader's exit is reported only after every other thread's: reap it last.
        for t in threads.into_iter().rev() {
            let _ = parasite::sys::waitpid(t.pid(), libc::__WALL);
            t.forget();
        }
    }
    report.frozen = frozen_at.elapsed();
    report.elapsed = start.elapsed();
    Ok(report)
}

/// The core image of one thread (without the process-wide `tc`), and what was read by injection.
fn thread_core(pid: i32, t: &Tracee, whole_process: bool) -> Result<(pb::CoreEntry, task::InjectedState), DumpError> {
    let tid = t.pid();
    let mut regs = t.regs()?;
    x86::fix_interrupted_syscall(&mut regs);
    let xstate = t.xstate()?;
    let sigmask = t.sigmask()?;
    let rseq = t.rseq()?;
    let (futex_rla, futex_rla_len) = sys::robust_list(tid).map_err(|e| DumpError::proc(tid, "get_robust_list", e))?;
    let injected = task::collect(t, whole_process)?;
    let status = procfs::parse_status(&read_proc(pid, &format!("task/{tid}/status"))?).ok_or(DumpError::Parse {
        pid,
        file: "task/TID/status",
    })?;
    refuse_pending_signals(pid, &format!("thread {tid}: "), &status)?;
    let comm = read_proc(pid, &format!("task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_owned();
    let creds = pb::CredsEntry {
        uid: status.uids[0],
        euid: status.uids[1],
        suid: status.uids[2],
        fsuid: status.uids[3],
        gid: status.gids[0],
        egid: status.gids[1],
        sgid: status.gids[2],
        fsgid: status.gids[3],
        cap_inh: caps(status.cap_inh),
        cap_prm: caps(status.cap_prm),
        cap_eff: caps(status.cap_eff),
        cap_bnd: caps(status.cap_bnd),
        secbits: 0,
        groups: status.groups.clone(),
        no_new_privs: Some(status.no_new_privs),
        cap_amb: caps(status.cap_amb),
        ..Default::default()
    };
    let tls = (12..15)
        .map(|n| pb::UserDescT {
            entry_number: n,
            read_exec_only: true,
            seg_not_present: true,
            ..Default::default()
        })
        .collect();
    let core = pb::CoreEntry {
        mtype: pb::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: injected.clear_tid_addr,
            gpregs: x86::regs_to_pb(&regs),
            fpregs: x86::xstate_to_pb(&xstate),
            tls,
        }),
        tc: None,
        ids: None,
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla,
            futex_rla_len: futex_rla_len as u32,
            blk_sigset: Some(sigmask),
            sas: Some(injected.altstack.clone()),
            creds: Some(creds),
            seccomp_mode: Some(pb::SeccompMode::Disabled as i32),
            comm: Some(comm),
            rseq_entry: rseq.map(|r| pb::RseqEntry {
                rseq_abi_pointer: r.rseq_abi_pointer,
                rseq_abi_size: r.rseq_abi_size,
                signature: r.signature,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        }),
    };
    Ok((core, injected))
}

/// Seizes every thread of `pid` (the main thread first), again until no new thread appears.
fn seize_threads(pid: i32) -> Result<Vec<Tracee>, DumpError> {
    let mut threads: Vec<Tracee> = Vec::new();
    loop {
        let dir = format!("/proc/{pid}/task");
        let mut tids: Vec<i32> = fs::read_dir(&dir)
            .map_err(|e| DumpError::proc(pid, &dir, e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable_by_key(|&t| (t != pid, t));
        let before = threads.len();
        for tid in tids {
            if !threads.iter().any(|t| t.pid() == tid) {
                threads.push(Tracee::seize(tid)?);
            }
        }
        if threads.len() == before {
            return Ok(threads);
        }
    }
}

/// Ids of files.img entries, one per mapped path and one per open file description.
#[derive(Default)]
struct FilesImage {
    entries: Vec<pb::FileEntry>,
    by_path: BTreeMap<String, u32>,
    tty_infos: Vec<pb::TtyInfoEntry>,
}

impl FilesImage {
    fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    fn reg(&mut self, path: &str, flags: u32, pos: u64, mnt_id: i32) -> u32 {
        let id = self.next_id();
        let meta = fs::metadata(path).ok();
        use std::os::unix::fs::MetadataExt;
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: pb::FownEntry::default(),
                name: path.to_owned(),
                mnt_id: (mnt_id >= 0).then_some(mnt_id),
                size: meta.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
                mode: meta.as_ref().map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        id
    }

    /// One REG entry per path, shared by mappings, exe, cwd and root.
    fn path(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.by_path.get(path) {
            return id;
        }
        let id = self.reg(path, 0, 0, -1);
        self.by_path.insert(path.to_owned(), id);
        id
    }

    fn pipe(&mut self, ino: u64, flags: u32) -> u32 {
        let id = self.next_id();
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Pipe as i32,
            id,
            pipe: Some(pb::PipeEntry {
                id,
                pipe_id: ino as u32,
                flags,
                fown: pb::FownEntry::default(),
            }),
            ..Default::default()
        });
        id
    }

    fn tty(&mut self, path: &str, rdev: u64, flags: u32) -> u32 {
        let regf = self.reg(path, flags, 0, -1);
        let id = self.next_id();
        let info_id = self.tty_infos.len() as u32 + 1;
        self.tty_infos.push(pb::TtyInfoEntry {
            id: info_id,
            r#type: pb::TtyType::Pty as i32,
            rdev: rdev as u32,
            pty: Some(pb::TtyPtyEntry {
                index: libc::minor(rdev),
            }),
            ..Default::default()
        });
        self.entries.push(pb::FileEntry {
            r#type: FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info_id,
                flags,
                fown: pb::FownEntry::default(),
                regf_id: Some(regf),
            }),
            ..Default::default()
        });
        id
    }
}

/// Object ids of the dumping process (`inventory.root_ids`) and of the task. CRIU's restore
/// tells which namespaces to create by comparing the two, and requires the task's fd table,
/// mm, fs and signal handlers to differ from the dumper's.
fn kobj_ids(pid: i32) -> (pb::TaskKobjIdsEntry, pb::TaskKobjIdsEntry) {
    use std::os::unix::fs::MetadataExt;
    const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];
    let mut next = 2; // 1 and 2 are the dumper's and the task's vm/files/fs/sighand ids
    let mut by_inode = BTreeMap::new();
    let mut id_of = |who: &str, kind: &str| -> Option<u32> {
        let ino = fs::metadata(format!("/proc/{who}/ns/{kind}")).ok()?.ino();
        Some(*by_inode.entry((kind.to_owned(), ino)).or_insert_with(|| {
            next += 1;
            next
        }))
    };
    let mut ids = |who: &str, own: u32| {
        let ns: Vec<Option<u32>> = KINDS.iter().map(|k| id_of(who, k)).collect();
        pb::TaskKobjIdsEntry {
            vm_id: own,
            files_id: own,
            fs_id: own,
            sighand_id: own,
            pid_ns_id: ns[0],
            net_ns_id: ns[1],
            ipc_ns_id: ns[2],
            uts_ns_id: ns[3],
            mnt_ns_id: ns[4],
            user_ns_id: ns[5],
            cgroup_ns_id: ns[6],
            time_ns_id: ns[7],
        }
    };
    let root = ids("self", 1);
    let task = ids(&pid.to_string(), 2);
    (root, task)
}

fn caps(v: u64) -> Vec<u32> {
    vec![v as u32, (v >> 32) as u32]
}

fn dump_frozen(threads: &[Tracee], dir: &ImageDir, opts: &DumpOpts) -> Result<DumpReport, DumpError> {
    let t = &threads[0];
    let pid = t.pid();
    let pid_u = pid as u32;
    let stat = procfs::parse_stat(&read_proc(pid, "stat")?).ok_or(DumpError::Parse { pid, file: "stat" })?;
    let status = procfs::parse_status(&read_proc(pid, "status")?).ok_or(DumpError::Parse { pid, file: "status" })?;
    if status.threads as usize != threads.len() {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "{} threads, {} frozen: threads changed while freezing",
                status.threads,
                threads.len()
            ),
        });
    }
    let maps = procfs::parse_maps(&read_proc(pid, "maps")?).ok_or(DumpError::Parse { pid, file: "maps" })?;
    let vmas = mm::classify(pid, &maps)?;
    let fdt: FdTable = files::collect(pid, opts.shell_job)?;
    let limits = procfs::parse_limits(&read_proc(pid, "limits")?).ok_or(DumpError::Parse { pid, file: "limits" })?;
    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv = procfs::parse_auxv(&fs::read(&auxv_path).map_err(|e| DumpError::proc(pid, &auxv_path, e))?);
    let exe = readlink_proc(pid, "exe")?;
    let cwd = readlink_proc(pid, "cwd")?;
    let root = readlink_proc(pid, "root")?;
    let personality = u32::from_str_radix(read_proc(pid, "personality")?.trim(), 16).unwrap_or(0);
    let oom_score_adj = read_proc(pid, "oom_score_adj")?.trim().parse().ok();
    let loginuid = read_proc(pid, "loginuid").ok().and_then(|s| s.trim().parse().ok());

    let mut cores = Vec::with_capacity(threads.len());
    for (i, th) in threads.iter().enumerate() {
        cores.push(thread_core(pid, th, i == 0)?);
    }
    let injected = cores[0].1.clone();
    let sigmask = cores[0].0.thread_core.as_ref().and_then(|c| c.blk_sigset).unwrap_or(0);

    // files.img: mapped files, exe, cwd, root, then the fds' open files.
    let mut files = FilesImage::default();
    let exe_id = files.path(&exe);
    let mut vma_entries = Vec::with_capacity(vmas.len());
    for v in &vmas {
        let mut e = v.entry.clone();
        if let Some(path) = &v.path {
            e.shmid = files.path(path).into();
        }
        vma_entries.push(e);
    }
    let cwd_id = files.path(&cwd);
    let root_id = files.path(&root);
    let file_ids: Vec<(u32, FdTypes)> = fdt
        .files
        .iter()
        .map(|f| match &f.kind {
            FileKind::Reg { path, .. } => (files.reg(path, f.flags, f.pos, f.mnt_id), FdTypes::Reg),
            FileKind::Tty { path, rdev } => (files.tty(path, *rdev, f.flags), FdTypes::Tty),
            FileKind::Pipe { ino } => (files.pipe(*ino, f.flags), FdTypes::Pipe),
        })
        .collect();
    let fdinfo: Vec<pb::FdinfoEntry> = fdt
        .fds
        .iter()
        .map(|fd| pb::FdinfoEntry {
            id: file_ids[fd.file].0,
            flags: if fd.cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: file_ids[fd.file].1 as i32,
            fd: fd.fd as u32,
            xattr_security_selinux: None,
        })
        .collect();

    // Pages first: the longest part.
    let mem_start = Instant::now();
    let mut pages = PageImageWriter::create(dir, ImageKind::Pagemap, pid.try_into().unwrap_or(0), 1)?;
    let page_stats = mm::dump_pages(pid, &vmas, &mut pages)?;
    pages.finish()?;
    let memdump_us = mem_start.elapsed().as_micros() as u32;

    let (root_ids, ids) = kobj_ids(pid);
    let mut main_core = cores[0].0.clone();
    main_core.tc = Some(pb::TaskCoreEntry {
        task_state: pb::TASK_ALIVE,
        exit_code: 0,
        personality,
        flags: stat.flags,
        blk_sigset: sigmask,
        comm: stat.comm.clone(),
        rlimits: Some(pb::TaskRlimitsEntry {
            rlimits: limits.iter().map(|&(cur, max)| pb::RlimitEntry { cur, max }).collect(),
        }),
        sigactions: injected.sigactions.clone(),
        timers: Some(pb::TaskTimersEntry {
            real: injected.itimers[0].clone(),
            virt: injected.itimers[1].clone(),
            prof: injected.itimers[2].clone(),
            posix: Vec::new(),
        }),
        loginuid,
        oom_score_adj,
        ..Default::default()
    });
    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: injected.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: auxv,
        vmas: vma_entries,
        ..Default::default()
    };
    let id = u64::from(pid_u);
    dir.write_all(ImageKind::Core, id, &[main_core])?;
    for (th, (core, _)) in threads.iter().zip(&cores).skip(1) {
        dir.write_all(ImageKind::Core, th.pid() as u64, std::slice::from_ref(core))?;
    }
    dir.write_all(ImageKind::Ids, id, std::slice::from_ref(&ids))?;
    dir.write_all(ImageKind::Mm, id, &[mm])?;
    dir.write_all(
        ImageKind::Fs,
        id,
        &[pb::FsEntry {
            cwd_id,
            root_id,
            umask: Some(status.umask),
        }],
    )?;
    dir.write_all(ImageKind::Fdinfo, ids.files_id.into(), &fdinfo)?;
    dir.write_all(ImageKind::Files, 0, &files.entries)?;
    if !files.tty_infos.is_empty() {
        dir.write_all(ImageKind::TtyInfo, 0, &files.tty_infos)?;
    }
    dir.write_all(ImageKind::Seccomp, 0, &[pb::SeccompEntry::default()])?;
    dir.write_all(
        ImageKind::Pstree,
        0,
        &[pb::PstreeEntry {
            pid: pid_u,
            ppid: 0,
            pgid: stat.pgid,
            sid: stat.sid,
            threads: threads.iter().map(|t| t.pid() as u32).collect(),
        }],
    )?;
    let elapsed_us = |t: Instant| t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    dir.write_all(
        ImageKind::StatsDump,
        0,
        &[pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 0,
                frozen_time: elapsed_us(mem_start),
                memdump_time: memdump_us,
                memwrite_time: memdump_us,
                pages_scanned: page_stats.scanned,
                pages_skipped_parent: 0,
                pages_written: page_stats.written,
                pages_lazy: 0,
                ..Default::default()
            }),
            restore: None,
        }],
    )?;
    let uptime_us = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1e6) as u64);
    // Before the task is killed, everything must be durable (the inventory, whose presence marks
    // a complete dump, last). A task left running needs no such guarantee.
    let durable = !opts.leave_running;
    if durable {
        dir.sync()?;
    }
    dir.write_all(
        ImageKind::Inventory,
        0,
        &[pb::InventoryEntry {
            img_version: crate::image::magic::IMAGES_V1_1,
            fdinfo_per_id: Some(true),
            root_ids: Some(root_ids),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: uptime_us,
            ..Default::default()
        }],
    )?;
    if durable {
        dir.sync()?;
    }
    Ok(DumpReport {
        pid,
        vmas: vmas.len(),
        pages_scanned: page_stats.scanned,
        pages_written: page_stats.written,
        frozen: Duration::ZERO,
        elapsed: Duration::ZERO,
    })
}
