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
    let mut out = Vec::with_capacity(maps.len());
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
            "[vdso]" => (
                st::REGULAR | st::VDSO | st::ANON_PRIVATE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                None,
                false,
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

/// Largest run read and written at once: bounds the dumper's memory.
pub const CHUNK: usize = 4 << 20;

/// Counters of a memory dump.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageStats {
    pub scanned: u64,
    pub written: u64,
}

/// Writes the pages of every saved mapping: present or swapped pages, and for private file
/// mappings only the pages the task wrote (no longer the file's).
pub fn dump_pages(pid: i32, vmas: &[Vma], out: &mut PageImageWriter) -> Result<PageStats, DumpError> {
    let pagemap_path = format!("/proc/{pid}/pagemap");
    let pagemap = File::open(&pagemap_path).map_err(|e| DumpError::proc(pid, &pagemap_path, e))?;
    let mem = RemoteMem::open(pid)?;
    let mut buf = vec![0u8; CHUNK];
    let mut entries = vec![0u8; 8 * 65536];
    let mut stats = PageStats::default();
    for v in vmas.iter().filter(|v| v.dump_pages) {
        let anon = v.path.is_none();
        let mut addr = v.entry.start;
        let mut run: Option<(u64, u64)> = None; // (start, pages)
        while addr < v.entry.end {
            let pages = ((v.entry.end - addr) / PAGE_SIZE).min(65536) as usize;
            let bytes = &mut entries[..8 * pages];
            pagemap
                .read_exact_at(bytes, addr / PAGE_SIZE * 8)
                .map_err(|e| DumpError::proc(pid, &pagemap_path, e))?;
            for (i, word) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                let page = addr + i as u64 * PAGE_SIZE;
                let wanted = e & (PM_PRESENT | PM_SWAPPED) != 0 && (anon || e & PM_FILE == 0);
                stats.scanned += 1;
                match (&mut run, wanted) {
                    (Some((start, n)), true) if *start + *n * PAGE_SIZE == page && (*n as usize) * 4096 < CHUNK => {
                        *n += 1
                    }
                    (_, true) => {
                        if let Some((s, n)) = run.take() {
                            stats.written += write_run(&mem, v.readable, s, n, &mut buf, out)?;
                        }
                        run = Some((page, 1));
                    }
                    (_, false) => {
                        if let Some((s, n)) = run.take() {
                            stats.written += write_run(&mem, v.readable, s, n, &mut buf, out)?;
                        }
                    }
                }
            }
            addr += pages as u64 * PAGE_SIZE;
        }
        if let Some((s, n)) = run.take() {
            stats.written += write_run(&mem, v.readable, s, n, &mut buf, out)?;
        }
    }
    Ok(stats)
}

fn write_run(
    mem: &RemoteMem,
    readable: bool,
    start: u64,
    pages: u64,
    buf: &mut [u8],
    out: &mut PageImageWriter,
) -> Result<u64, DumpError> {
    let len = (pages * PAGE_SIZE) as usize;
    let data = &mut buf[..len];
    if readable {
        mem.read(start, data)?;
    } else {
        mem.read_forced(start, data)?;
    }
    out.write_run(start, data)?;
    Ok(pages)
}
