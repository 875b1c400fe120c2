//! Interning keys into dense group ids, per window.
//!
//! A [`KeyInterner`] maps every distinct key of a window to a group id `0, 1, 2, …` in order of
//! first appearance; accumulators keep their state in vectors indexed by that id. Three layouts,
//! picked once per job from the key types ([`KeyKind`]):
//!
//! | kind    | table entry            | key storage                   |
//! |---------|------------------------|-------------------------------|
//! | `Int`   | `(key bits, group)`    | `Vec<u64>`                    |
//! | `Bytes` | `(hash, group)`        | one byte buffer + offsets     |
//! | `Rows`  | `(hash, group)`        | arrow-row `Rows`              |
//!
//! The integer table holds the key itself, so a probe touches one cache line; byte keys keep
//! their hash beside the group id so that most mismatches are rejected without reading the key.
//! Keys come back out as Arrow arrays in group order ([`KeyInterner::emit`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ByteArrayType;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, GenericByteArray, PrimitiveArray};
use arrow_buffer::{ArrowNativeType, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_row::RowConverter;
use hashbrown::HashTable;

use crate::error::Result;
use crate::hash::{dispatch_bytes, dispatch_int, hash_bytes, hash_u64, IntKey, KeyKind, NULL_HASH};
use crate::keygroup::order_key;
use crate::pages::{ByteArena, DecodeError, PagedVec, Reader};
use crate::snapshot::FrozenKeys;

/// The distinct keys of one window and their group ids.
pub(crate) enum KeyInterner {
    Int(IntKeys),
    Bytes(ByteKeys, arrow_schema::DataType),
    Rows(ByteKeys, Arc<RowConverter>),
}

impl KeyInterner {
    pub(crate) fn new(kind: &KeyKind) -> Self {
        match kind {
            KeyKind::Int(dt) => KeyInterner::Int(IntKeys {
                table: HashTable::new(),
                keys: PagedVec::default(),
                null_group: None,
                data_type: dt.clone(),
            }),
            KeyKind::Bytes(dt) => KeyInterner::Bytes(ByteKeys::new(), dt.clone()),
            KeyKind::Rows(conv) => KeyInterner::Rows(ByteKeys::new(), Arc::clone(conv)),
        }
    }

    /// Number of groups so far.
    pub(crate) fn len(&self) -> usize {
        match self {
            KeyInterner::Int(k) => k.keys.len(),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => k.arena.len(),
        }
    }

    /// Appends the group id of each selected row (`rows`, or every row) to `groups`.
    pub(crate) fn intern(
        &mut self,
        keys: &[ArrayRef],
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) -> Result<()> {
        match self {
            KeyInterner::Int(k) => {
                let dt = k.data_type.clone();
                dispatch_int!(&dt, T => k.intern::<T>(&keys[0], rows, groups), _ => unreachable!())
            }
            KeyInterner::Bytes(k, dt) => {
                dispatch_bytes!(dt, T => k.intern(keys[0].as_bytes::<T>(), rows, groups), _ => unreachable!())
            }
            KeyInterner::Rows(k, conv) => k.intern_rows(conv, keys, rows, groups)?,
        }
        Ok(())
    }

    /// The key columns of every group, in group order or in `order` (a permutation of the
    /// group ids, as [`KeyInterner::sorted_groups`] gives).
    pub(crate) fn emit(self, order: Option<&[u32]>) -> Result<Vec<ArrayRef>> {
        match self {
            KeyInterner::Int(k) => {
                let dt = k.data_type.clone();
                Ok(vec![
                    dispatch_int!(&dt, T => k.emit::<T>(order), _ => unreachable!()),
                ])
            }
            KeyInterner::Bytes(k, dt) => Ok(vec![
                dispatch_bytes!(&dt, T => k.emit::<T>(order), _ => unreachable!()),
            ]),
            KeyInterner::Rows(k, conv) => k.emit_rows(&conv, order),
        }
    }

    /// Every group id in an order that depends only on the set of keys, not on the order they
    /// arrived in, nor on how keys are split between workers: by the [`order_key`] of the keys'
    /// stable hash (the null key's is [`NULL_HASH`]), ties by key. That order sorts by key group
    /// first, so the workers' parts of a window, one after another in worker order, are in this
    /// order too, whatever the parallelism. The hash spreads keys evenly, so this sorts in
    /// linear time ([`sort_by_hash`]).
    pub(crate) fn sorted_groups(&self) -> Vec<u32> {
        let (mut entries, null_group): (Vec<(u64, u32)>, _) = match self {
            KeyInterner::Int(k) => (
                k.table
                    .iter()
                    .map(|&(key, g)| (order_key(hash_u64(key)), g))
                    .collect(),
                k.null_group,
            ),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => (
                k.table.iter().map(|&(h, g)| (order_key(h), g)).collect(),
                k.null_group,
            ),
        };
        entries.extend(null_group.map(|g| (order_key(NULL_HASH), g)));
        match self {
            KeyInterner::Int(k) => sort_by_hash(&mut entries, |a, b| {
                (Some(a) != k.null_group, k.keys.get(a as usize))
                    .cmp(&(Some(b) != k.null_group, k.keys.get(b as usize)))
            }),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => {
                sort_by_hash(&mut entries, |a, b| {
                    (Some(a) != k.null_group, k.arena.get(a))
                        .cmp(&(Some(b) != k.null_group, k.arena.get(b)))
                })
            }
        }
        entries.into_iter().map(|e| e.1).collect()
    }

    /// The hash of every group's key, in group order: the hash the partitioner routes the key
    /// by ([`KeyKind::hash_rows`]), so its key group is `key_group_of` of it.
    pub(crate) fn partition_hashes(&self) -> Vec<u64> {
        match self {
            KeyInterner::Int(k) => (0..k.keys.len())
                .map(|g| {
                    if Some(g as u32) == k.null_group {
                        NULL_HASH
                    } else {
                        hash_u64(k.keys.get(g))
                    }
                })
                .collect(),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => (0..k.arena.len() as u32)
                .map(|g| {
                    if Some(g) == k.null_group {
                        NULL_HASH
                    } else {
                        hash_bytes(k.arena.get(g))
                    }
                })
                .collect(),
        }
    }

    /// Appends the keys of groups `groups` of `from` (an interner of the same kind), in that
    /// order, as new groups. A key already here is refused: a key lives in one key group, so
    /// the workers a rescaled worker takes keys from never share one.
    pub(crate) fn append_from(
        &mut self,
        from: &KeyInterner,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let dup = |g: u32| DecodeError(format!("the key of group {g} is held by two workers"));
        match (self, from) {
            (KeyInterner::Int(to), KeyInterner::Int(from)) => {
                for &g in groups {
                    let n = to.keys.len() as u32;
                    let added = if Some(g) == from.null_group {
                        to.null_group.is_none() && to.null_group() == n
                    } else if (g as usize) < from.keys.len() {
                        to.group_of(from.keys.get(g as usize)) == n
                    } else {
                        return Err(DecodeError(format!("group {g} out of range")));
                    };
                    if !added {
                        return Err(dup(g));
                    }
                }
            }
            (
                KeyInterner::Bytes(to, _) | KeyInterner::Rows(to, _),
                KeyInterner::Bytes(from, _) | KeyInterner::Rows(from, _),
            ) => {
                for &g in groups {
                    let n = to.arena.len() as u32;
                    let added = if Some(g) == from.null_group {
                        to.null_group.is_none() && to.null_group() == n
                    } else if (g as usize) < from.arena.len() {
                        to.group_of(from.arena.get(g)) == n
                    } else {
                        return Err(DecodeError(format!("group {g} out of range")));
                    };
                    if !added {
                        return Err(dup(g));
                    }
                }
            }
            _ => return Err(DecodeError("keys of different kinds".into())),
        }
        Ok(())
    }

    /// A frozen copy of the keys, sharing pages with the live ones. O(pages).
    pub(crate) fn snapshot(&self) -> FrozenKeys {
        match self {
            KeyInterner::Int(k) => FrozenKeys::Int(k.keys.snapshot(), k.null_group),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => {
                FrozenKeys::Bytes(k.arena.snapshot(), k.null_group)
            }
        }
    }

    /// Rebuilds an interner of `kind` from keys encoded by [`FrozenKeys::encode`], with the same
    /// group ids.
    pub(crate) fn restore(kind: &KeyKind, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.bytes(1, "key kind")?[0];
        let null = u32::from_le_bytes(r.bytes(4, "null group")?.try_into().expect("4 bytes"));
        let null_group = (null != u32::MAX).then_some(null);
        let mut interner = KeyInterner::new(kind);
        let dup = |g: usize| DecodeError(format!("key of group {g} appears twice"));
        match (&mut interner, tag) {
            (KeyInterner::Int(k), 0) => {
                for (g, key) in PagedVec::<u64>::decode(r)?.iter().enumerate() {
                    if Some(g as u32) == null_group {
                        k.keys.push(0);
                        k.null_group = null_group;
                    } else if k.group_of(key) != g as u32 {
                        return Err(dup(g));
                    }
                }
            }
            (KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _), 1) => {
                for (g, key) in ByteArena::decode(r)?.iter().enumerate() {
                    if Some(g as u32) == null_group {
                        k.null_group();
                    } else if k.group_of(key) != g as u32 {
                        return Err(dup(g));
                    }
                }
            }
            _ => {
                return Err(DecodeError(format!(
                    "key kind {tag} does not match the job's keys"
                )))
            }
        }
        if null_group.is_some_and(|g| g as usize >= interner.len()) {
            return Err(DecodeError("null group out of range".into()));
        }
        Ok(interner)
    }

    /// Approximate bytes held.
    pub(crate) fn size(&self) -> usize {
        match self {
            KeyInterner::Int(k) => k.table.capacity() * 16 + k.keys.size(),
            KeyInterner::Bytes(k, _) | KeyInterner::Rows(k, _) => {
                k.table.capacity() * 16 + k.arena.size()
            }
        }
    }
}

#[inline(always)]
/// Sorts `(hash, group)` pairs by hash, ties by `tie` on the groups. Hashes are uniform, so one
/// counting pass over their top bits (about one bucket per entry) leaves the pairs nearly
/// sorted, and an insertion sort finishes in about one more pass: linear time, where a
/// comparison sort of a window's keys cost as much as the rest of emitting it.
fn sort_by_hash(entries: &mut [(u64, u32)], tie: impl Fn(u32, u32) -> std::cmp::Ordering) {
    let n = entries.len();
    if n < 2 {
        return;
    }
    let bits = usize::BITS - n.leading_zeros();
    let shift = 64 - bits;
    let bucket = |h: u64| (h >> shift) as usize;
    let mut next = vec![0u32; 1 << bits];
    for e in entries.iter() {
        next[bucket(e.0)] += 1;
    }
    let mut at = 0;
    for slot in next.iter_mut() {
        let count = *slot;
        *slot = at;
        at += count;
    }
    let mut sorted = vec![(0u64, 0u32); n];
    for &e in entries.iter() {
        let slot = &mut next[bucket(e.0)];
        sorted[*slot as usize] = e;
        *slot += 1;
    }
    let less = |a: &(u64, u32), b: &(u64, u32)| a.0 < b.0 || (a.0 == b.0 && tie(a.1, b.1).is_lt());
    for i in 1..n {
        let e = sorted[i];
        let mut j = i;
        while j > 0 && less(&e, &sorted[j - 1]) {
            sorted[j] = sorted[j - 1];
            j -= 1;
        }
        sorted[j] = e;
    }
    entries.copy_from_slice(&sorted);
}

/// Group ids `0..n` in `order`, or in group order when there is none.
fn in_order(order: Option<&[u32]>, n: usize) -> impl Iterator<Item = u32> + '_ {
    let (sorted, plain) = match order {
        Some(o) => (o, 0..0),
        None => (&[][..], 0..n as u32),
    };
    sorted.iter().copied().chain(plain)
}

/// Calls `f(row)` for the selected rows (`rows`, or every row of `0..len`).
fn for_rows(len: usize, rows: Option<&[u32]>, mut f: impl FnMut(usize)) {
    match rows {
        None => (0..len).for_each(&mut f),
        Some(rows) => rows.iter().for_each(|&r| f(r as usize)),
    }
}

pub(crate) struct IntKeys {
    table: HashTable<(u64, u32)>,
    keys: PagedVec<u64>,
    null_group: Option<u32>,
    data_type: arrow_schema::DataType,
}

impl IntKeys {
    #[inline(always)]
    fn group_of(&mut self, k: u64) -> u32 {
        let h = hash_u64(k);
        if let Some(&(_, g)) = self.table.find(h, |e| e.0 == k) {
            return g;
        }
        let g = self.keys.len() as u32;
        self.keys.push(k);
        self.table.insert_unique(h, (k, g), |e| hash_u64(e.0));
        g
    }

    fn null_group(&mut self) -> u32 {
        *self.null_group.get_or_insert_with(|| {
            self.keys.push(0);
            (self.keys.len() - 1) as u32
        })
    }

    fn intern<T: ArrowPrimitiveType>(
        &mut self,
        col: &ArrayRef,
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) where
        T::Native: IntKey,
    {
        let a = col.as_primitive::<T>();
        let vals = a.values();
        groups.reserve(rows.map_or(a.len(), <[u32]>::len));
        match a.nulls().filter(|n| n.null_count() > 0) {
            None => for_rows(a.len(), rows, |r| {
                let g = self.group_of(vals[r].to_bits());
                groups.push(g);
            }),
            Some(nulls) => for_rows(a.len(), rows, |r| {
                let g = if nulls.is_null(r) {
                    self.null_group()
                } else {
                    self.group_of(vals[r].to_bits())
                };
                groups.push(g);
            }),
        }
    }

    fn emit<T: ArrowPrimitiveType>(self, order: Option<&[u32]>) -> ArrayRef
    where
        T::Native: IntKey,
    {
        let n = self.keys.len();
        let values: ScalarBuffer<T::Native> = in_order(order, n)
            .map(|g| T::Native::from_bits(self.keys.get(g as usize)))
            .collect();
        let nulls = self
            .null_group
            .map(|g| NullBuffer::from_iter(in_order(order, n).map(|i| i != g)));
        Arc::new(PrimitiveArray::<T>::new(values, nulls))
    }
}

/// Byte-string keys (one string/binary column, or the arrow-row encoding of several columns)
/// in a copy-on-write [`ByteArena`]; group `g` is string `g`.
pub(crate) struct ByteKeys {
    table: HashTable<(u64, u32)>,
    arena: ByteArena,
    null_group: Option<u32>,
}

impl ByteKeys {
    fn new() -> Self {
        Self {
            table: HashTable::new(),
            arena: ByteArena::default(),
            null_group: None,
        }
    }

    #[inline(always)]
    fn group_of(&mut self, k: &[u8]) -> u32 {
        let h = hash_bytes(k);
        let arena = &self.arena;
        if let Some(&(_, g)) = self.table.find(h, |e| e.0 == h && arena.get(e.1) == k) {
            return g;
        }
        let g = self.arena.push(k);
        self.table.insert_unique(h, (h, g), |e| e.0);
        g
    }

    fn null_group(&mut self) -> u32 {
        if let Some(g) = self.null_group {
            return g;
        }
        let g = self.arena.push(&[]);
        self.null_group = Some(g);
        g
    }

    fn intern<T: ByteArrayType>(
        &mut self,
        a: &GenericByteArray<T>,
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) {
        let offsets = a.value_offsets();
        let data = a.value_data();
        let value = |r: usize| &data[offsets[r].as_usize()..offsets[r + 1].as_usize()];
        groups.reserve(rows.map_or(a.len(), <[u32]>::len));
        match a.nulls().filter(|n| n.null_count() > 0) {
            None => for_rows(a.len(), rows, |r| {
                let g = self.group_of(value(r));
                groups.push(g);
            }),
            Some(nulls) => for_rows(a.len(), rows, |r| {
                let g = if nulls.is_null(r) {
                    self.null_group()
                } else {
                    self.group_of(value(r))
                };
                groups.push(g);
            }),
        }
    }

    fn intern_rows(
        &mut self,
        converter: &RowConverter,
        keys: &[ArrayRef],
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) -> Result<()> {
        let converted = converter.convert_columns(keys)?;
        groups.reserve(rows.map_or(converted.num_rows(), <[u32]>::len));
        for_rows(converted.num_rows(), rows, |r| {
            let g = self.group_of(converted.row(r).as_ref());
            groups.push(g);
        });
        Ok(())
    }

    fn emit<T: ByteArrayType>(self, order: Option<&[u32]>) -> ArrayRef {
        let n = self.arena.len();
        let mut offsets: Vec<T::Offset> = Vec::with_capacity(n + 1);
        let mut data: Vec<u8> = Vec::with_capacity(self.arena.byte_len());
        offsets.push(T::Offset::usize_as(0));
        for g in in_order(order, n) {
            data.extend_from_slice(self.arena.get(g));
            offsets.push(
                T::Offset::from_usize(data.len()).expect("key bytes overflow the offset type"),
            );
        }
        let nulls = self
            .null_group
            .map(|g| NullBuffer::from_iter(in_order(order, n).map(|i| i != g)));
        // The bytes of every key were copied whole from arrays of the same type, so they are
        // valid for it (UTF-8 for strings); `try_new` checks anyway, once per window.
        let array = GenericByteArray::<T>::try_new(
            OffsetBuffer::new(offsets.into()),
            Buffer::from_vec(data),
            nulls,
        )
        .expect("interned keys form a valid array");
        Arc::new(array)
    }

    fn emit_rows(self, converter: &RowConverter, order: Option<&[u32]>) -> Result<Vec<ArrayRef>> {
        let parser = converter.parser();
        let n = self.arena.len();
        Ok(converter.convert_rows(in_order(order, n).map(|g| parser.parse(self.arena.get(g))))?)
    }
}
