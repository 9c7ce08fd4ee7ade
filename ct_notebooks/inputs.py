"""Limits on values that users send (parameters, reasons, paths, versions) and the checks that enforce them."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import InputError, ParameterError

#: deepest nesting of lists and objects in one parameter value (Python's parser stops near 200)
MAX_DEPTH = 32
#: most digits of an integer: Python's int/str conversion limit, which also bounds literals in the kernel
MAX_INT_DIGITS = 4300
#: the largest request body the server reads, in bytes (parameters travel in a file, not on argv)
MAX_BODY_BYTES = 16 * 1024 * 1024
#: the longest reason recorded with a run or an alias move
MAX_REASON_CHARS = 500
#: the longest file path inside a run folder, and the longest name in it
MAX_FILE_PATH_CHARS = 1024
MAX_FILE_NAME_CHARS = 255
#: the largest model version number (MLflow stores versions as 32-bit integers)
MAX_VERSION = 2**31 - 1
#: the longest idempotency key (HTTP header ``Idempotency-Key``, ``ctn trigger --key``)
MAX_IDEMPOTENCY_KEY_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INT_LIMIT = 10**MAX_INT_DIGITS
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")


def unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate {text[exc.start]!r} at position {exc.start}; text must be valid Unicode"
    return None


def check_text(value: Any, field: str, *, max_chars: int = MAX_REASON_CHARS) -> str:
    """A one-line text field (a reason): a string of valid Unicode, no control characters, at most ``max_chars``."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be a string", field=field)
    if len(value) > max_chars:
        raise InputError(f"{field} has {len(value)} characters; at most {max_chars}", field=field)
    problem = unicode_problem(value)
    if problem:
        raise InputError(f"{field} {problem}", field=field)
    control = _CONTROL.search(value)
    if control:
        raise InputError(f"{field} holds the control character {control.group()!r} at position {control.start()}",
                         field=field)
    return value


def check_version(value: Any, field: str, *, required: bool = True) -> int | None:
    """A model version number: an integer in ``1..MAX_VERSION`` (None allowed when not ``required``)."""
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VERSION:
        raise InputError(f"{field} must be an integer from 1 to {MAX_VERSION}", field=field)
    return value


def check_idempotency_key(key: str | None, *, field: str) -> str | None:
    """An idempotency key: None (no key), or 1 to 200 visible ASCII characters (no space, no control character)."""
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InputError(f"{field} must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters", field=field)
    return key


def check_value(value: Any, where: str, depth: int = 0) -> None:
    """Raise :class:`ParameterError` unless ``value`` is JSON a kernel receives exactly.

    JSON types only, finite floats, valid Unicode, integers of at most :data:`MAX_INT_DIGITS` digits and
    at most :data:`MAX_DEPTH` levels of lists and objects.
    """
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise ParameterError(f"{where}: an integer of more than {MAX_INT_DIGITS} digits is not supported")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, str):
        problem = unicode_problem(value)
        if problem:
            raise ParameterError(f"{where}: the string {problem}")
        return
    if isinstance(value, list | tuple | dict) and depth >= MAX_DEPTH:
        raise ParameterError(f"{where}: nests deeper than {MAX_DEPTH} levels of lists and objects")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ParameterError(f"{where}: key {key!r} is not a string")
            problem = unicode_problem(key)
            if problem:
                raise ParameterError(f"{where}: a key {problem}")
            check_value(item, f"{where}[{key!r}]", depth + 1)
        return
    raise ParameterError(f"{where}: {type(value).__name__} is not a JSON type")


def loads(text: str | bytes, where: str, error: type[InputError] = InputError) -> Any:
    """``json.loads`` that says what is wrong and where; ``json.JSONDecodeError`` for text that is not JSON.

    Nesting too deep for the parser and integers beyond Python's conversion limit raise ``error`` (an
    :class:`InputError`), which a caller must not mistake for "not JSON".
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{where} nests too deeply (at most {MAX_DEPTH} levels in a parameter value)",
                    field=where) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if "digits" in str(exc):
            found = re.search(r"value has (\d+) digits", str(exc))
            count = f"{found.group(1)} digits" if found else "too many digits"
            raise error(f"{where} holds an integer of {count}; at most {MAX_INT_DIGITS}", field=where) from None
        raise
