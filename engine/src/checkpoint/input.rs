//! The input file of a job as its checkpoints record it: enough to tell, on resume, that the
//! file is still the one whose bytes the checkpoint's positions and state were computed from.
//!
//! A checkpoint of a file replay holds a byte position in the input and state computed from
//! the bytes before it. Resumed on a file whose bytes changed, a run would join state of the
//! old bytes to the new bytes after the position: an output that matches neither version. So
//! the job's identity ([`JobIdentity::input_file`](super::JobIdentity::input_file)) records,
//! when the file is opened:
//!
//! - its **length**, **modification time** (nanoseconds), **device and inode**, read from the
//!   open file (`fstat`): an ordinary edit, append, copy, rotation or save-by-rename changes at
//!   least one of them;
//! - the **XXH3-64 of sampled 4 KiB blocks**: the first, the last, and 64 spread evenly between
//!   them (page-aligned); the whole file, block by block, when it has at most 66 blocks. They
//!   catch a same-size edit whose modification time was put back (`touch -d`, a tool that keeps
//!   times) when the edit falls into a sampled block, and another file of the same length and
//!   time (headers, first and last lines differ).
//!
//! ```text
//!  0    4K                                                              len-4K  len
//!  [blk]....[blk]........[blk]........[blk]  …  ........[blk]........[blk][blk]
//!   first    64 blocks at (len-4K)·i/65, i = 1..=64, rounded down to 4 KiB   last
//! ```
//!
//! **Samples, not a checksum of every byte:** 66 blocks cost 66 reads of 4 KiB and 264 KiB of
//! hashing whatever the file's size, once per run; measured on a 1.8 GB log: 15–300 µs from the
//! page cache, 5–13 ms with the file evicted; a full checksum is a pass over the file (280 ms
//! for the same log from the page cache, seconds per GB from disk) on every resume, plus one at
//! checkpoint time. The blocks are read with `pread`, not through the replay's map: a page
//! fault in a map advised sequential reads ahead 8 MiB on this machine's disk (66 faults read
//! 520 MB, 0.4 s, cold), a 4 KiB `pread` a few pages.
//! **Samples of the whole file, not only of the checkpointed prefix:** the identity is then one
//! value per run, computed once when the file is opened and the same in every checkpoint, and a
//! change after the position is refused as well: a resumed run's output is always that of an
//! uninterrupted run over one version of the file.
//!
//! What it cannot see: a same-size edit outside the samples with the modification time put
//! back by hand (the samples are 0.03 % of a 1 GiB file). What it refuses although the bytes
//! may be the same: a file only touched (new time) or replaced by an identical copy (new
//! inode); the bytes outside the samples cannot be vouched for without reading them all, so the
//! safe answer is to start over. Comparing is [`InputFile::changes`]; every change is named.

use std::fmt;
use std::fs::File;
use std::io;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Bytes in a sampled block.
pub const BLOCK_BYTES: u64 = 4096;
/// Blocks sampled between the first and the last one.
pub const SPREAD_BLOCKS: u64 = 64;

/// The identity of an input file at the time a run opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time, in nanoseconds since the Unix epoch.
    pub modified_unix_ns: i64,
    /// The device it is on (`st_dev`; 0 where unknown).
    pub device: u64,
    /// Its inode (`st_ino`; 0 where unknown).
    pub inode: u64,
    /// The sampled blocks, in file order ([`sample_offsets`]).
    pub blocks: Vec<SampledBlock>,
}

/// One sampled block of an input file: `[offset, min(offset + 4 KiB, len))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledBlock {
    /// Where it starts.
    pub offset: u64,
    /// The XXH3-64 of its bytes.
    pub xxh3: u64,
}

/// The offsets of the blocks sampled in a file of `len` bytes: every block when there are at
/// most 66, else the first, 64 spread evenly (rounded down to a multiple of 4 KiB) and the last
/// (which ends at `len`). Distinct and ascending.
pub fn sample_offsets(len: u64) -> Vec<u64> {
    let blocks = len.div_ceil(BLOCK_BYTES);
    if blocks <= SPREAD_BLOCKS + 2 {
        return (0..blocks).map(|i| i * BLOCK_BYTES).collect();
    }
    // (len - 4K) / 65 > 4K here, so the spread blocks are distinct, after the first block
    // and before the last one.
    let span = u128::from(len - BLOCK_BYTES);
    let mut offsets = Vec::with_capacity(SPREAD_BLOCKS as usize + 2);
    offsets.push(0);
    for i in 1..=SPREAD_BLOCKS {
        let at = (span * u128::from(i) / u128::from(SPREAD_BLOCKS + 1)) as u64;
        offsets.push(at / BLOCK_BYTES * BLOCK_BYTES);
    }
    offsets.push(len - BLOCK_BYTES);
    offsets
}

impl InputFile {
    /// The identity of the open file `file`: its metadata (`fstat`) and its sampled blocks,
    /// read with `pread` (66 reads of 4 KiB at most).
    pub fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        let len = meta.len();
        let mut buf = vec![0u8; BLOCK_BYTES as usize];
        let mut blocks = Vec::new();
        for offset in sample_offsets(len) {
            let block = &mut buf[..(len - offset).min(BLOCK_BYTES) as usize];
            read_exact_at(file, block, offset)?;
            blocks.push(SampledBlock {
                offset,
                xxh3: xxh3_64(block),
            });
        }
        let (modified_unix_ns, device, inode) = file_times_and_id(&meta);
        Ok(Self {
            len,
            modified_unix_ns,
            device,
            inode,
            blocks,
        })
    }

    /// How `current` differs from `self` (the checkpoint's record), each change named; empty
    /// when it is the same file as far as can be told.
    pub fn changes(&self, current: &InputFile) -> InputChanges {
        let mut changes = Vec::new();
        if self.len != current.len {
            changes.push(InputChange::Length {
                checkpoint: self.len,
                current: current.len,
            });
        }
        if self.modified_unix_ns != current.modified_unix_ns {
            changes.push(InputChange::Modified {
                checkpoint: self.modified_unix_ns,
                current: current.modified_unix_ns,
            });
        }
        if (self.device, self.inode) != (current.device, current.inode) {
            changes.push(InputChange::AnotherFile {
                checkpoint: (self.device, self.inode),
                current: (current.device, current.inode),
            });
        }
        // Samples compare only at the same length (the same offsets).
        let comparable = self.len == current.len && self.blocks.len() == current.blocks.len();
        if comparable {
            let differing: Vec<&SampledBlock> = self
                .blocks
                .iter()
                .zip(&current.blocks)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a)
                .collect();
            if let Some(first) = differing.first() {
                changes.push(InputChange::Bytes {
                    offset: first.offset,
                    end: (first.offset + BLOCK_BYTES).min(self.len),
                    differing: differing.len(),
                    sampled: self.blocks.len(),
                });
            }
        }
        InputChanges {
            changes,
            samples_compared: comparable.then_some(self.blocks.len()),
        }
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(unix)]
fn file_times_and_id(meta: &std::fs::Metadata) -> (i64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let ns = meta
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec());
    (ns, meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_times_and_id(meta: &std::fs::Metadata) -> (i64, u64, u64) {
    let ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    (ns, 0, 0)
}

/// One way an input file differs from what a checkpoint recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputChange {
    /// Its length.
    Length {
        /// Recorded.
        checkpoint: u64,
        /// Now.
        current: u64,
    },
    /// Its modification time (ns since the Unix epoch).
    Modified {
        /// Recorded.
        checkpoint: i64,
        /// Now.
        current: i64,
    },
    /// Its (device, inode): the path now names another file.
    AnotherFile {
        /// Recorded.
        checkpoint: (u64, u64),
        /// Now.
        current: (u64, u64),
    },
    /// Sampled blocks whose checksums differ: the first one's range, and how many differ.
    Bytes {
        /// Start of the first differing block.
        offset: u64,
        /// Its end.
        end: u64,
        /// Sampled blocks that differ.
        differing: usize,
        /// Blocks sampled.
        sampled: usize,
    },
}

impl fmt::Display for InputChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length {
                checkpoint,
                current,
            } => write!(
                f,
                "its length changed: {checkpoint} bytes (checkpoint) vs {current} bytes (now)"
            ),
            Self::Modified {
                checkpoint,
                current,
            } => write!(
                f,
                "its modification time changed: {} (checkpoint) vs {} (now)",
                utc(*checkpoint),
                utc(*current)
            ),
            Self::AnotherFile {
                checkpoint,
                current,
            } => write!(
                f,
                "it is another file: device {} inode {} (checkpoint) vs device {} inode {} (now)",
                checkpoint.0, checkpoint.1, current.0, current.1
            ),
            Self::Bytes {
                offset,
                end,
                differing,
                sampled,
            } => {
                write!(f, "its bytes at offset {offset}..{end} differ")?;
                if *differing > 1 {
                    write!(
                        f,
                        " (and those of {} more of the {sampled} sampled blocks)",
                        differing - 1
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The changes of an input file, as [`InputFile::changes`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputChanges {
    /// Each change, in the order length, time, file, bytes.
    pub changes: Vec<InputChange>,
    /// Blocks compared, when the lengths allowed comparing them.
    pub samples_compared: Option<usize>,
}

impl InputChanges {
    /// No change found.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for InputChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        let bytes_differ = self
            .changes
            .iter()
            .any(|c| matches!(c, InputChange::Bytes { .. }));
        if let (Some(n), false) = (self.samples_compared, bytes_differ) {
            if !self.changes.is_empty() {
                write!(
                    f,
                    "; its {n} sampled blocks are the same, but the rest cannot be vouched for \
                     without reading it all"
                )?;
            }
        }
        Ok(())
    }
}

/// `ns` since the Unix epoch as `YYYY-MM-DD HH:MM:SS.nnnnnnnnn UTC`.
fn utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{nanos:09} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm, as
/// `weir_io::parse::timestamp::civil_from_days`, which the engine cannot depend on).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> (tempfile::NamedTempFile, InputFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        let id = InputFile::of(f.as_file()).unwrap();
        (f, id)
    }

    #[test]
    fn small_files_are_sampled_whole_and_large_ones_at_66_distinct_blocks() {
        assert!(sample_offsets(0).is_empty());
        assert_eq!(sample_offsets(1), [0]);
        assert_eq!(sample_offsets(4097), [0, 4096]);
        let whole = sample_offsets(66 * 4096);
        assert_eq!(whole.len(), 66);
        assert_eq!(*whole.last().unwrap(), 65 * 4096);
        for len in [66 * 4096 + 1, 1 << 20, (1 << 30) + 12_345, 5 << 40] {
            let o = sample_offsets(len);
            assert_eq!(o.len(), 66, "{len}");
            assert!(
                o.windows(2).all(|w| w[0] + BLOCK_BYTES <= w[1]),
                "{len}: {o:?}"
            );
            assert_eq!(o[0], 0);
            assert_eq!(*o.last().unwrap(), len - BLOCK_BYTES);
            assert!(o[1..65].iter().all(|x| x % BLOCK_BYTES == 0));
        }
    }

    #[test]
    fn every_change_is_named() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_f, a) = file(&bytes);
        assert!(a.changes(&a).is_empty());

        // One byte in a sampled block, time and file the same.
        let mut changed = bytes.clone();
        let at = a.blocks[10].offset as usize + 7;
        changed[at] ^= 1;
        let b = InputFile {
            blocks: file(&changed).1.blocks,
            ..a.clone()
        };
        let c = a.changes(&b);
        let off = a.blocks[10].offset;
        assert_eq!(
            c.to_string(),
            format!("its bytes at offset {off}..{} differ", off + 4096)
        );

        // Touched only: the time, and a note that the samples agree.
        let touched = InputFile {
            modified_unix_ns: a.modified_unix_ns + 1_500_000_000,
            ..a.clone()
        };
        let msg = a.changes(&touched).to_string();
        assert!(msg.starts_with("its modification time changed: "), "{msg}");
        assert!(msg.contains("sampled blocks are the same"), "{msg}");

        // Another file, another length: both named, samples not compared.
        let other = InputFile {
            len: a.len + 1,
            inode: a.inode + 1,
            ..a.clone()
        };
        let msg = a.changes(&other).to_string();
        assert!(
            msg.contains("its length changed: 300000 bytes (checkpoint) vs 300001 bytes (now)"),
            "{msg}"
        );
        assert!(msg.contains("it is another file"), "{msg}");
        assert!(!msg.contains("sampled"), "{msg}");
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000000000 UTC");
        assert_eq!(
            utc(951_782_400_000_000_001),
            "2000-02-29 00:00:00.000000001 UTC"
        );
        assert_eq!(utc(-1), "1969-12-31 23:59:59.999999999 UTC");
        assert_eq!(
            utc(1_767_225_599_500_000_000),
            "2025-12-31 23:59:59.500000000 UTC"
        );
    }
}
