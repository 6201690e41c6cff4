"""Goal: the payment attempt state machine never loses a payment and never pays twice: ``paid``
is absorbing, ``expired``/``failed`` -> ``paid`` (a late payment) is allowed, and in any history
at most one outcome "became paid".

Method: the full (state, event) table, fixed out-of-order stories (failed after paid, expired
then paid, duplicates), then hypothesis over arbitrary event sequences, checked against the
rules rather than against a copy of the table.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.payments.state import EVENTS, STATES, AttemptEvent, AttemptState, Outcome, transition

TABLE: dict[tuple[AttemptState, AttemptEvent], Outcome] = {
    ("pending", "pending"): Outcome("duplicate", "pending"),
    ("pending", "paid"): Outcome("changed", "paid"),
    ("pending", "failed"): Outcome("changed", "failed"),
    ("pending", "expired"): Outcome("changed", "expired"),
    ("pending", "refunded"): Outcome("refused", "pending", "refund_before_paid"),
    ("paid", "pending"): Outcome("refused", "paid", "paid_is_absorbing"),
    ("paid", "paid"): Outcome("duplicate", "paid"),
    ("paid", "failed"): Outcome("refused", "paid", "paid_is_absorbing"),
    ("paid", "expired"): Outcome("refused", "paid", "paid_is_absorbing"),
    ("paid", "refunded"): Outcome("refused", "paid", "paid_is_absorbing"),
    ("failed", "pending"): Outcome("refused", "failed", "already_closed"),
    ("failed", "paid"): Outcome("changed", "paid"),
    ("failed", "failed"): Outcome("duplicate", "failed"),
    ("failed", "expired"): Outcome("refused", "failed", "already_closed"),
    ("failed", "refunded"): Outcome("refused", "failed", "refund_before_paid"),
    ("expired", "pending"): Outcome("refused", "expired", "already_closed"),
    ("expired", "paid"): Outcome("changed", "paid"),
    ("expired", "failed"): Outcome("refused", "expired", "already_closed"),
    ("expired", "expired"): Outcome("duplicate", "expired"),
    ("expired", "refunded"): Outcome("refused", "expired", "refund_before_paid"),
}


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == {(state, event) for state in STATES for event in EVENTS}


@pytest.mark.parametrize(("current", "event"), list(TABLE))
def test_transition_matches_the_documented_table(current: AttemptState,
                                                 event: AttemptEvent) -> None:
    assert transition(current, event) == TABLE[(current, event)]


def _run(events: list[AttemptEvent]) -> tuple[AttemptState, list[Outcome]]:
    state: AttemptState = "pending"
    outcomes = []
    for event in events:
        outcome = transition(state, event)
        outcomes.append(outcome)
        state = outcome.state
    return state, outcomes


def test_failed_after_paid_changes_nothing() -> None:
    state, outcomes = _run(["paid", "failed", "expired"])
    assert state == "paid"
    assert [outcome.kind for outcome in outcomes] == ["changed", "refused", "refused"]


def test_expired_then_paid_is_a_late_payment_that_counts() -> None:
    state, outcomes = _run(["expired", "paid"])
    assert state == "paid"
    assert outcomes[1].became_paid


def test_a_duplicated_paid_callback_becomes_paid_once() -> None:
    _, outcomes = _run(["paid", "paid", "paid"])
    assert [outcome.became_paid for outcome in outcomes] == [True, False, False]
    assert [outcome.kind for outcome in outcomes] == ["changed", "duplicate", "duplicate"]


def test_unknown_state_or_event_is_a_bug() -> None:
    with pytest.raises(ValueError):
        transition("refunded", "paid")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        transition("pending", "captured")  # type: ignore[arg-type]


event_sequences = st.lists(st.sampled_from(EVENTS), max_size=40)


@given(event_sequences)
def test_paid_never_leaves_paid(events: list[AttemptEvent]) -> None:
    state: AttemptState = "pending"
    seen_paid = False
    for event in events:
        state = transition(state, event).state
        seen_paid = seen_paid or state == "paid"
        if seen_paid:
            assert state == "paid"


@given(event_sequences)
def test_at_most_one_outcome_becomes_paid_and_only_if_paid_was_reported(
        events: list[AttemptEvent]) -> None:
    state, outcomes = _run(events)
    became_paid = sum(outcome.became_paid for outcome in outcomes)
    assert became_paid <= 1
    assert became_paid == (1 if "paid" in events else 0)
    assert (state == "paid") == ("paid" in events)


@given(event_sequences)
def test_only_changed_outcomes_move_the_state_and_reasons_explain_refusals(
        events: list[AttemptEvent]) -> None:
    state: AttemptState = "pending"
    for event in events:
        outcome = transition(state, event)
        if outcome.kind != "changed":
            assert outcome.state == state
        assert (outcome.reason is not None) == (outcome.kind == "refused")
        assert (outcome.kind == "duplicate") == (event == state)
        state = outcome.state


@given(st.sampled_from(STATES), st.sampled_from(EVENTS))
def test_replaying_an_event_never_changes_the_state_again(current: AttemptState,
                                                          event: AttemptEvent) -> None:
    first = transition(current, event)
    second = transition(first.state, event)
    assert not second.changed
