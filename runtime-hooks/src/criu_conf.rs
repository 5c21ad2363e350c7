//! CRIU's configuration file for containers run by runc: runc hands CRIU
//! `/etc/criu/runc.conf`, or the file the container's `org.criu.config` annotation names (an
//! empty annotation: none). Its options (one per line, `name [value]`, `#` comments) apply to
//! `stasis-runc checkpoint` and `restore` as CRIU would apply them, below the command line's:
//! a flag given there wins. An option that asks for what is not done is refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file of a container whose bundle is `bundle`, if it has one.
pub fn path(bundle: &oci_bundles::Bundle) -> Option<PathBuf> {
    match bundle.annotation("org.criu.config") {
        Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from("/etc/criu/runc.conf")).filter(|p| p.exists()),
    }
}

/// What stasis-runc does with each option CRIU's config may hold: the flag it stands for
/// (`Some`), or nothing to do (`None`: logging, verbosity...).
fn flag_of(name: &str) -> Result<Option<&'static str>, ()> {
    Ok(Some(match name {
        "tcp-established" => "tcp-established",
        "tcp-close" => "tcp-close",
        "skip-in-flight" | "tcp-skip-in-flight" => "tcp-skip-in-flight",
        "file-locks" => "file-locks",
        "ext-unix-sk" => "ext-unix-sk",
        "shell-job" => "shell-job",
        "ghost-limit" => "ghost-limit",
        "link-remap" => "link-remap",
        "manage-cgroups" => "manage-cgroups-mode",
        "log-file" | "o" | "v" | "verbosity" | "log-pid" | "display-stats" | "evasive-devices" | "timeout"
        | "auto-dedup" => return Ok(None),
        _ => return Err(()),
    }))
}

/// `flags` (the command line's) with the options of the config file at `file` added where
/// the command line has none.
pub fn merged(file: &Path, flags: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("CRIU config {}: {e}", file.display()))?;
    let mut out = flags.clone();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = match line.split_once(char::is_whitespace) {
            Some((n, v)) => (n, Some(v.trim().trim_matches('"'))),
            None => (line, None),
        };
        let name = name.trim_start_matches('-');
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, value),
        };
        let flag = flag_of(name).map_err(|()| {
            format!(
                "CRIU config {}, line {}: option {name} is not supported by stasis-runc",
                file.display(),
                n + 1
            )
        })?;
        if let Some(flag) = flag {
            out.entry(flag.to_owned())
                .or_insert_with(|| value.unwrap_or("true").to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_below_the_command_line() {
        let dir = std::env::temp_dir().join(format!("criu-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("runc.conf");
        std::fs::write(
            &file,
            "# ours\ntcp-established\nghost-limit 4M\n--file-locks\nlog-file=dump.log\nmanage-cgroups full\n",
        )
        .unwrap();
        let mut flags = BTreeMap::new();
        flags.insert("manage-cgroups-mode".to_owned(), "soft".to_owned());
        let got = merged(&file, &flags).unwrap();
        assert_eq!(got.get("tcp-established").map(String::as_str), Some("true"));
        assert_eq!(got.get("ghost-limit").map(String::as_str), Some("4M"));
        assert_eq!(got.get("file-locks").map(String::as_str), Some("true"));
        assert_eq!(got.get("manage-cgroups-mode").map(String::as_str), Some("soft"));
        assert!(!got.contains_key("log-file"));
        std::fs::write(&file, "lazy-pages\n").unwrap();
        let e = merged(&file, &BTreeMap::new()).unwrap_err();
        assert!(e.contains("line 1") && e.contains("lazy-pages"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
