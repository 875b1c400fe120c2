//! Rescaling: the restored state of `p` workers, re-split for `p'` workers by key group.
//!
//! Each worker's snapshot says which key groups it owned (module `keygroup`), and each key's
//! group follows from its hash, so restoring at another parallelism needs no other record:
//!
//! ```text
//!   checkpoint at p = 2 (G = 8)          restored at p' = 3
//!   worker 0: groups 0..4  ─┬──────────▶ worker 0: groups 0..3   (keys of groups 0, 1, 2)
//!                           └─┐
//!   worker 1: groups 4..8  ─┐ └────────▶ worker 1: groups 3..6   (groups 3 | 4, 5)
//!                           └──────────▶ worker 2: groups 6..8
//! ```
//!
//! For every window of every old worker, each key goes, with its aggregates' state
//! ([`GroupsAccumulator::append_groups`](crate::GroupsAccumulator::append_groups)), to the new
//! worker that owns its group. A key lives in one group and so in one old worker: the new
//! windows are unions of disjoint parts, nothing is merged. Restoring at the same parallelism
//! takes the states as they are.
//!
//! Watermarks: at an aligned barrier every worker has seen the same watermark messages, so the
//! old workers' watermarks agree unless idle inputs timed out differently in them. A new worker
//! starts from the largest of them: a window that fired anywhere is never opened again (its
//! late rows are counted late), where the smallest could emit a window twice.

use crate::error::{EngineError, Result};
use crate::keygroup::{key_group_of, worker_of_group, KeyGroupRange};
use crate::plan::Plan;

use super::{RestoredWorker, WindowStore};

/// The state of each of `parallelism` workers of a job with `key_groups` key groups, from the
/// decoded states of the workers of a checkpoint (`old[i]` is worker `i`'s), taken at any
/// parallelism. Refuses states of another number of key groups, or whose ranges do not tile
/// the key groups as the checkpoint's parallelism assigns them.
pub(crate) fn reassign(
    plan: &Plan,
    old: Vec<RestoredWorker>,
    parallelism: usize,
    key_groups: usize,
) -> Result<Vec<RestoredWorker>> {
    let bad = |worker: usize, why: String| EngineError::Checkpoint {
        what: format!("state of worker {worker}"),
        why,
    };
    if old.is_empty() {
        return Err(EngineError::Checkpoint {
            what: "state".into(),
            why: "no worker's state to restore".into(),
        });
    }
    for (i, w) in old.iter().enumerate() {
        if w.key_groups != key_groups {
            return Err(bad(
                i,
                format!(
                    "it was taken with {} key groups and this job has {key_groups}: the key \
                     groups (max parallelism) are fixed at a job's first start; restart with \
                     --key-groups {}",
                    w.key_groups, w.key_groups
                ),
            ));
        }
        let expected = KeyGroupRange::of_worker(i, old.len(), key_groups);
        if w.range != expected {
            return Err(bad(
                i,
                format!(
                    "it holds {} where worker {i} of {} owns {expected}",
                    w.range,
                    old.len()
                ),
            ));
        }
    }
    if old.len() == parallelism {
        return Ok(old);
    }
    let watermark = old.iter().map(|w| w.watermark).max().expect("not empty");
    let mut stores: Vec<WindowStore> = (0..parallelism).map(|_| WindowStore::default()).collect();
    let mut picks: Vec<Vec<u32>> = vec![Vec::new(); parallelism];
    for (i, w) in old.into_iter().enumerate() {
        for (start, window) in w.store.into_windows() {
            picks.iter_mut().for_each(Vec::clear);
            for (g, h) in window.key_hashes().into_iter().enumerate() {
                let group = key_group_of(h, key_groups);
                if !w.range.contains(group) {
                    return Err(bad(
                        i,
                        format!(
                            "corrupt state payload: a key of window {start} is in key group \
                             {group}, outside the worker's {}",
                            w.range
                        ),
                    ));
                }
                picks[worker_of_group(group, parallelism, key_groups)].push(g as u32);
            }
            for (store, groups) in stores.iter_mut().zip(&picks) {
                if !groups.is_empty() {
                    store
                        .window_mut(plan, start)
                        .append_groups(&window, groups)
                        .map_err(|e| bad(i, e.to_string()))?;
                }
            }
        }
    }
    Ok(stores
        .into_iter()
        .enumerate()
        .map(|(j, store)| RestoredWorker {
            key_groups,
            range: KeyGroupRange::of_worker(j, parallelism, key_groups),
            watermark,
            store,
        })
        .collect())
}
