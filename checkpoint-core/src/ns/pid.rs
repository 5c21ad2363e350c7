//! PID namespaces: a container's tree is dumped with the pids it sees (the last NSpid level),
//! and its root must be that namespace's init.

use std::collections::BTreeMap;

/// Maps our pids of a container's tasks to theirs.
#[derive(Clone, Debug, Default)]
pub struct PidMap {
    inner: BTreeMap<i32, i32>,
}

impl PidMap {
    /// Adds task `host` (a pid or tid) with the pid it has in its own namespace.
    pub fn add(&mut self, host: i32) -> Result<(), String> {
        let own = levels(host)
            .and_then(|l| l.last().copied())
            .ok_or_else(|| format!("/proc/{host}/status: no NSpid"))?;
        self.inner.insert(host, own);
        Ok(())
    }

    /// The pid `host` has inside; pids outside the tree (a parent, a session leader out of
    /// the container) are 0 there, as the kernel shows them.
    pub fn inside(&self, host: i32) -> i32 {
        if self.inner.is_empty() {
            return host;
        }
        self.inner.get(&host).copied().unwrap_or(0)
    }
}

/// The process group and session of `host` as its innermost pid namespace sees them (the
/// last fields of NSpgid and NSsid: a leader gone is still named there; 0 for one outside).
pub fn inside_group_and_session(host: i32) -> Option<(i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{host}/status")).ok()?;
    let last = |key: &str| -> Option<i32> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    Some((last("NSpgid")?, last("NSsid")?))
}

/// The pids of `host` in each pid namespace, ours first.
pub fn levels(host: i32) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(format!("/proc/{host}/status")).ok()?;
    Some(crate::procfs::parse_status(&text)?.nspid)
}
