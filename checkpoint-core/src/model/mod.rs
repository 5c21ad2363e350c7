//! What the images mean, shared by the dump and the restore: neither side imports the other,
//! both import these.

pub mod creds;
pub mod seccomp;
