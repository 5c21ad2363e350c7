//! `stasis-runc restore ID`: the delegate creates the container from a shadow bundle (the
//! same config but for its process), so that its state, namespaces, mounts, cgroups and later
//! `kill`/`exec`/`delete` stay the delegate's business; the container's init is taken over
//! right after its exec and becomes the restored tree's root.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use checkpoint_core::restore::{ContainerInit, RestoreOpts, Tracee};

use crate::checkpoint::{make_dir, note, paths};
use crate::cli::{Global, VerbArgs};
use crate::delegate;

/// The fd at which the container's init gets its way to our fds (`--preserve-fds 1`): a
/// pidfd of us, or its end of a unix socket in a user namespace of its own.
const CTL_FD: i32 = 3;

/// `restore ID`: the container made again from the images; its log and statistics go to the
/// work path. Without `--detach`, waits (as runc) until the container's init ends.
pub fn run(global: &Global, id: &str, args: &VerbArgs) -> Result<(), String> {
    let (images, work) = paths(args);
    let result = restore(global, id, args, &images);
    if make_dir(&work).is_ok() {
        match &result {
            Ok((summary, report)) => {
                note(&work, "restore.log", summary);
                if let Err(e) = checkpoint_core::restore::write_stats(&work, report) {
                    note(&work, "restore.log", &format!("Warning: stats-restore: {e}"));
                }
            }
            Err(e) => note(&work, "restore.log", &format!("Error: {e}")),
        }
    }
    let (_, report) = result?;
    let detached = ["detach", "d"]
        .iter()
        .any(|f| args.flags.get(*f).is_some_and(|v| v != "false"));
    if !detached {
        // In the foreground, as runc: until the container's init ends.
        let _ = checkpoint_core::sys::wait_exit(report.pid);
    }
    Ok(())
}

/// The shadow bundle: beside the container's own config (inside its bundle, which its owner
/// removes with the container), kept while the container lives — the delegate's state names
/// it as the container's bundle, and a later checkpoint reads its config. Removed if the
/// restore fails.
struct Shadow(PathBuf, bool);

impl Shadow {
    fn keep(mut self) {
        self.1 = true;
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Our own bounding set: the capabilities the container's init can be given.
fn own_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| checkpoint_core::procfs::parse_status(&s))
        .map_or(0, |s| s.cap_bnd)
}

fn restore(
    global: &Global,
    id: &str,
    args: &VerbArgs,
    images: &Path,
) -> Result<(String, checkpoint_core::restore::RestoreReport), String> {
    let bundle_dir = args
        .flags
        .get("bundle")
        .or_else(|| args.flags.get("b"))
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let bundle = oci_bundles::Bundle::load(&bundle_dir).map_err(|e| format!("restore of container {id}: {e}"))?;
    // CRIU's config file for runc, below the command line.
    let flags = match crate::criu_conf::path(&bundle) {
        Some(file) => {
            crate::criu_conf::merged(&file, &args.flags).map_err(|e| format!("restore of container {id}: {e}"))?
        }
        None => args.flags.clone(),
    };
    let flag = |name: &str| flags.get(name).is_some_and(|v| v != "false");
    for unsupported in ["lazy-pages", "auto-dedup", "lsm-profile", "lsm-mount-context"] {
        if flags.contains_key(unsupported) {
            return Err(format!("restore of container {id}: --{unsupported} is not supported"));
        }
    }
    let console_socket = args.flags.get("console-socket");
    if bundle.terminal() != console_socket.is_some() {
        return Err(format!(
            "restore of container {id}: {}",
            if bundle.terminal() {
                "its process has a terminal: --console-socket is needed for the new one"
            } else {
                "--console-socket given, but its process has no terminal"
            }
        ));
    }
    let fail = |e: String| format!("restore of container {id}: {e}");
    let exe = checkpoint_core::restore::root_program(images).map_err(|e| fail(e.to_string()))?;
    let descriptors = oci_bundles::read_descriptors(images).map_err(|e| fail(e.to_string()))?;
    let shadow = Shadow(bundle.dir.join(format!(".stasis-restore-{id}")), false);
    bundle
        .write_shadow(&shadow.0, &exe, own_caps())
        .map_err(|e| fail(e.to_string()))?;
    let detach = flag("detach") || flag("d");
    // As with CRIU: the saved cgroup settings are written back in full and strict modes; in
    // soft (the default) and ignore, the container's cgroups stay as its config makes them.
    let cgroup_settings = match flags.get("manage-cgroups-mode").map(String::as_str) {
        None | Some("soft" | "ignore") => false,
        Some("full" | "strict") => true,
        Some(other) => {
            return Err(fail(format!(
                "--manage-cgroups-mode {other}: not soft, full, strict or ignore"
            )))
        }
    };
    if !detach && !flag("no-subreaper") {
        // The init comes to us when the delegate's create exits: we wait for it.
        checkpoint_core::sys::set_child_subreaper().map_err(|e| fail(format!("subreaper: {e}")))?;
    }

    // 1. The delegate creates the container; its init waits to be started.
    let pid_file = shadow.0.join("init.pid");
    let _ = std::fs::remove_file(&pid_file);
    // The init's way to our fds: a pidfd of us (pidfd_getfd); in a user namespace of its own,
    // which gives it no right over us, a unix socket we send them over.
    let (ctl, ctl_socket) = if bundle.joins_or_makes(oci_bundles::LinuxNamespaceType::User) {
        let (ours, theirs) =
            checkpoint_core::sys::unix_pair(libc::SOCK_STREAM).map_err(|e| fail(format!("socketpair: {e}")))?;
        (theirs, Some(ours))
    } else {
        let pidfd = checkpoint_core::sys::pidfd_self().map_err(|e| fail(format!("pidfd_open: {e}")))?;
        (pidfd, None)
    };
    let mut create = delegate::command(global);
    create
        .arg("create")
        .arg("--bundle")
        .arg(&shadow.0)
        .arg("--pid-file")
        .arg(&pid_file);
    create.args(["--preserve-fds", "1"]);
    if flag("no-pivot") {
        create.arg("--no-pivot");
    }
    if let Some(socket) = console_socket {
        create.arg("--console-socket").arg(socket);
    }
    create.arg(id);
    checkpoint_core::sys::pass_as_fd3(&mut create, ctl.as_raw_fd());
    let created = create
        .status()
        .map_err(|e| fail(format!("{} create: {e}", delegate::program(global))))?;
    if !created.success() {
        return Err(fail(format!("{} create failed ({created})", delegate::program(global))));
    }
    // 2. From here a failure deletes the container again.
    let restored = (|| {
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("no init pid in {}", pid_file.display()))?;
        let init = Tracee::seize_before_exec(pid).map_err(|e| e.to_string())?;
        // The init stops for each signal it gets until its exec (ours to pass on), while the
        // delegate's start waits for it: both are watched at once.
        let mut start = delegate::command(global)
            .args(["start", id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{} start: {e}", delegate::program(global)))?;
        let mut started = None;
        while !init.exec_done().map_err(|e| e.to_string())? {
            if started.is_none() {
                started = start
                    .try_wait()
                    .map_err(|e| format!("{} start: {e}", delegate::program(global)))?;
                if let Some(s) = started.filter(|s| !s.success()) {
                    let mut err = String::new();
                    if let Some(mut e) = start.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(format!(
                        "{} start failed ({s}): {}",
                        delegate::program(global),
                        err.trim()
                    ));
                }
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let status = start
            .wait()
            .map_err(|e| format!("{} start: {e}", delegate::program(global)))?;
        if !status.success() {
            return Err(format!("{} start failed ({status})", delegate::program(global)));
        }
        let opts = RestoreOpts {
            images: images.to_owned(),
            detach: true,
            pid_file: args.flags.get("pid-file").map(PathBuf::from),
            // A container's terminal fds get its new console.
            shell_job: flag("shell-job") || bundle.terminal(),
            cgroup_settings,
            tcp_established: flag("tcp-established"),
            tcp_close: flag("tcp-close"),
            declared_mounts: bundle.declared_mounts(),
            externals: args.externals.clone(),
            inherit_fds: descriptors
                .iter()
                .enumerate()
                // The old console is replaced by the new one, not by our stdio.
                .filter(|(_, d)| {
                    let old_console = bundle.terminal() && d.starts_with("/dev/pts/");
                    !d.is_empty() && !old_console
                })
                .map(|(fd, d)| (fd as i32, d.clone()))
                .collect(),
        };
        checkpoint_core::restore::restore_into(
            &opts,
            ContainerInit {
                init,
                ctl_fd: CTL_FD,
                ctl_socket,
            },
        )
        .map_err(|e| e.to_string())
    })();
    drop(ctl);
    let report = match restored {
        Ok(r) => {
            shadow.keep();
            r
        }
        Err(e) => {
            let cleanup = delegate::run(global, &["delete", "--force", id]);
            return Err(fail(format!(
                "{e}; the container was deleted again{}",
                cleanup.err().map(|c| format!(" (but: {c})")).unwrap_or_default()
            )));
        }
    };
    let summary = format!(
        "restore of container {id} from {}: {} processes, init pid {}, {:.1} ms",
        images.display(),
        report.tasks,
        report.pid,
        report.elapsed.as_secs_f64() * 1e3
    );
    Ok((summary, report))
}
