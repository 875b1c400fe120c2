//! `mean(column)`: per-group arithmetic mean as `Float64`.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, ArrowPrimitiveType, Float64Array};
use arrow_schema::DataType;

use super::numeric::{dispatch_numeric, is_numeric, nulls_from_seen, visit, Widen};
use super::{decode_pair, AggregateFunction, FrozenState, GroupsAccumulator};
use crate::pages::{DecodeError, PagedVec};

/// The mean of a numeric column per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mean;

impl AggregateFunction for Mean {
    fn name(&self) -> &str {
        "mean"
    }

    fn return_type(&self, input: Option<&DataType>) -> Result<DataType, String> {
        match input {
            Some(dt) if is_numeric(dt) => Ok(DataType::Float64),
            Some(dt) => Err(format!("mean needs a numeric column, not {dt}")),
            None => Err("mean needs an input column".into()),
        }
    }

    fn accumulator(&self, input: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        dispatch_numeric!(input.expect("checked"), T => Box::new(MeanAcc::<T> {
            sums: PagedVec::default(),
            counts: PagedVec::default(),
            _type: PhantomData,
        }), _ => unreachable!("checked by return_type"))
    }
}

struct MeanAcc<T> {
    sums: PagedVec<f64>,
    counts: PagedVec<u64>,
    _type: PhantomData<fn() -> T>,
}

impl<T> GroupsAccumulator for MeanAcc<T>
where
    T: ArrowPrimitiveType,
    T::Native: Widen<f64>,
{
    fn update(
        &mut self,
        values: Option<&ArrayRef>,
        rows: Option<&[u32]>,
        groups: &[u32],
        n: usize,
    ) {
        self.sums.grow_to(n);
        self.counts.grow_to(n);
        let values = values.expect("mean has an input").as_primitive::<T>();
        let (mut sums, mut counts) = (self.sums.pages_mut(), self.counts.pages_mut());
        visit(values, rows, groups, |g, v| {
            *sums.at(g) += v.widen();
            *counts.at(g) += 1;
        });
    }

    fn evaluate(&mut self) -> ArrayRef {
        let sums = std::mem::take(&mut self.sums).to_vec();
        let counts = std::mem::take(&mut self.counts).to_vec();
        let means: Vec<f64> = sums
            .iter()
            .zip(&counts)
            .map(|(&s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect();
        let nulls = nulls_from_seen(counts.iter().map(|&c| c > 0).collect());
        Arc::new(Float64Array::new(means.into(), nulls))
    }

    fn size(&self) -> usize {
        self.sums.size() + self.counts.size()
    }

    fn snapshot(&self) -> Option<Box<dyn FrozenState>> {
        Some(Box::new((self.sums.snapshot(), self.counts.snapshot())))
    }

    fn restore(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        (self.sums, self.counts) = decode_pair(payload)?;
        Ok(())
    }

    fn append_groups(
        &mut self,
        from: &dyn GroupsAccumulator,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let from = super::same_kind::<Self>(from)?;
        self.sums.append_picked(&from.sums, groups)?;
        self.counts.append_picked(&from.counts, groups)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
