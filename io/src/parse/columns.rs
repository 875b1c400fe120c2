//! Which columns a parser produces ([`Columns`]), their schema, and the buffers they are built in.
//!
//! The buffers are plain `Vec`s (values, `i32` offsets) plus an Arrow [`NullBufferBuilder`],
//! turned into arrays in bulk when a batch is full: `Vec` → `Buffer` is a move, not a copy. After
//! a batch the vectors are re-created with the capacity the previous batch needed, so the steady
//! state costs a handful of allocations per batch and none per line.
//!
//! UTF-8 is checked once per column per batch, by Arrow's own validation of the finished array.
//! The rare batch with invalid UTF-8 (raw bytes in a request, a client field of attack traffic)
//! takes a slow path that rebuilds that column with each invalid sequence replaced by U+FFFD.

use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::sync::Arc;

use arrow_array::types::{UInt16Type, UInt64Type};
use arrow_array::{ArrayRef, PrimitiveArray, StringArray, TimestampMillisecondArray};
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::LogFormat;

/// A set of output columns, used for projection: the parser extracts only what is asked for.
///
/// ```
/// use weir_io::parse::Columns;
/// let c = Columns::TS | Columns::CLIENT;
/// assert_eq!(c, Columns::ts_client());
/// assert!(Columns::ALL.contains(c));
/// assert!(!c.contains(Columns::STATUS));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Columns(u16);

/// Name, bit and type of every column, in schema order.
const COLUMN_TABLE: [(&str, Columns); 8] = [
    ("ts", Columns::TS),
    ("client", Columns::CLIENT),
    ("method", Columns::METHOD),
    ("path", Columns::PATH),
    ("status", Columns::STATUS),
    ("bytes", Columns::BYTES),
    ("referer", Columns::REFERER),
    ("user_agent", Columns::USER_AGENT),
];

impl Columns {
    /// No column.
    pub const NONE: Columns = Columns(0);
    /// `ts`: event time, `Timestamp(Millisecond, "UTC")`, never null.
    pub const TS: Columns = Columns(1 << 0);
    /// `client`: the line's first field verbatim (IPv4, IPv6 or host name), `Utf8`, never null.
    pub const CLIENT: Columns = Columns(1 << 1);
    /// `method`: the request's method, `Utf8`, null when the request is not `METHOD TARGET ...`.
    pub const METHOD: Columns = Columns(1 << 2);
    /// `path`: the request target, `Utf8`, null when the request is not `METHOD TARGET ...`.
    pub const PATH: Columns = Columns(1 << 3);
    /// `status`: the response status, `UInt16`, null when absent or not a number.
    pub const STATUS: Columns = Columns(1 << 4);
    /// `bytes`: the response size, `UInt64`, null for `-` or when absent.
    pub const BYTES: Columns = Columns(1 << 5);
    /// `referer` (combined format only), `Utf8`, nullable.
    pub const REFERER: Columns = Columns(1 << 6);
    /// `user_agent` (combined format only), `Utf8`, nullable.
    pub const USER_AGENT: Columns = Columns(1 << 7);
    /// Every column.
    pub const ALL: Columns = Columns(0xff);
    /// The columns that come from the quoted request and after it.
    pub const REQUEST: Columns = Columns(
        Self::METHOD.0
            | Self::PATH.0
            | Self::STATUS.0
            | Self::BYTES.0
            | Self::REFERER.0
            | Self::USER_AGENT.0,
    );

    /// `ts` and `client`: what a windowed count per client needs, and the parser's fastest path.
    pub const fn ts_client() -> Columns {
        Columns(Self::TS.0 | Self::CLIENT.0)
    }

    /// Whether every column of `other` is in `self`.
    pub const fn contains(self, other: Columns) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any column of `other` is in `self`.
    pub const fn intersects(self, other: Columns) -> bool {
        self.0 & other.0 != 0
    }

    /// The columns a format can produce: combined has all eight, common all but referer and
    /// user agent, simple only `ts` and `client`.
    pub const fn available(format: LogFormat) -> Columns {
        match format {
            LogFormat::Combined => Self::ALL,
            LogFormat::Common => Columns(Self::ALL.0 & !(Self::REFERER.0 | Self::USER_AGENT.0)),
            LogFormat::Simple => Self::ts_client(),
        }
    }

    /// The column named `name` (`ts`, `client`, `method`, `path`, `status`, `bytes`,
    /// `referer`, `user_agent`).
    pub fn from_name(name: &str) -> Option<Columns> {
        COLUMN_TABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| c)
    }

    /// The names of the columns in the set, in schema order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        COLUMN_TABLE
            .iter()
            .filter(move |(_, c)| self.contains(*c))
            .map(|&(n, _)| n)
    }

    /// The Arrow schema of these columns, in the fixed order ts, client, method, path, status,
    /// bytes, referer, user_agent.
    pub fn schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .names()
            .map(|name| match name {
                "ts" => Field::new(
                    name,
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                "client" => Field::new(name, DataType::Utf8, false),
                "status" => Field::new(name, DataType::UInt16, true),
                "bytes" => Field::new(name, DataType::UInt64, true),
                _ => Field::new(name, DataType::Utf8, true),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

impl BitOr for Columns {
    type Output = Columns;
    fn bitor(self, rhs: Columns) -> Columns {
        Columns(self.0 | rhs.0)
    }
}

impl BitOrAssign for Columns {
    fn bitor_assign(&mut self, rhs: Columns) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Columns {
    type Output = Columns;
    fn bitand(self, rhs: Columns) -> Columns {
        Columns(self.0 & rhs.0)
    }
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// A `Utf8` column being built: values, offsets and validity.
#[derive(Debug)]
pub(crate) struct StrColumn {
    offsets: Vec<i32>,
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl StrColumn {
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrColumn {
            offsets,
            values: Vec::with_capacity(bytes),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, v: &[u8]) {
        self.values.extend_from_slice(v);
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
    }

    #[inline]
    pub(crate) fn push_opt(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.push(v),
            None => {
                self.offsets.push(self.values.len() as i32);
                self.nulls.append_null();
            }
        }
    }

    /// Bytes of values buffered.
    pub(crate) fn value_bytes(&self) -> usize {
        self.values.len()
    }

    /// Moves the buffered rows out as an array and starts over with room for `rows` rows.
    pub(crate) fn finish(&mut self, rows: usize) -> StringArray {
        let value_hint = self.values.len() + self.values.len() / 8;
        let old = std::mem::replace(self, StrColumn::with_capacity(rows, value_hint));
        let StrColumn {
            offsets,
            values,
            mut nulls,
        } = old;
        let nulls = nulls.finish();
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Buffer::from_vec(values);
        // Buffers are reference counted: the clones are pointer copies, kept for the slow path.
        match StringArray::try_new(offsets.clone(), values.clone(), nulls.clone()) {
            Ok(array) => array,
            Err(_) => repair_utf8(&offsets, &values, nulls),
        }
    }
}

/// Rebuilds a string column whose bytes are not valid UTF-8, value by value, replacing each
/// invalid sequence with U+FFFD. Allocates; runs only for batches holding such bytes.
#[cold]
#[inline(never)]
fn repair_utf8(
    offsets: &OffsetBuffer<i32>,
    values: &Buffer,
    nulls: Option<arrow_buffer::NullBuffer>,
) -> StringArray {
    let mut out = Vec::with_capacity(values.len() + 16);
    let mut new_offsets = Vec::with_capacity(offsets.len());
    new_offsets.push(0i32);
    for w in offsets.windows(2) {
        let v = &values[w[0] as usize..w[1] as usize];
        for chunk in v.utf8_chunks() {
            out.extend_from_slice(chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice(
                    char::REPLACEMENT_CHARACTER
                        .encode_utf8(&mut [0; 4])
                        .as_bytes(),
                );
            }
        }
        new_offsets.push(out.len() as i32);
    }
    StringArray::new(
        OffsetBuffer::new(ScalarBuffer::from(new_offsets)),
        Buffer::from_vec(out),
        nulls,
    )
}

/// A nullable primitive column being built.
#[derive(Debug)]
pub(crate) struct NumColumn<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: Copy + Default> NumColumn<T> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        NumColumn {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    #[inline]
    pub(crate) fn push_opt(&mut self, v: Option<T>) {
        match v {
            Some(v) => {
                self.values.push(v);
                self.nulls.append_non_null();
            }
            None => {
                self.values.push(T::default());
                self.nulls.append_null();
            }
        }
    }

    fn take(&mut self, rows: usize) -> (ScalarBuffer<T>, Option<arrow_buffer::NullBuffer>)
    where
        T: arrow_buffer::ArrowNativeType,
    {
        let old = std::mem::replace(self, NumColumn::with_capacity(rows));
        let NumColumn { values, mut nulls } = old;
        (ScalarBuffer::from(values), nulls.finish())
    }
}

/// The buffers of every column a parser may produce; only the projected ones are filled.
#[derive(Debug)]
pub(crate) struct ColumnBuffers {
    pub(crate) columns: Columns,
    pub(crate) rows: usize,
    pub(crate) ts: Vec<i64>,
    pub(crate) client: StrColumn,
    pub(crate) method: StrColumn,
    pub(crate) path: StrColumn,
    pub(crate) status: NumColumn<u16>,
    pub(crate) bytes: NumColumn<u64>,
    pub(crate) referer: StrColumn,
    pub(crate) user_agent: StrColumn,
}

/// Starting capacity of a string column's values, per row, before the first batch tells better.
const INITIAL_BYTES_PER_ROW: usize = 16;

impl ColumnBuffers {
    pub(crate) fn new(columns: Columns, rows: usize) -> Self {
        // Columns that are not projected get no capacity at all.
        let cap = |c: Columns| if columns.contains(c) { rows } else { 0 };
        let s = |c: Columns| StrColumn::with_capacity(cap(c), cap(c) * INITIAL_BYTES_PER_ROW);
        ColumnBuffers {
            columns,
            rows: 0,
            ts: Vec::with_capacity(cap(Columns::TS)),
            client: s(Columns::CLIENT),
            method: s(Columns::METHOD),
            path: s(Columns::PATH),
            status: NumColumn::with_capacity(cap(Columns::STATUS)),
            bytes: NumColumn::with_capacity(cap(Columns::BYTES)),
            referer: s(Columns::REFERER),
            user_agent: s(Columns::USER_AGENT),
        }
    }

    /// Bytes held by the string columns; bounded so that `i32` offsets never overflow.
    pub(crate) fn string_bytes(&self) -> usize {
        self.client.value_bytes()
            + self.method.value_bytes()
            + self.path.value_bytes()
            + self.referer.value_bytes()
            + self.user_agent.value_bytes()
    }

    /// Moves the buffered rows out as arrays, in schema order, and starts over with room for
    /// `next_rows` rows.
    pub(crate) fn finish(&mut self, next_rows: usize) -> Vec<ArrayRef> {
        let c = self.columns;
        let cap = |x: Columns| if c.contains(x) { next_rows } else { 0 };
        let mut out: Vec<ArrayRef> = Vec::with_capacity(8);
        if c.contains(Columns::TS) {
            let ts = std::mem::replace(&mut self.ts, Vec::with_capacity(next_rows));
            out.push(Arc::new(
                TimestampMillisecondArray::new(ScalarBuffer::from(ts), None).with_timezone("UTC"),
            ));
        }
        let strings = [
            (Columns::CLIENT, &mut self.client),
            (Columns::METHOD, &mut self.method),
            (Columns::PATH, &mut self.path),
        ];
        for (bit, col) in strings {
            if c.contains(bit) {
                out.push(Arc::new(col.finish(cap(bit))));
            }
        }
        if c.contains(Columns::STATUS) {
            let (v, n) = self.status.take(next_rows);
            out.push(Arc::new(PrimitiveArray::<UInt16Type>::new(v, n)));
        }
        if c.contains(Columns::BYTES) {
            let (v, n) = self.bytes.take(next_rows);
            out.push(Arc::new(PrimitiveArray::<UInt64Type>::new(v, n)));
        }
        for (bit, col) in [
            (Columns::REFERER, &mut self.referer),
            (Columns::USER_AGENT, &mut self.user_agent),
        ] {
            if c.contains(bit) {
                out.push(Arc::new(col.finish(cap(bit))));
            }
        }
        self.rows = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn invalid_utf8_is_replaced_per_value() {
        let mut col = StrColumn::with_capacity(4, 16);
        col.push(b"ok");
        // Two halves of "é" (C3 A9) in two values: valid as one buffer, invalid per value.
        col.push(b"a\xc3");
        col.push_opt(None);
        col.push(b"\xa9b");
        let a = col.finish(4);
        assert_eq!(a.len(), 4);
        assert_eq!(a.value(0), "ok");
        assert_eq!(a.value(1), "a\u{fffd}");
        assert!(a.is_null(2));
        assert_eq!(a.value(3), "\u{fffd}b");
        // The column starts over empty.
        assert_eq!(col.finish(1).len(), 0);
    }

    #[test]
    fn schema_order_and_types() {
        let s = (Columns::BYTES | Columns::TS | Columns::CLIENT).schema();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "client", "bytes"]);
        assert!(!s.field(0).is_nullable());
        assert!(!s.field(1).is_nullable());
        assert!(s.field(2).is_nullable());
        assert_eq!(Columns::available(LogFormat::Common).names().count(), 6);
        assert_eq!(Columns::from_name("user_agent"), Some(Columns::USER_AGENT));
        assert_eq!(Columns::from_name("ip"), None);
    }
}
