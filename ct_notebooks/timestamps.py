"""ISO-8601 time text as ct-notebooks stores it: UTC with a trailing ``Z`` (``2026-12-01T12:00:00.000000Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Timespec = Literal["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]


def iso(moment: datetime, *, timespec: Timespec = "microseconds") -> str:
    """``moment`` as ISO-8601 text in UTC ending in ``Z``; a naive datetime is taken as UTC.

    ``timespec`` is :meth:`datetime.isoformat`'s: the registry writes ``milliseconds``, everything else
    ``microseconds``.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso(*, timespec: Timespec = "microseconds") -> str:
    """The current time as :func:`iso` writes it."""
    return iso(datetime.now(UTC), timespec=timespec)


def ms_to_iso(ms: int) -> str:
    """Milliseconds since 1970-01-01 UTC (MLflow's timestamps) as :func:`iso` text with milliseconds."""
    return iso(datetime.fromtimestamp(ms / 1000, tz=UTC), timespec="milliseconds")


def parse_iso(text: str, *, assume_utc: bool = True) -> datetime:
    """The datetime of ISO-8601 ``text``; a ``Z`` suffix means UTC.

    Text without an offset gives a datetime in UTC, or, with ``assume_utc=False``, a naive datetime
    (which cannot be compared with aware ones: such a comparison raises :class:`TypeError`).
    Raises :class:`ValueError` for text that is not ISO-8601.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None and assume_utc:
        return moment.replace(tzinfo=UTC)
    return moment
