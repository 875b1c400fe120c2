//! What a checkpoint relies on outside its folder, on a real file system: external files (the
//! output parts a file sink shares between checkpoints) verified on recovery, and the job's
//! input file, whose change since the checkpoint is refused naming what changed.

use std::path::Path;

use serde_json::json;
use weir_engine::checkpoint::{
    CheckpointDir, CheckpointError, FileDigest, InputFile, JobIdentity, SkipReason,
};
use xxhash_rust::xxh3::xxh3_64;

fn job(input_file: Option<InputFile>) -> JobIdentity {
    JobIdentity {
        input: "access.log".into(),
        window_ms: 5000,
        keys: vec!["client".into()],
        aggregates: vec!["count(*)".into()],
        parallelism: 1,
        key_groups: 128,
        input_file,
    }
}

/// Writes `out/part-epoch` holding `text` and checkpoint `epoch` relying on parts 1..=epoch.
fn write(dir: &CheckpointDir, root: &Path, epoch: u64, job: &JobIdentity) {
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(
        root.join(format!("out/part-{epoch}")),
        format!("rows of {epoch}\n"),
    )
    .unwrap();
    let mut pending = dir.begin(epoch).unwrap();
    pending.write_state(0, 1, |b| b[0] = epoch as u8).unwrap();
    for e in 1..=epoch {
        let bytes = std::fs::read(root.join(format!("out/part-{e}"))).unwrap();
        let digest = FileDigest {
            len: bytes.len() as u64,
            xxh3: xxh3_64(&bytes),
        };
        pending.rely_on(&format!("out/part-{e}"), digest).unwrap();
    }
    pending.commit(job, json!(null), json!(null)).unwrap();
}

#[test]
fn a_damaged_external_file_fails_every_checkpoint_that_relies_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = CheckpointDir::open(root).unwrap();
    for e in 1..=3 {
        write(&dir, root, e, &job(None));
    }
    let m = &dir
        .latest_valid(&job(None))
        .unwrap()
        .restored
        .unwrap()
        .manifest;
    let names: Vec<&str> = m.external.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["out/part-1", "out/part-2", "out/part-3"]);

    // Part 3 cut short: only checkpoint 3 relies on it, 2 is restored.
    std::fs::write(root.join("out/part-3"), "rows of").unwrap();
    let recovery = dir.latest_valid(&job(None)).unwrap();
    assert_eq!(recovery.restored.unwrap().epoch, 2);
    let report = recovery.skipped[0].to_string();
    assert!(
        report.contains("out/part-3: damaged: 7 bytes, the manifest recorded 10 (cut short)"),
        "{report}"
    );

    // Part 1 changed in place: every checkpoint relies on it, none is restored.
    std::fs::write(root.join("out/part-1"), "rows of 9\n").unwrap();
    let recovery = dir.latest_valid(&job(None)).unwrap();
    assert!(recovery.restored.is_none());
    assert_eq!(recovery.skipped.len(), 3);
    for s in &recovery.skipped {
        assert!(matches!(s.reason, SkipReason::Damaged(_)));
        let report = s.to_string();
        assert!(
            report.contains("out/part-1: damaged: checksum XXH3-64")
                || report.contains("out/part-3: damaged"),
            "{report}"
        );
    }

    // A missing one is named too.
    std::fs::remove_file(root.join("out/part-1")).unwrap();
    let report = dir.latest_valid(&job(None)).unwrap().skipped[2].to_string();
    assert!(report.contains("out/part-1: missing"), "{report}");
}

#[test]
fn external_names_must_stay_under_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::open(tmp.path()).unwrap();
    let mut pending = dir.begin(1).unwrap();
    let d = FileDigest { len: 0, xxh3: 0 };
    for bad in ["/etc/passwd", "../x", "out/../../x", "out//x", "./x", ""] {
        let err = pending.rely_on(bad, d).unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
    pending.rely_on("out/part-1", d).unwrap();
    assert!(pending.rely_on("out/part-1", d).is_err(), "twice");
}

#[test]
fn a_changed_input_file_is_refused_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ck");
    let log = tmp.path().join("access.log");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&log, &bytes).unwrap();
    let then = InputFile::of(&std::fs::File::open(&log).unwrap()).unwrap();
    let dir = CheckpointDir::open(&root).unwrap();
    write(&dir, &root, 1, &job(Some(then.clone())));
    assert_eq!(
        dir.latest_valid(&job(Some(then.clone())))
            .unwrap()
            .restored
            .unwrap()
            .epoch,
        1
    );

    let mut changed = bytes.clone();
    changed[50_000] = b'!';
    let other = tmp.path().join("changed.log");
    std::fs::write(&other, &changed).unwrap();
    let now = InputFile {
        blocks: InputFile::of(&std::fs::File::open(&other).unwrap())
            .unwrap()
            .blocks,
        ..then.clone()
    };
    let err = dir.latest_valid(&job(Some(now))).unwrap_err();
    assert!(matches!(err, CheckpointError::InputChanged { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("the input changed since the checkpoint was taken: its bytes at offset 49152..53248 differ"),
        "{err}"
    );

    // A checkpoint of a file input is another job for a run without one, and the reverse.
    let err = dir.latest_valid(&job(None)).unwrap_err();
    assert!(
        err.to_string()
            .contains("input kind a file (checkpoint) vs not a file (this job)"),
        "{err}"
    );
}
