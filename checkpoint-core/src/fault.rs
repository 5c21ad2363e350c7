//! Fault injection, for the tests of what a failure leaves behind: with
//! `STASIS_FAULT=<point>` in the environment, the step named `point` fails as if the system
//! had refused it. Points: `tcp-locked` (a dump, once its connections are locked, before any
//! is read), `tcp-repaired` (a dump, once every connection is read in repair mode).
//! `STASIS_FAULT=<point>:stop` stops the process there instead (SIGSTOP), for a test to kill
//! it at that very step.

use std::io;

/// Fails if the environment asks step `point` to.
pub fn point(point: &str) -> io::Result<()> {
    match std::env::var_os("STASIS_FAULT") {
        Some(v) if v == point => Err(io::Error::other(format!("fault injected at {point} (STASIS_FAULT)"))),
        Some(v) if v.to_str() == Some(&format!("{point}:stop")) => {
            crate::sys::send_signal(std::process::id() as i32, libc::SIGSTOP)
        }
        _ => Ok(()),
    }
}
