//! Network namespaces: a container's namespace is made again by its runtime with a loopback
//! device only; one holding other devices is refused (their state is not saved).

/// The network devices of `pid`'s network namespace (/proc/PID/net/dev).
pub fn devices(pid: i32) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect())
}
