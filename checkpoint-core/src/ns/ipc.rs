//! IPC namespaces: a container's is made again empty by its runtime, so one holding SysV
//! objects or POSIX message queues is refused (their contents are not saved).

/// How many SysV shared memory segments, message queues and semaphore sets live in `pid`'s
/// IPC namespace, and the POSIX message queues its /dev/mqueue shows.
pub fn objects(pid: i32) -> std::io::Result<Vec<(&'static str, usize)>> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/ipc"))?;
    let mut found = crate::sys::sysvipc_counts(&ns)?;
    let mqueue = format!("/proc/{pid}/root/dev/mqueue");
    if let Ok(dir) = std::fs::read_dir(&mqueue) {
        found.push(("POSIX message queue", dir.count()));
    }
    Ok(found.into_iter().filter(|&(_, n)| n > 0).collect())
}
