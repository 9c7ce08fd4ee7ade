"""One write transaction on a project's SQLite file, shared by the stores that several processes use."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .errors import ArchiveError


@contextlib.contextmanager
def immediate(path: Path, what: str) -> Iterator[sqlite3.Connection]:
    """A connection inside ``BEGIN IMMEDIATE`` (WAL, waits up to 60 s for the write lock), committed on exit.

    Any SQLite failure becomes :class:`ArchiveError` naming ``what`` and the file.
    """
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{what} {path} cannot be used: {exc}") from exc
    finally:
        conn.close()
