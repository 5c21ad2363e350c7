//! `stasis-runc`: runc-compatible CLI; not implemented yet, so it refuses every verb rather than pretend.
fn main() -> std::process::ExitCode {
    eprintln!("stasis-runc: not implemented yet (container checkpoint/restore is a later milestone)");
    std::process::ExitCode::FAILURE
}
