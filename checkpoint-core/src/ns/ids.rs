//! Namespace ids of a dump: one per namespace inode, numbered after the ids of the dumper and
//! of every task, as ids-N.img and the inventory name them.

use std::collections::BTreeMap;
use std::fs;

use crate::image::pb;

/// Namespace ids: one per namespace inode, after the ids of the dumper and of every task.
pub struct NsIds {
    next: u32,
    by_inode: BTreeMap<(&'static str, u64), u32>,
}

impl NsIds {
    pub fn new(first: u32) -> NsIds {
        NsIds {
            next: first,
            by_inode: BTreeMap::new(),
        }
    }

    /// Object ids of `who` ("self" or a pid): `own` for its vm, files, fs and signal handlers
    /// (CRIU's restore requires the task's to differ from the dumper's), and its namespaces.
    pub fn ids(&mut self, who: &str, own: u32) -> pb::TaskKobjIdsEntry {
        use std::os::unix::fs::MetadataExt;
        let mut ns = [None; 8];
        for (slot, kind) in ns.iter_mut().zip(super::KINDS) {
            let Ok(meta) = fs::metadata(format!("/proc/{who}/ns/{kind}")) else {
                continue;
            };
            let next = &mut self.next;
            *slot = Some(*self.by_inode.entry((kind, meta.ino())).or_insert_with(|| {
                let id = *next;
                *next += 1;
                id
            }));
        }
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
    }
}
