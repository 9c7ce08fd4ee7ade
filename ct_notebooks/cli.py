"""The ``ctn`` command line: scaffold projects, run pipelines, read the archive, steer the registry."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contracts import (
    TAG_GATE,
    TAG_RUN_ID,
    Drift,
    Ingest,
    Performance,
    Role,
    Score,
    Validate,
    measured,
    metric_tag,
    outputs_of,
    stage_role,
)
from .errors import ConfigError, CTError, InputError, PromotionRefused
from .models import RunRecord, RunStatus

if TYPE_CHECKING:
    from .archive import Archive
    from .project import Project
    from .registry import Registry
    from .runner import RunEvent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED = 0, 1, 2, 3


def _project(args: argparse.Namespace) -> Project:
    from .project import Project

    return Project.load(args.project)


def _registry(project: Project) -> Registry:

    return project.registry()


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


class Progress:
    """Prints 'stage k of n' and the current cell to stderr (one updating line on a terminal)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, event: RunEvent) -> None:
        if event.kind == "run_started":
            self._line(f"run {event.run_id} ({event.pipeline}) started", final=True)
        elif event.kind == "stage_started":
            self._line(f"[{event.index}/{event.total}] {event.stage} ...", final=not self.tty)
        elif event.kind == "cell" and self.tty:
            self._line(f"[{event.index}/{event.total}] {event.stage}: cell {event.cell + 1}/{event.cells}")
        elif event.kind == "stage_finished":
            self._line(f"[{event.index}/{event.total}] {event.stage}: {event.status}", final=True)
        elif event.kind == "run_finished":
            self._line(f"run {event.run_id}: {event.status}", final=True)

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _print_notices(archive: Archive) -> None:
    """What the archive repaired while it was read (an index moved aside, runs ended or damaged)."""
    for notice in archive.notices:
        print(f"ctn: {notice}", file=sys.stderr)


def _exit_for(record: RunRecord) -> int:
    if record.status == RunStatus.SUCCEEDED:
        return EXIT_OK
    return EXIT_BLOCKED if record.status == RunStatus.BLOCKED else EXIT_FAILED


def _summary(record: RunRecord) -> str:
    lines = [f"run {record.run_id}  pipeline {record.pipeline}  status {record.status}  outcome {record.outcome}"]
    if record.outcome_detail.get("reason"):
        lines.append(f"  decision: {record.outcome_detail['reason']}")
    if record.error:
        lines.append(f"  error: {record.error}")
    return "\n".join(lines)


# -- commands --------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from .demo import demo_config, generate_batches
    from .scaffold import init_project

    folder = Path(args.dir)
    if args.demo:
        init_project(folder, config=demo_config(args.name or "credit-default"), force=args.force)
        generate_batches(folder / "data" / "incoming")
    else:
        try:
            init_project(folder, name=args.name, target=args.target, time_column=args.time_column,
                         time_format=args.time_format, force=args.force)
        except ConfigError as exc:
            if exc.key != "data.time_format":
                raise
            raise ConfigError(f"{exc} (with ctn init: --time-format FORMAT)", key=exc.key) from None
    print(f"project ready in {folder.resolve()}: edit ct.yaml, put batches in data/incoming/, then `ctn run train`")
    return EXIT_OK


def _check_time_column(project: Project) -> None:
    """Refuse early when the newest CSV batch's time column holds numbers that ``data.time_format`` reads as text."""
    from .time_formats import check_incoming

    data = project.config.data
    check_incoming(project.incoming_dir, data.time_column, data.time_format, data.format)


def _cancel_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the runner records the run as cancelled."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from .archive import check_run_id
    from .inputs import check_text
    from .params import parse_assignment, read_parameters_file
    from .runner import Runner

    _cancel_on_sigterm()
    run_id = check_run_id(args.run_id) if args.run_id is not None else None
    reason = check_text(args.reason, "--reason") if args.reason is not None else None
    project = _project(args)
    _check_time_column(project)
    overrides = read_parameters_file(args.params_file) if args.params_file is not None else []
    overrides += [parse_assignment(text) for text in args.param or []]
    with Runner(project, on_event=None if args.quiet else Progress()) as runner:
        record = runner.run(args.pipeline, overrides=overrides, trigger="manual", reason=reason or "",
                            run_id=run_id)
    print(_summary(record))
    _notify(project)
    return _exit_for(record)


def _notify(project: Project) -> None:
    """Hand what just happened to a detached notification pass (nothing when no channel is configured)."""
    from .notify import start_pass

    start_pass(project)


def cmd_resume(args: argparse.Namespace) -> int:
    from .runner import Runner

    _cancel_on_sigterm()
    project = _project(args)
    with Runner(project, on_event=None if args.quiet else Progress()) as runner:
        try:
            record = runner.resume(args.run_id)
        finally:
            _print_notices(runner.archive)
    print(_summary(record))
    _notify(project)
    return _exit_for(record)


def cmd_runs(args: argparse.Namespace) -> int:

    project = _project(args)
    archive = project.archive()
    records = archive.list(pipeline=args.pipeline, status=args.status, trigger=args.trigger, limit=args.limit)
    _print_notices(archive)
    if args.totals:
        return _print_totals(project, records, as_json=args.json)
    if args.json:
        _emit_json([r.to_dict() for r in records])
        return EXIT_OK
    if not records:
        print("no runs yet")
        return EXIT_OK
    print(f"{'run id':24} {'pipeline':9} {'status':11} {'outcome':9} {'trigger':11} {'secs':>7}  reason")
    for r in records:
        secs = f"{r.duration_s:.1f}" if r.duration_s is not None else "-"
        why = r.error if r.status == RunStatus.DAMAGED else r.reason
        print(f"{r.run_id:24} {r.pipeline:9} {r.status!s:11} {r.outcome!s:9} {r.trigger:11} {secs:>7}  {why}")
    return EXIT_OK


def _print_totals(project: Project, records: list[RunRecord], *, as_json: bool) -> int:
    """Runs, wall and kernel CPU seconds, archive bytes and cost of the listed runs, per pipeline and trigger."""
    from .costs import totals

    cost = project.config.cost
    found = totals(records, project.archive(), cost.cpu_hour_price)
    if as_json:
        _emit_json({**found, "currency": cost.currency, "cpu_hour_price": cost.cpu_hour_price})
        return EXIT_OK

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    print(f"{'pipeline':12} {'stage':12} {'runs':>5} {'wall s':>9} {'cpu s':>9} {'archive MB':>10} "
          f"{'cost ' + cost.currency:>12}")
    for pipeline, entry in found["pipelines"].items():
        print(f"{pipeline:12} {'(all)':12} {entry['runs']:>5} {entry['wall_s']:>9.1f} {entry['cpu_s']:>9.1f} "
              f"{entry['archive_bytes'] / 1e6:>10.2f} {money(entry['cost']):>12}")
        for name, stage in entry["stages"].items():
            print(f"{'':12} {name:12} {'':>5} {stage['wall_s']:>9.1f} {stage['cpu_s']:>9.1f}")
    print(f"\n{'trigger':25} {'runs':>5} {'wall s':>9} {'cpu s':>9} {'archive MB':>10} {'cost ' + cost.currency:>12}")
    for trigger, entry in found["triggers"].items():
        print(f"{trigger:25} {entry['runs']:>5} {entry['wall_s']:>9.1f} {entry['cpu_s']:>9.1f} "
              f"{entry['archive_bytes'] / 1e6:>10.2f} {money(entry['cost']):>12}")
    if cost.cpu_hour_price is None:
        print("\nno price set: cost.cpu_hour_price in ct.yaml prices kernel CPU hours")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:

    project = _project(args)
    archive = project.archive()
    record = archive.load(args.run_id)
    _print_notices(archive)
    if args.json:
        _emit_json(record.to_dict())
        return EXIT_OK
    folder = archive.find_dir(args.run_id)
    print(_summary(record))
    print(f"  trigger: {record.trigger}  {record.reason}")
    print(f"  folder: {folder}")
    if record.lineage.get("pipeline_version"):
        commit = record.lineage.get("project_commit")
        print(f"  pipeline version: {record.lineage['pipeline_version']} ({record.lineage.get('pipeline_source')})"
              + (f", commit {str(commit)[:12]}" if commit else ""))
    for i, stage in enumerate(record.stages, 1):
        secs = f"{stage.duration_s:.2f}s" if stage.duration_s is not None else ""
        print(f"  {i}. {stage.name:12} {stage.status!s:11} {secs:>8}  {stage.executed_notebook or ''}")
        if stage.error:
            print(f"     {stage.error.ename} at cell {stage.error.cell_index}: {stage.error.evalue}")
        for warning in stage.warnings:
            print(f"     warning: {warning}")
        for item in stage.outputs.get(Ingest.quarantined) or []:
            where = f"moved to {item['moved_to']}" if item.get("moved_to") else "kept out of the run"
            first = (item.get("violations") or ["failed the data gate"])[0]
            print(f"     batch {item.get('batch')} failed the data gate ({where}): {first}")
        if stage_role(stage.name, stage.role) == Role.VALIDATE:
            for warning in stage.outputs.get(Validate.warnings) or []:
                print(f"     data gate warning: {warning}")
    for line in _measurements(record):
        print(line)
    return EXIT_OK


def _number(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _measurements(record: RunRecord) -> list[str]:
    """What a monitor run measured: the drift share and columns, and the champion's metrics on labelled rows."""
    lines = []
    drift = measured(record, Role.DRIFT)
    if drift is not None:
        share = drift.get(Drift.drift_share)
        drifted = list(drift.get(Drift.drifted_columns) or [])
        columns = drift.get(Drift.columns)
        counted = f" ({len(drifted)} of {len(columns)} columns)" if isinstance(columns, list) and columns else ""
        text = f"  drift: share {_number(share)}{counted}, drifted: {', '.join(drifted) or 'none'}"
        prediction = drift.get(Drift.prediction_drift)
        if isinstance(prediction, dict) and "drifted" in prediction:
            text += f"; predictions {'drifted' if prediction['drifted'] else 'not drifted'}"
        lines.append(text)
    perf = measured(record, Role.PERFORMANCE)
    if perf is not None:
        metrics = perf.get(Performance.metrics) or {}
        champion = perf.get(Performance.champion_metrics) or {}
        labelled = perf.get(Performance.labelled_rows) or 0
        if not perf.get(Performance.has_labels):
            lines.append("  performance: the batch has no labels (no target values)")
        elif not metrics:
            lines.append(f"  performance: not measured, only {labelled} labelled row(s)")
        else:
            primary = perf.get(Performance.primary_metric)
            scored = outputs_of(record, Role.SCORE)
            version = f"champion v{scored[Score.champion_version]}" if Score.champion_version in scored \
                else "the champion"
            lines.append(f"  performance on {labelled} labelled row(s) ({version}; its holdout value in brackets):")
            for name, value in metrics.items():
                reference = champion.get(name)
                delta = value - reference if isinstance(value, int | float) and isinstance(reference, int | float) \
                    else None
                mark = "  (primary)" if name == primary else ""
                lines.append(f"     {name:10} {_number(value)}  [{_number(reference)}]  {_number(delta, signed=True)}"
                             f"{mark}")
    return lines


def cmd_models(args: argparse.Namespace) -> int:
    project = _project(args)
    registry = _registry(project)
    versions = registry.versions()
    if args.json:
        _emit_json({"model": project.config.model.registered_name,
                    "versions": [v.to_dict() for v in versions],
                    "audit": [m.to_dict() for m in registry.audit_log()]})
        return EXIT_OK
    if not versions:
        print(f"no versions of {project.config.model.registered_name} yet")
        return EXIT_OK
    primary = project.config.model.primary_metric
    print(f"{'version':>7}  {'aliases':18} {primary:>9}  {'gate':9} run")
    for v in versions:
        metric = v.tags.get(metric_tag(primary)) or v.metrics.get(primary)
        shown = f"{float(metric):.4f}" if metric not in (None, "") else "-"
        print(f"{v.version:>7}  {','.join(v.aliases):18} {shown:>9}  {v.tags.get(TAG_GATE, '-'):9} "
              f"{v.tags.get(TAG_RUN_ID, '-')}")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    project = _project(args)
    try:
        move = _registry(project).promote(
            args.version, actor=args.actor, reason=args.reason or "manual promotion", force=args.force
        )
    except PromotionRefused as exc:
        raise exc.with_override("pass --force") from None
    print(f"champion: v{move.from_version} -> v{move.to_version}" + (" (forced)" if move.forced else ""))
    _notify(project)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    project = _project(args)
    try:
        move = _registry(project).rollback(
            actor=args.actor, reason=args.reason or "manual rollback", to_version=args.to, force=args.force
        )
    except PromotionRefused as exc:
        raise exc.with_override("pass --force") from None
    print(f"champion: v{move.from_version} -> v{move.to_version}" + (" (forced)" if move.forced else ""))
    _notify(project)
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:

    project = _project(args)
    archive = project.archive()
    count = archive.reindex()
    _print_notices(archive)
    print(f"indexed {count} runs from {project.runs_dir}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo_story import run_daemon_demo, run_demo

    if args.daemon:
        run_daemon_demo(Path(args.dir), scale=args.scale)
        return EXIT_OK
    run_demo(Path(args.dir), scale=args.scale, on_event=Progress() if args.verbose else None)
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    from . import daemon

    project = _project(args)
    if args.action == "start":
        if args.foreground:
            daemon.Daemon(project, poll_s=args.poll).serve()
            return EXIT_OK
        pid = daemon.start_daemon(project, poll_s=args.poll)
        print(f"daemon pid {pid} serving {project.root} (log: {project.state_dir / daemon.LOG_FILE})")
        return EXIT_OK
    if args.action == "stop":
        pid = daemon.stop_daemon(project, timeout_s=args.timeout)
        print(f"daemon pid {pid} stopped")
        return EXIT_OK
    state = daemon.status(project)
    if args.json:
        _emit_json(state)
        return EXIT_OK
    info = state["daemon"]
    print(f"daemon: pid {info['pid']} on {info['host']} since {info['started_at']}, heartbeat {info['heartbeat_at']}"
          if info else "daemon: not running")
    for job in state["running"]:
        print(f"  running: {job['pipeline']} run {job['run_id']} (pid {job['pid']}, heartbeat {job['heartbeat_at']})")
    for job in state["queued"]:
        print(f"  queued:  {job['pipeline']} run {job['run_id']} ({job['trigger']}: {job['reason']})")
    _print_rules(state["rules"])
    return EXIT_OK


def _print_rules(rules: dict[str, Any]) -> None:
    if not rules:
        print("no trigger rules in ct.yaml (triggers.rules)")
    for name, rule in rules.items():
        extra = f"  next {rule['next_fire']}" if rule.get("next_fire") else ""
        print(f"  rule {name:16} {rule['kind']:12} -> {rule['pipeline']}{'' if rule['enabled'] else ' (disabled)'}"
              f"{extra}")


def cmd_triggers(args: argparse.Namespace) -> int:
    from . import daemon
    from .run_results import describe_runs

    project = _project(args)
    state = daemon.status(project)
    decisions = daemon.store_for(project).decisions(limit=args.limit, trigger=args.trigger)
    outcomes = describe_runs(project.archive(), (d.run_id for d in decisions))
    if args.json:
        _emit_json({"rules": state["rules"], "counts": state["decision_counts"],
                    "decisions": [{**d.to_dict(), "run": outcomes.get(d.run_id or "")} for d in decisions]})
        return EXIT_OK
    _print_rules(state["rules"])
    counts = state["decision_counts"]
    avoided = counts.get("blocked_by:cooldown", 0) + counts.get("blocked_by:budget", 0)
    print(f"decisions: {sum(v for k, v in counts.items() if ':' not in k)} recorded, "
          f"{counts.get('started', 0)} started a run, {avoided} retrain(s) avoided by cooldown/budget")
    if decisions:
        print(f"{'evaluated at':27} {'trigger':12} {'fired':5} {'action':10} {'run id':24} reason")
    for d in decisions:
        run = outcomes.get(d.run_id or "")
        then = f"; run {run['status']}" + (f": {run['why']}" if run.get("why") else "") if run else ""
        print(f"{d.evaluated_at:27} {d.trigger:12} {'yes' if d.fired else 'no':5} {d.action:10} "
              f"{d.run_id or '-':24} {d.reason}{then}")
        if run:
            print(f"{'':27} {'':12} {'':5} {'':10} {'':24} -> run {run['text']}")
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace) -> int:
    from .notify import deliver, outbox_for, scan

    project = _project(args)
    config = project.config.notifications
    if args.send:
        if not config.channels:
            raise InputError("no channel to send to: add one under notifications.channels in ct.yaml", field="--send")
        for event in scan(project):
            print(f"queued {event.kind}: {event.title}")
        for message in deliver(project):
            print(f"{message.channel}: {message.state} (attempt {message.attempts})"
                  + (f": {message.last_error}" if message.last_error else "") + f" - {message.event['title']}")
    messages = outbox_for(project).messages(limit=args.limit, state=args.state)
    if args.json:
        _emit_json({"channels": {name: channel.kind for name, channel in config.channels.items()},
                    "events": list(config.events), "messages": [m.to_dict() for m in messages]})
        return EXIT_OK
    if not config.channels:
        print("no notification channel configured (notifications.channels in ct.yaml)")
    else:
        print("channels: " + ", ".join(f"{name} ({channel.kind})" for name, channel in config.channels.items())
              + f"; events: {', '.join(config.events)}")
    if messages:
        print(f"{'event at':27} {'channel':12} {'state':8} {'tries':5} message")
    for m in messages:
        print(f"{m.event['at']:27} {m.channel:12} {m.state:8} {m.attempts:5} {m.event['title']}")
        if m.last_error:
            print(f"{'':27} {'':12} {'':8} {'':5} last error: {m.last_error}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from . import daemon
    from .deployment import runnable_project

    if args.run and args.dry_run:
        raise InputError("--run executes what the check starts; it cannot go with --dry-run", field="--dry-run")
    project = runnable_project(_project(args).root)  # what the daemon would run (deploy.require_check)
    store = daemon.store_for(project)
    _check_time_column(project)
    engine = daemon.Engine(project, store, dry_run=args.dry_run)
    decisions = engine.check(datetime.now(UTC))
    if args.json and not args.run:
        _emit_json([d.to_dict() for d in decisions])
        return EXIT_OK
    _print_decisions(decisions)
    if not decisions:
        rules = project.config.triggers.rules
        disabled = [name for name, rule in rules.items() if not rule.enabled]
        print(f"no rule evaluated: {len(rules)} rule(s), disabled: {', '.join(disabled) or 'none'}" if rules
              else "no trigger rules in ct.yaml (triggers.rules)")
    info = daemon.daemon_info(project)
    if args.run:
        if info is not None:
            print(f"daemon pid {info.get('pid')} executes the queued runs (see `ctn daemon status`)")
            return EXIT_OK
        return _run_queued(project, store, engine)
    if any(d.action == "started" for d in decisions) and info is None:
        print("runs are queued: run them now with `ctn check --run`, or start the daemon: ctn daemon start")
    return EXIT_OK


def cmd_pipeline(args: argparse.Namespace) -> int:
    from . import deployment

    project = _project(args)
    if args.action == "check":
        from .pipeline_check import check

        _cancel_on_sigterm()
        entry = check(project, actor=args.actor, deploy_passed=not args.no_deploy)
        if args.json:
            _emit_json(entry)
            return EXIT_OK if entry["passed"] else EXIT_FAILED
        for stage in entry["stages"]:
            took = "" if stage["duration_s"] is None else f" {stage['duration_s']:.1f} s"
            print(f"{stage['pipeline']:10} {stage['stage']:12} {stage['status']:11}{took}"
                  + (f"  {stage['error']}" if stage["error"] else ""))
        if entry["passed"]:
            deployed = " and deployed" if entry.get("deployed") else " (not deployed: --no-deploy)"
            print(f"pipeline version {entry['version']} passed{deployed} in {entry['duration_s']:.0f} s")
            return EXIT_OK
        print(f"pipeline version {entry['version']} FAILED: {entry['error']}\n"
              f"the deployed version is unchanged; the check's notebooks: {entry['scratch']}")
        return EXIT_FAILED
    state = deployment.status(project)
    if args.action == "history":
        checks = deployment.read_checks(project.root, limit=args.limit)
        if args.json:
            _emit_json(checks)
            return EXIT_OK
        for entry in checks:
            verdict = "passed" if entry.get("passed") else f"FAILED: {entry.get('error')}"
            print(f"{entry.get('id')}  {entry.get('version')}  {entry.get('actor')}  {verdict}")
        return EXIT_OK
    if args.json:
        _emit_json(state)
        return EXIT_OK
    info = state["deployed"]
    print(f"working copy: {state['working']['version']}" + (f" (commit {state['working']['commit'][:12]})"
                                                         if state["working"]["commit"] else ""))
    print(f"deployed:     {info['version']} since {info['deployed_at']}" if info else "deployed:     none")
    if info and state["changed_files"]:
        print("changed since deployed: " + ", ".join(state["changed_files"]))
    elif info:
        print("the working copy is the deployed version")
    last = state["last_check"]
    if last:
        verdict = "passed" if last.get("passed") else f"FAILED: {last.get('error')}"
        print(f"last check: {last['version']} {verdict} ({last.get('finished_at')})")
    print("the daemon runs " + ("the deployed version only (deploy.require_check)" if state["require_check"]
                                else "the working copy (set deploy.require_check to run checked versions only)"))
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from .retention import collect

    project = _project(args)
    done = collect(project, dry_run=args.dry_run)
    if args.json:
        _emit_json(done.to_dict())
        return EXIT_OK
    verb = "would free" if done.dry_run else "freed"
    for pruned in done.pruned:
        shared = f" ({pruned.shared_bytes / 1e6:.2f} MB of it still linked elsewhere)" if pruned.shared_bytes else ""
        print(f"{pruned.run_id:24} {pruned.pipeline:9} {pruned.bytes / 1e6:8.2f} MB  {len(pruned.files)} file(s): "
              + ", ".join(pruned.files[:4]) + (" ..." if len(pruned.files) > 4 else "") + shared)
    stored = f" and {len(done.store)} stored snapshot(s)" if done.store else ""
    print(f"{verb} {done.freed_bytes / 1e6:.2f} MB in {len(done.pruned)} run(s){stored}; "
          f"{len(done.kept)} run(s) kept whole"
          + (" (run without --dry-run to free it)" if done.dry_run and (done.pruned or done.store) else ""))
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from . import daemon
    from .inputs import check_idempotency_key, check_text

    reason = check_text(args.reason, "--reason") if args.reason is not None else ""
    check_idempotency_key(args.key, field="--key")
    project = _project(args)
    store = daemon.store_for(project)
    engine = daemon.Engine(project, store)
    decision = engine.on_event(args.rule, datetime.now(UTC), reason=reason, key=args.key, actor=args.actor)
    if args.json:
        _emit_json(decision.to_dict())
        return EXIT_OK
    _print_decisions([decision])
    if decision.action != "started":
        return EXIT_OK
    info = daemon.daemon_info(project)
    if info is not None:
        print(f"daemon pid {info.get('pid')} executes the run (see `ctn daemon status`)")
        return EXIT_OK
    if args.run:
        return _run_queued(project, store, engine)
    print("the run is queued: run it now with `ctn check --run`, or start the daemon: ctn daemon start")
    return EXIT_OK


def _print_decisions(decisions: list[Any]) -> None:
    for d in decisions:
        run = f" -> run {d.run_id}" if d.run_id else ""
        print(f"{d.trigger:16} {'fired' if d.fired else 'quiet':6} {d.action:10} {d.reason}{run}")


def _run_queued(project: Project, store: Any, engine: Any, max_runs: int = 20) -> int:
    """Execute the queued runs here, one at a time with progress; rules then read the monitor runs executed."""
    from datetime import UTC, datetime

    from . import daemon

    monitor = project.config.triggers.watch.monitor_pipeline
    worst = EXIT_OK
    for _ in range(max_runs):
        job = store.take_next(64, datetime.now(UTC), daemon.HOST)
        if job is None:
            break
        daemon.run_job(project, job.id, on_event=Progress())
        try:
            record = project.archive().load(job.run_id)
        except CTError:
            print(f"run {job.run_id} ({job.pipeline}): {store.job(job.id).error or 'left no run'}")
            worst = max(worst, EXIT_FAILED)
            continue
        print(_summary(record))
        code = _exit_for(record)
        worst = code if worst == EXIT_OK or code == EXIT_FAILED else worst
        if job.pipeline == monitor and store.mark_evaluated(job.id):
            _print_decisions(engine.evaluate_monitor_job(store.job(job.id), datetime.now(UTC)))
    else:
        print(f"stopped after {max_runs} runs; `ctn check --run` again executes the rest")
    return worst


def cmd_config_reference(args: argparse.Namespace) -> int:
    from .docgen import config_reference

    text = config_reference()
    print(text.split("\n", 1)[1].lstrip("\n") if text.startswith("<!--") else text, end="")
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``ctn`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", default=None, help="project folder (default: nearest folder with ct.yaml)")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", default="cli", help="who moves the alias (recorded in the audit log)")
    actor.add_argument("--reason", default=None, help="why (recorded in the audit log)")

    parser = argparse.ArgumentParser(prog="ctn", description="Continuous training with notebooks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="scaffold a project")
    p.add_argument("dir")
    p.add_argument("--demo", action="store_true", help="use the demo configuration and write demo batches")
    p.add_argument("--name", default=None)
    p.add_argument("--target", default="target")
    p.add_argument("--time-column", default="timestamp")
    p.add_argument("--time-format", default="iso", help="how the time column is written: iso, year, unix_s, "
                   "unix_ms or a strftime pattern such as '%%d/%%m/%%Y' (data.time_format)")
    p.add_argument("--force", action="store_true", help="overwrite ct.yaml and the stage notebooks")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config-reference", help="print the ct.yaml reference: every key, its default and meaning")
    p.set_defaults(func=cmd_config_reference)

    p = sub.add_parser("run", parents=[common], help="run a pipeline now")
    p.add_argument("pipeline")
    p.add_argument("-p", "--param", action="append", metavar="[STAGE.]NAME=VALUE",
                   help="override a stage parameter (value parsed as JSON, else a string)")
    p.add_argument("--params-file", default=None, metavar="FILE",
                   help="read overrides from a JSON file {stage: {name: value}} (- reads stdin); -p wins")
    p.add_argument("--reason", default=None, help="why (one line, recorded with the run)")
    p.add_argument("--run-id", default=None, help="use this run id (e.g. one chosen by the JupyterLab API)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", parents=[common], help="re-run a stopped run from its failed stage")
    p.add_argument("run_id")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", parents=[common, listing], help="list runs, newest first")
    p.add_argument("--pipeline")
    p.add_argument("--status")
    p.add_argument("--trigger")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--totals", action="store_true",
                   help="runs, wall and CPU seconds, archive MB and cost per pipeline, stage and trigger")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", parents=[common, listing], help="show one run")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("models", parents=[common, listing], help="registered model versions and aliases")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("promote", parents=[common, actor], help="make VERSION the champion")
    p.add_argument("version", type=int)
    p.add_argument("--force", action="store_true", help="promote even a version the model gate rejected")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", parents=[common, actor], help="move champion back to the previous one")
    p.add_argument("--to", type=int, default=None, help="a specific version")
    p.add_argument("--force", action="store_true",
                   help="roll back even to a version that was never champion nor blessed by the model gate "
                        "(audited as forced)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("reindex", parents=[common], help="rebuild the run index from the run folders")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("daemon", parents=[common], help="start, stop or inspect the project's trigger daemon")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--foreground", action="store_true", help="start: serve in this process until SIGTERM/Ctrl-C")
    p.add_argument("--poll", type=float, default=None, help="start: seconds between watcher scans "
                   "(default triggers.watch.poll_s)")
    p.add_argument("--timeout", type=float, default=90, help="stop: seconds to wait for the daemon to exit")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("triggers", parents=[common, listing], help="trigger rules, next fire times, recent decisions")
    p.add_argument("--trigger", default=None, help="only this rule's decisions")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_triggers)

    p = sub.add_parser("pipeline", parents=[common, listing],
                       help="pipeline versions: status, check a change on a sample and deploy it, history")
    p.add_argument("action", choices=("status", "check", "history"))
    p.add_argument("--no-deploy", action="store_true", help="check: report only, deploy nothing")
    p.add_argument("--actor", default="cli", help="check: who asked (recorded)")
    p.add_argument("--limit", type=int, default=20, help="history: newest checks shown")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("gc", parents=[common, listing],
                       help="drop heavy files of old runs per the retention policy (audit records stay whole)")
    p.add_argument("--dry-run", action="store_true", help="say what would be freed, remove nothing")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("trigger", parents=[common, listing],
                       help="signal an event rule (new data upstream, labels arrived, retrain): queue its run")
    p.add_argument("rule", help="name of a rule of kind: event in ct.yaml")
    p.add_argument("--reason", default=None, help="why (recorded with the decision and the run)")
    p.add_argument("--key", default=None, help="idempotency key: the same key sent again starts nothing more")
    p.add_argument("--actor", default="cli", help="who signals (recorded with the decision)")
    p.add_argument("--run", action="store_true", help="without a daemon, execute the queued run here")
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("notifications", parents=[common, listing],
                       help="messages sent about failures, recoveries, champion moves; send the due ones")
    p.add_argument("--send", action="store_true", help="read what happened and send the due messages now")
    p.add_argument("--state", choices=["pending", "sending", "sent", "failed"], default=None)
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_notifications)

    p = sub.add_parser("check", parents=[common, listing], help="evaluate every trigger rule once")
    p.add_argument("--dry-run", action="store_true", help="record and print the decisions, start nothing")
    p.add_argument("--run", action="store_true", help="execute the queued runs here, with progress as `ctn run` "
                   "shows it, then evaluate the rules on the monitor runs executed (without a daemon)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="play the CT demo story in a fresh project")
    p.add_argument("--dir", default="demo-project")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the rows of each batch")
    p.add_argument("-v", "--verbose", action="store_true", help="show stage progress")
    p.add_argument("--daemon", action="store_true", help="batches land one by one and a real daemon reacts")
    p.set_defaults(func=cmd_demo)
    return parser


def _skip_slow_optional_imports() -> None:
    """Keep jsonschema's optional IRI format checker out: importing it builds a grammar (about 1 s here).

    nbformat validates notebooks with jsonschema but never uses the ``iri`` formats; jsonschema skips
    the checker when its module cannot be imported.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ctn``."""
    _skip_slow_optional_imports()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CTError as exc:  # any type of the tree: a run that ran and failed exits through _exit_for instead
        print(f"ctn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ctn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
