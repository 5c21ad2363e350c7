//! User namespaces: a container's processes are saved with the ids they have inside their
//! user namespace (its uid_map and gid_map translate ours), so that the restored tree, made in
//! the new container's user namespace, takes them again there. What the controller makes
//! itself (files, SysV objects) keeps our view of their owners on both sides.

/// The uid and gid maps of a task in a user namespace other than ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maps {
    /// (inside, outside, count) extents.
    uid: Vec<(u32, u32, u32)>,
    gid: Vec<(u32, u32, u32)>,
}

fn parse(text: &str) -> Option<Vec<(u32, u32, u32)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<u32> = l.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

/// The id `outside` (ours) names inside; the overflow id (65534) if unmapped, as the kernel
/// shows it.
fn inside(map: &[(u32, u32, u32)], outside: u32) -> u32 {
    map.iter()
        .find(|&&(_, out, n)| outside >= out && outside - out < n)
        .map_or(65534, |&(ins, out, _)| ins + (outside - out))
}

impl Maps {
    /// `pid`'s maps, if it is in a user namespace other than ours.
    pub fn of(pid: i32) -> Option<Maps> {
        if super::inode("self", "user") == super::inode(&pid.to_string(), "user") {
            return None;
        }
        let read = |f: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/{f}"))
                .ok()
                .and_then(|t| parse(&t))
        };
        Some(Maps {
            uid: read("uid_map")?,
            gid: read("gid_map")?,
        })
    }

    /// `status` with its ids as seen inside.
    pub fn status_inside(&self, mut status: crate::procfs::Status) -> crate::procfs::Status {
        for u in &mut status.uids {
            *u = inside(&self.uid, *u);
        }
        for g in status.gids.iter_mut().chain(status.groups.iter_mut()) {
            *g = inside(&self.gid, *g);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_through_the_maps() {
        let map = parse("         0     100000      65536\n").unwrap();
        assert_eq!(inside(&map, 100000), 0);
        assert_eq!(inside(&map, 100033), 33);
        assert_eq!(inside(&map, 0), 65534);
        assert!(parse("0 1\n").is_none());
    }
}
