//! Mount namespaces: a container's mounts are made again by its runtime from its config. A
//! mount it does not declare (made inside the container at run time) and a tmpfs holding
//! files would be lost, so they are refused before anything is frozen.

use std::collections::BTreeSet;

/// One line of /proc/PID/mountinfo, as far as Stasis needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: i32,
    pub parent: i32,
    pub mount_point: String,
    pub fstype: String,
}

/// Parses /proc/PID/mountinfo (octal escapes in paths decoded); `None` if a line is malformed.
pub fn parse_mountinfo(text: &str) -> Option<Vec<Mount>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            Some(Mount {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                mount_point: unescape(f.get(4)?),
                fstype: right.split(' ').next()?.to_owned(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container's mounts (those of `pid`'s mount namespace), checked against what its
/// runtime declares; returns their ids (open files on other mounts are outside the
/// container).
pub fn check(pid: i32, declared: &[String]) -> Result<BTreeSet<i32>, String> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mounts = parse_mountinfo(&text).ok_or_else(|| format!("{path}: unreadable"))?;
    let declared: BTreeSet<&str> = declared.iter().map(|d| d.trim_end_matches('/')).collect();
    let by_id = |id: i32| mounts.iter().find(|m| m.id == id);
    for (i, m) in mounts.iter().enumerate() {
        let mp = m.mount_point.as_str();
        // The root, declared mounts, and what the runtime mounts below a declared cgroup
        // directory (one mount per v1 hierarchy).
        let under_cgroup =
            by_id(m.parent).is_some_and(|p| p.mount_point == "/sys/fs/cgroup" && declared.contains("/sys/fs/cgroup"));
        let known = (i == 0 && mp == "/") || declared.contains(mp) || under_cgroup;
        if !known {
            return Err(format!(
                "{} mount at {mp} was made inside the container: it cannot be restored",
                m.fstype
            ));
        }
        // tmpfs contents are not saved: one the workload wrote into must not be lost. The
        // runtime fills /dev itself; /sys/fs/cgroup holds only mount points.
        if m.fstype == "tmpfs" && !matches!(mp, "/dev" | "/sys/fs/cgroup") {
            let dir = format!("/proc/{pid}/root{mp}");
            if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(format!(
                    "the tmpfs at {mp} holds files: tmpfs contents are not saved yet"
                ));
            }
        }
    }
    Ok(mounts.iter().map(|m| m.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_and_escapes() {
        let text = "65 43 254:0 /tmp/b/rootfs / rw,relatime - ext4 /dev/vda rw\n\
                    73 72 0:29 /c1 /sys/fs/cgroup/cpu ro,nosuid shared:5 - cgroup cgroup rw,cpu\n\
                    90 65 0:50 / /a\\040b rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, "/sys/fs/cgroup/cpu");
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(m[2].mount_point, "/a b");
        assert_eq!(m[2].parent, 65);
        assert!(parse_mountinfo("garbage\n").is_none());
    }
}
