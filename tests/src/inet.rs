//! Helpers of the network tests and the bench: dumping and restoring with either tool with
//! TCP connections allowed, the network lock's iptables rules (found, and removed by their exact
//! spec), and the `key value` info file the inet workload writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::{reference_criu, workspace_bin};

/// The mark the network lock's rules let through (`-m mark ! --mark 0xC114`).
pub const LOCK_MARK: &str = "0xc114";

/// Which program dumps or restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Stasis,
    /// CRIU 4.2.1 (`target/reference-tools/bin/criu-4.2`).
    Criu,
}

impl Tool {
    /// Lowercase name, for directory names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Stasis => "stasis",
            Tool::Criu => "criu",
        }
    }

    fn run(self, verb: &str, images: &Path, args: &[&str]) -> Result<Output, String> {
        let img = images.to_str().expect("utf-8 path");
        let mut cmd = match self {
            Tool::Stasis => Command::new(workspace_bin("stasis")),
            Tool::Criu => Command::new(reference_criu("4.2")),
        };
        cmd.arg(verb).args(["-D", img]).args(args);
        if self == Tool::Criu {
            cmd.args(["-o", &format!("{verb}.log")]);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        if out.status.success() {
            return Ok(out);
        }
        let log = match self {
            Tool::Stasis => String::from_utf8_lossy(&out.stderr).into_owned(),
            Tool::Criu => std::fs::read_to_string(images.join(format!("{verb}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Err(format!("{} {verb} {args:?} failed: {log}", self.name()))
    }

    /// `dump -t PID -D IMAGES --shell-job --tcp-established EXTRA...`.
    pub fn dump(self, pid: i32, images: &Path, extra: &[&str]) -> Result<Output, String> {
        std::fs::create_dir_all(images).unwrap();
        let pid = pid.to_string();
        let mut args = vec!["-t", pid.as_str(), "--shell-job", "--tcp-established"];
        args.extend_from_slice(extra);
        self.run("dump", images, &args)
    }

    /// `restore -D IMAGES -d --shell-job --tcp-established EXTRA...`.
    pub fn restore(self, images: &Path, extra: &[&str]) -> Result<Output, String> {
        let mut args = vec!["-d", "--shell-job", "--tcp-established"];
        args.extend_from_slice(extra);
        self.run("restore", images, &args)
    }
}

/// The network lock's rules (`iptables -S` and `ip6tables -S` lines, filter table) that name
/// one of `ports` as source or destination port: (binary, rule as listed).
pub fn lock_rules(ports: &[u16]) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for bin in ["iptables", "ip6tables"] {
        let out = Command::new(bin)
            .args(["-w", "-t", "filter", "-S"])
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e} (scripts/test-deps.sh installs iptables)"));
        assert!(out.status.success(), "{bin} -S failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let names_port = words.windows(2).any(|w| {
                (w[0] == "--sport" || w[0] == "--dport") && w[1].parse().is_ok_and(|p: u16| ports.contains(&p))
            });
            if line.contains(LOCK_MARK) && names_port {
                found.push((bin, line.to_owned()));
            }
        }
    }
    found
}

/// Deletes the rules [`lock_rules`] finds for `ports`, each by its exact spec (`-A` -> `-D`).
pub fn remove_lock_rules(ports: &[u16]) {
    for (bin, rule) in lock_rules(ports) {
        let Some(spec) = rule.strip_prefix("-A ") else { continue };
        let mut args = vec!["-w", "-t", "filter", "-D"];
        args.extend(spec.split_whitespace());
        let _ = Command::new(bin).args(&args).stderr(Stdio::null()).status();
    }
}

/// On drop, removes every network-lock rule left for these ports.
pub struct LockRulesGuard(pub Vec<u16>);

impl Drop for LockRulesGuard {
    fn drop(&mut self) {
        remove_lock_rules(&self.0);
    }
}

/// `DIR/info` of the inet workload: "key value" lines (a key may hold several words).
pub fn read_info(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("info"))
        .unwrap_or_else(|e| panic!("{}/info: {e}", dir.display()))
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
