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
use arrow_row::{RowConverter, Rows};
use hashbrown::HashTable;

use crate::error::Result;
use crate::hash::{dispatch_bytes, dispatch_int, hash_bytes, hash_u64, IntKey, KeyKind};

/// The distinct keys of one window and their group ids.
pub(crate) enum KeyInterner {
    Int(IntKeys),
    Bytes(ByteKeys),
    Rows(RowKeys),
}

impl KeyInterner {
    pub(crate) fn new(kind: &KeyKind) -> Self {
        match kind {
            KeyKind::Int(dt) => KeyInterner::Int(IntKeys {
                table: HashTable::new(),
                keys: Vec::new(),
                null_group: None,
                data_type: dt.clone(),
            }),
            KeyKind::Bytes(dt) => KeyInterner::Bytes(ByteKeys {
                table: HashTable::new(),
                offsets: vec![0],
                data: Vec::new(),
                null_group: None,
                data_type: dt.clone(),
            }),
            KeyKind::Rows(conv) => KeyInterner::Rows(RowKeys {
                table: HashTable::new(),
                rows: conv.empty_rows(0, 0),
                converter: Arc::clone(conv),
            }),
        }
    }

    /// Number of groups so far.
    pub(crate) fn len(&self) -> usize {
        match self {
            KeyInterner::Int(k) => k.keys.len(),
            KeyInterner::Bytes(k) => k.offsets.len() - 1,
            KeyInterner::Rows(k) => k.rows.num_rows(),
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
            KeyInterner::Bytes(k) => {
                let dt = k.data_type.clone();
                dispatch_bytes!(&dt, T => k.intern(keys[0].as_bytes::<T>(), rows, groups), _ => unreachable!())
            }
            KeyInterner::Rows(k) => k.intern(keys, rows, groups)?,
        }
        Ok(())
    }

    /// The key columns of every group, in group order.
    pub(crate) fn emit(self) -> Result<Vec<ArrayRef>> {
        match self {
            KeyInterner::Int(k) => {
                let dt = k.data_type.clone();
                Ok(vec![
                    dispatch_int!(&dt, T => k.emit::<T>(), _ => unreachable!()),
                ])
            }
            KeyInterner::Bytes(k) => {
                let dt = k.data_type.clone();
                Ok(vec![
                    dispatch_bytes!(&dt, T => k.emit::<T>(), _ => unreachable!()),
                ])
            }
            KeyInterner::Rows(k) => Ok(k.converter.convert_rows(k.rows.iter())?),
        }
    }

    /// Approximate bytes held.
    pub(crate) fn size(&self) -> usize {
        match self {
            KeyInterner::Int(k) => k.table.capacity() * 16 + k.keys.capacity() * 8,
            KeyInterner::Bytes(k) => {
                k.table.capacity() * 16 + k.offsets.capacity() * 8 + k.data.capacity()
            }
            KeyInterner::Rows(k) => k.table.capacity() * 16 + k.rows.size(),
        }
    }
}

/// Calls `f(row)` for the selected rows.
#[inline(always)]
fn for_rows(len: usize, rows: Option<&[u32]>, mut f: impl FnMut(usize)) {
    match rows {
        None => (0..len).for_each(&mut f),
        Some(rows) => rows.iter().for_each(|&r| f(r as usize)),
    }
}

pub(crate) struct IntKeys {
    table: HashTable<(u64, u32)>,
    keys: Vec<u64>,
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

    fn emit<T: ArrowPrimitiveType>(self) -> ArrayRef
    where
        T::Native: IntKey,
    {
        let values: ScalarBuffer<T::Native> =
            self.keys.iter().map(|&b| T::Native::from_bits(b)).collect();
        let nulls = self
            .null_group
            .map(|g| NullBuffer::from_iter((0..self.keys.len()).map(|i| i != g as usize)));
        Arc::new(PrimitiveArray::<T>::new(values, nulls))
    }
}

pub(crate) struct ByteKeys {
    table: HashTable<(u64, u32)>,
    offsets: Vec<usize>,
    data: Vec<u8>,
    null_group: Option<u32>,
    data_type: arrow_schema::DataType,
}

impl ByteKeys {
    #[inline(always)]
    fn group_of(&mut self, k: &[u8]) -> u32 {
        let h = hash_bytes(k);
        let (offsets, data) = (&self.offsets, &self.data);
        let found = self.table.find(h, |e| {
            e.0 == h && &data[offsets[e.1 as usize]..offsets[e.1 as usize + 1]] == k
        });
        if let Some(&(_, g)) = found {
            return g;
        }
        let g = (self.offsets.len() - 1) as u32;
        self.data.extend_from_slice(k);
        self.offsets.push(self.data.len());
        self.table.insert_unique(h, (h, g), |e| e.0);
        g
    }

    fn null_group(&mut self) -> u32 {
        *self.null_group.get_or_insert_with(|| {
            self.offsets.push(self.data.len());
            (self.offsets.len() - 2) as u32
        })
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

    fn emit<T: ByteArrayType>(self) -> ArrayRef {
        let n = self.offsets.len() - 1;
        let offsets: Vec<T::Offset> = self
            .offsets
            .iter()
            .map(|&o| T::Offset::from_usize(o).expect("key bytes overflow the offset type"))
            .collect();
        let nulls = self
            .null_group
            .map(|g| NullBuffer::from_iter((0..n).map(|i| i != g as usize)));
        // The bytes of every key were copied whole from arrays of the same type, so they are
        // valid for it (UTF-8 for strings); `try_new` checks anyway, once per window.
        let array = GenericByteArray::<T>::try_new(
            OffsetBuffer::new(offsets.into()),
            Buffer::from_vec(self.data),
            nulls,
        )
        .expect("interned keys form a valid array");
        Arc::new(array)
    }
}

pub(crate) struct RowKeys {
    table: HashTable<(u64, u32)>,
    rows: Rows,
    converter: Arc<RowConverter>,
}

impl RowKeys {
    fn intern(
        &mut self,
        keys: &[ArrayRef],
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) -> Result<()> {
        let converted = self.converter.convert_columns(keys)?;
        let len = converted.num_rows();
        for_rows(len, rows, |r| {
            let row = converted.row(r);
            let h = hash_bytes(row.as_ref());
            let stored = &self.rows;
            let found = self
                .table
                .find(h, |e| e.0 == h && stored.row(e.1 as usize) == row);
            let g = match found {
                Some(&(_, g)) => g,
                None => {
                    let g = self.rows.num_rows() as u32;
                    self.rows.push(row);
                    self.table.insert_unique(h, (h, g), |e| e.0);
                    g
                }
            };
            groups.push(g);
        });
        Ok(())
    }
}
