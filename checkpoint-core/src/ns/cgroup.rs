//! cgroups of a container: its runtime makes them again from its config, so what is saved is
//! what the config may no longer say — the controller settings changed while it ran (`runc
//! update`...). They go to `cgroup.img` (CRIU's layout: the tasks' memberships, and per
//! controller its directory and properties) and are written again into the new container's
//! cgroups when the caller asks (`--manage-cgroups-mode full` or `strict`, as with CRIU).
//!
//! The layout is read here from /proc/PID/cgroup and our mountinfo, not with cgroups-rs 0.5.1,
//! which was measured on a hybrid machine (v1 controllers under /sys/fs/cgroup/*, cgroup2 at
//! /sys/fs/cgroup/unified; a runc container's init as the task):
//! - wrong for cgroup v2 there: `hierarchies::auto()` takes the machine for v1
//!   (`is_cgroup2_unified_mode()` looks at /sys/fs/cgroup only), its v1 view keeps `cgroup`
//!   mounts only, and `V2::new()` has its root fixed at /sys/fs/cgroup (no controllers found):
//!   the task's `0::/ocexp` has no directory, so its v2 settings and freezer would be lost;
//! - right for v1: the nine hierarchies, and the task's directory in each, even the memory one
//!   nested below another cgroup (`get_cgroups_relative_paths_by_pid` then
//!   `Cgroup::load_with_relative_paths`), and `procs()` of it; but its per-task map has one
//!   key per controller, so a co-mounted `cpu,cpuacct` hierarchy (none here; by its code) is
//!   no longer one entry, which cgroup.img needs;
//! - its controller readers parse values (`pids.max` "max" becomes `MaxValue::Max`, limits
//!   become integers), while cgroup.img keeps each file's text.
//!
//! Its v1 half beside our own v2 would be two rules for one layout, so none of it is used (the
//! shim gets cgroups-rs anyway, through containerd-shim).

use crate::image::pb::{CgControllerEntry, CgMemberEntry, CgSetEntry, CgroupDirEntry, CgroupEntry, CgroupPropEntry};

/// The settings saved, per controller, in the order they are written back (a period before
/// its quota).
const PROPERTIES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.weight",
            "cpu.max",
        ],
    ),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.min",
            "memory.low",
            "memory.high",
            "memory.max",
        ],
    ),
    ("pids", &["pids.max"]),
    ("blkio", &["blkio.weight"]),
];

/// One line of /proc/PID/cgroup: hierarchy controllers ("" for v2) and path.
fn memberships(pid: i32) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctl.to_owned(), path.to_owned()))
        })
        .collect())
}

/// The cgroup hierarchies mounted here: (fstype, superblock options, mount point).
fn hierarchies() -> std::io::Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = super::mnt::parse_mountinfo(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/self/mountinfo: unreadable line"))?;
    Ok(mounts
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| (m.fstype, m.fs_options, m.mount_point))
        .collect())
}

/// Where the hierarchy of `controllers` ("cpu,cpuacct"; "" for v2) is mounted, among
/// `mounted` (see [`hierarchies`]).
fn hierarchy_root<'a>(mounted: &'a [(String, String, String)], controllers: &str) -> Option<&'a str> {
    mounted
        .iter()
        .find(|(fstype, options, _)| {
            if controllers.is_empty() {
                return fstype == "cgroup2";
            }
            fstype == "cgroup" && {
                let opts: Vec<&str> = options.split(',').collect();
                controllers.split(',').all(|c| opts.contains(&c))
            }
        })
        .map(|(_, _, point)| point.as_str())
}

/// The directory of `pid`'s cgroup for each hierarchy, with the hierarchy's controllers.
fn dirs(pid: i32) -> std::io::Result<Vec<(String, String, std::path::PathBuf)>> {
    let mounted = hierarchies()?;
    Ok(memberships(pid)?
        .into_iter()
        .filter_map(|(ctl, path)| {
            let root = hierarchy_root(&mounted, &ctl)?;
            let dir = std::path::Path::new(root).join(path.trim_start_matches('/'));
            Some((ctl, path, dir))
        })
        .collect())
}

/// The cgroup directory through which `pid` can be frozen: its cgroup of the v1 freezer
/// hierarchy, unless that is the root; else its cgroup v2 one.
pub fn freezer_dir(pid: i32) -> std::io::Result<std::path::PathBuf> {
    freezer_among(&dirs(pid)?).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("pid {pid}: no freezer cgroup (neither a v1 freezer nor a cgroup v2 one is mounted)"),
        )
    })
}

/// The freezer directory among a task's cgroup directories (see [`freezer_dir`]).
fn freezer_among(dirs: &[(String, String, std::path::PathBuf)]) -> Option<std::path::PathBuf> {
    let v1 = dirs
        .iter()
        .find(|(ctl, path, _)| ctl.split(',').any(|c| c == "freezer") && !path.trim_start_matches('/').is_empty());
    let v2 = || dirs.iter().find(|(ctl, _, _)| ctl.is_empty());
    v1.or_else(v2).map(|(_, _, dir)| dir.clone())
}

/// `pid`'s memberships and the settings of its cgroups.
pub fn dump(pid: i32) -> std::io::Result<CgroupEntry> {
    let mut ctls = Vec::new();
    let mut controllers = Vec::new();
    for (ctl, path, dir) in dirs(pid)? {
        ctls.push(CgMemberEntry {
            name: ctl.clone(),
            path: path.clone(),
            cgns_prefix: None,
        });
        let names: Vec<&str> = if ctl.is_empty() {
            PROPERTIES.iter().map(|(c, _)| *c).collect()
        } else {
            ctl.split(',').collect()
        };
        let properties: Vec<CgroupPropEntry> = PROPERTIES
            .iter()
            .filter(|(c, _)| names.contains(c))
            .flat_map(|(_, props)| props.iter())
            .filter_map(|p| {
                let value = std::fs::read_to_string(dir.join(p)).ok()?;
                Some(CgroupPropEntry {
                    name: (*p).to_owned(),
                    value: value.trim_end().to_owned(),
                    perms: None,
                })
            })
            .collect();
        if properties.is_empty() {
            continue;
        }
        controllers.push(CgControllerEntry {
            cnames: if ctl.is_empty() {
                Vec::new()
            } else {
                ctl.split(',').map(str::to_owned).collect()
            },
            dirs: vec![CgroupDirEntry {
                dir_name: path,
                children: Vec::new(),
                properties,
                dir_perms: None,
            }],
            is_threaded: None,
        });
    }
    Ok(CgroupEntry {
        sets: vec![CgSetEntry { id: 1, ctls }],
        controllers,
    })
}

/// Writes the saved settings into `pid`'s cgroups (a new container's init, already in the
/// cgroups its runtime made); returns how many were written.
pub fn apply(pid: i32, saved: &CgroupEntry) -> Result<usize, String> {
    let here = dirs(pid).map_err(|e| format!("pid {pid}: its cgroups: {e}"))?;
    let mut written = 0;
    for c in &saved.controllers {
        let key = c.cnames.join(",");
        let Some((_, _, dir)) = here.iter().find(|(ctl, _, _)| *ctl == key) else {
            return Err(format!(
                "pid {pid} has no cgroup for the controllers {key:?} it was dumped with"
            ));
        };
        for p in c.dirs.iter().flat_map(|d| &d.properties) {
            // Only known settings, by bare name: the image cannot point anywhere else.
            if !PROPERTIES.iter().any(|(_, props)| props.contains(&p.name.as_str())) {
                return Err(format!("cgroup.img: {:?} is not a setting Stasis writes", p.name));
            }
            let now = std::fs::read_to_string(dir.join(&p.name)).unwrap_or_default();
            if now.trim_end() == p.value {
                continue;
            }
            std::fs::write(dir.join(&p.name), &p.value)
                .map_err(|e| format!("{}: writing {:?}: {e}", dir.join(&p.name).display(), p.value))?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's hybrid layout: v1 controllers each on its own, cgroup2 under `unified`.
    fn hybrid() -> Vec<(String, String, String)> {
        let v1 = ["cpu", "cpuacct", "cpuset", "memory", "freezer", "pids", "name=systemd"];
        let mut out: Vec<(String, String, String)> = v1
            .iter()
            .map(|c| {
                let dir = c.trim_start_matches("name=");
                ("cgroup".into(), format!("rw,{c}"), format!("/sys/fs/cgroup/{dir}"))
            })
            .collect();
        out.push(("cgroup2".into(), "rw".into(), "/sys/fs/cgroup/unified".into()));
        out
    }

    #[test]
    fn hierarchies_of_a_hybrid_layout() {
        let h = hybrid();
        assert_eq!(hierarchy_root(&h, "memory"), Some("/sys/fs/cgroup/memory"));
        assert_eq!(hierarchy_root(&h, "name=systemd"), Some("/sys/fs/cgroup/systemd"));
        assert_eq!(hierarchy_root(&h, ""), Some("/sys/fs/cgroup/unified"));
        assert_eq!(hierarchy_root(&h, "cpu,cpuacct"), None, "not co-mounted here");
        let comounted = [(
            "cgroup".into(),
            "rw,cpu,cpuacct".into(),
            "/sys/fs/cgroup/cpu,cpuacct".into(),
        )];
        assert_eq!(
            hierarchy_root(&comounted, "cpu,cpuacct"),
            Some("/sys/fs/cgroup/cpu,cpuacct")
        );
    }

    #[test]
    fn the_v1_freezer_first_then_cgroup_v2() {
        let dir = |ctl: &str, path: &str, d: &str| (ctl.to_owned(), path.to_owned(), std::path::PathBuf::from(d));
        let both = [dir("freezer", "/c", "/f/c"), dir("", "/c", "/u/c")];
        assert_eq!(freezer_among(&both), Some("/f/c".into()));
        let v1_root = [dir("freezer", "/", "/f/"), dir("", "/c", "/u/c")];
        assert_eq!(
            freezer_among(&v1_root),
            Some("/u/c".into()),
            "the v1 root cannot be frozen"
        );
        let v2_only = [dir("", "/c", "/sys/fs/cgroup/c")];
        assert_eq!(freezer_among(&v2_only), Some("/sys/fs/cgroup/c".into()));
        assert_eq!(freezer_among(&[dir("memory", "/c", "/m/c")]), None);
    }
}
