//! CRIU's command line, taken as it is: tools that drive a checkpointer pass CRIU's options.
//! Before clap reads the arguments, each CRIU option this front door has no flag of its own
//! for is either dropped (it asks for nothing Stasis would do otherwise: verbosity, log
//! details, a no-op here), renamed to ours, or refused with a message naming it and saying
//! why, never "unexpected argument". `-o/--log-file` (and `-W`, where it goes) are taken out
//! and returned: the outcome is written there too.

use std::ffi::OsString;

/// What an option takes after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    /// A value, as the next argument or after `=`.
    Value,
    /// A value only after `=` (`--manage-cgroups[=MODE]`).
    OptionalValue,
}

/// What is done with it.
#[derive(Clone, Copy)]
enum Then {
    /// Dropped (why: the comment above each).
    Drop,
    /// Given to clap as our flag of that name.
    Rename(&'static str),
    /// Refused: the message says what is not done.
    Refuse(&'static str),
}

use Takes::*;
use Then::*;

/// CRIU's options that `stasis` has no flag of its own for (ours are left to clap).
const OPTIONS: &[(&str, Takes, Then)] = &[
    // verbosity: stasis says what it does on failure, and one line on success
    ("-v", Nothing, Drop),
    // verbosity
    ("--verbosity", OptionalValue, Drop),
    // log detail
    ("--log-pid", Nothing, Drop),
    // stasis prints its one line of figures anyway
    ("--display-stats", Nothing, Drop),
    // without pre-dumps there are no parent images to deduplicate
    ("--auto-dedup", Nothing, Drop),
    // devices are reopened by their path; there is no other path to try
    ("--evasive-devices", Nothing, Drop),
    // every wait of stasis has its own bound
    ("--timeout", Value, Drop),
    ("--pidfile", Value, Rename("--pid-file")),
    ("--tcp-skip-in-flight", Nothing, Rename("--skip-in-flight")),
    ("--lazy-pages", Nothing, Refuse("lazy restore (userfaultfd) is not supported yet")),
    ("--page-server", Nothing, Refuse("the page server is not supported yet")),
    ("--address", Value, Refuse("the page server is not supported yet")),
    ("--port", Value, Refuse("the page server is not supported yet")),
    ("--track-mem", Nothing, Refuse("pre-dumps (memory tracking) are not supported yet: this kernel has no soft-dirty bits")),
    ("--prev-images-dir", Value, Refuse("pre-dumps are not supported yet")),
    ("--leave-stopped", Nothing, Refuse("leaving the tree stopped after the dump is not supported yet")),
    ("--cgroup-root", Value, Refuse("a plain stasis restore stays in the caller's cgroups; containers get theirs from their runtime (stasis-runc)")),
    ("--root", Value, Refuse("restoring under another root is not supported: stasis restores into the caller's filesystem (containers: stasis-runc)")),
    ("--action-script", Value, Refuse("action scripts are not supported")),
    ("--external", Value, Refuse("a plain dump or restore has no external objects to name: inherited files are given with --inherit-fd, a container's devices with stasis-runc --external")),
    ("--join-ns", Value, Refuse("joining existing namespaces is not supported: containers get theirs from their runtime (stasis-runc)")),
    ("--empty-ns", Value, Refuse("namespaces of a plain dump are refused before freezing; containers: stasis-runc --empty-ns")),
    ("--stream", Nothing, Refuse("streaming images (criu-image-streamer) is not supported")),
    ("--lsm-profile", Value, Refuse("LSM profiles are not set by stasis")),
    ("--lsm-mount-context", Value, Refuse("LSM mount contexts are not set by stasis")),
    ("--enable-external-sharing", Nothing, Refuse("external mount sharing is not supported")),
    ("--enable-external-masters", Nothing, Refuse("external mount masters are not supported")),
    ("--skip-mnt", Value, Refuse("mounts of a plain dump are not saved; containers: stasis-runc")),
    ("--enable-fs", Value, Refuse("mounts of a plain dump are not saved; containers: stasis-runc")),
    ("--weak-sysctls", Nothing, Refuse("sysctls are not set by a plain restore")),
    ("--cpu-cap", OptionalValue, Refuse("CPU capability checks are not made: restore on a CPU with the same features")),
    ("--allow-uprobes", Nothing, Refuse("uprobes are not supported")),
    ("--network-lock-method", Value, Rename("--network-lock")),
];

/// `--manage-cgroups[=MODE]`: CRIU's default, soft, is what stasis does (the restored tree
/// stays in the caller's cgroups); ignore and none too. full and strict (writing saved
/// cgroup settings back) are stasis-runc's, for containers.
fn manage_cgroups(mode: Option<&str>) -> Result<(), String> {
    match mode {
        None | Some("soft" | "ignore" | "none" | "props") => Ok(()),
        Some(m @ ("full" | "strict")) => Err(format!(
            "--manage-cgroups={m}: a plain dump does not save cgroup settings; stasis-runc restores a container's with --manage-cgroups-mode {m}"
        )),
        Some(m) => Err(format!("--manage-cgroups={m}: unknown mode (soft, full, strict, ignore)")),
    }
}

/// A size as CRIU writes one: bytes, or with a K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("{s:?}: the size's unit is K, M or G")),
    };
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Where CRIU's `-o` puts the log: `file` in `dir` (`-W`), or in the images directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub file: Option<String>,
    pub dir: Option<String>,
}

/// Our arguments from CRIU's, and where the log goes (`-o`/`--log-file`, `-W`/`--work-dir`).
pub fn translate(args: Vec<OsString>) -> Result<(Vec<OsString>, Log), String> {
    let mut out = Vec::with_capacity(args.len());
    let mut log = Log::default();
    let mut it = args.into_iter();
    out.extend(it.next()); // the program
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (text.clone(), None),
        };
        // -v, -vv, -v4: verbosity.
        if name.starts_with("-v") && name.len() > 1 && name[2..].chars().all(|c| c == 'v' || c.is_ascii_digit()) {
            continue;
        }
        let is_log = name == "-o" || name == "--log-file";
        if is_log || name == "-W" || name == "--work-dir" {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name}: a value is needed"))?,
            };
            if is_log {
                log.file = Some(v);
            } else {
                log.dir = Some(v);
            }
            continue;
        }
        if name == "--manage-cgroups" {
            manage_cgroups(inline.as_deref())?;
            continue;
        }
        let Some(&(_, takes, then)) = OPTIONS.iter().find(|(n, ..)| *n == name) else {
            out.push(arg);
            continue;
        };
        let value = match (takes, inline) {
            (Nothing, Some(_)) => return Err(format!("{name} takes no value")),
            (Nothing, None) | (OptionalValue, None) => None,
            (_, Some(v)) => Some(v),
            (Value, None) => Some(
                it.next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name}: a value is needed"))?,
            ),
        };
        match then {
            Drop => {}
            Rename(ours) => {
                out.push(ours.into());
                out.extend(value.map(OsString::from));
            }
            Refuse(why) => return Err(format!("{name}: {why}")),
        }
    }
    Ok((out, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<(Vec<String>, Option<String>), String> {
        translate(args.iter().map(OsString::from).collect())
            .map(|(a, l)| (a.into_iter().map(|s| s.into_string().unwrap()).collect(), l.file))
    }

    #[test]
    fn criu_options_are_dropped_renamed_or_refused_by_name() {
        let (args, log) = t(&[
            "stasis",
            "dump",
            "-t",
            "1",
            "-D",
            "d",
            "-v4",
            "-vvv",
            "-o",
            "dump.log",
            "--manage-cgroups",
            "--auto-dedup",
            "--timeout",
            "10",
            "--evasive-devices",
            "--shell-job",
        ])
        .unwrap();
        assert_eq!(args, ["stasis", "dump", "-t", "1", "-D", "d", "--shell-job"]);
        assert_eq!(log.as_deref(), Some("dump.log"));
        let (args, log) = t(&[
            "stasis",
            "restore",
            "--pidfile=p",
            "--log-file=r.log",
            "-d",
            "--manage-cgroups=soft",
        ])
        .unwrap();
        assert_eq!(args, ["stasis", "restore", "--pid-file", "p", "-d"]);
        assert_eq!(log.as_deref(), Some("r.log"));
        let e = t(&["stasis", "dump", "--lazy-pages"]).unwrap_err();
        assert!(e.starts_with("--lazy-pages: "), "{e}");
        let e = t(&["stasis", "restore", "--manage-cgroups=full"]).unwrap_err();
        assert!(e.contains("stasis-runc"), "{e}");
        assert!(t(&["stasis", "dump", "--auto-dedup=x"]).is_err());
    }

    #[test]
    fn sizes_take_criu_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10K"), Ok(10 << 10));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err() && parse_size("x").is_err() && parse_size("99999999999G").is_err());
    }
}
