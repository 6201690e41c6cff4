"""cardsvc: selling and redeeming digital entitlements (card keys, vouchers, gift codes)."""

__version__ = "0.1.0"
