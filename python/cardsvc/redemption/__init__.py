"""Redemption: what terminals do with codes (``terminals``: verify, redeem one or a batch, roll
back), each call durable before it answers.
"""

from cardsvc.engine import Redemption, Verification
from cardsvc.redemption.terminals import (
    FAILED_LOOKUPS,
    RedeemItem,
    RedemptionCounts,
    RedemptionView,
    RolledBack,
    Terminals,
)

__all__ = ["FAILED_LOOKUPS", "RedeemItem", "Redemption", "RedemptionCounts", "RedemptionView",
           "RolledBack", "Terminals", "Verification"]
"""``Redemption`` and ``Verification`` are the core's result types, named here for the HTTP
layer."""
