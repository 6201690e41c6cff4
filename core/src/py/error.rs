//! CoreError → Python exception, in one place.
//!
//! The exception classes live in `cardsvc.errors` (so core and domain errors share one root,
//! `CardsvcError`); this module calls `cardsvc.errors.from_core(code, message, details)`. The
//! code comes from `CoreError::code`, whose `match` has no catch-all arm, so a new variant does
//! not compile until it has a code, and the drift test fails until `ErrorCode` lists it.

use crate::error::{CoreError, Detail};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

static FROM_CORE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn factory(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    let f = FROM_CORE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("cardsvc.errors")?.getattr("from_core")?.unbind())
    })?;
    Ok(f.bind(py))
}

/// The Python exception instance for a core error (not raised).
pub fn to_pyobject<'py>(py: Python<'py>, e: &CoreError) -> PyResult<Bound<'py, PyAny>> {
    let details = PyDict::new(py);
    for (k, v) in e.details() {
        match v {
            Detail::Int(i) => details.set_item(k, i)?,
            Detail::UInt(u) => details.set_item(k, u)?,
            Detail::Str(s) => details.set_item(k, s)?,
            Detail::Bool(b) => details.set_item(k, b)?,
            Detail::Null => details.set_item(k, py.None())?,
        }
    }
    factory(py)?.call1((e.code(), e.message(), details))
}

/// The Python exception to raise for a core error.
pub fn to_pyerr(py: Python<'_>, e: CoreError) -> PyErr {
    match to_pyobject(py, &e) {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    }
}
