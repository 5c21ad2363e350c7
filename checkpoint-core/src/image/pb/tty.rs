//! Terminals: open tty files, `tty-info.img` and unread input in `tty-data.img`.

use super::{hex, FownEntry};

criu_enum! {
    /// Kind of terminal.
    pub enum TtyType {
        Unknown = 0 => "UNKNOWN",
        Pty = 1 => "PTY",
        Console = 2 => "CONSOLE",
        Vt = 3 => "VT",
        Ctty = 4 => "CTTY",
        ExtTty = 5 => "EXT_TTY",
        Serial = 6 => "SERIAL",
    }
}

/// Terminal window size.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct WinsizeEntry {
    #[prost(uint32, required, tag = "1")]
    pub ws_row: u32,
    #[prost(uint32, required, tag = "2")]
    pub ws_col: u32,
    #[prost(uint32, required, tag = "3")]
    pub ws_xpixel: u32,
    #[prost(uint32, required, tag = "4")]
    pub ws_ypixel: u32,
}

/// termios settings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TermiosEntry {
    #[prost(uint32, required, tag = "1")]
    pub c_iflag: u32,
    #[prost(uint32, required, tag = "2")]
    pub c_oflag: u32,
    #[prost(uint32, required, tag = "3")]
    pub c_cflag: u32,
    #[prost(uint32, required, tag = "4")]
    pub c_lflag: u32,
    #[prost(uint32, required, tag = "5")]
    pub c_line: u32,
    #[prost(uint32, required, tag = "6")]
    pub c_ispeed: u32,
    #[prost(uint32, required, tag = "7")]
    pub c_ospeed: u32,
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub c_cc: Vec<u32>,
}

/// Index of a pty pair.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyPtyEntry {
    #[prost(uint32, required, tag = "1")]
    pub index: u32,
}

/// Unread input of a terminal.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyDataEntry {
    #[prost(uint32, required, tag = "1")]
    pub tty_id: u32,
    #[prost(bytes = "vec", required, tag = "2")]
    #[serde(serialize_with = "hex")]
    pub data: Vec<u8>,
}

/// State of one terminal (`tty-info.img`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyInfoEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(enumeration = "TtyType", required, tag = "2")]
    #[serde(serialize_with = "super::enum_name::<TtyType, _>")]
    pub r#type: i32,
    #[prost(bool, required, tag = "3")]
    pub locked: bool,
    #[prost(bool, required, tag = "4")]
    pub exclusive: bool,
    #[prost(bool, required, tag = "5")]
    pub packet_mode: bool,
    #[prost(uint32, required, tag = "6")]
    pub sid: u32,
    #[prost(uint32, required, tag = "7")]
    pub pgrp: u32,
    #[prost(uint32, required, tag = "8")]
    pub rdev: u32,
    #[prost(message, optional, tag = "9")]
    pub termios: Option<TermiosEntry>,
    #[prost(message, optional, tag = "10")]
    pub termios_locked: Option<TermiosEntry>,
    #[prost(message, optional, tag = "11")]
    pub winsize: Option<WinsizeEntry>,
    #[prost(message, optional, tag = "12")]
    pub pty: Option<TtyPtyEntry>,
    #[prost(uint32, optional, tag = "13")]
    pub dev: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub uid: Option<u32>,
    #[prost(uint32, optional, tag = "15")]
    pub gid: Option<u32>,
}

/// An open terminal file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub tty_info_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    #[prost(message, required, tag = "4")]
    pub fown: FownEntry,
    /// REG entry with the device path (/dev/pts/N).
    #[prost(uint32, optional, tag = "6")]
    pub regf_id: Option<u32>,
}
