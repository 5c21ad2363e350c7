//! runc's command line, as containerd and podman speak it: global flags, a verb, its flags.
//!
//! Flags take `--name value` or `--name=value` (one dash works too, as in runc); boolean flags
//! may be given a value (`--rootless=true`). A flag given twice keeps its last value.

use std::collections::BTreeMap;

/// runc's global flags (those before the verb), and ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Global {
    pub root: Option<String>,
    pub log: Option<String>,
    /// "text" (default) or "json".
    pub log_format: Option<String>,
    pub debug: bool,
    pub systemd_cgroup: bool,
    pub rootless: Option<String>,
    pub criu: Option<String>,
    /// The runtime the other verbs go to (`--delegate`, else `STASIS_DELEGATE`, else `runc`).
    pub delegate: Option<String>,
    pub version: bool,
    pub help: bool,
}

/// A parsed command line: the global flags, the verb and what follows it, untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub global: Global,
    pub verb: Option<String>,
    pub rest: Vec<String>,
}

/// Why a command line was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("{verb}: {what}")]
    Usage { verb: &'static str, what: String },
}

/// Splits `--name=value`, `-name=value`, `--name`, `-name`; `None` if not a flag.
fn flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() {
        return None;
    }
    Some(match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    })
}

/// Parses the global flags up to the verb.
pub fn parse(args: &[String]) -> Result<Invocation, CliError> {
    let mut g = Global::default();
    let mut i = 0;
    while i < args.len() {
        let Some((name, inline)) = flag(&args[i]) else { break };
        let value = |i: &mut usize| -> Result<String, CliError> {
            if let Some(v) = inline {
                return Ok(v.to_owned());
            }
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| CliError::MissingValue(name.to_owned()))
        };
        match name {
            "root" => g.root = Some(value(&mut i)?),
            "log" => g.log = Some(value(&mut i)?),
            "log-format" => g.log_format = Some(value(&mut i)?),
            "criu" => g.criu = Some(value(&mut i)?),
            "delegate" => g.delegate = Some(value(&mut i)?),
            "rootless" => g.rootless = Some(inline.unwrap_or("true").to_owned()),
            "debug" => g.debug = inline.is_none_or(|v| v != "false"),
            "systemd-cgroup" => g.systemd_cgroup = inline.is_none_or(|v| v != "false"),
            "version" | "v" => g.version = true,
            "help" | "h" => g.help = true,
            other => return Err(CliError::UnknownFlag(other.to_owned())),
        }
        i += 1;
    }
    Ok(Invocation {
        global: g,
        verb: args.get(i).cloned(),
        rest: args.get(i + 1..).map(<[String]>::to_vec).unwrap_or_default(),
    })
}

/// The flags of `checkpoint` and `restore`, as runc has them: name -> takes a value.
fn verb_flags(verb: &str) -> &'static [(&'static str, bool)] {
    const CHECKPOINT: &[(&str, bool)] = &[
        ("image-path", true),
        ("work-path", true),
        ("parent-path", true),
        ("leave-running", false),
        ("tcp-established", false),
        ("tcp-skip-in-flight", false),
        ("ext-unix-sk", false),
        ("shell-job", false),
        ("lazy-pages", false),
        ("status-fd", true),
        ("page-server", true),
        ("file-locks", false),
        ("pre-dump", false),
        ("manage-cgroups-mode", true),
        ("empty-ns", true),
        ("auto-dedup", false),
    ];
    const RESTORE: &[(&str, bool)] = &[
        ("console-socket", true),
        ("image-path", true),
        ("work-path", true),
        ("tcp-established", false),
        ("tcp-close", false),
        ("ext-unix-sk", false),
        ("shell-job", false),
        ("file-locks", false),
        ("manage-cgroups-mode", true),
        ("bundle", true),
        ("b", true),
        ("detach", false),
        ("d", false),
        ("pid-file", true),
        ("no-subreaper", false),
        ("no-pivot", false),
        ("empty-ns", true),
        ("auto-dedup", false),
        ("lazy-pages", false),
        ("lsm-profile", true),
        ("lsm-mount-context", true),
    ];
    match verb {
        "checkpoint" => CHECKPOINT,
        "restore" => RESTORE,
        _ => &[],
    }
}

/// The flags and the container id of a `checkpoint` or `restore` command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerbArgs {
    /// Flag name -> value ("true" for a boolean flag); the last occurrence wins.
    pub flags: BTreeMap<String, String>,
    pub id: Option<String>,
    pub help: bool,
    /// Ours, repeatable (runc has none): `--external KEY[:VALUE]` as CRIU takes it, e.g.
    /// `veth[eth0]:vethXYZ@br0` for a veth pair of the container's own network namespace.
    pub externals: Vec<String>,
}

/// Parses what follows `checkpoint` or `restore`.
pub fn parse_verb(verb: &'static str, rest: &[String]) -> Result<VerbArgs, CliError> {
    let known = verb_flags(verb);
    let mut out = VerbArgs::default();
    let mut i = 0;
    while i < rest.len() {
        match flag(&rest[i]) {
            Some(("help" | "h", _)) => out.help = true,
            Some(("external", inline)) => {
                let value = match inline {
                    Some(v) => v.to_owned(),
                    None => {
                        i += 1;
                        rest.get(i)
                            .cloned()
                            .ok_or_else(|| CliError::MissingValue("external".into()))?
                    }
                };
                out.externals.push(value);
            }
            Some((name, inline)) => {
                let &(_, takes) = known
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| CliError::UnknownFlag(name.to_owned()))?;
                let value = match (takes, inline) {
                    (_, Some(v)) => v.to_owned(),
                    (true, None) => {
                        i += 1;
                        rest.get(i)
                            .cloned()
                            .ok_or_else(|| CliError::MissingValue(name.to_owned()))?
                    }
                    (false, None) => "true".to_owned(),
                };
                out.flags.insert(name.to_owned(), value);
            }
            None if out.id.is_none() => out.id = Some(rest[i].clone()),
            None => {
                return Err(CliError::Usage {
                    verb,
                    what: format!("unexpected argument {:?} after the container id", rest[i]),
                })
            }
        }
        i += 1;
    }
    if out.id.is_none() && !out.help {
        return Err(CliError::Usage {
            verb,
            what: "a container id is required".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn containerds_global_flags_then_the_verb() {
        let inv = parse(&args(
            "--root /run/r --log /b/log.json --log-format json checkpoint --image-path /x id",
        ))
        .unwrap();
        assert_eq!(inv.global.root.as_deref(), Some("/run/r"));
        assert_eq!(inv.global.log_format.as_deref(), Some("json"));
        assert_eq!(inv.verb.as_deref(), Some("checkpoint"));
        assert_eq!(inv.rest, args("--image-path /x id"));
    }

    #[test]
    fn flags_with_equals_one_dash_and_repeats() {
        let inv = parse(&args("-root=/a --rootless=false --systemd-cgroup state x")).unwrap();
        assert_eq!(inv.global.root.as_deref(), Some("/a"));
        assert_eq!(inv.global.rootless.as_deref(), Some("false"));
        assert!(inv.global.systemd_cgroup);
        let v = parse_verb("checkpoint", &args("--file-locks --work-path /w --work-path=/w2 id")).unwrap();
        assert_eq!(v.flags.get("work-path").map(String::as_str), Some("/w2"));
        assert_eq!(v.flags.get("file-locks").map(String::as_str), Some("true"));
        assert_eq!(v.id.as_deref(), Some("id"));
    }

    #[test]
    fn unknown_or_incomplete_flags_are_refused() {
        assert_eq!(
            parse(&args("--bogus state x")),
            Err(CliError::UnknownFlag("bogus".into()))
        );
        assert_eq!(
            parse_verb("checkpoint", &args("--nope id")),
            Err(CliError::UnknownFlag("nope".into()))
        );
        assert_eq!(
            parse_verb("restore", &args("--pid-file")),
            Err(CliError::MissingValue("pid-file".into()))
        );
        assert!(parse_verb("checkpoint", &args("--leave-running")).is_err());
        assert!(parse_verb("checkpoint", &args("--help")).unwrap().help);
    }

    #[test]
    fn external_repeats() {
        let v = parse_verb(
            "restore",
            &args("--external veth[eth0]:a --external=veth[eth1]:b@br id"),
        )
        .unwrap();
        assert_eq!(v.externals, args("veth[eth0]:a veth[eth1]:b@br"));
        assert_eq!(v.id.as_deref(), Some("id"));
    }
}
