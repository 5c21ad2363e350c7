//! Netfilter rules of a network namespace, as CRIU 4.2 (built with libnftables, as Debian's
//! is) writes them:
//!
//! * `nftables-N.img`: the text `nft list ruleset` prints, every nf_tables table (those made
//!   through iptables' nf_tables flavour, Debian's default, and those made with `nft`
//!   itself); made again with `nft -f`;
//! * `iptables-N.img`, `ip6tables-N.img`: the text `iptables-legacy-save`/
//!   `ip6tables-legacy-save` print (the legacy tables only: the others are in the ruleset);
//!   made again with `iptables-legacy-restore -w`/`ip6tables-legacy-restore -w`.
//!
//! On a host without `nft` there is no `nftables-N.img`, and the iptables images hold what
//! `iptables-save`/`ip6tables-save` print (whichever flavour they are), as CRIU built without
//! libnftables writes them; a restore reads them back that way when the images hold no
//! `nftables-N.img` (images of such a CRIU, or of an earlier Stasis).

use std::fs::File;
use std::path::PathBuf;

use super::{have, run, Running};

/// The images a dump writes (created, empty; `nft` only if the host has `nft`).
pub struct Images {
    pub v4: (File, PathBuf),
    pub v6: (File, PathBuf),
    pub nft: Option<(File, PathBuf)>,
}

/// The saved images a restore reads (those missing or empty are left out).
pub struct Saved {
    pub v4: Option<File>,
    pub v6: Option<File>,
    pub nft: Option<File>,
    /// Whether the images hold an `nftables-N.img` (even empty): the iptables images are
    /// then the legacy tables'.
    pub nft_image: bool,
}

/// Whether the host has `nft` (and so the dump writes `nftables-N.img`).
pub fn have_nft() -> bool {
    have("nft")
}

/// The programs that save (`SAVE`) and restore iptables and ip6tables rules, legacy ones
/// when `legacy`.
fn tools(legacy: bool) -> [(&'static str, &'static str); 2] {
    if legacy {
        [
            ("iptables-legacy-save", "iptables-legacy-restore"),
            ("ip6tables-legacy-save", "ip6tables-legacy-restore"),
        ]
    } else {
        [
            ("iptables-save", "iptables-restore"),
            ("ip6tables-save", "ip6tables-restore"),
        ]
    }
}

/// Starts saving the calling thread's namespace's rules. A program this host lacks leaves
/// its image empty: nothing made rules through it.
pub(super) fn start_save(images: Images) -> Result<Vec<Running>, String> {
    let mut running = Vec::new();
    let legacy = images.nft.is_some();
    if let Some((nft, _)) = images.nft {
        running.push(Running::start("nft", &["list", "ruleset"], nft, None)?);
    }
    let ipv6 = std::path::Path::new("/proc/sys/net/ipv6").exists();
    let [(save4, _), (save6, _)] = tools(legacy);
    if have(save4) {
        running.push(Running::start(save4, &[], images.v4.0, None)?);
    }
    if have(save6) && ipv6 {
        running.push(Running::start(save6, &[], images.v6.0, None)?);
    }
    Ok(running)
}

/// Makes the saved rules again in the calling thread's namespace: the nf_tables ruleset
/// first, then the iptables rules.
pub fn restore(saved: Saved) -> Result<(), String> {
    if let Some(f) = saved.nft {
        if !have_nft() {
            return Err("the images hold nftables rules (nftables-N.img) and this host has no nft".into());
        }
        run("nft", &["-f", "-"], Some(f), None).map_err(|e| format!("nftables rules: {e}"))?;
    }
    let [(_, restore4), (_, restore6)] = tools(saved.nft_image);
    for (f, program, what) in [(saved.v4, restore4, "iptables"), (saved.v6, restore6, "ip6tables")] {
        let Some(f) = f else { continue };
        if !have(program) {
            return Err(format!("the images hold {what} rules and this host has no {program}"));
        }
        run(program, &["-w"], Some(f), None).map_err(|e| format!("{what} rules: {e}"))?;
    }
    Ok(())
}
