//! State files and manifests: round trips, and every single-byte corruption and every truncation
//! detected with an error naming the file.

use std::path::Path;

use serde_json::json;
use weir_engine::checkpoint::file::{verify, HEADER_LEN, TRAILER_LEN};
use weir_engine::checkpoint::manifest::{FileEntry, MANIFEST_VERSION};
use weir_engine::checkpoint::{
    open_state_file, write_state_file, CheckpointError, FaultyStorage, FsStorage, JobIdentity,
    Manifest, StateMeta, Storage,
};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn round_trip<S: Storage>(storage: &S, folder: &Path) {
    for len in [0usize, 1, 4096, 1 << 20] {
        let path = folder.join(format!("worker-{len}.state"));
        let want = pattern(len, 7);
        let meta = StateMeta::worker(3, 42);
        let digest = write_state_file(storage, &path, meta, len as u64, |out| {
            assert_eq!(out.len(), len, "fill gets exactly the payload");
            out.copy_from_slice(&want);
        })
        .unwrap();
        assert_eq!(digest.len, (len + HEADER_LEN + TRAILER_LEN) as u64);
        let file = open_state_file(storage, &path).unwrap();
        assert_eq!(&file[..], &want[..], "payload of {len} bytes");
        assert_eq!(file.meta(), meta);
        assert_eq!(file.digest(), digest);
    }
}

#[test]
fn state_file_round_trip_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    round_trip(&FsStorage, tmp.path());
}

#[test]
fn state_file_round_trip_in_model() {
    let storage = FaultyStorage::new("/root");
    round_trip(&storage, Path::new("/root"));
}

fn small_file() -> (FaultyStorage, std::path::PathBuf) {
    let storage = FaultyStorage::new("/root");
    let path = Path::new("/root/worker-1.state").to_path_buf();
    write_state_file(&storage, &path, StateMeta::worker(1, 9), 37, |out| {
        out.copy_from_slice(&pattern(37, 1))
    })
    .unwrap();
    (storage, path)
}

#[test]
fn every_single_byte_corruption_is_detected() {
    let (storage, path) = small_file();
    let good = storage.read(&path).unwrap().to_vec();
    verify(&good, &path).unwrap();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let err = verify(&bad, &path).expect_err(&format!("flip {flip:#x} at byte {i}"));
            assert!(
                err.to_string().contains("worker-1.state"),
                "names the file: {err}"
            );
        }
    }
    // Through the storage too, so `open_state_file` is what reports it.
    storage.corrupt(&path, |b| b[HEADER_LEN + 3] ^= 0x10);
    let err = open_state_file(&storage, &path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn every_truncation_and_extension_is_detected() {
    let (storage, path) = small_file();
    let good = storage.read(&path).unwrap().to_vec();
    for len in 0..good.len() {
        let err = verify(&good[..len], &path).expect_err(&format!("truncated to {len}"));
        assert!(
            matches!(
                err,
                CheckpointError::Truncated { .. }
                    | CheckpointError::BadMagic { .. }
                    | CheckpointError::UnsupportedVersion { .. }
            ),
            "truncated to {len}: {err}"
        );
        assert!(err.to_string().contains("worker-1.state"), "{err}");
    }
    let err = verify(&good[..20], &path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        verify(&longer, &path),
        Err(CheckpointError::TooLong { .. })
    ));
}

#[test]
fn error_kinds_say_what_is_wrong() {
    let (storage, path) = small_file();
    let good = storage.read(&path).unwrap().to_vec();
    let mut bad = good.clone();
    bad[0] = b'X';
    let err = verify(&bad, &path).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    let mut bad = good.clone();
    // Version 1, before state was split by key group: refused, not misread.
    bad[8] = 1;
    let err = verify(&bad, &path).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported format version 1 (this build reads 2)"),
        "{err}"
    );
}

fn manifest() -> Manifest {
    Manifest {
        format_version: MANIFEST_VERSION,
        job: JobIdentity {
            input: "access.log".into(),
            window_ms: 5000,
            keys: vec!["status".into()],
            aggregates: vec!["count(*)".into()],
            parallelism: 1,
            key_groups: 128,
            input_file: None,
        },
        epoch: 7,
        created_unix_ms: 1_700_000_000_000,
        files: vec![FileEntry {
            name: "worker-0.state".into(),
            len: 1234,
            xxh3: u64::MAX - 5,
        }],
        external: vec![],
        sources: json!({"chunk": 12}),
        sink: json!({"part": "part-7"}),
    }
}

#[test]
fn manifest_round_trip_and_every_corruption_detected() {
    let path = Path::new("/root/chk-000000007/MANIFEST");
    let m = manifest();
    let bytes = m.to_bytes();
    assert_eq!(Manifest::from_bytes(&bytes, path).unwrap(), m);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\"checksum\""), "{text}");
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            let err = Manifest::from_bytes(&bad, path).expect_err(&format!(
                "flip {flip:#x} at byte {i} ({:?})",
                bytes[i] as char
            ));
            assert!(err.to_string().contains("MANIFEST"), "{err}");
        }
    }
    for len in 0..bytes.len() - 1 {
        // The final newline is not part of the JSON value; anything shorter is.
        Manifest::from_bytes(&bytes[..len], path).expect_err(&format!("truncated to {len}"));
    }
}
