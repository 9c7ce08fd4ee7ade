"""Decision quality of the CT loop: each scenario plays batches through the real project machinery.

Usage: ``python benchmarks/ct_quality.py [--quick] [--only NAME ...] [--keep DIR] [--json FILE]``

For every scenario a project is scaffolded with ``ct_notebooks.scaffold`` (the defaults of ``ctn init``)
plus one drift rule and one performance rule. The first batches land and the train pipeline makes the
first champion; then each new batch lands in ``data/incoming/`` and goes through the daemon's own code:
the watcher's new-file step queues a monitor run, the run executes through the runner, the engine
evaluates the drift and performance rules on its outputs (guards included), and a train run that a rule
started executes with the rule's decision, after which the model gate decides. Runs execute in this
process, one at a time, exactly as a daemon worker would run them.

Printed per scenario: one line per batch (drift share as the drift rule reads it, the champion's metric
on the batch against the first champion that is never retrained, the rules that fired and what the train
run decided), then a summary line. Scenarios: four synthetic ones (sudden change, gradual change,
seasonality without harm, no change) and two real-world data sets that ship inside PyPI packages
(nothing is downloaded):

* ``seattle-weather``: daily Seattle weather 2012-2015 (NOAA data, public domain), bundled in
  ``vega_datasets`` (package BSD-3-Clause). Target: any precipitation that day; features: temperatures
  and wind. Strong seasons, the same weather physics all year: drift without harm.
* ``gapminder``: life expectancy of 142 countries 1952-2007 (Gapminder Foundation, CC BY 4.0), bundled
  in ``plotly`` (package MIT). Regression of life expectancy on GDP per capita, population and
  continent: the curve moves up over the decades (concept change) while GDP grows (covariate drift).

The synthetic batches come from ``ct_notebooks.synthetic``; the rules' thresholds are set per scenario below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from ct_notebooks import daemon as ctd  # noqa: E402
from ct_notebooks import datasets, evaluation, modeling  # noqa: E402
from ct_notebooks.config import ProjectConfig  # noqa: E402
from ct_notebooks.models import RunRecord, RunStatus, TriggerDecision  # noqa: E402
from ct_notebooks.numbers import finite_or_none  # noqa: E402
from ct_notebooks.project import Project  # noqa: E402
from ct_notebooks.runner import Runner  # noqa: E402
from ct_notebooks.scaffold import init_project  # noqa: E402

TIME = "timestamp"
TARGET = "target"


# -- scenarios ---------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """Batches in time order, the first ``initial`` of which train the first champion."""

    name: str
    story: str
    batches: list[tuple[str, pd.DataFrame]]
    initial: int
    target: str = TARGET
    time_column: str = TIME
    id_column: str | None = None
    task: str = "classification"
    primary_metric: str = "roc_auc"
    secondary_metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    change_at: int | None = None  # index (into batches) of the first batch after a known change
    drift_share: float = 0.5  # the drift rule fires at this share of drifted features
    max_drop: float = 0.05  # the performance rule fires at this drop of the primary metric
    min_labelled_rows: int = 100
    source: str = "synthetic: ct_notebooks.synthetic"


def synthetic(kind: str, *, batches: int, initial: int, rows: int, change_at: int | None = None,
              days: int = 30, seed: int = 7) -> Scenario:
    """``sudden``, ``gradual``, ``seasonal`` or ``none`` from :mod:`ct_notebooks.synthetic`, ``days`` per batch."""
    from ct_notebooks import synthetic as gen

    change = change_at if change_at is not None else initial + 1
    span = max(1, batches - change)
    frames = [(f"batch-{i:02d}", gen.make_batch(kind, i, rows=rows, seed=seed, change_at=change, span=span, days=days))
              for i in range(batches)]
    stories = {
        "sudden": f"the relation between features and target changes at once at batch-{change:02d}",
        "gradual": f"the relation changes a little more each batch from batch-{change:02d} on",
        "seasonal": f"features follow the seasons ({days}-day batches, the first model saw {initial}); "
                    "the relation never changes",
        "none": "every batch from the same distribution",
    }
    return Scenario(name=f"synthetic-{kind}", story=stories[kind], batches=frames, initial=initial,
                    target=gen.DATA["target"], time_column=gen.DATA["time_column"], id_column=gen.DATA["id_column"],
                    change_at=change if kind in ("sudden", "gradual") else None)


def seattle_weather(*, quick: bool) -> Scenario:
    """Half-years of Seattle's daily weather (vega_datasets; data NOAA, public domain); target: it rained."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    data = pd.DataFrame({
        TIME: pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d"),
        "temp_max": frame["temp_max"], "temp_min": frame["temp_min"], "wind": frame["wind"],
        TARGET: (frame["precipitation"] > 0).astype(int),
    })
    moments = pd.to_datetime(data[TIME])
    half = moments.dt.year.astype(str) + np.where(moments.dt.month <= 6, "-h1", "-h2")
    batches = [(f"weather-{h}", part.reset_index(drop=True)) for h, part in data.groupby(half, sort=True)]
    return Scenario(name="seattle-weather", story="seasons every half-year, the same weather physics all along",
                    batches=batches[:6] if quick else batches, initial=2, drift_share=0.5, max_drop=0.05,
                    source="vega_datasets seattle-weather (NOAA, public domain; package BSD-3-Clause)")


def gapminder(*, quick: bool) -> Scenario:
    """Decades of life expectancy by country (plotly's copy of Gapminder, CC BY 4.0): regression."""
    import plotly.data

    frame = plotly.data.gapminder()
    data = pd.DataFrame({
        TIME: frame["year"].map(lambda y: f"{y}-07-01"),
        "gdp_per_capita": frame["gdpPercap"].round(2), "population": frame["pop"],
        "continent": frame["continent"], "life_expectancy": frame["lifeExp"],
    })
    decade = ((frame["year"] - 1952) // 10).to_numpy()
    batches = [(f"gapminder-{1952 + 10 * d}s", part.sort_values(TIME, kind="stable").reset_index(drop=True))
               for d, part in data.groupby(decade, sort=True)]
    return Scenario(name="gapminder", story="life expectancy rises at every income level over the decades",
                    batches=batches[:5] if quick else batches, initial=1, target="life_expectancy",
                    task="regression", primary_metric="rmse", secondary_metrics=["mae"], drift_share=0.5,
                    max_drop=1.5, source="plotly.data.gapminder (Gapminder Foundation, CC BY 4.0; package MIT)")


def scenarios(quick: bool) -> list[Scenario]:
    """Every scenario; ``quick`` uses fewer and smaller batches (the sizes of tests/test_ct_quality.py)."""
    rows, n = (400, 5) if quick else (600, 7)
    return [
        synthetic("sudden", batches=n, initial=2, rows=rows, change_at=3),
        synthetic("gradual", batches=n, initial=2, rows=rows, change_at=3),
        synthetic("seasonal", batches=n + 2, initial=4, rows=rows, days=91),
        synthetic("none", batches=n, initial=2, rows=rows),
        seattle_weather(quick=quick),
        gapminder(quick=quick),
    ]


# -- the CT loop, through the daemon's own code ---------------------------------------------------------
def make_project(folder: Path, scenario: Scenario) -> Project:
    """``ctn init`` defaults, the scenario's target and task, one drift rule and one performance rule.

    The train pipeline stays the default; the monitor pipeline skips the Evidently HTML report and runs
    skip the notebooks' HTML export (reading aids that decide nothing, and the slowest part on a busy machine).
    """
    init_project(folder, name=scenario.name, target=scenario.target, time_column=scenario.time_column)
    path = folder / "ct.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["data"]["id_column"] = scenario.id_column
    config["model"].update(task=scenario.task, primary_metric=scenario.primary_metric,
                           secondary_metrics=scenario.secondary_metrics)
    config["triggers"] = {"rules": {
        "drift": {"kind": "drift", "share": scenario.drift_share},
        "decay": {"kind": "performance", "max_drop": scenario.max_drop,
                  "min_labelled_rows": scenario.min_labelled_rows},
    }}
    # reading aids that decide nothing are left out: executed notebooks' HTML and the Evidently report
    config["runner"] = {"html": False}
    default = ProjectConfig.model_fields["pipelines"].get_default(call_default_factory=True)
    pipelines = {name: pipeline.model_dump(exclude_defaults=True) for name, pipeline in default.items()}
    for stage in pipelines["monitor"]["stages"]:
        if stage["name"] == "drift":
            stage["parameters"] = {"drift_report": False}
    config["pipelines"] = pipelines
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Project.load(folder, search_parents=False)


@dataclass
class BatchRow:
    """What happened when one batch landed."""

    batch: str
    rows: int
    drift_share: float | None = None
    champion: int | None = None  # the version that scored the batch
    champion_metric: float | None = None
    first_metric: float | None = None  # the first champion, never retrained
    fired: list[str] = field(default_factory=list)
    action: str = ""
    train_status: str | None = None
    promoted: bool = False
    quarantined: list[str] = field(default_factory=list)


@dataclass
class Result:
    """One scenario's rows and summary."""

    name: str
    story: str
    source: str
    metric: str
    higher_is_better: bool
    change_at: str | None
    initial: list[str]
    first_train: str
    first_holdout: float | None
    rows: list[BatchRow]
    seconds: float

    @property
    def retrains(self) -> int:
        return sum(1 for r in self.rows if r.train_status is not None)

    @property
    def promotions(self) -> int:
        return sum(1 for r in self.rows if r.promoted)

    @property
    def blocked(self) -> int:
        return sum(1 for r in self.rows if r.train_status == "blocked")

    def index_of(self, batch: str | None) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.batch == batch), None)

    def recovery(self) -> dict[str, Any] | None:
        """After a known change: the first retrain, and the share of the lost metric won back after it.

        lost = (champion level before the change) - (first champion after the change);
        won = (champion after the first promotion at or after the change) - (first champion, same batches).
        """
        start = self.index_of(self.change_at)
        if start is None:
            return None
        sign = 1.0 if self.higher_is_better else -1.0
        before = [r.champion_metric for r in self.rows[:start] if r.champion_metric is not None]
        level = float(np.mean(before)) if before else self.first_holdout
        retrain = next((i for i in range(start, len(self.rows)) if self.rows[i].train_status is not None), None)
        promoted = next((i for i in range(start, len(self.rows)) if self.rows[i].promoted), None)
        after = self.rows[promoted + 1:] if promoted is not None else []
        pairs = [(r.champion_metric, r.first_metric) for r in after
                 if r.champion_metric is not None and r.first_metric is not None]
        lost_on = [r.first_metric for r in self.rows[start:] if r.first_metric is not None]
        lost = sign * (level - float(np.mean(lost_on))) if level is not None and lost_on else None
        won = sign * float(np.mean([c - f for c, f in pairs])) if pairs else None
        return {
            "first_retrain_after": None if retrain is None else retrain - start,
            "retrain_blocked": retrain is not None and self.rows[retrain].train_status == "blocked",
            "promoted_after": None if promoted is None else promoted - start,
            "level_before": level, "lost": lost, "won": won,
            "recovered": (won / lost) if won is not None and lost and lost > 0 else None,
        }


class Loop:
    """The daemon's watcher, queue and rule evaluation, executing each queued run here with one runner."""

    def __init__(self, project: Project, runner: Runner) -> None:
        self.project = project
        self.runner = runner
        self.daemon = ctd.Daemon(project, log=lambda _text: None)
        self.store = self.daemon.store
        self.decisions: list[TriggerDecision] = []

    def land(self, path: Path) -> None:
        """The watcher's step for a file that became stable: record it and queue the monitor run."""
        stat = path.stat()
        self.daemon._new_file(path, stat.st_size, (stat.st_size, stat.st_mtime_ns))

    def drain(self) -> list[RunRecord]:
        """Run queued jobs and evaluate finished monitor runs until nothing is left to do."""
        done = []
        while True:
            job = self.store.take_next(1, datetime.now(UTC), ctd.HOST)
            if job is None:
                evaluated = self._evaluate_finished()
                if not evaluated or not self.store.jobs(states=("queued",)):
                    return done
                continue
            overrides = [(o[0], o[1], o[2]) for o in job.overrides]
            record = self.runner.run(job.pipeline, overrides=overrides, trigger=job.trigger, reason=job.reason,
                                     decision=job.decision, run_id=job.run_id)
            self.store.finish(job.id, state="done", now=datetime.now(UTC), run_status=str(record.status),
                              error=record.error)
            done.append(record)

    def _evaluate_finished(self) -> list[TriggerDecision]:
        """The daemon's evaluation of finished monitor runs (``Daemon._evaluate_finished``)."""
        out: list[TriggerDecision] = []
        monitor = self.project.config.triggers.watch.monitor_pipeline
        if monitor is None:
            return out
        for job in self.store.unevaluated(monitor):
            if self.store.mark_evaluated(job.id):
                out += self.daemon.engine.evaluate_monitor_job(job, datetime.now(UTC))
        self.decisions += out
        return out


class Scorer:
    """A registered version's primary metric on a batch (models loaded once per version)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.registry = project.registry()
        self.models: dict[int, Any] = {}

    def metric(self, version: int, path: Path) -> float | None:
        config = self.project.config
        if version not in self.models:
            self.models[version] = self.registry.load_model(version)
        model = self.models[version]
        frame = datasets.read_batch(path, config)
        frame = frame[frame[config.data.target].notna()]
        if frame.empty:
            return None
        _, categorical = modeling.feature_groups(model)
        scores = modeling.predict_scores(model, modeling.prepare_features(frame, categorical), task=config.model.task)
        truth = frame[config.data.target]
        y = modeling.binary_target(truth, modeling.positive_class(model)) if config.model.task == "classification" \
            else truth.to_numpy(dtype=float)
        primary = config.model.primary_metric
        return finite_or_none(evaluation.compute_metrics([primary], y, scores)[primary])


def _describe_train(record: RunRecord) -> tuple[str, bool]:
    detail = record.outcome_detail or {}
    if record.status == RunStatus.BLOCKED:
        return f"retrain BLOCKED: {(record.error or '').splitlines()[0][:140]}", False
    if record.status != RunStatus.SUCCEEDED:
        return f"retrain {record.status} at {record.failed_stage}: {(record.error or '')[:120]}", False
    reason = str(detail.get("reason") or "")[:220]
    notes = [w for s in record.stages for w in s.warnings if "quarantine" in w]
    if notes:
        reason += "; " + "; ".join(n[:120] for n in notes)
    if str(record.outcome) == "promoted":
        return f"retrained, v{detail.get('version')} PROMOTED ({reason})", True
    return f"retrained, v{detail.get('version')} rejected ({reason})", False


def _quarantined(project: Project, seen: set[str]) -> list[str]:
    """Batch files moved to the quarantine folder since the last call."""
    folder = project.root / str(getattr(project.config.gates.data, "quarantine_dir", "data/quarantine"))
    names = {p.name for p in folder.iterdir() if not p.name.endswith(".json")} if folder.is_dir() else set()
    new = sorted(names - seen)
    seen.update(new)
    return new


def _say(text: str) -> None:
    print(text, flush=True)


def play(scenario: Scenario, folder: Path, *, say: Callable[[str], None] = _say) -> Result:
    """Play one scenario in a fresh project under ``folder`` and return its decisions and metrics."""
    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    project = make_project(folder, scenario)
    waiting = folder / "arriving"
    waiting.mkdir()
    paths = []
    for name, frame in scenario.batches:
        path = waiting / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    for path in paths[: scenario.initial]:
        shutil.move(str(path), str(project.incoming_dir / path.name))
    rows: list[BatchRow] = []
    seen_quarantine: set[str] = set()
    with Runner(project) as runner:
        first = runner.run("train", trigger="manual", reason="first model on the initial batches")
        if str(first.outcome) != "promoted":
            raise RuntimeError(f"{scenario.name}: the first training ended {first.status}/{first.outcome}: "
                               f"{first.error or first.outcome_detail}")
        scorer = Scorer(project)
        first_version = int(first.outcome_detail["version"])
        holdout = scorer.registry.version(first_version).tags.get(f"ct.metric.{scenario.primary_metric}")
        say(f"[{scenario.name}] first champion v{first_version} from {scenario.initial} batch(es)")
        loop = Loop(project, runner)
        for path in paths[scenario.initial:]:
            landed = project.incoming_dir / path.name
            shutil.move(str(path), str(landed))
            row = BatchRow(batch=path.stem, rows=len(pd.read_csv(landed, usecols=[scenario.time_column])))
            row.first_metric = scorer.metric(first_version, landed)
            before = len(loop.decisions)
            loop.land(landed)
            records = loop.drain()
            monitor = next((r for r in records if r.pipeline == "monitor"), None)
            if monitor is not None:
                outputs = monitor.outputs()
                measured = outputs.get("drift", {})  # the share the drift rule reads: weighted when weighed
                row.drift_share = measured.get("weighted_drift_share", measured.get("drift_share"))
                row.champion = outputs.get("score", {}).get("champion_version")
                if monitor.status != RunStatus.SUCCEEDED:
                    row.action = f"monitor {monitor.status}: {(monitor.error or '')[:100]}; "
            if row.champion is not None and landed.exists():
                row.champion_metric = scorer.metric(int(row.champion), landed)
            fired = [d for d in loop.decisions[before:] if d.fired]
            row.fired = [d.trigger for d in fired]
            train = next((r for r in records if r.pipeline == "train"), None)
            if train is not None:
                text, row.promoted = _describe_train(train)
                row.action += text
                row.train_status = str(train.status)
            elif fired:
                row.action += "; ".join(f"{d.trigger}: {d.action}" for d in fired)
            else:
                row.action += "no rule fired"
            row.quarantined = _quarantined(project, seen_quarantine)
            rows.append(row)
            say(f"[{scenario.name}] {format_row(row, scenario.primary_metric)}")
    change = scenario.batches[scenario.change_at][0] if scenario.change_at is not None else None
    return Result(name=scenario.name, story=scenario.story, source=scenario.source, metric=scenario.primary_metric,
                  higher_is_better=evaluation.higher_is_better(scenario.primary_metric), change_at=change,
                  initial=[n for n, _ in scenario.batches[: scenario.initial]], first_train=first.run_id,
                  first_holdout=float(holdout) if holdout else None, rows=rows,
                  seconds=time.perf_counter() - started)


# -- printing --------------------------------------------------------------------------------------------
def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_row(row: BatchRow, metric: str) -> str:
    return (f"{row.batch}: drift {_num(row.drift_share)}, champion v{row.champion} {metric} "
            f"{_num(row.champion_metric)} vs first {_num(row.first_metric)}; fired: {', '.join(row.fired) or '-'}; "
            f"{row.action}")


def format_table(result: Result) -> str:
    """The scenario's table: one line per batch, then the summary line."""
    header = ("batch", "rows", "drift", "champ", result.metric, "first", "fired", "decision")
    lines: list[tuple[str, ...]] = [header]
    for r in result.rows:
        mark = " <- change" if r.batch == result.change_at else ""
        quarantine = f" [quarantined: {', '.join(r.quarantined)}]" if r.quarantined else ""
        lines.append((r.batch + mark, str(r.rows), _num(r.drift_share), f"v{r.champion}", _num(r.champion_metric),
                      _num(r.first_metric), ",".join(r.fired) or "-", r.action + quarantine))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = [f"== {result.name}: {result.story}", f"   data: {result.source}",
           f"   first champion trained on {', '.join(result.initial)} (holdout {result.metric} "
           f"{_num(result.first_holdout)})"]
    for n, line in enumerate(lines):
        out.append("   " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=False)) + "  " + line[-1])
        if n == 0:
            out.append("   " + "  ".join("-" * w for w in widths) + "  " + "-" * 8)
    out.append("   " + summary(result))
    return "\n".join(out)


def summary(result: Result) -> str:
    """One line: retrains, promotions, blocks, mean metric vs the never-retrained model, recovery."""
    pairs = [(r.champion_metric, r.first_metric) for r in result.rows
             if r.champion_metric is not None and r.first_metric is not None]
    mean_c = float(np.mean([c for c, _ in pairs])) if pairs else None
    mean_f = float(np.mean([f for _, f in pairs])) if pairs else None
    text = (f"summary {result.name}: {len(result.rows)} batches, {result.retrains} retrain(s), "
            f"{result.promotions} promoted, {result.blocked} blocked, "
            f"{sum(len(r.quarantined) for r in result.rows)} quarantined; mean {result.metric} champion "
            f"{_num(mean_c)} vs never retrained {_num(mean_f)}")
    rec = result.recovery()
    if rec is not None:
        after = rec["first_retrain_after"]
        text += (f"; change at {result.change_at}: first retrain "
                 f"{'never' if after is None else f'{after} batch(es) after'}"
                 f"{' (blocked)' if rec['retrain_blocked'] else ''}, lost {_num(rec['lost'])}, "
                 f"won back {_num(rec['won'])}"
                 + (f" ({rec['recovered']:.0%})" if rec["recovered"] is not None else ""))
    return text + f"; {result.seconds:.0f} s"


@contextlib.contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ct-quality-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller batches")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to play")
    parser.add_argument("--keep", default=None, help="play in this folder and keep the projects")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the tables")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    chosen = [s for s in scenarios(args.quick) if not args.only or s.name in args.only]
    if not chosen:
        parser.error(f"no scenario named {args.only}")
    print(f"ct_quality: {len(chosen)} scenario(s){' (quick)' if args.quick else ''}; OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}", flush=True)
    results = []
    with _workdir(args.keep) as work:
        for scenario in chosen:
            result = play(scenario, work / scenario.name, say=(lambda _t: None) if args.quiet else _say)
            results.append(result)
            print(format_table(result), flush=True)
            print(flush=True)
    for result in results:
        print(summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"recovery": r.recovery()} for r in results], indent=2,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
