//! Aggregate functions, and the one trait through which they keep per-group state.
//!
//! An aggregate is split in two, as in DataFusion's `GroupsAccumulator`:
//!
//! - an [`AggregateFunction`] is the plan-time description (its name, which input type it takes,
//!   which type it returns), shared by all workers;
//! - a [`GroupsAccumulator`] holds the state of *every group of one window* in flat vectors
//!   indexed by group id. The worker hands it a whole batch at once together with the group id of
//!   every row, so the per-row work is one indexed update in a tight loop, and the results of a
//!   window come out as one Arrow array ([`GroupsAccumulator::evaluate`]).
//!
//! Built in: [`count()`], [`sum`], [`min`], [`max`], [`mean`]. A new kind plugs in by implementing
//! the two traits and wrapping it in [`AggregateExpr::new`].

mod count;
mod mean;
mod minmax;
mod numeric;
mod sum;

use std::fmt::Debug;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_schema::DataType;

use crate::pages::{DecodeError, Fixed, Out, PagedVec, Reader};

pub use count::Count;
pub use mean::Mean;
pub use minmax::{Max, Min};
pub use sum::Sum;

/// The plan-time description of an aggregate.
pub trait AggregateFunction: Debug + Send + Sync {
    /// Short name, used for the default output column name (`count`, `sum_bytes`, …).
    fn name(&self) -> &str;

    /// Whether the function reads an input column (`count()` does not).
    fn takes_input(&self) -> bool {
        true
    }

    /// The output type for `input` (`None` for functions without input), or a message saying
    /// why the type is not supported.
    fn return_type(&self, input: Option<&DataType>) -> Result<DataType, String>;

    /// A fresh accumulator for one window; `input` was accepted by
    /// [`AggregateFunction::return_type`].
    fn accumulator(&self, input: Option<&DataType>) -> Box<dyn GroupsAccumulator>;
}

/// The state of one aggregate for every group of one window.
pub trait GroupsAccumulator: Send {
    /// Folds rows into their groups. `groups[i]` is the group of row `rows[i]` of `values`
    /// (or of row `i` when `rows` is `None`); groups are `< num_groups`, and the accumulator grows
    /// to `num_groups` first. `values` is `None` for functions without input.
    fn update(
        &mut self,
        values: Option<&ArrayRef>,
        rows: Option<&[u32]>,
        groups: &[u32],
        num_groups: usize,
    );

    /// The result of every group, in group order, consuming the state.
    fn evaluate(&mut self) -> ArrayRef;

    /// Approximate bytes of state held.
    fn size(&self) -> usize;

    /// A frozen copy of the state for a checkpoint. It must be cheap (share pages with the live
    /// state, see `PagedVec`): a worker takes it while its stream waits; it is encoded later on
    /// another thread. `None`: this accumulator cannot be checkpointed.
    fn snapshot(&self) -> Option<Box<dyn FrozenState>> {
        None
    }

    /// Replaces the state with one encoded by the [`FrozenState`] of a snapshot.
    fn restore(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        let _ = payload;
        Err(DecodeError(
            "this aggregate does not support checkpoints".into(),
        ))
    }

    /// Appends groups `groups` of `from`, in that order, after this accumulator's own groups.
    /// `from` is an accumulator of the same aggregate over the same input type (restored from
    /// a checkpoint): restoring a job at another parallelism moves each key's state to the
    /// worker that now owns its key group this way. The default refuses (such a job can only
    /// resume at the parallelism its checkpoint was taken at).
    fn append_groups(
        &mut self,
        from: &dyn GroupsAccumulator,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        let _ = (from, groups);
        Err(DecodeError(
            "an aggregate of this job cannot move groups between workers: resume at the \
             parallelism of the checkpoint"
                .into(),
        ))
    }

    /// This accumulator as [`Any`](std::any::Any), so that
    /// [`GroupsAccumulator::append_groups`] can recognize its own type in `from`.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// `from` as an accumulator of type `A`, for [`GroupsAccumulator::append_groups`].
pub(crate) fn same_kind<A: 'static>(from: &dyn GroupsAccumulator) -> Result<&A, DecodeError> {
    from.as_any()
        .and_then(|a| a.downcast_ref::<A>())
        .ok_or_else(|| DecodeError("accumulators of different aggregates".into()))
}

/// Accumulator state frozen at a checkpoint barrier, to be encoded off the worker thread.
pub trait FrozenState: Send + Sync {
    /// Exact number of bytes [`FrozenState::encode`] writes.
    fn encoded_len(&self) -> usize;
    /// Writes the state.
    fn encode(&self, out: &mut Out<'_>);
}

impl<T: Fixed> FrozenState for PagedVec<T> {
    fn encoded_len(&self) -> usize {
        PagedVec::encoded_len(self)
    }
    fn encode(&self, out: &mut Out<'_>) {
        PagedVec::encode(self, out)
    }
}

impl<A: FrozenState, B: FrozenState> FrozenState for (A, B) {
    fn encoded_len(&self) -> usize {
        self.0.encoded_len() + self.1.encoded_len()
    }
    fn encode(&self, out: &mut Out<'_>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

/// Decodes `payload` as the encoding of two paged vectors, refusing leftovers.
pub(crate) fn decode_pair<A: Fixed, B: Fixed>(
    payload: &[u8],
) -> Result<(PagedVec<A>, PagedVec<B>), DecodeError> {
    let mut r = Reader::new(payload);
    let pair = (PagedVec::decode(&mut r)?, PagedVec::decode(&mut r)?);
    if !r.is_empty() || pair.0.len() != pair.1.len() {
        return Err(DecodeError(
            "accumulator state of unequal or extra parts".into(),
        ));
    }
    Ok(pair)
}

/// One aggregate in a job: a function, its input column and its output column name.
#[derive(Debug, Clone)]
pub struct AggregateExpr {
    pub(crate) func: Arc<dyn AggregateFunction>,
    pub(crate) column: Option<String>,
    pub(crate) alias: Option<String>,
}

impl AggregateExpr {
    /// An aggregate of `func` over `column` (`None` for functions without input).
    pub fn new(func: Arc<dyn AggregateFunction>, column: Option<&str>) -> Self {
        Self {
            func,
            column: column.map(str::to_owned),
            alias: None,
        }
    }

    /// Names the output column.
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.alias = Some(name.into());
        self
    }

    /// The output column name: the alias, else `name` or `name_column`.
    pub fn output_name(&self) -> String {
        match (&self.alias, &self.column) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => format!("{}_{c}", self.func.name()),
            (None, None) => self.func.name().to_owned(),
        }
    }

    /// The input column, if any.
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }

    /// The function.
    pub fn function(&self) -> &Arc<dyn AggregateFunction> {
        &self.func
    }
}

/// The number of rows per group (output `count`, `UInt64`).
pub fn count() -> AggregateExpr {
    AggregateExpr::new(Arc::new(Count), None)
}

/// The sum of a numeric column per group (`Int64` for signed integers, `UInt64` for unsigned,
/// `Float64` for floats; integer sums wrap on overflow). Nulls are skipped.
pub fn sum(column: &str) -> AggregateExpr {
    AggregateExpr::new(Arc::new(Sum), Some(column))
}

/// The smallest value of a numeric column per group, of the column's type; null when a group
/// saw only nulls.
pub fn min(column: &str) -> AggregateExpr {
    AggregateExpr::new(Arc::new(Min), Some(column))
}

/// The largest value of a numeric column per group, of the column's type; null when a group
/// saw only nulls.
pub fn max(column: &str) -> AggregateExpr {
    AggregateExpr::new(Arc::new(Max), Some(column))
}

/// The arithmetic mean of a numeric column per group (`Float64`); null when a group saw only
/// nulls.
pub fn mean(column: &str) -> AggregateExpr {
    AggregateExpr::new(Arc::new(Mean), Some(column))
}
