//! The checkpoint root on a real file system: fallback past a damaged checkpoint, refusing a
//! different job, the lock, retention, and the caller's mistakes.

use std::path::Path;

use serde_json::json;
use weir_engine::checkpoint::{CheckpointDir, CheckpointError, JobIdentity, SkipReason};

fn job() -> JobIdentity {
    JobIdentity {
        input: "logs/access.log".into(),
        window_ms: 5000,
        keys: vec!["status".into(), "path".into()],
        aggregates: vec!["count(*)".into()],
        parallelism: 3,
        key_groups: 128,
        input_file: None,
    }
}

fn state(worker: usize, epoch: u64) -> Vec<u8> {
    format!("state of worker {worker} at epoch {epoch}").into_bytes()
}

fn write(dir: &CheckpointDir, epoch: u64) {
    let mut pending = dir.begin(epoch).unwrap();
    for w in 0..job().parallelism {
        let bytes = state(w, epoch);
        pending
            .write_state(w, bytes.len() as u64, |out| out.copy_from_slice(&bytes))
            .unwrap();
    }
    pending
        .write_json("sink.json", &json!({ "epoch": epoch }))
        .unwrap();
    let committed = pending
        .commit(&job(), json!({ "offset": epoch * 100 }), json!(null))
        .unwrap();
    assert_eq!(committed.epoch, epoch);
    assert_eq!(committed.manifest.files.len(), job().parallelism + 1);
}

fn folders(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    names.sort();
    names
}

#[test]
fn restores_the_newest_and_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    assert!(dir.latest_valid(&job()).unwrap().restored.is_none());
    write(&dir, 41);
    write(&dir, 42);
    assert_eq!(folders(tmp.path()), ["chk-000000041", "chk-000000042"]);
    let recovery = dir.latest_valid(&job()).unwrap();
    assert!(recovery.skipped.is_empty());
    let restored = recovery.restored.unwrap();
    assert_eq!(restored.epoch, 42);
    for w in 0..3 {
        assert_eq!(&restored.state(w).unwrap()[..], &state(w, 42)[..]);
    }
    assert_eq!(restored.states().count(), 3);
    let sink: serde_json::Value = restored.json("sink.json").unwrap();
    assert_eq!(sink, json!({ "epoch": 42 }));
    assert_eq!(restored.manifest.sources, json!({ "offset": 4200 }));
}

#[test]
fn a_damaged_checkpoint_is_skipped_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    write(&dir, 1);
    write(&dir, 2);
    write(&dir, 3);
    // 3: one byte of worker 1's payload flipped. 2: never completed.
    let file = tmp.path().join("chk-000000003/worker-1.state");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[45] ^= 0x04;
    std::fs::write(&file, bytes).unwrap();
    std::fs::remove_file(tmp.path().join("chk-000000002/MANIFEST")).unwrap();

    let recovery = dir.latest_valid(&job()).unwrap();
    assert_eq!(recovery.restored.unwrap().epoch, 1);
    assert_eq!(recovery.skipped.len(), 2);
    let first = recovery.skipped[0].to_string();
    assert_eq!(recovery.skipped[0].epoch, 3);
    assert!(first.contains("chk-000000003/worker-1.state"), "{first}");
    assert!(first.contains("checksum mismatch"), "{first}");
    assert!(matches!(recovery.skipped[1].reason, SkipReason::Incomplete));
    assert!(recovery.skipped[1].to_string().contains("never completed"));

    // A missing file and a damaged manifest are skipped the same way.
    std::fs::remove_file(tmp.path().join("chk-000000001/sink.json")).unwrap();
    let recovery = dir.latest_valid(&job()).unwrap();
    assert!(recovery.restored.is_none());
    let last = recovery.skipped.last().unwrap().to_string();
    assert!(last.contains("chk-000000001/sink.json: missing"), "{last}");
}

#[test]
fn a_damaged_manifest_is_skipped_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    write(&dir, 1);
    write(&dir, 2);
    let path = tmp.path().join("chk-000000002/MANIFEST");
    let text = std::fs::read_to_string(&path).unwrap();
    // Still valid JSON, but a different offset: only the checksum can tell.
    std::fs::write(&path, text.replace("200", "201")).unwrap();
    let recovery = dir.latest_valid(&job()).unwrap();
    assert_eq!(recovery.restored.unwrap().epoch, 1);
    let report = recovery.skipped[0].to_string();
    assert!(report.contains("chk-000000002/MANIFEST"), "{report}");
    assert!(report.contains("checksum mismatch"), "{report}");
}

#[test]
fn a_different_job_is_refused_naming_the_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    write(&dir, 1);
    let other = JobIdentity {
        window_ms: 1000,
        // Another parallelism is the same job (its state is split by key group); other key
        // groups are not.
        parallelism: 4,
        key_groups: 64,
        ..job()
    };
    let err = dir.latest_valid(&other).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, CheckpointError::DifferentJob { .. }),
        "{message}"
    );
    assert!(message.contains("different job"), "{message}");
    assert!(
        message.contains("window 5000 ms (checkpoint) vs 1000 ms (this job)"),
        "{message}"
    );
    assert!(
        message.contains("key groups 128 (checkpoint) vs 64 (this job)"),
        "{message}"
    );
    assert!(!message.contains("parallelism"), "{message}");
    assert!(!message.contains("keys"), "{message}");
    assert!(err.path().ends_with("chk-000000001/MANIFEST"));
    assert!(job().differences(&job()).is_empty());
}

#[test]
fn a_second_open_fails_at_once_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let first = CheckpointDir::open(&root).unwrap();
    let err = CheckpointDir::open(&root).unwrap_err();
    assert!(matches!(err, CheckpointError::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&root.display().to_string()), "{message}");
    assert!(message.contains("in use"), "{message}");
    drop(first);
    CheckpointDir::open(&root).expect("the lock is released on drop");
}

#[test]
fn retain_keeps_the_newest_complete_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    // Nothing complete yet: an abandoned folder stays.
    drop(dir.begin(1).unwrap());
    assert!(dir.retain(2).unwrap().is_empty());
    for epoch in 2..=6 {
        write(&dir, epoch);
    }
    // 7 abandoned, 8 in progress: newer than the newest complete one, both left alone.
    drop(dir.begin(7).unwrap());
    let in_progress = dir.begin(8).unwrap();
    let removed = dir.retain(2).unwrap();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert_eq!(
        folders(tmp.path()),
        [
            "chk-000000005",
            "chk-000000006",
            "chk-000000007",
            "chk-000000008"
        ]
    );
    drop(in_progress);
    // keep 0 means 1: the newest complete checkpoint is never deleted.
    dir.retain(0).unwrap();
    assert_eq!(
        folders(tmp.path()),
        ["chk-000000006", "chk-000000007", "chk-000000008"]
    );
    assert_eq!(dir.latest_valid(&job()).unwrap().restored.unwrap().epoch, 6);
}

#[test]
fn begin_refuses_an_old_epoch_until_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    write(&dir, 1);
    write(&dir, 2);
    drop(dir.begin(3).unwrap());
    let err = dir.begin(3).unwrap_err();
    assert!(
        matches!(err, CheckpointError::EpochNotNewer { existing: 3, .. }),
        "{err}"
    );
    // Recovery restored 1 (say 2 was damaged): 2 and 3 go, and 2 can be written again.
    let removed = dir.discard_newer_than(1).unwrap();
    assert_eq!(removed.len(), 2);
    write(&dir, 2);
    assert_eq!(dir.latest_valid(&job()).unwrap().restored.unwrap().epoch, 2);
}

#[test]
fn bad_file_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    let mut pending = dir.begin(1).unwrap();
    for name in ["", "..", "a/b", "MANIFEST", "MANIFEST.tmp", "x.state"] {
        let err = pending.write_file(name, b"{}").unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidName { .. }),
            "{name}: {err}"
        );
    }
    pending.write_file("ok.json", b"{}").unwrap();
    assert!(pending.write_file("ok.json", b"{}").is_err(), "twice");
    pending.write_state(0, 0, |_| {}).unwrap();
    assert!(pending.write_state(0, 0, |_| {}).is_err(), "twice");
}
