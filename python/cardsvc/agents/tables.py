"""The agent tree's tables: agents, grades and price rows."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, Base


class Agent(Base):
    """A reseller in the agent tree (``parent_id`` None: directly under the platform).

    ``grade`` picks its default price list; ``credit_limit_minor`` is how far its available
    balance may go below zero; ``daily_order_quota`` caps its orders per UTC day (None: the risk
    default). ``pool_id`` is its channel pool (stock reserved for it) and ``pool_policy`` where
    its orders draw from: ``own_then_shared``, ``own_only`` or ``shared_only``."""

    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    parent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    grade: Mapped[str] = mapped_column(String(ID_LEN_MAX), default="standard",
                                       server_default="standard")
    currency: Mapped[str] = mapped_column(String(3), default="CNY", server_default="CNY")
    credit_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    daily_order_quota: Mapped[int | None] = mapped_column(Integer)
    pool_id: Mapped[int | None] = mapped_column(Integer)
    pool_policy: Mapped[str] = mapped_column(String(16), default="own_then_shared",
                                             server_default="own_then_shared")


class Grade(Base):
    """A price tier. Every agent has one (``standard`` exists from the start)."""

    __tablename__ = "grades"

    grade: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Price(Base):
    """What an agent pays for one code of a SKU: per grade (set by admins), or per agent (an
    override set by admins, or by the agent's parent for its sub-agents, never below the parent's
    own price). ``visible`` False hides the SKU from that grade or agent. Exactly one of
    ``grade`` and ``agent_id`` is set."""

    __tablename__ = "prices"

    price_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("skus.sku"))
    grade: Mapped[str | None] = mapped_column(String(ID_LEN_MAX), ForeignKey("grades.grade"))
    agent_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX),
                                                 ForeignKey("agents.agent_id"))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    visible: Mapped[bool] = mapped_column(Boolean, default=True)
    set_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ux_prices_sku_grade", Price.sku, Price.grade, unique=True,
      sqlite_where=Price.grade.is_not(None), postgresql_where=Price.grade.is_not(None))


Index("ux_prices_sku_agent", Price.sku, Price.agent_id, unique=True,
      sqlite_where=Price.agent_id.is_not(None), postgresql_where=Price.agent_id.is_not(None))


Index("ix_prices_agent_id", Price.agent_id)


Index("ix_prices_grade", Price.grade)
