//! IPC namespaces: a container's is made again empty by its runtime. Its SysV objects are
//! saved (segments with their contents, semaphore values, queued messages) and made again at
//! their ids; POSIX message queues are refused (not saved).

/// How many POSIX message queues `pid`'s /dev/mqueue shows (they are not saved).
pub fn posix_queues(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/root/dev/mqueue")).map_or(0, |d| d.count())
}

use crate::image::pb::{IpcDescEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry};
use crate::image::{ImageDir, ImageError, ImageKind};
use crate::sys::IpcPerm;

/// The largest SysV segment a dump saves (the image holds it whole).
const MAX_SHM: u64 = 1 << 30;

/// One line of /proc/sysvipc/{shm,sem,msg}: the object's header and the numbers after it
/// (size, nsems, or cbytes and qnum).
#[derive(Clone, Debug, PartialEq)]
struct Line {
    desc: IpcDescEntry,
    /// The column after `perms`: size (shm), nsems (sem), cbytes (msg).
    n: u64,
    /// qnum (msg).
    qnum: u32,
}

/// Parses /proc/sysvipc/`kind` (`shm`, `sem` or `msg`).
fn parse(kind: &str, text: &str) -> Option<Vec<Line>> {
    // Column of uid: shm 7, sem 4, msg 7.
    let uid_col = if kind == "sem" { 4 } else { 7 };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f.get(i)?.parse::<i64>().ok();
            Some(Line {
                desc: IpcDescEntry {
                    key: num(0)? as u32,
                    id: num(1)? as u32,
                    mode: u32::from_str_radix(f.get(2)?, 8).ok()?,
                    uid: num(uid_col)? as u32,
                    gid: num(uid_col + 1)? as u32,
                    cuid: num(uid_col + 2)? as u32,
                    cgid: num(uid_col + 3)? as u32,
                },
                n: num(3)? as u64,
                qnum: if kind == "msg" { num(4)? as u32 } else { 0 },
            })
        })
        .collect()
}

fn pad(mut v: Vec<u8>, to: usize) -> Vec<u8> {
    v.resize(v.len().div_ceil(to) * to, 0);
    v
}

/// What a dump reads from an IPC namespace.
struct Objects {
    shm: Vec<(Line, Vec<u8>)>,
    sem: Vec<(Line, Vec<u16>)>,
    msg: Vec<(Line, Vec<crate::sys::SysvMessage>, u64)>,
}

/// Saves the SysV objects of `pid`'s IPC namespace (id `ns_id`) into `ipcns-{shm,sem,msg}`
/// images: segments with their contents, semaphore values, queued messages (copied, left
/// queued). Returns how many objects were saved.
pub fn dump(pid: i32, dir: &ImageDir, ns_id: u32) -> Result<usize, String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/ipc")).map_err(|e| format!("ns/ipc: {e}"))?;
    let read = |kind: &str| -> std::io::Result<Vec<Line>> {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{kind}"))?;
        parse(kind, &text).ok_or_else(|| std::io::Error::other(format!("/proc/sysvipc/{kind}: unreadable")))
    };
    let objects = crate::sys::in_ipc_ns(&ns, || {
        let mut shm = Vec::new();
        for l in read("shm")? {
            if l.n > MAX_SHM {
                return Err(std::io::Error::other(format!(
                    "SysV segment {} is {} bytes, more than {MAX_SHM} are not saved",
                    l.desc.id, l.n
                )));
            }
            let data = crate::sys::shm_read(l.desc.id as i32, l.n as usize)?;
            shm.push((l, data));
        }
        let mut sem = Vec::new();
        for l in read("sem")? {
            let vals = crate::sys::sem_values(l.desc.id as i32, l.n as usize)?;
            sem.push((l, vals));
        }
        let mut msg = Vec::new();
        for l in read("msg")? {
            let (messages, qbytes) = crate::sys::msg_queue(l.desc.id as i32, l.qnum as usize)?;
            msg.push((l, messages, qbytes));
        }
        Ok(Objects { shm, sem, msg })
    })
    .map_err(|e| format!("its IPC namespace: {e}"))?;
    let err = |e: ImageError| e.to_string();
    let n = objects.shm.len() + objects.sem.len() + objects.msg.len();
    if !objects.shm.is_empty() {
        let mut w = dir.writer(ImageKind::IpcnsShm, ns_id.into()).map_err(err)?;
        for (l, data) in objects.shm {
            w.write(&IpcShmEntry {
                desc: l.desc,
                size: l.n,
                in_pagemaps: None,
                hugetlb_flag: None,
            })
            .map_err(err)?;
            w.write_payload(&pad(data, 4)).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    if !objects.sem.is_empty() {
        let mut w = dir.writer(ImageKind::IpcnsSem, ns_id.into()).map_err(err)?;
        for (l, vals) in objects.sem {
            w.write(&IpcSemEntry {
                desc: l.desc,
                nsems: vals.len() as u32,
            })
            .map_err(err)?;
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_payload(&pad(bytes, 8)).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    if !objects.msg.is_empty() {
        let mut w = dir.writer(ImageKind::IpcnsMsg, ns_id.into()).map_err(err)?;
        for (l, messages, qbytes) in objects.msg {
            w.write(&IpcMsgEntry {
                desc: l.desc,
                qbytes: qbytes as u32,
                qnum: messages.len() as u32,
            })
            .map_err(err)?;
            for (mtype, text) in messages {
                w.write(&IpcMsg {
                    mtype: mtype as u64,
                    msize: text.len() as u32,
                })
                .map_err(err)?;
                w.write_payload(&pad(text, 8)).map_err(err)?;
            }
        }
        w.finish().map_err(err)?;
    }
    Ok(n)
}

fn perm(d: &IpcDescEntry) -> IpcPerm {
    IpcPerm {
        uid: d.uid,
        gid: d.gid,
        mode: d.mode & 0o777,
    }
}

/// Makes the saved SysV objects again in `pid`'s IPC namespace (a new container's, empty),
/// each at its id (`/proc/sys/kernel/*_next_id`, per namespace), with its key, owner, mode
/// and contents.
pub fn restore(pid: i32, dir: &ImageDir, ns_id: u32) -> Result<usize, String> {
    let err = |e: ImageError| e.to_string();
    let mut shm = Vec::new();
    if let Some(mut rd) = dir.reader(ImageKind::IpcnsShm, ns_id.into()).map_err(err)? {
        while let Some(e) = rd.next_entry::<IpcShmEntry>().map_err(err)? {
            if e.in_pagemaps.unwrap_or(false) || e.size > MAX_SHM {
                return Err(format!("SysV segment {}: contents not in the image", e.desc.id));
            }
            let mut data = rd.read_payload(e.size.div_ceil(4) * 4).map_err(err)?;
            data.truncate(e.size as usize);
            shm.push((e, data));
        }
    }
    let mut sem = Vec::new();
    if let Some(mut rd) = dir.reader(ImageKind::IpcnsSem, ns_id.into()).map_err(err)? {
        while let Some(e) = rd.next_entry::<IpcSemEntry>().map_err(err)? {
            let bytes = rd.read_payload((u64::from(e.nsems) * 2).div_ceil(8) * 8).map_err(err)?;
            let vals: Vec<u16> = bytes
                .chunks_exact(2)
                .take(e.nsems as usize)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            sem.push((e, vals));
        }
    }
    let mut msg = Vec::new();
    if let Some(mut rd) = dir.reader(ImageKind::IpcnsMsg, ns_id.into()).map_err(err)? {
        while let Some(e) = rd.next_entry::<IpcMsgEntry>().map_err(err)? {
            let mut messages = Vec::new();
            for _ in 0..e.qnum {
                let m = rd
                    .next_entry::<IpcMsg>()
                    .map_err(err)?
                    .ok_or_else(|| format!("message queue {}: a message is missing", e.desc.id))?;
                let mut text = rd.read_payload(u64::from(m.msize).div_ceil(8) * 8).map_err(err)?;
                text.truncate(m.msize as usize);
                messages.push((m.mtype as i64, text));
            }
            msg.push((e, messages));
        }
    }
    let n = shm.len() + sem.len() + msg.len();
    if n == 0 {
        return Ok(0);
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/ipc")).map_err(|e| format!("ns/ipc: {e}"))?;
    crate::sys::in_ipc_ns(&ns, || {
        let next = |kind: &str, id: u32| std::fs::write(format!("/proc/sys/kernel/{kind}_next_id"), id.to_string());
        let check = |what: &str, want: u32, got: i32| {
            if got as u32 != want {
                return Err(std::io::Error::other(format!("{what} {want} was made again as {got}")));
            }
            Ok(())
        };
        for (e, data) in &shm {
            next("shm", e.desc.id)?;
            let id = crate::sys::shm_create(e.desc.key as i32, data, perm(&e.desc))?;
            check("SysV segment", e.desc.id, id)?;
        }
        for (e, vals) in &sem {
            next("sem", e.desc.id)?;
            let id = crate::sys::sem_create(e.desc.key as i32, vals, perm(&e.desc))?;
            check("semaphore set", e.desc.id, id)?;
        }
        for (e, messages) in &msg {
            next("msg", e.desc.id)?;
            let id = crate::sys::msg_create(e.desc.key as i32, messages, e.qbytes.into(), perm(&e.desc))?;
            check("message queue", e.desc.id, id)?;
        }
        Ok(())
    })
    .map_err(|e| format!("its IPC namespace: {e}"))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysvipc_lines() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                   21332          3   640                 65536   100   100      1     0     0     0     0 1795777641          0 1795777641                 65536                     0\n";
        let l = &parse("shm", shm).unwrap()[0];
        assert_eq!((l.desc.key, l.desc.id, l.desc.mode, l.n), (21332, 3, 0o640, 65536));
        let msg = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n\
                   21334          5   620          21          2   100     0  1000  1001     0     0 1 0 1\n";
        let l = &parse("msg", msg).unwrap()[0];
        assert_eq!((l.desc.id, l.n, l.qnum, l.desc.uid, l.desc.gid), (5, 21, 2, 1000, 1001));
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                   21333          1   600          3     0     0     0     0          0 1795777641\n";
        let l = &parse("sem", sem).unwrap()[0];
        assert_eq!((l.desc.id, l.n), (1, 3));
        assert!(parse("sem", "header\nbad line\n").is_none());
    }
}
