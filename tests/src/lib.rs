//! Shared helpers of the integration tests: where the fixtures and the reference tools are, and
//! `crit` as the oracle.

pub mod container;
pub mod containerd;
pub mod inet;
pub mod net;
pub mod podman;
pub mod scripted;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The CRIU 4.2 fixture dumps (`tests/fixtures/criu-4.2`, made by
/// `tests/fixtures/make-fixtures.sh`), one directory each.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/criu-4.2");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("readdir").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "expected the four CRIU fixture dumps in {} (tests/fixtures/make-fixtures.sh makes them)",
        root.display()
    );
    dirs
}

/// The cargo target directory this binary was built into (target/<profile>/deps/<test> or
/// target/<profile>/<bin>).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("profile dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    dir.parent().expect("target dir").to_path_buf()
}

/// A wrapper made by `scripts/reference-tools.sh` (`make test` runs it first).
fn reference_tool(name: &str) -> PathBuf {
    let tool = target_dir().join("reference-tools/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run scripts/reference-tools.sh (make test does)",
        tool.display()
    );
    tool
}

/// The reference CRIU of `version`: "4.1" (4.1.1, Debian trixie) or "4.2" (4.2.1, Debian forky),
/// each run through its own suite's glibc.
pub fn reference_criu(version: &str) -> PathBuf {
    assert!(
        ["4.1", "4.2"].contains(&version),
        "no reference CRIU {version}: 4.1 and 4.2 are fetched"
    );
    reference_tool(&format!("criu-{version}"))
}

/// checkpointctl (Debian forky's), the inspector of checkpoint archives: go-criu's reading of
/// the images, a second oracle besides crit.
pub fn checkpointctl() -> PathBuf {
    reference_tool("checkpointctl")
}

/// A binary of this workspace, built next to the test binaries (`make test` builds them first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> (tests) or target/<profile>/<bin> (the bench) -> target/<profile>/<name>
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        bin.display()
    );
    bin
}

/// Every file of a directory, sorted.
pub fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readdir").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `crit` with `args` and returns its stdout; fails loudly if crit is missing.
pub fn crit(args: &[&str]) -> String {
    let out = Command::new("crit").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run crit ({e}): install it with `apt-get install -y criu` (Debian's package ships crit)")
    });
    assert!(
        out.status.success(),
        "crit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("crit prints UTF-8")
}

/// `crit decode -i FILE` (plain, not --pretty: numbers stay numbers, enums become names).
pub fn crit_decode(path: &Path) -> Value {
    let text = crit(&["decode", "-i", path.to_str().expect("utf-8 path")]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("crit output for {} is not JSON: {e}", path.display()))
}

/// Decodes a base64 string as crit writes bytes (with line breaks).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Decodes quoted-printable, which crit uses for unix socket names.
pub fn quopri_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes our lowercase hex.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Fails the test with every difference found by [`json_diff`], if any.
pub fn assert_no_differences(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Fields that CRIU 4.x writes but Debian's crit (3.17) does not know; crit drops them.
pub const NEWER_THAN_CRIT: &[&str] = &[
    "nr_pages",
    "stop_signo",
    "membarrier_registration_mask",
    "cg_set",
    "no_new_privs",
    "cap_amb",
    "cet",
    "plugins_entry",
    "dump_criu_run_id",
    "allow_uprobes",
    "pre_dump_mode",
    "tcp_close",
    "network_lock_method",
    "tcp_opts",
    "pktinfo",
    "tos",
    "ttl",
    "ipv4_sysctl",
    "pidfd",
    "mode",
    "time_ns_id",
    "rseq_entry",
    "child_subreaper",
    "blk_sigset_extended",
    "shutdown",
    "mnt_id",
    "xattr_security_selinux",
    "is_threaded",
];

/// crit 3.17 knows pagemap field 2 as `nr_pages`; CRIU 4.x renamed it `compat_nr_pages` and
/// added the 64-bit `nr_pages` as field 5. Returns our name for crit's field `k` in `ours`.
fn our_name<'a>(ours: &serde_json::Map<String, Value>, k: &'a str) -> &'a str {
    if k == "nr_pages" && ours.contains_key("compat_nr_pages") {
        "compat_nr_pages"
    } else {
        k
    }
}

/// Compares our JSON of an image (`ours`) with crit's (`theirs`), at `at` (for messages).
/// Numbers and strings must be equal; crit's base64/quoted-printable bytes must equal our hex;
/// every field crit shows must be ours too; fields only we show must be newer than crit.
/// Returns the list of differences (empty when they agree).
pub fn json_diff(ours: &Value, theirs: &Value, at: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let here = format!("{at}.{k}");
                match a.get(our_name(a, k)) {
                    Some(va) => json_diff(va, vb, &here, out),
                    // crit renders "extra" of list-valued payloads (ipc) differently; we show hex.
                    None => out.push(format!("{here}: crit shows it, we do not")),
                }
            }
            let renamed: Vec<&str> = b.keys().map(|k| our_name(a, k)).collect();
            for k in a.keys() {
                if !renamed.contains(&k.as_str())
                    && !NEWER_THAN_CRIT.contains(&k.as_str())
                    && k != "extra_len"
                    && k != "file"
                {
                    out.push(format!("{at}.{k}: we show it, crit does not"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{at}: {} items here, {} in crit", a.len(), b.len()));
                return;
            }
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                json_diff(va, vb, &format!("{at}[{i}]"), out);
            }
        }
        (Value::String(a), Value::String(b)) if a == b => {}
        (Value::String(a), Value::String(b)) => {
            let ours = hex_decode(a);
            let same = ours.is_some() && (base64_decode(b) == ours || quopri_decode(b) == ours);
            if !same {
                out.push(format!("{at}: {a:?} here, {b:?} in crit"));
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at}: {a} here, {b} in crit")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diff(a: Value, b: Value) -> Vec<String> {
        let mut out = Vec::new();
        json_diff(&a, &b, "x", &mut out);
        out
    }

    #[test]
    fn the_comparator_notices_every_kind_of_difference() {
        assert!(diff(json!({"a": 1, "s": "abc"}), json!({"a": 1, "s": "abc"})).is_empty());
        assert_eq!(diff(json!({"a": 1}), json!({"a": 2})).len(), 1);
        assert_eq!(diff(json!({"a": [1, 2]}), json!({"a": [1]})).len(), 1);
        assert_eq!(
            diff(json!({}), json!({"a": 1})).len(),
            1,
            "a field crit shows must be ours"
        );
        assert_eq!(
            diff(json!({"zzz": 1}), json!({})).len(),
            1,
            "a field only we show must be known-newer"
        );
        assert!(diff(json!({"nr_pages": 5}), json!({})).is_empty());
        // bytes: our hex against crit's base64 ("AAEC" = 00 01 02) and quoted-printable
        assert!(diff(json!({"b": "000102"}), json!({"b": "AAEC\n"})).is_empty());
        assert_eq!(diff(json!({"b": "000103"}), json!({"b": "AAEC\n"})).len(), 1);
        assert!(diff(json!({"n": "002f78"}), json!({"n": "=00/x"})).is_empty());
        // pagemap renaming
        assert!(diff(
            json!({"vaddr": 1, "compat_nr_pages": 3, "nr_pages": 3}),
            json!({"vaddr": 1, "nr_pages": 3})
        )
        .is_empty());
        assert_eq!(
            diff(
                json!({"vaddr": 1, "compat_nr_pages": 2}),
                json!({"vaddr": 1, "nr_pages": 3})
            )
            .len(),
            1
        );
    }
}
