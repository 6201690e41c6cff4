"""Goal: the client address that throttles unauthenticated requests is the TCP peer's unless the
peer is a proxy the operator named (``CARDSVC_TRUSTED_PROXIES``): a local client cannot name a
victim's address in ``X-Forwarded-For`` to lock it out, nor escape its own lockout by naming
another; behind a trusted proxy, the forwarded address is the client.

Method: a real ``cardsvc serve`` (uvicorn applies the proxy headers) with the risk limits on;
a flood of bogus keys (the default lockout: 100 failures) from 127.0.0.1 carrying forwarded
addresses, then the lockouts as ``GET /v1/lockouts`` lists them.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from cardsvc.access.risk import RiskLimits
from tests.fixtures.serving import create_cli_key, free_loopback_port, start_server, stop

BOGUS = "cs_0123456789abcdef_not-a-real-secret"
FLOOD = RiskLimits().failures_max_per_ip


def flood(url: str, forwarded_for: str) -> list[int]:
    headers = {"authorization": f"Bearer {BOGUS}", "x-forwarded-for": forwarded_for}
    with httpx.Client(base_url=url, timeout=5.0) as http:
        return [http.get("/v1/skus", headers=headers).status_code for _ in range(FLOOD + 1)]


def lockout_subjects(url: str, key: str) -> list[str]:
    listed = httpx.get(f"{url}/v1/lockouts", headers={"authorization": f"Bearer {key}"},
                       timeout=5.0)
    assert listed.status_code == 200, listed.text
    return [item["subject"] for item in listed.json()["items"]]


def serve(tmp_path: Path, **env: str) -> tuple[str, str, object]:
    data_dir, port = tmp_path / "data", free_loopback_port()
    process = start_server(data_dir, port, tmp_path / "serve.log",
                           env={"CARDSVC_RISK_LIMITS": "on", **env})
    return f"http://127.0.0.1:{port}", create_cli_key(data_dir, "--role", "admin"), process


def test_forwarded_addresses_are_ignored_by_default(tmp_path: Path) -> None:
    url, admin, process = serve(tmp_path)
    try:
        assert flood(url, "203.0.113.7")[-1] == 429
        escape = httpx.get(f"{url}/v1/skus", timeout=5.0, headers={
            "authorization": f"Bearer {BOGUS}", "x-forwarded-for": "203.0.113.8"})
        assert escape.status_code == 429  # still the peer's lockout, whatever it claims
        assert lockout_subjects(url, admin) == ["ip:127.0.0.1"]
    finally:
        stop(process)  # type: ignore[arg-type]


def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    url, admin, process = serve(tmp_path, CARDSVC_TRUSTED_PROXIES="127.0.0.0/8, ::1")
    try:
        assert flood(url, "203.0.113.7")[-1] == 429
        other = httpx.get(f"{url}/v1/skus", timeout=5.0, headers={
            "authorization": f"Bearer {BOGUS}", "x-forwarded-for": "203.0.113.8"})
        assert other.status_code == 401  # another client behind the same proxy
        assert lockout_subjects(url, admin) == ["ip:203.0.113.7"]
    finally:
        stop(process)  # type: ignore[arg-type]
