//! Argument conversion: Python sequences of str into one `Texts` buffer (one copy, no per-item
//! allocation), and integer arguments into the core's ranges with typed errors.

use crate::engine::Texts;
use crate::error::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

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

/// An integer argument as i64; a Python int beyond i64 is LIMIT_EXCEEDED, a non-int is
/// INVALID_ARGUMENT.
pub fn int(obj: &Bound<'_, PyAny>, field: &'static str) -> Result<i64, CoreError> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(CoreError::InvalidArgument { field, reason: "must be an integer" });
    }
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(_) if obj.is_instance_of::<pyo3::types::PyInt>() => {
            Err(CoreError::LimitExceeded { field, max: i64::MAX as u64, got: u64::MAX })
        }
        Err(_) => Err(CoreError::InvalidArgument { field, reason: "must be an integer" }),
    }
}

/// A u32 argument (pools, batches, times in seconds); out of range is INVALID_ARGUMENT.
pub fn u32_arg(v: i64, field: &'static str) -> Result<u32, CoreError> {
    u32::try_from(v).ok().filter(|&x| x != u32::MAX).ok_or(CoreError::InvalidArgument { field, reason: "out of range" })
}
