"""The data gate per batch: the champion's data as reference, new batches judged alone, bad ones quarantined."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import ProjectConfig
from .contracts import TAG_ARCHIVE_PATH, TAG_REFERENCE, Ingest
from .datasets import BATCH_COLUMN, categorical_columns, is_categorical_dtype, read_batch, read_snapshot
from .digests import file_sha256
from .errors import CTError, DataError
from .validation import check_batch_quality, check_schema, declared_schema, dtype_family, infer_schema

if TYPE_CHECKING:
    from .project import Project

#: verdicts of a batch: already part of the champion's data (not judged again), judged and passed,
#: judged and failed (kept out of this run), failed and moved to the quarantine folder
ACCEPTED, PASSED, FAILED, QUARANTINED = "accepted", "passed", "failed", "quarantined"
#: suffix of the file written next to a quarantined batch, holding why it was moved
REASON_SUFFIX = ".reason.json"


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    return "sha256:" + file_sha256(path)


@dataclass
class Reference:
    """The data the champion was built from (its run's train and holdout snapshots) and its batches."""

    label: str
    frame: pd.DataFrame | None = None
    version: int | None = None
    #: snapshot files, relative to the project root
    paths: list[str] = field(default_factory=list)
    #: batch file name -> content digest (None when the champion's run did not record one)
    batches: dict[str, str | None] = field(default_factory=dict)

    def accepts(self, name: str, digest: str | None) -> bool:
        """True when this batch (same content, or same name where no digest was recorded) is in the champion's data."""
        if digest is not None and digest in {d for d in self.batches.values() if d}:
            return True
        return name in self.batches and self.batches[name] is None


def _tag(tags: Mapping[str, str], key: str) -> str | None:
    value = tags.get(key)
    return str(value) if value else None


def champion_reference(project: Project, champion: Any | None) -> Reference:
    """The champion's data: the train and holdout snapshots of the run that trained it.

    ``champion`` is the registry's champion version (``tags`` and ``version``) or None. The run folder
    comes from the version's ``ct.archive_path`` tag; a version that only has ``ct.reference`` (its
    training snapshot) gets that file and the holdout snapshot next to it, when present.
    """
    if champion is None:
        return Reference(label="the batches themselves (no champion yet): each is checked against the others")
    root = project.root
    tags = dict(champion.tags or {})
    version = int(champion.version)
    files: list[Path] = []
    batches: dict[str, str | None] = {}
    archive = _tag(tags, TAG_ARCHIVE_PATH)
    outputs_file = root / archive / "outputs" / "ingest.json" if archive else None
    if outputs_file is not None and outputs_file.is_file():
        outputs = json.loads(outputs_file.read_text(encoding="utf-8"))
        run_dir = outputs_file.parent.parent
        files = [run_dir / outputs[key] for key in (Ingest.train_path, Ingest.holdout_path) if outputs.get(key)]
        digests = outputs.get(Ingest.batch_digests) or {}
        batches = {str(name): digests.get(name) for name in outputs.get(Ingest.batches) or []}
    else:
        train = _tag(tags, TAG_REFERENCE)
        if train:
            files = [root / train, (root / train).with_name("holdout.parquet")]
            files = [files[0]] + [f for f in files[1:] if f.is_file()]
    readable = [f for f in files if f.is_file()]
    if not readable:
        return Reference(
            label=f"the batches themselves: champion version {version} has no readable data snapshot "
                  f"({TAG_ARCHIVE_PATH} = {archive!r}, {TAG_REFERENCE} = {tags.get(TAG_REFERENCE)!r})",
            version=version,
        )
    frame = pd.concat([read_snapshot(f) for f in readable], ignore_index=True, sort=False)
    paths = [f.resolve().relative_to(root.resolve()).as_posix() if f.resolve().is_relative_to(root.resolve())
             else str(f) for f in readable]
    label = f"data of champion version {version} ({len(frame)} rows: {', '.join(paths)})"
    return Reference(label=label, frame=frame, version=version, paths=paths, batches=batches)


def _schema_options(config: ProjectConfig) -> tuple[list[str], set[str]]:
    data = config.data
    dtype_only = [c for c in (data.id_column, data.time_column) if c]
    extra = {data.target} if config.model.task == "classification" else set()
    return dtype_only, extra


def reference_schema(config: ProjectConfig, reference: pd.DataFrame) -> dict[str, Any]:
    """The schema batches are judged against: declared in ``ct.yaml``, or inferred from ``reference``."""
    if config.gates.data.schema_.mode == "declared":
        return declared_schema(config)
    dtype_only, extra = _schema_options(config)
    categorical = categorical_columns(config, reference) + [c for c in extra if c in reference.columns]
    return infer_schema(reference, categorical=categorical, dtype_only=dtype_only)


def _present(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def consensus_schema(config: ProjectConfig, batches: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The schema of the first model's data, where no champion exists: what most of the batches agree on.

    A column is expected when batches holding at least half of the rows have it; its dtype is the one
    most rows have, and its ranges and categories come from the batches of that dtype. A batch that
    differs from the others (a renamed column, numbers arriving as text) then fails on its own.
    """
    if config.gates.data.schema_.mode == "declared":
        return declared_schema(config)
    dtype_only, extra = _schema_options(config)
    declared_categorical = set(config.data.categorical or [])
    total = sum(len(f) for f in batches.values())
    columns: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(str(c) for f in batches.values() for c in f.columns if c != BATCH_COLUMN))
    for name in names:
        having = {b: f for b, f in batches.items() if _present(f, name)}
        if 2 * sum(len(f) for f in having.values()) < total or not having:
            continue
        families: Counter[str] = Counter()
        for f in having.values():
            families[dtype_family(f[name])] += len(f)
        family = families.most_common(1)[0][0]
        agreeing = [f[name] for f in having.values() if dtype_family(f[name]) == family]
        column = pd.concat(agreeing, ignore_index=True).to_frame(name)
        if config.data.categorical is not None:
            categorical = name in declared_categorical or name in extra
        else:
            categorical = is_categorical_dtype(column[name]) or name in extra
        if name in (config.data.time_column, config.data.id_column):
            categorical = False
        entry = infer_schema(column, categorical=[name] if categorical else [], dtype_only=dtype_only)
        columns[name] = entry["columns"][name]
    return {"source": "inferred", "rows": total, "columns": columns}


@dataclass
class BatchVerdict:
    """What the data gate decided about one batch file."""

    batch: str
    status: str
    rows: int = 0
    digest: str | None = None
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    #: where a quarantined batch was moved (relative to the project) and its reason file
    moved_to: str | None = None
    reason_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch, "status": self.status, "rows": self.rows, "digest": self.digest,
            "violations": list(self.violations), "warnings": list(self.warnings), "values": self.values,
            "moved_to": self.moved_to, "reason_file": self.reason_file,
        }


def judge_batch(frame: pd.DataFrame, schema: dict[str, Any], config: ProjectConfig) -> tuple[list[str], list[str],
                                                                                          dict[str, Any]]:
    """``(violations, warnings, values)`` of one batch against ``schema`` and the per-batch quality limits.

    The target may be absent or empty (labels can arrive later); ids and times are checked for type only.
    """
    gate = config.gates.data
    tolerance = gate.schema_
    target = config.data.target
    violations, values = check_schema(
        frame, schema, range_tolerance=tolerance.range_tolerance, allow_unexpected=tolerance.allow_new_columns,
        optional=[target], enforce_inferred_ranges=tolerance.enforce_inferred_ranges,
        max_out_of_range_share=tolerance.max_out_of_range_share,
        max_unseen_category_share=tolerance.max_unseen_category_share,
    )
    warnings = values.pop("warnings")
    checked = [c for c in frame.columns if c not in (BATCH_COLUMN, target, config.data.id_column)]
    quality, quality_values = check_batch_quality(frame, gate, columns=checked)
    return violations + quality, warnings, {**values, **quality_values,
                                            "counts": {"schema": len(violations), "quality": len(quality)}}


@dataclass
class BatchGate:
    """The data gate's verdict on every batch of a run, and the frames of those the run keeps."""

    reference: Reference
    schema: dict[str, Any]
    verdicts: list[BatchVerdict]
    on_bad_batch: str
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def failed(self) -> list[BatchVerdict]:
        """Batches that failed on their own (moved to quarantine or not)."""
        return [v for v in self.verdicts if v.status in (FAILED, QUARANTINED)]

    @property
    def kept(self) -> list[str]:
        """Batches whose rows this run uses: already accepted, or judged and passed."""
        return [v.batch for v in self.verdicts if v.status in (ACCEPTED, PASSED)]

    @property
    def warnings(self) -> list[str]:
        return [f"batch {v.batch}: {w}" for v in self.verdicts for w in v.warnings]

    def accepted_frame(self) -> pd.DataFrame:
        """The rows of the kept batches, stacked in name order (columns missing from a batch become NaN)."""
        kept = [self.frames[name] for name in self.kept]
        if not kept:
            raise DataError("no batch passed the data gate")
        return pd.concat(kept, ignore_index=True, sort=False)

    def violations(self) -> list[str]:
        """One sentence per violation of a failed batch, naming the batch."""
        return [f"batch {v.batch}: {text}" for v in self.failed for text in v.violations]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary for the run record."""
        return {
            "reference": self.reference.label,
            "champion_version": self.reference.version,
            "reference_paths": list(self.reference.paths),
            "on_bad_batch": self.on_bad_batch,
            "accepted": [v.batch for v in self.verdicts if v.status == ACCEPTED],
            "judged": [v.batch for v in self.verdicts if v.status != ACCEPTED],
            "passed": [v.batch for v in self.verdicts if v.status == PASSED],
            "failed": [v.batch for v in self.failed],
            "quarantined": [v.batch for v in self.verdicts if v.status == QUARANTINED],
            "warnings": self.warnings,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per batch: status, rows, counts and the first problem."""
        rows = [{
            "batch": v.batch, "status": v.status, "rows": v.rows, "violations": len(v.violations),
            "warnings": len(v.warnings),
            "first problem": (v.violations or v.warnings or [""])[0],
        } for v in self.verdicts]
        return pd.DataFrame(rows).set_index("batch") if rows else pd.DataFrame(rows)

    def quarantined(self) -> list[dict[str, Any]]:
        """The failed batches as the run records them: batch, where it went, why."""
        return [{"batch": v.batch, "status": v.status, "moved_to": v.moved_to, "reason_file": v.reason_file,
                 "violations": list(v.violations)} for v in self.failed]


def judge_batches(paths: Sequence[Path], config: ProjectConfig, reference: Reference) -> BatchGate:
    """Read every batch and judge the new ones on their own; batches in the champion's data are not judged again.

    The schema comes from ``ct.yaml`` (declared), or from the champion's data, or, for the first model,
    from what the batches agree on (:func:`consensus_schema`). Nothing is moved here (see :func:`quarantine`).
    """
    gate = config.gates.data
    verdicts: list[BatchVerdict] = []
    frames: dict[str, pd.DataFrame] = {}
    for path in paths:
        digest = file_digest(path)
        if reference.accepts(path.name, digest):
            verdicts.append(BatchVerdict(path.name, ACCEPTED, digest=digest))
        else:
            verdicts.append(BatchVerdict(path.name, PASSED, digest=digest))
        try:
            frames[path.name] = read_batch(path, config)
        except CTError as exc:
            verdicts[-1].status = FAILED
            verdicts[-1].violations = [f"cannot be read: {exc}"]
            continue
        verdicts[-1].rows = len(frames[path.name])
    if reference.frame is not None:
        schema = reference_schema(config, reference.frame)
    else:
        schema = consensus_schema(config, {n: f for n, f in frames.items()})
    for verdict in verdicts:
        if verdict.status != PASSED:
            continue
        violations, warnings, values = judge_batch(frames[verdict.batch], schema, config)
        verdict.violations, verdict.warnings, verdict.values = violations, warnings, values
        if violations:
            verdict.status = FAILED
    for verdict in verdicts:
        if verdict.status == FAILED:
            frames.pop(verdict.batch, None)
    return BatchGate(reference, schema, verdicts, gate.on_bad_batch, frames)


def quarantine(result: BatchGate, project: Project, paths: Sequence[Path], *, run_id: str | None) -> list[Path]:
    """Move each failed batch into ``gates.data.quarantine_dir`` with a ``<name>.reason.json`` beside it.

    Only with ``gates.data.on_bad_batch: quarantine``; returns the new paths. A name already taken in
    the quarantine folder gets the run id (or a counter) added.
    """
    if result.on_bad_batch != "quarantine":
        return []
    folder = project.root / project.config.gates.data.quarantine_dir
    by_name = {p.name: p for p in paths}
    moved: list[Path] = []
    for verdict in result.failed:
        source = by_name.get(verdict.batch)
        if source is None or not source.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        n = 0
        while target.exists():
            n += 1
            tag = run_id if n == 1 and run_id else str(n)
            target = folder / f"{source.stem}.{tag}{source.suffix}"
        reason = target.with_name(target.name + REASON_SUFFIX)
        record = {
            "batch": verdict.batch, "moved_from": _relative(source, project.root), "run_id": run_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "digest": verdict.digest,
            "violations": verdict.violations, "warnings": verdict.warnings,
        }
        reason.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        shutil.move(str(source), str(target))
        verdict.status = QUARANTINED
        verdict.moved_to = _relative(target, project.root)
        verdict.reason_file = _relative(reason, project.root)
        moved.append(target)
    return moved


def _relative(path: Path, root: Path) -> str:
    resolved, base = path.resolve(), root.resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(path)
