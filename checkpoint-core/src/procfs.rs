//! Parsers of `/proc/PID/*` text: pure functions over strings, so they are tested on samples.
//! Reading the files is left to the callers.

/// What Stasis needs from `/proc/PID/stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// The controlling terminal's device (encoded as in stat), 0 if none.
    pub tty_nr: u32,
    /// The terminal's foreground process group, -1 if none.
    pub tpgid: i32,
    pub flags: u32,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Wait status of a zombie (as `waitpid` would report it).
    pub exit_code: u32,
}

/// Parses `/proc/PID/stat`; `None` if it is not in the kernel's format.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields from 3 (state) on; field n is at index n - 3.
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let num = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(4)?).ok()?,
        pgid: u32::try_from(num(5)?).ok()?,
        sid: u32::try_from(num(6)?).ok()?,
        tty_nr: u32::try_from(num(7)?).ok()?,
        tpgid: f.get(8 - 3)?.parse().ok()?,
        flags: u32::try_from(num(9)?).ok()?,
        start_code: num(26)?,
        end_code: num(27)?,
        start_stack: num(28)?,
        start_data: num(45)?,
        end_data: num(46)?,
        start_brk: num(47)?,
        arg_start: num(48)?,
        arg_end: num(49)?,
        env_start: num(50)?,
        env_end: num(51)?,
        exit_code: num(52).and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
    })
}

/// What Stasis needs from `/proc/PID/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub umask: u32,
    pub threads: u32,
    /// real, effective, saved, filesystem.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub seccomp: u32,
    pub no_new_privs: u32,
    /// Signals pending for this thread / for the whole process.
    pub sig_pending: u64,
    pub shared_pending: u64,
    /// The pid tracing this task, or 0.
    pub tracer_pid: i32,
    /// Signals with a handler / ignored (bit N-1 for signal N).
    pub sig_caught: u64,
    pub sig_ignored: u64,
    /// The pid in each pid namespace, ours first (the last is the task's own namespace).
    pub nspid: Vec<i32>,
    /// `THP_enabled`: false once the process asked for no transparent huge pages
    /// (PR_SET_THP_DISABLE); `None` where the kernel does not say.
    pub thp_enabled: Option<bool>,
}

/// Parses `/proc/PID/status`; `None` if a needed line is malformed.
pub fn parse_status(text: &str) -> Option<Status> {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let ids = |v: &str| -> Option<[u32; 4]> {
            let n: Vec<u32> = v.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
            n.try_into().ok()
        };
        let cap = |v: &str| u64::from_str_radix(v, 16).ok();
        match key {
            "Umask" => s.umask = u32::from_str_radix(value, 8).ok()?,
            "Threads" => s.threads = value.parse().ok()?,
            "Uid" => s.uids = ids(value)?,
            "Gid" => s.gids = ids(value)?,
            "Groups" => {
                s.groups = value
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?
            }
            "CapInh" => s.cap_inh = cap(value)?,
            "CapPrm" => s.cap_prm = cap(value)?,
            "CapEff" => s.cap_eff = cap(value)?,
            "CapBnd" => s.cap_bnd = cap(value)?,
            "CapAmb" => s.cap_amb = cap(value)?,
            "Seccomp" => s.seccomp = value.parse().ok()?,
            "SigPnd" => s.sig_pending = u64::from_str_radix(value, 16).ok()?,
            "ShdPnd" => s.shared_pending = u64::from_str_radix(value, 16).ok()?,
            "NoNewPrivs" => s.no_new_privs = value.parse().ok()?,
            "TracerPid" => s.tracer_pid = value.parse().ok()?,
            "SigCgt" => s.sig_caught = u64::from_str_radix(value, 16).ok()?,
            "SigIgn" => s.sig_ignored = u64::from_str_radix(value, 16).ok()?,
            "THP_enabled" => s.thp_enabled = Some(value != "0"),
            "NSpid" => {
                s.nspid = value
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?
            }
            _ => {}
        }
    }
    Some(s)
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    /// Path, `[heap]`-style name, or empty for anonymous memory.
    pub path: String,
}

/// Parses `/proc/PID/maps`; `None` on a malformed line.
pub fn parse_maps(text: &str) -> Option<Vec<MapsEntry>> {
    text.lines().filter(|l| !l.is_empty()).map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<MapsEntry> {
    let mut it = line.splitn(6, ' ');
    let (range, perms, offset, dev, inode) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let path = it.next().unwrap_or("").trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let p = perms.as_bytes();
    if p.len() != 4 {
        return None;
    }
    Some(MapsEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: p[0] == b'r',
        write: p[1] == b'w',
        exec: p[2] == b'x',
        shared: p[3] == b's',
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
    })
}

/// Parses `/proc/PID/smaps`: each mapping's `maps` line and its `VmFlags` (two-letter codes,
/// empty where the kernel wrote none); `None` on a malformed mapping line.
pub fn parse_smaps(text: &str) -> Option<Vec<(MapsEntry, Vec<[u8; 2]>)>> {
    let mut out: Vec<(MapsEntry, Vec<[u8; 2]>)> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // Field lines start with a word and a colon ("Rss:", "VmFlags:"); mapping lines with
        // an address range.
        let first = line.split(' ').next().unwrap_or("");
        if let Some(key) = first.strip_suffix(':') {
            if key == "VmFlags" {
                let (_, flags) = out.last_mut()?;
                *flags = line[first.len()..]
                    .split_whitespace()
                    .filter_map(|f| <[u8; 2]>::try_from(f.as_bytes()).ok())
                    .collect();
            }
            continue;
        }
        out.push((parse_maps_line(line)?, Vec::new()));
    }
    Some(out)
}

/// What Stasis needs from `/proc/PID/fdinfo/N`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// open(2) flags (the kernel prints them in octal).
    pub flags: u32,
    pub mnt_id: i32,
}

/// Parses `/proc/PID/fdinfo/N`.
pub fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let mut info = FdInfo {
        mnt_id: -1,
        ..FdInfo::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pos" => info.pos = value.parse().ok()?,
            "flags" => info.flags = u32::from_str_radix(value, 8).ok()?,
            "mnt_id" => info.mnt_id = value.parse().ok()?,
            _ => {}
        }
    }
    Some(info)
}

/// Resource limits from `/proc/PID/limits`, in RLIMIT_* order; `u64::MAX` is unlimited.
pub fn parse_limits(text: &str) -> Option<Vec<(u64, u64)>> {
    let value = |v: &str| -> Option<u64> {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        // "Max open files            1024                 1048576              files"
        let rest = line.get(26..)?;
        let mut cols = rest.split_whitespace();
        out.push((value(cols.next()?)?, value(cols.next()?)?));
    }
    (out.len() == 16).then_some(out)
}

/// `/proc/PID/auxv` as u64 words: (key, value) pairs up to, not including, AT_NULL (as CRIU
/// stores them; its restore refuses more than 22 pairs).
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let pairs = words.chunks_exact(2).take_while(|p| p[0] != 0).count();
    words[..pairs * 2].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_aimed_at_a_thread_or_the_process() {
        let text = "ID: 3\nsignal: 35/0000000000000000\nnotify: signal/tid.812\nClockID: 1\n\
                    ID: 4\nsignal: 14/00000000000000ff\nnotify: signal/pid.800\nClockID: 0\n\
                    ID: 5\nsignal: 0/0000000000000000\nnotify: none/pid.800\nClockID: 0\n";
        let t = parse_timers(text).unwrap();
        let got: Vec<_> = t.iter().map(|t| (t.id, t.signo, t.notify, t.notify_tid)).collect();
        assert_eq!(got, vec![(3, 35, 4, Some(812)), (4, 14, 0, None), (5, 0, 1, None)]);
    }

    #[test]
    fn smaps_gives_each_mapping_its_vmflags() {
        let text = "7f00-7f10 rw-p 00000000 00:00 0 \nSize:                 64 kB\nRss:   0 kB\n\
                    VmFlags: rd wr mr mw me dc lo \n\
                    7f20-7f30 r--s 00001000 08:01 42                         /data/f\n\
                    Size:                 64 kB\nVmFlags: rd sh mr mw me ms \n";
        let m = parse_smaps(text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0.start, m[0].0.end, m[0].0.shared), (0x7f00, 0x7f10, false));
        assert!(m[0].1.contains(b"dc") && m[0].1.contains(b"lo"));
        assert_eq!((m[1].0.path.as_str(), m[1].0.inode, m[1].1.len()), ("/data/f", 42, 6));
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let text = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 50 \
                    18446744073709551615 94000 95000 140000 0 0 0 65536 4 0 0 0 0 17 1 0 0 0 0 0 96000 97000 98000 \
                    140100 140200 140300 140400 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "my (odd) prog");
        assert_eq!(
            (s.state, s.ppid, s.pgid, s.sid, s.flags),
            ('S', 1, 4242, 4242, 4_194_560)
        );
        assert_eq!((s.start_code, s.end_code, s.start_stack), (94000, 95000, 140000));
        assert_eq!((s.start_data, s.end_data, s.start_brk), (96000, 97000, 98000));
        assert_eq!(
            (s.arg_start, s.arg_end, s.env_start, s.env_end),
            (140100, 140200, 140300, 140400)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let text =
            "Name:\tw\nUmask:\t0027\nState:\tS (sleeping)\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nGroups:\t10 20 \n\
                    Threads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
                    CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.umask, 0o027);
        assert_eq!(s.uids, [0, 1, 2, 3]);
        assert_eq!(s.gids, [4, 5, 6, 7]);
        assert_eq!(s.groups, vec![10, 20]);
        assert_eq!(s.cap_eff, 0x1ff_ffff_ffff);
        assert_eq!((s.seccomp, s.no_new_privs, s.threads), (2, 1, 1));
    }

    #[test]
    fn maps_lines() {
        let text = "55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1234                       /usr/bin/x y\n\
                    7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]\n\
                    7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n";
        let m = parse_maps(text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].start, m[0].end, m[0].read, m[0].write),
            (0x55d0c0a00000, 0x55d0c0a01000, true, false)
        );
        assert_eq!(
            (m[0].dev, m[0].inode, m[0].path.as_str()),
            ((0xfe, 1), 1234, "/usr/bin/x y")
        );
        assert_eq!(m[1].path, "[stack]");
        assert!(m[2].path.is_empty() && !m[2].read);
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        let f = parse_fdinfo("pos:\t7\nflags:\t02102001\nmnt_id:\t25\nino:\t1\n").unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id), (7, 0o2102001, 25));
    }

    #[test]
    fn auxv_stops_before_at_null() {
        let words: Vec<u8> = [33u64, 7, 6, 4096, 0, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(parse_auxv(&words), vec![33, 7, 6, 4096]);
    }

    #[test]
    fn limits_in_kernel_order() {
        let mut text = String::from("Limit                     Soft Limit           Hard Limit           Units     \n");
        for (i, name) in [
            "Max cpu time",
            "Max file size",
            "Max data size",
            "Max stack size",
            "Max core file size",
            "Max resident set",
            "Max processes",
            "Max open files",
            "Max locked memory",
            "Max address space",
            "Max file locks",
            "Max pending signals",
            "Max msgqueue size",
            "Max nice priority",
            "Max realtime priority",
            "Max realtime timeout",
        ]
        .iter()
        .enumerate()
        {
            let soft = if i == 7 {
                "1024".to_owned()
            } else {
                "unlimited".to_owned()
            };
            text.push_str(&format!(
                "{name:<26}{soft:<21}{:<21}units\n",
                if i == 7 { "4096" } else { "unlimited" }
            ));
        }
        let l = parse_limits(&text).unwrap();
        assert_eq!(l[7], (1024, 4096));
        assert_eq!(l[0], (u64::MAX, u64::MAX));
    }
}

/// One POSIX timer of `/proc/PID/timers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: u32,
    pub signo: u32,
    /// The sigval the signal carries.
    pub sival: u64,
    /// SIGEV_SIGNAL (0), SIGEV_NONE (1) or SIGEV_THREAD_ID (4).
    pub notify: u32,
    /// The thread notified, for SIGEV_THREAD_ID.
    pub notify_tid: Option<i32>,
    pub clock_id: u32,
}

/// Parses `/proc/PID/timers`; `None` if it is not in the kernel's format.
pub fn parse_timers(text: &str) -> Option<Vec<PosixTimer>> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let (key, value) = line.split_once(':')?;
        let value = value.trim();
        match key {
            "ID" => out.push(PosixTimer {
                id: value.parse().ok()?,
                ..Default::default()
            }),
            "signal" => {
                let t = out.last_mut()?;
                let (sig, val) = value.split_once('/')?;
                t.signo = sig.parse().ok()?;
                t.sival = u64::from_str_radix(val, 16).ok()?;
            }
            "notify" => {
                let t = out.last_mut()?;
                let (how, who) = value.split_once('/')?;
                // SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD; "tid." marks SIGEV_THREAD_ID (4),
                // aimed at one thread (its id in the namespace of the /proc read).
                t.notify = match how {
                    "signal" => 0,
                    "none" => 1,
                    "thread" => 2,
                    _ => return None,
                };
                if let Some(tid) = who.strip_prefix("tid.") {
                    t.notify |= 4;
                    t.notify_tid = Some(tid.parse().ok()?);
                }
            }
            "ClockID" => out.last_mut()?.clock_id = value.parse().ok()?,
            _ => {}
        }
    }
    Some(out)
}
