//! A thread's seccomp filters and credentials (groups, capability sets, securebits, ids,
//! no_new_privs), set by the thread itself, last of its setup.

use super::{Call, Put};
use crate::image::pb;
use crate::restore::{Inherited, RestoreError};

/// The highest capability number the kernel knows.
fn cap_last() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn caps64(v: &[u32]) -> u64 {
    u64::from(v.first().copied().unwrap_or(0)) | u64::from(v.get(1).copied().unwrap_or(0)) << 32
}

/// The thread's seccomp filters, then its credentials, by syscalls it runs itself: last of its
/// setup, as they take away what the setup needs (our own later calls are not filtered: the
/// puppets are traced with PTRACE_O_SUSPEND_SECCOMP). Filters go first, while the thread may
/// still install them without no_new_privs.
pub(super) fn seccomp_and_creds(
    call: Call<'_>,
    put: Put<'_>,
    tid: i32,
    tc: &pb::ThreadCoreEntry,
    filters: &[pb::SeccompFilter],
    inherited: &Inherited,
) -> Result<(), RestoreError> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECBIT_KEEP_CAPS: u64 = 0x10;
    let own = inherited.creds.as_ref();
    let mut chain: Vec<&[u8]> = Vec::new();
    match tc.seccomp_mode.and_then(|m| pb::SeccompMode::try_from(m).ok()) {
        Some(pb::SeccompMode::Strict) => {
            call(
                "prctl(PR_SET_SECCOMP, strict)",
                libc::SYS_prctl,
                [libc::PR_SET_SECCOMP as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Some(pb::SeccompMode::Filter) => {
            chain = tc
                .seccomp_filter
                .and_then(|n| crate::model::seccomp::chain(filters, n))
                .ok_or_else(|| RestoreError::Invalid {
                    what: format!("tid {tid}: its seccomp filter is not in seccomp.img"),
                })?;
        }
        _ => {}
    }
    // A container's profile is installed already (by its runtime, from the same config): it
    // stands for the start of the dumped chain, and only the task's own filters are added.
    // Compiled again, a profile may order its rules differently (runc does), so the programs
    // are matched by length, not byte for byte.
    let installed = inherited.filters.len();
    if installed > 0 {
        let same = chain.len() >= installed && chain.iter().zip(&inherited.filters).all(|(a, b)| a.len() == b.len());
        if !same {
            let sizes =
                |v: &mut dyn Iterator<Item = usize>| v.map(|n| (n / 8).to_string()).collect::<Vec<_>>().join("+");
            return Err(RestoreError::Unsupported {
                pid: tid,
                what: format!(
                    "the new container's seccomp profile ({} instructions) is not the one the dumped task ran under ({})",
                    sizes(&mut inherited.filters.iter().map(Vec::len)),
                    sizes(&mut chain.iter().map(|p| p.len())),
                ),
            });
        }
    }
    if !chain.is_empty() {
        {
            for prog in chain.into_iter().skip(installed) {
                let insns = put(64, prog)?;
                let mut fprog = ((prog.len() / 8) as u64).to_le_bytes().to_vec(); // u16 len, padding
                fprog.extend_from_slice(&insns.to_le_bytes());
                let at = put(0, &fprog)?;
                call(
                    "seccomp(SET_MODE_FILTER)",
                    libc::SYS_seccomp,
                    [SECCOMP_SET_MODE_FILTER, 0, at, 0, 0, 0],
                )?;
            }
        }
    }
    let Some(c) = tc.creds.as_ref().filter(|c| Some(*c) != own) else {
        return Ok(()); // none saved, or the ones the puppet inherited from us
    };
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let at = put(0, &groups)?;
    call(
        "setgroups",
        libc::SYS_setgroups,
        [c.groups.len() as u64, at, 0, 0, 0, 0],
    )?;
    let bnd = caps64(&c.cap_bnd);
    for cap in (0..=cap_last()).filter(|&cap| bnd & (1u64 << cap) == 0) {
        call(
            "prctl(PR_CAPBSET_DROP)",
            libc::SYS_prctl,
            [libc::PR_CAPBSET_DROP as u64, cap.into(), 0, 0, 0, 0],
        )?;
    }
    call(
        "prctl(PR_SET_SECUREBITS)",
        libc::SYS_prctl,
        [
            libc::PR_SET_SECUREBITS as u64,
            u64::from(c.secbits) | SECBIT_KEEP_CAPS,
            0,
            0,
            0,
            0,
        ],
    )?;
    call(
        "setresgid",
        libc::SYS_setresgid,
        [c.gid.into(), c.egid.into(), c.sgid.into(), 0, 0, 0],
    )?;
    call("setfsgid", libc::SYS_setfsgid, [c.fsgid.into(), 0, 0, 0, 0, 0])?;
    call(
        "setresuid",
        libc::SYS_setresuid,
        [c.uid.into(), c.euid.into(), c.suid.into(), 0, 0, 0],
    )?;
    call("setfsuid", libc::SYS_setfsuid, [c.fsuid.into(), 0, 0, 0, 0, 0])?;
    // struct __user_cap_header_struct (version 3, this thread), then two
    // __user_cap_data_struct {effective, permitted, inheritable}: low and high words.
    let (eff, prm, inh) = (caps64(&c.cap_eff), caps64(&c.cap_prm), caps64(&c.cap_inh));
    let mut data = Vec::with_capacity(32);
    for v in [0x2008_0522u32, 0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    for shift in [0, 32] {
        for set in [eff, prm, inh] {
            data.extend_from_slice(&((set >> shift) as u32).to_le_bytes());
        }
    }
    let at = put(0, &data)?;
    call("capset", libc::SYS_capset, [at, at + 8, 0, 0, 0, 0])?;
    if u64::from(c.secbits) & SECBIT_KEEP_CAPS == 0 {
        call(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::SYS_prctl,
            [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
        )?;
    }
    let amb = caps64(&c.cap_amb);
    for cap in (0..=cap_last()).filter(|&cap| amb & (1u64 << cap) != 0) {
        call(
            "prctl(PR_CAP_AMBIENT_RAISE)",
            libc::SYS_prctl,
            [
                libc::PR_CAP_AMBIENT as u64,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                cap.into(),
                0,
                0,
                0,
            ],
        )?;
    }
    if c.no_new_privs.unwrap_or(0) != 0 {
        call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}
