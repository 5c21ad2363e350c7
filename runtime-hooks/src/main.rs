//! `stasis-runc`: a runc-compatible runtime. `checkpoint` and `restore` are Stasis's own; every
//! other verb is handed, argv untouched, to the delegate runtime (runc by default), which keeps
//! owning the containers.

mod checkpoint;
mod cli;
mod criu_conf;
mod delegate;
mod log;
mod restore;

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
   --tcp-skip-in-flight         leave out connections not accepted yet
   --ext-unix-sk                allow external unix sockets
   --shell-job                  allow shell jobs
   --file-locks                 handle file locks
   --pre-dump                   dump the container's memory only, leave it running
   --manage-cgroups-mode value  cgroups mode: 'soft' (default), 'full' and 'strict'
   --empty-ns value             create a namespace, but don't restore its properties
   --external value             (Stasis, repeatable) a device whose other side is outside the
                                container's network namespace: veth[IF], macvlan[IF]
";

const RESTORE_HELP: &str = "NAME:
   stasis-runc restore - restore a container from a checkpoint (Stasis)

USAGE:
   stasis-runc restore [command options] <container-id>

OPTIONS:
   --console-socket value       path to an AF_UNIX socket for the console's master fd
   --image-path value           path to the image files
   --work-path value            path for work files and logs
   --tcp-established            restore open tcp connections
   --tcp-close                  restore open tcp connections closed
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
   --external value             (Stasis, repeatable) the outside side of a device of the
                                container's network namespace: veth[IF]:NAME[@BRIDGE] makes the
                                veth pair's outside end NAME here (on BRIDGE), macvlan[IF]:LOWER
";

/// Hands the whole command line to the delegate runtime (replacing this process).
fn delegate(global: &cli::Global, args: &[String]) -> ExitCode {
    let runtime = delegate::program(global);
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
        "checkpoint" => checkpoint::run(&inv.global, id, &parsed),
        _ => restore::run(&inv.global, id, &parsed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log.error(&msg);
            ExitCode::FAILURE
        }
    }
}
