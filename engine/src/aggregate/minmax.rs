//! `min(column)` and `max(column)`: per-group extremes, of the column's own type.
//!
//! Floats are ordered by IEEE 754 total order (`-NaN < -inf < … < inf < NaN`), so a NaN wins
//! `max` and loses `min` deterministically.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::DataType;

use super::numeric::{dispatch_numeric, is_numeric, nulls_from_seen, visit};
use super::{decode_pair, AggregateFunction, FrozenState, GroupsAccumulator};
use crate::pages::{DecodeError, Fixed, PagedVec};

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
    vals: PagedVec<T::Native>,
    seen: PagedVec<bool>,
}

impl<T: ArrowPrimitiveType, const MAX: bool> Default for Extreme<T, MAX> {
    fn default() -> Self {
        Self {
            vals: PagedVec::default(),
            seen: PagedVec::default(),
        }
    }
}

impl<T: ArrowPrimitiveType, const MAX: bool> GroupsAccumulator for Extreme<T, MAX>
where
    T::Native: Fixed,
{
    fn update(
        &mut self,
        values: Option<&ArrayRef>,
        rows: Option<&[u32]>,
        groups: &[u32],
        n: usize,
    ) {
        self.vals.grow_to(n);
        self.seen.grow_to(n);
        let values = values.expect("min/max have an input").as_primitive::<T>();
        let (mut vals, mut seen) = (self.vals.pages_mut(), self.seen.pages_mut());
        visit(values, rows, groups, |g, v| {
            let (cur, seen) = (vals.at(g), seen.at(g));
            let better = if MAX { v.is_gt(*cur) } else { v.is_lt(*cur) };
            if better || !*seen {
                *cur = v;
                *seen = true;
            }
        });
    }

    fn evaluate(&mut self) -> ArrayRef {
        let nulls = nulls_from_seen(std::mem::take(&mut self.seen).to_vec());
        let vals = std::mem::take(&mut self.vals).to_vec();
        Arc::new(PrimitiveArray::<T>::new(vals.into(), nulls))
    }

    fn size(&self) -> usize {
        self.vals.size() + self.seen.size()
    }

    fn snapshot(&self) -> Option<Box<dyn FrozenState>> {
        Some(Box::new((self.vals.snapshot(), self.seen.snapshot())))
    }

    fn restore(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        (self.vals, self.seen) = decode_pair(payload)?;
        Ok(())
    }

    fn append_groups(
        &mut self,
        from: &dyn GroupsAccumulator,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let from = super::same_kind::<Self>(from)?;
        self.vals.append_picked(&from.vals, groups)?;
        self.seen.append_picked(&from.seen, groups)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
