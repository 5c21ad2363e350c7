//! Image framing: the magic words, then `{u32 length, protobuf message}` entries, some followed
//! by a raw payload. Readers are bounded: no allocation exceeds the bytes the file still holds
//! or the configured limits, and every error names the file and the entry.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::kind::{Head, ImageKind};
use super::magic;

/// Bounds applied while reading untrusted images.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted file (protobuf images; raw images are never loaded whole).
    pub max_file_size: u64,
    /// Largest accepted protobuf message.
    pub max_entry_size: u32,
    /// Largest raw payload loaded into memory at once.
    pub max_payload: u64,
    /// Most entries in one file.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 1 << 36,
            max_entry_size: 64 << 20,
            max_payload: 1 << 30,
            max_entries: 1 << 24,
        }
    }
}

/// What went wrong with an image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {len} bytes, larger than the limit of {limit}", path.display())]
    FileTooLarge { path: PathBuf, len: u64, limit: u64 },
    #[error("{}: {len} bytes, too short to hold its magic", path.display())]
    NoMagic { path: PathBuf, len: u64 },
    #[error("{}: unknown magic {magic:#010x} (not a CRIU image, or a raw one)", path.display())]
    UnknownMagic { path: PathBuf, magic: u32 },
    #[error("{}: magic {found:#010x} is not the {expected} magic {want:#010x}", path.display())]
    WrongMagic {
        path: PathBuf,
        expected: &'static str,
        want: u32,
        found: u32,
    },
    #[error("{}: {} is a raw image; it has no entries", path.display(), kind.label())]
    RawImage { path: PathBuf, kind: ImageKind },
    #[error("{}: entry {index}: size {size} exceeds the limit of {limit} bytes", path.display())]
    EntryTooLarge {
        path: PathBuf,
        index: usize,
        size: u64,
        limit: u64,
    },
    #[error("{}: entry {index}: truncated {what}: needs {needed} bytes, {left} left", path.display())]
    Truncated {
        path: PathBuf,
        index: usize,
        what: &'static str,
        needed: u64,
        left: u64,
    },
    #[error("{}: entry {index}: cannot decode {message}: {source}", path.display())]
    Decode {
        path: PathBuf,
        index: usize,
        message: &'static str,
        source: prost::DecodeError,
    },
    #[error("{}: more than {limit} entries", path.display())]
    TooManyEntries { path: PathBuf, limit: usize },
    #[error("{}: expected {expected} entry, found {found}", path.display())]
    EntryCount {
        path: PathBuf,
        expected: &'static str,
        found: usize,
    },
    #[error("{}: entry {index}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        index: usize,
        reason: &'static str,
    },
}

impl ImageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        ImageError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads the magic words and the entries of one image file.
pub struct ImageReader<R> {
    src: R,
    path: PathBuf,
    kind: ImageKind,
    left: u64,
    index: usize,
    limits: Limits,
}

impl ImageReader<BufReader<File>> {
    /// Opens `path`, reads its magic and identifies its kind.
    pub fn open(path: &Path, limits: Limits) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
        let len = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
        Self::new(BufReader::new(file), len, path, limits)
    }
}

impl<R: Read> ImageReader<R> {
    /// Reads the magic from `src`, which holds `len` bytes; `path` names it in errors.
    pub fn new(mut src: R, len: u64, path: &Path, limits: Limits) -> Result<Self, ImageError> {
        if len > limits.max_file_size {
            return Err(ImageError::FileTooLarge {
                path: path.to_owned(),
                len,
                limit: limits.max_file_size,
            });
        }
        let mut word = [0u8; 4];
        let mut read_word = |src: &mut R| -> Result<u32, ImageError> {
            src.read_exact(&mut word).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ImageError::NoMagic {
                    path: path.to_owned(),
                    len,
                },
                _ => ImageError::io(path, e),
            })?;
            Ok(u32::from_le_bytes(word))
        };
        let first = read_word(&mut src)?;
        let (head, type_magic, used) = match first {
            magic::IMG_COMMON => (Head::Common, read_word(&mut src)?, 8),
            magic::IMG_SERVICE => (Head::Service, read_word(&mut src)?, 8),
            other => (Head::TypeOnly, other, 4),
        };
        let kind = ImageKind::by_magic(head, type_magic).ok_or(ImageError::UnknownMagic {
            path: path.to_owned(),
            magic: type_magic,
        })?;
        // Kinds that share a magic (pagemap, stats) are told apart by the file name.
        let kind = match path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(ImageKind::from_file_name)
        {
            Some((named, _)) if named.magic() == kind.magic() && named.head() == kind.head() => named,
            _ => kind,
        };
        Ok(ImageReader {
            src,
            path: path.to_owned(),
            kind,
            left: len - used,
            index: 0,
            limits,
        })
    }

    /// The kind found from the magic (and the file name where the magic is shared).
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the next entry.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Checks that the kind is `want`.
    pub fn expect_kind(self, want: ImageKind) -> Result<Self, ImageError> {
        if self.kind.magic() == want.magic() && self.kind.head() == want.head() {
            Ok(self)
        } else {
            Err(ImageError::WrongMagic {
                path: self.path,
                expected: want.label(),
                want: want.magic(),
                found: self.kind.magic(),
            })
        }
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<Vec<u8>, ImageError> {
        if n > self.left {
            return Err(ImageError::Truncated {
                path: self.path.clone(),
                index: self.index,
                what,
                needed: n,
                left: self.left,
            });
        }
        // Bounded above by the file's remaining bytes, checked just before.
        let mut buf = vec![0u8; n as usize];
        self.src
            .read_exact(&mut buf)
            .map_err(|e| ImageError::io(&self.path, e))?;
        self.left -= n;
        Ok(buf)
    }

    /// The raw bytes of the next message, or `None` at the end of the file.
    pub fn next_raw(&mut self) -> Result<Option<Vec<u8>>, ImageError> {
        if self.left == 0 {
            return Ok(None);
        }
        if self.index >= self.limits.max_entries {
            return Err(ImageError::TooManyEntries {
                path: self.path.clone(),
                limit: self.limits.max_entries,
            });
        }
        let len_bytes = self.take(4, "length prefix")?;
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len > self.limits.max_entry_size {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                index: self.index,
                size: len.into(),
                limit: self.limits.max_entry_size.into(),
            });
        }
        let body = self.take(len.into(), "message")?;
        self.index += 1;
        Ok(Some(body))
    }

    /// Decodes the next entry as `M`, or `None` at the end of the file.
    pub fn next_entry<M: Message + Default>(&mut self) -> Result<Option<M>, ImageError> {
        let Some(body) = self.next_raw()? else {
            return Ok(None);
        };
        self.decode(&body).map(Some)
    }

    /// Decodes `body`, an entry just read, as `M`.
    pub fn decode<M: Message + Default>(&self, body: &[u8]) -> Result<M, ImageError> {
        M::decode(body).map_err(|source| ImageError::Decode {
            path: self.path.clone(),
            index: self.index.saturating_sub(1),
            message: short_type_name::<M>(),
            source,
        })
    }

    /// Reads the `len`-byte raw payload that follows the last entry.
    pub fn read_payload(&mut self, len: u64) -> Result<Vec<u8>, ImageError> {
        if len > self.limits.max_payload {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                index: self.index.saturating_sub(1),
                size: len,
                limit: self.limits.max_payload,
            });
        }
        self.take(len, "payload")
    }

    /// Skips the `len`-byte raw payload that follows the last entry.
    pub fn skip_payload(&mut self, len: u64) -> Result<(), ImageError> {
        if len > self.left {
            return Err(ImageError::Truncated {
                path: self.path.clone(),
                index: self.index.saturating_sub(1),
                what: "payload",
                needed: len,
                left: self.left,
            });
        }
        let copied =
            io::copy(&mut (&mut self.src).take(len), &mut io::sink()).map_err(|e| ImageError::io(&self.path, e))?;
        if copied != len {
            return Err(ImageError::io(&self.path, io::ErrorKind::UnexpectedEof.into()));
        }
        self.left -= len;
        Ok(())
    }

    /// Reads every entry as `M` (skipping nothing: for images without payloads).
    pub fn read_all<M: Message + Default>(mut self) -> Result<Vec<M>, ImageError> {
        let mut out = Vec::new();
        while let Some(m) = self.next_entry()? {
            out.push(m);
        }
        Ok(out)
    }

    /// Reads the single entry of a one-entry image.
    pub fn read_one<M: Message + Default>(mut self) -> Result<M, ImageError> {
        let Some(m) = self.next_entry()? else {
            return Err(ImageError::EntryCount {
                path: self.path,
                expected: "exactly one",
                found: 0,
            });
        };
        if self.left != 0 {
            return Err(ImageError::EntryCount {
                path: self.path,
                expected: "exactly one",
                found: 2,
            });
        }
        Ok(m)
    }
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Writes one image file: its magic words, then entries and payloads.
pub struct ImageWriter<W: Write> {
    dst: W,
    path: PathBuf,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image of `kind` on `dst` (`path` names it in errors).
    pub fn new(mut dst: W, kind: ImageKind, path: &Path) -> Result<Self, ImageError> {
        let mut head = Vec::with_capacity(8);
        match kind.head() {
            Head::Common => head.extend_from_slice(&magic::IMG_COMMON.to_le_bytes()),
            Head::Service => head.extend_from_slice(&magic::IMG_SERVICE.to_le_bytes()),
            Head::TypeOnly => {}
            Head::Raw => {
                return Err(ImageError::RawImage {
                    path: path.to_owned(),
                    kind,
                })
            }
        }
        head.extend_from_slice(&kind.magic().to_le_bytes());
        dst.write_all(&head).map_err(|e| ImageError::io(path, e))?;
        Ok(ImageWriter {
            dst,
            path: path.to_owned(),
        })
    }

    /// Appends one entry.
    pub fn write<M: Message>(&mut self, msg: &M) -> Result<(), ImageError> {
        let body = msg.encode_to_vec();
        self.write_raw(&body)
    }

    /// Appends one already-encoded entry.
    pub fn write_raw(&mut self, body: &[u8]) -> Result<(), ImageError> {
        let len = u32::try_from(body.len()).map_err(|_| ImageError::EntryTooLarge {
            path: self.path.clone(),
            index: 0,
            size: body.len() as u64,
            limit: u32::MAX.into(),
        })?;
        self.dst
            .write_all(&len.to_le_bytes())
            .map_err(|e| ImageError::io(&self.path, e))?;
        self.dst.write_all(body).map_err(|e| ImageError::io(&self.path, e))
    }

    /// Appends raw payload bytes after the last entry.
    pub fn write_payload(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.dst.write_all(bytes).map_err(|e| ImageError::io(&self.path, e))
    }

    /// Flushes and returns the destination.
    pub fn finish(mut self) -> Result<W, ImageError> {
        self.dst.flush().map_err(|e| ImageError::io(&self.path, e))?;
        Ok(self.dst)
    }
}

impl ImageWriter<BufWriter<File>> {
    /// Flushes and fsyncs the file.
    pub fn sync(self) -> Result<(), ImageError> {
        let path = self.path.clone();
        let file = self
            .finish()?
            .into_inner()
            .map_err(|e| ImageError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| ImageError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pb::{PstreeEntry, TaskKobjIdsEntry};

    fn pstree(pid: u32) -> PstreeEntry {
        PstreeEntry {
            pid,
            ppid: 0,
            pgid: pid,
            sid: pid,
            threads: vec![pid, pid + 1],
        }
    }

    #[test]
    fn writes_the_head_and_type_magic_then_length_prefixed_entries() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, Path::new("p")).unwrap();
        w.write(&pstree(7)).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[0..4], &magic::IMG_COMMON.to_le_bytes());
        assert_eq!(&bytes[4..8], &magic::PSTREE.to_le_bytes());
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 12 + len);
        // ppid 0 is a required field: it is on the wire (tag 2, value 0).
        assert!(bytes[12..].windows(2).any(|w| w == [0x10, 0x00]));
    }

    #[test]
    fn inventory_has_only_its_type_magic() {
        let w = ImageWriter::new(Vec::new(), ImageKind::Inventory, Path::new("i")).unwrap();
        assert_eq!(w.finish().unwrap(), magic::INVENTORY.to_le_bytes());
    }

    #[test]
    fn raw_kinds_cannot_be_framed() {
        assert!(matches!(
            ImageWriter::new(Vec::new(), ImageKind::Pages, Path::new("pages-1.img")),
            Err(ImageError::RawImage { .. })
        ));
    }

    #[test]
    fn reads_back_what_was_written() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, Path::new("p")).unwrap();
        for pid in [1, 50, 70_000] {
            w.write(&pstree(pid)).unwrap();
        }
        let bytes = w.finish().unwrap();
        let rd = ImageReader::new(
            &bytes[..],
            bytes.len() as u64,
            Path::new("pstree.img"),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(rd.kind(), ImageKind::Pstree);
        let back: Vec<PstreeEntry> = rd.read_all().unwrap();
        assert_eq!(back, vec![pstree(1), pstree(50), pstree(70_000)]);
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_problem() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, Path::new("p")).unwrap();
        w.write(&pstree(1)).unwrap();
        w.write(&pstree(2)).unwrap();
        let bytes = w.finish().unwrap();
        let cut = &bytes[..bytes.len() - 3];
        let rd = ImageReader::new(cut, cut.len() as u64, Path::new("/d/pstree.img"), Limits::default()).unwrap();
        let err = rd.read_all::<PstreeEntry>().unwrap_err().to_string();
        assert_eq!(err, "/d/pstree.img: entry 1: truncated message: needs 12 bytes, 9 left");

        let limits = Limits {
            max_entries: 1,
            ..Limits::default()
        };
        let rd = ImageReader::new(&bytes[..], bytes.len() as u64, Path::new("/d/pstree.img"), limits).unwrap();
        let err = rd.read_all::<PstreeEntry>().unwrap_err().to_string();
        assert_eq!(err, "/d/pstree.img: more than 1 entries");

        let err = ImageReader::new(
            &b"\x19\x43\x56\x54\0\0\0\0"[..],
            8,
            Path::new("/d/x.img"),
            Limits::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("/d/x.img: unknown magic 0x00000000"), "{err}");

        let err = ImageReader::new(&b"\x19"[..], 1, Path::new("/d/y.img"), Limits::default())
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "/d/y.img: 1 bytes, too short to hold its magic");
    }

    #[test]
    fn a_garbage_message_is_a_decode_error_naming_the_type() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Ids, Path::new("p")).unwrap();
        w.write_raw(&[0xff, 0xff, 0xff]).unwrap();
        let bytes = w.finish().unwrap();
        let rd = ImageReader::new(
            &bytes[..],
            bytes.len() as u64,
            Path::new("ids-1.img"),
            Limits::default(),
        )
        .unwrap();
        let err = rd.read_one::<TaskKobjIdsEntry>().unwrap_err().to_string();
        assert!(
            err.starts_with("ids-1.img: entry 0: cannot decode TaskKobjIdsEntry"),
            "{err}"
        );
    }

    #[test]
    fn the_wrong_kind_is_refused() {
        let w = ImageWriter::new(Vec::new(), ImageKind::Mm, Path::new("p")).unwrap();
        let bytes = w.finish().unwrap();
        let rd = ImageReader::new(
            &bytes[..],
            bytes.len() as u64,
            Path::new("core-1.img"),
            Limits::default(),
        )
        .unwrap();
        let err = rd.expect_kind(ImageKind::Core).err().unwrap().to_string();
        assert!(err.contains("is not the CORE magic"), "{err}");
    }
}
