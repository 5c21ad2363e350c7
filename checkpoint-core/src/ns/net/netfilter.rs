//! Netfilter rules of a network namespace: `iptables-N.img` and `ip6tables-N.img`, the text
//! `iptables-save`/`ip6tables-save` print (whichever backend they use: legacy or nf_tables),
//! as CRIU writes them; made again with `iptables-restore -w`/`ip6tables-restore -w`.
//! Tables made with `nft` itself (not through iptables) are not saved.

use std::fs::File;
use std::path::PathBuf;

use super::{have, run, Running};

/// The images a dump writes (created, empty).
pub struct Images {
    pub v4: (File, PathBuf),
    pub v6: (File, PathBuf),
}

/// The saved images a restore reads (those missing or empty are left out).
pub struct Saved {
    pub v4: Option<File>,
    pub v6: Option<File>,
}

/// Starts saving the calling thread's namespace's iptables and ip6tables rules. Without
/// the programs on this host the images stay empty: nothing made rules through them.
pub(super) fn start_save(images: Images) -> Result<Vec<Running>, String> {
    let mut running = Vec::new();
    if have("iptables-save") {
        running.push(Running::start("iptables-save", &[], images.v4.0, None)?);
    }
    if have("ip6tables-save") && std::path::Path::new("/proc/sys/net/ipv6").exists() {
        running.push(Running::start("ip6tables-save", &[], images.v6.0, None)?);
    }
    Ok(running)
}

/// Makes the saved rules again in the calling thread's namespace.
pub fn restore(saved: Saved) -> Result<(), String> {
    if let Some(f) = saved.v4 {
        run("iptables-restore", &["-w"], Some(f), None).map_err(|e| format!("iptables rules: {e}"))?;
    }
    if let Some(f) = saved.v6 {
        run("ip6tables-restore", &["-w"], Some(f), None).map_err(|e| format!("ip6tables rules: {e}"))?;
    }
    Ok(())
}
