"""Redemption: what terminals do with codes (``terminals``: verify, redeem one or a batch, roll
back), each call durable before it answers, and the redemptions as a record (``history``: lists
by terminal and time, a search by code).
"""

from cardsvc.engine import Redemption, Verification
from cardsvc.redemption.history import RedemptionHistory
from cardsvc.redemption.terminals import (
    FAILED_LOOKUPS,
    BatchRedemptions,
    RedeemItem,
    RedemptionCounts,
    RedemptionView,
    RolledBack,
    Terminals,
)

__all__ = ["FAILED_LOOKUPS", "BatchRedemptions", "RedeemItem", "Redemption", "RedemptionCounts",
           "RedemptionHistory", "RedemptionView", "RolledBack", "Terminals", "Verification"]
"""``Redemption`` and ``Verification`` are the core's result types, named here for the HTTP
layer."""
