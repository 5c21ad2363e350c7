//! SysV IPC objects: shared memory segments, semaphore sets, message queues. Raw libc: nix
//! has no SysV IPC.

use std::io;

use super::cvt;

/// Owner, group and mode of a SysV object, as IPC_SET sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcPerm {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The contents of SysV shared memory segment `id` (`size` bytes), read through a
/// read-only attachment in our address space.
pub fn shm_read(id: i32, size: usize) -> io::Result<Vec<u8>> {
    // SAFETY: the kernel picks the address; the attachment is read as `size` bytes (the
    // segment's size, which the kernel rounds up to pages) and detached before returning.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let data = std::slice::from_raw_parts(p as *const u8, size).to_vec();
        libc::shmdt(p);
        Ok(data)
    }
}

/// Creates SysV shared memory segment `key` of `data.len()` bytes (IPC_EXCL) and fills it;
/// returns its id.
pub fn shm_create(key: i32, data: &[u8], perm: IpcPerm) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::shmget(key, data.len(), libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: a fresh attachment of the new segment, `data.len()` bytes long, written and
    // detached before returning; shmid_ds is plain data read back from the kernel.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        libc::shmdt(p);
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        cvt(libc::shmctl(id, libc::IPC_STAT, &mut ds))?;
        ds.shm_perm.uid = perm.uid;
        ds.shm_perm.gid = perm.gid;
        ds.shm_perm.mode = perm.mode as _;
        cvt(libc::shmctl(id, libc::IPC_SET, &mut ds))?;
    }
    Ok(id)
}

/// The values of the `nsems` semaphores of set `id`.
pub fn sem_values(id: i32, nsems: usize) -> io::Result<Vec<u16>> {
    let mut vals = vec![0u16; nsems];
    // SAFETY: GETALL writes `nsems` unsigned shorts into the array passed as semun.array.
    cvt(unsafe { libc::semctl(id, 0, libc::GETALL, vals.as_mut_ptr()) })?;
    Ok(vals)
}

/// Creates semaphore set `key` with `vals` (IPC_EXCL); returns its id.
pub fn sem_create(key: i32, vals: &[u16], perm: IpcPerm) -> io::Result<i32> {
    let n = i32::try_from(vals.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::semget(key, n, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: SETALL reads `n` unsigned shorts from semun.array; semid_ds is plain data read
    // back from the kernel and passed again as semun.buf.
    unsafe {
        cvt(libc::semctl(id, 0, libc::SETALL, vals.as_ptr()))?;
        let mut ds: libc::semid_ds = std::mem::zeroed();
        cvt(libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds))?;
        ds.sem_perm.uid = perm.uid;
        ds.sem_perm.gid = perm.gid;
        ds.sem_perm.mode = perm.mode as _;
        cvt(libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds))?;
    }
    Ok(id)
}

/// A SysV message: its type and its text.
pub type SysvMessage = (i64, Vec<u8>);

/// The queued messages of queue `id` (oldest first, left queued: MSG_COPY) and its byte
/// limit.
pub fn msg_queue(id: i32, count: usize) -> io::Result<(Vec<SysvMessage>, u64)> {
    const MSG_COPY: i32 = 0o40000;
    // SAFETY: msqid_ds is plain data written by the kernel.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the local struct.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    let max = ds.msg_qbytes as usize;
    let mut buf = vec![0u8; 8 + max];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `buf` has room for the type (8 bytes) and `max` bytes of text, as told.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, i as i64, libc::IPC_NOWAIT | MSG_COPY) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
        out.push((mtype, buf[8..8 + n as usize].to_vec()));
    }
    Ok((out, ds.msg_qbytes as u64))
}

/// Creates message queue `key` (IPC_EXCL) holding `messages`, with byte limit `qbytes`;
/// returns its id.
pub fn msg_create(key: i32, messages: &[SysvMessage], qbytes: u64, perm: IpcPerm) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    let id = cvt(unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    // SAFETY: msqid_ds is plain data read back from the kernel; each message is a local
    // buffer of its type then its text, whose text length is passed.
    unsafe {
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        cvt(libc::msgctl(id, libc::IPC_STAT, &mut ds))?;
        ds.msg_qbytes = qbytes as _;
        ds.msg_perm.uid = perm.uid;
        ds.msg_perm.gid = perm.gid;
        ds.msg_perm.mode = perm.mode as _;
        cvt(libc::msgctl(id, libc::IPC_SET, &mut ds))?;
        for (mtype, text) in messages {
            let mut buf = mtype.to_ne_bytes().to_vec();
            buf.extend_from_slice(text);
            cvt(libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT))?;
        }
    }
    Ok(id)
}

/// The size of SysV shared memory segment `shmid` (IPC_STAT), if it exists.
pub fn shm_size(shmid: i32) -> io::Result<u64> {
    // SAFETY: a zeroed shmid_ds is valid; IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a live local shmid_ds.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    Ok(ds.shm_segsz as u64)
}

/// Marks SysV shared memory segment `shmid` for removal (IPC_RMID).
pub fn shm_remove(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}
