//! `containerd-shim-stasis-v2`: not implemented yet, so it refuses to start rather than pretend.
fn main() -> std::process::ExitCode {
    eprintln!("containerd-shim-stasis-v2: not implemented yet (containerd integration is a later milestone)");
    std::process::ExitCode::FAILURE
}
