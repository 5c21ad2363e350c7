//! The codec against real CRIU 4.2 dumps: every file decodes, re-encodes byte for byte, and
//! decodes to the same values as Debian's `crit`.

use checkpoint_core::image::{AnyImage, ImageKind, Limits, Payloads};
use ctests::{assert_no_differences, crit_decode, files_of, fixture_dirs, json_diff};

#[test]
fn every_fixture_image_reencodes_byte_for_byte() {
    let mut checked = 0;
    for dir in fixture_dirs() {
        for path in files_of(&dir) {
            let name = path.file_name().unwrap().to_str().unwrap();
            let Some((kind, _)) = ImageKind::from_file_name(name) else {
                assert_eq!(name, "descriptors.json", "unexpected non-image file {}", path.display());
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            let image = AnyImage::open(&path, Payloads::Load, Limits::default())
                .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
            if kind.is_raw() {
                assert_eq!(image.raw_size, Some(bytes.len() as u64), "{}", path.display());
                continue;
            }
            assert!(!image.entries.is_empty(), "{}: no entries", path.display());
            let again = image.encode(&path).unwrap();
            if again != bytes {
                let at = again
                    .iter()
                    .zip(&bytes)
                    .position(|(a, b)| a != b)
                    .unwrap_or(again.len().min(bytes.len()));
                panic!(
                    "{}: re-encoding differs at byte {at} (ours {} bytes, CRIU's {})",
                    path.display(),
                    again.len(),
                    bytes.len()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} images checked");
}

#[test]
fn every_fixture_image_decodes_like_crit() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for dir in fixture_dirs() {
        for path in files_of(&dir) {
            let name = path.file_name().unwrap().to_str().unwrap();
            match ImageKind::from_file_name(name) {
                Some((kind, _)) if !kind.is_raw() => {}
                _ => continue,
            }
            let ours = AnyImage::open(&path, Payloads::Load, Limits::default()).unwrap();
            let ours = serde_json::to_value(&ours).unwrap();
            let theirs = crit_decode(&path);
            json_diff(&ours, &theirs, &path.display().to_string(), &mut problems);
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} images checked");
    assert_no_differences(&problems);
}
