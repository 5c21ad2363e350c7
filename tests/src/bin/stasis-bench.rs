//! `make bench`: dump and restore of a workload holding N MiB of touched random memory, images
//! on ext4 and on tmpfs, several runs each. Prints medians in seconds and GB/s, each next to the
//! machine's floor for the same bytes (memcpy; a plain write + fsync of the same bytes to the
//! same filesystem), and the peak RSS of `stasis dump` and `stasis restore`.
//!
//! Environment: STASIS_BENCH_SIZES (MiB, default "64,512,2048"), STASIS_BENCH_RUNS (default 5),
//! STASIS_BENCH_EXT4 (default /var/tmp), STASIS_BENCH_TMPFS (default /dev/shm).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ctests::workload::{become_subreaper, wait_for_file, Workload};
use ctests::workspace_bin;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn gbs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e9 / secs
}

fn floor_memcpy(bytes: usize) -> f64 {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![1u8; bytes];
    let t = Instant::now();
    dst.copy_from_slice(&src);
    std::hint::black_box(&dst);
    t.elapsed().as_secs_f64()
}

fn floor_write(bytes: usize, dir: &Path) -> f64 {
    let path = dir.join(format!("stasis-bench-floor-{}", std::process::id()));
    let chunk = vec![0xa5u8; 4 << 20];
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
    let s = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    s
}

/// Runs stasis, returns (wall seconds, peak RSS KiB from its summary line).
fn timed_stasis(args: &[&str]) -> (f64, u64) {
    let t = Instant::now();
    let out = Command::new(workspace_bin("stasis"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stasis {args:?}: {err}");
    let rss = err
        .split("peak RSS ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (secs, rss)
}

fn main() {
    become_subreaper();
    let sizes: Vec<u64> = std::env::var("STASIS_BENCH_SIZES")
        .unwrap_or_else(|_| "64,512,2048".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes in MiB"))
        .collect();
    let runs: usize = std::env::var("STASIS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let targets = [
        (
            "ext4",
            PathBuf::from(std::env::var("STASIS_BENCH_EXT4").unwrap_or_else(|_| "/var/tmp".into())),
        ),
        (
            "tmpfs",
            PathBuf::from(std::env::var("STASIS_BENCH_TMPFS").unwrap_or_else(|_| "/dev/shm".into())),
        ),
    ];
    println!("stasis bench: {runs} runs each, medians; floor = the same bytes through memcpy / write+fsync");
    println!(
        "{:>6} {:>6} | {:>8} {:>6} {:>8} {:>6} | {:>8} {:>6} {:>9} | {:>8} {:>8} | {:>9} {:>9}",
        "MiB",
        "fs",
        "dump s",
        "GB/s",
        "floor s",
        "ratio",
        "restore",
        "GB/s",
        "memcpy s",
        "dump RSS",
        "rest RSS",
        "fsync'd",
        "verified"
    );
    for &mb in &sizes {
        let bytes = mb << 20;
        for (fs_name, base) in &targets {
            let mut dumps = Vec::new();
            let mut restores = Vec::new();
            let mut floors = Vec::new();
            let mut copies = Vec::new();
            let (mut dump_rss, mut restore_rss) = (0, 0);
            let mut verified = 0;
            for run in 0..runs {
                let work = base.join(format!("stasis-bench-{}-{mb}-{run}", std::process::id()));
                let _ = std::fs::remove_dir_all(&work);
                std::fs::create_dir_all(&work).unwrap();
                let images = work.join("images");
                let mut w = Workload::start("hold", &work, Some(mb as u32));
                let (d, rss) = timed_stasis(&["dump", "-t", &w.pid.to_string(), "-D", images.to_str().unwrap()]);
                w.reap_original();
                dumps.push(d);
                dump_rss = dump_rss.max(rss);
                let (r, rss) = timed_stasis(&["restore", "-D", images.to_str().unwrap(), "--detach"]);
                restores.push(r);
                restore_rss = restore_rss.max(rss);
                w.signal(libc::SIGUSR1);
                let _ = checkpoint_core::sys::wait_exit(w.pid);
                wait_for_file(&work.join("result"), std::time::Duration::from_secs(60));
                if std::fs::read_to_string(work.join("result")).unwrap().starts_with("OK") {
                    verified += 1;
                }
                std::fs::remove_dir_all(&work).unwrap();
                floors.push(floor_write(bytes as usize, base));
                copies.push(floor_memcpy(bytes as usize));
            }
            let (d, r, f, c) = (
                median(&mut dumps),
                median(&mut restores),
                median(&mut floors),
                median(&mut copies),
            );
            println!(
                "{mb:>6} {fs_name:>6} | {d:>8.3} {:>6.2} {f:>8.3} {:>6.2} | {r:>8.3} {:>6.2} {c:>9.3} | {:>7}M {:>7}M | {:>9} {:>6}/{runs}",
                gbs(bytes, d),
                d / f,
                gbs(bytes, r),
                dump_rss / 1024,
                restore_rss / 1024,
                "yes",
                verified
            );
        }
    }
}
