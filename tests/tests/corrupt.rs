//! Damaged images must give errors, never panics, and never allocations larger than the file.
//!
//! Property tests over every protobuf image of the CRIU fixtures: truncated files, flipped bytes,
//! and random words written over length prefixes and fields. A counting allocator records the
//! largest single allocation made while decoding.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use checkpoint_core::image::{AnyImage, ImageDir, ImageKind, ImageReader, Limits, Payloads};
use checkpoint_core::show;
use ctests::{files_of, fixture_dirs};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn samples() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in fixture_dirs() {
        for path in files_of(&dir) {
            let name = path.file_name().unwrap().to_str().unwrap();
            if let Some((kind, _)) = ImageKind::from_file_name(name) {
                if !kind.is_raw() {
                    let bytes = std::fs::read(&path).unwrap();
                    out.push((path, bytes));
                }
            }
        }
    }
    out
}

/// Decodes damaged bytes; checks the error names the file and no allocation outgrew the input.
fn decode_damaged(path: &Path, bytes: &[u8]) {
    LARGEST.with(|m| m.set(0));
    let result = ImageReader::new(bytes, bytes.len() as u64, path, Limits::default())
        .and_then(|rd| AnyImage::decode(rd, Payloads::Load));
    let largest = LARGEST.with(Cell::get);
    // Decoded messages may take a few hundred bytes of memory per byte of input at worst;
    // what must never happen is an allocation sized by a length field the file cannot back.
    let bound = (1 << 20) + 512 * bytes.len();
    assert!(
        largest <= bound,
        "{}: allocated {largest} bytes for a {}-byte input",
        path.display(),
        bytes.len()
    );
    if let Err(e) = result {
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "error does not name the file: {msg}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn truncated_images_fail_cleanly(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let all = samples();
        let (path, bytes) = &all[pick.index(all.len())];
        let cut = cut.index(bytes.len());
        decode_damaged(path, &bytes[..cut]);
    }

    #[test]
    fn flipped_bytes_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let all = samples();
        let (path, bytes) = &all[pick.index(all.len())];
        let mut bytes = bytes.clone();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        decode_damaged(path, &bytes);
    }

    #[test]
    fn huge_words_fail_cleanly(pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), word in any::<u32>()) {
        let all = samples();
        let (path, bytes) = &all[pick.index(all.len())];
        let mut bytes = bytes.clone();
        if bytes.len() >= 4 {
            let i = at.index(bytes.len() - 3);
            bytes[i..i + 4].copy_from_slice(&(word | 0x8000_0000).to_le_bytes());
        }
        decode_damaged(path, &bytes);
    }
}

#[test]
fn a_length_prefix_larger_than_the_file_is_refused_by_name() {
    let (path, bytes) = samples().into_iter().find(|(p, _)| p.ends_with("pstree.img")).unwrap();
    let mut bytes = bytes;
    bytes[8..12].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let err = ImageReader::new(&bytes[..], bytes.len() as u64, &path, Limits::default())
        .and_then(|rd| AnyImage::decode(rd, Payloads::Load))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pstree.img") && err.contains("entry 0"), "{err}");
    assert!(err.contains("exceeds the limit") || err.contains("truncated"), "{err}");
}

/// A whole checkpoint with one damaged file: `stasis show` reports, never panics.
#[test]
fn show_survives_one_damaged_file_in_a_checkpoint() {
    let src = fixture_dirs().into_iter().find(|d| d.ends_with("w_tree")).unwrap();
    let files: Vec<PathBuf> = files_of(&src)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with("pages-"))
        .collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    let work = std::env::temp_dir().join(format!("stasis-damaged-{}", std::process::id()));
    runner
        .run(
            &(
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                any::<u8>(),
                any::<bool>(),
            ),
            |(f, at, x, cut)| {
                let _ = std::fs::remove_dir_all(&work);
                std::fs::create_dir(&work).unwrap();
                for p in &files {
                    std::fs::copy(p, work.join(p.file_name().unwrap())).unwrap();
                }
                let victim = work.join(files[f.index(files.len())].file_name().unwrap());
                let mut bytes = std::fs::read(&victim).unwrap();
                let i = at.index(bytes.len());
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] ^= x | 1;
                }
                std::fs::write(&victim, &bytes).unwrap();
                let dir = ImageDir::open(&work).unwrap();
                let _ = show::summarize(&dir);
                let _ = show::decode_all(&dir);
                Ok(())
            },
        )
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
}
