"""The alias audit log: one JSON line per alias move, schema-versioned and hash-chained.

Format (schema version 2): every line is a JSON object with ``schema_version``, ``prev`` (the
SHA-256 of the previous line's bytes, ``""`` on the first line) and the fields of :class:`AliasMove`.
Lines without ``schema_version`` are the previous format (version 1): they are read as moves that
were not forced, and the whole file is rewritten as version 2 (chained) before the next append.
A line with a newer schema version stops reading and writing with an error that says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import atomic_write_bytes
from .errors import RegistryError

__all__ = ["AUDIT_SCHEMA_VERSION", "AliasMove", "append", "chain_breaks", "read"]

#: the schema version this ct-notebooks writes; it reads this one and version 1 (unversioned lines)
AUDIT_SCHEMA_VERSION = 2
_LEGACY_VERSION = 1


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, as recorded in the audit log (MLflow keeps no alias history)."""

    at: str
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    run_id: str | None
    action: str = field(default="move")  # register | move | promote | rollback | clear
    forced: bool = False  # the move overrode the model gate (a rejected or never-blessed version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "model": self.model,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "run_id": self.run_id,
            "action": self.action,
            "forced": self.forced,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AliasMove:
        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        forced = data.get("forced", False)
        if not isinstance(forced, bool):
            raise TypeError(f"'forced' must be true or false, not {forced!r}")
        return cls(
            at=str(data["at"]),
            model=str(data["model"]),
            alias=str(data["alias"]),
            from_version=opt_int(data.get("from_version")),
            to_version=opt_int(data.get("to_version")),
            actor=str(data.get("actor", "")),
            reason=str(data.get("reason", "")),
            run_id=None if data.get("run_id") is None else str(data["run_id"]),
            action=str(data.get("action", "move")),
            forced=forced,
        )


@dataclass(frozen=True)
class _Line:
    number: int
    raw: bytes
    version: int
    prev: str | None
    move: AliasMove


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _parse(path: Path, number: int, raw: bytes) -> _Line:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        version = data.get("schema_version", _LEGACY_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"schema_version must be a positive integer, not {version!r}")
        if version > AUDIT_SCHEMA_VERSION:
            raise RegistryError(
                f"audit log {path} line {number} has schema version {version}, newer than this "
                f"ct-notebooks reads (up to {AUDIT_SCHEMA_VERSION}): upgrade ct-notebooks to read or write it"
            )
        prev = data.get("prev") if version >= 2 else None
        if version >= 2 and not isinstance(prev, str):
            raise TypeError("'prev' must be the hex digest of the previous line")
        move = AliasMove.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"audit log {path} line {number} is not valid: {exc}") from exc
    return _Line(number, raw, version, prev, move)


def _lines(path: Path) -> tuple[list[_Line], int]:
    """Parsed lines and the length of the valid prefix (a torn last line from a crash is left out)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise RegistryError(f"cannot read the audit log {path}: {exc}") from exc
    parts = data.split(b"\n")
    lines: list[_Line] = []
    offset = 0
    for number, raw in enumerate(parts, start=1):
        last = number == len(parts)
        if last and not raw:
            break
        if not raw.strip():
            offset += len(raw) + 1
            continue
        try:
            lines.append(_parse(path, number, raw))
        except RegistryError:
            if last:  # no newline after it: a torn final line from a crash mid-append
                break
            raise
        offset += len(raw) + (0 if last else 1)
    return lines, offset


def read(path: Path) -> list[AliasMove]:
    """Every move in the log, oldest first (version 1 lines migrated); ``[]`` when there is no log."""
    return [line.move for line in _lines(path)[0]]


def chain_breaks(path: Path) -> list[str]:
    """Where the hash chain does not hold: each entry names the line and what is wrong; ``[]`` when intact.

    Version 1 lines (before the chain) are not checked; the first version 2 line after them must
    chain to the last of them.
    """
    breaks = []
    previous: _Line | None = None
    for line in _lines(path)[0]:
        if line.version >= 2:
            expected = _digest(previous.raw) if previous is not None else ""
            if line.prev != expected:
                breaks.append(f"line {line.number}: 'prev' does not match the line before it "
                              "(a line was changed, removed or inserted)")
        previous = line
    return breaks


def _encode(move: AliasMove, prev: str) -> bytes:
    record = {"schema_version": AUDIT_SCHEMA_VERSION, "prev": prev, **move.to_dict()}
    return json.dumps(record, sort_keys=True).encode("utf-8")


def append(path: Path, move: AliasMove) -> None:
    """Append ``move`` chained to the last line; the caller holds the log's lock.

    A version 1 log is first rewritten as version 2 (atomically); a torn last line is dropped.
    """
    lines, valid = _lines(path)
    if any(line.version < AUDIT_SCHEMA_VERSION for line in lines):
        _rewrite(path, [line.move for line in lines])
        lines, valid = _lines(path)
    prev = _digest(lines[-1].raw) if lines else ""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != valid:
            os.ftruncate(fd, valid)
        os.lseek(fd, valid, os.SEEK_SET)
        data = _encode(move, prev) + b"\n"
        if valid and os.pread(fd, 1, valid - 1) != b"\n":
            data = b"\n" + data  # a last line saved without its newline
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _rewrite(path: Path, moves: list[AliasMove]) -> None:
    """Write ``moves`` as a fresh version 2 chain, replacing ``path`` atomically."""
    out = bytearray()
    prev = ""
    for move in moves:
        raw = _encode(move, prev)
        out += raw + b"\n"
        prev = _digest(raw)
    atomic_write_bytes(path, bytes(out))
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
