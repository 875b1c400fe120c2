//! `count()`: rows per group.

use std::sync::Arc;

use arrow_array::{ArrayRef, UInt64Array};
use arrow_schema::DataType;

use super::{AggregateFunction, GroupsAccumulator};

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
    counts: Vec<u64>,
}

impl GroupsAccumulator for CountAcc {
    fn update(&mut self, _: Option<&ArrayRef>, _: Option<&[u32]>, groups: &[u32], n: usize) {
        self.counts.resize(n, 0);
        let counts = &mut self.counts[..];
        for &g in groups {
            counts[g as usize] += 1;
        }
    }

    fn evaluate(&mut self) -> ArrayRef {
        Arc::new(UInt64Array::from(std::mem::take(&mut self.counts)))
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}
