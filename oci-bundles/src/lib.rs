//! OCI bundles as `stasis-runc` needs them: the container's config (what its runtime mounts
//! again), the shadow config a restore creates the container from, and `descriptors.json`
//! (the container init's stdio, as runc records it beside the images).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Why a bundle or a descriptors file could not be used; each names its path.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The largest config.json or descriptors.json read (both are untrusted input).
const MAX_JSON: u64 = 4 << 20;

fn read_json(path: &Path) -> Result<Value, BundleError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut text = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut text).map_err(io_err(path))?;
    if text.len() as u64 > MAX_JSON {
        return Err(BundleError::Invalid {
            path: path.to_owned(),
            what: format!("larger than {MAX_JSON} bytes"),
        });
    }
    serde_json::from_slice(&text).map_err(|source| BundleError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Writes `value` to `path` (mode 0600).
fn write_json(path: &Path, value: &Value) -> Result<(), BundleError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    let text = serde_json::to_vec_pretty(value).map_err(|source| BundleError::Json {
        path: path.to_owned(),
        source,
    })?;
    f.write_all(&text).map_err(io_err(path))
}

/// An OCI bundle: its directory and its config.json.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Loads `dir`/config.json.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::path::absolute(dir).map_err(io_err(dir))?;
        let config = read_json(&dir.join("config.json"))?;
        if !config.is_object() {
            return Err(BundleError::Invalid {
                path: dir.join("config.json"),
                what: "not a JSON object".into(),
            });
        }
        Ok(Bundle { dir, config })
    }

    /// The mount points the runtime makes in the container: its mounts, masked and read-only
    /// paths, its devices and runc's default ones (bound from ours, in a user namespace), and
    /// /dev/console (the console bound there) when its process has a terminal.
    pub fn declared_mounts(&self) -> Vec<String> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let mut out: Vec<String> = self.config["mounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["destination"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.extend(strings(&self.config["linux"]["maskedPaths"]));
        out.extend(strings(&self.config["linux"]["readonlyPaths"]));
        let devices = self.config["linux"]["devices"].as_array().into_iter().flatten();
        out.extend(devices.filter_map(|d| d["path"].as_str().map(str::to_owned)));
        out.extend(DEFAULT_DEVICES.map(str::to_owned));
        if self.terminal() {
            out.push("/dev/console".into());
        }
        out
    }

    /// The namespace kinds (as /proc/PID/ns names them) the config has the container join at
    /// a path instead of making them.
    pub fn joined_namespaces(&self) -> Vec<String> {
        self.config["linux"]["namespaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| n["path"].as_str().is_some_and(|p| !p.is_empty()))
                    .filter_map(|n| n["type"].as_str().map(ns_kind))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the config has the container in a namespace of `kind` (OCI's name: "user",
    /// "network"...) of its own or joined.
    pub fn joins_or_makes(&self, kind: &str) -> bool {
        self.config["linux"]["namespaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["type"] == kind))
    }

    /// The container's root directory, absolute.
    pub fn rootfs(&self) -> PathBuf {
        let root = self.config["root"]["path"].as_str().unwrap_or("rootfs");
        self.dir.join(root)
    }

    /// Whether the container's process has a terminal.
    pub fn terminal(&self) -> bool {
        self.config["process"]["terminal"].as_bool().unwrap_or(false)
    }

    /// The config a restore creates the container from: the same, but its process runs `exe`
    /// (the dumped root's program, present in the rootfs) as root with the capabilities in
    /// `caps` (a bit per capability: the restorer's own), so that it can become the restored
    /// tree; the tree gets its dumped credentials back. The root path is made absolute (the
    /// shadow lives elsewhere).
    pub fn shadow_config(&self, exe: &str, caps: u64) -> Value {
        let mut config = self.config.clone();
        config["root"]["path"] = json!(self.rootfs().to_string_lossy());
        let caps: Vec<String> = (0..64)
            .filter(|n| caps & (1u64 << n) != 0)
            .filter_map(cap_name)
            .map(str::to_owned)
            .collect();
        let process = &mut config["process"];
        process["args"] = json!([exe]);
        process["cwd"] = json!("/");
        process["user"] = json!({"uid": 0, "gid": 0});
        process["noNewPrivileges"] = json!(false);
        process["capabilities"] = json!({
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        });
        config
    }

    /// Writes the shadow config into `dir` (made 0700 if missing).
    pub fn write_shadow(&self, dir: &Path, exe: &str, caps: u64) -> Result<(), BundleError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        write_json(&dir.join("config.json"), &self.shadow_config(exe, caps))
    }
}

/// The devices runc gives every container (made with mknod, or bound from ours in a user
/// namespace).
pub const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// The /proc/PID/ns name of an OCI namespace type ("network" is "net", "mount" is "mnt").
pub fn ns_kind(oci: &str) -> String {
    match oci {
        "network" => "net",
        "mount" => "mnt",
        other => other,
    }
    .to_owned()
}

/// The capability named by number `n` (as runc's config names them).
fn cap_name(n: u32) -> Option<&'static str> {
    const NAMES: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    NAMES.get(n as usize).copied()
}

/// The name of `descriptors.json`, written beside the images.
pub const DESCRIPTORS: &str = "descriptors.json";

/// Writes what the init's fds 0-2 were (`/proc/PID/fd` link texts: `pipe:[N]`, a path...).
pub fn write_descriptors(images: &Path, fds: &[String]) -> Result<(), BundleError> {
    write_json(&images.join(DESCRIPTORS), &json!(fds))
}

/// Reads `descriptors.json`: what fds 0, 1, 2 of the init were; missing means none.
pub fn read_descriptors(images: &Path) -> Result<Vec<String>, BundleError> {
    let path = images.join(DESCRIPTORS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let v = read_json(&path)?;
    let list = v.as_array().ok_or_else(|| BundleError::Invalid {
        path: path.clone(),
        what: "not a list".into(),
    })?;
    list.iter()
        .take(3)
        .map(|s| {
            s.as_str().map(str::to_owned).ok_or_else(|| BundleError::Invalid {
                path: path.clone(),
                what: "an entry is not a string".into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle {
            dir: "/b".into(),
            config: json!({
                "root": {"path": "rootfs"},
                "process": {"args": ["sh"], "user": {"uid": 1000, "gid": 1000}, "terminal": true,
                            "env": ["A=1"], "capabilities": {"bounding": ["CAP_KILL"]}},
                "mounts": [{"destination": "/proc"}, {"destination": "/dev"}],
                "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                          "namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}],
                          "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}
            }),
        }
    }

    #[test]
    fn declared_mounts_include_masked_and_readonly_paths() {
        let mut want = vec!["/proc", "/dev", "/proc/kcore", "/proc/sys"];
        want.extend(DEFAULT_DEVICES);
        want.push("/dev/console");
        assert_eq!(bundle().declared_mounts(), want);
    }

    #[test]
    fn namespaces_joined_at_a_path() {
        assert_eq!(bundle().joined_namespaces(), ["net"]);
    }

    #[test]
    fn the_shadow_differs_only_in_process_and_root_path() {
        let b = bundle();
        let s = b.shadow_config("/bin/busybox", (1 << 41) - 1 - (1 << 24));
        assert_eq!(s["root"]["path"], "/b/rootfs");
        assert_eq!(s["process"]["args"], json!(["/bin/busybox"]));
        assert_eq!(s["process"]["user"]["uid"], 0);
        assert_eq!(s["process"]["terminal"], true, "the runtime makes the new console");
        assert_eq!(s["process"]["env"], json!(["A=1"]));
        let bounding = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), 40);
        assert!(!bounding.contains(&json!("CAP_SYS_RESOURCE")));
        assert_eq!(s["linux"], b.config["linux"], "seccomp and the rest untouched");
        assert_eq!(s["mounts"], b.config["mounts"]);
    }
}
