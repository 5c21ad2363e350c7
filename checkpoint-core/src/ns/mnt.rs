//! Mount namespaces: a container's mounts are made again by its runtime from its config. A
//! mount it does not declare (made inside the container at run time) and a tmpfs holding
//! files would be lost, so they are refused before anything is frozen.

use std::collections::BTreeSet;

/// One line of /proc/PID/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: i32,
    pub parent: i32,
    /// major:minor of the filesystem.
    pub dev: (u32, u32),
    /// The directory of the filesystem mounted there.
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (rw, nosuid...).
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// Superblock options.
    pub fs_options: String,
}

/// Parses /proc/PID/mountinfo (octal escapes in paths decoded); `None` if a line is malformed.
pub fn parse_mountinfo(text: &str) -> Option<Vec<Mount>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            Some(Mount {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                dev: (major.parse().ok()?, minor.parse().ok()?),
                root: unescape(f.get(3)?),
                mount_point: unescape(f.get(4)?),
                options: f.get(5)?.to_string(),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1).unwrap_or(&"")),
                fs_options: r.get(2).unwrap_or(&"").to_string(),
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

/// A container's mount namespace as the dump sees it.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub mounts: Vec<Mount>,
    /// Ids of its mounts (open files on other mounts are outside the container).
    pub ids: BTreeSet<i32>,
    /// The tmpfs mounts whose contents are saved (all but /dev, which the runtime fills, and
    /// the mount points below /sys/fs/cgroup).
    pub tmpfs: Vec<(i32, String)>,
    /// Mounts the container made itself (tmpfs only): mounted again on restore.
    pub made_inside: BTreeSet<i32>,
}

/// The container's mounts (those of `pid`'s mount namespace), checked against what its
/// runtime declares.
pub fn check(pid: i32, declared: &[String]) -> Result<View, String> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mounts = parse_mountinfo(&text).ok_or_else(|| format!("{path}: unreadable"))?;
    let declared: BTreeSet<&str> = declared.iter().map(|d| d.trim_end_matches('/')).collect();
    let by_id = |id: i32| mounts.iter().find(|m| m.id == id);
    let mut made_inside = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let mp = m.mount_point.as_str();
        let parent = by_id(m.parent).map(|p| p.mount_point.as_str());
        if (i == 0 && mp == "/") || runtimes(mp, parent, &declared) {
            continue;
        }
        // A tmpfs the container mounted itself is mounted again (its contents saved too).
        if m.fstype != "tmpfs" {
            return Err(format!(
                "{} mount at {mp} was made inside the container: only tmpfs mounts are made again",
                m.fstype
            ));
        }
        made_inside.insert(m.id);
    }
    // tmpfs contents are saved (read once the tree is frozen): not /dev, whose devices the
    // runtime makes, nor /sys/fs/cgroup, which holds only mount points.
    let tmpfs = mounts
        .iter()
        .filter(|m| m.fstype == "tmpfs" && !matches!(m.mount_point.as_str(), "/dev" | "/sys/fs/cgroup"))
        .map(|m| (m.id, m.mount_point.clone()))
        .collect();
    Ok(View {
        ids: mounts.iter().map(|m| m.id).collect(),
        tmpfs,
        made_inside,
        mounts,
    })
}

/// Whether the mount at `mount_point` (below the one at `parent`) is one the container's
/// runtime makes besides its root: a declared mount point, or a hierarchy it mounts below a
/// declared /sys/fs/cgroup (one mount per v1 hierarchy).
pub fn runtimes(mount_point: &str, parent: Option<&str>, declared: &BTreeSet<&str>) -> bool {
    declared.contains(mount_point) || (parent == Some("/sys/fs/cgroup") && declared.contains("/sys/fs/cgroup"))
}

/// Mount flags (MS_*) from per-mount options.
fn flags(options: &str) -> u32 {
    let mut flags = 0;
    for o in options.split(',') {
        flags |= match o {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            _ => 0,
        } as u32;
    }
    flags
}

/// `mountpoints-N.img` entries for the container's mounts: each declared one is external (its
/// runtime mounts it again, keyed by its mount point); the container's own are not.
pub fn entries(view: &View) -> Vec<crate::image::pb::MntEntry> {
    use crate::image::pb::Fstype;
    view.mounts
        .iter()
        .map(|m| {
            let external = !view.made_inside.contains(&m.id);
            let fstype = match m.fstype.as_str() {
                "proc" => Fstype::Proc,
                "sysfs" => Fstype::Sysfs,
                "devtmpfs" => Fstype::Devtmpfs,
                "tmpfs" => Fstype::Tmpfs,
                "devpts" => Fstype::Devpts,
                "cgroup" => Fstype::Cgroup,
                "cgroup2" => Fstype::Cgroup2,
                "mqueue" => Fstype::Mqueue,
                "overlay" => Fstype::Overlayfs,
                _ => Fstype::Auto,
            };
            crate::image::pb::MntEntry {
                fstype: fstype as u32,
                mnt_id: m.id as u32,
                // The kernel's encoding of a device number (as CRIU's images hold it).
                root_dev: (m.dev.0 << 20) | m.dev.1,
                parent_mnt_id: m.parent as u32,
                flags: flags(&m.options),
                root: m.root.clone(),
                mountpoint: m.mount_point.clone(),
                source: m.source.clone(),
                options: m.fs_options.clone(),
                fsname: (fstype == Fstype::Auto).then(|| m.fstype.clone()),
                ext_mount: Some(external),
                ext_key: external.then(|| m.mount_point.clone()),
                sb_flags: Some(flags(&m.fs_options)),
                ..Default::default()
            }
        })
        .collect()
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
        assert_eq!(m[1].root, "/c1");
        assert_eq!(m[1].dev, (0, 29));
        assert_eq!(m[1].options, "ro,nosuid");
        assert_eq!(m[1].fs_options, "rw,cpu");
        assert_eq!(m[2].mount_point, "/a b");
        assert_eq!(m[2].parent, 65);
        assert!(parse_mountinfo("garbage\n").is_none());
    }
}
