"""Mail into a folder: each message a ``.eml`` file (the embedded defaults write to
``<data dir>/mail/``, so the demo shows what a buyer would receive without a mail server)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cardsvc.delivery.senders.base import Mail, MailFailure, to_message

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FolderSender:
    """Writes each mail as ``<folder>/<time>-<message id>.eml`` (written aside, then renamed,
    so a reader never sees half a file)."""

    folder: Path

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self._write, mail)

    def _write(self, mail: Mail) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{_SAFE.sub('_', mail.message_id)[:80]}.eml"
            aside = self.folder / f".{name}.tmp"
            aside.write_bytes(to_message(mail))
            os.replace(aside, self.folder / name)
        except OSError as error:
            raise MailFailure(f"folder {type(error).__name__}", temporary=True) from None
