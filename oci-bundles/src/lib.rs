//! OCI bundles as `stasis-runc` needs them: the container's config (what its runtime mounts
//! again), the shadow config a restore creates the container from, and `descriptors.json`
//! (the container init's stdio, as runc records it beside the images).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxNamespace, Spec};
use serde::Deserialize;
use serde_json::{json, Value};

pub use oci_spec::runtime::LinuxNamespaceType;

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

/// The bytes of `path`, at most [`MAX_JSON`] of them.
fn read_text(path: &Path) -> Result<Vec<u8>, BundleError> {
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
    Ok(text)
}

/// Parses `text` (read from `path`) as JSON of type `T`.
fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &[u8]) -> Result<T, BundleError> {
    serde_json::from_slice(text).map_err(|source| BundleError::Json {
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

/// An OCI bundle: its directory and its config.json, held twice. Every decision is made
/// from the typed [`Spec`]; the shadow config is written from the document as it was, because
/// oci-spec's `Spec` keeps only the fields it knows: a config re-serialised from it would lose
/// a vendor's extensions and any field of a newer runtime-spec, which the delegate runtime may
/// well understand.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    /// The config, typed.
    pub spec: Spec,
    /// The config as its JSON document, every field kept.
    document: Value,
}

impl Bundle {
    /// Loads `dir`/config.json; it must be a runtime-spec config (as oci-spec reads it).
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::path::absolute(dir).map_err(io_err(dir))?;
        let path = dir.join("config.json");
        let text = read_text(&path)?;
        let document: Value = parse(&path, &text)?;
        Bundle::from_document(dir, document).map_err(|what| BundleError::Invalid { path, what })
    }

    /// The bundle in `dir` whose config is `document`.
    fn from_document(dir: PathBuf, document: Value) -> Result<Bundle, String> {
        if !document.is_object() {
            return Err("not a JSON object".into());
        }
        let spec = Spec::deserialize(&document).map_err(|e| format!("not an OCI runtime config: {e}"))?;
        Ok(Bundle { dir, spec, document })
    }

    /// The config's Linux part, if it has one.
    fn linux(&self) -> Option<&Linux> {
        self.spec.linux().as_ref()
    }

    /// The namespaces the config lists.
    fn namespaces(&self) -> &[LinuxNamespace] {
        self.linux().and_then(|l| l.namespaces().as_deref()).unwrap_or_default()
    }

    /// The mount points the runtime makes in the container: its mounts, masked and read-only
    /// paths, its devices and runc's default ones (bound from ours, in a user namespace), and
    /// /dev/console (the console bound there) when its process has a terminal.
    pub fn declared_mounts(&self) -> Vec<String> {
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let mounts = self.spec.mounts().as_deref().unwrap_or_default();
        let mut out: Vec<String> = mounts.iter().map(|m| text(m.destination())).collect();
        if let Some(linux) = self.linux() {
            out.extend(linux.masked_paths().iter().flatten().cloned());
            out.extend(linux.readonly_paths().iter().flatten().cloned());
            let devices = linux.devices().iter().flatten().map(|d| text(d.path()));
            out.extend(devices.filter(|p| !p.is_empty()));
        }
        out.extend(DEFAULT_DEVICES.map(str::to_owned));
        if self.terminal() {
            out.push("/dev/console".into());
        }
        out
    }

    /// The namespace kinds (as /proc/PID/ns names them) the config has the container join at
    /// a path instead of making them.
    pub fn joined_namespaces(&self) -> Vec<String> {
        self.namespaces()
            .iter()
            .filter(|n| n.path().as_ref().is_some_and(|p| !p.as_os_str().is_empty()))
            .map(|n| n.typ().to_string())
            .collect()
    }

    /// Whether the config has the container in a namespace of `kind` of its own or joined.
    pub fn joins_or_makes(&self, kind: LinuxNamespaceType) -> bool {
        self.namespaces().iter().any(|n| n.typ() == kind)
    }

    /// The container's root directory, absolute (`rootfs` in the bundle if the config names
    /// none).
    pub fn rootfs(&self) -> PathBuf {
        let root = self.spec.root().as_ref().map(|r| r.path().as_path());
        self.dir.join(
            root.filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("rootfs")),
        )
    }

    /// The value of the config's annotation `key`, if it has it.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec.annotations().as_ref()?.get(key).map(String::as_str)
    }

    /// Whether the container's process has a terminal.
    pub fn terminal(&self) -> bool {
        self.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false)
    }

    /// The config a restore creates the container from: the same, but its process runs `exe`
    /// (the dumped root's program, present in the rootfs) as root with the capabilities in
    /// `caps` (a bit per capability: the restorer's own), so that it can become the restored
    /// tree; the tree gets its dumped credentials back. The root path is made absolute (the
    /// shadow lives elsewhere).
    ///
    /// Made from the config's JSON document, not from the typed [`Spec`]: only the members
    /// named here are replaced, every other field (a vendor's, a newer runtime-spec's, one
    /// inside `process` or `linux`) is carried over as it was read.
    pub fn shadow_config(&self, exe: &str, caps: u64) -> Value {
        let mut config = self.document.clone();
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

/// The /proc/PID/ns name of an OCI namespace type ("network" is "net", "mount" is "mnt");
/// a name oci-spec does not know is kept as it is.
pub fn ns_kind(oci: &str) -> String {
    LinuxNamespaceType::try_from(oci).map_or_else(|_| oci.to_owned(), |t| t.to_string())
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
    let mut list: Vec<String> = parse(&path, &read_text(&path)?)?;
    list.truncate(3);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle::from_document(
            "/b".into(),
            json!({
                "root": {"path": "rootfs"},
                "ociVersion": "1.0.2-dev",
                "process": {"args": ["sh"], "cwd": "/home", "user": {"uid": 1000, "gid": 1000}, "terminal": true,
                            "env": ["A=1"], "capabilities": {"bounding": ["CAP_KILL"]}},
                "mounts": [{"destination": "/proc"}, {"destination": "/dev"}],
                "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                          "namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}],
                          "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}
            }),
        )
        .unwrap()
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
        assert!(bundle().joins_or_makes(LinuxNamespaceType::Network));
        assert!(!bundle().joins_or_makes(LinuxNamespaceType::User));
    }

    #[test]
    fn namespace_kinds_by_their_proc_names() {
        let kinds = [
            "network", "mount", "pid", "ipc", "uts", "user", "cgroup", "time", "other",
        ];
        let want = ["net", "mnt", "pid", "ipc", "uts", "user", "cgroup", "time", "other"];
        assert_eq!(kinds.map(ns_kind), want);
    }

    #[test]
    fn a_config_that_is_no_runtime_config_is_refused() {
        let refused = |doc| Bundle::from_document("/b".into(), doc).unwrap_err();
        assert_eq!(refused(json!([1])), "not a JSON object");
        let e = refused(json!({"mounts": [{"type": "proc"}]}));
        assert!(
            e.starts_with("not an OCI runtime config: missing field `destination`"),
            "{e}"
        );
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
        assert_eq!(s["linux"], b.document["linux"], "seccomp and the rest untouched");
        assert_eq!(s["mounts"], b.document["mounts"]);
    }
}
