//! One job over several `weir run --scale-out` processes on the real broker (issue 12): the
//! group shares the input's partitions out, rows reach the member that owns their key group
//! through the job's shuffle topic, and the job's state lives in Kafka. Members are killed
//! with SIGKILL, their folders deleted, new ones join; a plain `read_committed` consumer then
//! reads exactly the reference counts of the log (an independent count of its lines), nothing
//! doubled.

mod common;

use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use rdkafka::consumer::Consumer;

/// A member's arguments: one of the job `p.group`, with its own folder `dir`, slowed so that
/// it lives through several commits, which it announces.
fn member_args<'a>(p: &'a Pipeline, dir: &'a str, keyed: bool) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--scale-out",
        "--from",
        &p.ua,
        "--to",
        &p.ub,
        "--group",
        &p.group,
        "--checkpoint-dir",
        dir,
        "--checkpoint-interval",
        "200ms",
        "--stop-at-end",
        "-p",
        "2",
        "--test-read-delay",
        "40ms",
        "--test-commit-delay",
        "5ms",
    ];
    if keyed {
        args.push("--keyed-input");
    }
    args
}

/// Whether a member's stderr line announces a commit whose transaction holds records.
fn commit_with_records(line: &str) -> bool {
    line.contains("commit window") && !line.contains("(0 records")
}

/// What a member said, its commits left out.
fn said(err: &str) -> String {
    err.lines()
        .filter(|l| !l.contains("commit window") && !l.contains("committed epoch"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The committed output against the reference count of the log.
fn check(p: &Pipeline, ctx: &str) {
    let (got, doubled) = read_output(&p.b);
    if let Some((w, client)) = doubled.first() {
        // Every copy of the first doubled row, where it is: which transactions wrote it.
        for q in 0..partitions(&p.b) {
            read_partition(&p.b, q, true, &mut |m| {
                use rdkafka::message::Message;
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                if v["window_start"].as_i64() == Some(*w) && v["client"].as_str() == Some(client) {
                    eprintln!("partition {q} offset {}: {v}", m.offset());
                }
            });
        }
    }
    assert!(doubled.is_empty(), "{ctx}: doubled rows: {doubled:?}");
    let (expected, _) = reference(&std::fs::read(&p.log).unwrap(), 5_000, 0);
    assert_counts_eq(&got, &expected, ctx);
}

/// Waits for every member to exit 0; returns their stderr.
fn all_finish(members: Vec<Watched>) -> Vec<String> {
    members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let (status, err, _) = m.finish(COMMAND_LIMIT);
            assert!(status.success(), "member {i} failed: {err}");
            assert!(
                err.contains("the whole job has committed its end"),
                "member {i}: {err}"
            );
            err
        })
        .collect()
}

#[test]
fn three_members_one_killed_with_its_folder_a_fourth_joining_commit_exactly_the_reference() {
    // Unkeyed input: lines go to the 6 partitions in runs of 1,000, so every client's lines are
    // spread over all of them and the shuffle is needed.
    let p = Pipeline::new("scaleout", "150000", "31", "6");
    let dirs: Vec<String> = (0..4)
        .map(|i| {
            p.tmp
                .path()
                .join(format!("member{i}"))
                .display()
                .to_string()
        })
        .collect();
    let mut members: Vec<Watched> = (0..3)
        .map(|i| Watched::spawn(&member_args(&p, &dirs[i], false)))
        .collect();
    // Member 1 is killed once it has committed records of its own, with all three in the group.
    let mut assigned = 0;
    members[1].until_err("its assignment", COMMAND_LIMIT, |l| {
        assigned += usize::from(l.contains("assigned input partitions"));
        l.contains("assigned input partitions [") && !l.contains("partitions [],")
    });
    let mut commits = 0;
    members[1].until_err("three commits with records", COMMAND_LIMIT, |l| {
        commits += usize::from(commit_with_records(l));
        commits == 3
    });
    let victim = members.remove(1);
    for m in &mut members {
        m.drain();
    }
    let killed = Instant::now();
    let err = victim.kill();
    std::fs::remove_dir_all(&dirs[1]).unwrap();
    // The survivors are assigned its partitions and commit records again.
    for m in &mut members {
        m.until_err("a new assignment", COMMAND_LIMIT, |l| {
            l.contains("assigned input partitions")
        });
    }
    let reassigned = killed.elapsed();
    members[0].until_err(
        "a commit after the kill",
        COMMAND_LIMIT,
        commit_with_records,
    );
    eprintln!(
        "after the SIGKILL: partitions reassigned in {:.1} s, output moving again in {:.1} s",
        reassigned.as_secs_f64(),
        killed.elapsed().as_secs_f64(),
    );
    assert!(err.contains("commit window"), "{err}");
    // A fourth member joins while the job runs.
    members.push(Watched::spawn(&member_args(&p, &dirs[3], false)));
    let errs = all_finish(members);
    assert!(
        errs[2].lines().any(commit_with_records),
        "the fourth member never committed records of its own: {}",
        errs[2]
    );
    check(
        &p,
        "3 members, one killed with its folder, a fourth joining",
    );
}

#[test]
fn keyed_input_needs_no_shuffle_and_a_member_restores_from_its_folder_unless_it_is_stale() {
    let p = Pipeline::new_keyed("scaleout-keyed", "90000", "32", "4");
    let dirs: Vec<String> = (0..2)
        .map(|i| {
            p.tmp
                .path()
                .join(format!("member{i}"))
                .display()
                .to_string()
        })
        .collect();
    let mut a = Watched::spawn(&member_args(&p, &dirs[0], true));
    let mut b = Watched::spawn(&member_args(&p, &dirs[1], true));
    let three_commits = |m: &mut Watched| {
        let mut commits = 0;
        m.until_err("three commits with records", COMMAND_LIMIT, |l| {
            commits += usize::from(commit_with_records(l));
            commits == 3
        });
    };
    b.until_err("its share", COMMAND_LIMIT, |l| {
        l.contains("keyed partitions [") && !l.contains("keyed partitions []")
    });
    three_commits(&mut a);
    let err = a.kill();
    eprintln!("A:\n{}", said(&err));
    assert!(err.contains("keyed input (no shuffle)"), "{err}");
    // Back at once (within its session: a static member keeps its partitions), it restores
    // them from its folder: the group's last commit of them was its own.
    let mut a = Watched::spawn(&member_args(&p, &dirs[0], true));
    a.until_err("its restore from its folder", COMMAND_LIMIT, |l| {
        l.contains("restoring partitions")
    });
    three_commits(&mut a);
    let second = a.kill();
    eprintln!("A, restarted:\n{}", said(&second));
    // Away for longer: B takes its partitions over and commits them; A's folder is stale.
    b.drain();
    b.until_err("the whole input", COMMAND_LIMIT, |l| {
        l.contains("keyed partitions [0, 1, 2, 3]")
    });
    b.until_err("a commit without A", COMMAND_LIMIT, commit_with_records);
    let a = Watched::spawn(&member_args(&p, &dirs[0], true));
    let errs = all_finish(vec![a, b]);
    eprintln!("A, back:\n{}\nB:\n{}", said(&errs[0]), said(&errs[1]));
    assert!(
        errs[0].contains("discarding the checkpoints in"),
        "the member back with a stale folder: {}",
        errs[0]
    );
    check(
        &p,
        "keyed input, a member killed twice, back with its folder",
    );
    // No shuffle topic was made.
    let c = consumer(&unique("meta"));
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let shuffle = format!("{}-shuffle", p.group);
    assert!(
        md.topics().iter().all(|t| t.name() != shuffle),
        "a keyed job made {shuffle}"
    );
}

#[test]
fn a_member_frozen_past_its_session_is_fenced_by_the_group_and_rejoins_without_doubling() {
    let p = Pipeline::new("scaleout-zombie", "90000", "33", "4");
    let dirs: Vec<String> = (0..2)
        .map(|i| {
            p.tmp
                .path()
                .join(format!("member{i}"))
                .display()
                .to_string()
        })
        .collect();
    let mut a = Watched::spawn(&member_args(&p, &dirs[0], false));
    let mut b = Watched::spawn(&member_args(&p, &dirs[1], false));
    // Both hold a share, and A commits with records under it: A is then frozen (SIGSTOP) in the
    // middle of an epoch, its transaction open.
    b.until_err("its share", COMMAND_LIMIT, |l| {
        l.contains("assigned input partitions [") && !l.contains("partitions [],")
    });
    let mut commits = 0;
    a.until_err("two commits with records", COMMAND_LIMIT, |l| {
        commits += usize::from(commit_with_records(l));
        commits == 2
    });
    a.signal("-STOP");
    b.drain();
    // The group moves on without A: B takes everything and, once the broker has aborted A's
    // open transaction, commits again.
    b.until_err("the whole input", COMMAND_LIMIT, |l| {
        l.contains("assigned input partitions [0, 1, 2, 3]")
    });
    b.until_err("a commit without A", COMMAND_LIMIT, commit_with_records);
    a.drain();
    a.signal("-CONT");
    // A, a zombie of an older generation, cannot commit what it held; it rejoins.
    a.until_err("its fencing", COMMAND_LIMIT, |l| {
        l.contains("partitions revoked") || l.contains("failed")
    });
    let errs = all_finish(vec![a, b]);
    let said: Vec<&str> = errs[0]
        .lines()
        .filter(|l| !l.contains("commit window") && !l.contains("committed epoch"))
        .collect();
    eprintln!("A said:\n{}", said.join("\n"));
    assert!(
        errs[0].contains("assigned input partitions"),
        "A never rejoined: {}",
        errs[0]
    );
    check(&p, "a member frozen past its session");
}
