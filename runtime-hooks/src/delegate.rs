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

/// What `state ID` says of a container: the runtime-spec state, as runc prints it.
///
/// Not oci-spec's `runtime::State`: its status has no `paused`, which runc reports for a
/// paused container, one that can be checkpointed (with runc 1.1.5, oci-spec 0.10 refuses the
/// state of a paused container: "unknown variant `paused`"). runc's own additions (`rootfs`,
/// `created`, `owner`) are not needed and are ignored, as is any other field.
#[derive(Debug, serde::Deserialize)]
pub struct State {
    /// The container's init (0 once it has ended).
    #[serde(default)]
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    #[serde(default = "unknown")]
    pub status: String,
    /// The bundle the container was created from.
    #[serde(default)]
    pub bundle: String,
}

fn unknown() -> String {
    "unknown".into()
}

/// The delegate's public view of container `id`.
pub fn state(global: &Global, id: &str) -> Result<State, String> {
    let out = run(global, &["state", id])?;
    serde_json::from_slice(&out).map_err(|e| format!("{} state {id}: {e}", program(global)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What runc 1.1.5 printed for a paused container.
    const PAUSED: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "id": "ocexp",
  "pid": 18375,
  "status": "paused",
  "bundle": "/tmp/ocispec-exp/bundle",
  "rootfs": "/tmp/ocispec-exp/bundle/rootfs",
  "created": "2026-12-04T17:11:06.026348162Z",
  "owner": ""
}"#;

    #[test]
    fn the_state_of_a_paused_container_is_read() {
        let state: State = serde_json::from_str(PAUSED).unwrap();
        assert_eq!(state.pid, 18375);
        assert_eq!(state.status, "paused");
        assert_eq!(state.bundle, "/tmp/ocispec-exp/bundle");
        // The reason for the struct of our own.
        let refused = serde_json::from_str::<oci_spec::runtime::State>(PAUSED).unwrap_err();
        assert!(refused.to_string().contains("unknown variant `paused`"), "{refused}");
    }

    #[test]
    fn a_stopped_container_has_pid_0() {
        let state: State = serde_json::from_str(r#"{"id": "x", "pid": 0, "status": "stopped"}"#).unwrap();
        assert_eq!(
            (state.pid, state.status.as_str(), state.bundle.as_str()),
            (0, "stopped", "")
        );
    }
}
