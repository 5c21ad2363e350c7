//! The address space of a task: its mappings (from `/proc/PID/maps`) and the pages worth
//! saving (from `/proc/PID/pagemap`), streamed from `process_vm_readv` into the pages image.

use std::fs::File;
use std::os::unix::fs::FileExt;

use parasite::mem::RemoteMem;

use super::DumpError;
use crate::image::pages::{PageImageWriter, PAGE_SIZE};
use crate::image::pb::{vma_status as st, VmaEntry};
use crate::procfs::MapsEntry;

const PROT_READ: u32 = 1;
const PROT_WRITE: u32 = 2;
const PROT_EXEC: u32 = 4;
const MAP_SHARED: u32 = 0x01;
const MAP_PRIVATE: u32 = 0x02;
const MAP_ANONYMOUS: u32 = 0x20;
const MAP_GROWSDOWN: u32 = 0x100;

/// A mapping and how it is saved.
#[derive(Clone, Debug)]
pub struct Vma {
    pub entry: VmaEntry,
    /// Backing file path, for file mappings.
    pub path: Option<String>,
    /// The backing file was unlinked: it is saved with the dump (a ghost file).
    pub unlinked: bool,
    /// Whether page contents are saved (private memory, not vdso/vvar/vsyscall).
    pub dump_pages: bool,
    /// Whether the task itself may read it (otherwise read through /proc/PID/mem).
    pub readable: bool,
}

/// Classifies the lines of `/proc/PID/maps`; unsupported mappings are errors.
pub fn classify(pid: i32, maps: &[MapsEntry]) -> Result<Vec<Vma>, DumpError> {
    let mut out: Vec<Vma> = Vec::with_capacity(maps.len());
    for m in maps {
        let prot = if m.read { PROT_READ } else { 0 }
            | if m.write { PROT_WRITE } else { 0 }
            | if m.exec { PROT_EXEC } else { 0 };
        let share = if m.shared { MAP_SHARED } else { MAP_PRIVATE };
        let unsupported = |what: &str| DumpError::Unsupported {
            pid,
            what: format!("mapping {:#x}-{:#x} {}: {what}", m.start, m.end, m.path),
        };
        let (status, flags, path, dump_pages) = match m.path.as_str() {
            "[vsyscall]" => (
                st::VSYSCALL | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                None,
                false,
            ),
            // The vdso's pages are saved as CRIU does (its restore compares them with the running
            // kernel's vdso); ours moves the running kernel's vdso into place instead.
            "[vdso]" => (
                st::REGULAR | st::VDSO | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                None,
                true,
            ),
            "[vvar]" | "[vvar_vclock]" => (
                st::REGULAR | st::VVAR | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                None,
                false,
            ),
            "[heap]" => (
                st::REGULAR | st::HEAP | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                None,
                true,
            ),
            "[stack]" => (
                st::REGULAR | st::STACK | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN,
                None,
                true,
            ),
            p if p.is_empty() || (p.starts_with("[anon:") && p.ends_with(']')) => {
                if m.shared {
                    return Err(unsupported("shared anonymous memory is not supported yet"));
                }
                (st::REGULAR | st::ANON_PRIVATE, MAP_PRIVATE | MAP_ANONYMOUS, None, true)
            }
            // MAP_SHARED|MAP_ANONYMOUS: a shared-memory object, saved once for all its
            // mappings (by its inode, in pagemap-shmem-INO.img).
            p if m.shared && (p == "/dev/zero (deleted)" || p.starts_with("[anon_shmem:")) => {
                (st::REGULAR | st::ANON_SHARED, MAP_SHARED | MAP_ANONYMOUS, None, false)
            }
            // A SysV shared memory segment (of the host's IPC namespace: it outlives the task,
            // and its contents stay in it; the restore attaches it again). Its inode is its id.
            p if p.starts_with("/SYSV") && m.shared => {
                (st::REGULAR | st::SYSVIPC | st::ANON_SHARED, MAP_SHARED, None, false)
            }
            // An AIO ring (io_setup): its pages go with the task's, its context in mm.aios.
            "/[aio] (deleted)" if m.shared => (st::REGULAR | st::AIORING, MAP_SHARED | MAP_ANONYMOUS, None, true),
            // A memfd: shared, saved with the object; private, the pages the task wrote.
            p if p.starts_with("/memfd:") && p.ends_with(" (deleted)") => {
                let status = st::REGULAR | st::MEMFD | if m.shared { st::FILE_SHARED } else { st::FILE_PRIVATE };
                (status, share, None, !m.shared)
            }
            p if p.starts_with('/') && m.inode != 0 => {
                if p.starts_with("/SYSV") || p.starts_with("/dev/zero") {
                    return Err(unsupported(
                        "private SysV and zero-device mappings are not supported yet",
                    ));
                }
                let status = if m.shared {
                    st::REGULAR | st::FILE_SHARED
                } else {
                    st::REGULAR | st::FILE_PRIVATE
                };
                // An unlinked file keeps its old name (saved as a ghost file).
                let name = p.strip_suffix(" (deleted)").unwrap_or(p);
                (status, share, Some(name.to_owned()), !m.shared)
            }
            _ => return Err(unsupported("this kind of mapping is not supported")),
        };
        // [vvar_vclock] (kernel 6.13+) is recorded as part of the [vvar] before it, as CRIU does.
        if m.path == "[vvar_vclock]" {
            if let Some(prev) = out
                .last_mut()
                .filter(|v| v.entry.status & st::VVAR != 0 && v.entry.end == m.start)
            {
                prev.entry.end = m.end;
                continue;
            }
        }
        out.push(Vma {
            entry: VmaEntry {
                start: m.start,
                end: m.end,
                pgoff: if path.is_some() || status & (st::ANON_SHARED | st::MEMFD) != 0 {
                    m.offset
                } else {
                    0
                },
                // The object's inode for now; a memfd's becomes its files.img id.
                shmid: if status & (st::ANON_SHARED | st::MEMFD) != 0 {
                    m.inode
                } else {
                    0
                },
                prot,
                flags,
                status,
                fd: -1,
                madv: None,
                fdflags: None,
            },
            unlinked: path.is_some() && m.path.ends_with(" (deleted)"),
            path,
            dump_pages,
            readable: m.read,
        });
    }
    Ok(out)
}

const MAP_LOCKED: u32 = 0x2000;
const MAP_NORESERVE: u32 = 0x4000;

/// What `VmFlags` of `/proc/PID/smaps` say that `maps` does not: the madvise(2) advice a
/// mapping was given (kept in `madv` as bits `1 << MADV_*`, CRIU's encoding) and whether it is
/// locked or reserves no swap (`MAP_LOCKED`/`MAP_NORESERVE` in `flags`). Lock-on-fault has no
/// place in the image: refused, rather than restored locked or unlocked.
pub fn add_vmflags(pid: i32, vmas: &mut [VmaEntry], smaps: &[(MapsEntry, Vec<[u8; 2]>)]) -> Result<(), DumpError> {
    const ADVICE: &[(&[u8; 2], i32)] = &[
        (b"sr", libc::MADV_SEQUENTIAL),
        (b"rr", libc::MADV_RANDOM),
        (b"dc", libc::MADV_DONTFORK),
        (b"dd", libc::MADV_DONTDUMP),
        (b"mg", libc::MADV_MERGEABLE),
        (b"hg", libc::MADV_HUGEPAGE),
        (b"nh", libc::MADV_NOHUGEPAGE),
        (b"wf", libc::MADV_WIPEONFORK),
    ];
    for v in vmas.iter_mut() {
        // The kernel's own mappings carry flags of their own (vdso, vvar): nothing to give back.
        if v.status & (st::VDSO | st::VVAR | st::VSYSCALL) != 0 {
            continue;
        }
        let Some((_, flags)) = smaps.iter().find(|(m, _)| m.start == v.start) else {
            continue;
        };
        let has = |code: &[u8; 2]| flags.iter().any(|f| f == code);
        if has(b"lf") {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "mapping {:#x}-{:#x} is locked on fault (mlock2 MLOCK_ONFAULT), which images cannot hold",
                    v.start, v.end
                ),
            });
        }
        let madv = ADVICE
            .iter()
            .filter(|(code, _)| has(code))
            .fold(0u64, |bits, &(_, advice)| bits | 1 << advice);
        v.madv = (madv != 0).then_some(madv);
        if has(b"lo") {
            v.flags |= MAP_LOCKED;
        }
        if has(b"nr") {
            v.flags |= MAP_NORESERVE;
        }
        // A shared file mapping may be made writable later (mprotect) only if its file was
        // opened for writing (VM_MAYWRITE, "mw"): the open mode goes in `fdflags`, as CRIU's.
        if v.status & st::FILE_SHARED != 0 {
            v.fdflags = Some(if has(b"mw") { libc::O_RDWR } else { libc::O_RDONLY } as u32);
        }
    }
    Ok(())
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// The page is mapped by this process only (not shared copy-on-write after a fork).
const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;

/// Bytes read by one process_vm_readv call (a window of the pages image).
pub const CHUNK: u64 = 4 << 20;

/// Counters of a memory dump.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageStats {
    pub scanned: u64,
    pub written: u64,
}

/// A run of saved pages: address, length, and whether it is read through /proc/PID/mem: the
/// task cannot read it itself (PROT_NONE...), or its pages are shared copy-on-write with
/// another process (process_vm_readv pins the pages it reads, and the kernel unshares a
/// shared anonymous page it pins: a dump would double the memory of a forked tree, for good
/// if it is left running; /proc/PID/mem reads without pinning).
#[derive(Clone, Copy, Debug)]
struct Run {
    addr: u64,
    len: u64,
    forced: bool,
}

/// Finds the pages to save: present or swapped pages, and for private file mappings only the
/// pages the task wrote (no longer the file's); all of the vdso. Runs never cross a mapping
/// boundary.
fn scan(pid: i32, vmas: &[Vma], stats: &mut PageStats) -> Result<Vec<Run>, DumpError> {
    let pagemap_path = format!("/proc/{pid}/pagemap");
    let pagemap = File::open(&pagemap_path).map_err(|e| DumpError::proc(pid, &pagemap_path, e))?;
    let mut entries = vec![0u8; 8 * 65536];
    let mut runs: Vec<Run> = Vec::new();
    for v in vmas.iter().filter(|v| v.dump_pages) {
        let anon = v.path.is_none() && v.entry.status & st::MEMFD == 0;
        // Every vdso page, touched or not: CRIU's restore checks the whole image.
        let whole = v.entry.status & st::VDSO != 0;
        let mut addr = v.entry.start;
        let first_run = runs.len();
        while addr < v.entry.end {
            let pages = ((v.entry.end - addr) / PAGE_SIZE).min(65536) as usize;
            let bytes = &mut entries[..8 * pages];
            pagemap
                .read_exact_at(bytes, addr / PAGE_SIZE * 8)
                .map_err(|e| DumpError::proc(pid, &pagemap_path, e))?;
            stats.scanned += pages as u64;
            for (i, word) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                if !whole && (e & (PM_PRESENT | PM_SWAPPED) == 0 || (!anon && e & PM_FILE != 0)) {
                    continue;
                }
                let page = addr + i as u64 * PAGE_SIZE;
                let in_this_vma = runs.len() > first_run;
                let shared = e & PM_PRESENT != 0 && e & PM_FILE == 0 && e & PM_MMAP_EXCLUSIVE == 0;
                let forced = !v.readable || shared;
                match runs.last_mut() {
                    Some(r) if in_this_vma && r.addr + r.len == page && r.forced == forced => r.len += PAGE_SIZE,
                    _ => runs.push(Run {
                        addr: page,
                        len: PAGE_SIZE,
                        forced,
                    }),
                }
                stats.written += 1;
            }
            addr += pages as u64 * PAGE_SIZE;
        }
    }
    Ok(runs)
}

/// Writes the pages of every saved mapping. On tmpfs, with one copy: the pages image is mapped
/// and process_vm_readv reads the task's memory straight into it, window by window, on two
/// threads, each window unmapped from us once full (so our resident memory stays small).
/// Elsewhere (ext4 writes back mapped pages far slower than written ones), reading into a few
/// rotating buffers on this thread and writing them on a second one.
pub fn dump_pages(pid: i32, vmas: &[Vma], out: &mut PageImageWriter) -> Result<PageStats, DumpError> {
    let mut stats = PageStats::default();
    let runs = scan(pid, vmas, &mut stats)?;
    let total: u64 = runs.iter().map(|r| r.len).sum();
    if total == 0 {
        return Ok(stats);
    }
    // Pieces of at most CHUNK bytes, grouped into windows of at most CHUNK bytes.
    let mut windows: Vec<Vec<Run>> = vec![Vec::new()];
    let mut fill = 0;
    for r in &runs {
        let mut at = r.addr;
        while at < r.addr + r.len {
            if fill == CHUNK {
                windows.push(Vec::new());
                fill = 0;
            }
            let len = (r.addr + r.len - at).min(CHUNK - fill);
            if let Some(w) = windows.last_mut() {
                w.push(Run {
                    addr: at,
                    len,
                    forced: r.forced,
                });
            }
            fill += len;
            at += len;
        }
    }
    let mem = RemoteMem::open(pid)?;
    let entries: Vec<(u64, u64)> = runs.iter().map(|r| (r.addr, r.len)).collect();
    if out.on_tmpfs() {
        dump_mapped(pid, &mem, &windows, total, out)?;
        out.commit_mapped(&entries)?;
    } else {
        dump_written(pid, &mem, &windows, out)?;
        out.record_runs(&entries)?;
    }
    Ok(stats)
}

fn dump_mapped(
    pid: i32,
    mem: &RemoteMem,
    windows: &[Vec<Run>],
    total: u64,
    out: &mut PageImageWriter,
) -> Result<(), DumpError> {
    let mut map = out.map_append(total)?;
    let mut slices: Vec<Window<'_>> = Vec::with_capacity(windows.len());
    let mut rest = map.as_mut_slice();
    for w in windows {
        let len: u64 = w.iter().map(|r| r.len).sum();
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len as usize);
        slices.push((head, w));
        rest = tail;
    }
    let (even, odd): (Vec<_>, Vec<_>) = slices.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let fill_all = |part: Vec<(usize, Window<'_>)>| -> Result<(), DumpError> {
        for (_, (buf, pieces)) in part {
            read_window(mem, pieces, buf)?;
            crate::sys::release_mapped(buf);
        }
        Ok(())
    };
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| fill_all(odd));
        let mine = fill_all(even);
        (
            mine,
            other.join().unwrap_or_else(|_| {
                Err(DumpError::Unsupported {
                    pid,
                    what: "page reader panicked".into(),
                })
            }),
        )
    });
    a?;
    b
}

/// Buffers in flight between the reader and the writer.
const BUFFERS: usize = 3;

fn dump_written(pid: i32, mem: &RemoteMem, windows: &[Vec<Run>], out: &mut PageImageWriter) -> Result<(), DumpError> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        let _ = free_tx.send(vec![0u8; CHUNK as usize]);
    }
    let writer_gone = || DumpError::Unsupported {
        pid,
        what: "the page writer stopped".into(),
    };
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<(), DumpError> {
            for (buf, len) in full_rx {
                out.append_data(&buf[..len])?;
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let read = (|| -> Result<(), DumpError> {
            for w in windows {
                let len: u64 = w.iter().map(|r| r.len).sum();
                let mut buf = free_rx.recv().map_err(|_| writer_gone())?;
                read_window(mem, w, &mut buf[..len as usize])?;
                full_tx.send((buf, len as usize)).map_err(|_| writer_gone())?;
            }
            Ok(())
        })();
        drop(full_tx);
        let wrote = writer.join().unwrap_or_else(|_| {
            Err(DumpError::Unsupported {
                pid,
                what: "page writer panicked".into(),
            })
        });
        // A writer failure (disk full...) is the cause of a reader's "writer stopped": report it.
        wrote?;
        read
    })
}

/// A window of the mapped pages image and the pieces of memory that fill it.
type Window<'a> = (&'a mut [u8], &'a [Run]);

fn read_window(mem: &RemoteMem, pieces: &[Run], buf: &mut [u8]) -> Result<(), DumpError> {
    if !pieces.iter().any(|p| p.forced) {
        let ranges: Vec<(u64, usize)> = pieces.iter().map(|p| (p.addr, p.len as usize)).collect();
        mem.read_many(&ranges, buf)?;
        return Ok(());
    }
    let mut off = 0;
    for p in pieces {
        let dst = &mut buf[off..off + p.len as usize];
        if p.forced {
            mem.read_forced(p.addr, dst)?;
        } else {
            mem.read(p.addr, dst)?;
        }
        off += p.len as usize;
    }
    Ok(())
}

/// One shared memory object of the tree: a path through which to read it (a mapping's
/// map_files entry, or an fd), the task that path belongs to, and the size to save.
#[derive(Clone, Debug)]
struct SharedObject {
    pid: i32,
    path: String,
    size: u64,
}

/// Reads `file` at `at` into `buf` until it is full or the file ends (the rest is left as it
/// is).
fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The shared anonymous memory objects (MAP_SHARED|MAP_ANONYMOUS) of the tree, by inode. Each
/// is saved once, whichever tasks map it, from the object itself: pages any task wrote are
/// found by SEEK_DATA, none is faulted in.
#[derive(Debug, Default)]
pub struct SharedMemory {
    by_inode: std::collections::BTreeMap<u64, SharedObject>,
}

impl SharedMemory {
    /// Notes the shared anonymous mappings of task `pid`.
    pub fn add(&mut self, pid: i32, vmas: &[Vma]) {
        let shared_anon = |v: &&Vma| v.entry.status & st::ANON_SHARED != 0 && v.entry.status & st::SYSVIPC == 0;
        for v in vmas.iter().filter(shared_anon) {
            let e = &v.entry;
            let obj = self.by_inode.entry(e.shmid).or_insert(SharedObject {
                pid,
                path: format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end),
                size: 0,
            });
            obj.size = obj.size.max(e.pgoff + (e.end - e.start));
        }
    }

    /// Notes a memfd (inode `ino`, `size` bytes), readable at `path` (of task `pid`).
    pub fn add_memfd(&mut self, ino: u64, pid: i32, path: String, size: u64) {
        self.by_inode.entry(ino).or_insert(SharedObject { pid, path, size });
    }

    /// Writes `pagemap-shmem-INO.img` and its pages (`pages-N.img`, N from `first_pages_id`)
    /// for every object.
    pub fn dump(&self, dir: &crate::image::ImageDir, first_pages_id: u32) -> Result<PageStats, DumpError> {
        let mut stats = PageStats::default();
        for (n, (&ino, obj)) in self.by_inode.iter().enumerate() {
            let path = &obj.path;
            let file = File::open(path).map_err(|e| DumpError::proc(obj.pid, path, e))?;
            let extents = crate::sys::data_extents(&file, obj.size).map_err(|e| DumpError::proc(obj.pid, path, e))?;
            let mut out = PageImageWriter::create(
                dir,
                crate::image::ImageKind::ShmemPagemap,
                ino,
                first_pages_id + n as u32,
            )?;
            let mut buf = Vec::new();
            // Whole pages: the last one of an object whose size is not a multiple of a page
            // (a memfd's may be any) is read up to the end of the file and padded with zeros.
            let end = obj.size.next_multiple_of(PAGE_SIZE);
            for (from, to) in extents {
                let (from, to) = (from / PAGE_SIZE * PAGE_SIZE, to.next_multiple_of(PAGE_SIZE).min(end));
                let mut at = from;
                while at < to {
                    let len = (to - at).min(CHUNK) as usize;
                    buf.clear();
                    buf.resize(len, 0);
                    read_up_to(&file, &mut buf, at).map_err(|e| DumpError::proc(obj.pid, path, e))?;
                    out.write_run(at, &buf)?;
                    stats.written += (len as u64) / PAGE_SIZE;
                    at += len as u64;
                }
            }
            stats.scanned += obj.size / PAGE_SIZE;
            out.finish()?;
        }
        Ok(stats)
    }
}
