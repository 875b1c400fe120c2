//! Splitting a batch into one sub-batch per partition by the hash of its key columns.
//!
//! One pass hashes the keys ([`KeyKind::hash_rows`]) and picks each row's partition (the worker
//! that owns the key's key group, module `keygroup`: one table lookup per row), a counting
//! pass lays the row indices out partition by partition, and Arrow's `take` gathers each
//! partition's rows column by column. No row ever passes through a Rust struct. When every row
//! lands in one partition (always, with parallelism 1) the batch is passed on untouched.

use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use arrow_select::take::take_record_batch;

use crate::error::Result;
use crate::keygroup::Assignment;
use crate::plan::Plan;
use crate::spec::JobSpec;

/// Splits batches by key hash; holds scratch buffers reused from batch to batch.
#[derive(Debug)]
pub struct Partitioner {
    plan: Arc<Plan>,
    partitions: usize,
    assignment: Assignment,
    hashes: Vec<u64>,
    parts: Vec<u32>,
}

impl Partitioner {
    /// A partitioner for `spec`'s keys over batches of `schema`, into `spec.parallelism()` parts.
    pub fn new(spec: &JobSpec, schema: SchemaRef) -> Result<Self> {
        Ok(Self::with_plan(
            Arc::new(Plan::new(spec, schema)?),
            spec.parallelism(),
            spec.key_groups(),
        ))
    }

    pub(crate) fn with_plan(plan: Arc<Plan>, partitions: usize, key_groups: usize) -> Self {
        let partitions = partitions.max(1);
        Self {
            plan,
            partitions,
            assignment: Assignment::new(partitions, key_groups.max(partitions)),
            hashes: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// Splits `batch` into one optional sub-batch per partition: entry `i` holds the rows whose
    /// key belongs to partition `i`, in their original order.
    pub fn split(&mut self, batch: &RecordBatch) -> Result<Vec<Option<RecordBatch>>> {
        let plan = &self.plan;
        let p = self.partitions;
        let mut out: Vec<Option<RecordBatch>> = vec![None; p];
        if batch.num_rows() == 0 {
            return Ok(out);
        }
        if p == 1 {
            out[0] = Some(batch.clone());
            return Ok(out);
        }
        self.hashes.clear();
        plan.key_kind
            .hash_rows(&plan.key_columns(batch), &mut self.hashes)?;
        self.parts.clear();
        let mut counts = vec![0u32; p];
        for &h in &self.hashes {
            let part = self.assignment.worker_of(h);
            counts[part] += 1;
            self.parts.push(part as u32);
        }
        if let Some(only) = counts.iter().position(|&c| c as usize == batch.num_rows()) {
            out[only] = Some(batch.clone());
            return Ok(out);
        }
        // Counting sort of row indices by partition.
        let mut starts = Vec::with_capacity(p + 1);
        let mut acc = 0u32;
        for &c in &counts {
            starts.push(acc);
            acc += c;
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; batch.num_rows()];
        for (row, &part) in self.parts.iter().enumerate() {
            let slot = &mut next[part as usize];
            order[*slot as usize] = row as u32;
            *slot += 1;
        }
        let order = arrow_buffer::ScalarBuffer::from(order);
        for (part, slot) in out.iter_mut().enumerate() {
            if counts[part] == 0 {
                continue;
            }
            let indices = UInt32Array::new(
                order.slice(starts[part] as usize, counts[part] as usize),
                None,
            );
            *slot = Some(take_record_batch(batch, &indices)?);
        }
        Ok(out)
    }
}
