//! Result objects returned to Python. Batch results keep the core's compact results and build
//! per-item objects only when indexed.

use super::error::to_pyobject;
use crate::engine::{CodeInfo as CoreCodeInfo, HoldView, RedeemOutcome, RedemptionView, Verification as CoreVerification};
use crate::error::CoreResult;
use super::detach::run;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

#[pyclass(frozen, get_all, module = "cardsvc._core")]
pub struct Hold {
    pub hold_ref: String,
    pub sku: String,
    pub pool: u32,
    pub code_ids: Vec<u32>,
    pub expires_at_ms: u64,
    pub state: &'static str,
    pub order_ref: Option<String>,
}

impl From<HoldView> for Hold {
    fn from(h: HoldView) -> Hold {
        Hold {
            hold_ref: h.hold_ref,
            sku: h.sku,
            pool: h.pool,
            code_ids: h.ids,
            expires_at_ms: h.expires_at_ms,
            state: h.state.name(),
            order_ref: h.order_ref,
        }
    }
}

#[pymethods]
impl Hold {
    fn __repr__(&self) -> String {
        format!("Hold(hold_ref={:?}, sku={:?}, qty={}, state={:?})", self.hold_ref, self.sku, self.code_ids.len(), self.state)
    }
}

/// The result of `verify`; the SKU name stays shared with the core until read.
#[pyclass(frozen, module = "cardsvc._core")]
pub struct Verification(pub CoreVerification);

impl From<CoreVerification> for Verification {
    fn from(v: CoreVerification) -> Verification {
        Verification(v)
    }
}

#[pymethods]
impl Verification {
    #[getter]
    fn code_id(&self) -> u32 {
        self.0.code_id
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.0.status
    }
    #[getter]
    fn sku(&self) -> &str {
        &self.0.sku
    }
    #[getter]
    fn uses_left(&self) -> u16 {
        self.0.uses_left
    }
    #[getter]
    fn valid_from(&self) -> Option<u32> {
        self.0.valid_from
    }
    #[getter]
    fn valid_until(&self) -> Option<u32> {
        self.0.valid_until
    }

    fn __repr__(&self) -> String {
        let v = &self.0;
        format!("Verification(code_id={}, status={:?}, sku={:?}, uses_left={})", v.code_id, v.status, &*v.sku, v.uses_left)
    }
}

/// A redemption; strings stay shared with the core until a field is read.
#[pyclass(frozen, module = "cardsvc._core")]
pub struct Redemption(pub RedemptionView);

impl From<RedemptionView> for Redemption {
    fn from(r: RedemptionView) -> Redemption {
        Redemption(r)
    }
}

#[pymethods]
impl Redemption {
    #[getter]
    fn redemption_id(&self) -> u64 {
        self.0.redemption_id
    }
    #[getter]
    fn request_id(&self) -> &str {
        &self.0.request_id
    }
    #[getter]
    fn code_id(&self) -> u32 {
        self.0.code_id
    }
    #[getter]
    fn sku(&self) -> &str {
        &self.0.sku
    }
    #[getter]
    fn terminal(&self) -> &str {
        &self.0.terminal
    }
    #[getter]
    fn uses_left(&self) -> u16 {
        self.0.uses_left
    }
    #[getter]
    fn redeemed_at_ms(&self) -> u64 {
        self.0.redeemed_at_ms
    }
    #[getter]
    fn rolled_back_at_ms(&self) -> Option<u64> {
        self.0.rolled_back_at_ms
    }
    #[getter]
    fn rollback_reason(&self) -> Option<&str> {
        self.0.rollback_reason.as_deref()
    }

    /// `redeemed_at_ms` as an aware UTC datetime.
    #[getter]
    fn redeemed_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        dt.getattr("datetime")?.call_method1("fromtimestamp", (self.0.redeemed_at_ms as f64 / 1000.0, utc))
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!("Redemption(redemption_id={}, sku={:?}, uses_left={}, redeemed_at_ms={})", r.redemption_id, &*r.sku, r.uses_left, r.redeemed_at_ms)
    }
}

#[pyclass(frozen, get_all, module = "cardsvc._core")]
pub struct CodeInfo {
    pub code_id: u32,
    pub sku: String,
    pub pool: u32,
    pub batch: u32,
    pub state: &'static str,
    pub frozen_from: Option<&'static str>,
    pub uses_left: u16,
    pub has_pin: bool,
    pub valid_from: Option<u32>,
    pub valid_until: Option<u32>,
    pub order_ref: Option<String>,
    pub hold_ref: Option<String>,
    pub redemption_ids: Vec<u64>,
    pub was_withdrawn: bool,
    pub pin_failures: u16,
    pub locked_until_ms: Option<u64>,
}

impl From<CoreCodeInfo> for CodeInfo {
    fn from(c: CoreCodeInfo) -> CodeInfo {
        CodeInfo {
            code_id: c.code_id,
            sku: c.sku,
            pool: c.pool,
            batch: c.batch,
            state: c.state.name(),
            frozen_from: c.frozen_from.map(|s| s.name()),
            uses_left: c.uses_left,
            has_pin: c.has_pin,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            order_ref: c.order_ref,
            hold_ref: c.hold_ref,
            redemption_ids: c.redemption_ids,
            was_withdrawn: c.was_withdrawn,
            pin_failures: c.pin_failures,
            locked_until_ms: c.locked_until_ms,
        }
    }
}

#[pymethods]
impl CodeInfo {
    fn __repr__(&self) -> String {
        format!("CodeInfo(code_id={}, sku={:?}, pool={}, state={:?}, uses_left={})", self.code_id, self.sku, self.pool, self.state, self.uses_left)
    }
}

fn index(len: usize, i: isize) -> PyResult<usize> {
    let j = if i < 0 { i + len as isize } else { i };
    if j < 0 || j as usize >= len {
        return Err(PyIndexError::new_err("batch index out of range"));
    }
    Ok(j as usize)
}

fn item<'py, T, P>(py: Python<'py>, r: &CoreResult<T>) -> PyResult<Bound<'py, PyAny>>
where
    T: Clone,
    P: From<T> + pyo3::PyClass + Into<pyo3::PyClassInitializer<P>>,
{
    match r {
        Ok(v) => Ok(Bound::new(py, P::from(v.clone()))?.into_any()),
        Err(e) => to_pyobject(py, e),
    }
}

fn codes<T>(results: &[CoreResult<T>]) -> Vec<&'static str> {
    results.iter().map(|r| r.as_ref().err().map_or("", |e| e.code())).collect()
}

/// Results of `redeem_many`: compact per item; indexing fetches the full redemption.
#[pyclass(frozen, module = "cardsvc._core")]
pub struct RedeemBatch {
    pub engine: std::sync::Arc<crate::engine::Engine>,
    pub results: Vec<CoreResult<RedeemOutcome>>,
}

#[pymethods]
impl RedeemBatch {
    #[getter]
    fn ok_count(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }
    fn __len__(&self) -> usize {
        self.results.len()
    }
    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        match &self.results[index(self.results.len(), i)?] {
            Ok(o) => {
                let (engine, rid) = (&self.engine, o.redemption_id);
                // The record, with the uses left this call reported (true when it returned).
                let full = py.detach(|| engine.get_redemption(rid)).map(|mut r| {
                    r.uses_left = o.uses_left;
                    r
                });
                item::<RedemptionView, Redemption>(py, &full)
            }
            Err(e) => to_pyobject(py, e),
        }
    }
    fn error_codes(&self) -> Vec<&'static str> {
        codes(&self.results)
    }
    fn redemption_ids(&self) -> Vec<Option<u64>> {
        self.results.iter().map(|r| r.as_ref().ok().map(|v| v.redemption_id)).collect()
    }
    fn uses_left(&self) -> Vec<Option<u16>> {
        self.results.iter().map(|r| r.as_ref().ok().map(|v| v.uses_left)).collect()
    }
    /// Every item's result as columns (`Engine::redeem_columns`), gathered with the GIL
    /// released: `(ok, error_codes, redemption_ids, code_ids, uses_left, redeemed_at_ms, skus)`.
    /// `ok` is bytes (1 = redeemed or replayed); a failed item has its error code, 0 in the
    /// number columns and `""` as its SKU. Each SKU name and error code is one string object
    /// shared by the items that have it.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<RedeemColumnsTuple<'py>> {
        let (engine, results) = (&self.engine, &self.results);
        let c = run(py, || engine.redeem_columns(results))?;
        let names: Vec<Bound<'py, PyString>> = c.skus.iter().map(|s| PyString::new(py, s)).collect();
        let empty = PyString::new(py, "");
        let skus = c.ok.iter().zip(&c.sku_index).map(|(&ok, &ix)| match names.get(ix as usize) {
            Some(name) if ok == 1 => name.clone(),
            _ => empty.clone(),
        });
        let mut interned: Vec<(&'static str, Bound<'py, PyString>)> = Vec::new();
        let mut codes = Vec::with_capacity(c.error_codes.len());
        for &code in &c.error_codes {
            let text = match interned.iter().find(|(k, _)| *k == code) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = PyString::new(py, code);
                    interned.push((code, text.clone()));
                    text
                }
            };
            codes.push(text);
        }
        Ok((
            PyBytes::new(py, &c.ok),
            PyList::new(py, codes)?,
            PyList::new(py, &c.redemption_ids)?,
            PyList::new(py, &c.code_ids)?,
            PyList::new(py, &c.uses_left)?,
            PyList::new(py, &c.redeemed_at_ms)?,
            PyList::new(py, skus)?,
        ))
    }
}

/// `RedeemBatch.columns()`: ok mask, error codes, redemption numbers, code ids, uses left,
/// redemption times, SKU names.
type RedeemColumnsTuple<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
);

#[pyclass(frozen, module = "cardsvc._core")]
pub struct VerifyBatch {
    pub results: Vec<CoreResult<CoreVerification>>,
}

#[pymethods]
impl VerifyBatch {
    #[getter]
    fn ok_count(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }
    fn __len__(&self) -> usize {
        self.results.len()
    }
    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        item::<CoreVerification, Verification>(py, &self.results[index(self.results.len(), i)?])
    }
    fn error_codes(&self) -> Vec<&'static str> {
        codes(&self.results)
    }
    fn statuses(&self) -> Vec<&'static str> {
        self.results.iter().map(|r| r.as_ref().map_or("", |v| v.status)).collect()
    }
}

/// A snapshot image handed to Python without a copy: a read-only buffer (`memoryview(x)`,
/// `os.write(fd, x)`), so a snapshot of millions of codes never stalls other threads on a copy
/// made while attached to the interpreter.
#[pyclass(frozen, module = "cardsvc._core")]
pub struct SnapshotData {
    pub data: Vec<u8>,
}

#[pymethods]
impl SnapshotData {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// Called by the interpreter with a valid `view`.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut pyo3::ffi::Py_buffer, flags: std::os::raw::c_int) -> PyResult<()> {
        let data = &slf.get().data;
        // SAFETY: the class is frozen, so `data` is never changed or moved while the object
        // lives, and PyBuffer_FillInfo stores a new reference to the object in `view.obj`, which
        // keeps it alive until the view is released.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut std::os::raw::c_void,
                data.len() as pyo3::ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}
