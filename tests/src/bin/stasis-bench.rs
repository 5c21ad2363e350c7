//! `make bench`: dump and restore of a workload holding N MiB of touched random memory, images
//! on ext4 and on tmpfs, several runs each. Prints medians in seconds and GB/s, each next to the
//! machine's floor for the same bytes (memcpy; a plain write + fsync of the same bytes to the
//! same filesystem), and the peak RSS of `stasis dump` and `stasis restore`.
//!
//! CRIU (4.1.1, fetched by `scripts/reference-tools.sh`, or STASIS_BENCH_CRIU=path) dumps and
//! restores the same workload in the same run, and CRIU's own timings (stats-dump frozen_time,
//! stats-restore restore_time) are printed next to ours; set STASIS_BENCH_CRIU=off to skip it.
//!
//! Then a tree: P processes of T threads each (STASIS_BENCH_TREE, default "50x10"), images on
//! tmpfs: dump and restore medians, per process, and CRIU's wall-clock times on the same tree.
//!
//! Then a container: a busybox container counting in its shell's memory (as the tests run it),
//! checkpointed and restored by `stasis-runc` and by runc with CRIU (`runc --criu`), wall
//! clock of the whole runtime commands (restore includes runc creating the container), and the
//! frozen time each checkpoint recorded in its stats-dump image.
//!
//! Then TCP: a process with STASIS_BENCH_CONNS (default 1000) established loopback connections,
//! dumped with `--tcp-established` and restored by Stasis and by CRIU 4.2.1 (CRIU 4.1 cannot
//! dump inet sockets here) in the same run, STASIS_BENCH_CONNS_RUNS runs (default 3: CRIU's
//! iptables lock makes one run take minutes); medians, ratios, and the workload's own check of
//! every byte after each restore. STASIS_BENCH_ONLY=conns runs just this row,
//! STASIS_BENCH_CONNS=0 leaves it out.
//!
//! Environment: STASIS_BENCH_SIZES (MiB, default "64,512,2048"), STASIS_BENCH_RUNS (default 5),
//! STASIS_BENCH_EXT4 (default /var/tmp), STASIS_BENCH_TMPFS (default /dev/shm).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ctests::inet::Tool;
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

/// Reads the images into fresh memory: what any restore must at least do (page faults + copy).
fn floor_fresh_read(images: &Path) -> f64 {
    use std::io::Read;
    let t = Instant::now();
    let mut total = 0;
    for e in std::fs::read_dir(images).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("pages-") {
            let mut f = std::fs::File::open(&p).unwrap();
            let len = f.metadata().unwrap().len() as usize;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf).unwrap();
            total += std::hint::black_box(&buf).len();
        }
    }
    assert!(total > 0);
    t.elapsed().as_secs_f64()
}

fn criu_path() -> Option<PathBuf> {
    match std::env::var("STASIS_BENCH_CRIU") {
        Ok(v) if v == "off" => None,
        Ok(v) => Some(PathBuf::from(v)),
        Err(_) => {
            // CRIU 4.1.1, fetched (once) by the project's script, which prints where it put it.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reference-tools.sh");
            let out = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
            assert!(out.status.success(), "{} failed", script.display());
            let bin = String::from_utf8(out.stdout).expect("a path");
            Some(Path::new(bin.trim()).join("criu-4.1"))
        }
    }
}

/// Dumps and restores a fresh workload with CRIU; returns CRIU's own (frozen, restore) seconds.
fn criu_run(criu: &Path, base: &Path, mb: u64) -> Option<(f64, f64)> {
    use checkpoint_core::image::{pb, ImageDir, ImageKind};
    let work = base.join(format!("stasis-bench-criu-{}-{mb}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("images")).unwrap();
    let images = work.join("images");
    let mut w = Workload::start("hold", &work, Some(mb as u32));
    let quiet = |args: &[&str]| {
        Command::new(criu)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
    };
    let img = images.to_str().unwrap();
    let dumped = quiet(&["dump", "-t", &w.pid.to_string(), "-D", img, "--shell-job"]).is_some_and(|s| s.success());
    if !dumped {
        let _ = std::fs::remove_dir_all(&work);
        return None;
    }
    w.reap_original();
    let restored = quiet(&["restore", "-D", img, "--shell-job", "-d"]).is_some_and(|s| s.success());
    let dir = ImageDir::open(&images).ok()?;
    let d = dir.read_one::<pb::StatsEntry>(ImageKind::StatsDump, 0).ok()??.dump?;
    let r = dir
        .read_one::<pb::StatsEntry>(ImageKind::StatsRestore, 0)
        .ok()??
        .restore?;
    if restored {
        w.signal(libc::SIGUSR1);
        let _ = checkpoint_core::sys::wait_exit(w.pid);
    }
    let _ = std::fs::remove_dir_all(&work);
    Some((f64::from(d.frozen_time) / 1e6, f64::from(r.restore_time) / 1e6))
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

/// Dumps and restores a tree of `procs` processes with `threads` threads each, `runs` times with
/// `tool` (stasis or a CRIU binary); returns the dump and restore wall-clock seconds and how
/// many restored trees verified.
fn tree_runs(tool: &Path, base: &Path, procs: u32, threads: u32, runs: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut dumps, mut restores, mut ok) = (Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        let work = base.join(format!("stasis-bench-tree-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let images = work.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let img = images.to_str().unwrap();
        let args = [procs.to_string(), threads.to_string()];
        let null = || [Stdio::null(), Stdio::null(), Stdio::null()];
        let mut w = Workload::start_args("swarm", &work, &args, &[], null());
        let run_tool = |args: &[&str]| {
            let t = Instant::now();
            let out = Command::new(tool).args(args).stdin(Stdio::null()).output().unwrap();
            (t.elapsed().as_secs_f64(), out)
        };
        let (d, out) = run_tool(&["dump", "-t", &w.pid.to_string(), "-D", img]);
        w.reap_original();
        ctests::workload::reap_all_children();
        if !out.status.success() {
            eprintln!(
                "{} dump failed: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&work);
            continue;
        }
        dumps.push(d);
        let (r, out) = run_tool(&["restore", "-D", img, "-d"]);
        if out.status.success() {
            restores.push(r);
            w.signal(libc::SIGUSR1);
            wait_for_file(&work.join("result"), std::time::Duration::from_secs(60));
            let _ = checkpoint_core::sys::wait_exit(w.pid);
            if std::fs::read_to_string(work.join("result")).unwrap().starts_with("OK") {
                ok += 1;
            }
        } else {
            eprintln!(
                "{} restore failed: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
    (dumps, restores, ok)
}

fn tree_bench(runs: usize, tmpfs: &Path, criu: Option<&Path>) {
    let spec = std::env::var("STASIS_BENCH_TREE").unwrap_or_else(|_| "50x10".into());
    let (p, t) = spec.split_once('x').expect("STASIS_BENCH_TREE is PxT");
    let (procs, threads): (u32, u32) = (p.parse().unwrap(), t.parse().unwrap());
    println!();
    println!("tree: {procs} processes x {threads} threads, images on tmpfs, {runs} runs; medians, wall clock.");
    println!(
        "{:>7} | {:>8} {:>9} | {:>8} {:>9} | {:>5}",
        "tool", "dump s", "ms/proc", "restore", "ms/proc", "ok"
    );
    let mut tools = vec![("stasis", workspace_bin("stasis"))];
    if let Some(c) = criu {
        tools.push(("criu", c.to_owned()));
    }
    for (name, tool) in tools {
        let (mut d, mut r, ok) = tree_runs(&tool, tmpfs, procs, threads, runs);
        if d.is_empty() || r.is_empty() {
            println!("{name:>7} | failed");
            continue;
        }
        let (d, r) = (median(&mut d), median(&mut r));
        let per = |s: f64| s * 1e3 / f64::from(procs);
        println!(
            "{name:>7} | {d:>8.3} {:>9.2} | {r:>8.3} {:>9.2} | {ok}/{runs}",
            per(d),
            per(r)
        );
    }
}

/// Checkpoint and restore of a counting busybox container by `runtime` (global args before
/// the verb); wall-clock seconds of each run, the frozen time the checkpoint recorded
/// (stats-dump in the image path), and how many went on counting afterwards.
fn container_runs(name: &str, global: &[&str], runs: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, usize) {
    use ctests::container::{count, Container};
    let (mut dumps, mut restores, mut frozen, mut ok) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        let dir = std::env::temp_dir().join(format!("stasis-bench-ct-{name}-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Container::counting(&dir, &format!("bench-{name}-{run}"));
        let bin = if name == "stasis" {
            workspace_bin("stasis-runc").to_str().unwrap().to_owned()
        } else {
            "runc".to_owned()
        };
        let quiet = |mut cmd: Command| {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            cmd.status().unwrap().success()
        };
        let bundle = c.bundle.to_str().unwrap().to_owned();
        assert!(quiet(c.cmd("runc", &["run", "-d", "--bundle", &bundle, "{}"])));
        let start = Instant::now();
        while count(&c.rootfs()) < 5 && start.elapsed().as_secs() < 20 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let images = dir.join("images");
        let img = images.to_str().unwrap().to_owned();
        let mut checkpoint: Vec<&str> = global.to_vec();
        checkpoint.extend(["checkpoint", "--image-path", &img, "{}"]);
        let mut restore: Vec<&str> = global.to_vec();
        restore.extend(["restore", "-d", "--image-path", &img, "--bundle", &bundle, "{}"]);
        let t = Instant::now();
        if !quiet(c.cmd(&bin, &checkpoint)) {
            continue;
        }
        dumps.push(t.elapsed().as_secs_f64());
        frozen.extend(frozen_secs(&images));
        let _ = quiet(c.cmd("runc", &["delete", "{}"]));
        let dumped = count(&c.rootfs());
        let t = Instant::now();
        if !quiet(c.cmd(&bin, &restore)) {
            continue;
        }
        restores.push(t.elapsed().as_secs_f64());
        let start = Instant::now();
        while count(&c.rootfs()) <= dumped + 2 && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if count(&c.rootfs()) > dumped + 2 {
            ok += 1;
        }
        c.kill_and_delete();
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
    (dumps, restores, frozen, ok)
}

fn container_bench(runs: usize, criu: Option<&Path>) {
    println!();
    println!("container: busybox counting, checkpoint (killing it) and restore (runc creating it again), {runs} runs; medians, wall clock.");
    println!(
        "{:>12} | {:>10} | {:>8} | {:>10} | {:>5}",
        "runtime", "checkpoint", "frozen", "restore", "ok"
    );
    let criu_arg = criu.map(|c| c.to_str().unwrap().to_owned());
    let mut runtimes: Vec<(&str, Vec<&str>)> = vec![("stasis", vec![])];
    if let Some(c) = &criu_arg {
        runtimes.push(("runc+criu", vec!["--criu", c.as_str()]));
    }
    for (name, global) in runtimes {
        let (mut d, mut r, mut f, ok) = container_runs(name, &global, runs);
        if d.is_empty() || r.is_empty() {
            println!("{name:>12} | failed");
            continue;
        }
        let f = if f.is_empty() {
            "-".into()
        } else {
            format!("{:.3}", median(&mut f))
        };
        println!(
            "{name:>12} | {:>10.3} | {f:>8} | {:>10.3} | {ok}/{runs}",
            median(&mut d),
            median(&mut r)
        );
    }
}

/// `frozen_time` of the stats-dump image in `images` (both tools write it), in seconds.
fn frozen_secs(images: &Path) -> Option<f64> {
    use checkpoint_core::image::{pb, ImageDir, ImageKind};
    let dir = ImageDir::open(images).ok()?;
    let d = dir.read_one::<pb::StatsEntry>(ImageKind::StatsDump, 0).ok()??.dump?;
    Some(f64::from(d.frozen_time) / 1e6)
}

/// Dumps (`--tcp-established`, killing it) and restores a process holding `n` established
/// loopback connections (both ends its own, 4 KiB unread each way on each), `runs` times with
/// `tool`; returns dump and restore wall-clock seconds, frozen seconds (stats-dump), how many
/// lock rules the restores left in all, and how many restored workloads verified every byte.
fn conns_runs(tool: Tool, base: &Path, n: u32, runs: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, usize, usize) {
    let (mut dumps, mut restores, mut frozen, mut left, mut ok) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    for run in 0..runs {
        let work = base.join(format!(
            "stasis-bench-conns-{}-{}-{run}",
            tool.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let images = work.join("images");
        let null = || [Stdio::null(), Stdio::null(), Stdio::null()];
        let bin = ctests::workload::inet_bin();
        let mut w = Workload::start_command(
            std::process::Command::new(&bin),
            "conns",
            &work,
            &[n.to_string()],
            &[],
            null(),
        );
        if let Ok(r) = std::fs::read_to_string(work.join("result")) {
            panic!("conns workload: {r}");
        }
        // every lock rule names the listener's port (as source or destination)
        let port: u16 = ctests::inet::read_info(&work)["port"].parse().unwrap();
        let _rules = ctests::inet::LockRulesGuard(vec![port]);
        let t = Instant::now();
        let dumped = tool.dump(w.pid, &images, &[]);
        let d = t.elapsed().as_secs_f64();
        if let Err(e) = dumped {
            eprintln!("{e}");
            drop(w);
            let _ = std::fs::remove_dir_all(&work);
            continue;
        }
        w.reap_original();
        dumps.push(d);
        frozen.extend(frozen_secs(&images));
        let t = Instant::now();
        let restored = tool.restore(&images, &[]);
        let r = t.elapsed().as_secs_f64();
        left += ctests::inet::lock_rules(&[port]).len();
        match restored {
            Ok(_) => {
                restores.push(r);
                w.signal(libc::SIGUSR1);
                wait_for_file(&work.join("result"), std::time::Duration::from_secs(300));
                let _ = checkpoint_core::sys::wait_exit(w.pid);
                if std::fs::read_to_string(work.join("result")).unwrap().starts_with("OK") {
                    ok += 1;
                }
            }
            Err(e) => eprintln!("{e}"),
        }
        drop(w);
        let _ = std::fs::remove_dir_all(&work);
    }
    (dumps, restores, frozen, left, ok)
}

/// The connections row: Stasis and CRIU 4.2.1 on the same workload in the same run, medians,
/// and the ratio Stasis / CRIU.
fn conns_bench(runs: usize, tmpfs: &Path, criu: bool) {
    let n: u32 = std::env::var("STASIS_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    if n == 0 {
        return; // STASIS_BENCH_CONNS=0: the row is left out
    }
    let runs = std::env::var("STASIS_BENCH_CONNS_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(runs.min(3));
    println!();
    println!(
        "tcp: {n} established loopback connections in one process (4 KiB unread each way on each), --tcp-established,"
    );
    println!("images on tmpfs, {runs} runs; medians, wall clock; frozen = stats-dump frozen_time; locks = rules left after restores.");
    println!(
        "{:>7} | {:>8} | {:>8} | {:>8} | {:>5} | {:>5}",
        "tool", "dump s", "restore", "frozen", "locks", "ok"
    );
    let mut tools = vec![Tool::Stasis];
    if criu {
        tools.push(Tool::Criu);
    }
    let mut medians = Vec::new();
    for tool in tools {
        let (mut d, mut r, mut f, left, ok) = conns_runs(tool, tmpfs, n, runs);
        if d.is_empty() || r.is_empty() {
            println!("{:>7} | failed", tool.name());
            continue;
        }
        let (d, r) = (median(&mut d), median(&mut r));
        let f = if f.is_empty() {
            "-".into()
        } else {
            format!("{:.3}", median(&mut f))
        };
        println!(
            "{:>7} | {d:>8.3} | {r:>8.3} | {f:>8} | {left:>5} | {ok}/{runs}",
            tool.name()
        );
        medians.push((tool, d, r));
    }
    if let [(Tool::Stasis, sd, sr), (Tool::Criu, cd, cr)] = medians[..] {
        println!("stasis / criu: dump {:.3}, restore {:.4}", sd / cd, sr / cr);
    }
}

fn main() {
    become_subreaper();
    // What started us may leave fds open (make's jobserver pipe...): no workload inherits them,
    // or it would be dumped holding a pipe from outside the dump.
    ctests::workload::no_inherited_fds();
    let only = std::env::var("STASIS_BENCH_ONLY").unwrap_or_default();
    if only == "conns" {
        let runs = std::env::var("STASIS_BENCH_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        let tmpfs = PathBuf::from(std::env::var("STASIS_BENCH_TMPFS").unwrap_or_else(|_| "/dev/shm".into()));
        let criu = std::env::var("STASIS_BENCH_CRIU").as_deref() != Ok("off");
        conns_bench(runs, &tmpfs, criu);
        return;
    }
    if only == "container" {
        let runs = std::env::var("STASIS_BENCH_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        container_bench(runs, criu_path().as_deref());
        return;
    }
    let sizes: Vec<u64> = std::env::var("STASIS_BENCH_SIZES")
        .unwrap_or_else(|_| "64,512,2048".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
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
    let criu = criu_path();
    println!("stasis bench: {runs} runs each; medians of the wall-clock seconds of whole `stasis` commands.");
    println!("dump floor: write+fsync of the same bytes to the same fs. restore floor: reading the pages image");
    println!("into fresh memory. x = ours / floor. CRIU: its own frozen_time / restore_time stats, one run.");
    println!(
        "{:>5} {:>5} | {:>7} {:>5} {:>7} {:>5} | {:>7} {:>5} {:>7} {:>5} | {:>7} | {:>6} {:>6} | {:>7} {:>7} | {:>4}",
        "MiB",
        "fs",
        "dump",
        "GB/s",
        "floor",
        "x",
        "restore",
        "GB/s",
        "floor",
        "x",
        "memcpy",
        "d.RSS",
        "r.RSS",
        "criu d",
        "criu r",
        "ok"
    );
    for &mb in &sizes {
        let bytes = mb << 20;
        for (fs_name, base) in &targets {
            let (mut dumps, mut restores, mut floors, mut rfloors, mut copies) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut dump_rss, mut restore_rss, mut verified) = (0, 0, 0);
            for run in 0..runs {
                let work = base.join(format!("stasis-bench-{}-{mb}-{run}", std::process::id()));
                let _ = std::fs::remove_dir_all(&work);
                std::fs::create_dir_all(&work).unwrap();
                let images = work.join("images");
                let img = images.to_str().unwrap();
                let mut w = Workload::start("hold", &work, Some(mb as u32));
                let (d, rss) = timed_stasis(&["dump", "-t", &w.pid.to_string(), "-D", img]);
                w.reap_original();
                dumps.push(d);
                dump_rss = dump_rss.max(rss);
                rfloors.push(floor_fresh_read(&images));
                let (r, rss) = timed_stasis(&["restore", "-D", img, "--detach"]);
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
            let rf = median(&mut rfloors);
            let (cd, cr) = match criu.as_deref().and_then(|p| criu_run(p, base, mb)) {
                Some((cd, cr)) => (format!("{cd:.3}"), format!("{cr:.3}")),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{mb:>5} {fs_name:>5} | {d:>7.3} {:>5.2} {f:>7.3} {:>5.2} | {r:>7.3} {:>5.2} {rf:>7.3} {:>5.2} | {c:>7.3} | {:>5}M {:>5}M | {cd:>7} {cr:>7} | {verified}/{runs}",
                gbs(bytes, d),
                d / f,
                gbs(bytes, r),
                r / rf,
                dump_rss / 1024,
                restore_rss / 1024,
            );
        }
    }
    tree_bench(runs, &targets[1].1, criu.as_deref());
    container_bench(runs, criu.as_deref());
    conns_bench(runs, &targets[1].1, criu.is_some());
}
