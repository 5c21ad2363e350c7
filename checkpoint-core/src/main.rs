//! `stasis`: the command-line front door.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use checkpoint_core::image::ImageDir;
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

#[derive(Subcommand)]
enum Command {
    /// Show what a checkpoint holds: process tree, memory, files, namespaces, mounts, stats.
    Show {
        /// Print every decoded image as JSON (one object per file) instead.
        #[arg(long)]
        json: bool,
        /// The image directory.
        dir: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stasis: {e:#}");
            ExitCode::FAILURE
        }
    }
}
