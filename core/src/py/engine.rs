//! `CoreEngine`: the Python class over `crate::Engine`. Each method converts its arguments, runs
//! the core through `detach::run` and converts the result.

use super::convert::{texts, u32_arg, Int};
use super::detach::{run, run_on};
use super::error::{to_pyerr, to_pyobject};
use super::results::*;
use crate::engine::{Engine, RedemptionFilter, Stock};
use crate::error::CoreError;
use arc_swap::ArcSwap;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::Arc;

/// `(changed, unchanged, refused)` of withdraw/restore_to_sale, states by name.
type WithdrawResult = (usize, usize, Vec<(u32, &'static str)>);

#[pyclass(subclass, module = "cardsvc._core")]
pub struct CoreEngine {
    inner: ArcSwap<Engine>,
}

fn stock_dict<'py>(py: Python<'py>, s: &Stock) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("available", s.available)?;
    d.set_item("expired", s.expired)?;
    d.set_item("held", s.held)?;
    d.set_item("allocated", s.allocated)?;
    d.set_item("redeemed", s.redeemed)?;
    d.set_item("frozen", s.frozen)?;
    d.set_item("void", s.void)?;
    d.set_item("withdrawn", s.withdrawn)?;
    d.set_item("total", s.total())?;
    Ok(d)
}

fn opt_u32(v: Option<Int>, field: &'static str) -> Result<Option<u32>, CoreError> {
    v.map(|x| u32_arg(x.0, field)).transpose()
}

fn ids_arg(ids: Vec<Int>) -> Result<Vec<u64>, CoreError> {
    ids.into_iter()
        .map(|i| u64::try_from(i.0).map_err(|_| CoreError::CodeNotFound { code_id: None }))
        .collect()
}

impl CoreEngine {
    fn eng(&self) -> arc_swap::Guard<Arc<Engine>> {
        self.inner.load()
    }
}

#[pymethods]
impl CoreEngine {
    #[new]
    #[pyo3(signature = (lookup_key, snapshot=None))]
    fn new(py: Python<'_>, lookup_key: &[u8], snapshot: Option<&[u8]>) -> PyResult<Self> {
        let engine = run(py, || match snapshot {
            Some(data) => Engine::from_snapshot(lookup_key, data),
            None => Engine::new(lookup_key),
        })?;
        Ok(CoreEngine { inner: ArcSwap::from_pointee(engine) })
    }

    fn now_ms(&self) -> u64 {
        self.eng().now_ms()
    }

    #[pyo3(signature = (now_ms))]
    fn set_clock_ms(&self, py: Python<'_>, now_ms: Option<Int>) -> PyResult<()> {
        let t = now_ms.map(|t| u64::try_from(t.0)).transpose();
        let t = t.map_err(|_| to_pyerr(py, CoreError::InvalidArgument { field: "now_ms", reason: "must not be negative" }))?;
        self.eng().set_clock_ms(t);
        Ok(())
    }

    #[pyo3(
        signature = (sku, uses_per_code=Int(1), redeem_requires_sale=true, validity_days_after_sale=None),
        text_signature = "(self, sku, uses_per_code=1, redeem_requires_sale=True, validity_days_after_sale=None)"
    )]
    fn create_sku(&self, py: Python<'_>, sku: &str, uses_per_code: Int, redeem_requires_sale: bool, validity_days_after_sale: Option<Int>) -> PyResult<()> {
        let e = self.eng();
        let uses = u32::try_from(uses_per_code.0).unwrap_or(0);
        let days = validity_days_after_sale.map(|d| u32::try_from(d.0).unwrap_or(u32::MAX));
        run_on(py, &e, || e.create_sku(sku, uses, redeem_requires_sale, days))
    }

    fn skus(&self) -> Vec<String> {
        self.eng().skus()
    }

    #[pyo3(
        signature = (sku, codes, pool=Int(0), pins=None, valid_from=None, valid_until=None, batch=Int(0)),
        text_signature = "(self, sku, codes, pool=0, pins=None, valid_from=None, valid_until=None, batch=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn import_codes(
        &self,
        py: Python<'_>,
        sku: &str,
        codes: &Bound<'_, PyAny>,
        pool: Int,
        pins: Option<&Bound<'_, PyAny>>,
        valid_from: Option<Int>,
        valid_until: Option<Int>,
        batch: Int,
    ) -> PyResult<(Vec<u32>, Vec<usize>)> {
        let e = self.eng();
        let prep = || -> Result<_, CoreError> {
            let codes = texts(codes, false, "codes")?;
            let pins = pins.map(|p| texts(p, true, "pins")).transpose()?;
            Ok((codes, pins, u32_arg(pool.0, "pool")?, opt_u32(valid_from, "valid_from")?, opt_u32(valid_until, "valid_until")?, u32_arg(batch.0, "batch")?))
        };
        let (codes, pins, pool, from, until, batch) = prep().map_err(|err| to_pyerr(py, err))?;
        run_on(py, &e, || e.import_codes(sku, &codes, pins.as_ref(), pool, from, until, batch))
    }

    #[pyo3(signature = (sku, qty, order_ref, pool=Int(0)), text_signature = "(self, sku, qty, order_ref, pool=0)")]
    fn allocate(&self, py: Python<'_>, sku: &str, qty: Int, order_ref: &str, pool: Int) -> PyResult<Vec<u32>> {
        let e = self.eng();
        let qty = qty.0;
        let pool = u32_arg(pool.0, "pool").map_err(|err| to_pyerr(py, err))?;
        run_on(py, &e, || e.allocate(sku, qty, order_ref, pool))
    }

    /// One result per request: a list of code ids or a CardsvcError instance.
    fn allocate_many<'py>(&self, py: Python<'py>, requests: Vec<(String, Int, String, Int)>) -> PyResult<Bound<'py, PyList>> {
        let e = self.eng();
        let results = py.detach(|| {
            requests
                .iter()
                .map(|(sku, qty, order_ref, pool)| {
                    let pool = u32_arg(pool.0, "pool")?;
                    e.allocate(sku, qty.0, order_ref, pool)
                })
                .collect::<Vec<_>>()
        });
        crate::shard::LAST_TICKET.with(|c| c.set(e.appended()));
        let out = PyList::empty(py);
        for r in results {
            match r {
                Ok(ids) => out.append(ids)?,
                Err(err) => out.append(to_pyobject(py, &err)?)?,
            }
        }
        Ok(out)
    }

    fn order_codes(&self, py: Python<'_>, order_ref: &str) -> PyResult<Vec<u32>> {
        let e = self.eng();
        run_on(py, &e, || e.order_code_ids(order_ref))
    }

    fn order_code_ids(&self, py: Python<'_>, order_ref: &str) -> PyResult<Vec<u32>> {
        self.order_codes(py, order_ref)
    }

    #[pyo3(signature = (sku, qty, hold_ref, ttl_ms, pool=Int(0)), text_signature = "(self, sku, qty, hold_ref, ttl_ms, pool=0)")]
    fn hold_ms(&self, py: Python<'_>, sku: &str, qty: Int, hold_ref: &str, ttl_ms: Int, pool: Int) -> PyResult<Hold> {
        let e = self.eng();
        let (qty, ttl) = (qty.0, ttl_ms.0);
        let pool = u32_arg(pool.0, "pool").map_err(|err| to_pyerr(py, err))?;
        run_on(py, &e, || e.hold(sku, qty, hold_ref, ttl, pool)).map(Hold::from)
    }

    fn get_hold(&self, py: Python<'_>, hold_ref: &str) -> PyResult<Hold> {
        let e = self.eng();
        run_on(py, &e, || e.get_hold(hold_ref)).map(Hold::from)
    }

    fn confirm_hold(&self, py: Python<'_>, hold_ref: &str, order_ref: &str) -> PyResult<Vec<u32>> {
        let e = self.eng();
        run_on(py, &e, || e.confirm_hold(hold_ref, order_ref))
    }

    fn release_hold(&self, py: Python<'_>, hold_ref: &str) -> PyResult<usize> {
        let e = self.eng();
        run_on(py, &e, || e.release_hold(hold_ref))
    }

    fn expire_holds(&self, py: Python<'_>) -> PyResult<usize> {
        let e = self.eng();
        run_on(py, &e, || Ok(e.expire_holds()))
    }

    fn move_stock(&self, py: Python<'_>, sku: &str, qty: Int, from_pool: Int, to_pool: Int) -> PyResult<Vec<u32>> {
        let e = self.eng();
        let args = || -> Result<_, CoreError> { Ok((qty.0, u32_arg(from_pool.0, "from_pool")?, u32_arg(to_pool.0, "to_pool")?)) };
        let (qty, from, to) = args().map_err(|err| to_pyerr(py, err))?;
        run_on(py, &e, || e.move_stock(sku, qty, from, to))
    }

    fn lookup(&self, py: Python<'_>, code: &str) -> PyResult<u32> {
        let e = self.eng();
        run_on(py, &e, || e.lookup(code).map(|(id, _)| id))
    }

    #[pyo3(signature = (code, pin=None))]
    fn verify(&self, py: Python<'_>, code: &str, pin: Option<&str>) -> PyResult<Verification> {
        let e = self.eng();
        run_on(py, &e, || e.verify(code, pin)).map(Verification::from)
    }

    #[pyo3(signature = (codes, pins=None))]
    fn verify_many(&self, py: Python<'_>, codes: &Bound<'_, PyAny>, pins: Option<&Bound<'_, PyAny>>) -> PyResult<VerifyBatch> {
        let e = self.eng();
        let prep = || -> Result<_, CoreError> { Ok((texts(codes, false, "codes")?, pins.map(|p| texts(p, true, "pins")).transpose()?)) };
        let (codes, pins) = prep().map_err(|err| to_pyerr(py, err))?;
        run_on(py, &e, || e.verify_many(&codes, pins.as_ref())).map(|results| VerifyBatch { results })
    }

    #[pyo3(signature = (code, request_id, terminal, pin=None))]
    fn redeem(&self, py: Python<'_>, code: &str, request_id: &str, terminal: &str, pin: Option<&str>) -> PyResult<Redemption> {
        let e = self.eng();
        run_on(py, &e, || e.redeem(code, request_id, terminal, pin)).map(Redemption::from)
    }

    #[pyo3(signature = (codes, request_ids, terminal, pins=None))]
    fn redeem_many(&self, py: Python<'_>, codes: &Bound<'_, PyAny>, request_ids: &Bound<'_, PyAny>, terminal: &str, pins: Option<&Bound<'_, PyAny>>) -> PyResult<RedeemBatch> {
        let e = self.eng();
        let prep = || -> Result<_, CoreError> {
            Ok((texts(codes, false, "codes")?, texts(request_ids, false, "request_ids")?, pins.map(|p| texts(p, true, "pins")).transpose()?))
        };
        let (codes, rids, pins) = prep().map_err(|err| to_pyerr(py, err))?;
        let results = run_on(py, &e, || e.redeem_many(&codes, &rids, terminal, pins.as_ref()))?;
        Ok(RedeemBatch { engine: Arc::clone(&e), results })
    }

    #[pyo3(signature = (batch_request_id, codes, terminal, pins=None))]
    fn redeem_batch(&self, py: Python<'_>, batch_request_id: &str, codes: &Bound<'_, PyAny>, terminal: &str, pins: Option<&Bound<'_, PyAny>>) -> PyResult<RedeemBatch> {
        let e = self.eng();
        let prep = || -> Result<_, CoreError> { Ok((texts(codes, false, "codes")?, pins.map(|p| texts(p, true, "pins")).transpose()?)) };
        let (codes, pins) = prep().map_err(|err| to_pyerr(py, err))?;
        let results = run_on(py, &e, || e.redeem_batch(batch_request_id, &codes, pins.as_ref(), terminal))?;
        Ok(RedeemBatch { engine: Arc::clone(&e), results })
    }

    fn rollback(&self, py: Python<'_>, redemption_id: Int, reason: &str) -> PyResult<Redemption> {
        let e = self.eng();
        let rid = u64::try_from(redemption_id.0).map_err(|_| to_pyerr(py, CoreError::RedemptionNotFound { redemption_id: 0 }))?;
        run_on(py, &e, || e.rollback(rid, reason)).map(Redemption::from)
    }

    fn get_redemption(&self, py: Python<'_>, redemption_id: Int) -> PyResult<Redemption> {
        let e = self.eng();
        let redemption_id = u64::try_from(redemption_id.0).map_err(|_| to_pyerr(py, CoreError::RedemptionNotFound { redemption_id: 0 }))?;
        run_on(py, &e, || e.get_redemption(redemption_id)).map(Redemption::from)
    }

    #[pyo3(
        signature = (*, terminal=None, code_id=None, since_ms=Int(0), until_ms=None, before=None, limit=Int(50)),
        text_signature = "(self, *, terminal=None, code_id=None, since_ms=0, until_ms=None, before=None, limit=50)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn list_redemptions(&self, py: Python<'_>, terminal: Option<&str>, code_id: Option<Int>, since_ms: Int, until_ms: Option<Int>, before: Option<(Int, Int)>, limit: Int) -> PyResult<Vec<Redemption>> {
        let e = self.eng();
        let prep = || -> Result<_, CoreError> {
            let ms = |v: Int, field: &'static str| u64::try_from(v.0).map_err(|_| CoreError::InvalidArgument { field, reason: "must not be negative" });
            let filter = RedemptionFilter {
                terminal,
                code: opt_u32(code_id, "code_id")?,
                since_ms: ms(since_ms, "since_ms")?,
                until_ms: until_ms.map(|u| ms(u, "until_ms")).transpose()?,
                before: before.map(|(at, id)| Ok::<_, CoreError>((ms(at, "before")?, ms(id, "before")?))).transpose()?,
            };
            let limit = usize::try_from(limit.0).map_err(|_| CoreError::InvalidArgument { field: "limit", reason: "must not be negative" })?;
            Ok((filter, limit))
        };
        let (filter, limit) = prep().map_err(|err| to_pyerr(py, err))?;
        let found = run_on(py, &e, || e.list_redemptions(&filter, limit))?;
        Ok(found.into_iter().map(Redemption::from).collect())
    }

    fn freeze(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<(usize, usize)> {
        let e = self.eng();
        run_on(py, &e, || e.freeze(&ids_arg(code_ids)?))
    }

    fn unfreeze(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<(usize, usize)> {
        let e = self.eng();
        run_on(py, &e, || e.unfreeze(&ids_arg(code_ids)?))
    }

    fn void(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<(usize, usize)> {
        let e = self.eng();
        run_on(py, &e, || e.void(&ids_arg(code_ids)?))
    }

    /// `(withdrawn, unchanged, refused)`; `refused` lists `(code_id, state)`.
    fn withdraw(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<WithdrawResult> {
        let e = self.eng();
        let (changed, unchanged, refused) = run_on(py, &e, || e.withdraw(&ids_arg(code_ids)?))?;
        Ok((changed, unchanged, refused.into_iter().map(|(id, st)| (id, st.name())).collect()))
    }

    /// `(restored, unchanged, refused)`; `refused` lists `(code_id, state)`.
    fn restore_to_sale(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<WithdrawResult> {
        let e = self.eng();
        let (changed, unchanged, refused) = run_on(py, &e, || e.restore_to_sale(&ids_arg(code_ids)?))?;
        Ok((changed, unchanged, refused.into_iter().map(|(id, st)| (id, st.name())).collect()))
    }

    #[pyo3(signature = (failures_max, lockout_ms, lockout_max_ms))]
    fn set_pin_policy(&self, py: Python<'_>, failures_max: Int, lockout_ms: Int, lockout_max_ms: Int) -> PyResult<()> {
        let e = self.eng();
        let f = u32::try_from(failures_max.0).unwrap_or(if failures_max.0 < 0 { 0 } else { u32::MAX });
        let l = u64::try_from(lockout_ms.0).unwrap_or(0);
        let m = u64::try_from(lockout_max_ms.0).unwrap_or(0);
        run(py, || e.set_pin_policy(f, l, m))
    }

    fn pin_policy(&self) -> (u32, u64, u64) {
        self.eng().pin_policy()
    }

    #[pyo3(signature = (sku=None))]
    fn locked_codes(&self, py: Python<'_>, sku: Option<&str>) -> PyResult<Vec<(u32, u64, u16)>> {
        let e = self.eng();
        run_on(py, &e, || e.locked_codes(sku))
    }

    fn unlock(&self, py: Python<'_>, code_ids: Vec<Int>) -> PyResult<(usize, usize)> {
        let e = self.eng();
        run_on(py, &e, || e.unlock(&ids_arg(code_ids)?))
    }

    fn batch_code_ids(&self, py: Python<'_>, batch: Int) -> PyResult<Vec<u32>> {
        let e = self.eng();
        run_on(py, &e, || Ok(e.batch_code_ids(u32_arg(batch.0, "batch")?)))
    }

    fn code_info(&self, py: Python<'_>, code_id: Int) -> PyResult<CodeInfo> {
        let e = self.eng();
        let id = u64::try_from(code_id.0).map_err(|_| to_pyerr(py, CoreError::CodeNotFound { code_id: None }))?;
        run_on(py, &e, || e.code_info(id)).map(CodeInfo::from)
    }

    #[pyo3(signature = (sku, pool=None))]
    fn stock<'py>(&self, py: Python<'py>, sku: &str, pool: Option<Int>) -> PyResult<Bound<'py, PyDict>> {
        let e = self.eng();
        let pool = opt_u32(pool, "pool").map_err(|err| to_pyerr(py, err))?;
        let s = run_on(py, &e, || e.stock(sku, pool))?;
        stock_dict(py, &s)
    }

    fn stock_by_pool<'py>(&self, py: Python<'py>, sku: &str) -> PyResult<Bound<'py, PyDict>> {
        let e = self.eng();
        let by_pool = run_on(py, &e, || e.stock_by_pool(sku))?;
        let d = PyDict::new(py);
        for (p, s) in &by_pool {
            d.set_item(p, stock_dict(py, s)?)?;
        }
        Ok(d)
    }

    fn code_count(&self, py: Python<'_>) -> usize {
        let e = self.eng();
        py.detach(|| e.code_count())
    }

    fn memory_bytes(&self, py: Python<'_>) -> usize {
        let e = self.eng();
        py.detach(|| e.memory_bytes())
    }

    /// Raises AssertionError naming the first broken invariant.
    fn check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        let e = self.eng();
        py.detach(|| e.check_invariants()).map_err(pyo3::exceptions::PyAssertionError::new_err)
    }

    fn journal_len(&self, py: Python<'_>) -> u64 {
        let e = self.eng();
        py.detach(|| e.journal_len())
    }

    fn next_seq(&self, py: Python<'_>) -> u64 {
        let e = self.eng();
        py.detach(|| e.next_seq())
    }

    /// Records ever appended; every mutation's record takes the next ticket.
    fn appended(&self) -> u64 {
        self.eng().appended()
    }

    /// The ticket of the last record this thread appended (0 if none).
    #[staticmethod]
    fn last_ticket() -> u64 {
        Engine::last_ticket()
    }

    fn durable(&self) -> u64 {
        self.eng().durable()
    }

    fn mark_durable(&self, ticket: u64) {
        self.eng().mark_durable(ticket)
    }

    /// Blocks (GIL released) until `durable() >= ticket` or the timeout; returns whether reached.
    fn wait_durable(&self, py: Python<'_>, ticket: u64, timeout_ms: u64) -> bool {
        let e = self.eng();
        py.detach(|| e.wait_durable(ticket, timeout_ms))
    }

    fn request_durable(&self, ticket: u64) {
        self.eng().request_durable(ticket)
    }

    /// For the journal writer: blocks (GIL released) until a caller wants more than is durable.
    fn wait_for_demand(&self, py: Python<'_>, timeout_ms: u64) -> u64 {
        let e = self.eng();
        py.detach(|| e.wait_for_demand(timeout_ms))
    }

    /// Blocks (GIL released) until `durable()` differs from `seen` or the timeout; returns it.
    fn wait_durable_change(&self, py: Python<'_>, seen: u64, timeout_ms: u64) -> u64 {
        let e = self.eng();
        py.detach(|| e.wait_durable_change(seen, timeout_ms))
    }

    /// `(framed records, covered ticket, first seq, last seq)`: see `Engine::drain`.
    fn drain<'py>(&self, py: Python<'py>) -> (Bound<'py, PyBytes>, u64, u64, u64) {
        let e = self.eng();
        let d = py.detach(|| e.drain());
        (PyBytes::new(py, &d.bytes), d.covered, d.first_seq, d.last_seq)
    }

    fn drain_journal<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let e = self.eng();
        let data = py.detach(|| e.drain_journal());
        PyBytes::new(py, &data)
    }

    fn apply_journal(&self, py: Python<'_>, data: &[u8]) -> PyResult<usize> {
        let e = self.eng();
        run_on(py, &e, || e.apply_journal(data))
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let e = self.eng();
        let data = py.detach(|| e.snapshot());
        PyBytes::new(py, &data)
    }

    /// Replaces the whole state with a snapshot's (start-up only: calls in flight finish on the
    /// old state). Raises SNAPSHOT_CORRUPT.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let e = self.eng();
        let engine = run_on(py, &e, || e.reopen_from_snapshot(data))?;
        self.inner.store(Arc::new(engine));
        Ok(())
    }

    /// Like `snapshot`, returned as a zero-copy buffer (the store writes it in slices).
    fn snapshot_data(&self, py: Python<'_>) -> SnapshotData {
        let e = self.eng();
        SnapshotData { data: py.detach(|| e.snapshot()) }
    }

    /// How long the last snapshot held the engine's locks, in microseconds.
    fn last_snapshot_capture_us(&self) -> u64 {
        self.eng().last_snapshot_capture_us()
    }

    fn state_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let e = self.eng();
        let d = py.detach(|| e.state_digest());
        PyBytes::new(py, &d)
    }
}
