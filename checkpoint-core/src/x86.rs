//! x86_64 register state <-> image messages: the general registers and the XSAVE area
//! (legacy FXSAVE region, XSAVE header, AVX and AVX-512 components, PKRU).

use crate::image::pb::{UserX86FpregsEntry, UserX86RegsEntry, UserX86XsaveEntry};
use crate::sys;
use parasite::Regs;

/// General registers to their image form.
pub fn regs_to_pb(r: &Regs) -> UserX86RegsEntry {
    UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(1),
    }
}

/// Image registers back into `r` (which keeps nothing of its own).
pub fn pb_to_regs(p: &UserX86RegsEntry, r: &mut Regs) {
    r.r15 = p.r15;
    r.r14 = p.r14;
    r.r13 = p.r13;
    r.r12 = p.r12;
    r.rbp = p.bp;
    r.rbx = p.bx;
    r.r11 = p.r11;
    r.r10 = p.r10;
    r.r9 = p.r9;
    r.r8 = p.r8;
    r.rax = p.ax;
    r.rcx = p.cx;
    r.rdx = p.dx;
    r.rsi = p.si;
    r.rdi = p.di;
    r.orig_rax = p.orig_ax;
    r.rip = p.ip;
    r.cs = p.cs;
    r.eflags = p.flags;
    r.rsp = p.sp;
    r.ss = p.ss;
    r.fs_base = p.fs_base;
    r.gs_base = p.gs_base;
    r.ds = p.ds;
    r.es = p.es;
    r.fs = p.fs;
    r.gs = p.gs;
}

/// Kernel "restart" return values of an interrupted syscall.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// Registers of a task stopped inside a syscall, made to resume correctly without the kernel's
/// restart logic (a restored task resumes without passing through it):
/// - ERESTARTSYS / ERESTARTNOINTR: the call is re-executed (rewind to the `syscall`);
/// - ERESTARTNOHAND (pause, sigsuspend, poll...) and ERESTART_RESTARTBLOCK (nanosleep...): the
///   call returns EINTR. Re-executing an ERESTARTNOHAND call would be wrong when a signal handler
///   runs first — the kernel then returns EINTR — and loses wake-ups: a `while (!flag) pause();`
///   whose SIGUSR1 arrived right after the restore slept forever (seen in `make bench`).
pub fn fix_interrupted_syscall(r: &mut Regs) {
    if (r.orig_rax as i64) < 0 {
        return;
    }
    match r.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR => {
            r.rax = r.orig_rax;
            r.rip -= 2;
        }
        ERESTARTNOHAND | ERESTART_RESTARTBLOCK => r.rax = (-i64::from(libc::EINTR)) as u64,
        _ => {}
    }
}

fn u16_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 2)
        .map_or(0, |s| u32::from(u16::from_le_bytes([s[0], s[1]])))
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}
fn words32(b: &[u8], off: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| u32_at(b, off + 4 * i)).collect()
}
fn words64(b: &[u8], off: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| u64_at(b, off + 8 * i)).collect()
}
fn put32(b: &mut [u8], off: usize, v: &[u32]) {
    for (i, w) in v.iter().enumerate() {
        if let Some(s) = b.get_mut(off + 4 * i..off + 4 * i + 4) {
            s.copy_from_slice(&w.to_le_bytes());
        }
    }
}
fn put64(b: &mut [u8], off: usize, v: &[u64]) {
    for (i, w) in v.iter().enumerate() {
        if let Some(s) = b.get_mut(off + 8 * i..off + 8 * i + 8) {
            s.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// XSAVE components we carry: (feature bit, image words, word size).
const YMM: u32 = 2;
const OPMASK: u32 = 5;
const ZMM_HI256: u32 = 6;
const HI16_ZMM: u32 = 7;
const PKRU: u32 = 9;

/// An XSAVE area (as PTRACE_GETREGSET NT_X86_XSTATE returns it) to its image form.
pub fn xstate_to_pb(x: &[u8]) -> UserX86FpregsEntry {
    let comp = |bit: u32| sys::xsave_component(bit).filter(|(off, size)| off + size <= x.len());
    let xsave = (x.len() > 576).then(|| UserX86XsaveEntry {
        xstate_bv: u64_at(x, 512),
        ymmh_space: comp(YMM).map_or(Vec::new(), |(off, _)| words32(x, off, 64)),
        opmask_reg: comp(OPMASK).map_or(Vec::new(), |(off, _)| words64(x, off, 8)),
        zmm_upper: comp(ZMM_HI256).map_or(Vec::new(), |(off, _)| words64(x, off, 64)),
        hi16_zmm: comp(HI16_ZMM).map_or(Vec::new(), |(off, _)| words64(x, off, 128)),
        pkru: comp(PKRU).map_or(Vec::new(), |(off, _)| words32(x, off, 2)),
        ..UserX86XsaveEntry::default()
    });
    UserX86FpregsEntry {
        cwd: u16_at(x, 0),
        swd: u16_at(x, 2),
        twd: u16_at(x, 4),
        fop: u16_at(x, 6),
        rip: u64_at(x, 8),
        rdp: u64_at(x, 16),
        mxcsr: u32_at(x, 24),
        mxcsr_mask: u32_at(x, 28),
        st_space: words32(x, 32, 32),
        xmm_space: words32(x, 160, 64),
        padding: words32(x, 416, 24),
        xsave,
    }
}

/// Writes image FPU state into `x`, an XSAVE area of the restoring task (its size and the
/// features it supports are kept).
pub fn pb_to_xstate(p: &UserX86FpregsEntry, x: &mut [u8]) {
    put32(x, 0, &[p.cwd | (p.swd << 16)]);
    put32(x, 4, &[p.twd | (p.fop << 16)]);
    put64(x, 8, &[p.rip, p.rdp]);
    put32(x, 24, &[p.mxcsr, p.mxcsr_mask]);
    put32(x, 32, &p.st_space);
    put32(x, 160, &p.xmm_space);
    let Some(xs) = &p.xsave else { return };
    if x.len() <= 576 {
        return;
    }
    // Keep only the features this CPU's area has room for.
    let mut bv = xs.xstate_bv & 0b11; // x87 + SSE always
    let mut put = |bit: u32, f: &dyn Fn(&mut [u8], usize)| {
        if let Some((off, size)) = sys::xsave_component(bit).filter(|(off, size)| off + size <= x.len()) {
            let _ = size;
            f(x, off);
            bv |= xs.xstate_bv & (1 << bit);
        }
    };
    if !xs.ymmh_space.is_empty() {
        put(YMM, &|x, off| put32(x, off, &xs.ymmh_space));
    }
    if !xs.opmask_reg.is_empty() {
        put(OPMASK, &|x, off| put64(x, off, &xs.opmask_reg));
    }
    if !xs.zmm_upper.is_empty() {
        put(ZMM_HI256, &|x, off| put64(x, off, &xs.zmm_upper));
    }
    if !xs.hi16_zmm.is_empty() {
        put(HI16_ZMM, &|x, off| put64(x, off, &xs.hi16_zmm));
    }
    if !xs.pkru.is_empty() {
        put(PKRU, &|x, off| put32(x, off, &xs.pkru));
    }
    put64(x, 512, &[bv]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_syscalls_are_rewound_or_turned_into_eintr() {
        let mut r = parasite::sys::zero_regs();
        r.orig_rax = 0; // read
        r.rax = ERESTARTSYS as u64;
        r.rip = 0x1002;
        fix_interrupted_syscall(&mut r);
        assert_eq!((r.rax, r.rip), (0, 0x1000), "restartable: rewound");
        r.orig_rax = 34; // pause
        r.rax = ERESTARTNOHAND as u64;
        r.rip = 0x1002;
        fix_interrupted_syscall(&mut r);
        assert_eq!((r.rax as i64, r.rip), (-4, 0x1002), "no restart after a handler: EINTR");
        r.orig_rax = 35; // nanosleep
        r.rax = ERESTART_RESTARTBLOCK as u64;
        fix_interrupted_syscall(&mut r);
        assert_eq!(r.rax as i64, -4);
        r.orig_rax = u64::MAX;
        r.rax = ERESTARTSYS as u64;
        fix_interrupted_syscall(&mut r);
        assert_eq!(r.rax as i64, ERESTARTSYS, "not in a syscall: untouched");
    }

    #[test]
    fn fxsave_area_round_trips() {
        let mut x: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        x[512..520].copy_from_slice(&0b111u64.to_le_bytes());
        let p = xstate_to_pb(&x);
        let mut back = vec![0u8; 1024];
        pb_to_xstate(&p, &mut back);
        assert_eq!(&back[..416], &x[..416], "legacy region");
    }
}
