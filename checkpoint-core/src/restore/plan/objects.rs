//! The tree-wide objects of a checkpoint, read and checked: tty-info, seccomp filters, the UTS
//! names, what pipes and FIFOs held, the shared memory objects and their pages.

use std::collections::BTreeMap;

use super::{check_pages_file, invalid, Body, PipeData, SharedObject, TaskNode};
use crate::fds::tty::{pty_end, PtyEnd};
use crate::image::pages::{Pagemap, PAGE_SIZE};
use crate::image::pb;
use crate::image::{ImageDir, ImageKind};
use crate::restore::RestoreError;

/// tty-info.img, and the ptys whose master is in the tree.
pub struct Ttys {
    pub infos: BTreeMap<u32, pb::TtyInfoEntry>,
    pub masters: std::collections::BTreeSet<u32>,
}

impl Ttys {
    pub(super) fn load(dir: &ImageDir, files: &BTreeMap<u32, pb::FileEntry>) -> Result<Ttys, RestoreError> {
        let infos: BTreeMap<u32, pb::TtyInfoEntry> = dir
            .read_all::<pb::TtyInfoEntry>(ImageKind::TtyInfo, 0)?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let masters = files
            .values()
            .filter_map(|f| infos.get(&f.tty.as_ref()?.tty_info_id))
            .filter(|i| pty_end(i) == Some(PtyEnd::Master))
            .filter_map(|i| Some(i.pty.as_ref()?.index))
            .collect();
        Ok(Ttys { infos, masters })
    }
}

/// Checks seccomp.img (programs of whole instructions, at most 4096 each; each filter points
/// only at an earlier one) and that every thread's chain exists.
pub(super) fn check_seccomp(filters: &[pb::SeccompFilter], tasks: &[TaskNode]) -> Result<(), RestoreError> {
    for (i, f) in filters.iter().enumerate() {
        if f.filter.is_empty()
            || f.filter.len() % 8 != 0
            || f.filter.len() > 8 * 4096
            || f.prev.is_some_and(|p| p as usize >= i)
        {
            return Err(invalid(format!("seccomp.img: filter {i} is malformed")));
        }
    }
    for t in tasks {
        let Body::Alive(plan) = &t.body else { continue };
        let threads = std::iter::once((plan.pid, &plan.core)).chain(plan.threads.iter().map(|(tid, c)| (*tid, c)));
        for (tid, core) in threads {
            let Some(tc) = &core.thread_core else { continue };
            if tc.seccomp_mode == Some(pb::SeccompMode::Filter as i32)
                && tc
                    .seccomp_filter
                    .and_then(|n| crate::model::seccomp::chain(filters, n))
                    .is_none()
            {
                return Err(invalid(format!(
                    "core-{tid}.img: its seccomp filter is not in seccomp.img"
                )));
            }
        }
    }
    Ok(())
}

/// Largest pipe content accepted from an image (the kernel's default pipe-max-size is 1 MiB).
const MAX_PIPE_DATA: u32 = 64 << 20;

/// The UTS namespace of the tree when it is not the dumper's: one for the whole tree (nested
/// ones are refused), its names from utsns-ID.img.
pub(super) fn own_uts(
    dir: &ImageDir,
    inv: &pb::InventoryEntry,
    tasks: &[TaskNode],
) -> Result<Option<pb::UtsnsEntry>, RestoreError> {
    let host = inv.root_ids.as_ref().and_then(|r| r.uts_ns_id);
    let mut ids = tasks.iter().filter_map(|t| match &t.body {
        Body::Alive(p) => Some((p.pid, p.uts_ns_id)),
        Body::Zombie { .. } => None,
    });
    let Some((root, root_uts)) = ids.next() else {
        return Ok(None);
    };
    if let Some((pid, _)) = ids.find(|(_, u)| *u != root_uts) {
        return Err(RestoreError::Unsupported {
            pid,
            what: "is in another UTS namespace than the root of the tree (nested namespaces are not supported)".into(),
        });
    }
    match root_uts.filter(|u| Some(*u) != host) {
        None => Ok(None),
        Some(id) => dir
            .read_one::<pb::UtsnsEntry>(ImageKind::Utsns, id.into())?
            .map(Some)
            .ok_or_else(|| invalid(format!("pid {root}: utsns-{id}.img is missing"))),
    }
}

/// pipes-data.img or fifo-data.img: what each pipe held, checked to fit in it.
pub(super) fn load_pipe_data(dir: &ImageDir, kind: ImageKind) -> Result<BTreeMap<u32, PipeData>, RestoreError> {
    let mut out = BTreeMap::new();
    if let Some(mut rd) = dir.reader(kind, 0)? {
        while let Some(e) = rd.next_entry::<pb::PipeDataEntry>()? {
            if e.bytes > MAX_PIPE_DATA || e.size.is_some_and(|s| s > MAX_PIPE_DATA || s < e.bytes) {
                return Err(invalid(format!(
                    "{}: pipe {}: {} bytes in a pipe of {:?}",
                    rd.path().display(),
                    e.pipe_id,
                    e.bytes,
                    e.size
                )));
            }
            let data = rd.read_payload(e.bytes.into())?;
            out.insert(e.pipe_id, PipeData { data, capacity: e.size });
        }
    }
    Ok(out)
}

/// The shared memory objects the tasks map, with their pages, checked to lie inside them.
pub(super) fn load_shmem(
    dir: &ImageDir,
    tasks: &[TaskNode],
    memfd_inodes: Vec<pb::MemfdInodeEntry>,
) -> Result<BTreeMap<u64, SharedObject>, RestoreError> {
    let mut out: BTreeMap<u64, SharedObject> = BTreeMap::new();
    // memfd inodes (CRIU saves shared anonymous memory as a memfd named /dev/zero).
    for m in memfd_inodes {
        out.insert(
            m.shmid.into(),
            SharedObject {
                size: m.size,
                pages: None,
                attrs: m.mode.map(|mode| (mode & 0o7777, m.uid, m.gid)),
                memfd: Some((m.name, m.seals)),
            },
        );
    }
    for t in tasks {
        let Body::Alive(plan) = &t.body else { continue };
        for (&i, &shmid) in &plan.vma_shmem {
            let v = &plan.mm.vmas[i];
            let end = v
                .pgoff
                .checked_add(v.end - v.start)
                .filter(|e| e % PAGE_SIZE == 0 && v.pgoff % PAGE_SIZE == 0)
                .ok_or_else(|| invalid(format!("mm-{}.img: VMA {i}: bad offset {:#x}", t.pid, v.pgoff)))?;
            let obj = out.entry(shmid).or_insert(SharedObject {
                size: 0,
                pages: None,
                memfd: None,
                attrs: None,
            });
            obj.size = obj.size.max(end);
        }
    }
    for (&shmid, obj) in &mut out {
        let Some(pages) = Pagemap::read(dir, ImageKind::ShmemPagemap, shmid)? else {
            continue;
        };
        for r in pages.runs.iter().filter(|r| r.is_present()) {
            // (the last page may reach past an object whose size is not a multiple of a page)
            let end = obj.size.next_multiple_of(PAGE_SIZE);
            if r.vaddr % PAGE_SIZE != 0 || r.vaddr.checked_add(r.len()).is_none_or(|e| e > end) {
                return Err(invalid(format!(
                    "pagemap-shmem-{shmid}.img: pages {:#x}+{:#x} lie outside the object of {:#x} bytes",
                    r.vaddr,
                    r.len(),
                    obj.size
                )));
            }
        }
        check_pages_file(dir, &pages, &format!("pagemap-shmem-{shmid}.img"))?;
        obj.pages = Some(pages);
    }
    Ok(out)
}
