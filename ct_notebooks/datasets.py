"""Batches in the landing zone: list, read, cut off, window, split by time, fingerprint, snapshot."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import time_formats
from .config import DataConfig, ProjectConfig
from .digests import file_sha256
from .errors import ConfigError, CTError, DataError, ParameterError
from .project import SNAPSHOT_SUFFIX

#: column added by :func:`read_batches` holding the file name each row came from
BATCH_COLUMN = "__batch__"

_SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq"), "auto": (".csv", ".parquet", ".pq")}


def _data(config: ProjectConfig | DataConfig) -> DataConfig:
    return config.data if isinstance(config, ProjectConfig) else config


def list_batches(folder: Path, fmt: str = "auto") -> list[Path]:
    """Batch files in ``folder`` (CSV and/or Parquet per ``fmt``), sorted by file name."""
    if fmt not in _SUFFIXES:
        raise ConfigError(f"data.format {fmt!r} is not one of {sorted(_SUFFIXES)}", key="data.format")
    if not folder.is_dir():
        raise DataError(f"the incoming folder {folder} does not exist (data.incoming in ct.yaml)", path=str(folder))
    suffixes = _SUFFIXES[fmt]
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes),
        key=lambda p: p.name,
    )


def resolve_batch(folder: Path, name: str | None, fmt: str = "auto") -> Path:
    """The batch file called ``name`` in ``folder`` (``None``: the newest by name)."""
    batches = list_batches(folder, fmt)
    if not batches:
        raise DataError(f"no {fmt if fmt != 'auto' else 'CSV or Parquet'} batch files in {folder}", path=str(folder))
    if name is None:
        return batches[-1]
    for path in batches:
        if path.name == name:
            return path
    known = ", ".join(p.name for p in batches[-10:])
    raise ParameterError(f"batch {name!r} is not in {folder} (newest batches: {known})")


def parse_time(values: pd.Series, column: str, where: str, time_format: str = "iso") -> pd.Series:
    """Parse a time column to naive UTC ``datetime64`` per ``data.time_format``; errors name the bad value.

    ``iso``: ISO-8601 text (an offset is converted to UTC); ``year``: integer years (1 January);
    ``unix_s`` / ``unix_ms``: seconds / milliseconds since 1970-01-01 UTC; else a strftime pattern.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    elif time_format in ("year", "unix_s", "unix_ms"):
        parsed = _parse_numeric_time(values, column, where, time_format)
    elif "%" in time_format and pd.api.types.is_integer_dtype(values.dtype):  # e.g. %Y%m%d read as numbers
        parsed = _parse_text_time(values.astype("Int64").astype("string"), column, where, time_format)
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        raise time_formats.numeric_time_error(where, column, str(values.dtype), suggest_time_format(values),
                                              time_format)
    elif time_format == "iso":
        try:
            parsed = pd.to_datetime(values, format="ISO8601", utc=True)
        except (ValueError, TypeError):
            bad = _first_unparsable(values)
            raise DataError(
                f"{where}: time column {column!r} holds a value that is not an ISO date/time: {bad!r} "
                "(data.time_format: iso; declare another format, e.g. '%d/%m/%Y', in ct.yaml)",
                column=column,
            ) from None
    else:
        parsed = _parse_text_time(values, column, where, time_format)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _parse_text_time(values: pd.Series, column: str, where: str, time_format: str) -> pd.Series:
    try:
        return pd.to_datetime(values, format=time_format, utc=True)
    except (ValueError, TypeError):
        bad = _first_unparsable(values, time_format)
        raise DataError(f"{where}: time column {column!r} holds a value that does not match data.time_format "
                        f"{time_format!r}: {bad!r}", column=column) from None


def suggest_time_format(values: pd.Series) -> str | None:
    """``year``, ``unix_s`` or ``unix_ms`` when numeric values look like one of them, else None."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return time_formats.suggest(numbers[np.isfinite(numbers)].tolist())


def _plain(value: object) -> object:
    """A numpy scalar as a Python number (an integral float as an int), for messages."""
    item = value.item() if isinstance(value, np.generic) else value
    return int(item) if isinstance(item, float) and item.is_integer() else item


def _parse_numeric_time(values: pd.Series, column: str, where: str, time_format: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad_mask = numbers.isna() & values.notna()
    if bad_mask.any():
        raise DataError(f"{where}: time column {column!r} holds {_plain(values[bad_mask].iloc[0])!r}, not a number "
                        f"(data.time_format: {time_format})", column=column)
    if time_format == "year":
        finite = numbers.dropna()
        wrong = finite[(finite != finite.round()) | (finite < 1) | (finite > 9999)]
        if not wrong.empty:
            hint = suggest_time_format(values)
            advice = f"; they look like {time_formats.words(hint)}: set data.time_format: {hint}" if hint else ""
            raise DataError(f"{where}: time column {column!r} holds {_plain(wrong.iloc[0])!r}, not a year "
                            f"(data.time_format: year){advice}", column=column)
        years = numbers.astype("Int64").astype("string").str.zfill(4)
        return pd.to_datetime(years, format="%Y")
    unit = "s" if time_format == "unix_s" else "ms"
    try:
        return pd.to_datetime(numbers, unit=unit, utc=True)
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise DataError(f"{where}: time column {column!r} holds values out of range for data.time_format "
                        f"{time_format} (from {_plain(numbers.min())!r} to {_plain(numbers.max())!r})",
                        column=column) from None


def check_time_column(config: ProjectConfig | DataConfig, folder: Path, *, rows: int = 200,
                      strict: bool = True) -> Path | None:
    """Parse the time column of the newest batch's first ``rows`` rows; returns the batch checked (None: none).

    Raises the :class:`ConfigError` that :func:`parse_time` gives for a time column written otherwise than
    ``data.time_format`` says (it names the format to declare). ``strict``: also a missing time column
    or an unparsable value; otherwise those are left to the stage that reads the batch.
    """
    data = _data(config)
    try:
        batches = list_batches(folder, data.format)
    except CTError:
        return None
    if not batches:
        return None
    path = batches[-1]
    try:
        frame = pd.read_csv(path, nrows=rows, low_memory=False) if path.suffix.lower() == ".csv" else \
            pd.read_parquet(path).head(rows)
    except (OSError, ValueError, pd.errors.ParserError):
        return None  # unreadable files are reported by the stage that reads them
    if data.time_column not in frame.columns:
        if not strict:
            return None
        raise ConfigError(f"batch {path.name} has no time column {data.time_column!r} (data.time_column in "
                          f"ct.yaml); its columns: {', '.join(map(str, frame.columns[:20]))}", key="data.time_column")
    try:
        parse_time(frame[data.time_column], data.time_column, f"batch {path.name}", data.time_format)
    except ConfigError:
        raise
    except CTError:
        if strict:
            raise
    return path


def _first_unparsable(values: pd.Series, time_format: str | None = None) -> object:
    for value in values.dropna():
        try:
            if time_format is None:
                pd.to_datetime([value], format="ISO8601")
            else:
                datetime.strptime(str(value), time_format)
        except (ValueError, TypeError):
            return value
    return None


def read_batch(path: Path, config: ProjectConfig | DataConfig) -> pd.DataFrame:
    """One batch file with its time column parsed and :data:`BATCH_COLUMN` set to the file name."""
    data = _data(config)
    try:
        frame = pd.read_csv(path, low_memory=False) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"batch file {path} does not exist", path=str(path)) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"batch file {path.name} cannot be read: {str(exc).splitlines()[0][:200]}",
                        path=str(path)) from None
    if data.time_column not in frame.columns:
        raise ConfigError(
            f"batch {path.name} has no time column {data.time_column!r} (data.time_column in ct.yaml); "
            f"its columns: {', '.join(map(str, frame.columns[:20]))}",
            key="data.time_column",
        )
    frame[data.time_column] = parse_time(frame[data.time_column], data.time_column, f"batch {path.name}",
                                         data.time_format)
    frame[BATCH_COLUMN] = path.name
    return frame


def read_batches(paths: Sequence[Path], config: ProjectConfig | DataConfig) -> pd.DataFrame:
    """Several batches stacked in the given order (columns missing from a batch become NaN)."""
    if not paths:
        raise DataError("no batch files to read")
    frames = [read_batch(p, config) for p in paths]
    return pd.concat(frames, ignore_index=True, sort=False)


def parse_cutoff(cutoff: str | None) -> tuple[pd.Timestamp, bool] | None:
    """``(bound, inclusive)``: a date alone means "through the end of that day"."""
    if cutoff is None or cutoff == "":
        return None
    if not isinstance(cutoff, str):
        raise ParameterError(f"cutoff must be an ISO date or date-time string or None, not {cutoff!r}")
    try:
        stamp = pd.Timestamp(datetime.fromisoformat(cutoff))
    except ValueError:
        raise ParameterError(f"cutoff {cutoff!r} is not an ISO date (2026-03-31) or date-time") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if len(cutoff.strip()) == 10:  # a date: the whole day is included
        return stamp + pd.Timedelta(days=1), False
    return stamp, True


def apply_cutoff(frame: pd.DataFrame, time_column: str, cutoff: str | None) -> pd.DataFrame:
    """Rows at or before ``cutoff`` (inclusive; a date alone includes that whole day)."""
    bound = parse_cutoff(cutoff)
    if bound is None:
        return frame
    stamp, inclusive = bound
    keep = frame[time_column] <= stamp if inclusive else frame[time_column] < stamp
    return frame.loc[keep]


def apply_window(
    frame: pd.DataFrame, time_column: str, days: float | None, *, end: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Rows in the last ``days`` days before ``end`` (default: the latest time in the frame)."""
    if days is None:
        return frame
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days <= 0:
        raise ParameterError(f"train_window_days must be a positive number of days or None, not {days!r}")
    if frame.empty:
        return frame
    latest = frame[time_column].max() if end is None else min(end, frame[time_column].max())
    start = latest - pd.Timedelta(days=float(days))
    return frame.loc[(frame[time_column] > start) & (frame[time_column] <= latest)]


WINDOW_KINDS = ("days", "rows", "batches")


def check_window(window: object, where: str = "window") -> dict[str, float | int] | None:
    """``window`` as ``{"days"|"rows"|"batches": N}`` (or ``None``); ParameterError naming what is wrong."""
    if window is None:
        return None
    if not isinstance(window, dict) or len(window) != 1 or next(iter(window)) not in WINDOW_KINDS:
        raise ParameterError(f"{where} must be one of {{days: N}}, {{rows: N}}, {{batches: N}} or None, not {window!r}")
    kind, value = next(iter(window.items()))
    whole = kind != "days"
    bad = isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0
    if bad or (whole and (value != int(value) or (kind == "rows" and value < 2))):
        raise ParameterError(f"{where}: {kind} must be a positive {'whole ' if whole else ''}number, not {value!r}")
    return {kind: int(value) if whole else float(value)}


def apply_training_window(
    frame: pd.DataFrame, time_column: str, window: dict[str, float | int] | None
) -> pd.DataFrame:
    """The newest rows per ``window``: ``{"days": N}`` before the latest row, the newest ``{"rows": N}``
    by time, or the rows of the newest ``{"batches": N}`` batch files (by name, :data:`BATCH_COLUMN`)."""
    spec = check_window(window)
    if spec is None or frame.empty:
        return frame
    kind, value = next(iter(spec.items()))
    if kind == "days":
        return apply_window(frame, time_column, value)
    if kind == "rows":
        ordered = frame.sort_values(time_column, kind="mergesort")
        return ordered.iloc[max(0, len(ordered) - int(value)):].sort_index()
    if BATCH_COLUMN not in frame.columns:
        raise DataError(f"a window of batches needs the {BATCH_COLUMN!r} column that read_batches adds",
                        column=BATCH_COLUMN)
    names = sorted(frame[BATCH_COLUMN].unique().tolist())[-int(value):]
    return frame.loc[frame[BATCH_COLUMN].isin(names)]


def describe_window(window: dict[str, float | int] | None) -> str:
    """``"the last 30 days"``, ``"the newest 5000 rows"``, ``"the newest 3 batches"`` or ``"all history"``."""
    if not window:
        return "all history"
    kind, value = next(iter(window.items()))
    if kind == "days":
        return f"the last {value:g} days"
    noun = {"rows": "row", "batches": "batch"}[kind] if value == 1 else kind
    return f"the newest {int(value)} {noun}"


def time_split(frame: pd.DataFrame, time_column: str, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, holdout)``: the holdout is the latest ``holdout_fraction`` of rows by time."""
    if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, int | float) or not (
        0 < holdout_fraction < 1
    ):
        raise ParameterError(f"holdout_fraction must be a number between 0 and 1 (exclusive), not {holdout_fraction!r}")
    n = len(frame)
    n_holdout = math.ceil(n * holdout_fraction)
    if n < 2 or n_holdout >= n:
        raise DataError(f"cannot split {n} row(s) into train and holdout with holdout_fraction {holdout_fraction}")
    ordered = frame.sort_values(time_column, kind="mergesort").reset_index(drop=True)
    return ordered.iloc[: n - n_holdout].reset_index(drop=True), ordered.iloc[n - n_holdout :].reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of the content: independent of row and column order, sensitive to values and dtypes."""
    columns = sorted(map(str, frame.columns))
    ordered = frame.set_axis([str(c) for c in frame.columns], axis=1)[columns]
    digest = hashlib.sha256()
    for name in columns:
        digest.update(f"{name}:{ordered[name].dtype}\n".encode())
    digest.update(f"rows:{len(frame)}\n".encode())
    if len(frame):
        rows = pd.util.hash_pandas_object(ordered, index=False).to_numpy(dtype=np.uint64)
        digest.update(np.sort(rows).tobytes())
    return "sha256:" + digest.hexdigest()


def write_snapshot(frame: pd.DataFrame, path: Path, *, store: Path | None = None) -> Path:
    """Write ``frame`` as Parquet (parent folders created); returns ``path``.

    With ``store`` (a folder, e.g. :attr:`StageContext.snapshot_store`), the bytes are kept once per
    content: the file is named ``<sha256 of its bytes>.parquet`` in ``store`` and ``path`` is a hard link
    to it, so runs that write the same data share one copy on disk. Readers read ``path`` as before.
    Placing a file in the store never replaces one already there, so writers of the same content at the
    same time end up sharing it. When hard links cannot be made (the store on another file system, a
    file system without them), ``path`` is written as a plain file of its own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        if store is None or not _link_from_store(tmp, path, store):
            tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _link_from_store(written: Path, path: Path, store: Path) -> bool:
    """Make ``path`` a hard link to the store's copy of ``written`` (placed there first when new).

    False when a hard link cannot be made; ``path`` is then left as it was.
    """
    size = written.stat().st_size
    try:
        store.mkdir(parents=True, exist_ok=True)
        stored = store / f"{file_sha256(written)}{SNAPSHOT_SUFFIX}"
        for _attempt in range(5):
            try:
                os.link(written, stored)  # atomic, and never replaces a file of the same name
            except FileExistsError:
                try:
                    if stored.stat().st_size != size:
                        return False  # not the content its name says: leave it alone
                except FileNotFoundError:
                    continue  # collected from the store in between: place it again
            link = path.with_name(f".{path.name}.{uuid.uuid4().hex}.link")
            try:
                os.link(stored, link)
            except FileNotFoundError:
                continue  # collected from the store in between: place it again
            try:
                os.replace(link, path)
            finally:
                # rename() does nothing when both names are links to the same file already
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
            return True
    except OSError:  # EXDEV, EPERM, EMLINK, ENOTSUP, ...: no hard links here
        return False
    return False


def read_snapshot(path: Path) -> pd.DataFrame:
    """Read a Parquet snapshot written by :func:`write_snapshot`."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"data snapshot {path} does not exist", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"data snapshot {path} cannot be read: {str(exc).splitlines()[0][:200]}",
                        path=str(path)) from None


def _excluded(data: DataConfig) -> set[str]:
    names = {data.target, data.time_column, BATCH_COLUMN, *data.drop_columns}
    names.update(c for c in (data.id_column, data.segment_column) if c)
    return names


def feature_columns(config: ProjectConfig | DataConfig, frame: pd.DataFrame) -> list[str]:
    """Every column except target, time, id, segment, ``drop_columns`` and :data:`BATCH_COLUMN`."""
    excluded = _excluded(_data(config))
    return [str(c) for c in frame.columns if c not in excluded]


def categorical_columns(config: ProjectConfig | DataConfig, frame: pd.DataFrame) -> list[str]:
    """Declared ``data.categorical`` features, or the features of object/category/bool/string dtype."""
    data = _data(config)
    features = feature_columns(data, frame)
    if data.categorical is not None:
        missing = [c for c in data.categorical if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"data.categorical names column(s) {missing} that the data does not have", key="data.categorical"
            )
        return [c for c in features if c in set(data.categorical)]
    return [c for c in features if is_categorical_dtype(frame[c])]


def numeric_columns(config: ProjectConfig | DataConfig, frame: pd.DataFrame) -> list[str]:
    """Features that are not categorical."""
    categorical = set(categorical_columns(config, frame))
    return [c for c in feature_columns(config, frame) if c not in categorical]


def is_categorical_dtype(series: pd.Series) -> bool:
    """Object, string, category or bool dtype."""
    dtype = series.dtype
    return bool(
        pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )
