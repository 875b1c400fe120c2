//! Shared plumbing for numeric accumulators: visiting the (row, group) pairs of a batch with
//! the null check hoisted out of the loop, and dispatching on the Arrow type once per batch.

use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;

/// Whether `dt` is a numeric type the built-in aggregates accept.
pub(crate) fn is_numeric(dt: &DataType) -> bool {
    dt.is_integer() || matches!(dt, DataType::Float32 | DataType::Float64)
}

/// The validity of per-group results from whether each group saw a value; `None` when all did.
pub(crate) fn nulls_from_seen(seen: Vec<bool>) -> Option<NullBuffer> {
    let nulls = NullBuffer::from(seen);
    (nulls.null_count() > 0).then_some(nulls)
}

/// Calls `f(group, value)` for every non-null selected row. Four loops, so that the common case
/// (no nulls, every row) is a plain zip the compiler can unroll.
#[inline]
pub(crate) fn visit<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    rows: Option<&[u32]>,
    groups: &[u32],
    mut f: impl FnMut(usize, T::Native),
) {
    let vals = values.values();
    match (values.nulls().filter(|n| n.null_count() > 0), rows) {
        (None, None) => {
            for (&g, &v) in groups.iter().zip(vals.iter()) {
                f(g as usize, v);
            }
        }
        (None, Some(rows)) => {
            for (&g, &r) in groups.iter().zip(rows) {
                f(g as usize, vals[r as usize]);
            }
        }
        (Some(nulls), None) => {
            for (i, &g) in groups.iter().enumerate() {
                if nulls.is_valid(i) {
                    f(g as usize, vals[i]);
                }
            }
        }
        (Some(nulls), Some(rows)) => {
            for (&g, &r) in groups.iter().zip(rows) {
                if nulls.is_valid(r as usize) {
                    f(g as usize, vals[r as usize]);
                }
            }
        }
    }
}

/// Expands `$body` once per numeric Arrow type (the integers of
/// [`dispatch_int`](crate::hash::dispatch_int) and the two floats), with `$t` bound to that
/// type, for the type of `$dt`; `$other` is evaluated for anything else.
macro_rules! dispatch_numeric {
    ($dt:expr, $t:ident => $body:expr, _ => $other:expr) => {{
        match $dt {
            arrow_schema::DataType::Float32 => {
                type $t = arrow_array::types::Float32Type;
                $body
            }
            arrow_schema::DataType::Float64 => {
                type $t = arrow_array::types::Float64Type;
                $body
            }
            dt => $crate::hash::dispatch_int!(dt, $t => $body, _ => $other),
        }
    }};
}
pub(crate) use dispatch_numeric;

/// Lossless-or-widening conversion of a native value into an accumulation type.
pub(crate) trait Widen<T> {
    fn widen(self) -> T;
}

macro_rules! widen {
    ($to:ty: $($from:ty),*) => { $(impl Widen<$to> for $from {
        #[inline(always)]
        fn widen(self) -> $to { self as $to }
    })* };
}
widen!(i64: i8, i16, i32, i64);
widen!(u64: u8, u16, u32, u64);
widen!(f64: i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);
