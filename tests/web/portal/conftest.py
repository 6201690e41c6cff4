"""The portal's tests use the console's service, shop and browsers (tests/web/console)."""

from tests.web.console.conftest import service, shop, visit

__all__ = ["service", "shop", "visit"]
