//! `weir._native`: the Rust half of weir's Python package.
//!
//! ```text
//!  Python (weir/__init__.py)            Rust (this crate)                      weir crates
//!  ─────────────────────────            ─────────────────                      ───────────
//!  pyarrow.Table / batches ──__arrow_c_stream__──▶ arrow::import ─▶ batches ─▶ weir_engine::aggregate
//!                                                                              weir_engine Job/Input
//!  log path ─────────────────────────────────────▶ logs::replay / LogReader ─▶ weir_io parser
//!  pyarrow.RecordBatchReader ◀──__arrow_c_stream__── arrow::ArrowStream ◀──── result batches
//! ```
//!
//! Data crosses the boundary only through the Arrow C stream interface (PyCapsules of the Arrow
//! PyCapsule interface): buffers are shared, never copied. Every call that does real work
//! releases the GIL ([`Python::detach`]); the only Python code that can run meanwhile on weir's
//! behalf is a producer's (a pyarrow reader over a Python generator takes the GIL itself).
//!
//! The Python wrapper validates and normalises arguments (window strings, aggregate specs) and
//! holds the type hints and docstrings; this crate trusts what it is handed after that.

mod aggregate;
mod arrow;
mod errors;
mod logs;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<arrow::ArrowStream>()?;
    m.add_class::<aggregate::NativeJob>()?;
    m.add_class::<logs::NativeLogReader>()?;
    m.add_function(wrap_pyfunction!(aggregate::aggregate, m)?)?;
    m.add_function(wrap_pyfunction!(logs::replay, m)?)?;
    m.add_function(wrap_pyfunction!(logs::open_log, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
