//! `min(column)` and `max(column)`: per-group extremes, of the column's own type.
//!
//! Floats are ordered by IEEE 754 total order (`-NaN < -inf < … < inf < NaN`), so a NaN wins
//! `max` and loses `min` deterministically.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::DataType;

use super::numeric::{dispatch_numeric, is_numeric, nulls_from_seen, visit};
use super::{AggregateFunction, GroupsAccumulator};

/// The smallest value per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;

/// The largest value per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

fn same_type(name: &str, input: Option<&DataType>) -> Result<DataType, String> {
    match input {
        Some(dt) if is_numeric(dt) => Ok(dt.clone()),
        Some(dt) => Err(format!("{name} needs a numeric column, not {dt}")),
        None => Err(format!("{name} needs an input column")),
    }
}

impl AggregateFunction for Min {
    fn name(&self) -> &str {
        "min"
    }
    fn return_type(&self, input: Option<&DataType>) -> Result<DataType, String> {
        same_type("min", input)
    }
    fn accumulator(&self, input: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        dispatch_numeric!(input.expect("checked"), T => Box::new(Extreme::<T, false>::default()),
            _ => unreachable!("checked by return_type"))
    }
}

impl AggregateFunction for Max {
    fn name(&self) -> &str {
        "max"
    }
    fn return_type(&self, input: Option<&DataType>) -> Result<DataType, String> {
        same_type("max", input)
    }
    fn accumulator(&self, input: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        dispatch_numeric!(input.expect("checked"), T => Box::new(Extreme::<T, true>::default()),
            _ => unreachable!("checked by return_type"))
    }
}

/// Minimum (`MAX == false`) or maximum (`MAX == true`) per group.
struct Extreme<T: ArrowPrimitiveType, const MAX: bool> {
    vals: Vec<T::Native>,
    seen: Vec<bool>,
}

impl<T: ArrowPrimitiveType, const MAX: bool> Default for Extreme<T, MAX> {
    fn default() -> Self {
        Self {
            vals: Vec::new(),
            seen: Vec::new(),
        }
    }
}

impl<T: ArrowPrimitiveType, const MAX: bool> GroupsAccumulator for Extreme<T, MAX> {
    fn update(
        &mut self,
        values: Option<&ArrayRef>,
        rows: Option<&[u32]>,
        groups: &[u32],
        n: usize,
    ) {
        self.vals.resize(n, T::Native::default());
        self.seen.resize(n, false);
        let values = values.expect("min/max have an input").as_primitive::<T>();
        let (vals, seen) = (&mut self.vals[..], &mut self.seen[..]);
        visit(values, rows, groups, |g, v| {
            let better = if MAX {
                v.is_gt(vals[g])
            } else {
                v.is_lt(vals[g])
            };
            if better || !seen[g] {
                vals[g] = v;
                seen[g] = true;
            }
        });
    }

    fn evaluate(&mut self) -> ArrayRef {
        let nulls = nulls_from_seen(std::mem::take(&mut self.seen));
        let vals = std::mem::take(&mut self.vals);
        Arc::new(PrimitiveArray::<T>::new(vals.into(), nulls))
    }

    fn size(&self) -> usize {
        self.vals.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}
