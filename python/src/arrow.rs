//! Arrow across the boundary: the C stream interface in both directions, through the PyCapsules
//! of the Arrow PyCapsule interface (`__arrow_c_stream__`).
//!
//! In: any Python object with `__arrow_c_stream__` (a `pyarrow.Table`, a `RecordBatchReader`,
//! a polars `DataFrame`, …) is imported with [`import_stream`]; its batches share the producer's
//! buffers (arrow-rs imports without copying or validating: the producer vouches for them).
//!
//! Out: [`ArrowStream`] is a one-shot Python object with `__arrow_c_stream__`, over batches
//! held in Rust; `pyarrow.RecordBatchReader.from_stream` or `pyarrow.table` take it without a
//! copy.
//!
//! Event time: the engine wants `Timestamp(Millisecond)`. Other timestamp units are converted
//! here ([`TimeColumn`]), the one column that is copied; everything else passes through.

use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::types::{TimestampMicrosecondType, TimestampNanosecondType, TimestampSecondType};
use arrow_array::{
    Array, ArrayRef, RecordBatch, RecordBatchIterator, RecordBatchReader, TimestampMillisecondArray,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::errors::{Error, Result};

const STREAM_CAPSULE: &std::ffi::CStr = c"arrow_array_stream";

/// Batches longer than this are sliced (zero-copy) before they enter the engine, so that a
/// table of one huge chunk still spreads over several parallel inputs.
pub(crate) const MAX_BATCH_ROWS: usize = 1 << 16;

/// Imports `obj.__arrow_c_stream__()`. Call with the GIL held; read the returned reader with
/// the GIL released.
pub(crate) fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatchStreamReader> {
    if !obj.hasattr("__arrow_c_stream__")? {
        return Err(PyValueError::new_err(format!(
            "expected Arrow data (an object with __arrow_c_stream__), got {}",
            obj.get_type().name()?
        )));
    }
    let capsule = obj
        .call_method0("__arrow_c_stream__")?
        .cast_into::<PyCapsule>()
        .map_err(PyErr::from)?;
    let ptr = capsule
        .pointer_checked(Some(STREAM_CAPSULE))?
        .cast::<FFI_ArrowArrayStream>();
    // SAFETY: a capsule named `arrow_array_stream` holds a valid, properly aligned
    // `ArrowArrayStream` (the PyCapsule interface's contract). `from_raw` moves it out and leaves
    // a released stream behind, which the capsule's destructor then skips; the capsule itself
    // lives until the end of this function, past the move.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(ptr.as_ptr()) };
    RecordBatchStreamReader::try_new(stream).map_err(|e| Error::Arrow(e).into())
}

/// A one-shot `__arrow_c_stream__` over result batches.
#[pyclass(module = "weir._native", frozen)]
pub struct ArrowStream {
    schema: SchemaRef,
    batches: Mutex<Option<Vec<RecordBatch>>>,
}

impl ArrowStream {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            batches: Mutex::new(Some(batches)),
        }
    }
}

#[pymethods]
impl ArrowStream {
    /// Exports the batches as an Arrow C stream (once). `requested_schema` is ignored: the
    /// batches are handed over as they are.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = self
            .batches
            .lock()
            .map_err(|_| Error::Usage("a result stream's lock was poisoned".into()))?
            .take()
            .ok_or_else(|| Error::Usage("this result stream was already consumed".into()))?;
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(RecordBatchIterator::new(
            batches.into_iter().map(Ok::<_, ArrowError>),
            Arc::clone(&self.schema),
        ));
        // The capsule owns the stream; its destructor releases it unless a consumer moved it
        // out first (which leaves a released stream behind).
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(reader), STREAM_CAPSULE)
    }

    /// Number of batches not yet exported.
    fn __len__(&self) -> usize {
        self.batches
            .lock()
            .ok()
            .and_then(|b| b.as_ref().map(Vec::len))
            .unwrap_or(0)
    }
}

/// How the event-time column is brought to `Timestamp(Millisecond)`.
#[derive(Debug, Clone)]
pub(crate) struct TimeColumn {
    index: usize,
    /// Divisor from the column's unit to milliseconds (1: no conversion; 0: seconds, multiply).
    unit: TimeUnit,
    /// The schema the engine sees.
    pub schema: SchemaRef,
}

impl TimeColumn {
    /// For input of `schema` with event time in `name`. A missing column or another type is
    /// left to the engine's plan, which names the column in its error.
    pub(crate) fn new(schema: &SchemaRef, name: &str) -> Self {
        let unconverted = |schema: &SchemaRef| TimeColumn {
            index: usize::MAX,
            unit: TimeUnit::Millisecond,
            schema: Arc::clone(schema),
        };
        let Ok(index) = schema.index_of(name) else {
            return unconverted(schema);
        };
        let field = schema.field(index);
        match field.data_type() {
            DataType::Timestamp(unit, tz) if *unit != TimeUnit::Millisecond => {
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields[index] = field
                    .clone()
                    .with_data_type(DataType::Timestamp(TimeUnit::Millisecond, tz.clone()));
                TimeColumn {
                    index,
                    unit: *unit,
                    schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
                }
            }
            _ => unconverted(schema),
        }
    }

    /// `batch` with its event time in milliseconds (floored), sliced into pieces of at most
    /// [`MAX_BATCH_ROWS`] rows, appended to `out`.
    pub(crate) fn convert(&self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let batch = if self.index == usize::MAX {
            batch
        } else {
            let col = batch.column(self.index);
            let ms: Vec<i64> = match self.unit {
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .values()
                    .iter()
                    .map(|s| s.saturating_mul(1000))
                    .collect(),
                TimeUnit::Microsecond => col
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter()
                    .map(|us| us.div_euclid(1000))
                    .collect(),
                TimeUnit::Nanosecond => col
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .iter()
                    .map(|ns| ns.div_euclid(1_000_000))
                    .collect(),
                TimeUnit::Millisecond => unreachable!("no conversion needed"),
            };
            let tz = match self.schema.field(self.index).data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            let converted: ArrayRef = Arc::new(
                TimestampMillisecondArray::new(ScalarBuffer::from(ms), col.nulls().cloned())
                    .with_timezone_opt(tz),
            );
            let mut columns = batch.columns().to_vec();
            columns[self.index] = converted;
            RecordBatch::try_new(Arc::clone(&self.schema), columns)?
        };
        let n = batch.num_rows();
        if n <= MAX_BATCH_ROWS {
            if n > 0 {
                out.push(batch);
            }
        } else {
            let mut offset = 0;
            while offset < n {
                let len = MAX_BATCH_ROWS.min(n - offset);
                out.push(batch.slice(offset, len));
                offset += len;
            }
        }
        Ok(())
    }
}
