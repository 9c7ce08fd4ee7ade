"""Which files of a run folder the API serves, read without following any symbolic link."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..inputs import MAX_FILE_NAME_CHARS, MAX_FILE_PATH_CHARS

#: served suffixes and their content types; anything else in a run folder is not served
SERVED_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".png": "image/png",
                ".svg": "image/svg+xml", ".csv": "text/csv; charset=utf-8"}
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def split_path(relative: str) -> list[str] | None:
    """The names of a path inside a run folder, or None when it is not one the API serves.

    Too long is an :class:`InputError` (a 400); empty names, ``.``, ``..``, hidden names (a leading dot),
    and suffixes outside :data:`SERVED_TYPES` give None (a 404).
    """
    if len(relative) > MAX_FILE_PATH_CHARS:
        raise InputError(f"path has {len(relative)} characters; at most {MAX_FILE_PATH_CHARS}", field="path")
    parts = relative.split("/")
    for part in parts:
        if len(part) > MAX_FILE_NAME_CHARS:
            raise InputError(f"path: a name of {len(part)} characters; at most {MAX_FILE_NAME_CHARS}", field="path")
        if not part or part.startswith(".") or "\x00" in part or "\\" in part:
            return None
    if Path(parts[-1]).suffix.lower() not in SERVED_TYPES:
        return None
    return parts


def content_type(name: str) -> str:
    return SERVED_TYPES[Path(name).suffix.lower()]


def has_no_links(base: Path, names: Sequence[str]) -> bool:
    """True when ``base/names...`` exists and none of ``names`` is a symbolic link (``base`` is trusted)."""
    path = base
    for name in names:
        path = path / name
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def read_without_links(base: Path, names: Sequence[str]) -> bytes | None:
    """The bytes of the regular file ``base/names...``, or None if it is missing or any name is a link.

    Each folder is opened relative to the one before with ``O_NOFOLLOW``, so a link swapped in while
    reading is refused as well.
    """
    if not names:
        return None
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError:
        return None
    try:
        for name in names[:-1]:
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError:  # ELOOP for a link, ENOTDIR, ENOENT
                return None
            os.close(fd)
            fd = inner
        try:
            file_fd = os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=fd)
        except OSError:
            return None
        with os.fdopen(file_fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            return handle.read()
    finally:
        os.close(fd)


def served_reports(folder: Path) -> list[str]:
    """HTML files of a run folder the files route serves (no links, nothing hidden, no older attempts)."""
    found = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink()
                         and d != "attempts")
        for name in files:
            if name.endswith(".html") and not name.startswith(".") and not (here / name).is_symlink():
                found.append((here / name).relative_to(folder).as_posix())
    return sorted(found)
