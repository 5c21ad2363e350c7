//! Neighbour entries a user made (`ip neigh add ... nud permanent`, IPv4 ARP and IPv6 ND) in
//! a network namespace: `neigh-N.img`, Stasis's own image (CRIU keeps no neighbours: its
//! restores lose them, and it ignores this file). The entries the kernel learns (reachable,
//! stale...) are not kept: a new namespace learns them again.
//!
//! The image is text, one entry per line: `ADDRESS LLADDR DEVICE`. It is read back as
//! untrusted input: each field is parsed (an IP address, a colon-separated hex link-layer
//! address, a device name) before `ip -batch` is given the entries.

use std::net::IpAddr;

use super::routing::run_with_input;
use super::run;

/// A permanent neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub address: IpAddr,
    /// "aa:bb:cc:dd:ee:ff" (any length the device's type uses).
    pub lladdr: String,
    pub device: String,
}

fn valid_lladdr(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    (1..=32).contains(&parts.len())
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn valid_device(s: &str) -> bool {
    // (no quote, backslash or '#' either: `ip -batch` reads those itself)
    !s.is_empty() && s.len() < libc::IFNAMSIZ && s.bytes().all(|b| b.is_ascii_graphic() && !b"/:@\"'\\#".contains(&b))
}

/// The permanent entries in `json` (`ip -j neigh show nud permanent`); one without a
/// link-layer address is an error naming it.
pub fn parse(json: &[u8]) -> Result<Vec<Neighbour>, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("ip -j neigh: {e}"))?;
    let mut out = Vec::new();
    for e in v.as_array().ok_or("ip -j neigh: not a list")? {
        let field = |k: &str| e.get(k).and_then(|v| v.as_str());
        let (Some(dst), Some(dev)) = (field("dst"), field("dev")) else {
            return Err(format!("ip -j neigh: an entry without address or device: {e}"));
        };
        let address: IpAddr = dst.parse().map_err(|_| format!("neighbour {dst}: not an address"))?;
        let Some(lladdr) = field("lladdr").filter(|l| valid_lladdr(l)) else {
            return Err(format!(
                "the permanent neighbour entry {dst} on {dev} has no link-layer address: it is not made again"
            ));
        };
        out.push(Neighbour {
            address,
            lladdr: lladdr.to_owned(),
            device: dev.to_owned(),
        });
    }
    Ok(out)
}

/// The calling thread's namespace's permanent neighbour entries.
pub fn list() -> Result<Vec<Neighbour>, String> {
    parse(&run("ip", &["-j", "neigh", "show", "nud", "permanent"], None, None)?)
}

/// The image's text for `entries`.
pub fn encode(entries: &[Neighbour]) -> Vec<u8> {
    entries
        .iter()
        .map(|n| format!("{} {} {}\n", n.address, n.lladdr, n.device))
        .collect::<String>()
        .into_bytes()
}

/// The entries an image holds; a line that is not `ADDRESS LLADDR DEVICE` is an error naming
/// it.
pub fn decode(text: &[u8]) -> Result<Vec<Neighbour>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "neigh image: not text".to_owned())?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("neigh image, line {}: {line:?} is not ADDRESS LLADDR DEVICE", i + 1);
            let mut f = line.split_whitespace();
            let (Some(a), Some(l), Some(d), None) = (f.next(), f.next(), f.next(), f.next()) else {
                return Err(bad());
            };
            let address = a.parse().map_err(|_| bad())?;
            if !valid_lladdr(l) || !valid_device(d) {
                return Err(bad());
            }
            Ok(Neighbour {
                address,
                lladdr: l.into(),
                device: d.into(),
            })
        })
        .collect()
}

/// Makes `entries` again (permanent) in the calling thread's namespace, in one `ip -batch`.
pub fn restore(entries: &[Neighbour]) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let batch: String = entries
        .iter()
        .map(|n| {
            format!(
                "neigh replace {} lladdr {} dev {} nud permanent\n",
                n.address, n.lladdr, n.device
            )
        })
        .collect();
    run_with_input("ip", &["-batch", "-"], batch.as_bytes()).map_err(|e| format!("neighbour entries: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_lines_are_refused() {
        let json = br#"[{"dst":"10.0.0.9","dev":"eth0","lladdr":"02:00:00:00:00:09","state":["PERMANENT"]},
                        {"dst":"fd13::9","dev":"eth0","lladdr":"02:00:00:00:00:0a","state":["PERMANENT"]}]"#;
        let got = parse(json).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(decode(&encode(&got)).unwrap(), got);
        assert_eq!(parse(b"\n").unwrap(), vec![]);
        assert!(parse(br#"[{"dst":"10.0.0.9","dev":"eth0","state":["PERMANENT"]}]"#).is_err());
        for bad in [
            "10.0.0.9 02:00:00:00:00:09",
            "10.0.0.9 02:00 eth0 extra",
            "nonsense 02:00:00:00:00:09 eth0",
            "10.0.0.9 zz:00 eth0",
            "10.0.0.9 02:00 \"eth0 nud\"",
            "10.0.0.9 02:00 a/b",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
