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
            p if p.starts_with('/') && m.inode != 0 => {
                if p.ends_with(" (deleted)") {
                    return Err(unsupported("the mapped file was unlinked (not supported yet)"));
                }
                if p.starts_with("/memfd:") || p.starts_with("/SYSV") || p.starts_with("/dev/zero") {
                    return Err(unsupported(
                        "memfd, SysV and shared-zero mappings are not supported yet",
                    ));
                }
                let status = if m.shared {
                    st::REGULAR | st::FILE_SHARED
                } else {
                    st::REGULAR | st::FILE_PRIVATE
                };
                (status, share, Some(p.to_owned()), !m.shared)
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
                pgoff: if path.is_some() { m.offset } else { 0 },
                shmid: 0,
                prot,
                flags,
                status,
                fd: -1,
                madv: None,
                fdflags: None,
            },
            path,
            dump_pages,
            readable: m.read,
        });
    }
    Ok(out)
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Size of one batch of pages read and written at once; a few are in flight.
pub const CHUNK: usize = 4 << 20;
const BUFFERS: usize = 3;

/// Counters of a memory dump.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageStats {
    pub scanned: u64,
    pub written: u64,
}

/// Runs of pages gathered into one buffer: read with one process_vm_readv, written with one write.
struct Batch {
    buf: Vec<u8>,
    /// (address, length) of each run, in buffer order.
    runs: Vec<(u64, u64)>,
    /// Per run: the task cannot read it itself (PROT_NONE...), so it is read through /proc/PID/mem.
    forced: Vec<bool>,
    used: usize,
}

impl Batch {
    fn reset(&mut self) {
        self.runs.clear();
        self.forced.clear();
        self.used = 0;
    }

    /// Adds a page; `split` starts a new run even if it follows the last one (a new mapping).
    fn add_page(&mut self, page: u64, forced: bool, split: bool) {
        match (self.runs.last_mut(), self.forced.last()) {
            (Some((start, len)), Some(&f)) if !split && *start + *len == page && f == forced => *len += PAGE_SIZE,
            _ => {
                self.runs.push((page, PAGE_SIZE));
                self.forced.push(forced);
            }
        }
        self.used += PAGE_SIZE as usize;
    }

    fn fill(&mut self, mem: &RemoteMem) -> Result<(), DumpError> {
        let ranges: Vec<(u64, usize)> = self.runs.iter().map(|&(a, l)| (a, l as usize)).collect();
        if !self.forced.contains(&true) {
            mem.read_many(&ranges, &mut self.buf[..self.used])?;
            return Ok(());
        }
        let mut off = 0;
        for (&(addr, len), &forced) in ranges.iter().zip(&self.forced) {
            let dst = &mut self.buf[off..off + len];
            if forced {
                mem.read_forced(addr, dst)?;
            } else {
                mem.read(addr, dst)?;
            }
            off += len;
        }
        Ok(())
    }
}

/// Writes the pages of every saved mapping: present or swapped pages, and for private file
/// mappings only the pages the task wrote (no longer the file's). Reading (this thread) and
/// writing (a second thread) overlap, on the two CPUs.
pub fn dump_pages(pid: i32, vmas: &[Vma], out: &mut PageImageWriter) -> Result<PageStats, DumpError> {
    let pagemap_path = format!("/proc/{pid}/pagemap");
    let pagemap = File::open(&pagemap_path).map_err(|e| DumpError::proc(pid, &pagemap_path, e))?;
    let mem = RemoteMem::open(pid)?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(BUFFERS);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Batch>();
    for _ in 0..BUFFERS {
        let _ = free_tx.send(Batch {
            buf: vec![0u8; CHUNK],
            runs: Vec::new(),
            forced: Vec::new(),
            used: 0,
        });
    }
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), DumpError> {
            for batch in full_rx {
                out.write_runs(&batch.runs, &batch.buf[..batch.used])?;
                let _ = free_tx.send(batch);
            }
            Ok(())
        });
        let read = scan_and_read(pid, vmas, &pagemap, &pagemap_path, &mem, &full_tx, &free_rx);
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

fn scan_and_read(
    pid: i32,
    vmas: &[Vma],
    pagemap: &File,
    pagemap_path: &str,
    mem: &RemoteMem,
    full: &std::sync::mpsc::SyncSender<Batch>,
    free: &std::sync::mpsc::Receiver<Batch>,
) -> Result<PageStats, DumpError> {
    let writer_gone = || DumpError::Unsupported {
        pid,
        what: "the page writer stopped".into(),
    };
    let mut stats = PageStats::default();
    let mut batch = free.recv().map_err(|_| writer_gone())?;
    let mut entries = vec![0u8; 8 * 65536];
    for v in vmas.iter().filter(|v| v.dump_pages) {
        let anon = v.path.is_none();
        let mut addr = v.entry.start;
        let mut first = true;
        while addr < v.entry.end {
            let pages = ((v.entry.end - addr) / PAGE_SIZE).min(65536) as usize;
            let bytes = &mut entries[..8 * pages];
            pagemap
                .read_exact_at(bytes, addr / PAGE_SIZE * 8)
                .map_err(|e| DumpError::proc(pid, pagemap_path, e))?;
            stats.scanned += pages as u64;
            for (i, word) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                if e & (PM_PRESENT | PM_SWAPPED) == 0 || (!anon && e & PM_FILE != 0) {
                    continue;
                }
                let page = addr + i as u64 * PAGE_SIZE;
                if batch.used == CHUNK {
                    batch.fill(mem)?;
                    full.send(batch).map_err(|_| writer_gone())?;
                    batch = free.recv().map_err(|_| writer_gone())?;
                    batch.reset();
                }
                batch.add_page(page, !v.readable, first);
                first = false;
                stats.written += 1;
            }
            addr += pages as u64 * PAGE_SIZE;
        }
    }
    if batch.used > 0 {
        batch.fill(mem)?;
        full.send(batch).map_err(|_| writer_gone())?;
    }
    Ok(stats)
}
