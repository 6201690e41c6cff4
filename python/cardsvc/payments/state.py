"""The payment attempt state machine of DESIGN.md (retail, payments and delivery), pure.

States: ``pending`` (recorded before the buyer left), then ``paid``, ``failed`` or ``expired``.

* ``paid`` is absorbing: once money is known to have arrived, no later callback (failed,
  expired, pending, a re-ordered or replayed one) changes the attempt. A refund is a new fact
  about the order, recorded by the refund flow; for the attempt it is ``refused`` here, with the
  reason ``paid_is_absorbing``, and the attempt stays ``paid``.
* ``expired -> paid`` is allowed: a late payment (the buyer paid after our hold or the
  provider's order timed out, or the "expired" callback overtook the "paid" one). The checkout
  then fulfils if the stock can still be had, or refunds; the money never vanishes.
* ``failed -> paid`` is allowed, for the same reason. No provider here makes "failed" final for
  the money: WeChat Pay's PAYERROR and Stripe's ``async_payment_failed`` are about one payment
  try, after which the buyer may pay the same order; EPay and Alipay do not send "failed" at
  all; our own "failed" (the buyer cancelled on our page) may race a payment that went through.
  A verified "paid" is evidence that money moved, and DESIGN.md says a late payment fulfils or
  refunds, never vanishes; refusing it would strand the money.
* ``failed`` and ``expired`` do not turn into each other: both mean "closed unpaid", and the
  first one to arrive is kept (the second is ``refused``, reason ``already_closed``).
* A ``pending`` callback never changes anything: on ``pending`` it is a ``duplicate``; on any
  other state it is ``refused``.

:func:`transition` is total over (state, event): every pair has exactly one outcome, so callers
never need an "impossible" branch. At most one outcome in any history has
``became_paid`` (tests/payments/test_state.py checks it over random histories), which is what
lets the caller enqueue fulfilment exactly once, in the same transaction as the state change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AttemptState = Literal["pending", "paid", "failed", "expired"]
"""Where a payment attempt stands."""

AttemptEvent = Literal["pending", "paid", "failed", "expired", "refunded"]
"""What happened: a verified callback's ``Notify.status``, a query's status, or our own timer
(``expired``) or buyer action (``failed``)."""

OutcomeKind = Literal["changed", "duplicate", "refused"]
"""``changed``: the attempt moves to ``Outcome.state``. ``duplicate``: the event restates the
current state (a retried callback); nothing changes, answer the provider's success token.
``refused``: the event does not apply to this state; nothing changes, ``Outcome.reason`` says
why (also answered with the success token: the callback was verified, and retrying it will not
make it apply)."""

STATES: tuple[AttemptState, ...] = ("pending", "paid", "failed", "expired")
EVENTS: tuple[AttemptEvent, ...] = ("pending", "paid", "failed", "expired", "refunded")


@dataclass(frozen=True)
class Outcome:
    """The result of one :func:`transition`: the kind, the state after it (the old state unless
    ``changed``) and, for ``refused``, a stable snake_case reason."""

    kind: OutcomeKind
    state: AttemptState
    reason: str | None = None

    @property
    def changed(self) -> bool:
        """True iff the attempt moved to a new state."""
        return self.kind == "changed"

    @property
    def became_paid(self) -> bool:
        """True iff this event made the attempt paid: the one moment to enqueue fulfilment."""
        return self.kind == "changed" and self.state == "paid"


def transition(current: AttemptState, event: AttemptEvent) -> Outcome:
    """The outcome of ``event`` on an attempt in state ``current`` (see the module docstring).

    Pure and total. Precondition: ``current`` is one of STATES and ``event`` one of EVENTS
    (anything else is a bug: ``ValueError``).
    """
    if current not in STATES:
        raise ValueError(f"unknown attempt state {current!r}")
    if event not in EVENTS:
        raise ValueError(f"unknown attempt event {event!r}")
    if current == "paid":
        if event == "paid":
            return Outcome("duplicate", "paid")
        return Outcome("refused", "paid", "paid_is_absorbing")
    if event == "refunded":
        # Money went back for an attempt we never saw paid: the "paid" callback was lost or is
        # still on its way. Nothing to do to the attempt; reconciliation must look at it.
        return Outcome("refused", current, "refund_before_paid")
    if event == current:
        return Outcome("duplicate", current)
    if event == "paid":
        return Outcome("changed", "paid")
    if event == "pending":
        return Outcome("refused", current, "already_closed")
    # Here the event is failed or expired, and differs from the current state.
    if current == "pending":
        return Outcome("changed", event)
    return Outcome("refused", current, "already_closed")
