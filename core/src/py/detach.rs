//! The one way the binding calls the core: with the GIL released, errors converted on the way
//! out. The `Send` bound (PyO3's `Ungil`) stops closures from capturing Python objects, so core
//! locks are only ever taken while detached and a thread waiting on a shard lock never holds the
//! GIL that the lock holder may need.

use super::error::to_pyerr;
use crate::engine::Engine;
use crate::error::CoreResult;
use pyo3::prelude::*;

/// Runs `f` detached from the interpreter and converts its error.
#[inline]
pub fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> CoreResult<T> + Send,
{
    py.detach(f).map_err(|e| to_pyerr(py, e))
}

/// Runs an engine operation like `run`, then sets this thread's last ticket to every record
/// appended so far. Whatever the operation reported (its own effect, a replayed result, or an
/// error revealing another caller's effect) was appended before it returned, so waiting for that
/// ticket never acknowledges state a crash could undo.
#[inline]
pub fn run_on<T, F>(py: Python<'_>, engine: &Engine, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> CoreResult<T> + Send,
{
    let result = py.detach(f);
    crate::shard::LAST_TICKET.with(|c| c.set(engine.appended()));
    result.map_err(|e| to_pyerr(py, e))
}
