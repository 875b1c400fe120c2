//! Key groups: the fixed hash space that state is split by, and which worker owns which part.
//!
//! A job has a fixed number of key groups `G` (its *max parallelism*, default
//! [`DEFAULT_KEY_GROUPS`]), set when it first starts and recorded in its checkpoints. A key's
//! group depends only on its stable hash and `G`; worker `i` of `p` owns one contiguous range
//! of groups, as in Flink's `KeyGroupRangeAssignment`:
//!
//! ```text
//!   key ──hash──▶ h ──key_group_of(h, G)──▶ group g ∈ 0..G ──g·p/G──▶ worker
//!
//!   G = 8, p = 3:   groups  0 1 2 | 3 4 5 | 6 7
//!                   worker    0   |   1   |  2
//! ```
//!
//! Because `G` never changes, a checkpoint taken at parallelism `p` can be restored at any other
//! `p' ≤ G`: each new worker takes the keys of its groups out of whichever old workers held them
//! (`state::regroup`). The same ranges are what a process would own in a job spread over
//! several processes.
//!
//! The group is read from bits 24..56 of the hash ([`partition_of`]), which is also the most
//! significant part of the order results are sorted in within a window ([`order_key`]): so
//! concatenating the workers' sorted parts in worker order gives the same rows in the same
//! order whatever `p` is, and a rescaled run writes the bytes of an uninterrupted one.

use crate::hash::partition_of;

/// Key groups of a job that does not say: Flink's default max parallelism.
pub const DEFAULT_KEY_GROUPS: usize = 128;
/// The most key groups a job may have (Flink's upper bound). Each group costs nothing at run
/// time but an entry in the partitioner's table.
pub const MAX_KEY_GROUPS: usize = 32_768;

/// The key group (`0..key_groups`) of a key of hash `h`.
#[inline(always)]
pub fn key_group_of(h: u64, key_groups: usize) -> usize {
    partition_of(h, key_groups)
}

/// The position of a key of hash `h` in the order results are emitted in within a window (ties
/// by key): bits 24..56 of the hash first, so that the order agrees with the key groups.
#[inline(always)]
pub(crate) fn order_key(h: u64) -> u64 {
    h.rotate_left(8)
}

/// The worker (`0..parallelism`) that owns key group `group` of `key_groups`.
#[inline(always)]
pub fn worker_of_group(group: usize, parallelism: usize, key_groups: usize) -> usize {
    group * parallelism / key_groups
}

/// A contiguous range of key groups, `first..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    /// The first group of the range.
    pub first: usize,
    /// One past the last group.
    pub end: usize,
}

impl KeyGroupRange {
    /// The groups worker `worker` of `parallelism` owns: every `g` with
    /// [`worker_of_group`]`(g) == worker`. Empty only when `parallelism > key_groups`, which
    /// a built job never has.
    pub fn of_worker(worker: usize, parallelism: usize, key_groups: usize) -> Self {
        let first = (worker * key_groups).div_ceil(parallelism);
        let end = ((worker + 1) * key_groups).div_ceil(parallelism);
        Self { first, end }
    }

    /// Whether group `g` is in the range.
    pub fn contains(&self, g: usize) -> bool {
        self.first <= g && g < self.end
    }

    /// Whether the two ranges share a group.
    pub fn overlaps(&self, other: &KeyGroupRange) -> bool {
        self.first < other.end && other.first < self.end
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key groups {}..{}", self.first, self.end)
    }
}

/// Which worker owns each key group, as a table: one lookup per row on the partitioning path
/// instead of a division.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    key_groups: usize,
    worker: Vec<u32>,
}

impl Assignment {
    pub(crate) fn new(parallelism: usize, key_groups: usize) -> Self {
        let worker = (0..key_groups)
            .map(|g| worker_of_group(g, parallelism, key_groups) as u32)
            .collect();
        Self { key_groups, worker }
    }

    /// The worker that owns a key of hash `h`.
    #[inline(always)]
    pub(crate) fn worker_of(&self, h: u64) -> usize {
        self.worker[key_group_of(h, self.key_groups)] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_groups_and_agree_with_worker_of_group() {
        for g in [1usize, 2, 7, 128, 1000] {
            for p in 1..=g.min(40) {
                let mut next = 0;
                for w in 0..p {
                    let r = KeyGroupRange::of_worker(w, p, g);
                    assert_eq!(r.first, next, "G {g} p {p} w {w}");
                    assert!(r.end > r.first, "G {g} p {p} w {w}: empty");
                    for k in r.first..r.end {
                        assert_eq!(worker_of_group(k, p, g), w, "G {g} p {p} group {k}");
                    }
                    next = r.end;
                }
                assert_eq!(next, g);
            }
        }
    }

    #[test]
    fn the_order_key_sorts_by_group() {
        let mut hashes: Vec<u64> = (0..10_000u64).map(crate::hash::hash_u64).collect();
        hashes.sort_by_key(|&h| order_key(h));
        for g in [2usize, 128, 4096] {
            let groups: Vec<usize> = hashes.iter().map(|&h| key_group_of(h, g)).collect();
            assert!(groups.windows(2).all(|w| w[0] <= w[1]), "G {g}");
        }
    }

    #[test]
    fn groups_spread_evenly_over_workers() {
        let a = Assignment::new(3, 128);
        let mut counts = [0u32; 3];
        for k in 0..90_000u64 {
            counts[a.worker_of(crate::hash::hash_u64(k))] += 1;
        }
        // 43, 43 and 42 groups of 128.
        for (w, c) in counts.into_iter().enumerate() {
            let expect = 90_000.0
                * KeyGroupRange::of_worker(w, 3, 128)
                    .end
                    .abs_diff(KeyGroupRange::of_worker(w, 3, 128).first) as f64
                / 128.0;
            assert!(
                (c as f64 - expect).abs() < expect * 0.05,
                "{w}: {c} vs {expect}"
            );
        }
    }
}
