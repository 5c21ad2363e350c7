//! Memory images: `pagemap-<pid>.img` lists runs of pages, `pages-<id>.img` holds their bytes
//! back to back, in pagemap order, for the runs flagged PE_PRESENT.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use super::framing::{ImageError, ImageReader, ImageWriter};
use super::kind::ImageKind;
use super::pb::{pe_flags, PagemapEntry, PagemapHead};
use super::ImageDir;

/// Page size of the images (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// A run of pages read from a pagemap, with where its bytes are in the pages image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
    /// Byte offset in `pages-<id>.img` (meaningful when present).
    pub offset: u64,
}

impl PageRun {
    /// Whether the bytes are in this directory.
    pub fn is_present(&self) -> bool {
        self.flags & pe_flags::PRESENT != 0
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.nr_pages * PAGE_SIZE
    }

    /// Whether the run has no pages.
    pub fn is_empty(&self) -> bool {
        self.nr_pages == 0
    }
}

/// A decoded pagemap: the pages image id and the runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pagemap {
    pub pages_id: u32,
    pub runs: Vec<PageRun>,
}

impl Pagemap {
    /// Reads `pagemap-<pid>.img` (or `pagemap-shmem-<id>.img` for `ShmemPagemap`).
    pub fn read(dir: &ImageDir, kind: ImageKind, id: u64) -> Result<Option<Pagemap>, ImageError> {
        let Some(rd) = dir.reader(kind, id)? else {
            return Ok(None);
        };
        Self::decode(rd).map(Some)
    }

    /// Decodes an opened pagemap image; checks runs are sorted and do not overlap.
    pub fn decode<R: Read>(mut rd: ImageReader<R>) -> Result<Pagemap, ImageError> {
        let head: PagemapHead = rd.next_entry()?.ok_or_else(|| ImageError::EntryCount {
            path: rd.path().to_owned(),
            expected: "a pagemap head",
            found: 0,
        })?;
        let mut runs: Vec<PageRun> = Vec::new();
        let mut offset = 0u64;
        let mut end_of_last = 0u64;
        while let Some(e) = rd.next_entry::<PagemapEntry>()? {
            let nr_pages = e.pages();
            let flags = e.flags.unwrap_or(if e.is_present() {
                pe_flags::PRESENT
            } else {
                pe_flags::PARENT
            });
            let bad = |reason: &'static str| ImageError::Invalid {
                path: rd.path().to_owned(),
                index: rd.index() - 1,
                reason,
            };
            let len = nr_pages
                .checked_mul(PAGE_SIZE)
                .ok_or_else(|| bad("page run (size overflows)"))?;
            let end = e
                .vaddr
                .checked_add(len)
                .ok_or_else(|| bad("page run (end overflows)"))?;
            if e.vaddr % PAGE_SIZE != 0 || e.vaddr < end_of_last {
                return Err(bad("page run (unaligned or out of order)"));
            }
            end_of_last = end;
            runs.push(PageRun {
                vaddr: e.vaddr,
                nr_pages,
                flags,
                offset,
            });
            if flags & pe_flags::PRESENT != 0 {
                offset += len;
            }
        }
        Ok(Pagemap {
            pages_id: head.pages_id,
            runs,
        })
    }

    /// Bytes the runs flagged present hold in the pages image.
    pub fn present_bytes(&self) -> u64 {
        self.runs.iter().filter(|r| r.is_present()).map(PageRun::len).sum()
    }
}

/// Writes a pagemap and its pages image together, run by run.
pub struct PageImageWriter {
    map: ImageWriter<BufWriter<File>>,
    pages: BufWriter<File>,
    pages_path: PathBuf,
    written: u64,
}

impl PageImageWriter {
    /// Creates `pagemap-<id>.img` (kind `Pagemap` or `ShmemPagemap`) and `pages-<pages_id>.img`.
    pub fn create(dir: &ImageDir, kind: ImageKind, id: u64, pages_id: u32) -> Result<Self, ImageError> {
        let mut map = dir.writer(kind, id)?;
        map.write(&PagemapHead { pages_id })?;
        let (file, pages_path) = dir.create_raw(ImageKind::Pages, pages_id.into())?;
        Ok(PageImageWriter {
            map,
            pages: BufWriter::with_capacity(1 << 20, file),
            pages_path,
            written: 0,
        })
    }

    /// Records a run at `vaddr` whose bytes are `data` (a whole number of pages).
    pub fn write_run(&mut self, vaddr: u64, data: &[u8]) -> Result<(), ImageError> {
        debug_assert_eq!(data.len() as u64 % PAGE_SIZE, 0);
        self.record_runs(&[(vaddr, data.len() as u64)])?;
        self.append_data(data)
    }

    /// Appends page bytes whose runs are recorded with [`Self::record_runs`] (in the same order).
    pub fn append_data(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.pages
            .write_all(data)
            .map_err(|e| ImageError::io(&self.pages_path, e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Records pagemap entries for `runs` ((address, length in bytes)), present in the pages image.
    pub fn record_runs(&mut self, runs: &[(u64, u64)]) -> Result<(), ImageError> {
        for &(vaddr, len) in runs {
            let nr_pages = len / PAGE_SIZE;
            self.map.write(&PagemapEntry {
                vaddr,
                compat_nr_pages: u32::try_from(nr_pages).unwrap_or(u32::MAX),
                in_parent: None,
                flags: Some(pe_flags::PRESENT),
                nr_pages: Some(nr_pages),
            })?;
        }
        Ok(())
    }

    /// Whether the pages image is on tmpfs (where filling it through a mapping is fastest).
    pub fn on_tmpfs(&self) -> bool {
        crate::sys::is_tmpfs(self.pages.get_ref())
    }

    /// Appends `len` bytes to the pages image (reserved with fallocate, so a full filesystem is an
    /// error here rather than a SIGBUS later) and maps them for writing: the caller fills them
    /// (one copy, into the page cache), then [`Self::commit_mapped`] records the runs.
    pub fn map_append(&mut self, len: u64) -> Result<crate::sys::SharedMap, ImageError> {
        let io_err = |e| ImageError::io(&self.pages_path, e);
        self.pages.flush().map_err(io_err)?;
        let file = self.pages.get_ref();
        crate::sys::reserve(file, self.written, len).map_err(io_err)?;
        file.set_len(self.written + len).map_err(io_err)?;
        let size = usize::try_from(len).map_err(|_| io_err(std::io::ErrorKind::InvalidInput.into()))?;
        crate::sys::SharedMap::new(file, self.written, size).map_err(io_err)
    }

    /// Records `runs` whose bytes were written through [`Self::map_append`].
    pub fn commit_mapped(&mut self, runs: &[(u64, u64)]) -> Result<(), ImageError> {
        use std::io::Seek;
        self.record_runs(runs)?;
        self.written += runs.iter().map(|r| r.1).sum::<u64>();
        self.pages
            .seek(std::io::SeekFrom::Start(self.written))
            .map_err(|e| ImageError::io(&self.pages_path, e))?;
        Ok(())
    }

    /// Bytes written to the pages image so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes both files (durable after [`ImageDir::sync`]).
    pub fn finish(self) -> Result<u64, ImageError> {
        self.map.finish()?;
        self.pages
            .into_inner()
            .map_err(|e| ImageError::io(&self.pages_path, e.into_error()))?;
        Ok(self.written)
    }
}

/// Opens `pages-<id>.img` for reading.
pub fn open_pages(dir: &ImageDir, pages_id: u32) -> Result<BufReader<File>, ImageError> {
    let path = dir.image_path(ImageKind::Pages, pages_id.into());
    File::open(&path)
        .map(BufReader::new)
        .map_err(|e| ImageError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn runs_and_bytes_come_back_in_order_with_offsets() {
        let dir = std::env::temp_dir().join(format!("stasis-pages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let images = ImageDir::create(&dir).unwrap();
        let mut w = PageImageWriter::create(&images, ImageKind::Pagemap, 42, 1).unwrap();
        let a = vec![0xaa; 2 * PAGE_SIZE as usize];
        let b = vec![0xbb; PAGE_SIZE as usize];
        w.write_run(0x1000, &a).unwrap();
        w.write_run(0x8000, &b).unwrap();
        assert_eq!(w.finish().unwrap(), 3 * PAGE_SIZE);

        let map = Pagemap::read(&images, ImageKind::Pagemap, 42).unwrap().unwrap();
        assert_eq!(map.pages_id, 1);
        assert_eq!(map.runs.len(), 2);
        assert_eq!(
            (map.runs[1].vaddr, map.runs[1].nr_pages, map.runs[1].offset),
            (0x8000, 1, 2 * PAGE_SIZE)
        );
        assert_eq!(map.present_bytes(), 3 * PAGE_SIZE);
        let mut data = Vec::new();
        open_pages(&images, 1).unwrap().read_to_end(&mut data).unwrap();
        assert_eq!(data, [a, b].concat());
        for name in ["pagemap-42.img", "pages-1.img"] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overlapping_runs_are_refused() {
        let dir = std::env::temp_dir().join(format!("stasis-pages-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let images = ImageDir::create(&dir).unwrap();
        let mut w = PageImageWriter::create(&images, ImageKind::Pagemap, 1, 1).unwrap();
        w.write_run(0x4000, &[0; 8192]).unwrap();
        w.write_run(0x5000, &[0; 4096]).unwrap();
        w.finish().unwrap();
        let err = Pagemap::read(&images, ImageKind::Pagemap, 1).unwrap_err().to_string();
        assert!(
            err.ends_with("pagemap-1.img: entry 2: page run (unaligned or out of order)"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
