"""What agents and retail buyers buy: the order saga over the core and SQL (``orders``),
flash-sale holds in the core (``holds``), the storefront's checkout saga (``checkout``), its
catalog (``shop``) and buyers' limits (``buyers``), and their tables.
"""

from cardsvc.sales.approved import ApprovedActions, Ran
from cardsvc.sales.buyers import RETAIL_LIMITS_ENV, BuyerGuard, RetailLimits
from cardsvc.sales.checkout import (
    HOLD_TTL_S_DEFAULT,
    RETAIL_CRASH_POINTS,
    Checkout,
    CheckoutRequest,
    CheckoutResult,
    NotifyResult,
    PaymentView,
    RetailOrderView,
    StoreSettings,
)
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
from cardsvc.sales.shop import LOW_STOCK_DEFAULT, ShopCatalog, ShopSku, StockLevel
from cardsvc.sales.tables import HoldRecord, Order, OrderToken, RetailOrder

__all__ = [
    "COOLING_MS_DEFAULT",
    "CRASH_POINTS",
    "FINAL_ERRORS",
    "HOLD_STATES",
    "HOLD_TTL_S_DEFAULT",
    "HOLD_TTL_S_MAX",
    "HOLD_TTL_S_MIN",
    "LOW_STOCK_DEFAULT",
    "ORDER_STATUSES",
    "PENDING_ORDER_AGE_MS",
    "REASON_LEN_MAX",
    "RETAIL_CRASH_POINTS",
    "RETAIL_LIMITS_ENV",
    "ApprovedActions",
    "BuyerGuard",
    "Checkout",
    "CheckoutRequest",
    "CheckoutResult",
    "DeliveredCode",
    "HoldRecord",
    "HoldView",
    "Holds",
    "NotifyResult",
    "Order",
    "OrderRequest",
    "OrderToken",
    "OrderView",
    "Orders",
    "PaymentView",
    "Ran",
    "RetailLimits",
    "RetailOrder",
    "RetailOrderView",
    "ShopCatalog",
    "ShopSku",
    "StockLevel",
    "StoreSettings",
    "delivered_code_ids",
    "hold_ref",
    "no_crash",
    "order_view",
]
