//! Key hashing shared by the partitioner and the window hash tables.
//!
//! The functions are fixed (no per-process random seed) because the hash decides which worker
//! owns a key, and checkpoints rely on that mapping staying the same across restarts and
//! versions: integers go through a folded 128-bit multiply, bytes through XXH3, whose output is
//! specified.

use arrow_array::cast::AsArray;
use arrow_array::types::ByteArrayType;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, GenericByteArray};
use arrow_buffer::ArrowNativeType;
use arrow_row::RowConverter;
use arrow_schema::DataType;

use crate::error::Result;

const MULTIPLIER: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;

/// The hash of an integer key (its 64-bit pattern).
#[inline(always)]
pub fn hash_u64(k: u64) -> u64 {
    let m = (k as u128 ^ 0x243F_6A88_85A3_08D3).wrapping_mul(MULTIPLIER);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The hash of a byte-string key.
#[inline(always)]
pub fn hash_bytes(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

/// The hash given to a null key.
pub const NULL_HASH: u64 = 0x5EED_0000_DEAD_BEEF;

/// The part (`0..partitions`) of `0..2^32` that bits 24..56 of hash `h` fall in: a key's key
/// group (module `keygroup`), which decides its worker. Bits 24..56 so that it neither repeats
/// the low bits that pick a hash-table bucket nor the top 7 bits of its tag.
#[inline(always)]
pub fn partition_of(h: u64, partitions: usize) -> usize {
    ((((h >> 24) as u32) as u64 * partitions as u64) >> 32) as usize
}

/// An integer that can stand as a key in the integer fast path.
pub(crate) trait IntKey: Copy {
    fn to_bits(self) -> u64;
    fn from_bits(b: u64) -> Self;
}

macro_rules! int_key {
    ($($t:ty),*) => {$(impl IntKey for $t {
        #[inline(always)]
        fn to_bits(self) -> u64 { self as u64 }
        #[inline(always)]
        fn from_bits(b: u64) -> Self { b as $t }
    })*};
}
int_key!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Expands `$body` once per integer Arrow type, with `$t` bound to it.
macro_rules! dispatch_int {
    ($dt:expr, $t:ident => $body:expr, _ => $other:expr) => {{
        use arrow_array::types::*;
        match $dt {
            arrow_schema::DataType::Int8 => {
                type $t = Int8Type;
                $body
            }
            arrow_schema::DataType::Int16 => {
                type $t = Int16Type;
                $body
            }
            arrow_schema::DataType::Int32 => {
                type $t = Int32Type;
                $body
            }
            arrow_schema::DataType::Int64 => {
                type $t = Int64Type;
                $body
            }
            arrow_schema::DataType::UInt8 => {
                type $t = UInt8Type;
                $body
            }
            arrow_schema::DataType::UInt16 => {
                type $t = UInt16Type;
                $body
            }
            arrow_schema::DataType::UInt32 => {
                type $t = UInt32Type;
                $body
            }
            arrow_schema::DataType::UInt64 => {
                type $t = UInt64Type;
                $body
            }
            _ => $other,
        }
    }};
}
pub(crate) use dispatch_int;

/// Expands `$body` once per variable-width byte type, with `$t` bound to it.
macro_rules! dispatch_bytes {
    ($dt:expr, $t:ident => $body:expr, _ => $other:expr) => {{
        use arrow_array::types::*;
        match $dt {
            arrow_schema::DataType::Utf8 => {
                type $t = Utf8Type;
                $body
            }
            arrow_schema::DataType::LargeUtf8 => {
                type $t = LargeUtf8Type;
                $body
            }
            arrow_schema::DataType::Binary => {
                type $t = BinaryType;
                $body
            }
            arrow_schema::DataType::LargeBinary => {
                type $t = LargeBinaryType;
                $body
            }
            _ => $other,
        }
    }};
}
pub(crate) use dispatch_bytes;

/// How a job's key columns are represented in hash tables, chosen once from their types.
#[derive(Debug, Clone)]
pub(crate) enum KeyKind {
    /// One integer column: the key is its 64-bit pattern.
    Int(DataType),
    /// One string or binary column: the key is its bytes.
    Bytes(DataType),
    /// Anything else (several columns, other types): the key is its arrow-row encoding.
    Rows(std::sync::Arc<RowConverter>),
}

impl KeyKind {
    /// Picks the representation for key columns of these types.
    pub(crate) fn for_types(types: &[DataType]) -> Result<Self> {
        Ok(match types {
            [dt] if dt.is_integer() => KeyKind::Int(dt.clone()),
            [dt @ (DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary)] => KeyKind::Bytes(dt.clone()),
            _ => {
                let fields = types
                    .iter()
                    .map(|t| arrow_row::SortField::new(t.clone()))
                    .collect();
                KeyKind::Rows(std::sync::Arc::new(RowConverter::new(fields)?))
            }
        })
    }

    /// Appends the hash of every row's key to `out`.
    pub(crate) fn hash_rows(&self, keys: &[ArrayRef], out: &mut Vec<u64>) -> Result<()> {
        match self {
            KeyKind::Int(dt) => {
                dispatch_int!(dt, T => hash_ints::<T>(&keys[0], out), _ => unreachable!("int key"))
            }
            KeyKind::Bytes(dt) => {
                dispatch_bytes!(dt, T => hash_byte_array(keys[0].as_bytes::<T>(), out), _ => unreachable!("byte key"))
            }
            KeyKind::Rows(conv) => {
                let rows = conv.convert_columns(keys)?;
                out.extend(rows.iter().map(|r| hash_bytes(r.as_ref())));
            }
        }
        Ok(())
    }
}

fn hash_ints<T: ArrowPrimitiveType>(col: &ArrayRef, out: &mut Vec<u64>)
where
    T::Native: IntKey,
{
    let a = col.as_primitive::<T>();
    out.extend(a.values().iter().map(|v| hash_u64(v.to_bits())));
    if let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) {
        let base = out.len() - a.len();
        for i in nulls.iter().enumerate().filter(|(_, v)| !v).map(|(i, _)| i) {
            out[base + i] = NULL_HASH;
        }
    }
}

fn hash_byte_array<T: ByteArrayType>(a: &GenericByteArray<T>, out: &mut Vec<u64>) {
    let offsets = a.value_offsets();
    let data = a.value_data();
    out.extend(
        offsets
            .windows(2)
            .map(|w| hash_bytes(&data[w[0].as_usize()..w[1].as_usize()])),
    );
    if let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) {
        let base = out.len() - a.len();
        for i in nulls.iter().enumerate().filter(|(_, v)| !v).map(|(i, _)| i) {
            out[base + i] = NULL_HASH;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly() {
        for p in [2usize, 3, 8] {
            let mut counts = vec![0u32; p];
            for k in 0..100_000u64 {
                counts[partition_of(hash_u64(k), p)] += 1;
            }
            let expect = 100_000 / p as u32;
            for c in counts {
                assert!(c.abs_diff(expect) < expect / 20, "{p}: {c} vs {expect}");
            }
        }
    }

    #[test]
    fn hashes_are_stable() {
        // Pinned values: a change here moves keys between key groups, which breaks restoring
        // checkpoints taken by an earlier version.
        assert_eq!(hash_u64(0), PINNED_U64_0);
        assert_eq!(hash_u64(42), PINNED_U64_42);
        assert_eq!(hash_bytes(b"10.0.0.1"), PINNED_BYTES);
    }

    const PINNED_U64_0: u64 = 0xd07b_4b0d_d779_4163;
    const PINNED_U64_42: u64 = 0x65fc_d247_10dc_3583;
    const PINNED_BYTES: u64 = 0xb61d_99f8_e56b_6646;
}
