"""Stage parameters: names declared in the notebook, JSON values, and their exact injection."""

from __future__ import annotations

import functools
import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
from papermill.translators import PythonTranslator, papermill_translators

from .errors import InputError, ParameterError
from .inputs import check_value, loads
from .stage import CONTEXT_PARAMETER

#: a stage name as ct.yaml allows it
STAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
Override = tuple[str | None, str, Any]


class ExactPythonTranslator(PythonTranslator):
    """Writes JSON values as Python literals with ``repr`` so they reach the kernel exactly."""

    @classmethod
    def translate(cls, val: Any) -> str:
        check_value(val, "parameter value")
        return repr(val)

    @classmethod
    def codify(cls, parameters: dict[str, Any], comment: str = "Parameters") -> str:
        lines = [cls.comment(comment)]
        for name, value in parameters.items():
            check_name(name)
            lines.append(f"{name} = {cls.translate(value)}")
        return "\n".join(lines) + "\n"


def install_translator() -> None:
    """Make Papermill use :class:`ExactPythonTranslator` for Python kernels."""
    papermill_translators.register("python", ExactPythonTranslator)


def check_name(name: Any) -> str:
    """Raise :class:`ParameterError` unless ``name`` is a plain identifier that is not a keyword."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise ParameterError(f"parameter name {str(name)[:60]!r} is not a Python identifier")
    return name


@functools.lru_cache(maxsize=128)
def _declared(path: str, mtime_ns: int) -> tuple[tuple[str, ...], bool, str | None]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if not cells:
        return (), False, kernel
    names = PythonTranslator.inspect(cells[0])
    return tuple(p.name for p in names), True, kernel


def declared_parameters(notebook: Path) -> tuple[str, ...]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    try:
        stat = notebook.stat()
    except FileNotFoundError:
        raise ParameterError(f"stage notebook {notebook} does not exist") from None
    try:
        names, has_cell, _ = _declared(str(notebook), stat.st_mtime_ns)
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise ParameterError(f"stage notebook {notebook} cannot be read: {exc}") from None
    if not has_cell:
        raise ParameterError(f"stage notebook {notebook} has no cell tagged 'parameters'")
    return names


def validate_parameters(notebook: Path, parameters: dict[str, Any], *, stage: str) -> dict[str, Any]:
    """Check names (identifier, declared in the notebook) and values (JSON types) before any kernel starts."""
    declared = set(declared_parameters(notebook))
    if CONTEXT_PARAMETER not in declared:
        raise ParameterError(
            f"stage {stage!r}: notebook {notebook.name} must declare {CONTEXT_PARAMETER} = {{}} in its parameters cell"
        )
    for name, value in parameters.items():
        check_name(name)
        if name not in declared:
            known = ", ".join(sorted(declared - {CONTEXT_PARAMETER})) or "none"
            raise ParameterError(
                f"stage {stage!r}: parameter {name!r} is not declared in {notebook.name} (declared: {known})"
            )
        check_value(value, f"stage {stage!r} parameter {name!r}")
    return dict(parameters)


def parse_assignment(text: str) -> Override:
    """Parse ``[stage.]name=value`` from the command line; the value is JSON if it parses, else a string.

    JSON that Python cannot read exactly (an integer beyond the conversion limit, nesting too deep)
    is an error, never silently a string.
    """
    if "=" not in text:
        raise ParameterError(f"parameter {text[:60]!r} must look like name=value or stage.name=value")
    key, raw = text.split("=", 1)
    stage, _, name = key.rpartition(".")
    check_name(name)
    where = f"parameter {key!r}"
    try:
        value: Any = loads(raw, where, ParameterError)
    except json.JSONDecodeError:
        value = raw
    check_value(value, where)
    return (stage or None), name, value


def overrides_from_mapping(value: Any, where: str = "parameters") -> list[Override]:
    """``{stage: {name: value}}`` (a request body, a parameters file) -> overrides, names and values checked."""
    if not isinstance(value, dict):
        raise ParameterError(f"{where} must be an object {{stage: {{name: value}}}}")
    overrides: list[Override] = []
    for stage, params in value.items():
        if not isinstance(stage, str) or not STAGE_NAME.fullmatch(stage):
            raise ParameterError(f"{where}: {str(stage)[:40]!r} is not a stage name")
        if not isinstance(params, dict):
            raise ParameterError(f"{where}: parameters of stage {stage!r} must be an object {{name: value}}")
        for name, item in params.items():
            check_name(name)
            check_value(item, f"stage {stage!r} parameter {name!r}")
            overrides.append((stage, name, item))
    return overrides


def read_parameters_file(path: Path | str) -> list[Override]:
    """Overrides from a JSON file ``{stage: {name: value}}`` (``-`` reads standard input)."""
    label = "standard input" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"parameters file {label} cannot be read: {exc}") from None
    try:
        data = loads(text, f"parameters file {label}", ParameterError)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"parameters file {label} is not JSON: {exc}") from None
    return overrides_from_mapping(data, f"parameters file {label}")


def overrides_to_mapping(overrides: list[Override]) -> dict[str, dict[str, Any]]:
    """Overrides as ``overrides_from_mapping`` reads them back (every override must name its stage)."""
    data: dict[str, dict[str, Any]] = {}
    for stage, name, value in overrides:
        if stage is None:
            raise InputError(f"override {name!r} names no stage")
        data.setdefault(stage, {})[name] = value
    return data


def split_overrides(overrides: list[Override], declared: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """Assign command-line overrides to stages: ``stage.name`` to one stage, ``name`` to every stage declaring it."""
    per_stage: dict[str, dict[str, Any]] = {name: {} for name in declared}
    for stage, name, value in overrides:
        if stage is not None:
            if stage not in declared:
                raise ParameterError(f"parameter {stage}.{name}: no stage {stage!r} in this pipeline")
            if name not in declared[stage]:
                raise ParameterError(f"parameter {stage}.{name}: stage {stage!r} does not declare {name!r}")
            per_stage[stage][name] = value
            continue
        targets = [s for s, names in declared.items() if name in names and name != CONTEXT_PARAMETER]
        if not targets:
            raise ParameterError(f"parameter {name!r} is not declared by any stage of this pipeline")
        for target in targets:
            per_stage[target][name] = value
    return per_stage
