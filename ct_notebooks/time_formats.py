"""Time column formats (``data.time_format``): their names, a guess from numbers, and a quick check of CSV batches."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

#: ``data.time_format`` values besides a strftime pattern
TIME_FORMATS = ("iso", "year", "unix_s", "unix_ms")
_WORDS = {"year": "years", "unix_s": "Unix timestamps in seconds", "unix_ms": "Unix timestamps in milliseconds"}


def suggest(numbers: Iterable[float]) -> str | None:
    """``year``, ``unix_s`` or ``unix_ms`` when finite numbers look like one of them, else None."""
    values = [v for v in numbers if math.isfinite(v)]
    if not values:
        return None
    low, high = min(values), max(values)
    if all(v == round(v) for v in values) and low >= 1000 and high <= 2999:
        return "year"
    if low >= 1e8 and high < 1e11:
        return "unix_s"
    if low >= 1e11 and high < 1e14:
        return "unix_ms"
    return None


def numeric_time_error(where: str, column: str, dtype: str, hint: str | None, time_format: str) -> ConfigError:
    """The error of a numeric time column read as text dates: it names the ``time_format`` to declare."""
    advice = (f"they look like {_WORDS[hint]}: set data.time_format: {hint} in ct.yaml" if hint else
              "set data.time_format in ct.yaml to year, unix_s or unix_ms")
    expected = "ISO dates/times" if time_format == "iso" else f"dates in the format {time_format!r}"
    return ConfigError(f"{where}: time column {column!r} holds numbers ({dtype}), not {expected}; {advice}",
                       key="data.time_format")


def words(time_format: str) -> str:
    """How a numeric format is described in messages."""
    return _WORDS[time_format]


def check_csv_batch(path: Path, column: str, time_format: str, rows: int = 50) -> None:
    """Raise :func:`numeric_time_error` when the first ``rows`` values of a CSV's time column are all numbers
    but ``time_format`` expects text dates. Reads only those rows (no pandas); anything odd is left to the stages.
    """
    if time_format not in ("iso",) and "%" not in time_format:
        return
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or column not in header:
                return
            index = header.index(column)
            texts = [row[index] for _, row in zip(range(rows), reader, strict=False) if len(row) > index]
    except (OSError, csv.Error):
        return
    texts = [t.strip() for t in texts if t.strip()]
    try:
        numbers = [float(t) for t in texts]
    except ValueError:
        return
    if numbers and "%" in time_format and all(t.isdigit() for t in texts):
        return  # a pattern such as %Y%m%d is written in digits
    if numbers:
        dtype = "int64" if all(n == round(n) for n in numbers) else "float64"
        raise numeric_time_error(f"batch {path.name}", column, dtype, suggest(numbers), time_format)


def check_incoming(folder: Path, column: str, time_format: str, fmt: str = "auto") -> Path | None:
    """:func:`check_csv_batch` on the newest batch in ``folder`` when it is a CSV; returns the file checked."""
    suffixes = {"csv": (".csv",), "parquet": (".parquet", ".pq")}.get(fmt, (".csv", ".parquet", ".pq"))
    try:
        batches = sorted(p.name for p in folder.iterdir()
                         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)
    except OSError:
        return None
    if not batches or not batches[-1].lower().endswith(".csv"):
        return None
    path = folder / batches[-1]
    check_csv_batch(path, column, time_format)
    return path
