//! cgroups of a container: its runtime makes them again from its config, so what is saved is
//! what the config may no longer say — the controller settings changed while it ran (`runc
//! update`...). They go to `cgroup.img` (CRIU's layout: the tasks' memberships, and per
//! controller its directory and properties) and are written again into the new container's
//! cgroups when the caller asks (`--manage-cgroups-mode full` or `strict`, as with CRIU).

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

/// Where the hierarchy of `controllers` ("cpu,cpuacct"; "" for v2) is mounted here.
fn hierarchy_root(controllers: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mounts = super::mnt::parse_mountinfo(&text)?;
    mounts
        .iter()
        .find(|m| {
            if controllers.is_empty() {
                return m.fstype == "cgroup2";
            }
            m.fstype == "cgroup" && {
                let opts: Vec<&str> = m.fs_options.split(',').collect();
                controllers.split(',').all(|c| opts.contains(&c))
            }
        })
        .map(|m| m.mount_point.clone())
}

/// The directory of `pid`'s cgroup for each hierarchy, with the hierarchy's controllers.
fn dirs(pid: i32) -> std::io::Result<Vec<(String, String, std::path::PathBuf)>> {
    Ok(memberships(pid)?
        .into_iter()
        .filter_map(|(ctl, path)| {
            let root = hierarchy_root(&ctl)?;
            let dir = std::path::Path::new(&root).join(path.trim_start_matches('/'));
            Some((ctl, path, dir))
        })
        .collect())
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
