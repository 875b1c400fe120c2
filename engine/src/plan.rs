//! A job specification checked against an input schema.
//!
//! Everything that can be wrong with a job before data flows (a missing column, a key or
//! aggregate of an unsupported type, an event-time column that is not a millisecond timestamp,
//! clashing output names) is found here, once, and reported naming the column. The workers then
//! trust the [`Plan`] and never re-check.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::aggregate::{AggregateExpr, GroupsAccumulator};
use crate::error::{EngineError, Result};
use crate::hash::KeyKind;
use crate::spec::JobSpec;
use crate::window::TumblingWindows;

/// A job bound to an input schema.
#[derive(Debug)]
pub(crate) struct Plan {
    pub input_schema: SchemaRef,
    pub ts_index: usize,
    pub ts_timezone: Option<Arc<str>>,
    pub key_indices: Vec<usize>,
    pub key_kind: KeyKind,
    pub aggregates: Vec<AggregateExpr>,
    pub agg_inputs: Vec<Option<usize>>,
    agg_input_types: Vec<Option<DataType>>,
    pub windows: TumblingWindows,
    pub output_schema: SchemaRef,
    /// Order each fired window's rows by key. With one input a worker sees rows in that
    /// input's order, so first appearance is already the same on every run; with several it
    /// depends on how they interleave.
    pub sort_rows: bool,
}

fn column(schema: &Schema, name: &str, role: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        EngineError::Plan(format!(
            "{role} column `{name}` is not in the input schema (columns: {})",
            have.join(", ")
        ))
    })
}

impl Plan {
    pub(crate) fn new(spec: &JobSpec, schema: SchemaRef) -> Result<Self> {
        let ts_index = column(&schema, &spec.event_time, "event-time")?;
        let ts_field = schema.field(ts_index);
        let ts_timezone = match ts_field.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, tz) => tz.clone(),
            other => {
                return Err(EngineError::Plan(format!(
                    "event-time column `{}` must be Timestamp(Millisecond), not {other}",
                    spec.event_time
                )))
            }
        };

        let mut key_indices = Vec::with_capacity(spec.keys.len());
        let mut key_types = Vec::with_capacity(spec.keys.len());
        for k in &spec.keys {
            let i = column(&schema, k, "key")?;
            let dt = schema.field(i).data_type();
            if !arrow_row::RowConverter::supports_fields(&[arrow_row::SortField::new(dt.clone())]) {
                return Err(EngineError::Plan(format!(
                    "key column `{k}` has type {dt}, which cannot be a key"
                )));
            }
            key_indices.push(i);
            key_types.push(dt.clone());
        }
        let key_kind = KeyKind::for_types(&key_types)?;

        let mut agg_inputs = Vec::with_capacity(spec.aggregates.len());
        let mut agg_input_types = Vec::with_capacity(spec.aggregates.len());
        let mut out_fields = vec![
            Field::new("window_start", ts_field.data_type().clone(), false),
            Field::new("window_end", ts_field.data_type().clone(), false),
        ];
        for &i in &key_indices {
            out_fields.push(schema.field(i).clone());
        }
        for agg in &spec.aggregates {
            let (input, dt) = match (&agg.column, agg.func.takes_input()) {
                (Some(c), true) => {
                    let i = column(&schema, c, &format!("{} input", agg.func.name()))?;
                    (Some(i), Some(schema.field(i).data_type().clone()))
                }
                (None, false) => (None, None),
                (Some(c), false) => {
                    return Err(EngineError::Plan(format!(
                        "{} takes no input column, but `{c}` was given",
                        agg.func.name()
                    )))
                }
                (None, true) => {
                    return Err(EngineError::Plan(format!(
                        "{} needs an input column",
                        agg.func.name()
                    )))
                }
            };
            let out = agg.func.return_type(dt.as_ref()).map_err(|why| {
                EngineError::Plan(format!(
                    "aggregate `{}` over column `{}`: {why}",
                    agg.output_name(),
                    agg.column.as_deref().unwrap_or("")
                ))
            })?;
            out_fields.push(Field::new(agg.output_name(), out, true));
            agg_inputs.push(input);
            agg_input_types.push(dt);
        }
        let mut seen = HashSet::new();
        for f in &out_fields {
            if !seen.insert(f.name().clone()) {
                return Err(EngineError::Plan(format!(
                    "output column `{}` appears twice; give an aggregate another name with .alias()",
                    f.name()
                )));
            }
        }

        Ok(Self {
            input_schema: schema,
            ts_index,
            ts_timezone,
            key_indices,
            key_kind,
            aggregates: spec.aggregates.clone(),
            agg_inputs,
            agg_input_types,
            windows: spec.windows,
            output_schema: Arc::new(Schema::new(out_fields)),
            sort_rows: spec.inputs > 1,
        })
    }

    /// Fresh accumulators for one window, one per aggregate.
    pub(crate) fn new_accumulators(&self) -> Vec<Box<dyn GroupsAccumulator>> {
        self.aggregates
            .iter()
            .zip(&self.agg_input_types)
            .map(|(a, dt)| a.func.accumulator(dt.as_ref()))
            .collect()
    }

    /// The key columns of `batch`.
    pub(crate) fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.key_indices
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect()
    }

    /// The event times of `batch`.
    pub(crate) fn timestamps<'a>(&self, batch: &'a RecordBatch) -> &'a [i64] {
        batch
            .column(self.ts_index)
            .as_primitive::<TimestampMillisecondType>()
            .values()
    }

    /// Checks that a pushed batch matches the schema the job was planned for.
    pub(crate) fn check_batch(&self, batch: &RecordBatch) -> Result<()> {
        let schema = batch.schema();
        if !Arc::ptr_eq(&schema, &self.input_schema)
            && schema.fields() != self.input_schema.fields()
        {
            for f in self.input_schema.fields() {
                match schema.field_with_name(f.name()) {
                    Ok(g) if g.data_type() == f.data_type() => {}
                    Ok(g) => {
                        return Err(EngineError::Plan(format!(
                            "column `{}` of a pushed batch is {}, the job expects {}",
                            f.name(),
                            g.data_type(),
                            f.data_type()
                        )))
                    }
                    Err(_) => {
                        return Err(EngineError::Plan(format!(
                            "a pushed batch has no column `{}`",
                            f.name()
                        )))
                    }
                }
            }
            return Err(EngineError::Plan(
                "a pushed batch's columns differ from the job's schema (order or extra columns)"
                    .into(),
            ));
        }
        let ts = batch.column(self.ts_index);
        if ts.null_count() > 0 {
            return Err(EngineError::Plan(format!(
                "event-time column `{}` has {} null values; every row needs an event time",
                self.input_schema.field(self.ts_index).name(),
                ts.null_count()
            )));
        }
        Ok(())
    }
}
