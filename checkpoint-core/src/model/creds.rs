//! Credentials of a thread (ids, capabilities, groups, securebits) as the image keeps them:
//! read from a dumped thread, and compared with what a puppet inherits on restore.

/// The credentials of a thread as the image keeps them, from its /proc status and securebits.
pub fn creds_entry(status: &crate::procfs::Status, securebits: u32) -> crate::image::pb::CredsEntry {
    let caps = |v: u64| vec![v as u32, (v >> 32) as u32];
    crate::image::pb::CredsEntry {
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
        secbits: securebits,
        groups: status.groups.clone(),
        no_new_privs: Some(status.no_new_privs),
        cap_amb: caps(status.cap_amb),
        ..Default::default()
    }
}
