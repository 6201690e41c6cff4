"""The price-list use cases: grades, grade rows and per-agent overrides, one transaction each.

Who may set what (``pricing.set_price`` holds the rule for overrides): admins set grade rows and
any agent's override; an agent sets only its direct sub-agents' overrides, never a grade's row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cardsvc.agents import pricing
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, make_error


class PriceLists:
    """Grades and prices, for admins and agents."""

    def __init__(self, db: Database, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock

    def set_price(self, *, sku: str, price_minor: int, currency: str, grade: str | None,
                  agent_id: str | None, visible: bool, actor: str,
                  actor_agent_id: str | None) -> dict[str, Any]:
        """Sets a SKU's price for a grade (admins) or an agent (admins, or the agent's parent).
        Raises FORBIDDEN (an agent setting a grade row) and as ``pricing.set_price``."""
        if actor_agent_id is not None and grade is not None:
            raise make_error(ErrorCode.FORBIDDEN, "only admins set grade prices",
                             {"field": "grade"})
        with self.db.write() as session:
            return pricing.set_price(session, sku=sku, price_minor=price_minor,
                                     currency=currency, grade=grade, agent_id=agent_id,
                                     visible=visible, actor=actor, actor_agent_id=actor_agent_id,
                                     now_ms=self.clock())

    def list_prices(self, *, sku: str | None, grade: str | None,
                    agent_id: str | None) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return pricing.list_prices(session, sku=sku, grade=grade, agent_id=agent_id)

    def create_grade(self, grade: str, name: str, *, actor: str) -> dict[str, Any]:
        """Raises GRADE_EXISTS, INVALID_ARGUMENT."""
        with self.db.write() as session:
            return pricing.create_grade(session, grade, name, actor=actor, now_ms=self.clock())

    def list_grades(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return pricing.list_grades(session)
