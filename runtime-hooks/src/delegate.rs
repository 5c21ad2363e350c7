//! The delegate runtime (runc by default): the verbs it runs for us during a checkpoint or a
//! restore, with the caller's global flags, and its public view of a container.

use std::process::Command;

use crate::cli::Global;

/// The delegate's program: `--delegate`, else `STASIS_DELEGATE`, else `runc`.
pub fn program(global: &Global) -> String {
    global
        .delegate
        .clone()
        .or_else(|| std::env::var("STASIS_DELEGATE").ok())
        .unwrap_or_else(|| "runc".into())
}

/// A delegate command carrying the caller's global flags (root, log, cgroup driver...).
pub fn command(global: &Global) -> Command {
    let mut cmd = Command::new(program(global));
    let pairs = [
        ("--root", &global.root),
        ("--log", &global.log),
        ("--log-format", &global.log_format),
        ("--rootless", &global.rootless),
    ];
    for (flag, value) in pairs {
        if let Some(v) = value {
            cmd.arg(format!("{flag}={v}"));
        }
    }
    if global.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    if global.debug {
        cmd.arg("--debug");
    }
    cmd
}

/// Runs a delegate verb to its end; its stderr becomes the error.
pub fn run(global: &Global, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = command(global)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{} {}: {e}", program(global), args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            program(global),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// What `state ID` says of a container.
pub struct State {
    pub pid: i32,
    pub status: String,
    pub bundle: String,
}

/// The delegate's public view of container `id`.
pub fn state(global: &Global, id: &str) -> Result<State, String> {
    let out = run(global, &["state", id])?;
    let state: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| format!("{} state {id}: {e}", program(global)))?;
    Ok(State {
        pid: state["pid"].as_i64().and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
        status: state["status"].as_str().unwrap_or("unknown").to_owned(),
        bundle: state["bundle"].as_str().unwrap_or_default().to_owned(),
    })
}
