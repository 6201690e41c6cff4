"""The HTTP service's settings: where its data lives, which journal sink, where it listens.

``Settings`` is immutable and validated on construction, so a bad value fails at start-up with
``INVALID_ARGUMENT`` (naming the field) rather than on the first request. ``Settings.from_env``
reads the same ``CARDSVC_*`` variables as the store commands of the command line
(``cardsvc.cli.store``), and ``cardsvc serve`` lets its options override them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardsvc.access import ARGON2_PARAMS, ApprovalPolicy, Argon2Params, RiskLimits
from cardsvc.db import DATABASE_URL_ENV
from cardsvc.delivery import Composer
from cardsvc.engine import (
    PIN_FAILURES_DEFAULT,
    PIN_LOCKOUT_MAX_MS_DEFAULT,
    PIN_LOCKOUT_MS_DEFAULT,
    StoreConfig,
)
from cardsvc.errors import invalid
from cardsvc.money import COOLING_MS_MAX
from cardsvc.reports import COOLDOWN_MS_DEFAULT as ALERT_COOLDOWN_MS_DEFAULT
from cardsvc.reports import STUCK_PAYMENT_MS_DEFAULT
from cardsvc.runtime import MailConfig, ServiceConfig
from cardsvc.sales import (
    COOLING_MS_DEFAULT,
    HOLD_TTL_S_DEFAULT,
    HOLD_TTL_S_MAX,
    HOLD_TTL_S_MIN,
    RetailLimits,
    StoreSettings,
)

JOURNAL_SINKS = ("file", "redis")
PIN_FAILURES_MAX = 1000
PIN_LOCKOUT_MAX_S = 30 * 86_400
"""The engine's bounds of the PIN policy (set_pin_policy: 1..=1000 failures, at most 30 days)."""
DEFAULT_DATA_DIR = Path("data")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
REQUEST_BODY_BYTES_MAX = 1 << 20
"""1 MiB. A redeem or order request is well under 4 KiB; 1 MiB leaves room for batch calls
(about 10,000 codes of 64 characters with their JSON quoting) while bounding what one request can
make the server buffer: at most this plus one network read (64 KiB) per request in flight."""

UPLOAD_BYTES_MAX = 1 << 30
"""1 GiB for ``POST /v1/batches/upload``: about 20 million codes of CSV. The upload is spooled to
disk as it arrives, so the bound limits disk use, not memory."""

ENV_DATA_DIR = "CARDSVC_DATA_DIR"
ENV_JOURNAL = "CARDSVC_JOURNAL"
ENV_REDIS_URL = "CARDSVC_REDIS_URL"
ENV_HOST = "CARDSVC_HOST"
ENV_PORT = "CARDSVC_PORT"
ENV_REQUEST_BODY_BYTES_MAX = "CARDSVC_REQUEST_BODY_BYTES_MAX"
ENV_TIMEZONE = "CARDSVC_WEB_TIMEZONE"
ENV_APPROVAL_ACTIONS = "CARDSVC_APPROVAL_ACTIONS"
"""Guarded actions that need a second person's approval, comma separated (``withdrawal_payout``,
``refund``, ``code_export``, ``batch_void``); ``all`` (the default) or ``none``."""
ENV_ALERT_COOLDOWN_S = "CARDSVC_ALERT_COOLDOWN_S"
"""How often an alert whose condition is still true is noticed again (default 6 hours)."""
ENV_ALERT_STUCK_PAYMENT_S = "CARDSVC_ALERT_STUCK_PAYMENT_S"
"""How long after its deadline an unconfirmed payment (or after its last change a paid,
undelivered retail order) is a stuck-payment alert (default 30 minutes)."""
ENV_ALERT_MAIL = "CARDSVC_ALERT_MAIL"
"""``0`` keeps alerts off the mail (they are still shown); default on: mailed through the
outbox to the users with an alert address (docs/console.md, Alerts)."""
ENV_COMMISSION_COOLING_MS = "CARDSVC_COMMISSION_COOLING_MS"
"""How long a commission stays pending (refunds reverse it) before its earner may spend it."""
ENV_PIN_FAILURES_MAX = "CARDSVC_PIN_FAILURES_MAX"
ENV_PIN_LOCKOUT_S = "CARDSVC_PIN_LOCKOUT_S"
ENV_PIN_LOCKOUT_MAX_S = "CARDSVC_PIN_LOCKOUT_MAX_S"
"""The per-code PIN lockout (docs/engine.md): wrong PINs before a lock, the first lockout in
seconds (doubling per further lockout), the longest lockout in seconds."""
ENV_LEAN_ROUTES = "CARDSVC_LEAN_ROUTES"
"""``off`` leaves FastAPI's own handlers on the hot routes (``api.lean``); default on."""
ENV_GC_TUNING = "CARDSVC_GC_TUNING"
"""``off`` leaves the garbage collector as Python sets it; default on for ``cardsvc serve``
(``server.app.tune_collector``)."""
ENV_SQL_BATCHING = "CARDSVC_SQL_BATCHING"
"""``off`` runs the order saga's SQL steps as one-order units of the group commit instead of
batches (``cardsvc.db.batcher``: the reference path, for benchmarks); default on."""
SWITCH_VALUES = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}
ENV_TRUSTED_PROXIES = "CARDSVC_TRUSTED_PROXIES"
"""Comma-separated addresses or CIDR networks of the reverse proxies in front of the service.
Empty (the default): no proxy is trusted, ``X-Forwarded-For`` is ignored and the client address
is the TCP peer's. Given: a request whose peer is one of them is attributed to the client its
``X-Forwarded-For`` names (the last address not itself a trusted proxy)."""
TRUSTED_PROXIES_MAX = 64
ENV_PUBLIC_URL = "CARDSVC_PUBLIC_URL"
ENV_PRODUCTION = "CARDSVC_PRODUCTION"
ENV_HOLD_TTL_S = "CARDSVC_STORE_HOLD_TTL_S"
ENV_CHALLENGE = "CARDSVC_STORE_CHALLENGE"
ENV_STORE_DEMO = "CARDSVC_STORE_DEMO"
ENV_SMTP_HOST = "CARDSVC_SMTP_HOST"
ENV_SMTP_PORT = "CARDSVC_SMTP_PORT"
ENV_SMTP_STARTTLS = "CARDSVC_SMTP_STARTTLS"
ENV_SMTP_USERNAME = "CARDSVC_SMTP_USERNAME"
ENV_SMTP_PASSWORD = "CARDSVC_SMTP_PASSWORD"
ENV_MAIL_FROM = "CARDSVC_MAIL_FROM"
ENV_CRASH_AT = "CARDSVC_CRASH_AT"
"""Fault injection for the saga crash test only: the order saga kills the process at the named
point (``cardsvc.sales.CRASH_POINTS``). Never set in production."""




@dataclass(frozen=True)
class Settings:
    """How the service runs.

    ``data_dir`` holds the store (docs/durability.md); ``journal`` is ``"file"`` (embedded, no
    server needed) or ``"redis"`` (then ``redis_url`` is required); ``host``/``port`` are where
    ``cardsvc serve`` listens; ``request_body_bytes_max`` bounds every request body;
    ``trusted_proxies`` are the networks whose ``X-Forwarded-For`` is believed (none by
    default). Raises INVALID_ARGUMENT (details: ``field``) when a value is out of range.
    """

    data_dir: Path
    journal: str = "file"
    redis_url: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    request_body_bytes_max: int = REQUEST_BODY_BYTES_MAX
    upload_bytes_max: int = UPLOAD_BYTES_MAX
    database_url: str | None = None
    risk: RiskLimits = field(default_factory=RiskLimits)
    recovery_interval_s: float = 30.0
    reports_interval_s: float = 10.0
    """How often roll-ups fold the ledger and alerts are evaluated."""
    timezone: str = "Asia/Shanghai"
    """The business's days (dashboards, daily roll-ups): ``CARDSVC_WEB_TIMEZONE``, which the web
    pages show dates in too."""
    crash_at: str | None = None
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    argon2: Argon2Params = ARGON2_PARAMS
    commission_cooling_ms: int = COOLING_MS_DEFAULT
    alert_cooldown_s: int = ALERT_COOLDOWN_MS_DEFAULT // 1000
    alert_stuck_payment_s: int = STUCK_PAYMENT_MS_DEFAULT // 1000
    alert_mail: bool = True
    pin_failures_max: int = PIN_FAILURES_DEFAULT
    pin_lockout_s: int = PIN_LOCKOUT_MS_DEFAULT // 1000
    pin_lockout_max_s: int = PIN_LOCKOUT_MAX_MS_DEFAULT // 1000
    lean_routes: bool = True
    """The lean handlers of the hot routes (``api.lean``); False keeps FastAPI's."""
    sql_batching: bool = True
    """The order saga's commit groups processed as batches (``cardsvc.db.batcher``)."""
    gc_tuning: bool = False
    """Freeze what start-up allocated and raise the collector's thresholds once the service is
    open (``server.app.tune_collector``). Off by default so that apps built inside a test
    process leave its collector alone; ``from_env`` (``cardsvc serve``) turns it on."""
    trusted_proxies: tuple[str, ...] = ()
    public_url: str | None = None
    """Where buyers and providers reach the shop (links in mail, notify URLs); default
    ``base_url``. Behind a proxy: the public https origin."""
    production: bool = False
    """Production settings: sandbox payment channels are refused."""
    store_hold_ttl_s: int = HOLD_TTL_S_DEFAULT
    store_challenge: bool = True
    """The checkout's proof-of-work challenge (off only for benchmarks and load tests)."""
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    mail_from: str = "shop@localhost"
    mail_interval_s: float = 2.0
    store_demo: bool = False
    """Two demo products in an empty shop (``scripts/run.sh`` turns it on)."""

    def __post_init__(self) -> None:
        if self.journal not in JOURNAL_SINKS:
            raise invalid("journal", "journal must be file or redis")
        if self.journal == "redis" and not self.redis_url:
            raise invalid("redis_url", "the redis journal needs a Redis URL")
        if not self.host:
            raise invalid("host", "host must not be empty")
        if not 0 <= self.alert_cooldown_s <= 30 * 86_400:
            raise invalid("alert_cooldown_s", "the alert cooldown is 0 to 30 days in seconds")
        if not 60 <= self.alert_stuck_payment_s <= 30 * 86_400:
            raise invalid("alert_stuck_payment_s",
                          "the stuck-payment delay is 1 minute to 30 days in seconds")
        if not 0 <= self.port <= 65535:
            raise invalid("port", "port must be between 0 and 65535")
        if self.request_body_bytes_max < 1:
            raise invalid("request_body_bytes_max", "request_body_bytes_max must be positive")
        if not 0 <= self.commission_cooling_ms <= COOLING_MS_MAX:
            raise invalid("commission_cooling_ms",
                          f"commission_cooling_ms must be between 0 and {COOLING_MS_MAX}")
        if not 1 <= self.pin_failures_max <= PIN_FAILURES_MAX:
            raise invalid("pin_failures_max",
                          f"pin_failures_max must be between 1 and {PIN_FAILURES_MAX}")
        if not 1 <= self.pin_lockout_s <= self.pin_lockout_max_s <= PIN_LOCKOUT_MAX_S:
            raise invalid("pin_lockout_s", "need 1 <= pin_lockout_s <= pin_lockout_max_s <= "
                                           f"{PIN_LOCKOUT_MAX_S}")
        object.__setattr__(self, "trusted_proxies", trusted_networks(self.trusted_proxies))
        if not HOLD_TTL_S_MIN <= self.store_hold_ttl_s <= HOLD_TTL_S_MAX:
            raise invalid("store_hold_ttl_s", f"the hold TTL is {HOLD_TTL_S_MIN} to "
                          f"{HOLD_TTL_S_MAX} seconds")
        if self.public_url is not None and not self.public_url.startswith(("http://",
                                                                           "https://")):
            raise invalid("public_url", "the public URL is an http(s) origin")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CARDSVC_DATA_DIR``, ``CARDSVC_JOURNAL``, ``CARDSVC_REDIS_URL``,
        ``CARDSVC_HOST``, ``CARDSVC_PORT`` and ``CARDSVC_REQUEST_BODY_BYTES_MAX`` (``environ``
        defaults to ``os.environ``), each replaced by the override of the same field name when
        that is not ``None``. Raises INVALID_ARGUMENT for a malformed or out-of-range value."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "data_dir": Path(env.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR),
            "journal": env.get(ENV_JOURNAL) or "file",
            "redis_url": env.get(ENV_REDIS_URL) or None,
            "host": env.get(ENV_HOST) or DEFAULT_HOST,
            "port": _int_from(env, ENV_PORT, "port", DEFAULT_PORT),
            "request_body_bytes_max": _int_from(
                env, ENV_REQUEST_BODY_BYTES_MAX, "request_body_bytes_max", REQUEST_BODY_BYTES_MAX
            ),
            "database_url": env.get(DATABASE_URL_ENV) or None,
            "risk": RiskLimits.from_env(env),
            "crash_at": env.get(ENV_CRASH_AT) or None,
            "approvals": ApprovalPolicy.from_text(env.get(ENV_APPROVAL_ACTIONS)),
            "timezone": env.get(ENV_TIMEZONE) or "Asia/Shanghai",
            "commission_cooling_ms": _int_from(env, ENV_COMMISSION_COOLING_MS,
                                               "commission_cooling_ms", COOLING_MS_DEFAULT),
            "alert_cooldown_s": _int_from(env, ENV_ALERT_COOLDOWN_S, "alert_cooldown_s",
                                          ALERT_COOLDOWN_MS_DEFAULT // 1000),
            "alert_stuck_payment_s": _int_from(env, ENV_ALERT_STUCK_PAYMENT_S,
                                               "alert_stuck_payment_s",
                                               STUCK_PAYMENT_MS_DEFAULT // 1000),
            "alert_mail": _flag(env, ENV_ALERT_MAIL, True),
            "pin_failures_max": _int_from(env, ENV_PIN_FAILURES_MAX, "pin_failures_max",
                                          PIN_FAILURES_DEFAULT),
            "pin_lockout_s": _int_from(env, ENV_PIN_LOCKOUT_S, "pin_lockout_s",
                                       PIN_LOCKOUT_MS_DEFAULT // 1000),
            "pin_lockout_max_s": _int_from(env, ENV_PIN_LOCKOUT_MAX_S, "pin_lockout_max_s",
                                           PIN_LOCKOUT_MAX_MS_DEFAULT // 1000),
            "lean_routes": _switch_from(env, ENV_LEAN_ROUTES, "lean_routes", True),
            "gc_tuning": _switch_from(env, ENV_GC_TUNING, "gc_tuning", True),
            "sql_batching": _switch_from(env, ENV_SQL_BATCHING, "sql_batching", True),
            "trusted_proxies": tuple(env.get(ENV_TRUSTED_PROXIES, "").split(",")),
            "public_url": env.get(ENV_PUBLIC_URL) or None,
            "production": _flag(env, ENV_PRODUCTION, False),
            "store_hold_ttl_s": _int_from(env, ENV_HOLD_TTL_S, "store_hold_ttl_s",
                                          HOLD_TTL_S_DEFAULT),
            "store_challenge": _flag(env, ENV_CHALLENGE, True),
            "smtp_host": env.get(ENV_SMTP_HOST) or None,
            "smtp_port": _int_from(env, ENV_SMTP_PORT, "smtp_port", 25),
            "smtp_starttls": _flag(env, ENV_SMTP_STARTTLS, False),
            "smtp_username": env.get(ENV_SMTP_USERNAME) or None,
            "smtp_password": env.get(ENV_SMTP_PASSWORD) or None,
            "mail_from": env.get(ENV_MAIL_FROM) or "shop@localhost",
            "store_demo": _flag(env, ENV_STORE_DEMO, False),
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def service_config(self, composer: Composer | None = None) -> ServiceConfig:
        """The configuration of the service's parts (store, database, risk limits, the shop);
        ``composer`` renders the shop's mail (the web layer's templates)."""
        mail = MailConfig(from_address=self.mail_from, smtp_host=self.smtp_host,
                          smtp_port=self.smtp_port, smtp_starttls=self.smtp_starttls,
                          smtp_username=self.smtp_username, smtp_password=self.smtp_password,
                          composer=composer)
        store = StoreSettings(hold_ttl_s=self.store_hold_ttl_s, public_url=self.shop_url,
                              production=self.production)
        return ServiceConfig(store=self.store_config(), database_url=self.database_url,
                             risk=self.risk, crash_at=self.crash_at, approvals=self.approvals,
                             argon2=self.argon2, timezone=self.timezone,
                             commission_cooling_ms=self.commission_cooling_ms,
                             alert_cooldown_ms=self.alert_cooldown_s * 1000,
                             alert_stuck_payment_ms=self.alert_stuck_payment_s * 1000,
                             alert_mail=self.alert_mail,
                             pin_failures_max=self.pin_failures_max,
                             pin_lockout_ms=self.pin_lockout_s * 1000,
                             pin_lockout_max_ms=self.pin_lockout_max_s * 1000,
                             store_settings=store, challenge_enabled=self.store_challenge,
                             mail=mail, retail=RetailLimits.from_env(),
                             demo_shop=self.store_demo, sql_batching=self.sql_batching)

    @property
    def shop_url(self) -> str:
        """The shop's public origin (``public_url``, else where it listens)."""
        return (self.public_url or self.base_url).rstrip("/")

    def store_config(self) -> StoreConfig:
        """The configuration of the durable store these settings describe."""
        return StoreConfig(data_dir=self.data_dir, sink=self.journal, redis_url=self.redis_url)

    @property
    def base_url(self) -> str:
        """The URL clients reach the service at (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def trusted_networks(entries: Sequence[str]) -> tuple[str, ...]:
    """``entries`` as normalised networks (``127.0.0.1`` becomes ``127.0.0.1/32``), blanks
    dropped. Raises INVALID_ARGUMENT (field ``trusted_proxies``) for anything that is not an
    address or a network, ``*`` included: trusting every peer would let any client name any
    address."""
    networks: list[str] = []
    for entry in (text.strip() for text in entries):
        if not entry:
            continue
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise invalid("trusted_proxies", f"{ENV_TRUSTED_PROXIES} holds an entry that is "
                          "not an IP address or a CIDR network") from None
    if len(networks) > TRUSTED_PROXIES_MAX:
        raise invalid("trusted_proxies", f"at most {TRUSTED_PROXIES_MAX} trusted proxies")
    return tuple(dict.fromkeys(networks))
def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise invalid(name.lower(), f"{name} must be 1 or 0")


def _int_from(env: Mapping[str, str], name: str, field: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(field, f"{name} must be an integer") from None


def _switch_from(env: Mapping[str, str], name: str, field: str, default: bool) -> bool:
    raw = env.get(name)
    if not raw:
        return default
    value = SWITCH_VALUES.get(raw.strip().lower())
    if value is None:
        raise invalid(field, f"{name} must be on or off")
    return value
