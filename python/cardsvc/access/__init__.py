"""Who is calling, and how much they may do: API keys (``apikeys.py``) and the risk guard's rate
limits, lockouts, hold caps and quotas (``risk.py``). Console users and sessions join them here.
"""

from cardsvc.access.apikeys import (
    DEFAULT_SCOPES,
    KEY_PREFIX,
    ROLES,
    SCOPES_OF_ROLE,
    KeyAuthenticator,
    Principal,
    check_key_request,
    issue_key,
    list_keys,
    parse_key,
    principal_of,
    revoke_key,
)
from cardsvc.access.risk import DAY_MS, RISK_ENV, Lockout, RiskGuard, RiskLimits
from cardsvc.access.tables import ApiKey

__all__ = [
    "DAY_MS",
    "DEFAULT_SCOPES",
    "KEY_PREFIX",
    "RISK_ENV",
    "ROLES",
    "SCOPES_OF_ROLE",
    "ApiKey",
    "KeyAuthenticator",
    "Lockout",
    "Principal",
    "RiskGuard",
    "RiskLimits",
    "check_key_request",
    "issue_key",
    "list_keys",
    "parse_key",
    "principal_of",
    "revoke_key",
]
