//! TCP, UDP and netlink sockets across tools: what Stasis dumps CRIU 4.2.1 restores, what CRIU
//! dumps Stasis restores (and CRIU alone, the control that keeps the harness honest). The inet
//! workload (tests/workloads/inet.c) checks after each restore that its sockets carry on: every
//! queued byte, the options, new connections and datagrams. After each restore no network-lock
//! rule (iptables, mark 0xc114) for the workload's ports may remain. The images of both tools
//! for the same workload are compared field by field (crit's decode, and ours for the fields
//! crit 3.17 does not know).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use checkpoint_core::image::{pb, ImageDir, ImageKind};
use ctests::crit_decode;
use ctests::inet::{lock_rules, read_info, LockRulesGuard, Tool};
use ctests::workload::*;
use serde_json::{json, Value};

use Tool::{Criu, Stasis};

/// Byte `i` of stream `s`, as the workload makes them.
fn pat(s: u32, i: u64) -> u8 {
    (i.wrapping_mul(131) + u64::from(s) * 17 + (i >> 9)) as u8
}

fn stream(s: u32, from: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pat(s, from + i)).collect()
}

/// What the test holds for a workload between its steps (the peer's end, pre-dump sockets).
#[derive(Default)]
struct Outside {
    listener: Option<TcpListener>,
    peer: Option<TcpStream>,
    backlog: Option<TcpStream>,
    pings: Vec<(String, TcpStream)>,
}

const PEER_BEFORE: usize = 50_000;
const PEER_DURING: usize = 10_000;

/// Starts `inet MODE` and what stands outside it; returns the workload, its info, and the TCP
/// ports whose lock rules the dump may set.
fn start(mode: &str, work: &Path, out: &mut Outside) -> (Workload, BTreeMap<String, String>, Vec<u16>) {
    let mut args = Vec::new();
    if mode == "peer" {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        args.push(l.local_addr().unwrap().port().to_string());
        out.listener = Some(l);
    }
    let null = || [Stdio::null(), Stdio::null(), Stdio::null()];
    // In a session of its own (`setsid`, which does not fork here: our child leads no group):
    // CRIU refuses a tree whose session leader is outside its pid namespace, as the caller's
    // may be (a CI runner's is).
    let mut setsid = std::process::Command::new("setsid");
    setsid.arg(ctests::workload::inet_bin());
    let w = Workload::start_command(setsid, mode, work, &args, &[], null());
    if let Ok(r) = std::fs::read_to_string(work.join("result")) {
        panic!("the workload failed to set up: {r}");
    }
    let info = read_info(work);
    let mut ports: Vec<u16> = info.values().filter_map(|v| v.parse().ok()).collect();
    ports.extend(args.iter().filter_map(|a| a.parse::<u16>().ok()));
    if matches!(mode, "udp" | "netlink") {
        // No TCP here: UDP ports and netlink port ids may equal TCP ports of other tests,
        // whose lock rules are theirs to see and lift.
        ports.clear();
    }
    match mode {
        "peer" => {
            let (mut s, _) = out.listener.as_ref().unwrap().accept().unwrap();
            s.write_all(&stream(8, 0, PEER_BEFORE)).unwrap();
            out.peer = Some(s);
        }
        "listen" => {
            // a connection the workload does not accept before the dump
            let mut s = TcpStream::connect(("127.0.0.1", port(&info, "l4"))).unwrap();
            s.write_all(b"backlog").unwrap();
            ports.push(s.local_addr().unwrap().port());
            out.backlog = Some(s);
            std::thread::sleep(Duration::from_millis(100));
        }
        _ => {}
    }
    (w, info, ports)
}

fn port(info: &BTreeMap<String, String>, key: &str) -> u16 {
    info[key].parse().unwrap()
}

/// The number of established TCP sockets of the tree: the lock has two rules for each.
fn established(mode: &str) -> usize {
    match mode {
        "pair" => 6,
        "peer" => 1,
        _ => 0,
    }
}

/// What the test does after the restore, before asking the workload to check.
fn after_restore(mode: &str, work: &Path, info: &BTreeMap<String, String>, out: &mut Outside) {
    match mode {
        "listen" => {
            // l6 is v6only: IPv4 to its port must find nobody
            assert!(
                TcpStream::connect(("127.0.0.1", port(info, "l6"))).is_err(),
                "l6 took IPv4: v6only lost"
            );
            for (name, host) in [("l4", "127.0.0.1"), ("l6", "::1"), ("d6", "127.0.0.1")] {
                let mut s = TcpStream::connect((host, port(info, name)))
                    .unwrap_or_else(|e| panic!("{name} does not listen after the restore: {e}"));
                s.write_all(b"ping").unwrap();
                out.pings.push((name.to_owned(), s));
            }
        }
        "peer" => {
            std::fs::write(work.join("expect"), (PEER_BEFORE + PEER_DURING).to_string()).unwrap();
        }
        _ => {}
    }
}

/// What the test checks after the workload's verdict.
fn after_verdict(mode: &str, info: &BTreeMap<String, String>, out: &mut Outside, result: &str) {
    match mode {
        "listen" => {
            for (name, s) in &mut out.pings {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                assert_eq!(reply, format!("pong {name}"));
            }
            // --skip-in-flight: the connection left in l4's backlog is not carried (CRIU's way)
            assert!(result.contains("backlog=lost"), "{result}");
        }
        "peer" => {
            let s = out.peer.as_mut().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            let sent: usize = info["sent"].parse().unwrap();
            assert_eq!(got.len(), sent + 4096, "bytes from the workload");
            assert!(got == stream(7, 0, sent + 4096), "the workload's stream differs");
        }
        "udp" => {
            // CRIU 4.2.1 neither dumps nor restores queued UDP datagrams: whichever side CRIU
            // is on, they are gone; the sockets themselves go on.
            assert!(result.contains("queued=0/5"), "{result}");
        }
        _ => {}
    }
}

/// Starts `mode`, dumps it with `dumper` (killing it), checks the images, restores with
/// `restorer`, and has the workload prove it carried on.
fn round_trip(mode: &str, dumper: Tool, restorer: Tool) {
    let _descendants = Descendants;
    let (_scratch, work, images) = test_dirs(&format!("inet-{mode}-{}-{}", dumper.name(), restorer.name()));
    let mut out = Outside::default();
    let (mut w, info, ports) = start(mode, &work, &mut out);
    let _rules = LockRulesGuard(ports.clone());
    let _addr = NetlinkAddrGuard(w.pid);
    let mut extra = vec![];
    if mode == "listen" {
        // a listener with a connection in its backlog is refused unless told to skip it
        let refused = dumper.dump(w.pid, &images.join("refused"), &[]);
        assert!(
            refused.is_err(),
            "{} dumped a listener with an in-flight connection",
            dumper.name()
        );
        assert_running_untraced(w.pid);
        assert!(lock_rules(&ports).is_empty(), "a refused dump left lock rules");
        extra.push("--skip-in-flight");
    }
    dumper.dump(w.pid, &images, &extra).unwrap_or_else(|e| panic!("{e}"));
    w.reap_original();
    // a plain dump leaves the connections locked for the restore to lift
    let rules = lock_rules(&ports);
    assert_eq!(
        rules.len(),
        2 * established(mode),
        "lock rules after the dump: {rules:#?}"
    );
    if let Some(s) = out.peer.as_mut() {
        // sent while the workload is gone: dropped by the lock, retransmitted after the restore
        s.write_all(&stream(8, PEER_BEFORE as u64, PEER_DURING)).unwrap();
    }
    check_images(mode, &images, &info);
    restorer.restore(&images, &[]).unwrap_or_else(|e| panic!("{e}"));
    let left = lock_rules(&ports);
    assert!(
        left.is_empty(),
        "{} left lock rules after its restore: {left:#?}",
        restorer.name()
    );
    assert_running_untraced(w.pid);
    after_restore(mode, &work, &info, &mut out);
    w.signal(libc::SIGUSR1);
    wait_for_file(&work.join("result"), Duration::from_secs(60));
    let _ = checkpoint_core::sys::wait_exit(w.pid);
    let result = std::fs::read_to_string(work.join("result")).unwrap();
    assert!(result.starts_with("OK"), "{result}");
    after_verdict(mode, &info, &mut out, &result);
}

/// The netlink workload adds and removes 127.77.x.y/32 on lo (x.y from its pid); on drop the
/// address is removed in case it stopped in between.
struct NetlinkAddrGuard(i32);

impl Drop for NetlinkAddrGuard {
    fn drop(&mut self) {
        let addr = format!("127.77.{}.{}/32", (self.0 >> 8) & 0xff, self.0 & 0xff);
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &addr, "dev", "lo"])
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------- the images

/// files.img through crit: the INETSK and NETLINKSK entries.
fn socket_entries(images: &Path) -> (Vec<Value>, Vec<Value>) {
    let files = crit_decode(&images.join("files.img"));
    let of = |kind: &str, key: &str| -> Vec<Value> {
        files["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e[key].clone())
            .collect()
    };
    (of("INETSK", "isk"), of("NETLINKSK", "nlsk"))
}

/// The same entries through our own decoder (fields newer than crit: tcp_opts, ip_opts.ttl).
fn our_inet_entries(images: &Path) -> Vec<pb::InetSkEntry> {
    let dir = ImageDir::open(images).unwrap();
    let files: Vec<pb::FileEntry> = dir.read_all(ImageKind::Files, 0).unwrap();
    files.into_iter().filter_map(|f| f.isk).collect()
}

/// tcp-stream-<ino hex>.img through crit, its payload left out.
fn tcp_stream(images: &Path, ino: u64) -> Value {
    let path = images.join(format!("tcp-stream-{ino:x}.img"));
    assert!(path.exists(), "{} missing", path.display());
    let mut e = crit_decode(&path)["entries"][0].clone();
    e.as_object_mut().unwrap().remove("extra");
    e
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The role of a port in the workload's info ("l4", "a6", ...), or "eph" (a port it did not
/// report, or 0).
fn role(info: &BTreeMap<String, String>, p: u64) -> String {
    if p == 0 {
        return "0".into();
    }
    info.iter()
        .find(|(k, v)| !k.starts_with("sent") && v.parse::<u64>().ok() == Some(p))
        .map_or("eph".into(), |(k, _)| k.clone())
}

/// What must agree between the tools' images of one workload: per socket, by role, with the
/// run-specific values (inode, ids, sequence numbers, timestamps) left out.
fn summary(images: &Path, info: &BTreeMap<String, String>) -> Vec<Value> {
    let (inet, netlink) = socket_entries(images);
    let ours = our_inet_entries(images);
    let mut out = Vec::new();
    for e in &inet {
        let ino = u(&e["ino"]);
        let mine = ours
            .iter()
            .find(|o| u64::from(o.ino) == ino)
            .expect("our decoder sees it");
        let mut s = json!({
            "src": role(info, u(&e["src_port"])),
            "dst": role(info, u(&e["dst_port"])),
            "family": e["family"], "type": e["type"], "proto": e["proto"], "state": e["state"],
            "flags": e["flags"], "src_addr": e["src_addr"], "dst_addr": e["dst_addr"],
            "v6only": e["v6only"], "ifname": e["ifname"], "shutdown": e["shutdown"],
            "reuseaddr": e["opts"]["reuseaddr"], "keepalive": e["opts"]["so_keepalive"],
            "buf_lock": e["opts"]["so_buf_lock"],
            "tcp_opts": format!("{:?}", mine.tcp_opts),
            "ip_opts": format!("{:?}", mine.ip_opts),
        });
        if u(&e["opts"]["so_buf_lock"]) != 0 {
            s["sndbuf"] = e["opts"]["so_sndbuf"].clone();
            s["rcvbuf"] = e["opts"]["so_rcvbuf"].clone();
        }
        if u(&e["state"]) == 10 {
            s["backlog"] = e["backlog"].clone();
        }
        if u(&e["state"]) == 1 && u(&e["proto"]) == 6 {
            let t = tcp_stream(images, ino);
            // established: CRIU's backlog is the socket's send-queue bytes (sock_diag's wqueue)
            assert_eq!(u(&e["backlog"]), u(&t["outq_len"]), "backlog of an established socket");
            s["opt_mask"] = t["opt_mask"].clone();
            s["snd_wscale"] = t["snd_wscale"].clone();
            s["rcv_wscale"] = t["rcv_wscale"].clone();
            s["mss_clamp"] = t["mss_clamp"].clone();
            let src = s["src"].as_str().unwrap().to_owned();
            if !src.ends_with('f') {
                // fixed amounts (the full pair's depend on the moment the writers blocked)
                s["inq_len"] = t["inq_len"].clone();
                s["outq_len"] = t["outq_len"].clone();
                s["unsq_len"] = t["unsq_len"].clone();
            }
        }
        out.push(s);
    }
    for e in &netlink {
        out.push(json!({
            "netlink": e["protocol"], "state": e["state"], "flags": e["flags"],
            "groups": e["groups"], "portid_is_pid": e["portid"].as_u64().is_some(),
            "dst_portid": e["dst_portid"], "dst_group": e["dst_group"],
        }));
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Checks the images of one dump against what the workload reported.
fn check_images(mode: &str, images: &Path, info: &BTreeMap<String, String>) {
    let (inet, netlink) = socket_entries(images);
    let by_port = |p: u16| {
        inet.iter()
            .find(|e| u(&e["src_port"]) == u64::from(p) && u(&e["state"]) != 10)
    };
    match mode {
        "pair" => {
            for (a, b) in [
                ("a4", "b4"),
                ("b4", "a4"),
                ("a6", "b6"),
                ("b6", "a6"),
                ("af", "bf"),
                ("bf", "af"),
            ] {
                let ea = by_port(port(info, a)).unwrap_or_else(|| panic!("{a} not in files.img"));
                let eb = by_port(port(info, b)).unwrap_or_else(|| panic!("{b} not in files.img"));
                let ta = tcp_stream(images, u(&ea["ino"]));
                let tb = tcp_stream(images, u(&eb["ino"]));
                // what a wrote and b did not read: in a's send queue or b's receive queue
                let sent: u64 = info[&format!("sent {a}")].parse().unwrap();
                assert_eq!(u(&ta["outq_len"]) + u(&tb["inq_len"]), sent, "{a} -> {b} bytes");
                // outq_seq is a's write_seq, outq_seq - outq_len its snd_una; inq_seq is b's
                // rcv_nxt: b has received exactly up to what a has seen acknowledged
                let una = (u(&ta["outq_seq"]) as u32).wrapping_sub(u(&ta["outq_len"]) as u32);
                assert_eq!(una, u(&tb["inq_seq"]) as u32, "{a} -> {b} sequence numbers");
            }
        }
        "peer" => {
            let e = by_port(port(info, "local")).expect("the connection in files.img");
            assert_eq!(u(&e["state"]), 1);
            tcp_stream(images, u(&e["ino"]));
        }
        "listen" => {
            let listeners: Vec<&Value> = inet.iter().filter(|e| u(&e["state"]) == 10).collect();
            assert_eq!(listeners.len(), 3, "{inet:#?}");
        }
        "udp" => assert_eq!(inet.len(), 4, "{inet:#?}"),
        "netlink" => {
            assert_eq!(netlink.len(), 1, "{netlink:#?}");
            assert_eq!(netlink[0]["portid"].to_string(), info["portid"]);
            assert_eq!(netlink[0]["groups"], json!([info["groups"].parse::<u64>().unwrap()]));
        }
        _ => unreachable!(),
    }
}

/// Dumps the same workload once with each tool and compares the summaries.
fn images_agree(mode: &str) {
    let _descendants = Descendants;
    let mut sums = Vec::new();
    for tool in [Criu, Stasis] {
        let (_scratch, work, images) = test_dirs(&format!("inet-img-{mode}-{}", tool.name()));
        let mut out = Outside::default();
        let (mut w, info, ports) = start(mode, &work, &mut out);
        let _rules = LockRulesGuard(ports);
        let extra: &[&str] = if mode == "listen" { &["--skip-in-flight"] } else { &[] };
        tool.dump(w.pid, &images, extra).unwrap_or_else(|e| panic!("{e}"));
        w.reap_original();
        sums.push(summary(&images, &info));
    }
    let (criu, ours) = (&sums[0], &sums[1]);
    assert_eq!(criu.len(), ours.len(), "sockets: CRIU {criu:#?}\nStasis {ours:#?}");
    let diffs: Vec<String> = criu
        .iter()
        .zip(ours)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("CRIU   {a}\nStasis {b}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

macro_rules! inet_tests {
    ($($mode:ident),*) => {
        mod stasis_dumps_criu_restores {
            $(#[test] fn $mode() { super::round_trip(stringify!($mode), super::Stasis, super::Criu); })*
        }
        mod criu_dumps_stasis_restores {
            $(#[test] fn $mode() { super::round_trip(stringify!($mode), super::Criu, super::Stasis); })*
        }
        /// The control: CRIU on both sides, which the checks above must pass.
        mod criu_alone {
            $(#[test] fn $mode() { super::round_trip(stringify!($mode), super::Criu, super::Criu); })*
        }
        mod images_agree_with_criu {
            $(#[test] fn $mode() { super::images_agree(stringify!($mode)); })*
        }
    };
}

inet_tests!(listen, pair, peer, udp, netlink);
