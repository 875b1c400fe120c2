//! `count()`: rows per group.

use std::sync::Arc;

use arrow_array::{ArrayRef, UInt64Array};
use arrow_schema::DataType;

use super::{same_kind, AggregateFunction, FrozenState, GroupsAccumulator};
use crate::pages::{DecodeError, PagedVec, Reader};

/// Counts rows per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl AggregateFunction for Count {
    fn name(&self) -> &str {
        "count"
    }

    fn takes_input(&self) -> bool {
        false
    }

    fn return_type(&self, _input: Option<&DataType>) -> Result<DataType, String> {
        Ok(DataType::UInt64)
    }

    fn accumulator(&self, _input: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        Box::<CountAcc>::default()
    }
}

#[derive(Debug, Default)]
struct CountAcc {
    counts: PagedVec<u64>,
}

impl GroupsAccumulator for CountAcc {
    fn update(&mut self, _: Option<&ArrayRef>, _: Option<&[u32]>, groups: &[u32], n: usize) {
        self.counts.grow_to(n);
        let mut counts = self.counts.pages_mut();
        for &g in groups {
            *counts.at(g as usize) += 1;
        }
    }

    fn evaluate(&mut self) -> ArrayRef {
        Arc::new(UInt64Array::from(std::mem::take(&mut self.counts).to_vec()))
    }

    fn size(&self) -> usize {
        self.counts.size()
    }

    fn snapshot(&self) -> Option<Box<dyn FrozenState>> {
        Some(Box::new(self.counts.snapshot()))
    }

    fn restore(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(payload);
        self.counts = PagedVec::decode(&mut r)?;
        if !r.is_empty() {
            return Err(DecodeError("count state has extra bytes".into()));
        }
        Ok(())
    }

    fn append_groups(
        &mut self,
        from: &dyn GroupsAccumulator,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let from = same_kind::<Self>(from)?;
        self.counts.append_picked(&from.counts, groups)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
