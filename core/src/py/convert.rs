//! Argument conversion: Python sequences of str into one `Texts` buffer (one copy, no per-item
//! allocation), and integer arguments into the core's ranges with typed errors.

use crate::engine::Texts;
use crate::error::CoreError;
use pyo3::prelude::*;
use super::error::to_pyerr;
use pyo3::types::{PyBool, PyInt, PyList, PyString, PyTuple};

fn push_item(t: &mut Texts, item: &Bound<'_, PyAny>, i: usize, optional: bool, field: &'static str) -> Result<(), CoreError> {
    if optional && item.is_none() {
        t.push(None);
        return Ok(());
    }
    let bad = |reason| match field {
        "pins" => CoreError::InvalidPin { index: Some(i), reason },
        "codes" => CoreError::InvalidCode { index: Some(i), reason },
        _ => CoreError::InvalidArgument { field, reason },
    };
    let s = item.cast::<PyString>().map_err(|_| bad("not a string"))?;
    let text = s.to_str().map_err(|_| bad("not valid UTF-8"))?;
    t.push(Some(text));
    Ok(())
}

/// Copies a list/tuple/iterable of str (or None when `optional`) into a `Texts`.
pub fn texts(obj: &Bound<'_, PyAny>, optional: bool, field: &'static str) -> Result<Texts, CoreError> {
    let mut t = Texts::default();
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(CoreError::InvalidArgument { field, reason: "must be a sequence of strings, not one string" });
    }
    if let Ok(list) = obj.cast::<PyList>() {
        t.spans.reserve(list.len());
        for (i, item) in list.iter().enumerate() {
            push_item(&mut t, &item, i, optional, field)?;
        }
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        for (i, item) in tuple.iter().enumerate() {
            push_item(&mut t, &item, i, optional, field)?;
        }
    } else {
        let iter = obj.try_iter().map_err(|_| CoreError::InvalidArgument { field, reason: "must be a sequence of strings" })?;
        for (i, item) in iter.enumerate() {
            let item = item.map_err(|_| CoreError::InvalidArgument { field, reason: "iteration failed" })?;
            push_item(&mut t, &item, i, optional, field)?;
        }
    }
    Ok(t)
}

/// An integer argument. Python ints beyond i64 saturate (so a huge quantity is LIMIT_EXCEEDED
/// and a huge negative one QUANTITY_MUST_BE_POSITIVE, never an OverflowError); a bool or a
/// non-int is INVALID_ARGUMENT.
#[derive(Debug, Clone, Copy)]
pub struct Int(pub i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Int> {
        if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
            let e = CoreError::InvalidArgument { field: "integer argument", reason: "must be an integer" };
            return Err(to_pyerr(obj.py(), e));
        }
        match obj.extract::<i64>() {
            Ok(v) => Ok(Int(v)),
            Err(_) => Ok(Int(if obj.lt(0)? { i64::MIN } else { i64::MAX })),
        }
    }
}

/// A u32 argument (pools, batches, times in seconds); out of range is INVALID_ARGUMENT.
pub fn u32_arg(v: i64, field: &'static str) -> Result<u32, CoreError> {
    u32::try_from(v).ok().filter(|&x| x != u32::MAX).ok_or(CoreError::InvalidArgument { field, reason: "out of range" })
}
