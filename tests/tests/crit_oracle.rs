//! Images we write from Rust values must decode with Debian's `crit` to the same values.
//!
//! Two sources of values: every message decoded from the CRIU fixtures (rewritten here through
//! our writer into a fresh directory), and hand-made values for every message kind the fixtures
//! lack (sockets of other families, namespaces, SysV IPC, BPF maps, ...).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use checkpoint_core::image::pb::*;
use checkpoint_core::image::{AnyImage, AnyMessage, ImageDir, ImageKind, Limits, Payloads};
use ctests::{assert_no_differences, base64_decode, crit_decode, files_of, fixture_dirs, json_diff};
use prost::Message;
use serde_json::Value;

#[path = "crit_oracle/handmade.rs"]
mod handmade_values;

use handmade_values::*;

/// crit renders some payloads as structures; turn them into the raw bytes (as our hex).
fn normalize_crit_extra(kind: ImageKind, crit: &mut Value) {
    let Some(entries) = crit.get_mut("entries").and_then(Value::as_array_mut) else {
        return;
    };
    for e in entries {
        let Some(extra) = e.get("extra").cloned() else {
            continue;
        };
        let bytes: Vec<u8> = match (kind, &extra) {
            (ImageKind::TcpStream, Value::Object(q)) => {
                let part = |k: &str| base64_decode(q[k].as_str().unwrap()).unwrap();
                [part("inq"), part("outq")].concat()
            }
            (ImageKind::IpcnsShm, Value::String(s)) => {
                let mut b = base64_decode(s).unwrap();
                b.resize(b.len().div_ceil(4) * 4, 0);
                b
            }
            (ImageKind::IpcnsSem, Value::Array(vals)) => {
                let mut b: Vec<u8> = vals
                    .iter()
                    .flat_map(|v| u16::try_from(v.as_u64().unwrap()).unwrap().to_le_bytes())
                    .collect();
                b.resize(b.len().div_ceil(8) * 8, 0);
                b
            }
            (ImageKind::IpcnsMsg, Value::Array(items)) => {
                let mut b = Vec::new();
                for pair in items.chunks(2) {
                    let m = IpcMsg {
                        mtype: pair[0]["mtype"].as_u64().unwrap(),
                        msize: pair[0]["msize"].as_u64().unwrap() as u32,
                    };
                    let body = m.encode_to_vec();
                    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
                    b.extend_from_slice(&body);
                    let mut text = base64_decode(pair[1].as_str().unwrap()).unwrap();
                    text.resize(text.len().div_ceil(8) * 8, 0);
                    b.extend_from_slice(&text);
                }
                b
            }
            _ => continue,
        };
        e["extra"] = Value::String(checkpoint_core::image::pb::to_hex(&bytes));
    }
}

fn check_with_crit(path: &Path, ours: &AnyImage, problems: &mut Vec<String>) {
    let mut theirs = crit_decode(path);
    normalize_crit_extra(ours.magic, &mut theirs);
    let ours = serde_json::to_value(ours).unwrap();
    json_diff(&ours, &theirs, &path.display().to_string(), problems);
}

fn scratch_dir(name: &str) -> ImageDir {
    let path = std::env::temp_dir().join(format!("stasis-oracle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    ImageDir::create(&path).unwrap()
}

#[test]
fn fixture_values_written_by_us_decode_with_crit() {
    let mut problems = Vec::new();
    let mut written = 0;
    for dir in fixture_dirs() {
        let out = scratch_dir(dir.file_name().unwrap().to_str().unwrap());
        assert_eq!(
            std::fs::metadata(out.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for path in files_of(&dir) {
            let name = path.file_name().unwrap().to_str().unwrap();
            let Some((kind, id)) = ImageKind::from_file_name(name) else {
                continue;
            };
            if kind.is_raw() {
                continue;
            }
            let values = AnyImage::open(&path, Payloads::Load, Limits::default()).unwrap();
            let ours = values.write(&out, id).unwrap();
            assert_eq!(
                std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                ours.display()
            );
            check_with_crit(&ours, &values, &mut problems);
            written += 1;
        }
        std::fs::remove_dir_all(out.path()).unwrap();
    }
    assert!(written >= 60, "only {written} images written");
    assert_no_differences(&problems);
}

#[test]
fn handmade_values_of_every_other_kind_decode_with_crit() {
    let out = scratch_dir("handmade");
    let mut problems = Vec::new();
    for (values, id) in handmade() {
        let path = values.write(&out, id).unwrap();
        check_with_crit(&path, &values, &mut problems);
        // And our own reader gives back exactly what was written.
        let back = AnyImage::open(&path, Payloads::Load, Limits::default()).unwrap();
        assert_eq!(back, values, "{}", path.display());
    }
    std::fs::remove_dir_all(out.path()).unwrap();
    assert_no_differences(&problems);
}

/// Kinds Debian's crit (3.17) cannot decode: we check them by our own round trip, and this
/// test notices the day crit learns them (then move them to the crit test above).
#[test]
fn kinds_crit_does_not_know_round_trip_through_our_codec() {
    let out = scratch_dir("newer");
    let pidfd = image(
        ImageKind::Files,
        vec![entry(AnyMessage::File(FileEntry {
            r#type: FdTypes::Pidfd as i32,
            id: 11,
            pidfd: Some(PidfdEntry {
                id: 11,
                ino: 99,
                flags: 0x80000,
                nspid: 42,
                fown: fown(),
            }),
            ..Default::default()
        }))],
    );
    let binfmt = image(
        ImageKind::BinfmtMisc,
        vec![entry(AnyMessage::BinfmtMisc(BinfmtMiscEntry {
            name: "qemu-arm".into(),
            enabled: true,
            interpreter: "/usr/bin/qemu-arm".into(),
            flags: Some("F".into()),
            extension: None,
            magic: Some("7f454c46".into()),
            mask: Some("ffffffff".into()),
            offset: Some(0),
        }))],
    );
    for values in [&pidfd, &binfmt] {
        let path = values.write(&out, 0).unwrap();
        let back = AnyImage::open(&path, Payloads::Load, Limits::default()).unwrap();
        assert_eq!(&back, values);
    }
    // crit 3.17 knows neither fd type PIDFD (20) nor file_entry.pidfd: it keeps only the id.
    let seen = crit_decode(&out.image_path(ImageKind::Files, 0));
    assert_eq!(
        seen["entries"],
        serde_json::json!([{"id": 11}]),
        "crit learnt pidfd: move it to the crit test"
    );
    // crit 3.17 has no handler for binfmt_misc images at all.
    let path = out.image_path(ImageKind::BinfmtMisc, 0);
    let crit = std::process::Command::new("crit")
        .args(["decode", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !crit.status.success(),
        "crit now decodes {}: move it to the crit test",
        path.display()
    );
    std::fs::remove_dir_all(out.path()).unwrap();
}

/// proto2 `required` fields must be on the wire even when zero: crit (Python protobuf) refuses
/// a message that lacks one. Every kind's message with all-default values must decode.
#[test]
fn required_fields_are_written_even_when_zero() {
    let out = scratch_dir("defaults");
    let mut checked = 0;
    for &kind in ImageKind::ALL {
        if kind.is_raw() || kind == ImageKind::BinfmtMisc {
            continue; // raw images have no entries; crit 3.17 has no binfmt_misc handler
        }
        // One zero-length entry decodes to the message's defaults.
        let mut bytes = Vec::new();
        let mut w = checkpoint_core::image::ImageWriter::new(&mut bytes, kind, Path::new("mem")).unwrap();
        w.write_raw(&[]).unwrap();
        w.finish().unwrap();
        let rd = checkpoint_core::image::ImageReader::new(
            &bytes[..],
            bytes.len() as u64,
            Path::new("mem"),
            Limits::default(),
        )
        .unwrap();
        let mut values = AnyImage::decode(rd, Payloads::Load).unwrap();
        values.magic = kind;
        let path = values.write(&out, 1).unwrap();
        let mut problems = Vec::new();
        check_with_crit(&path, &values, &mut problems);
        assert!(problems.is_empty(), "{}:\n{}", path.display(), problems.join("\n"));
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} kinds checked");
    std::fs::remove_dir_all(out.path()).unwrap();
}
