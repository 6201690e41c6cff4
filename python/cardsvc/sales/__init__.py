"""What agents (and, with the storefront, retail buyers) buy: the order saga over the core and
SQL (``orders``), flash-sale holds in the core (``holds``), and the orders table.
"""

from cardsvc.sales.approved import ApprovedActions, Ran
from cardsvc.sales.holds import (
    HOLD_STATES,
    HOLD_TTL_S_MAX,
    HOLD_TTL_S_MIN,
    Holds,
    HoldView,
    hold_ref,
)
from cardsvc.sales.orders import (
    COOLING_MS_DEFAULT,
    CRASH_POINTS,
    FINAL_ERRORS,
    ORDER_STATUSES,
    PENDING_ORDER_AGE_MS,
    REASON_LEN_MAX,
    DeliveredCode,
    OrderRequest,
    Orders,
    OrderView,
    delivered_code_ids,
    no_crash,
    order_view,
)
from cardsvc.sales.tables import HoldRecord, Order

__all__ = [
    "COOLING_MS_DEFAULT",
    "CRASH_POINTS",
    "FINAL_ERRORS",
    "HOLD_STATES",
    "HOLD_TTL_S_MAX",
    "HOLD_TTL_S_MIN",
    "ORDER_STATUSES",
    "PENDING_ORDER_AGE_MS",
    "REASON_LEN_MAX",
    "ApprovedActions",
    "DeliveredCode",
    "HoldRecord",
    "HoldView",
    "Holds",
    "Order",
    "OrderRequest",
    "OrderView",
    "Orders",
    "Ran",
    "delivered_code_ids",
    "hold_ref",
    "no_crash",
    "order_view",
]
