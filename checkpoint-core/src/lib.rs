//! Stasis: checkpoint/restore of Linux processes in CRIU's image format.
//!
//! Today this crate owns the image format ([`image`]) and the inspector behind `stasis show`
//! ([`show`]); dump and restore build on them.

pub mod image;
pub mod show;
