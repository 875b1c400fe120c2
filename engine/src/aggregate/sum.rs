//! `sum(column)`: per-group sums, widened to 64 bits.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::DataType;

use super::numeric::{is_numeric, nulls_from_seen, visit, Widen};
use super::{decode_pair, AggregateFunction, FrozenState, GroupsAccumulator};
use crate::pages::{DecodeError, Fixed, PagedVec};

/// Sums a numeric column per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;

impl AggregateFunction for Sum {
    fn name(&self) -> &str {
        "sum"
    }

    fn return_type(&self, input: Option<&DataType>) -> Result<DataType, String> {
        match input {
            Some(dt) if dt.is_signed_integer() => Ok(DataType::Int64),
            Some(dt) if dt.is_unsigned_integer() => Ok(DataType::UInt64),
            Some(dt) if is_numeric(dt) => Ok(DataType::Float64),
            Some(dt) => Err(format!("sum needs a numeric column, not {dt}")),
            None => Err("sum needs an input column".into()),
        }
    }

    fn accumulator(&self, input: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        match input.expect("checked by return_type") {
            DataType::Int8 => acc::<Int8Type, Int64Type>(),
            DataType::Int16 => acc::<Int16Type, Int64Type>(),
            DataType::Int32 => acc::<Int32Type, Int64Type>(),
            DataType::Int64 => acc::<Int64Type, Int64Type>(),
            DataType::UInt8 => acc::<UInt8Type, UInt64Type>(),
            DataType::UInt16 => acc::<UInt16Type, UInt64Type>(),
            DataType::UInt32 => acc::<UInt32Type, UInt64Type>(),
            DataType::UInt64 => acc::<UInt64Type, UInt64Type>(),
            DataType::Float32 => acc::<Float32Type, Float64Type>(),
            DataType::Float64 => acc::<Float64Type, Float64Type>(),
            dt => unreachable!("sum over {dt} was refused by return_type"),
        }
    }
}

fn acc<T, O>() -> Box<dyn GroupsAccumulator>
where
    T: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
    T::Native: Widen<O::Native>,
    O::Native: Fixed,
{
    Box::new(SumAcc::<T, O> {
        sums: PagedVec::default(),
        seen: PagedVec::default(),
        _types: PhantomData,
    })
}

struct SumAcc<T: ArrowPrimitiveType, O: ArrowPrimitiveType> {
    sums: PagedVec<O::Native>,
    /// Whether a group saw a non-null value; a group of only nulls sums to null.
    seen: PagedVec<bool>,
    _types: PhantomData<fn() -> T>,
}

impl<T, O> GroupsAccumulator for SumAcc<T, O>
where
    T: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
    T::Native: Widen<O::Native>,
    O::Native: Fixed,
{
    fn update(
        &mut self,
        values: Option<&ArrayRef>,
        rows: Option<&[u32]>,
        groups: &[u32],
        n: usize,
    ) {
        self.sums.grow_to(n);
        self.seen.grow_to(n);
        let values = values.expect("sum has an input").as_primitive::<T>();
        let (mut sums, mut seen) = (self.sums.pages_mut(), self.seen.pages_mut());
        visit(values, rows, groups, |g, v| {
            let s = sums.at(g);
            *s = s.add_wrapping(v.widen());
            *seen.at(g) = true;
        });
    }

    fn evaluate(&mut self) -> ArrayRef {
        let nulls = nulls_from_seen(std::mem::take(&mut self.seen).to_vec());
        let sums = std::mem::take(&mut self.sums).to_vec();
        Arc::new(PrimitiveArray::<O>::new(sums.into(), nulls))
    }

    fn size(&self) -> usize {
        self.sums.size() + self.seen.size()
    }

    fn snapshot(&self) -> Option<Box<dyn FrozenState>> {
        Some(Box::new((self.sums.snapshot(), self.seen.snapshot())))
    }

    fn restore(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        (self.sums, self.seen) = decode_pair(payload)?;
        Ok(())
    }

    fn append_groups(
        &mut self,
        from: &dyn GroupsAccumulator,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let from = super::same_kind::<Self>(from)?;
        self.sums.append_picked(&from.sums, groups)?;
        self.seen.append_picked(&from.seen, groups)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
