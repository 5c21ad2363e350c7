//! CRIU's on-disk image format. The only module that knows bytes, magics and file names.
//!
//! - [`kind`]: the table of image kinds (file name, magics).
//! - [`framing`]: bounded readers and writers of `{u32 length, message}` entries.
//! - [`pb`]: the hand-written protobuf messages.
//! - [`pages`]: pagemap images and the raw pages they index.
//! - [`any`]: whole-file decoding of any kind (for `stasis show --json` and round-trip tests).

pub mod any;
pub mod framing;
pub mod kind;
pub mod magic;
pub mod pages;
pub mod pb;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use any::{AnyEntry, AnyImage, AnyMessage, Payload, Payloads};
pub use framing::{ImageError, ImageReader, ImageWriter, Limits};
pub use kind::ImageKind;

/// A file of an image directory and, if its name is an image name, its kind and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub kind: Option<(ImageKind, u64)>,
}

/// A directory of image files: created 0700, files inside created 0600.
#[derive(Clone, Debug)]
pub struct ImageDir {
    path: PathBuf,
    limits: Limits,
}

impl ImageDir {
    /// Opens an existing image directory for reading.
    pub fn open(path: &Path) -> Result<ImageDir, ImageError> {
        let meta = fs::metadata(path).map_err(|e| ImageError::io(path, e))?;
        if !meta.is_dir() {
            return Err(ImageError::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        Ok(ImageDir {
            path: path.to_owned(),
            limits: Limits::default(),
        })
    }

    /// Creates (mode 0700) or reuses a directory to write images into.
    pub fn create(path: &Path) -> Result<ImageDir, ImageError> {
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io(path, e)),
        }
        Self::open(path)
    }

    /// Uses other reading limits.
    pub fn with_limits(mut self, limits: Limits) -> ImageDir {
        self.limits = limits;
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits readers apply.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Path of the image of `kind` with `id`.
    pub fn image_path(&self, kind: ImageKind, id: u64) -> PathBuf {
        self.path.join(kind.file_name(id))
    }

    /// Opens the image of `kind`/`id`, or `None` if it does not exist (CRIU writes no empty images).
    pub fn reader(&self, kind: ImageKind, id: u64) -> Result<Option<ImageReader<BufReader<File>>>, ImageError> {
        let path = self.image_path(kind, id);
        match ImageReader::open(&path, self.limits) {
            Ok(rd) => rd.expect_kind(kind).map(Some),
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads every entry of a payload-free image; a missing image reads as empty.
    pub fn read_all<M: prost::Message + Default>(&self, kind: ImageKind, id: u64) -> Result<Vec<M>, ImageError> {
        match self.reader(kind, id)? {
            Some(rd) => rd.read_all(),
            None => Ok(Vec::new()),
        }
    }

    /// Reads the single entry of a one-entry image, or `None` if the image is missing.
    pub fn read_one<M: prost::Message + Default>(&self, kind: ImageKind, id: u64) -> Result<Option<M>, ImageError> {
        self.reader(kind, id)?.map(|rd| rd.read_one()).transpose()
    }

    /// Creates (truncating, mode 0600) the image of `kind`/`id` and writes its magic.
    pub fn writer(&self, kind: ImageKind, id: u64) -> Result<ImageWriter<BufWriter<File>>, ImageError> {
        let path = self.image_path(kind, id);
        let file = self.create_file(&path)?;
        ImageWriter::new(BufWriter::new(file), kind, &path)
    }

    /// Writes a whole payload-free image of `kind`/`id` (durable after [`ImageDir::sync`]).
    pub fn write_all<M: prost::Message>(&self, kind: ImageKind, id: u64, entries: &[M]) -> Result<(), ImageError> {
        let mut w = self.writer(kind, id)?;
        for e in entries {
            w.write(e)?;
        }
        w.finish().map(drop)
    }

    /// Makes everything written to the directory durable: one syncfs(2) for all the files (a
    /// single journal commit on ext4, instead of one per fsync'd file).
    pub fn sync(&self) -> Result<(), ImageError> {
        let dir = File::open(&self.path).map_err(|e| ImageError::io(&self.path, e))?;
        crate::sys::syncfs(&dir).map_err(|e| ImageError::io(&self.path, e))
    }

    /// Creates (truncating, mode 0600) a raw file such as `pages-<id>.img`.
    pub fn create_raw(&self, kind: ImageKind, id: u64) -> Result<(File, PathBuf), ImageError> {
        let path = self.image_path(kind, id);
        let file = self.create_file(&path)?;
        Ok((file, path))
    }

    fn create_file(&self, path: &Path) -> Result<File, ImageError> {
        // Readable too: the pages image is filled through a shared mapping.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ImageError::io(path, e))
    }

    /// Every file of the directory with the kind its name denotes (sorted by name).
    pub fn list(&self) -> Result<Vec<Listed>, ImageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(|e| ImageError::io(&self.path, e))? {
            let entry = entry.map_err(|e| ImageError::io(&self.path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = ImageKind::from_file_name(&name);
            out.push(Listed { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
