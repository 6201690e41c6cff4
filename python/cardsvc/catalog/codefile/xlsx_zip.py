"""The zip inside an XLSX file, checked whole before any member is inflated.

Every bound is checked on what the archive declares, before parsing: the member count (from the
end of central directory record, before zipfile reads the directory), each member's name
(plain relative paths only, no duplicates under case folding), compression method, declared
uncompressed size and compression ratio, the sum of the sizes, and the members' places in the
file (inside the archive, in order, never overlapping: the "better zip bomb" points many
entries at one compressed kernel). A member that inflates to more than it declared cannot get
through either: zipfile stops at the declared size and the CRC check then fails. Nested
archives (an embedded workbook) are members like any other: bounded, never opened.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO

from cardsvc.catalog.codefile.values import (
    XLSX_RATIO_FLOOR_BYTES,
    CodeFileLimits,
    over_bound,
)
from cardsvc.errors import CardsvcError, ErrorCode, make_error

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_EOCD_SEARCH_BYTES = _EOCD.size + 0xFFFF  # the record and the longest comment
DIRECTORY_ENTRY_BYTES_MAX = 1024
"""Average central directory bytes a member may take (46 bytes, its name and extra fields):
with ``xlsx_members_max`` it bounds the directory zipfile parses (10 MiB at the default)."""
_STANDARD_PART = re.compile(r"(\[Content_Types\]\.xml|(_rels|docProps|xl|customXml)/[\w./\-\[\]]"
                            r"{1,100})")
"""Member names that may be echoed in an error: the standard OOXML tree. Any other name comes
from whoever wrote the file and is left out (it could hold anything)."""
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
    OverflowError, NotImplementedError, struct.error, UnicodeDecodeError,
)
"""What zipfile and zlib raise on a damaged archive or member (a bad CRC, a short file)."""


def bad_xlsx(reason: str = "bad_xlsx", message: str = "the XLSX file cannot be read",
             **details: Any) -> CardsvcError:
    """INVALID_ARGUMENT for a damaged or foreign workbook (``details["field"] == "file"``)."""
    return make_error(ErrorCode.INVALID_ARGUMENT, message,
                      {"field": "file", "reason": reason, **details})


def shown_name(name: str) -> dict[str, str]:
    """``{"member": name}`` for a standard part name, else nothing."""
    return {"member": name} if _STANDARD_PART.fullmatch(name) else {}


class Package:
    """An XLSX zip whose members all passed the checks; ``open`` streams one (bounded)."""

    def __init__(self, handle: BinaryIO, archive: zipfile.ZipFile,
                 members: dict[str, zipfile.ZipInfo], limits: CodeFileLimits) -> None:
        self._handle = handle
        self._archive = archive
        self._members = members
        self._limits = limits

    def close(self) -> None:
        """Closes the archive and the file (zipfile leaves a file object it was given open)."""
        try:
            self._archive.close()
        finally:
            self._handle.close()

    def has(self, name: str) -> bool:
        return name.casefold() in self._members

    def open(self, name: str, *, whole: bool) -> IO[bytes]:
        """The member ``name`` (part names are case-insensitive) as a stream. ``whole``: the
        reader keeps what it reads (not a streamed worksheet), so the member must also be within
        ``xlsx_part_bytes_max``. Raises INVALID_ARGUMENT (``bad_xlsx``: no such member) or
        LIMIT_EXCEEDED (``xlsx_part``)."""
        info = self._members.get(name.casefold())
        if info is None:
            raise bad_xlsx(message="the XLSX file lacks a part it names", **shown_name(name))
        if whole and info.file_size > self._limits.xlsx_part_bytes_max:
            raise over_bound("xlsx_part", self._limits.xlsx_part_bytes_max,
                             f"a part of the XLSX file is larger than "
                             f"{self._limits.xlsx_part_bytes_max} bytes", **shown_name(name))
        try:
            return self._archive.open(info)
        except ZIP_ERRORS:
            raise bad_xlsx(**shown_name(name)) from None


def open_package(path: Path, limits: CodeFileLimits) -> Package:
    """Opens and checks the zip at ``path`` (module docstring). Raises INVALID_ARGUMENT
    (``bad_xlsx``, ``xlsx_member_name``, ``xlsx_duplicate_member``, ``xlsx_overlap``,
    ``xlsx_encrypted``, ``xlsx_compression``) or LIMIT_EXCEEDED (``xlsx_members``,
    ``xlsx_member``, ``xlsx_ratio``, ``xlsx_total``)."""
    handle = path.open("rb")
    try:
        size = handle.seek(0, 2)
        entries, directory_bytes = _directory_size(handle, size)
        # The record's count may lie; zipfile reads exactly the directory's stated size, so
        # bounding that bounds the members it can build (an entry is ~100 bytes in practice).
        if (entries > limits.xlsx_members_max
                or directory_bytes > limits.xlsx_members_max * DIRECTORY_ENTRY_BYTES_MAX):
            raise over_bound("xlsx_members", limits.xlsx_members_max,
                             f"the XLSX file has more than {limits.xlsx_members_max} members")
        if directory_bytes > size:
            raise bad_xlsx()
        try:
            archive = zipfile.ZipFile(handle)
            infos = archive.infolist()
        except ZIP_ERRORS:
            raise bad_xlsx() from None
        try:
            members = _checked_members(handle, infos, archive.start_dir, limits)
        except BaseException:
            archive.close()
            raise
    except BaseException:
        handle.close()
        raise
    return Package(handle, archive, members, limits)


def _directory_size(handle: BinaryIO, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the end of central directory record (zip64's
    when the classic one says to look there). Raises INVALID_ARGUMENT ``bad_xlsx``."""
    search = min(size, _EOCD_SEARCH_BYTES)
    handle.seek(size - search)
    tail = handle.read(search)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise bad_xlsx()
    _, _, _, _, entries, directory_bytes, offset, _ = _EOCD.unpack_from(tail, at)
    if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF and offset != 0xFFFFFFFF:
        return entries, directory_bytes
    locator = at - _EOCD64_LOCATOR.size
    if locator < 0 or tail[locator:locator + 4] != b"PK\x06\x07":
        raise bad_xlsx()
    record_at = _EOCD64_LOCATOR.unpack_from(tail, locator)[2]
    if record_at + _EOCD64.size > size:
        raise bad_xlsx()
    handle.seek(record_at)
    record = handle.read(_EOCD64.size)
    if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
        raise bad_xlsx()
    fields = _EOCD64.unpack(record)
    return fields[7], fields[8]


def _checked_members(handle: BinaryIO, infos: list[zipfile.ZipInfo], directory_at: int,
                     limits: CodeFileLimits) -> dict[str, zipfile.ZipInfo]:
    """The members by case-folded name, each checked (module docstring)."""
    if len(infos) > limits.xlsx_members_max:
        raise over_bound("xlsx_members", limits.xlsx_members_max,
                         f"the XLSX file has more than {limits.xlsx_members_max} members")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name)
        key = name.casefold()
        if key in members:
            raise bad_xlsx("xlsx_duplicate_member", "the XLSX file holds two members of one "
                           "name (readers disagree on which is meant)", **shown_name(name))
        members[key] = info
        _check_sizes(info, limits)
        total += info.file_size
        if total > limits.xlsx_total_bytes_max:
            raise over_bound("xlsx_total", limits.xlsx_total_bytes_max,
                             f"the XLSX file's members add up to more than "
                             f"{limits.xlsx_total_bytes_max} bytes")
    _check_places(handle, infos, directory_at)
    return members


def _check_name(name: str) -> None:
    """A plain relative path: no drive, root, backslash, NUL, empty, ``.`` or ``..`` segment
    (a directory entry's trailing ``/`` aside)."""
    segments = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if (not name or "\\" in name or "\x00" in name or ":" in segments[0]
            or any(segment in ("", ".", "..") for segment in segments)):
        raise bad_xlsx("xlsx_member_name", "the XLSX file has a member whose name is not a "
                       "plain relative path")


def _check_sizes(info: zipfile.ZipInfo, limits: CodeFileLimits) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise bad_xlsx("xlsx_encrypted", "the XLSX file is encrypted: remove its password and "
                       "save it again", **shown_name(name))
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise bad_xlsx("xlsx_compression", "the XLSX file uses a compression method other than "
                       "deflate", **shown_name(name))
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise bad_xlsx(**shown_name(name))
    if info.file_size > limits.xlsx_member_bytes_max:
        raise over_bound("xlsx_member", limits.xlsx_member_bytes_max,
                         f"a member of the XLSX file is larger than "
                         f"{limits.xlsx_member_bytes_max} bytes", **shown_name(name))
    if (info.file_size > XLSX_RATIO_FLOOR_BYTES
            and info.file_size > limits.xlsx_ratio_max * max(info.compress_size, 1)):
        raise over_bound("xlsx_ratio", limits.xlsx_ratio_max,
                         f"a member of the XLSX file inflates more than "
                         f"{limits.xlsx_ratio_max:g} times (a zip bomb, or one repeated "
                         f"character)", **shown_name(name))


def _check_places(handle: BinaryIO, infos: list[zipfile.ZipInfo], directory_at: int) -> None:
    """Each member's local header and data lie before the central directory, in offset order,
    none overlapping the next. Reads each local header (30 bytes and the name's length)."""
    end = 0
    for info in sorted(infos, key=lambda item: item.header_offset):
        if info.header_offset < end:
            raise bad_xlsx("xlsx_overlap", "two members of the XLSX file overlap (a zip bomb)")
        if info.header_offset >= directory_at:  # zip64 may claim any offset below 2**64
            raise bad_xlsx()
        handle.seek(info.header_offset)
        header = handle.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise bad_xlsx()
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[9:11]
        end = (info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
               + info.compress_size)
        if end > directory_at:
            raise bad_xlsx()
