//! `stasis-runc checkpoint ID`: the container's tree, frozen through its cgroup, dumped by
//! Stasis with its namespaces checked against the bundle's config; `descriptors.json` beside
//! the images, `dump.log` and `stats-dump` in the work path, as runc leaves them.

use std::path::{Path, PathBuf};

use crate::cli::{Global, VerbArgs};
use crate::delegate;

/// Creates `dir` (0700) if it is missing.
pub fn make_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Appends `line` to the work path's log (`dump.log` / `restore.log`).
pub fn note(work: &Path, log: &str, line: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = work.join(log);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The paths of a checkpoint or restore: images (`--image-path`, default `checkpoint`) and
/// the work path (`--work-path`, default the images).
pub fn paths(args: &VerbArgs) -> (PathBuf, PathBuf) {
    let images = PathBuf::from(args.flags.get("image-path").map_or("checkpoint", String::as_str));
    let work = args
        .flags
        .get("work-path")
        .map_or_else(|| images.clone(), PathBuf::from);
    (images, work)
}

/// `checkpoint ID`: the container's images, `descriptors.json` beside them, its log and
/// statistics in the work path; without `--leave-running` the container is removed.
pub fn run(global: &Global, id: &str, args: &VerbArgs) -> Result<(), String> {
    let (images, work) = paths(args);
    let result = checkpoint(global, id, args, &images);
    if make_dir(&work).is_ok() {
        match &result {
            Ok(summary) => {
                note(&work, "dump.log", summary);
                let stats = images.join("stats-dump");
                if work != images && stats.exists() {
                    let _ = std::fs::copy(&stats, work.join("stats-dump"));
                }
            }
            Err(e) => note(&work, "dump.log", &format!("Error: {e}")),
        }
    }
    result.map(drop)
}

fn checkpoint(global: &Global, id: &str, args: &VerbArgs, images: &Path) -> Result<String, String> {
    let state = delegate::state(global, id)?;
    let pid = state.pid;
    if pid <= 0 || !matches!(state.status.as_str(), "running" | "paused") {
        return Err(format!(
            "container {id} is {}: only a running or paused one can be checkpointed",
            state.status
        ));
    }
    let bundle = oci_bundles::Bundle::load(Path::new(&state.bundle)).map_err(|e| format!("container {id}: {e}"))?;
    // CRIU's config file for runc, below the command line.
    let flags = match crate::criu_conf::path(&bundle) {
        Some(file) => {
            crate::criu_conf::merged(&file, &args.flags).map_err(|e| format!("checkpoint of container {id}: {e}"))?
        }
        None => args.flags.clone(),
    };
    let flag = |name: &str| flags.get(name).is_some_and(|v| v != "false");
    for unsupported in [
        "pre-dump",
        "lazy-pages",
        "page-server",
        "parent-path",
        "auto-dedup",
        "status-fd",
    ] {
        if flags.contains_key(unsupported) {
            return Err(format!(
                "checkpoint of container {id}: --{unsupported} is not supported"
            ));
        }
    }
    let ghost_limit = match flags.get("ghost-limit") {
        Some(v) => checkpoint_core::criu_args::parse_size(v)
            .map_err(|e| format!("checkpoint of container {id}: ghost-limit: {e}"))?,
        None => checkpoint_core::fds::ghost::DEFAULT_GHOST_LIMIT,
    };
    // What the init's stdio is, for the restore to hand the new one in its place.
    let descriptors: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let opts = checkpoint_core::dump::DumpOpts {
        pid,
        images: images.to_owned(),
        leave_running: flag("leave-running"),
        // A container's console: its runtime makes a new one on restore.
        shell_job: flag("shell-job") || bundle.terminal(),
        ext_unix_sk: flag("ext-unix-sk"),
        file_locks: flag("file-locks"),
        tcp_established: flag("tcp-established"),
        tcp_close: false,
        skip_in_flight: flag("tcp-skip-in-flight"),
        network_lock: Default::default(),
        ghost_limit,
        // (runc has no flag for it; the engine's own command line does)
        link_remap: flag("link-remap"),
        freeze_cgroup: Some(
            checkpoint_core::ns::cgroup::freezer_dir(pid)
                .map_err(|e| format!("container {id} (init pid {pid}): its freezer cgroup: {e}"))?,
        ),
        container: Some(checkpoint_core::ns::ContainerSpec {
            declared_mounts: bundle.declared_mounts(),
            external: bundle
                .joined_namespaces()
                .into_iter()
                .chain(flags.get("empty-ns").map(|k| oci_bundles::ns_kind(k)))
                .collect(),
            externals: args.externals.clone(),
        }),
    };
    let report = checkpoint_core::dump::dump(&opts)
        .map_err(|e| format!("checkpoint of container {id}: {e}; the container is left as it was"))?;
    oci_bundles::write_descriptors(images, &descriptors).map_err(|e| format!("container {id}: {e}"))?;
    if !opts.leave_running {
        // As runc does after a checkpoint: the container (killed with its tree) goes, once
        // its init has ended (runc would take it for running, and wait, until then).
        let start = std::time::Instant::now();
        while checkpoint_core::dump::tree::alive(pid) && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        delegate::run(global, &["delete", "--force", id])
            .map_err(|e| format!("checkpoint of container {id} done, but removing it failed: {e}"))?;
    }
    Ok(format!(
        "checkpoint of container {id} (init pid {pid}) into {}: {} processes, {} pages written, frozen {:.1} ms, {:.1} ms in all{}",
        images.display(),
        report.tasks,
        report.pages_written,
        report.frozen.as_secs_f64() * 1e3,
        report.elapsed.as_secs_f64() * 1e3,
        if opts.leave_running { ", left running" } else { "" }
    ))
}
