"""Domain events: the outbox (``outbox``), written in the caller's transaction and read by the
workers that act on them (mail today; webhooks to agents' systems later)."""

from cardsvc.events.outbox import (
    ATTEMPTS_MAX,
    BACKOFF_MS,
    Event,
    done,
    due,
    emit,
    pending_count,
    retry_later,
)
from cardsvc.events.tables import OutboxEvent

__all__ = ["ATTEMPTS_MAX", "BACKOFF_MS", "Event", "OutboxEvent", "done", "due", "emit",
           "pending_count", "retry_later"]
