//! Windowed aggregation of Arrow data: the one-shot [`aggregate`] and the streaming
//! [`NativeJob`].
//!
//! Both build the same [`JobSpec`] from the wrapper's normalised arguments ([`JobArgs`]).
//! `aggregate` reads the whole input (zero-copy) and hands it to [`weir_engine::aggregate`],
//! which pushes it through parallel inputs with no watermark until the end: nothing is late.
//! `NativeJob` starts a job at its first batch and keeps one input open: watermarks advance as
//! batches arrive (ascending, or with a bound on out-of-orderness), windows fire as they pass,
//! and rows behind a fired window are counted as late.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weir_engine::{
    count, max, mean, min, sum, AggregateExpr, EngineError, Input, Job, JobSpec, JobStats,
    RunningJob,
};

use crate::arrow::{import_stream, ArrowStream, TimeColumn};
use crate::errors::{Error, Result};

/// One aggregate as the wrapper hands it over: (function, input column, output name).
pub(crate) type AggArg = (String, Option<String>, Option<String>);

/// The job the wrapper asked for.
pub(crate) struct JobArgs {
    pub time: String,
    pub keys: Vec<String>,
    pub window_ms: u64,
    pub aggs: Vec<AggArg>,
    pub parallelism: Option<usize>,
    pub max_out_of_orderness_ms: Option<u64>,
}

impl JobArgs {
    pub(crate) fn spec(&self) -> Result<JobSpec> {
        let aggs = self.aggs.iter().map(agg_expr).collect::<Result<Vec<_>>>()?;
        let mut b = Job::builder()
            .parallelism(self.parallelism.unwrap_or_else(default_parallelism))
            .event_time(&self.time)
            .key_by(&self.keys)
            .tumbling(Duration::from_millis(self.window_ms))
            .aggregate(aggs);
        if let Some(bound) = self.max_out_of_orderness_ms {
            b = b.max_out_of_orderness(Duration::from_millis(bound));
        }
        Ok(b.build()?)
    }
}

/// One worker per core.
pub(crate) fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn agg_expr((func, column, alias): &AggArg) -> Result<AggregateExpr> {
    let needs = |f: fn(&str) -> AggregateExpr| -> Result<AggregateExpr> {
        column.as_deref().map(f).ok_or_else(|| {
            Error::Usage(format!(
                "aggregate `{func}` needs a column: ({func:?}, \"column\")"
            ))
        })
    };
    let expr = match func.as_str() {
        "count" => match column {
            None => count(),
            Some(c) => {
                return Err(Error::Usage(format!(
                    "`count` counts rows and takes no column (got {c:?})"
                )))
            }
        },
        "sum" => needs(sum)?,
        "min" => needs(min)?,
        "max" => needs(max)?,
        "mean" => needs(mean)?,
        other => {
            return Err(Error::Usage(format!(
                "unknown aggregate `{other}` (count, sum, min, max, mean)"
            )))
        }
    };
    Ok(match alias {
        Some(a) => expr.alias(a),
        None => expr,
    })
}

/// The counters of a finished job, as a dict.
pub(crate) fn stats_dict<'py>(py: Python<'py>, s: &JobStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows_in", s.rows_in)?;
    d.set_item("late_rows", s.late_rows)?;
    d.set_item("late_by_window", s.late_by_window.clone())?;
    d.set_item("windows_fired", s.windows_fired)?;
    d.set_item("result_rows", s.result_rows)?;
    d.set_item("parallelism", s.worker_rows.len())?;
    d.set_item("elapsed_s", s.elapsed.as_secs_f64())?;
    Ok(d)
}

/// Reads every batch of `data` (a `__arrow_c_stream__` object) and aggregates them.
#[pyfunction]
#[pyo3(signature = (data, time, keys, window_ms, aggs, parallelism = None))]
pub(crate) fn aggregate(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    time: String,
    keys: Vec<String>,
    window_ms: u64,
    aggs: Vec<AggArg>,
    parallelism: Option<usize>,
) -> PyResult<ArrowStream> {
    let args = JobArgs {
        time,
        keys,
        window_ms,
        aggs,
        parallelism,
        max_out_of_orderness_ms: None,
    };
    let spec = args.spec()?;
    let reader = import_stream(data)?;
    let (schema, results) = py.detach(move || -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let time = TimeColumn::new(&arrow_array::RecordBatchReader::schema(&reader), &args.time);
        // The plan's errors (a missing column) come before any data is read.
        let out_schema = spec.output_schema(&time.schema)?;
        let mut batches = Vec::new();
        for b in reader {
            time.convert(b?, &mut batches)?;
        }
        Ok((out_schema, weir_engine::aggregate(batches, &spec)?))
    })?;
    Ok(ArrowStream::new(schema, results))
}

/// A running streaming job: one input, results taken as windows fire.
struct Running {
    job: RunningJob,
    input: Input,
    time: TimeColumn,
    /// The schema of the first push, before the event time's conversion.
    input_schema: SchemaRef,
    results: mpsc::Receiver<RecordBatch>,
    output_schema: SchemaRef,
}

enum JobState {
    /// Not started: the schema comes with the first batch.
    Idle,
    Running(Box<Running>),
    /// Finished (or failed): the output schema, if it ever started, and the stats.
    Done(Option<SchemaRef>, Option<Box<JobStats>>),
}

/// A streaming job fed batch by batch (`weir.Job` wraps it).
#[pyclass(module = "weir._native", frozen)]
pub struct NativeJob {
    spec: JobSpec,
    time: String,
    state: Mutex<JobState>,
}

impl NativeJob {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, JobState>> {
        self.state
            .lock()
            .map_err(|_| Error::Usage("the job's lock was poisoned by an earlier panic".into()))
    }
}

/// The plan error for a push whose schema is not the first push's, naming the column.
fn schema_change(first: &SchemaRef, now: &SchemaRef) -> EngineError {
    for f in first.fields() {
        match now.field_with_name(f.name()) {
            Ok(g) if g.data_type() == f.data_type() => {}
            Ok(g) => {
                return EngineError::Plan(format!(
                "column `{}` of a pushed batch is {}, the job expects {} (the first push's type)",
                f.name(),
                g.data_type(),
                f.data_type()
            ))
            }
            Err(_) => {
                return EngineError::Plan(format!("a pushed batch has no column `{}`", f.name()))
            }
        }
    }
    EngineError::Plan(
        "a pushed batch's columns differ from the first push's (order or extra columns)".into(),
    )
}

fn drain(rx: &mpsc::Receiver<RecordBatch>) -> Vec<RecordBatch> {
    rx.try_iter().collect()
}

#[pymethods]
impl NativeJob {
    #[new]
    #[pyo3(signature = (time, keys, window_ms, aggs, parallelism = None, max_out_of_orderness_ms = None))]
    fn new(
        time: String,
        keys: Vec<String>,
        window_ms: u64,
        aggs: Vec<AggArg>,
        parallelism: Option<usize>,
        max_out_of_orderness_ms: Option<u64>,
    ) -> PyResult<Self> {
        let args = JobArgs {
            time: time.clone(),
            keys,
            window_ms,
            aggs,
            parallelism,
            max_out_of_orderness_ms,
        };
        Ok(Self {
            spec: args.spec()?,
            time,
            state: Mutex::new(JobState::Idle),
        })
    }

    /// Pushes every batch of `data` (a `__arrow_c_stream__` object), in order. Blocks while the
    /// workers are busy (backpressure), with the GIL released.
    fn push(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let reader = import_stream(data)?;
        py.detach(|| -> Result<()> {
            let mut state = self.lock()?;
            if matches!(*state, JobState::Done(..)) {
                return Err(Error::Usage(
                    "the job has finished; start a new Job to push more".into(),
                ));
            }
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            if matches!(*state, JobState::Idle) {
                let time = TimeColumn::new(&schema, &self.time);
                let output_schema = self.spec.output_schema(&time.schema)?;
                let (tx, rx) = mpsc::channel();
                // An unbounded channel: results never block the workers, so a single Python
                // thread can push and take results in turn without deadlock.
                let sink = move |b: RecordBatch| -> Result<(), weir_engine::SinkError> {
                    tx.send(b)
                        .map_err(|_| "the job's results were dropped".into())
                };
                let mut job = self
                    .spec
                    .start_with_sink(Arc::clone(&time.schema), Box::new(sink))?;
                let input = job
                    .input()
                    .ok_or_else(|| Error::Usage("internal: a started job has no input".into()))?;
                *state = JobState::Running(Box::new(Running {
                    job,
                    input,
                    time,
                    input_schema: Arc::clone(&schema),
                    results: rx,
                    output_schema,
                }));
            }
            let JobState::Running(run) = &mut *state else {
                unreachable!("started above")
            };
            if schema.fields() != run.input_schema.fields() {
                return Err(schema_change(&run.input_schema, &schema).into());
            }
            let mut batches = Vec::new();
            for b in reader {
                batches.clear();
                let b = b?;
                run.time.convert(b, &mut batches)?;
                for b in batches.drain(..) {
                    if let Err(e) = run.input.push(b) {
                        if matches!(e, EngineError::Closed) {
                            // The job stopped: its own error says why.
                            let JobState::Running(run) =
                                std::mem::replace(&mut *state, JobState::Done(None, None))
                            else {
                                unreachable!()
                            };
                            let Running { job, input, .. } = *run;
                            drop(input);
                            return Err(job.join().err().unwrap_or(e).into());
                        }
                        return Err(e.into());
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The result batches of the windows that have fired so far (never blocks).
    fn results(&self) -> PyResult<ArrowStream> {
        let state = self.lock()?;
        Ok(match &*state {
            JobState::Running(run) => {
                ArrowStream::new(Arc::clone(&run.output_schema), drain(&run.results))
            }
            JobState::Done(schema, _) => ArrowStream::new(
                schema
                    .clone()
                    .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty())),
                Vec::new(),
            ),
            JobState::Idle => ArrowStream::new(Arc::new(arrow_schema::Schema::empty()), Vec::new()),
        })
    }

    /// Ends the input: every open window fires. Returns the remaining results.
    fn finish(&self, py: Python<'_>) -> PyResult<ArrowStream> {
        let out = py.detach(|| -> Result<ArrowStream> {
            let mut state = self.lock()?;
            match std::mem::replace(&mut *state, JobState::Done(None, None)) {
                JobState::Running(run) => {
                    let Running {
                        job,
                        input,
                        results,
                        output_schema,
                        ..
                    } = *run;
                    let finished = input.finish();
                    let joined = job.join();
                    let stats = match (finished, joined) {
                        (_, Err(e)) | (Err(e), Ok(_)) => return Err(e.into()),
                        (Ok(()), Ok(s)) => s,
                    };
                    let rest = drain(&results);
                    *state =
                        JobState::Done(Some(Arc::clone(&output_schema)), Some(Box::new(stats)));
                    Ok(ArrowStream::new(output_schema, rest))
                }
                JobState::Idle => Ok(ArrowStream::new(
                    Arc::new(arrow_schema::Schema::empty()),
                    Vec::new(),
                )),
                done @ JobState::Done(..) => {
                    *state = done;
                    Err(Error::Usage("the job has already finished".into()))
                }
            }
        })?;
        Ok(out)
    }

    /// The job's counters once finished (`None` before).
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let state = self.lock()?;
        match &*state {
            JobState::Done(_, Some(s)) => Ok(Some(stats_dict(py, s)?)),
            _ => Ok(None),
        }
    }
}
