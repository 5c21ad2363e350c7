//! The network lock: while a TCP connection's state is read, and until the restored socket
//! has taken over, no packet of it may pass, or the peer would see data acknowledged that
//! the image does not hold, or a reset from a host where the socket is gone.
//!
//! The rules are CRIU's own (`--network-lock iptables`, its default), one pair per
//! connection in the filter table of the connection's network namespace:
//! `INPUT -p tcp -s PEER --sport PP -d LOCAL --dport LP -m mark ! --mark 0xC114 -j DROP` and
//! the mirror rule in OUTPUT. Using CRIU's exact rules means a restore by either tool lifts
//! the lock the other's dump left. They are added and removed in one `iptables-restore` (and
//! `ip6tables-restore`) batch per family, not one process per rule: a thousand connections
//! are two thousand rules. On this machine `iptables` is the nf_tables flavour; both
//! flavours accept this syntax. (nftables' own `nft` tool is not installed on Debian 12 by
//! default, and iptables is what CRIU 4.2 used here.)
//!
//! Which rules exist is read back with `iptables -S`: a lock is only lifted where it is, and
//! as many times as it was added (CRIU's dump and ours may both have added it).

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// The packet mark CRIU's restore gives its own packets; rules let them through.
pub const MARK: u32 = 0xC114;

/// A lock failed.
#[derive(Debug, thiserror::Error)]
#[error("network lock: {what}: {source}")]
pub struct NetLockError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

/// How connections are locked (`--network-lock`; the inventory's network_lock_method).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// iptables rules, as CRIU's default (inventory value 0).
    #[default]
    Iptables,
    /// The caller takes care of it (inventory value 2).
    Skip,
}

impl Method {
    /// The inventory's network_lock_method value.
    pub fn inventory_value(self) -> u32 {
        match self {
            Method::Iptables => 0,
            Method::Skip => 2,
        }
    }

    /// The method an inventory names (absent: iptables, as CRIU assumes).
    pub fn from_inventory(v: Option<u32>) -> Result<Method, String> {
        match v {
            None | Some(0) => Ok(Method::Iptables),
            Some(2) => Ok(Method::Skip),
            Some(1) => Err(
                "the images were locked with nftables (--network-lock nftables), which this version does not lift"
                    .into(),
            ),
            Some(n) => Err(format!("unknown network lock method {n}")),
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        match s {
            "iptables" => Ok(Method::Iptables),
            "skip" => Ok(Method::Skip),
            "nftables" => Err("nftables: the nft tool is not used by this version; use iptables or skip".into()),
            _ => Err(format!("{s:?}: expected iptables or skip")),
        }
    }
}

/// One TCP connection, as its own socket sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// An address as iptables (v4) or ip6tables (v6) names it: a v6 socket's IPv4-mapped
/// address is an IPv4 packet.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Conn {
    fn v6(&self) -> bool {
        plain(self.local.ip()).is_ipv6()
    }

    /// (chain, source, sport, destination, dport) of its two rules.
    fn rules(&self) -> [(&'static str, IpAddr, u16, IpAddr, u16); 2] {
        let (l, r) = (plain(self.local.ip()), plain(self.remote.ip()));
        [
            ("INPUT", r, self.remote.port(), l, self.local.port()),
            ("OUTPUT", l, self.local.port(), r, self.remote.port()),
        ]
    }
}

/// A rule as `iptables -S` lists it, reduced to what identifies a lock rule.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    chain: String,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

/// The lock rules among `iptables -S` output: TCP, DROP, mark not 0xc114, exact addresses.
fn parse_listed(text: &str) -> Vec<Listed> {
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let after = |k: &str| w.iter().position(|x| *x == k).and_then(|i| w.get(i + 1)).copied();
        let (Some(chain), Some("DROP"), Some("tcp")) = (after("-A"), after("-j"), after("-p")) else {
            continue;
        };
        let mark = w.windows(3).any(|x| {
            x[0] == "!" && x[1] == "--mark" && u32::from_str_radix(x[2].trim_start_matches("0x"), 16) == Ok(MARK)
        });
        let ip = |k| after(k).and_then(|a| a.split('/').next()?.parse::<IpAddr>().ok());
        let port = |k| after(k).and_then(|p| p.parse::<u16>().ok());
        if let (true, Some(src), Some(sport), Some(dst), Some(dport)) =
            (mark, ip("-s"), port("--sport"), ip("-d"), port("--dport"))
        {
            out.push(Listed {
                chain: chain.to_owned(),
                src,
                sport,
                dst,
                dport,
            });
        }
    }
    out
}

fn tool(v6: bool, restore: bool) -> &'static str {
    match (v6, restore) {
        (false, false) => "iptables",
        (false, true) => "iptables-restore",
        (true, false) => "ip6tables",
        (true, true) => "ip6tables-restore",
    }
}

fn run(ns: Option<&File>, v6: bool, args: &[&str], input: Option<&str>) -> Result<String, NetLockError> {
    let name = tool(v6, input.is_some());
    let err = |what: String| move |source| NetLockError { what, source };
    let go = || -> std::io::Result<String> {
        let mut cmd = Command::new(name);
        cmd.args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let what = format!("{name} {}", args.join(" "));
    match ns {
        // A child forked from a thread in the namespace is in it.
        Some(ns) => crate::sys::in_net_ns(ns, go).map_err(err(what)),
        None => go().map_err(err(what)),
    }
}

/// The lock rules present now, per family.
fn listed(ns: Option<&File>, v6: bool) -> Result<Vec<Listed>, NetLockError> {
    let mut all = parse_listed(&run(ns, v6, &["-w", "-t", "filter", "-S", "INPUT"], None)?);
    all.extend(parse_listed(&run(
        ns,
        v6,
        &["-w", "-t", "filter", "-S", "OUTPUT"],
        None,
    )?));
    Ok(all)
}

fn batch(ns: Option<&File>, v6: bool, lines: &[String]) -> Result<(), NetLockError> {
    if lines.is_empty() {
        return Ok(());
    }
    let text = format!("*filter\n{}\nCOMMIT\n", lines.join("\n"));
    run(ns, v6, &["-w", "--noflush"], Some(&text)).map(drop)
}

fn rule_line(op: &str, (chain, src, sport, dst, dport): (&str, IpAddr, u16, IpAddr, u16)) -> String {
    format!(
        "{op} {chain} --protocol tcp -m mark ! --mark {MARK:#X} --source {src} --sport {sport} --destination {dst} --dport {dport} -j DROP"
    )
}

/// A shell that lifts the rules we added if we die first (SIGKILL cannot be caught): it
/// waits on a pipe from us, and when the pipe ends without a word ("keep": the lock stays
/// for the restore; "done": we lifted it), it runs the removal itself. Its script is a file
/// of ours in the temporary directory, which it removes.
#[derive(Debug)]
struct Keeper(std::process::Child);

impl Keeper {
    fn spawn(ns: Option<&File>, added: &[(bool, Vec<String>)]) -> Result<Keeper, NetLockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |what: &str| {
            let what = what.to_owned();
            move |source| NetLockError { what, source }
        };
        let mut script = String::from("read -r word\ncase \"$word\" in keep|done) ;; *)\n");
        for (v6, lines) in added.iter().filter(|(_, l)| !l.is_empty()) {
            let removal: Vec<String> = lines.iter().map(|l| l.replacen("-I ", "-D ", 1)).collect();
            script += &format!(
                "{} -w --noflush <<'RULES'\n*filter\n{}\nCOMMIT\nRULES\n",
                tool(*v6, true),
                removal.join("\n")
            );
        }
        script += ";; esac\nrm -f -- \"$0\"\n";
        let path = std::env::temp_dir().join(format!(
            "stasis-netlock-{}-{}.sh",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(script.as_bytes()))
            .map_err(err("the lock's keeper script"))?;
        let go = || {
            // Its own session: a Ctrl-C meant for us does not reach it.
            Command::new("setsid")
                .arg("sh")
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = match ns {
            Some(ns) => crate::sys::in_net_ns(ns, go),
            None => go(),
        };
        match child {
            Ok(c) => Ok(Keeper(c)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(err("starting the lock's keeper (setsid sh)")(e))
            }
        }
    }

    fn tell(mut self, word: &str) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = writeln!(stdin, "{word}");
        }
        let _ = self.0.wait();
    }
}

/// Locked connections. Dropping it unlocks them unless [`NetLock::keep`] was called.
#[derive(Debug)]
pub struct NetLock {
    conns: Vec<Conn>,
    ns: Option<File>,
    held: bool,
    keeper: Option<Keeper>,
}

impl NetLock {
    /// Nothing locked (the `skip` method, or no connection).
    pub fn none() -> NetLock {
        NetLock {
            conns: Vec::new(),
            ns: None,
            held: false,
            keeper: None,
        }
    }

    /// Locks `conns` in network namespace `ns` (ours if none): their rules are added where
    /// they are not there yet.
    pub fn lock(conns: Vec<Conn>, ns: Option<File>, method: Method) -> Result<NetLock, NetLockError> {
        if method == Method::Skip || conns.is_empty() {
            return Ok(NetLock::none());
        }
        let mut lock = NetLock {
            conns,
            ns,
            held: true,
            keeper: None,
        };
        let mut added = Vec::new();
        for v6 in [false, true] {
            let mine: Vec<&Conn> = lock.conns.iter().filter(|c| c.v6() == v6).collect();
            if mine.is_empty() {
                continue;
            }
            let present = listed(lock.ns.as_ref(), v6)?;
            let lines: Vec<String> = mine
                .iter()
                .flat_map(|c| c.rules())
                .filter(|r| !present.iter().any(|p| same(p, r)))
                .map(|r| rule_line("-I", r))
                .collect();
            if lines.is_empty() {
                continue;
            }
            // The keeper first: from the moment a rule exists, something lifts it.
            added.push((v6, lines.clone()));
            if let Some(k) = lock.keeper.take() {
                k.tell("done");
            }
            lock.keeper = Some(Keeper::spawn(lock.ns.as_ref(), &added)?);
            batch(lock.ns.as_ref(), v6, &lines)?;
        }
        Ok(lock)
    }

    /// The connections stay locked (a dump whose tasks are gone: the restore unlocks).
    pub fn keep(mut self) {
        self.held = false;
        if let Some(k) = self.keeper.take() {
            k.tell("keep");
        }
    }

    /// Lifts the lock of every connection: each of its rules, as many times as it is there.
    pub fn unlock(mut self) -> Result<(), NetLockError> {
        self.held = false;
        let result = unlock(&self.conns, self.ns.as_ref());
        if let Some(k) = self.keeper.take() {
            // Lifted: the keeper has nothing to do. (Not lifted: it tries, as we would.)
            k.tell(if result.is_ok() { "done" } else { "lift" });
        }
        result
    }
}

fn same(p: &Listed, r: &(&str, IpAddr, u16, IpAddr, u16)) -> bool {
    (p.chain.as_str(), p.src, p.sport, p.dst, p.dport) == *r
}

/// Removes the lock rules of `conns` in `ns` (ours if none), whoever added them.
pub fn unlock(conns: &[Conn], ns: Option<&File>) -> Result<(), NetLockError> {
    for v6 in [false, true] {
        let mine: Vec<&Conn> = conns.iter().filter(|c| c.v6() == v6).collect();
        if mine.is_empty() {
            continue;
        }
        let present = listed(ns, v6)?;
        let ours: std::collections::BTreeSet<(&str, IpAddr, u16, IpAddr, u16)> =
            mine.iter().flat_map(|c| c.rules()).collect();
        // In the order the chains list them, top first: iptables finds a rule to delete by
        // walking its chain from the top, so each one is found at once (2,000 rules: 0.06 s
        // instead of 1.5 s).
        let lines: Vec<String> = present
            .iter()
            .map(|p| (p.chain.as_str(), p.src, p.sport, p.dst, p.dport))
            .filter_map(|key| {
                let r = ours.get(&key)?;
                Some(rule_line("-D", *r))
            })
            .collect();
        batch(ns, v6, &lines)?;
    }
    Ok(())
}

impl Drop for NetLock {
    fn drop(&mut self) {
        if self.held {
            self.held = false;
            let result = unlock(&self.conns, self.ns.as_ref());
            if let Err(e) = &result {
                eprintln!("stasis: {e}");
            }
            if let Some(k) = self.keeper.take() {
                k.tell(if result.is_ok() { "done" } else { "lift" });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_rules_are_recognised_in_both_families() {
        let text = "-P INPUT ACCEPT\n\
            -A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 1 --dport 2 -j DROP\n\
            -A INPUT -s 127.0.0.1/32 -p tcp -m tcp --sport 1 -j DROP\n\
            -A OUTPUT -s ::1/128 -d ::1/128 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 5 --dport 6 -j DROP\n";
        let l = parse_listed(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].chain, "INPUT");
        assert_eq!((l[0].sport, l[0].dport), (1, 2));
        assert_eq!(l[1].src, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_mapped_address_is_locked_as_ipv4() {
        let c = Conn {
            local: "[::ffff:127.0.0.1]:80".parse().unwrap(),
            remote: "[::ffff:127.0.0.1]:5000".parse().unwrap(),
        };
        assert!(!c.v6());
        let [input, output] = c.rules();
        assert_eq!(input.0, "INPUT");
        assert_eq!((input.2, input.4), (5000, 80));
        assert_eq!((output.2, output.4), (80, 5000));
        assert_eq!(
            rule_line("-I", input),
            "-I INPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport 5000 --destination 127.0.0.1 --dport 80 -j DROP"
        );
    }
}
