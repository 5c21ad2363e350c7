//! Stasis: checkpoint/restore of Linux processes in CRIU's image format.
//!
//! Today this crate owns the image format ([`image`]) and the inspector behind `stasis show`
//! ([`show`]); dump and restore build on them.

pub mod aio;
pub mod check;
pub mod criu_args;
pub mod dump;
pub mod fault;
pub mod fds;
pub mod freeze;
pub mod image;
pub mod model;
pub mod netlock;
pub mod ns;
pub mod procfs;
pub mod restore;
pub mod show;
pub mod sys;
pub mod x86;
