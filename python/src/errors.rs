//! weir's errors as Python exceptions, keeping weir's messages.
//!
//! | weir error                                   | Python exception                      |
//! |----------------------------------------------|---------------------------------------|
//! | `EngineError::Plan` (missing column, type)   | `weir.PlanError` (a `weir.WeirError`) |
//! | any other `EngineError`                      | `weir.WeirError`                      |
//! | `weir_io::Error::Malformed` (strict parsing) | `weir.MalformedLineError`, `.line`    |
//! | `weir_io::Error::Io`, file not found         | `FileNotFoundError`                   |
//! | `weir_io::Error::Io`, other                  | `OSError`                             |
//! | other `weir_io::Error`s (unknown format, …)  | `weir.WeirError`                      |
//! | an Arrow error (a bad stream from a producer)| `weir.WeirError`                      |

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError};
use pyo3::prelude::*;
use weir_engine::EngineError;

pyo3::create_exception!(
    weir,
    WeirError,
    PyException,
    "An error reported by weir, with weir's message."
);
pyo3::create_exception!(
    weir,
    PlanError,
    WeirError,
    "The job does not fit the data: a missing column, a type that cannot be a key or be aggregated."
);
pyo3::create_exception!(
    weir,
    MalformedLineError,
    WeirError,
    "A malformed log line in strict mode; `line` is its 1-based number."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WeirError", py.get_type::<WeirError>())?;
    m.add("PlanError", py.get_type::<PlanError>())?;
    m.add("MalformedLineError", py.get_type::<MalformedLineError>())?;
    Ok(())
}

/// Any error of the binding, converted to a Python exception once the GIL is held again.
#[derive(Debug)]
pub(crate) enum Error {
    Engine(EngineError),
    Io(weir_io::Error),
    Arrow(arrow_schema::ArrowError),
    /// A usage error found by the binding itself.
    Usage(String),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Error::Engine(e)
    }
}

impl From<weir_io::Error> for Error {
    fn from(e: weir_io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Arrow(e)
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Engine(e @ EngineError::Plan(_)) => PlanError::new_err(e.to_string()),
            Error::Engine(e) => WeirError::new_err(e.to_string()),
            Error::Io(e) => io_error(e),
            Error::Arrow(e) => WeirError::new_err(e.to_string()),
            Error::Usage(m) => WeirError::new_err(m),
        }
    }
}

fn io_error(e: weir_io::Error) -> PyErr {
    let message = e.to_string();
    match e {
        weir_io::Error::Malformed { line, .. } => Python::attach(|py| {
            let err = MalformedLineError::new_err(message);
            // The line number as an attribute, for code that handles the error.
            let _ = err.value(py).setattr("line", line);
            err
        }),
        weir_io::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        weir_io::Error::Io { .. } | weir_io::Error::NotRegular { .. } => {
            PyOSError::new_err(message)
        }
        _ => WeirError::new_err(message),
    }
}
