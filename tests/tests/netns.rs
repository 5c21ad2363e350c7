//! A runc container that owns its network namespace, with a veth pair to the host (or a
//! macvlan), checkpointed and restored through stasis-runc: its devices (name, MAC, MTU,
//! state), addresses, routes, sysctls and iptables rules come back, the outside end of the
//! pair is made again in our namespace under the name `--external veth[eth0]:NAME` gives (on
//! a bridge with `@BRIDGE`), the address answers pings from the host, and the container's
//! counter goes on. Every device the tests make is named after the test's pid and removed by
//! name however the test ends; the containers are deleted on drop.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ctests::container::{assert_counts_on_from, ok, wait_count_above, Container};
use ctests::workload::test_dirs;

/// A host network device of ours, removed (by name) on drop; removing one end of a veth pair
/// removes both.
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", "dev", &self.0]);
    }
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs `ip ARGS` on the host, asserting success; its stdout.
fn host_ip(args: &[&str]) -> String {
    String::from_utf8(ok(&format!("ip {args:?}"), run("ip", args))).unwrap()
}

/// Waits for the host end `name` of a checkpointed container's veth to go. The pair goes with
/// the container's network namespace, but the kernel tears a namespace down in the background:
/// a restore made at once could find the name still taken.
fn wait_link_gone(name: &str) {
    let start = std::time::Instant::now();
    while run("ip", &["link", "show", name]).status.success() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{name} outlived its namespace"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `program ARGS` in the network namespace of `pid` (nsenter), asserting success.
fn inside(pid: i32, program: &str, args: &[&str]) -> String {
    let ns = format!("--net=/proc/{pid}/ns/net");
    let mut argv = vec![ns.as_str(), program];
    argv.extend(args);
    String::from_utf8(ok(&format!("{program} {args:?} in {pid}"), run("nsenter", &argv))).unwrap()
}

/// Reads a sysctl of the network namespace of `pid` (`net/ipv4/conf/eth0/arp_ignore`...).
fn sysctl(pid: i32, path: &str) -> String {
    inside(pid, "cat", &[&format!("/proc/sys/{path}")]).trim().to_owned()
}

fn set_sysctl(pid: i32, path: &str, value: &str) {
    inside(pid, "sh", &["-c", &format!("echo {value} > /proc/sys/{path}")]);
}

/// The names the test's devices take, and its subnet 10.213.N.0/24.
struct Names {
    outside: String,
    subnet: u32,
}

fn names(tag: &str) -> Names {
    let pid = std::process::id();
    Names {
        outside: format!("st{tag}h{pid}"),
        subnet: pid % 250 + 1,
    }
}

/// What the test compares before and after: eth0's MAC, MTU and state, the addresses, the
/// routes, sysctls of the device and the namespace, the iptables rules.
fn net_state(pid: i32) -> Vec<String> {
    let link = inside(pid, "ip", &["-j", "link", "show", "eth0"]);
    let link: serde_json::Value = serde_json::from_str(&link).unwrap();
    let link = &link[0];
    let mut flags: Vec<String> = link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .filter(|f| f != "NO-CARRIER" && f != "LOWER_UP")
        .collect();
    flags.sort();
    vec![
        format!("ifindex {}", link["ifindex"]),
        format!("mac {}", link["address"]),
        format!("mtu {}", link["mtu"]),
        format!("flags {flags:?}"),
        inside(pid, "ip", &["-4", "addr", "show", "dev", "eth0"])
            .lines()
            .filter(|l| l.contains("inet "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(","),
        inside(pid, "ip", &["-4", "route", "show"]),
        inside(pid, "ip", &["-6", "addr", "show", "dev", "eth0", "scope", "global"])
            .lines()
            .filter(|l| l.contains("inet6 "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(","),
        inside(pid, "ip", &["-6", "route", "show", "table", "main"])
            .lines()
            .filter(|l| l.starts_with("fd1"))
            .collect::<Vec<_>>()
            .join("\n"),
        format!("arp_ignore {}", sysctl(pid, "net/ipv4/conf/eth0/arp_ignore")),
        format!("default rp_filter {}", sysctl(pid, "net/ipv4/conf/default/rp_filter")),
        format!("max_dgram_qlen {}", sysctl(pid, "net/unix/max_dgram_qlen")),
        format!("hop_limit {}", sysctl(pid, "net/ipv6/conf/eth0/hop_limit")),
        inside(pid, "ip", &["rule", "show"]),
        inside(pid, "iptables", &["-S"]),
        inside(pid, "nft", &["list", "table", "inet", "stasis_own"]),
        inside(pid, "ip", &["neigh", "show", "nud", "permanent"]),
    ]
}

fn checkpoint(c: &Container, images: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["checkpoint", "--image-path", images.to_str().unwrap()];
    args.extend(extra);
    args.push("{}");
    c.stasis_runc(&args)
}

fn restore(c: &Container, images: &Path, work: &Path, extra: &[&str]) -> (bool, String) {
    let pid_file = work.join("restored.pid");
    let mut args = vec!["restore"];
    args.extend(extra);
    args.extend([
        "--image-path",
        images.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
        "--bundle",
        c.bundle.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "{}",
    ]);
    let _ = std::fs::remove_file(work.join("err"));
    let cmd = c.cmd(ctests::workspace_bin("stasis-runc").to_str().unwrap(), &args);
    let ok = c.run_detached(cmd, work).success();
    (ok, std::fs::read_to_string(work.join("err")).unwrap_or_default())
}

fn init_pid(c: &Container) -> i32 {
    c.state()["pid"].as_i64().unwrap() as i32
}

/// The host can reach `addr` (one ping of busybox's, two seconds).
fn pings(addr: &str) -> bool {
    run("busybox", &["ping", "-c1", "-W2", addr]).status.success()
}

/// A counting container with a veth pair to the host: eth0 inside (10.213.N.2/24, MAC, MTU
/// 1400, a route through .1), `outside` on the host (.1/24), and a sysctl or two changed.
fn container_with_veth(scratch: &Path, work: &Path, id: &str, n: &Names) -> (Container, HostLink, i32, u64) {
    veth_to(Container::counting(scratch, id), work, n)
}

/// [`container_with_veth`] of container `c` (its process counts into /tmp/count).
fn veth_to(c: Container, work: &Path, n: &Names) -> (Container, HostLink, i32, u64) {
    let init = c.start_quiet(work);
    let before = wait_count_above(&c.rootfs(), 3);
    let peer = format!("{}p", n.outside);
    host_ip(&["link", "add", &n.outside, "type", "veth", "peer", "name", &peer]);
    let link = HostLink(n.outside.clone());
    host_ip(&["link", "set", &peer, "netns", &init.to_string()]);
    let mac = format!("02:13:00:00:{:02x}:02", n.subnet);
    let (addr, gw, far) = (
        format!("10.213.{}.2/24", n.subnet),
        format!("10.213.{}.1", n.subnet),
        format!("10.214.{}.0/24", n.subnet),
    );
    inside(init, "ip", &["link", "set", &peer, "name", "eth0"]);
    inside(
        init,
        "ip",
        &["link", "set", "eth0", "address", &mac, "mtu", "1400", "up"],
    );
    inside(init, "ip", &["addr", "add", &addr, "dev", "eth0"]);
    inside(init, "ip", &["route", "add", &far, "via", &gw]);
    let (addr6, far6) = (
        format!("fd13:{:x}::2/64", n.subnet),
        format!("fd14:{:x}::/64", n.subnet),
    );
    inside(init, "ip", &["-6", "addr", "add", &addr6, "dev", "eth0", "nodad"]);
    inside(init, "ip", &["-6", "route", "add", &far6, "dev", "eth0", "metric", "7"]);
    set_sysctl(init, "net/ipv4/conf/eth0/arp_ignore", "2");
    set_sysctl(init, "net/ipv4/conf/default/rp_filter", "2");
    set_sysctl(init, "net/unix/max_dgram_qlen", "77");
    set_sysctl(init, "net/ipv6/conf/eth0/hop_limit", "33");
    let from = format!("10.213.{}.2", n.subnet);
    inside(
        init,
        "ip",
        &["rule", "add", "from", &from, "table", "7", "priority", "1007"],
    );
    inside(
        init,
        "iptables",
        &["-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP"],
    );
    // permanent neighbour entries (ARP and ND)
    let neigh4 = format!("10.213.{}.9", n.subnet);
    for (family, addr, lladdr) in [
        ("-4", neigh4.as_str(), "02:00:00:00:00:09"),
        ("-6", "fd13::9", "02:00:00:00:00:0a"),
    ] {
        let add = [
            "neigh",
            "add",
            addr,
            "lladdr",
            lladdr,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ];
        inside(init, "ip", &[&[family][..], &add].concat());
    }
    // a table made with nft itself, beside iptables' own
    inside(
        init,
        "nft",
        &["add table inet stasis_own; \
             add chain inet stasis_own input { type filter hook input priority 10; }; \
             add set inet stasis_own blocked { type ipv4_addr; elements = { 192.0.2.7 }; }; \
             add rule inet stasis_own input ip saddr @blocked tcp dport 7 counter drop"],
    );
    host_ip(&["addr", "add", &format!("{gw}/24"), "dev", &n.outside]);
    host_ip(&["link", "set", &n.outside, "up"]);
    (c, link, init, before)
}

#[test]
fn a_container_with_a_veth_comes_back_with_its_devices_addresses_routes_sysctls_and_rules() {
    let (scratch, work, images) = test_dirs("netns-veth");
    let n = names("v");
    let (c, _link, init, _) = container_with_veth(&scratch.0, &work, "stasis-veth", &n);
    let target = format!("10.213.{}.2", n.subnet);
    assert!(
        pings(&target),
        "the container's address does not answer before the checkpoint"
    );

    // A bridge inside is not made again: refused before freezing, naming it and its kind.
    inside(init, "ip", &["link", "add", "br9", "type", "bridge"]);
    let out = checkpoint(&c, &images, &["--external", "veth[eth0]"]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("br9") && why.contains("bridge"),
        "{why}"
    );
    inside(init, "ip", &["link", "del", "br9"]);
    // Without --external, the veth is refused, naming the device and the option.
    let out = checkpoint(&c, &images, &[]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("eth0") && why.contains("--external veth[eth0]"),
        "{why}"
    );
    assert!(
        c.exists() && pings(&target),
        "a refused checkpoint left the container changed"
    );

    let state = net_state(init);
    let all = state.join("\n");
    for part in [
        "mtu 1400",
        "10.214.",
        "inet6 fd13:",
        "fd14:",
        "arp_ignore 2",
        "rp_filter 2",
        "qlen 77",
        "hop_limit 33",
        "1007:\tfrom 10.213.",
        "--dport 9 -j DROP",
        "elements = { 192.0.2.7 }",
        "ip saddr @blocked tcp dport 7",
        ".9 dev eth0 lladdr 02:00:00:00:00:09 PERMANENT",
        "fd13::9 dev eth0 lladdr 02:00:00:00:00:0a PERMANENT",
    ] {
        assert!(all.contains(part), "{part} is not in what is compared: {all}");
    }
    let counted = wait_count_above(&c.rootfs(), 5);
    ok("checkpoint", checkpoint(&c, &images, &["--external", "veth[eth0]"]));
    c.wait_gone();
    wait_link_gone(&n.outside);
    let listed: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for prefix in [
        "netdev-",
        "netns-",
        "ifaddr-",
        "route-",
        "route6-",
        "rule-",
        "iptables-",
        "nftables-",
        "neigh-",
    ] {
        assert!(
            listed.iter().any(|f| f.starts_with(prefix)),
            "no {prefix}*.img in {listed:?}"
        );
    }
    // CRIU's crit reads the devices and sysctls as saved.
    let netdev = listed.iter().find(|f| f.starts_with("netdev-")).unwrap();
    let devices = ctests::crit_decode(&images.join(netdev));
    let eth0 = devices["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {devices}"));
    assert_eq!((&eth0["type"], &eth0["mtu"]), (&"VETH".into(), &1400.into()), "{eth0}");
    assert_eq!(eth0["conf4"].as_array().map(Vec::len), Some(30), "{eth0}");
    let netns = ctests::crit_decode(&images.join(netdev.replace("netdev-", "netns-")));
    assert_eq!(netns["entries"][0]["unix_conf"][0]["iarg"], 77, "{netns}");
    // The container's namespace is gone, and with it (once the kernel cleaned it up) both
    // ends of the pair.
    let start = std::time::Instant::now();
    while run("ip", &["link", "show", &n.outside]).status.success() {
        assert!(start.elapsed().as_secs() < 10, "{} outlived the container", n.outside);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let (restored, err) = restore(
        &c,
        &images,
        &work,
        &["--external", &format!("veth[eth0]:{}", n.outside)],
    );
    assert!(restored, "restore: {err}");
    let init = init_pid(&c);
    // The outside end is ours again (made up); its address is the host's to give.
    let shown = host_ip(&["link", "show", &n.outside]);
    assert!(shown.contains(",UP"), "{shown}");
    host_ip(&["addr", "add", &format!("10.213.{}.1/24", n.subnet), "dev", &n.outside]);
    assert_eq!(net_state(init), state);
    assert!(pings(&target), "the restored container's address does not answer");
    assert_counts_on_from(&c.rootfs(), counted);
    c.kill_and_delete();
}

#[test]
fn a_veth_restore_whose_outside_name_is_taken_fails_and_one_on_a_bridge_comes_back() {
    let (scratch, work, images) = test_dirs("netns-bridge");
    let n = names("b");
    let (c, _link, _init, _) = container_with_veth(&scratch.0, &work, "stasis-vethbr", &n);
    let counted = wait_count_above(&c.rootfs(), 5);
    ok("checkpoint", checkpoint(&c, &images, &["--external", "veth[eth0]"]));
    c.wait_gone();
    wait_link_gone(&n.outside);

    // The outside name is taken (by a pair of ours): the restore fails naming the device and
    // why, leaves that pair alone, and deletes the container.
    let blocker = HostLink(n.outside.clone());
    host_ip(&[
        "link",
        "add",
        &n.outside,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{}q", n.outside),
    ]);
    let (restored, err) = restore(
        &c,
        &images,
        &work,
        &["--external", &format!("veth[eth0]:{}", n.outside)],
    );
    assert!(
        !restored && err.contains("eth0") && err.contains(&n.outside) && err.contains("exists"),
        "{err}"
    );
    assert!(!c.exists());
    assert!(run("ip", &["link", "show", &format!("{}q", n.outside)])
        .status
        .success());
    drop(blocker);

    // A bridge that is not there: the pair was made, and is removed again.
    let nobridge = format!("stnb{}", std::process::id());
    let (restored, err) = restore(
        &c,
        &images,
        &work,
        &["--external", &format!("veth[eth0]:{}@{nobridge}", n.outside)],
    );
    assert!(!restored && err.contains(&nobridge), "{err}");
    assert!(
        !run("ip", &["link", "show", &n.outside]).status.success(),
        "the outside end stayed"
    );
    assert!(!c.exists());

    // On a bridge of ours (which carries the host's address): it answers, and counts on.
    let bridge = format!("stbr{}", std::process::id());
    host_ip(&["link", "add", &bridge, "type", "bridge"]);
    let _bridge = HostLink(bridge.clone());
    host_ip(&["addr", "add", &format!("10.213.{}.1/24", n.subnet), "dev", &bridge]);
    host_ip(&["link", "set", &bridge, "up"]);
    let (restored, err) = restore(
        &c,
        &images,
        &work,
        &["--external", &format!("veth[eth0]:{}@{bridge}", n.outside)],
    );
    assert!(restored, "restore: {err}");
    let _link = HostLink(n.outside.clone());
    let shown = host_ip(&["link", "show", &n.outside]);
    assert!(shown.contains(&format!("master {bridge}")), "{shown}");
    assert!(pings(&format!("10.213.{}.2", n.subnet)));
    assert_counts_on_from(&c.rootfs(), counted);
    c.kill_and_delete();
}

#[test]
fn a_macvlan_comes_back_on_its_lower_device() {
    let (scratch, work, images) = test_dirs("netns-macvlan");
    let pid = std::process::id();
    let (lower, lower_peer) = (format!("stml{pid}"), format!("stmp{pid}"));
    host_ip(&["link", "add", &lower, "type", "veth", "peer", "name", &lower_peer]);
    let _lower = HostLink(lower.clone());
    host_ip(&["link", "set", &lower, "up"]);
    let c = Container::counting(&scratch.0, "stasis-macvlan");
    let init = c.start(&work);
    host_ip(&[
        "link",
        "add",
        "link",
        &lower,
        "name",
        "mv0",
        "netns",
        &init.to_string(),
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    inside(
        init,
        "ip",
        &[
            "link",
            "set",
            "mv0",
            "address",
            "02:13:11:00:00:07",
            "mtu",
            "1300",
            "up",
        ],
    );
    inside(init, "ip", &["addr", "add", "10.215.7.2/24", "dev", "mv0"]);
    let show = |pid: i32| {
        let j: serde_json::Value =
            serde_json::from_str(&inside(pid, "ip", &["-d", "-j", "addr", "show", "mv0"])).unwrap();
        let j = &j[0];
        (
            j["address"].clone(),
            j["mtu"].clone(),
            j["linkinfo"]["info_data"]["mode"].clone(),
            j["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["family"] == "inet")
                .map(|a| format!("{}/{}", a["local"], a["prefixlen"]))
                .collect::<Vec<_>>(),
        )
    };
    let before = show(init);
    let counted = wait_count_above(&c.rootfs(), 5);
    let out = checkpoint(&c, &images, &[]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && why.contains("macvlan[mv0]"), "{why}");
    ok("checkpoint", checkpoint(&c, &images, &["--external", "macvlan[mv0]"]));
    c.wait_gone();
    let (restored, err) = restore(&c, &images, &work, &["--external", &format!("macvlan[mv0]:{lower}")]);
    assert!(restored, "restore: {err}");
    assert_eq!(show(init_pid(&c)), before);
    assert_counts_on_from(&c.rootfs(), counted);
    c.kill_and_delete();
}

/// The counting container with a line server too: busybox `nc` on port 7000 answers each line
/// "N LINE" (N counts the connection's lines), one shell per connection.
fn counting_server(scratch: &Path, id: &str) -> Container {
    let c = Container::counting(scratch, id);
    std::fs::write(
        c.rootfs().join("counter.sh"),
        "i=0\nwhile read l; do i=$((i+1)); echo \"$i $l\"; done\n",
    )
    .unwrap();
    let path = c.bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let script = format!(
        "({}) & exec /bin/busybox nc -ll -p 7000 -e /bin/sh /counter.sh",
        ctests::container::COUNTER
    );
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    c
}

/// One line to the server, its answer.
fn ask(c: &mut std::io::BufReader<std::net::TcpStream>, line: &str) -> String {
    use std::io::{BufRead, Write};
    c.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    c.read_line(&mut answer).unwrap();
    answer.trim().to_owned()
}

/// A TCP server in a container that owns its network namespace, reached by a client on the
/// host at the container's address through the veth: the client's connection stays open
/// across checkpoint and restore (--tcp-established) and carries on; new clients are served.
#[test]
fn a_client_on_the_host_keeps_its_connection_to_a_container_across_checkpoint_and_restore() {
    let (scratch, work, images) = test_dirs("netns-tcp");
    let n = names("t");
    let (c, _link, _init, _) = veth_to(counting_server(&scratch.0, "stasis-netns-tcp"), &work, &n);
    let addr: std::net::SocketAddr = format!("10.213.{}.2:7000", n.subnet).parse().unwrap();
    let connect = || {
        let start = std::time::Instant::now();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)) {
                Ok(s) => {
                    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
                    return std::io::BufReader::new(s);
                }
                Err(e) => assert!(start.elapsed().as_secs() < 20, "{addr}: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let mut held = connect();
    assert_eq!(ask(&mut held, "a"), "1 a");
    assert_eq!(ask(&mut held, "b"), "2 b");
    // Without --tcp-established the checkpoint is refused and the connection goes on.
    let out = checkpoint(&c, &images, &["--external", "veth[eth0]"]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && why.contains("--tcp-established"), "{why}");
    assert_eq!(ask(&mut held, "c"), "3 c");
    let counted = wait_count_above(&c.rootfs(), 3);
    ok(
        "checkpoint",
        checkpoint(&c, &images, &["--tcp-established", "--external", "veth[eth0]"]),
    );
    c.wait_gone();
    wait_link_gone(&n.outside);
    let (restored, err) = restore(
        &c,
        &images,
        &work,
        &["--tcp-established", "--external", &format!("veth[eth0]:{}", n.outside)],
    );
    assert!(restored, "restore: {err}");
    host_ip(&["addr", "add", &format!("10.213.{}.1/24", n.subnet), "dev", &n.outside]);
    assert_eq!(ask(&mut held, "d"), "4 d", "the held connection after the restore");
    assert_eq!(ask(&mut connect(), "x"), "1 x", "a new client");
    assert_eq!(ask(&mut held, "e"), "5 e");
    assert_counts_on_from(&c.rootfs(), counted);
    c.kill_and_delete();
}
