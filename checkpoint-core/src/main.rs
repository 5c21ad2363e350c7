//! `stasis`: the command-line front door.

use checkpoint_core::criu_args;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use checkpoint_core::check;
use checkpoint_core::dump::{self, DumpOpts};
use checkpoint_core::image::ImageDir;
use checkpoint_core::restore::{self, RestoreOpts};
use checkpoint_core::show;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stasis",
    version,
    about = "Checkpoint and restore Linux processes (CRIU image format)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How a dump treats TCP connections (CRIU's flags).
#[derive(clap::Args)]
struct TcpDumpFlags {
    /// Save established TCP connections (TCP repair mode), locked until the restore.
    #[arg(long)]
    tcp_established: bool,
    /// Save established TCP connections as closed sockets.
    #[arg(long)]
    tcp_close: bool,
    /// Leave out connections not accepted yet instead of refusing the dump.
    #[arg(long)]
    skip_in_flight: bool,
    /// How connections are locked: iptables (CRIU's rules) or skip (the caller does it).
    #[arg(long, value_name = "iptables|skip", default_value = "iptables")]
    network_lock: checkpoint_core::netlock::Method,
}

/// CRIU's restore flags that ask for nothing more here: what the images hold is restored.
#[derive(clap::Args)]
struct RestoreAsDumped {
    /// Accepted as CRIU's: the file locks the images hold are taken again.
    #[arg(long)]
    file_locks: bool,
    /// Accepted as CRIU's: unix sockets connected outside are connected again by name.
    #[arg(long)]
    ext_unix_sk: bool,
    /// Accepted as CRIU's: files the dump linked back are opened through their links, which
    /// are then removed.
    #[arg(long)]
    link_remap: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process into an image directory (CRIU format).
    Dump {
        /// The process to dump.
        #[arg(short = 't', long = "tree", value_name = "PID")]
        pid: i32,
        /// Where to write the images (created 0700 if missing).
        #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
        dir: PathBuf,
        /// Let the process run on after the dump (otherwise it is killed once the images are safe).
        #[arg(short = 'R', long)]
        leave_running: bool,
        /// The process is a job of the caller's shell: its terminal fds are recorded.
        #[arg(short = 'j', long)]
        shell_job: bool,
        /// Allow datagram unix sockets connected to a socket outside the tree: the restore
        /// connects them to it again by name.
        #[arg(long)]
        ext_unix_sk: bool,
        /// Save the file locks the processes hold (without it, they are refused).
        #[arg(long)]
        file_locks: bool,
        /// Freeze the tree through this cgroup directory (v1 freezer or v2) while seizing it.
        #[arg(long)]
        freeze_cgroup: Option<PathBuf>,
        #[command(flatten)]
        tcp: TcpDumpFlags,
        /// The largest unlinked file whose contents are saved (bytes, or with K, M, G).
        #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = criu_args::parse_size)]
        ghost_limit: u64,
        /// Link an unlinked file that cannot be saved (linked elsewhere still, or over the ghost
        /// limit) back into its directory as link_remap.N for the restore, which removes it.
        #[arg(long)]
        link_remap: bool,
    },
    /// Restore a process from an image directory, at its dumped pid.
    Restore {
        /// The image directory.
        #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
        dir: PathBuf,
        /// Return once the process runs instead of waiting for it to exit.
        #[arg(short = 'd', long = "detach", visible_alias = "restore-detached")]
        detach: bool,
        /// Write the restored pid to this file.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Give the process our terminal and keep it in our session.
        #[arg(short = 'j', long)]
        shell_job: bool,
        /// fd[N]:KEY: use our fd N for the dumped file KEY (its path).
        #[arg(long = "inherit-fd", value_name = "fd[N]:KEY", value_parser = parse_inherit_fd)]
        inherit_fd: Vec<(i32, String)>,
        /// Restore established TCP connections (the dump saved them with --tcp-established).
        #[arg(long)]
        tcp_established: bool,
        /// Restore established TCP connections closed.
        #[arg(long)]
        tcp_close: bool,
        #[command(flatten)]
        _as_dumped: RestoreAsDumped,
    },
    /// Probe the kernel features Stasis relies on.
    Check,
    /// Show what a checkpoint holds: process tree, memory, files, namespaces, mounts, stats.
    Show {
        /// Print every decoded image as JSON (one object per file) instead.
        #[arg(long)]
        json: bool,
        /// The image directory.
        dir: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dump {
            pid,
            dir,
            leave_running,
            shell_job,
            ext_unix_sk,
            file_locks,
            freeze_cgroup,
            tcp,
            ghost_limit,
            link_remap,
        } => {
            let opts = DumpOpts {
                ghost_limit,
                link_remap,
                tcp_established: tcp.tcp_established,
                tcp_close: tcp.tcp_close,
                skip_in_flight: tcp.skip_in_flight,
                network_lock: tcp.network_lock,
                container: None,
                pid,
                images: dir,
                leave_running,
                shell_job,
                ext_unix_sk,
                file_locks,
                freeze_cgroup,
            };
            let r = dump::dump(&opts)?;
            eprintln!(
                "stasis: dumped pid {} ({} processes, {} VMAs, {} pages) in {:.3} s, frozen {:.3} s, peak RSS {} KiB",
                r.pid,
                r.tasks,
                r.vmas,
                r.pages_written,
                r.elapsed.as_secs_f64(),
                r.frozen.as_secs_f64(),
                peak_rss_kib()
            );
        }
        Command::Restore {
            dir,
            detach,
            pid_file,
            shell_job,
            inherit_fd,
            tcp_established,
            tcp_close,
            _as_dumped,
        } => {
            let opts = RestoreOpts {
                tcp_established,
                tcp_close,
                images: dir,
                detach,
                pid_file,
                shell_job,
                inherit_fds: inherit_fd,
                cgroup_settings: false,
                declared_mounts: Vec::new(),
                externals: Vec::new(),
            };
            let r = restore::restore(&opts)?;
            eprintln!(
                "stasis: restored pid {} ({} processes) in {:.3} s, peak RSS {} KiB",
                r.pid,
                r.tasks,
                r.elapsed.as_secs_f64(),
                peak_rss_kib()
            );
            if let Some(status) = r.exit_status {
                // Like CRIU: without --detach, exit as the restored process did.
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
            }
        }
        Command::Check => {
            let mut out = String::new();
            let features = check::check();
            for f in &features {
                let state = if f.ok {
                    "ok".to_owned()
                } else {
                    format!("missing ({})", f.detail)
                };
                out.push_str(&format!(
                    "{:<32} {state}\n{:<32}   needed for: {}\n",
                    f.name, "", f.needed_for
                ));
            }
            write_stdout(&out)?;
        }
        Command::Show { json, dir } => {
            let images = ImageDir::open(&dir)?;
            if json {
                let files = show::decode_all(&images)?;
                let mut out = serde_json::to_string_pretty(&files).context("rendering JSON")?;
                out.push('\n');
                write_stdout(&out)?;
            } else {
                let summary = show::summarize(&images)?;
                write_stdout(&show::render(&dir, &summary))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Our peak resident memory (VmHWM), for the summary lines the bench reads.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn parse_inherit_fd(s: &str) -> Result<(i32, String), String> {
    let rest = s.strip_prefix("fd[").ok_or("expected fd[N]:KEY")?;
    let (n, key) = rest.split_once("]:").ok_or("expected fd[N]:KEY")?;
    let n: u16 = n.parse().map_err(|_| format!("{n:?} is not an fd number"))?;
    Ok((i32::from(n), key.to_owned()))
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn main() -> ExitCode {
    let (args, log) = match criu_args::translate(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("stasis: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    // CRIU's -o: in the work directory (-W), which is the images directory by default.
    let log = log.file.map(|file| match (log.dir, &cli.command) {
        (Some(work), _) => PathBuf::from(work).join(file),
        (None, Command::Dump { dir, .. } | Command::Restore { dir, .. }) => dir.join(file),
        (None, _) => PathBuf::from(file),
    });
    let outcome = run(cli);
    let result = match &outcome {
        Ok(_) => None,
        Err(e) => {
            // Our errors already carry their cause in their message: print each cause once.
            let mut msg = String::new();
            for cause in e.chain() {
                let text = cause.to_string();
                if !msg.contains(&text) {
                    msg = if msg.is_empty() { text } else { format!("{msg}: {text}") };
                }
            }
            eprintln!("stasis: {msg}");
            Some(msg)
        }
    };
    if let Some(path) = log {
        let line = match &result {
            None => "stasis: done\n".to_owned(),
            Some(msg) => format!("stasis: Error: {msg}\n"),
        };
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    outcome.unwrap_or(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::parse_inherit_fd;

    #[test]
    fn inherit_fd_takes_fd_numbers_and_refuses_negative_or_malformed_ones() {
        assert_eq!(parse_inherit_fd("fd[7]:pipe:[123]"), Ok((7, "pipe:[123]".into())));
        assert!(parse_inherit_fd("fd[-1]:x").is_err());
        assert!(parse_inherit_fd("fd[70000]:x").is_err());
        assert!(parse_inherit_fd("7:x").is_err());
        assert!(parse_inherit_fd("fd[7]x").is_err());
    }
}
