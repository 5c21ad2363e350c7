//! The shadow config a restore writes: from a real `runc spec` config, and from one full of
//! fields oci-spec does not know, which must all reach the shadow as they were.

use std::path::{Path, PathBuf};

use oci_bundles::Bundle;
use serde_json::{json, Value};

/// A scratch directory of this test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("oci-bundles-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// What the shadow of `original` (a bundle in `dir`) must be: the same document with exactly
/// these members replaced.
fn expected_shadow(original: &Value, dir: &Path, exe: &str, caps: &[&str]) -> Value {
    let mut want = original.clone();
    want["root"]["path"] = json!(dir.join("rootfs").to_str().unwrap());
    let process = &mut want["process"];
    process["args"] = json!([exe]);
    process["cwd"] = json!("/");
    process["user"] = json!({"uid": 0, "gid": 0});
    process["noNewPrivileges"] = json!(false);
    process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    want
}

/// A config with a vendor's extension at the top level, fields of no runtime-spec version at
/// the top level and inside `process`, `root`, `linux`, a mount and a namespace, and
/// annotations no one defines; values of every JSON kind.
fn config_with_unknown_fields() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "org.example.vendor": {
            "enabled": true,
            "level": 3,
            "ratio": 0.25,
            "big": 18446744073709551615u64,
            "negative": -9007199254740993i64,
            "nothing": null,
            "list": [1, "two", {"three": [3.5]}, []],
            "text": "ünïcødé \"quoted\" \\ and \u{1}"
        },
        "x-future-field": ["a", "b"],
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
            "args": ["/bin/sh"],
            "env": ["PATH=/bin", "B=2"],
            "cwd": "/work",
            "capabilities": {"bounding": ["CAP_KILL"]},
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "org.example.process": {"keep": "me"}
        },
        "root": {"path": "rootfs", "readonly": true, "org.example.root": 7},
        "hostname": "h",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "org.example.mount": [true]}
        ],
        "annotations": {
            "org.example.annotation": "value",
            "io.unknown/with-slash": "{\"json\": \"in a string\"}",
            "empty": ""
        },
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "network", "path": "/run/netns/x", "org.example.ns": "extra"}
            ],
            "maskedPaths": ["/proc/kcore"],
            "org.example.linux": {"feature": {"nested": {"deep": [1, 2, 3]}}},
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "org.example.seccomp": false}
        }
    })
}

#[test]
fn every_field_oci_spec_does_not_know_survives_in_the_shadow() {
    let scratch = Scratch::new("unknown");
    let original = config_with_unknown_fields();
    std::fs::write(
        scratch.0.join("config.json"),
        serde_json::to_vec_pretty(&original).unwrap(),
    )
    .unwrap();
    let bundle = Bundle::load(&scratch.0).unwrap();

    // Why the shadow is not written from the typed Spec: it drops what it does not know.
    let typed = serde_json::to_value(&bundle.spec).unwrap();
    assert!(typed.get("org.example.vendor").is_none());
    assert!(typed.get("x-future-field").is_none());
    assert!(typed["linux"].get("org.example.linux").is_none());
    assert!(typed["process"].get("org.example.process").is_none());

    // Yet the typed reading sees what it knows.
    assert_eq!(bundle.joined_namespaces(), ["net"]);
    assert_eq!(bundle.rootfs(), scratch.0.join("rootfs"));
    assert!(!bundle.terminal());

    let shadow_dir = scratch.0.join("shadow");
    bundle
        .write_shadow(&shadow_dir, "/bin/busybox", (1 << 5) | (1 << 21))
        .unwrap();
    let shadow = read(&shadow_dir.join("config.json"));
    let want = expected_shadow(&original, &scratch.0, "/bin/busybox", &["CAP_KILL", "CAP_SYS_ADMIN"]);
    assert_eq!(shadow, want, "only process and root.path change");
    // The same members, in the same order, at every level.
    assert_eq!(
        serde_json::to_string(&shadow).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    // Spelled out: each unknown part, value for value.
    for key in [
        "org.example.vendor",
        "x-future-field",
        "annotations",
        "mounts",
        "linux",
        "hostname",
    ] {
        assert_eq!(shadow[key], original[key], "{key}");
    }
    assert_eq!(shadow["process"]["org.example.process"], json!({"keep": "me"}));
    assert_eq!(shadow["process"]["env"], original["process"]["env"]);
    assert_eq!(shadow["process"]["rlimits"], original["process"]["rlimits"]);
    assert_eq!(shadow["root"]["org.example.root"], 7);
    assert_eq!(shadow["root"]["readonly"], true);
    assert_eq!(shadow["org.example.vendor"]["big"].as_u64(), Some(u64::MAX));

    // The shadow is a config the runtime (and a later checkpoint) reads again.
    let again = Bundle::load(&shadow_dir).unwrap();
    assert_eq!(again.rootfs(), scratch.0.join("rootfs"));
    assert_eq!(again.joined_namespaces(), ["net"]);
}

#[test]
fn the_config_runc_writes_is_read_typed_and_its_shadow_changes_only_the_process() {
    let scratch = Scratch::new("runc-spec");
    let out = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&scratch.0)
        .output()
        .expect("runc");
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let original = read(&scratch.0.join("config.json"));
    let bundle = Bundle::load(&scratch.0).unwrap();
    assert!(bundle.terminal(), "runc spec gives its process a terminal");
    assert!(bundle.joined_namespaces().is_empty());
    assert!(bundle.joins_or_makes(oci_bundles::LinuxNamespaceType::Mount));
    assert!(!bundle.joins_or_makes(oci_bundles::LinuxNamespaceType::User));
    let declared = bundle.declared_mounts();
    for path in [
        "/proc",
        "/dev/pts",
        "/proc/kcore",
        "/proc/sys",
        "/dev/null",
        "/dev/console",
    ] {
        assert!(declared.iter().any(|d| d == path), "{path} in {declared:?}");
    }

    let shadow = bundle.shadow_config("/bin/sh", 1 << 7);
    assert_eq!(
        shadow,
        expected_shadow(&original, &scratch.0, "/bin/sh", &["CAP_SETUID"])
    );
}
