"""ISO-8601 time text: UTC with a Z, naive datetimes as UTC, milliseconds for the registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ct_notebooks.timestamps import iso, ms_to_iso, now_iso, parse_iso


def test_iso_writes_utc_with_z_and_microseconds() -> None:
    assert iso(datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == "2026-12-01T12:00:00.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 12, 1, 14, 30, 5, 123456, tzinfo=plus_two)) == "2026-12-01T12:30:05.123456Z"


def test_iso_takes_a_naive_datetime_as_utc() -> None:
    assert iso(datetime(2026, 12, 1, 12, 0)) == "2026-12-01T12:00:00.000000Z"


def test_iso_milliseconds_truncates() -> None:
    moment = datetime(2026, 12, 1, 12, 0, 0, 123999, tzinfo=UTC)
    assert iso(moment, timespec="milliseconds") == "2026-12-01T12:00:00.123Z"
    assert iso(moment, timespec="seconds") == "2026-12-01T12:00:00Z"


def test_ms_to_iso_is_utc_with_milliseconds() -> None:
    assert ms_to_iso(0) == "1970-01-01T00:00:00.000Z"
    assert ms_to_iso(1_764_590_400_123) == "2025-12-01T12:00:00.123Z"


def test_now_iso_is_current_utc_time() -> None:
    before = datetime.now(UTC)
    text = now_iso()
    after = datetime.now(UTC)
    assert text.endswith("Z") and len(text) == len("2026-12-01T12:00:00.000000Z")
    assert before <= parse_iso(text) <= after
    assert len(now_iso(timespec="milliseconds")) == len("2026-12-01T12:00:00.000Z")


def test_parse_iso_reads_z_and_offsets_as_aware_datetimes() -> None:
    assert parse_iso("2026-12-01T12:00:00.000000Z") == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_iso("2026-12-01T14:00:00+02:00") == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_iso("2026-12-01T12:00:00Z").utcoffset() == timedelta(0)


def test_parse_iso_naive_text_is_utc_unless_asked_to_keep_it_naive() -> None:
    assert parse_iso("2026-12-01T12:00:00") == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    kept = parse_iso("2026-12-01T12:00:00", assume_utc=False)
    assert kept == datetime(2026, 12, 1, 12, 0) and kept.tzinfo is None
    assert parse_iso("2026-12-01T12:00:00Z", assume_utc=False).tzinfo is not None


@pytest.mark.parametrize("moment", [
    datetime(2026, 12, 1, 12, 0, 0, 1, tzinfo=UTC),
    datetime(1999, 2, 28, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
])
def test_iso_and_parse_iso_round_trip(moment: datetime) -> None:
    assert parse_iso(iso(moment)) == moment
    assert iso(parse_iso(iso(moment))) == iso(moment)


def test_parse_iso_rejects_other_text() -> None:
    with pytest.raises(ValueError):
        parse_iso("yesterday")
