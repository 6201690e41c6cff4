"""Payment channels: the accounts a shop owner configured at its providers (docs/payments.md).

A channel is a provider adapter plus its settings: the provider's merchant id, secrets, public
keys and options. Admins create and change channels through the API and the CLI; every change is
audited without its secrets. Secrets are sealed with the crypto envelope (``seal_secret``: a data
key per channel wrapped by the master key, the channel id as associated data) and never appear
in a view, a log or an audit entry: views list their names only.

Each channel has a notify URL, ``<public URL>/pay/notify/<token>``, whose token (32 random bytes,
base64url) is unguessable and distinct per channel, so a callback names its channel by the path
it was sent to and a forged path reaches nothing. The sandbox channel's pay page is a store page
(``/store/sandbox/pay``); sandbox channels are refused while the production settings are on
(``SANDBOX_IN_PRODUCTION``), when created, enabled or used.

Loaded channels (a :class:`LiveChannel`: the provider's :class:`ChannelConfig` with its secrets
opened, and the adapter) are cached in memory and dropped on every change, so checkouts and
callbacks never read SQL for them.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from cardsvc import audit
from cardsvc.checks import check_id, check_name
from cardsvc.crypto import MasterKeyring, SealedSecret, open_secret, seal_secret
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.payments.providers import PROVIDERS, make_provider
from cardsvc.payments.providers.base import ChannelConfig, Provider, Transport
from cardsvc.payments.tables import PaymentChannel

NOTIFY_PATH = "/pay/notify/"
SANDBOX_PAY_PATH = "/store/sandbox/pay"
RETURN_PATH = "/orders/"
SANDBOX_CHANNEL_ID = "sandbox"
"""The channel the embedded defaults create on a fresh data directory."""
SETTING_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SETTINGS_MAX = 32
"""Secrets, keys and options per channel: each provider needs fewer than ten."""
SETTING_CHARS_MAX = 16_384
"""A PEM certificate chain is a few KiB."""
CHANNELS_MAX = 64
CACHE_TTL_S = 5.0
"""Loaded channels are re-read at most this often, so a change made by another process (the
command line beside the server) takes effect within seconds; this process's own changes drop
the cache at once."""


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel as admins see it: never its secrets, only their names."""

    channel_id: str
    provider: str
    display_name: str
    merchant_id: str
    enabled: bool
    sandbox: bool
    notify_url: str
    secret_names: tuple[str, ...]
    verify_key_ids: tuple[str, ...]
    options: Mapping[str, str]
    secret_version: int
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True)
class LiveChannel:
    """A channel ready to use: its view, the adapter's configuration (secrets opened) and the
    adapter."""

    view: ChannelView
    config: ChannelConfig
    provider: Provider


class Channels:
    """The channels of one deployment over the SQL store, with an in-memory cache."""

    def __init__(self, db: Database, keyring: MasterKeyring, *, public_url: str,
                 clock_ms: Callable[[], int], transport: Transport | None = None,
                 production: bool = False) -> None:
        self.db = db
        self.keyring = keyring
        self.public_url = public_url.rstrip("/")
        self.clock_ms = clock_ms
        self.transport = transport
        self.production = production
        self._lock = threading.Lock()
        self._live: dict[str, LiveChannel] | None = None
        self._loaded_at = 0.0
        self._by_token: dict[str, str] = {}

    # ----- admin -----

    def create(self, channel_id: str, provider: str, *, display_name: str, merchant_id: str,
               secrets_: Mapping[str, str], verify_keys: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None, enabled: bool = True,
               actor: str) -> ChannelView:
        """A new channel. Raises CHANNEL_EXISTS, INVALID_ARGUMENT, LIMIT_EXCEEDED,
        PAYMENT_CONFIG_INVALID (the adapter's check of the settings, naming the setting),
        SANDBOX_IN_PRODUCTION."""
        check_id("channel_id", channel_id)
        check_name(display_name, "display_name")
        if provider not in PROVIDERS:
            raise make_error(ErrorCode.PAYMENT_CONFIG_INVALID, "not a known payment provider",
                             {"setting": "provider", "provider": provider[:32]})
        self._refuse_sandbox(provider, enabled)
        secrets_map = _settings("secrets", secrets_)
        keys_map = _settings("verify_keys", verify_keys or {})
        options_map = _settings("options", options or {})
        token = secrets.token_urlsafe(32)
        now_ms = self.clock_ms()
        sealed = seal_secret(self.keyring, channel_id, json.dumps(secrets_map).encode())
        row = PaymentChannel(
            channel_id=channel_id, provider=provider, display_name=display_name,
            merchant_id=merchant_id, enabled=enabled, notify_token=token,
            master_key_id=sealed.master_key_id, data_key_wrapped=sealed.data_key_wrapped,
            secrets_sealed=sealed.sealed, secret_names=sorted(secrets_map),
            verify_keys=keys_map, options=options_map, secret_version=1, sort_order=0,
            created_at_ms=now_ms, updated_at_ms=now_ms, created_by=actor)
        self._check(row, secrets_map)
        with self.db.write() as session:
            if session.get(PaymentChannel, channel_id) is not None:
                raise make_error(ErrorCode.CHANNEL_EXISTS, "the channel exists",
                                 {"channel_id": channel_id})
            count = len(list(session.scalars(select(PaymentChannel.channel_id))))
            if count >= CHANNELS_MAX:
                raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many payment channels",
                                 {"field": "channel_id", "max": CHANNELS_MAX})
            session.add(row)
            view = self._view(row)
            audit.append(session, actor=actor, action="channel.create", object_type="channel",
                         object_id=channel_id, details=_audit_details(view), at_ms=now_ms)
        self._drop_cache()
        return view

    def update(self, channel_id: str, changes: Mapping[str, Any], *, actor: str) -> ChannelView:
        """Changes ``display_name``, ``merchant_id``, ``enabled``, ``options``, ``verify_keys``
        or ``secrets`` (replaced whole; the secret version goes up by one). Audited with the
        names of what changed, never secret values. Raises CHANNEL_NOT_FOUND, INVALID_ARGUMENT,
        PAYMENT_CONFIG_INVALID, SANDBOX_IN_PRODUCTION."""
        allowed = {"display_name", "merchant_id", "enabled", "options", "verify_keys", "secrets"}
        for name in changes:
            if name not in allowed:
                raise invalid(name, f"{name} cannot be changed")
        now_ms = self.clock_ms()
        with self.db.write() as session:
            row = session.get(PaymentChannel, channel_id)
            if row is None:
                raise _not_found(channel_id)
            secrets_map = self._open(row)
            if "display_name" in changes:
                row.display_name = check_name(changes["display_name"], "display_name")
            if "merchant_id" in changes:
                row.merchant_id = str(changes["merchant_id"])
            if "enabled" in changes:
                self._refuse_sandbox(row.provider, bool(changes["enabled"]))
                row.enabled = bool(changes["enabled"])
            if "options" in changes:
                row.options = _settings("options", changes["options"])
            if "verify_keys" in changes:
                row.verify_keys = _settings("verify_keys", changes["verify_keys"])
            if "secrets" in changes:
                secrets_map = _settings("secrets", changes["secrets"])
                sealed = seal_secret(self.keyring, channel_id, json.dumps(secrets_map).encode())
                row.master_key_id = sealed.master_key_id
                row.data_key_wrapped = sealed.data_key_wrapped
                row.secrets_sealed = sealed.sealed
                row.secret_names = sorted(secrets_map)
                row.secret_version += 1
            self._check(row, secrets_map)
            row.updated_at_ms = now_ms
            view = self._view(row)
            audit.append(session, actor=actor, action="channel.update", object_type="channel",
                         object_id=channel_id, at_ms=now_ms,
                         details={"changed": sorted(changes), "enabled": row.enabled,
                                  "secret_version": row.secret_version})
        self._drop_cache()
        return view

    def all(self) -> list[ChannelView]:
        with self.db.read() as session:
            return [self._view(row) for row in session.scalars(
                select(PaymentChannel).order_by(PaymentChannel.sort_order,
                                                PaymentChannel.channel_id))]

    def get(self, channel_id: str) -> ChannelView:
        """Raises CHANNEL_NOT_FOUND."""
        with self.db.read() as session:
            row = session.get(PaymentChannel, channel_id)
            if row is None:
                raise _not_found(channel_id)
            return self._view(row)

    def ensure_sandbox(self, *, actor: str = "system") -> ChannelView | None:
        """The embedded defaults' channel: a sandbox channel with a random key, created when
        no channel exists yet (and never in production). Returns it when created, else None."""
        if self.production:
            return None
        with self.db.read() as session:
            if session.scalar(select(PaymentChannel.channel_id).limit(1)) is not None:
                return None
        try:
            return self.create(SANDBOX_CHANNEL_ID, "sandbox", display_name="Sandbox",
                               merchant_id="sandbox-shop",
                               secrets_={"key": secrets.token_hex(32)}, actor=actor)
        except CardsvcError as error:
            if error.code == ErrorCode.CHANNEL_EXISTS:
                return None
            raise

    # ----- use -----

    def live(self, channel_id: str) -> LiveChannel:
        """The loaded channel. Raises CHANNEL_NOT_FOUND."""
        live = self._cache().get(channel_id)
        if live is None:
            raise _not_found(channel_id)
        return live

    def by_token(self, token: str) -> LiveChannel | None:
        """The channel whose notify URL ends in ``token`` (None: no such channel)."""
        cache = self._cache()
        channel_id = self._by_token.get(token)
        return None if channel_id is None else cache.get(channel_id)

    def for_checkout(self, channel_id: str) -> LiveChannel:
        """The channel a new checkout may pay through. Raises CHANNEL_NOT_FOUND,
        CHANNEL_DISABLED, SANDBOX_IN_PRODUCTION."""
        live = self.live(channel_id)
        if not live.view.enabled:
            raise make_error(ErrorCode.CHANNEL_DISABLED, "the payment channel is switched off",
                             {"channel_id": channel_id})
        self._refuse_sandbox(live.view.provider, True)
        return live

    def storefront(self) -> list[ChannelView]:
        """The channels a buyer may choose, in display order."""
        return [live.view for live in self._cache().values() if live.view.enabled
                and not (self.production and live.view.sandbox)]

    # ----- internals -----

    def _refuse_sandbox(self, provider: str, enabled: bool) -> None:
        if self.production and enabled and provider == "sandbox":
            raise make_error(ErrorCode.SANDBOX_IN_PRODUCTION,
                             "sandbox payments are refused while the production settings are on",
                             {"provider": provider})

    def _check(self, row: PaymentChannel, secrets_map: Mapping[str, str]) -> None:
        make_provider(row.provider).check_config(self._config(row, secrets_map))

    def _config(self, row: PaymentChannel, secrets_map: Mapping[str, str]) -> ChannelConfig:
        options = dict(row.options)
        if row.provider == "sandbox":
            options.setdefault("pay_page_url", self.public_url + SANDBOX_PAY_PATH)
        return ChannelConfig(
            provider=row.provider, channel_id=row.channel_id, merchant_id=row.merchant_id,
            notify_url=self.public_url + NOTIFY_PATH + row.notify_token,
            return_url=self.public_url + RETURN_PATH,
            secrets={name: value.encode() for name, value in secrets_map.items()},
            verify_keys=dict(row.verify_keys), options=options,
            secret_version=row.secret_version)

    def _open(self, row: PaymentChannel) -> dict[str, str]:
        sealed = SealedSecret(row.master_key_id, bytes(row.data_key_wrapped),
                              bytes(row.secrets_sealed))
        loaded = json.loads(open_secret(self.keyring, row.channel_id, sealed))
        return {str(name): str(value) for name, value in loaded.items()}

    def _view(self, row: PaymentChannel) -> ChannelView:
        return ChannelView(
            channel_id=row.channel_id, provider=row.provider, display_name=row.display_name,
            merchant_id=row.merchant_id, enabled=row.enabled,
            sandbox=row.provider == "sandbox",
            notify_url=self.public_url + NOTIFY_PATH + row.notify_token,
            secret_names=tuple(row.secret_names), verify_key_ids=tuple(sorted(row.verify_keys)),
            options=dict(row.options), secret_version=row.secret_version,
            created_at_ms=row.created_at_ms, updated_at_ms=row.updated_at_ms)

    def _cache(self) -> dict[str, LiveChannel]:
        live = self._live
        now = time.monotonic()
        if live is not None and now - self._loaded_at < CACHE_TTL_S:
            return live
        with self._lock:
            if self._live is not None and now - self._loaded_at < CACHE_TTL_S:
                return self._live
            loaded: dict[str, LiveChannel] = {}
            tokens: dict[str, str] = {}
            with self.db.read() as session:
                rows = list(session.scalars(select(PaymentChannel).order_by(
                    PaymentChannel.sort_order, PaymentChannel.channel_id)))
            for row in rows:
                config = self._config(row, self._open(row))
                provider = make_provider(row.provider, transport=self.transport,
                                         clock_ms=self.clock_ms)
                loaded[row.channel_id] = LiveChannel(self._view(row), config, provider)
                tokens[row.notify_token] = row.channel_id
            self._by_token = tokens
            self._live = loaded
            self._loaded_at = now
            return loaded

    def _drop_cache(self) -> None:
        with self._lock:
            self._live = None


def _settings(field: str, values: Any) -> dict[str, str]:
    """A channel's secrets, keys or options: names of letters, digits, ``_.-``; text values.
    Raises INVALID_ARGUMENT, LIMIT_EXCEEDED."""
    if not isinstance(values, Mapping):
        raise invalid(field, f"{field} must be an object of names to text")
    if len(values) > SETTINGS_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"too many {field}",
                         {"field": field, "max": SETTINGS_MAX})
    out: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not SETTING_NAME.fullmatch(name):
            raise invalid(field, f"{field} names are letters, digits, '_', '.' or '-'")
        if not isinstance(value, str) or len(value) > SETTING_CHARS_MAX:
            raise invalid(field, f"each of {field} is text of at most {SETTING_CHARS_MAX} "
                          "characters", name=name)
        out[name] = value
    return out


def _audit_details(view: ChannelView) -> dict[str, Any]:
    return {"provider": view.provider, "merchant_id": view.merchant_id,
            "enabled": view.enabled, "secret_names": list(view.secret_names),
            "verify_key_ids": list(view.verify_key_ids), "options": dict(view.options)}


def _not_found(channel_id: str) -> CardsvcError:
    return make_error(ErrorCode.CHANNEL_NOT_FOUND, "no such payment channel",
                      {"channel_id": channel_id[:64]})
