//! A podman container on podman's default bridge network (CNI) with a published port
//! (`-p 127.0.0.1:HOSTPORT:7000`): a busybox `nc` server whose per-connection shell counts the
//! lines it answers. A client on the host holds a connection through the port mapping across
//! `podman container checkpoint --tcp-established` and `restore --tcp-established` (the
//! container keeps its address, the count goes on), then across an `--export`/`--import`
//! round trip, and new clients are served each time. Run with `--runtime stasis-runc` and,
//! as the reference, with runc 1.1.5 driving CRIU 4.2 (found as `criu` on runc's PATH).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ctests::container::ok;
use ctests::net::{assert_no_lock_rules, free_port, wait_listening, LineClient};
use ctests::podman::Podman;
use ctests::workload::test_dirs;

/// The container's server: a shell per connection, its count in its memory only.
const COUNTER_SH: &str = "i=0\nwhile read l; do i=$((i+1)); echo \"$i $l\"; done\n";

/// Which runtime podman hands the container to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    StasisRunc,
    /// runc, which checkpoints through the reference CRIU 4.2.
    RuncCriu,
}

/// Podman with the given runtime for every command (a later `--runtime` wins over the one
/// the helper puts first); for runc, a PATH whose `criu` is the reference CRIU 4.2.
struct Net<'a> {
    podman: &'a Podman,
    runtime: Runtime,
    criu_dir: std::path::PathBuf,
}

impl Net<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut all: Vec<&str> = Vec::new();
        if self.runtime == Runtime::RuncCriu {
            all.extend(["--runtime", "/usr/sbin/runc"]);
        }
        all.extend(args);
        let mut cmd = self.podman.cmd(&all);
        if self.runtime == Runtime::RuncCriu {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", self.criu_dir.display()));
        }
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        String::from_utf8_lossy(&ok(&format!("podman {:?} {args:?}", self.runtime), out))
            .trim()
            .to_owned()
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
    }
}

/// Imports a busybox image with /counter.sh as `localhost/bbnet:latest`.
fn import_image(net: &Net, dir: &Path) {
    let rootfs = dir.join("bbnet-rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("counter.sh"), COUNTER_SH).unwrap();
    let tar = dir.join("bbnet.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    ok("tar", out);
    net.ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tar.to_str().unwrap(),
        "localhost/bbnet:latest",
    ]);
}

fn held_connection_through_checkpoints(runtime: Runtime) {
    // (podman wants its runroot path under 50 characters)
    let short = if runtime == Runtime::StasisRunc {
        "pnet-s"
    } else {
        "pnet-c"
    };
    let (scratch, _, _) = test_dirs(short);
    let podman = Podman::new(&scratch.join("podman"));
    let criu_dir = scratch.join("criu-bin");
    std::fs::create_dir(&criu_dir).unwrap();
    std::os::unix::fs::symlink(ctests::reference_criu("4.2"), criu_dir.join("criu")).unwrap();
    let net = Net {
        podman: &podman,
        runtime,
        criu_dir,
    };
    import_image(&net, &scratch.0);
    let host_port = free_port();
    let publish = format!("127.0.0.1:{host_port}:7000");
    net.ok(&[
        "run",
        "-d",
        "--name",
        "n1",
        "-p",
        &publish,
        "localhost/bbnet:latest",
        "/bin/busybox",
        "nc",
        "-ll",
        "-p",
        "7000",
        "-e",
        "/bin/sh",
        "/counter.sh",
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], host_port));
    wait_listening(addr, Duration::from_secs(30));
    let ip = net.inspect("n1", "{{.NetworkSettings.IPAddress}}");
    assert!(!ip.is_empty(), "the container has no address on the bridge");

    let mut held = LineClient::connect(addr);
    assert_eq!(held.ask("a"), "1 a");
    assert_eq!(held.ask("b"), "2 b");

    // Without --tcp-established the checkpoint is refused and the container runs on.
    let out = net.cmd(&["container", "checkpoint", "n1"]).output().unwrap();
    assert!(
        !out.status.success(),
        "{runtime:?}: a checkpoint of an established connection without --tcp-established"
    );
    assert_eq!(net.inspect("n1", "{{.State.Status}}"), "running");
    assert_eq!(held.ask("b2"), "3 b2", "the held connection after the refusal");

    // Checkpoint (the container stops) and restore: the same connection goes on.
    net.ok(&["container", "checkpoint", "--tcp-established", "n1"]);
    assert_eq!(net.inspect("n1", "{{.State.Status}}"), "exited");
    net.ok(&["container", "restore", "--tcp-established", "n1"]);
    assert_eq!(net.inspect("n1", "{{.State.Status}}"), "running");
    assert_eq!(
        net.inspect("n1", "{{.NetworkSettings.IPAddress}}"),
        ip,
        "the container kept its address"
    );
    assert_eq!(held.ask("c"), "4 c", "the held connection goes on");
    assert_eq!(LineClient::connect(addr).ask("x"), "1 x", "a new client");

    // --export, the container removed, --import: the connection and new clients again.
    let archive = scratch.join("n1.tar.gz");
    net.ok(&[
        "container",
        "checkpoint",
        "--tcp-established",
        "--export",
        archive.to_str().unwrap(),
        "n1",
    ]);
    net.ok(&["rm", "n1"]);
    net.ok(&[
        "container",
        "restore",
        "--tcp-established",
        "--import",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(net.inspect("n1", "{{.State.Status}}"), "running");
    assert_eq!(
        net.inspect("n1", "{{.NetworkSettings.IPAddress}}"),
        ip,
        "the imported container kept its address"
    );
    assert_eq!(held.ask("d"), "5 d", "the held connection goes on after the import");
    assert_eq!(
        LineClient::connect(addr).ask("y"),
        "1 y",
        "a new client after the import"
    );
    assert_eq!(held.ask("e"), "6 e");
    drop(held);
    net.ok(&["rm", "--force", "--time", "0", "n1"]);
    assert_no_lock_rules(&[host_port, 7000], &format!("{runtime:?}: at the end"));
}

#[test]
fn a_connection_through_a_published_port_survives_checkpoint_restore_and_export_import_stasis_runc() {
    held_connection_through_checkpoints(Runtime::StasisRunc);
}

#[test]
fn a_connection_through_a_published_port_survives_checkpoint_restore_and_export_import_runc_criu() {
    held_connection_through_checkpoints(Runtime::RuncCriu);
}
