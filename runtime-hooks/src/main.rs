//! `stasis-runc`: a runc-compatible runtime. `checkpoint` and `restore` are Stasis's own; every
//! other verb is handed, argv untouched, to the delegate runtime (runc by default), which keeps
//! owning the containers.

mod cli;
mod log;

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const CHECKPOINT_HELP: &str = "NAME:
   stasis-runc checkpoint - checkpoint a running container (Stasis)

USAGE:
   stasis-runc checkpoint [command options] <container-id>

OPTIONS:
   --image-path value           path for saving the image files
   --work-path value            path for saving work files and logs
   --parent-path value          path for previous image files in pre-dump
   --leave-running              leave the process running after checkpointing
   --tcp-established            allow open tcp connections
   --ext-unix-sk                allow external unix sockets
   --shell-job                  allow shell jobs
   --file-locks                 handle file locks
   --pre-dump                   dump the container's memory only, leave it running
   --manage-cgroups-mode value  cgroups mode: 'soft' (default), 'full' and 'strict'
   --empty-ns value             create a namespace, but don't restore its properties
";

const RESTORE_HELP: &str = "NAME:
   stasis-runc restore - restore a container from a checkpoint (Stasis)

USAGE:
   stasis-runc restore [command options] <container-id>

OPTIONS:
   --console-socket value       path to an AF_UNIX socket for the console's master fd
   --image-path value           path to the image files
   --work-path value            path for work files and logs
   --tcp-established            allow open tcp connections
   --ext-unix-sk                allow external unix sockets
   --shell-job                  allow shell jobs
   --file-locks                 handle file locks
   --manage-cgroups-mode value  cgroups mode: 'soft' (default), 'full' and 'strict'
   --bundle value, -b value     path to the root of the bundle directory
   --detach, -d                 detach from the container's process
   --pid-file value             file to write the process id to
   --no-subreaper               disable the use of the subreaper used to reap reparented processes
   --no-pivot                   do not use pivot root to jail process inside rootfs
   --empty-ns value             create a namespace, but don't restore its properties
";

/// Hands the whole command line to the delegate runtime (replacing this process).
fn delegate(global: &cli::Global, args: &[String]) -> ExitCode {
    let runtime = global
        .delegate
        .clone()
        .or_else(|| std::env::var("STASIS_DELEGATE").ok())
        .unwrap_or_else(|| "runc".into());
    // Our own flag is not the delegate's.
    let mut argv = Vec::with_capacity(args.len());
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "--delegate" || a == "-delegate" {
            skip = true;
        } else if !a.starts_with("--delegate=") && !a.starts_with("-delegate=") {
            argv.push(a.clone());
        }
    }
    let err = Command::new(&runtime).args(&argv).exec();
    eprintln!("stasis-runc: cannot run the delegate runtime {runtime}: {err}");
    ExitCode::from(127)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("stasis-runc: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = log::Log {
        path: inv.global.log.clone(),
        json: inv.global.log_format.as_deref() == Some("json"),
    };
    if inv.global.version {
        println!(
            "stasis-runc version {}\nspec: 1.0.2-dev\ncheckpoint/restore: stasis (no CRIU)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let verb: &'static str = match inv.verb.as_deref() {
        Some("checkpoint") => "checkpoint",
        Some("restore") => "restore",
        _ => return delegate(&inv.global, &args),
    };
    let parsed = match cli::parse_verb(verb, &inv.rest) {
        Ok(p) => p,
        Err(e) => {
            log.error(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    if parsed.help {
        print!(
            "{}",
            if verb == "checkpoint" {
                CHECKPOINT_HELP
            } else {
                RESTORE_HELP
            }
        );
        return ExitCode::SUCCESS;
    }
    let id = parsed.id.as_deref().unwrap_or_default();
    let result = match verb {
        "checkpoint" => checkpoint(&inv.global, id, &parsed),
        _ => Err(format!(
            "restore of container {id}: not supported yet: a container's namespaces, mounts and \
             cgroups are not saved by this version"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log.error(&msg);
            ExitCode::FAILURE
        }
    }
}

/// The delegate's public view of a container: its init pid and status (`state ID`).
fn container_state(global: &cli::Global, id: &str) -> Result<(i32, String), String> {
    let runtime = global
        .delegate
        .clone()
        .or_else(|| std::env::var("STASIS_DELEGATE").ok())
        .unwrap_or_else(|| "runc".into());
    let mut cmd = Command::new(&runtime);
    if let Some(root) = &global.root {
        cmd.args(["--root", root]);
    }
    let out = cmd
        .args(["state", id])
        .output()
        .map_err(|e| format!("{runtime} state {id}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{runtime} state {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let state: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{runtime} state {id}: {e}"))?;
    let pid = state["pid"].as_i64().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    Ok((pid, state["status"].as_str().unwrap_or("unknown").to_owned()))
}

/// The cgroup directory through which `pid` is frozen: its v1 freezer cgroup, else its v2 one.
fn freezer_dir(pid: i32) -> Result<std::path::PathBuf, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| format!("pid {pid}: {e}"))?;
    let find = |controller: &str| {
        text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, c, path) = (parts.next()?, parts.next()?, parts.next()?);
            (c == controller).then(|| path.trim_start_matches('/').to_owned())
        })
    };
    if let Some(path) = find("freezer").filter(|p| !p.is_empty()) {
        return Ok(std::path::Path::new("/sys/fs/cgroup/freezer").join(path));
    }
    let v2 = find("").ok_or_else(|| format!("pid {pid}: no freezer cgroup"))?;
    let base = if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    Ok(std::path::Path::new(base).join(v2))
}

/// `checkpoint ID`: the container's tree, frozen through its cgroup, dumped by Stasis.
fn checkpoint(global: &cli::Global, id: &str, args: &cli::VerbArgs) -> Result<(), String> {
    let (pid, status) = container_state(global, id)?;
    if pid <= 0 || !matches!(status.as_str(), "running" | "paused") {
        return Err(format!(
            "container {id} is {status}: only a running or paused one can be checkpointed"
        ));
    }
    let flag = |name: &str| args.flags.get(name).is_some_and(|v| v != "false");
    for unsupported in [
        "pre-dump",
        "lazy-pages",
        "page-server",
        "parent-path",
        "auto-dedup",
        "status-fd",
    ] {
        if args.flags.contains_key(unsupported) {
            return Err(format!(
                "checkpoint of container {id}: --{unsupported} is not supported"
            ));
        }
    }
    let images = args
        .flags
        .get("image-path")
        .cloned()
        .unwrap_or_else(|| "checkpoint".into());
    let opts = checkpoint_core::dump::DumpOpts {
        pid,
        images: images.into(),
        leave_running: flag("leave-running"),
        shell_job: flag("shell-job"),
        ext_unix_sk: flag("ext-unix-sk"),
        file_locks: flag("file-locks"),
        freeze_cgroup: Some(freezer_dir(pid)?),
    };
    checkpoint_core::dump::dump(&opts)
        .map(drop)
        .map_err(|e| format!("checkpoint of container {id}: {e}; the container is left as it was"))
}
