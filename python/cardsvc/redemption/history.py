"""Redemptions as a record: the core's redemption table listed by terminal and time, or found
by code, a page at a time (``cardsvc.paging``), newest first by (time, redemption id).

The core keeps every redemption (rolled-back ones too, with their rollback); this module never
touches SQL except for the audit entry of a search. A search by code takes the code's text in
the call (never in a URL: the HTTP layer puts it in a request body) and finds it through the
core's keyed lookup hash, never plaintext in SQL; it is audited like a trace (``redemption.search``,
the code masked), because it tells whoever asks that the code exists and how it was used.

Who sees what: a caller with ``masked_views`` (admins) any terminal's redemptions; a terminal
key its own only (naming another terminal gives an empty page); a search by code needs
``trace``.
"""

from __future__ import annotations

from cardsvc import audit
from cardsvc.access import Principal
from cardsvc.db import Database
from cardsvc.engine import Engine, Store
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.masking import mask_code
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.redemption.terminals import RedemptionView, Terminals

REDEMPTION_CURSOR = (int, str)
"""The sort key of the redemption lists: (``redeemed_at_ms``, the redemption's public id, which
stands for the core's number without telling it: a cursor must not count redemptions either).
A page plus one (PAGE_SIZE_MAX + 1) is far below the core's REDEMPTION_LIST_MAX, so one call
reads it."""


class RedemptionHistory:
    """The redemption lists over the core (through the store) and the audit log; each
    redemption shown by ``view`` (``Terminals.view``: its public id, never the core's number)."""

    def __init__(self, store: Store, db: Database, terminals: Terminals) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.terminals = terminals

    def list_redemptions(self, viewer: Principal, *, terminal: str | None = None,
                         since_ms: int | None = None, until_ms: int | None = None,
                         cursor: str | None = None, limit: int | None = None,
                         ) -> Page[RedemptionView]:
        """Redemptions newest first: made by ``terminal`` (a terminal key's id; None: any),
        at ``since_ms <= at < until_ms``. Reads only. Raises FORBIDDEN (neither
        ``masked_views`` nor a terminal key), INVALID_ARGUMENT (``since`` after ``until``, a
        foreign cursor), LIMIT_EXCEEDED (``limit``)."""
        if not viewer.holds("masked_views"):
            if viewer.role != "terminal" or viewer.is_user:
                viewer.require("masked_views")
            if terminal not in (None, viewer.key_id):
                return Page([], None)
            terminal = viewer.key_id
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise invalid("since", "since must not be after until")
        return self._page(cursor, limit, terminal=terminal, since_ms=since_ms or 0,
                          until_ms=until_ms)

    def search(self, viewer: Principal, code: str, *, cursor: str | None = None,
               limit: int | None = None) -> Page[RedemptionView]:
        """The redemptions of ``code`` newest first (rolled-back ones with their rollback),
        found through the keyed lookup; audited as ``redemption.search`` (the code masked) on
        the first page. Raises FORBIDDEN (no ``trace``), CODE_NOT_FOUND, INVALID_CODE,
        INVALID_ARGUMENT (a foreign cursor), LIMIT_EXCEEDED (``limit``)."""
        viewer.require("trace")
        check_page_size(limit)
        decode_cursor(cursor, REDEMPTION_CURSOR)
        code_id = self.engine.lookup(code)
        page = self._page(cursor, limit, code_id=code_id)
        if cursor is None:
            audit.record(self.db, actor=viewer.actor, action="redemption.search",
                         object_type="code", object_id=str(code_id),
                         details={"code": mask_code(code), "found": len(page.items)},
                         at_ms=self.engine.now_ms())
        return page

    def _page(self, cursor: str | None, limit: int | None, *, terminal: str | None = None,
              code_id: int | None = None, since_ms: int = 0,
              until_ms: int | None = None) -> Page[RedemptionView]:
        size = check_page_size(limit)
        after = decode_cursor(cursor, REDEMPTION_CURSOR)
        before = None
        if after is not None:
            number = self.terminals.redemption_number(str(after[1]))
            if number is None or int(after[0]) < 0:  # the core's times are unsigned
                raise make_error(ErrorCode.INVALID_ARGUMENT,
                                 "cursor is not one this list gave out", {"field": "cursor"})
            before = (int(after[0]), number)
        self.store.wait_visible()
        rows = self.engine.list_redemptions(terminal=terminal, code_id=code_id,
                                            since_ms=since_ms, until_ms=until_ms,
                                            before=before, limit=size + 1)
        views = self.terminals.views(rows)
        return page_of(views, size, key=lambda r: (r.redeemed_at_ms, r.redemption_id))
