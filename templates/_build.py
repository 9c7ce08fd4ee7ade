"""Source of truth of the stage notebook templates: ``python templates/_build.py`` writes ``templates/*.ipynb``.

Edit the cells here, not in the ``.ipynb`` files, then run the script. ``--check`` exits with status 1
(and names the notebooks) when a template differs from what this script writes; the test suite runs it.
Cells whose output is the same on every run of the same data start with ``# NBVAL_CHECK_OUTPUT``:
``pytest --nbval-lax`` compares only those.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CONTEXT_LINE = "ct_context = {}  # injected by the runner; empty when run by hand"

Cell = tuple[str, str, tuple[str, ...]]

INTERACTIVE_NOTE = """
Run by the pipeline, the runner injects `ct_context` (project, run folder, outputs of earlier stages).
Opened by hand from the project's `notebooks/` folder, `ct_context` stays empty: the stage finds the
project from the working folder, reads what earlier stages recorded in the latest successful run (or
in your own session), and writes its files under `.ct/scratch/`. Run by hand, train still registers
a version (alias contender, tag `ct.interactive`); register only shows its decision unless `dry_run = False`.
"""


def md(text: str, *, note: bool = False) -> Cell:
    body = textwrap.dedent(text).strip()
    return ("markdown", body + ("\n\n" + INTERACTIVE_NOTE.strip() if note else ""), ())


def code(text: str) -> Cell:
    return ("code", textwrap.dedent(text).strip(), ())


def parameters(text: str = "") -> Cell:
    body = textwrap.dedent(text).strip()
    return ("code", CONTEXT_LINE + ("\n" + body if body else ""), ("parameters",))


def context(stage: str) -> Cell:
    return code(f'''
        from ct_notebooks import stage

        ctx = stage.context(ct_context, stage="{stage}")
        config = ctx.config
        where = f"run {{ctx.run_id}}" if ctx.run_id else "interactive session (outputs go to .ct/scratch)"
        print(f"project {{ctx.project.name}}, pipeline {{ctx.pipeline}}, stage {{ctx.stage}}: {{where}}")
    ''')



# ----------------------------------------------------------------------------------------------
# train pipeline
# ----------------------------------------------------------------------------------------------

INGEST = [
    md("""
        # Ingest: snapshot the training data

        Reads the batches in the project's landing zone (`data.incoming` in `ct.yaml`), judges each new
        batch on its own (a batch that fails is quarantined, or blocks the run: `gates.data.on_bad_batch`),
        keeps the rows up to `cutoff` and within the training window (`model.training.window`), and splits
        them by time: the newest rows become the **holdout** on which the evaluate stage compares the
        contender with the champion. The holdout is the newest `holdout_fraction` of the rows, but at most
        `model.training.holdout_new_share` of the rows the champion was not trained on, so the contender
        learns from part of the new data and both models are judged on the newest rows.
        A run started by a drift or performance trigger follows `model.training.on_change` (a narrower
        window, more weight on the new rows). Both parts are written as Parquet snapshots into the run
        folder (hard links into `.ct/snapshots/`, where each content is stored once), and a fingerprint
        of the content is recorded for lineage.

        | parameter | meaning |
        |---|---|
        | `cutoff` | ISO date or date-time; later rows are ignored (a date includes that whole day). `None`: all |
        | `window` | `{"days": N}`, `{"rows": N}` or `{"batches": N}` for this run. `None`: `model.training` |
        | `train_window_days` | keep only the last N days before the latest row. `None`: see `window` |
        | `holdout_fraction` | newest share of rows held out for evaluation. `None`: `model.training.holdout_fraction` |
        | `changed_since` | ISO time the change began; only later rows are new. `None`: all after the champion's data |

        Records `train_path`, `holdout_path`, `rows_train`, `rows_holdout`, `batches`, `data_fingerprint`,
        `time_min`, `time_max`, `split_time`, `plan` (trigger, reason, window, holdout rule, weighting,
        refit), `rows_new`, `holdout_rule`, and the data gate's verdict per batch: `batch_gate`,
        `quarantined`, `batch_digests`, `schema_path`.
    """, note=True),
    parameters("""
        cutoff = None  # ISO date/time such as "2026-03-31"; rows after it are ignored. None: all rows
        window = None  # {"days": N}, {"rows": N} or {"batches": N} for this run. None: model.training in ct.yaml
        train_window_days = None  # keep the last N days before the latest row. None: see window
        holdout_fraction = None  # newest share of rows held out (0 < f < 1). None: model.training.holdout_fraction
        changed_since = None  # ISO time the change began (set by drift/performance triggers). None: unknown
    """),
    context("ingest"),
    code("""
        import json

        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        import pandas as pd
        from IPython.display import display

        from ct_notebooks import batch_gate, datasets, training
        from ct_notebooks.errors import CTError

        time_column = config.data.time_column
        target = config.data.target
    """),
    md("""
        ## The training plan
        What this run trains on follows `model.training` in `ct.yaml` and what started the run: a drift or
        performance trigger applies `model.training.on_change`. The champion's training data tells which
        rows are new.
    """),
    code("""
        champion = ctx.registry().champion()
        new_since = None if champion is None else training.seen_until(champion.tags, ctx.project.root, time_column)
        plan = training.plan(
            config.model.training, trigger=ctx.trigger, reason=ctx.reason,
            window=... if window is None else window, train_window_days=train_window_days,
            holdout_fraction=holdout_fraction, new_since=new_since, changed_since=changed_since,
        )
        print(plan.describe())
    """),
    md("""
        ## 1. Batches in the landing zone
        Batch files are read in name order (`batch-00.csv`, `batch-01.csv`, ...).
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        paths = datasets.list_batches(ctx.project.incoming_dir, config.data.format)
        if not paths:
            raise CTError(f"no batch files in {ctx.project.incoming_dir}: put CSV or Parquet batches there")
        print(f"{len(paths)} batch file(s) in {config.data.incoming}:")
        for path in paths:
            print(f"  {path.name}")
    """),
    md("""
        ### Each new batch through the data gate
        Batches that were part of the champion's data were accepted before and are not judged again. Each
        new batch is checked on its own against the champion's data (its train and holdout snapshots) or,
        for the first model, against what the batches agree on: columns, dtypes and categories (a few odd
        rows are a warning, see `gates.data.schema`), missing values and duplicate rows. Values beyond
        inferred ranges are reported, not blocked: moving values are the drift rules' business.

        A batch that fails is kept out of the run. With `gates.data.on_bad_batch: quarantine` (the default)
        a pipeline run moves it to `gates.data.quarantine_dir` with a `<name>.reason.json` beside it and
        trains on the others; with `block` the validate stage stops the run. Opened by hand, nothing moves.
    """),
    code("""
        reference = batch_gate.champion_reference(ctx.project, champion)
        gate = batch_gate.judge_batches(paths, config, reference)
        print(f"reference: {reference.label}")
        display(gate.to_frame())
    """),
    code("""
        if not gate.kept:  # nothing to train on: stop before moving anything (a config problem is likelier)
            ctx.block(["no batch passed the data gate; nothing was moved", *gate.violations()])
        if not ctx.interactive:
            batch_gate.quarantine(gate, ctx.project, paths, run_id=ctx.run_id)
        for verdict in gate.failed:
            where = f"moved to {verdict.moved_to}" if verdict.moved_to else "kept out of this run"
            print(f"batch {verdict.batch} failed the data gate ({where}):")
            for violation in verdict.violations:
                print(f"  - {violation}")
        for warning in gate.warnings:
            print(f"warning: {warning}")
        schema_path = ctx.path("schema.json")
        schema_path.write_text(json.dumps(gate.schema, indent=2), encoding="utf-8")
        ctx.record(
            batch_gate={**gate.to_dict(), "schema_source": gate.schema.get("source")},
            quarantined=gate.quarantined(),
            batch_digests={v.batch: v.digest for v in gate.verdicts if v.batch in gate.kept},
            schema_path=schema_path,
        )
    """),
    md("""
        ## 2. Read, cut off, keep the training window
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        frame = gate.accepted_frame()
        rows_read = len(frame)
        frame = datasets.apply_cutoff(frame, time_column, cutoff)
        rows_cut = len(frame)
        frame = datasets.apply_training_window(frame, time_column, plan.window)
        if frame.empty:
            limits = f"cutoff={cutoff!r}, window={plan.window!r}"
            raise CTError(f"no rows left of {rows_read} after {limits}")
        batches = sorted(frame[datasets.BATCH_COLUMN].unique().tolist())
        kept = datasets.describe_window(plan.window)
        print(f"{rows_read} rows read, {rows_cut} up to the cutoff ({cutoff or 'none'}), {len(frame)} in {kept}")
        print(f"time range: {frame[time_column].min()} to {frame[time_column].max()}")
    """),
    code("""
        per_batch = frame.groupby(datasets.BATCH_COLUMN).agg(
            rows=(time_column, "size"), first=(time_column, "min"), last=(time_column, "max")
        )
        if target in frame.columns:
            per_batch[f"mean {target}"] = frame.groupby(datasets.BATCH_COLUMN)[target].mean().round(4)
            per_batch[f"{target} missing"] = frame.groupby(datasets.BATCH_COLUMN)[target].apply(
                lambda s: int(s.isna().sum())
            )
        display(per_batch)
    """),
    md("""
        ## 3. Split by time and write the snapshots
        The holdout is the most recent data: the model gate judges models on the rows closest to the
        data they will score. With a champion, the holdout takes at most `holdout_new_share` of the rows
        the champion was not trained on, so the contender has learned from the rest of them.
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        train, holdout, split_info = training.split(frame, time_column, plan)
        split_time = holdout[time_column].min()
        store = ctx.snapshot_store  # stored once by content; runs on the same data share the file
        train_path = datasets.write_snapshot(train, ctx.path("data/train.parquet"), store=store)
        holdout_path = datasets.write_snapshot(holdout, ctx.path("data/holdout.parquet"), store=store)
        data_fingerprint = datasets.fingerprint(frame.drop(columns=datasets.BATCH_COLUMN))
        print(f"train: {len(train)} rows up to {train[time_column].max()}")
        print(f"holdout: {len(holdout)} rows from {split_time}")
        print(f"fingerprint: {data_fingerprint}")
    """),
    code("""
        print(f"holdout: {split_info['rule']}")
        if champion is not None:
            print(f"{split_info['rows_new']} row(s) newer than the data of champion version {champion.version}; "
                  f"{split_info['holdout_rows_seen_by_champion']} holdout row(s) the champion was trained on")
    """),
    code("""
        weekly = frame.set_index(time_column).resample("W")
        fig, ax = plt.subplots(figsize=(8, 2.8))
        counts = weekly.size()
        ax.bar(counts.index, counts.to_numpy(), width=5, color="#9ecae1", label="rows per week")
        ax.axvline(split_time, color="black", linestyle="--", linewidth=1, label="holdout starts")
        ax.set_ylabel("rows")
        if target in frame.columns and pd.api.types.is_numeric_dtype(frame[target]):
            rate = ax.twinx()
            rate.plot(weekly[target].mean(), color="#d62728", marker=".", label=f"mean {target}")
            rate.set_ylabel(f"mean {target}")
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("Ingested rows per week")
        plt.show()
    """),
    code("""
        ctx.record(
            train_path=train_path,
            holdout_path=holdout_path,
            rows_train=len(train),
            rows_holdout=len(holdout),
            batches=batches,
            data_fingerprint=data_fingerprint,
            time_min=frame[time_column].min().isoformat(),
            time_max=frame[time_column].max().isoformat(),
            split_time=split_time.isoformat(),
            plan=plan.to_dict(),
            rows_new=split_info["rows_new"],
            holdout_rule=split_info["rule"],
        )
    """),
]

VALIDATE = [
    md("""
        # Validate: the data gate

        Checks the data that ingest kept before any training:

        * **each new batch** (judged by ingest, on its own): columns, dtypes and categories against the
          champion's data (its train and holdout) or the schema declared in `gates.data.schema`, missing
          values and duplicate rows. A few odd rows are a warning (`gates.data.schema.max_unseen_category_share`,
          `max_out_of_range_share`); values beyond inferred ranges are reported for the drift rules to weigh.
          A batch that fails is quarantined and the run goes on (`gates.data.on_bad_batch: quarantine`), or
          blocks the run (`block`). Batches already in the champion's data are not judged again;
        * **all kept data**: the target column, minimum rows, constant columns;
        * **drift**: share of feature columns whose distribution moved away from the champion's data
          (Evidently's default tests), with an Evidently report to read.

        If any limit is broken the stage lists every violation and **blocks** the run: nothing is trained
        and the champion stays as it is.

        | parameter | meaning |
        |---|---|
        | `drift_report` | write the Evidently report `reports/data-drift.html` / `.json` when there is a champion |
        | `report_max_rows` | Evidently runs on a seeded sample above this many rows (it is slow on big data) |

        Records `gate_passed`, `violations`, `warnings`, `schema_path`, `drift_share`, `drifted_columns`,
        `report_html`, `reference`, `gate`.
    """, note=True),
    parameters("""
        drift_report = True  # write the Evidently drift report when a champion reference exists
        report_max_rows = 20000  # Evidently works on a sample above this many rows per frame
    """),
    context("validate"),
    code("""
        import json

        import matplotlib.pyplot as plt
        import pandas as pd
        from IPython.display import display

        from ct_notebooks import datasets, drift, validation

        data = config.data
        gate_config = config.gates.data
    """),
    md("""
        ## 1. The data to check and the reference
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        train = datasets.read_snapshot(ctx.file("ingest", "train_path"))
        holdout = datasets.read_snapshot(ctx.file("ingest", "holdout_path"))
        current = pd.concat([train, holdout], ignore_index=True)
        print(f"checking {len(current)} rows ({len(train)} train + {len(holdout)} holdout)")
        print(f"batches: {', '.join(ctx.get('ingest', 'batches'))}")
    """),
    code("""
        batch_result = ctx.get("ingest", "batch_gate")
        reference_paths = batch_result.get("reference_paths") or []
        reference = None
        if reference_paths:
            reference = pd.concat(
                [datasets.read_snapshot(ctx.project.root / p) for p in reference_paths], ignore_index=True, sort=False
            )
        reference_label = batch_result["reference"]
        print(f"reference: {reference_label}")
    """),
    md("""
        ## 2. Each batch on its own, and the schema
        Ingest judged every new batch against this schema: inferred from the reference
        (`gates.data.schema.mode: infer`) or taken from `ct.yaml` (`declared`). Ids and times are checked
        for their type only: new values are expected there.
    """),
    code("""
        for key in ("accepted", "passed", "failed", "quarantined"):
            names = batch_result.get(key) or []
            print(f"{key}: {', '.join(names) if names else '-'}")
    """),
    code("""
        verdicts = pd.DataFrame(batch_result["verdicts"])
        if not verdicts.empty:
            display(verdicts[["batch", "status", "rows", "violations", "warnings", "moved_to"]].set_index("batch"))
        schema = json.loads(ctx.file("ingest", "schema_path").read_text(encoding="utf-8"))
        schema_path = ctx.path("schema.json")
        schema_path.write_text(json.dumps(schema, indent=2), encoding="utf-8")
        display(pd.DataFrame.from_dict(schema["columns"], orient="index"))
    """),
    md("""
        ## 3. Drift against the champion's data
    """),
    code("""
        features = datasets.feature_columns(config, current)
        drift_result = None
        drift_columns: list[str] = []
        drift_categorical: list[str] = []
        if reference is not None:
            reference_categorical = set(datasets.categorical_columns(config, reference))
            drift_columns = [
                c for c in features
                if c in reference.columns
                and (c in reference_categorical) == datasets.is_categorical_dtype(current[c])
                and current[c].notna().any() and reference[c].notna().any()
            ]
            drift_categorical = [c for c in drift_columns if c in reference_categorical]
            drift_result = drift.drift_check(
                reference, current, columns=drift_columns, categorical=drift_categorical,
                numerical=[c for c in drift_columns if c not in reference_categorical],
                share_threshold=gate_config.max_drift_share,
            )
            skipped = [c for c in features if c not in drift_columns]
            print(f"{drift_result.drift_share:.0%} of {len(drift_columns)} feature columns drifted "
                  f"(limit {gate_config.max_drift_share:.0%})" + (f"; not compared: {skipped}" if skipped else ""))
            display(drift_result.to_frame())
        else:
            print("no champion reference: drift is measured from the second model on")
    """),
    code("""
        report_html = None
        if drift_result is not None and drift_report:
            report = ctx.drift_report(
                reference, current, name="data-drift", columns=drift_columns,
                categorical=drift_categorical, numerical=[c for c in drift_columns if c not in drift_categorical],
                max_rows=report_max_rows, share_threshold=gate_config.max_drift_share,
            )
            report_html = report.html_path
            print(drift.describe_report(report, ctx.run_dir))
    """),
    code("""
        if drift_result is not None and drift_result.drifted_columns():
            shown = [c for c in drift_result.drifted_columns() if c not in drift_categorical][:3]
            if shown:
                fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.6), squeeze=False)
                for ax, column in zip(axes[0], shown, strict=True):
                    ax.hist(reference[column].dropna(), bins=30, density=True, alpha=0.5, label="reference")
                    ax.hist(current[column].dropna(), bins=30, density=True, alpha=0.5, label="current")
                    ax.set_title(column, fontsize=9)
                axes[0][0].legend(fontsize=7)
                fig.suptitle("Drifted numeric columns", fontsize=10)
                plt.tight_layout()
                plt.show()
    """),
    md("""
        ## 4. The gate
    """),
    code("""
        result = validation.run_gate(
            current, config, batch_result, features=features,
            drift_share=None if drift_result is None else drift_result.drift_share,
            drifted_columns=[] if drift_result is None else drift_result.drifted_columns(),
        )
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        if result.passed:
            print("data gate passed: no violations")
        else:
            print(f"data gate FAILED with {len(result.violations)} violation(s):")
            for violation in result.violations:
                print(f"  - {violation}")
    """),
    code("""
        for warning in result.warnings:  # a few odd rows, values beyond inferred ranges, quarantined batches
            print(f"warning: {warning}")
    """),
    code("""
        # the gate at a glance: a widget when you run it, plain HTML in a pipeline run's notebook and report
        from ct_notebooks.dashboard import stage_widgets

        stage_widgets.show(stage_widgets.validation_summary(result), static=ctx.run_id is not None)
    """),
    code("""
        ctx.record(
            gate_passed=result.passed,
            violations=result.violations,
            warnings=result.warnings,
            schema_path=schema_path,
            drift_share=None if drift_result is None else float(drift_result.drift_share),
            drifted_columns=[] if drift_result is None else drift_result.drifted_columns(),
            report_html=report_html,
            reference=reference_label,
            gate=result.to_dict(),
        )
        if not result.passed:
            ctx.block(result.violations)  # stops the run here: status blocked, the champion is untouched
    """),
]

TRAIN = [
    md("""
        # Train: fit the contender and register it

        Builds the scikit-learn pipeline named in `ct.yaml` (`model.estimator` with `model.params`; numeric
        columns imputed with the median, and scaled for linear models; categorical columns imputed with
        the most frequent value and one-hot encoded) and fits it on the training snapshot: this is the model
        the evaluate stage judges on the holdout. With `model.training.refit` (the default) the model that is
        registered is then refit on all windowed rows, holdout included, so it has learned from the newest
        data too; the version's tags say so (`ct.refit`, `ct.gate_evaluated`). Rows newer than the champion's
        training data are weighted up in runs started by a drift or performance trigger
        (`model.training.on_change.recent_share`). The registered model is logged to MLflow as a new version
        of `model.registered_name` with the alias **contender**. The version's tags link it to this run, its
        data fingerprint and its training snapshot (`ct.reference`, the reference for later drift checks).

        | parameter | meaning |
        |---|---|
        | `run_name` | MLflow run name. `None`: `train-<run id>` |
        | `threads` | limit BLAS/OpenMP threads while fitting (when stages run side by side). `None`: default |
        | `model_params` | estimator parameters for this run only, over `model.params` (e.g. `{"max_iter": 50}`) |

        Records `model_version`, `mlflow_run_id`, `fit_seconds`, `features`, `categorical_features`,
        `train_metrics`, `rows_train`, `refit`, `rows_fit`, `gate_model_path` (the model the gate evaluates,
        when the registered one is a refit), `weighting`.
    """, note=True),
    parameters("""
        run_name = None  # MLflow run name. None: "train-<run id>"
        threads = None  # limit BLAS/OpenMP threads while fitting. None: library default
        model_params = {}  # estimator parameters for this run only, over model.params in ct.yaml
    """),
    context("train"),
    code("""
        import pickle
        import time

        import pandas as pd
        from threadpoolctl import threadpool_limits

        from ct_notebooks import contracts, datasets, evaluation, modeling, training

        target = config.data.target
        time_column = config.data.time_column
        task = config.model.task
        metric_names = list(dict.fromkeys([config.model.primary_metric, *config.model.secondary_metrics]))
        plan = training.TrainingPlan(**ctx.get("ingest", "plan"))
    """),
    md("""
        ## 1. Training data and features
        Features are every column except the target, time, id, segment, `data.drop_columns` and the batch
        name; categorical ones are `data.categorical`, or inferred from the dtype.
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        train_path = ctx.file("ingest", "train_path")
        holdout_path = ctx.file("ingest", "holdout_path")
        train = datasets.read_snapshot(train_path)
        labelled = train[train[target].notna()].reset_index(drop=True)
        features = datasets.feature_columns(config, labelled)
        categorical = datasets.categorical_columns(config, labelled)
        numeric = [c for c in features if c not in categorical]
        X = modeling.prepare_features(labelled[features], categorical)
        y = labelled[target]
        print(f"{len(labelled)} labelled training rows ({len(train) - len(labelled)} without {target} dropped)")
        print(f"numeric features ({len(numeric)}): {', '.join(numeric)}")
        print(f"categorical features ({len(categorical)}): {', '.join(categorical)}")
    """),
    md("""
        ## 2. Fit
        First the model the gate judges: fitted on the training split only. Then, with
        `model.training.refit`, the model to register: the same settings refit on training split and
        holdout together.
    """),
    code("""
        model_config = config.model.model_copy(update={"params": {**config.model.params, **model_params}})


        def fit_on(rows):
            weights = training.recent_weights(rows, time_column, plan)
            pipeline = modeling.build_pipeline(model_config, numeric, categorical)
            X_rows = modeling.prepare_features(rows[features], categorical)
            with threadpool_limits(limits=threads):
                return modeling.fit(pipeline, X_rows, rows[target], task=task, sample_weight=weights), weights


        started = time.perf_counter()
        gate_model, weights = fit_on(labelled)
        weighting = None
        if weights is not None:
            new_rows = training.new_rows(labelled[time_column], plan)
            weighting = {"new_rows": int(new_rows.sum()), "recent_share": plan.recent_share,
                         "new_row_weight": float(weights[new_rows][0]), "changed_since": plan.changed_since}
            print(f"{weighting['new_rows']} new row(s) weighted to "
                  f"{plan.recent_share:.0%} of the total (trigger {plan.trigger})")
        model, fit_rows, gate_model_path = gate_model, labelled, None
        if plan.refit:
            holdout = datasets.read_snapshot(holdout_path)
            fit_rows = pd.concat([labelled, holdout[holdout[target].notna()]], ignore_index=True)
            model, _ = fit_on(fit_rows)
            gate_model_path = ctx.path(training.GATE_MODEL_FILE)
            gate_model_path.write_bytes(pickle.dumps(gate_model, protocol=pickle.HIGHEST_PROTOCOL))
        fit_seconds = round(time.perf_counter() - started, 3)
        X, y = modeling.prepare_features(fit_rows[features], categorical), fit_rows[target]
        print(f"fitted {config.model.estimator} on {len(labelled)} rows for the gate"
              + (f", refit on {len(fit_rows)} rows (holdout included) to register" if plan.refit else "")
              + f" in {fit_seconds:.2f} s")
        model
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        scores = modeling.predict_scores(model, X, task=task)
        truth = modeling.binary_target(y, modeling.positive_class(model)) if task == "classification" else y
        train_metrics = {
            name: evaluation.json_number(value)
            for name, value in evaluation.compute_metrics(metric_names, truth, scores).items()
        }
        for name, value in train_metrics.items():
            print(f"training {name}: {'undefined' if value is None else f'{value:.4f}'}")
    """),
    md("""
        ## 3. Log to MLflow and register the contender
        Training metrics are logged as `train_<metric>`; the holdout metrics come from the evaluate stage
        and are written on the version as `ct.metric.<metric>` tags by the register stage.
    """),
    code("""
        registry = ctx.registry()
        root = ctx.project.root
        split_time = ctx.get("ingest", "split_time")
        tags = {
            contracts.TAG_DATA_FINGERPRINT: ctx.get("ingest", "data_fingerprint"),
            contracts.TAG_REFERENCE: train_path.relative_to(root).as_posix(),
            contracts.TAG_ARCHIVE_PATH: ctx.run_dir.resolve().relative_to(root).as_posix(),
            contracts.TAG_DATA_TIME_MAX: fit_rows[time_column].max().isoformat(),
            contracts.TAG_TRIGGER: plan.trigger,
            contracts.TAG_TRAINING_WINDOW: datasets.describe_window(plan.window),
            contracts.TAG_REFIT: contracts.TAG_TRUE if plan.refit else contracts.TAG_FALSE,
            contracts.TAG_GATE_EVALUATED: (
                f"a model fitted on the {len(labelled)} training rows before {split_time} (holdout excluded); "
                f"this version is its refit on {len(fit_rows)} rows, holdout included"
                if plan.refit else f"this version, fitted on the {len(labelled)} training rows before {split_time}"
            ) + (f"; rows newer than the champion's data carry {plan.recent_share:.0%} of the weight"
                 if weighting is not None else ""),
        }
        if plan.refit:
            tags[contracts.TAG_HOLDOUT_REFERENCE] = holdout_path.relative_to(root).as_posix()
        if weighting is not None:
            tags[contracts.TAG_RECENT_SHARE] = repr(plan.recent_share)
        if ctx.run_id:
            tags[contracts.TAG_RUN_ID] = ctx.run_id
        else:
            tags[contracts.TAG_INTERACTIVE] = contracts.TAG_TRUE
        params = {**modeling.training_params(config, model), "rows_train": len(X), "n_features": len(features)}
        logged_metrics = {f"train_{k}": v for k, v in train_metrics.items() if v is not None}
        info = registry.log_and_register(
            model,
            run_name=run_name or f"train-{ctx.run_id or 'interactive'}",
            params=params,
            metrics={**logged_metrics, "fit_seconds": fit_seconds},
            input_example=X.head(5).astype({c: "float64" for c in numeric}),  # ints may arrive as floats
            tags=tags,
        )
        print(f"registered {registry.model_name!r} version {info.version} as contender (MLflow run {info.run_id})")
    """),
    code("""
        ctx.record(
            model_version=info.version,
            mlflow_run_id=info.run_id,
            fit_seconds=fit_seconds,
            features=features,
            categorical_features=categorical,
            train_metrics=train_metrics,
            rows_train=len(labelled),
            refit=plan.refit,
            rows_fit=len(fit_rows),
            gate_model_path=gate_model_path,
            weighting=weighting,
        )
    """),
]

EVALUATE = [
    md("""
        # Evaluate: the model gate

        Scores the **contender** and the current **champion** on the same holdout (the newest rows, which
        neither was trained on), then applies the rule in `gates.model`:

        * the margin on `model.primary_metric` (oriented so that positive means the contender is better)
          must be at least `min_delta`;
        * a paired bootstrap (the same resampled rows for both models) gives the interval of that margin;
          with `bootstrap.require_significant` (the default) its lower bound must be above `min_delta`,
          so a version moves only on evidence, not on noise;
        * guardrails: scoring latency per 1,000 rows and model size must stay within their limits.

        When the registered version is a refit (`model.training.refit`), the contender judged here is the
        model the train stage fitted without the holdout; the registered version is the same settings refit
        with the holdout, and its latency and size are the ones checked. The champion is judged the same
        way: when its registered refit was trained on rows of this holdout (no newer data since it was
        built), the gate model of its own run, fitted before those rows, stands for it.

        Without a champion the contender only has to pass the guardrails ("first model").

        | parameter | meaning |
        |---|---|
        | `latency_repeats` | how many times the holdout is scored to time the contender; the fastest counts |

        Records `gate` (the full result), `blessed`, `rule`, `contender_metrics`, `champion_metrics`,
        `champion_version`, `contender_version`, `comparison_png`, `evaluated_model`, `champion_judged`.
    """, note=True),
    parameters("""
        latency_repeats = 3  # times the holdout is scored to measure latency; the fastest counts
    """),
    context("evaluate"),
    code("""
        import pickle

        import matplotlib.pyplot as plt
        import pandas as pd
        from IPython.display import display
        from sklearn.metrics import roc_curve

        from ct_notebooks import champion_judge, datasets, evaluation, modeling

        target = config.data.target
        task = config.model.task
        primary = config.model.primary_metric
        secondary = [m for m in config.model.secondary_metrics if m != primary]
    """),
    md("""
        ## 1. Holdout, contender and champion
    """),
    code("""
        holdout = datasets.read_snapshot(ctx.file("ingest", "holdout_path"))
        holdout = holdout[holdout[target].notna()].reset_index(drop=True)
        registry = ctx.registry()
        contender_version = int(ctx.get("train", "model_version"))
        contender_info = registry.version(contender_version)
        registered = registry.load_model(contender_version)
        contender = registered
        evaluated_model = f"version {contender_version} as registered"
        if ctx.get("train", "gate_model_path", None):
            with open(ctx.file("train", "gate_model_path"), "rb") as handle:
                contender = pickle.load(handle)  # written by this run's train stage
            evaluated_model = (f"the model fitted without the holdout ({ctx.get('train', 'rows_train')} rows); "
                               f"version {contender_version} is its refit on {ctx.get('train', 'rows_fit')} rows")
        champion_info = registry.champion()
        champion, champion_version, champion_judged = None, None, None
        if champion_info is not None:
            judge = champion_judge.choose(registry, champion_info, holdout, config.data.time_column, ctx.project.root)
            champion, champion_version = judge.model, champion_info.version
            champion_judged = {"source": judge.source, "seen_rows": judge.seen_rows, "describe": judge.describe}
        print(f"holdout: {len(holdout)} labelled rows")
        print(f"contender: version {contender_version}; champion: {champion_version or 'none yet'}")
        print(f"judged for the contender: {evaluated_model}")
        if champion_judged:
            print(f"judged for the champion: {champion_judged['describe']}")
    """),
    code("""
        def score(model):
            _, categorical = modeling.feature_groups(model)
            return modeling.predict_scores(model, modeling.prepare_features(holdout, categorical), task=task)


        if task == "classification":
            truth = modeling.binary_target(holdout[target], modeling.positive_class(contender))
        else:
            truth = holdout[target].to_numpy(dtype=float)
        contender_scores = score(contender)
        champion_scores = score(champion) if champion is not None else None
        _, contender_categorical = modeling.feature_groups(registered)
        latency = evaluation.latency_ms_per_1k_rows(
            registered, modeling.prepare_features(holdout, contender_categorical), task=task, repeats=latency_repeats
        )
        size_bytes = contender_info.size_bytes or evaluation.pickled_size_bytes(registered)
        print(f"contender latency: {latency:.1f} ms per 1k rows; size {size_bytes / 1e6:.2f} MB")
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        contender_only = evaluation.compute_metrics([primary, *secondary], truth, contender_scores)
        for name, value in contender_only.items():
            print(f"contender holdout {name}: {value:.4f}")
    """),
    md("""
        ## 2. The rule
    """),
    code("""
        result = evaluation.compare(
            champion_scores, contender_scores, truth, config.gates.model, primary, secondary,
            latency_ms_per_1k=latency, size_bytes=size_bytes,
        )
        print("BLESSED" if result.passed else "NOT BLESSED")
        print(result.rule)
        for violation in result.violations[1:]:
            print(f"also: {violation}")
    """),
    code("""
        # the verdict at a glance: a widget when you run it, plain HTML in a pipeline run's notebook and report
        from ct_notebooks.dashboard import stage_widgets

        verdict = stage_widgets.gate_verdict(
            result, champion_version=champion_version, contender_version=contender_version
        )
        stage_widgets.show(verdict, static=ctx.run_id is not None)
    """),
    code("""
        values = result.values
        table = pd.DataFrame({"contender": values["contender"]})
        if values["champion"] is not None:
            table["champion"] = pd.Series(values["champion"])
            table["contender - champion"] = pd.Series(values["delta"])
        table["higher is better"] = [evaluation.higher_is_better(m) for m in table.index]
        display(table)
        if values["bootstrap"] is not None:
            boot = values["bootstrap"]
            print(f"paired bootstrap of the {primary} margin: {boot['confidence']:.0%} interval "
                  f"[{boot['low']:+.4f}, {boot['high']:+.4f}] from {boot['valid_samples']} resamples; "
                  f"contender better in {boot['p_better']:.0%} of them")
    """),
    code("""
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        if task == "classification":
            for name, scores in (("champion", champion_scores), ("contender", contender_scores)):
                if scores is not None:
                    fpr, tpr, _ = roc_curve(truth, scores)
                    axes[0].plot(fpr, tpr, label=name)
            axes[0].plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
            axes[0].set_xlabel("false positive rate")
            axes[0].set_ylabel("true positive rate")
            axes[0].set_title("ROC on the holdout", fontsize=10)
        else:
            axes[0].scatter(truth, contender_scores, s=4, alpha=0.4, label="contender")
            axes[0].set_xlabel("actual")
            axes[0].set_ylabel("predicted")
            axes[0].set_title("Contender on the holdout", fontsize=10)
        axes[0].legend(fontsize=8)
        bars = table[[c for c in ("champion", "contender") if c in table.columns]]
        bars.plot.bar(ax=axes[1], rot=0)
        axes[1].set_title("Holdout metrics", fontsize=10)
        axes[1].legend(fontsize=8)
        plt.tight_layout()
        comparison_png = ctx.path("reports/comparison.png")
        fig.savefig(comparison_png, dpi=100)
        plt.show()
    """),
    code("""
        ctx.record(
            gate=result.to_dict(),
            blessed=result.passed,
            rule=result.rule,
            contender_metrics=values["contender"],
            champion_metrics=values["champion"],
            champion_version=champion_version,
            contender_version=contender_version,
            comparison_png=comparison_png,
            evaluated_model=evaluated_model,
            champion_judged=champion_judged,
        )
    """),
]

REGISTER = [
    md("""
        # Register: move the champion alias, or record the rejection

        If the evaluate stage **blessed** the contender, it becomes the **champion** (the MLflow alias
        moves and the move is written to the project's alias audit log with the rule as the reason).
        Otherwise the version is tagged `ct.gate=rejected` with the rule, and the champion stays.

        The move is a compare-and-swap on the champion the gate compared against: if the champion moved
        after the evaluate stage (a rollback or another run's promotion), nothing moves and the run
        records `rejected` with `stale_gate` naming both versions; run the pipeline again to compare
        against the new champion.
        Either way the version is tagged with this run, its data fingerprint, its holdout metrics
        (`ct.metric.<name>`) and the run folder that holds its executed notebooks.

        | parameter | meaning |
        |---|---|
        | `dry_run` | only show the decision. `None`: a dry run when opened by hand, the real thing in a pipeline run |

        Records `outcome`: `{"decision": "promoted", "version", "previous", "reason", ...}` or
        `{"decision": "rejected", "version", "champion", "reason", ...}` (with `stale_gate:
        {"compared_with", "champion"}` when the champion moved after the comparison); the runner
        copies it into `run.json`.
    """, note=True),
    parameters("""
        dry_run = None  # True: only show the decision. None: dry run by hand, real in a pipeline run
    """),
    context("register"),
    code("""
        import pandas as pd
        from IPython.display import display

        from ct_notebooks import contracts
        from ct_notebooks.errors import StaleGateDecision

        registry = ctx.registry()
        version = int(ctx.get("train", "model_version"))
        gate = ctx.get("evaluate", "gate")
        blessed = bool(ctx.get("evaluate", "blessed"))
        rule = gate["rule"]
        values = gate["values"]
        compared_with = ctx.get("evaluate", "champion_version")  # the champion the gate compared against
        champion = registry.champion()
        previous = champion.version if champion is not None else None
        apply = (not ctx.interactive) if dry_run is None else not dry_run
        print(f"contender: version {version}; champion: {previous or 'none'} (gate compared with "
              f"{compared_with or 'none'})")
        print(f"model gate: {'blessed' if blessed else 'rejected'}: {rule}")
    """),
    md("""
        ## 1. Tags on the version
    """),
    code("""
        metric_tags = {
            contracts.metric_tag(name): repr(float(value))
            for name, value in (values.get("contender") or {}).items()
            if value is not None
        }
        tags = {
            **metric_tags,
            contracts.TAG_DATA_FINGERPRINT: str(ctx.get("ingest", "data_fingerprint", "")),
            contracts.TAG_ARCHIVE_PATH: ctx.run_dir.resolve().relative_to(ctx.project.root).as_posix(),
            contracts.TAG_GATE: contracts.GATE_PASSED if blessed else contracts.GATE_REJECTED,
            contracts.TAG_GATE_REASON: rule,
        }
        if ctx.run_id:
            tags[contracts.TAG_RUN_ID] = ctx.run_id
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        for key, value in sorted(metric_tags.items()):
            print(f"{key} = {float(value):.4f}")
    """),
    md("""
        ## 2. The decision
    """),
    code("""
        boot = values.get("bootstrap") or {}
        numbers = {
            "metric": values.get("primary_metric"),
            "contender_value": (values.get("contender") or {}).get(values.get("primary_metric")),
            "champion_value": (values.get("champion") or {}).get(values.get("primary_metric")),
            "margin": values.get("margin"),
            "min_delta": values.get("min_delta"),
            "interval": [boot.get("low"), boot.get("high")] if boot else None,
        }
        if not apply:
            outcome = {"decision": "none", "dry_run": True, "would": "promote" if blessed else "reject",
                       "version": version, "reason": rule, **numbers}
            print(f"dry run: would {outcome['would']} version {version}; nothing changed")
        else:
            registry.set_tags(version, tags)
            if blessed:
                try:
                    if previous == version:
                        print(f"version {version} already is the champion")
                    else:
                        registry.promote(version, actor="ct-notebooks", reason=rule, run_id=ctx.run_id,
                                         expected_champion=compared_with)
                        print(f"promoted version {version} to champion (previous: {previous or 'none'})")
                    outcome = {"decision": "promoted", "version": version, "previous": previous, "reason": rule,
                               **numbers}
                except StaleGateDecision as stale:
                    print(f"not promoted: {stale}")
                    outcome = {"decision": "rejected", "version": version, "champion": stale.current,
                               "reason": str(stale), "gate_rule": rule,
                               "stale_gate": {"compared_with": stale.expected, "champion": stale.current}, **numbers}
            else:
                print(f"rejected version {version}; champion stays {previous or 'unset'}")
                outcome = {"decision": "rejected", "version": version, "champion": previous, "reason": rule, **numbers}
    """),
    code("""
        moves = registry.audit_log("champion")[-5:]
        if moves:
            shown = ["at", "action", "from_version", "to_version", "reason"]
            display(pd.DataFrame([m.to_dict() for m in moves])[shown])
    """),
    code("""
        ctx.record(outcome=outcome)
    """),
]

# ----------------------------------------------------------------------------------------------
# monitor pipeline
# ----------------------------------------------------------------------------------------------

SCORE = [
    md("""
        # Score: the champion on a new batch

        Loads the current **champion**, checks that the batch has every column the champion was trained on
        (a missing or renamed column **blocks** the run and names the column), scores every row and writes
        `data/predictions.parquet` (id, time, prediction, score, and the label when the batch has one) and a
        snapshot of the batch, `data/batch.parquet`, for the drift and performance stages.

        | parameter | meaning |
        |---|---|
        | `batch` | file name in the landing zone, e.g. `"batch-03.csv"`. `None`: the newest batch |
        | `threshold` | classification: a score at or above it predicts the positive class |

        Records `batch`, `time_min`, `time_max`, `rows`, `champion_version`, `predictions_path`, `batch_path`,
        `has_labels`, `labelled_rows`, `data_fingerprint`, `positive_class`, `mean_score`.
    """, note=True),
    parameters("""
        batch = None  # file name in the incoming folder, e.g. "batch-03.csv". None: the newest batch
        threshold = 0.5  # classification: score at or above which the prediction is the positive class
    """),
    context("score"),
    code("""
        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        from IPython.display import display

        from ct_notebooks import datasets, modeling
        from ct_notebooks.errors import CTError

        data = config.data
        task = config.model.task
    """),
    md("""
        ## 1. The champion and the batch
    """),
    code("""
        registry = ctx.registry()
        champion = registry.champion()
        if champion is None:
            raise CTError("no champion yet: run the train pipeline first")
        model = registry.load_model(champion.version)
        numeric, categorical = modeling.feature_groups(model)
        expected = modeling.expected_features(model) or numeric + categorical
        print(f"champion: version {champion.version} ({len(expected)} input columns)")
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        batch_file = datasets.resolve_batch(ctx.project.incoming_dir, batch, data.format)
        ctx.record(batch=batch_file.name)
        frame = datasets.read_batch(batch_file, config)
        print(f"batch {batch_file.name}: {len(frame)} rows from {frame[data.time_column].min()} "
              f"to {frame[data.time_column].max()}")
        times = frame[data.time_column].dropna()
        ctx.record(time_min=times.min().isoformat() if len(times) else None,
                   time_max=times.max().isoformat() if len(times) else None)
    """),
    md("""
        ## 2. Does the batch have what the champion needs?
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        known = {*expected, data.target, data.time_column, datasets.BATCH_COLUMN, *data.drop_columns}
        known.update(c for c in (data.id_column, data.segment_column) if c)
        missing = [c for c in expected if c not in frame.columns]
        unexpected = [c for c in frame.columns if c not in known]
        violations = [
            f"column {c!r} that champion version {champion.version} needs is missing from batch {batch_file.name}"
            for c in missing
        ]
        if violations and unexpected:
            violations.append(
                f"batch {batch_file.name} has column(s) the champion does not know: "
                f"{', '.join(map(repr, unexpected))} (renamed?)"
            )
        if violations:
            print(f"cannot score batch {batch_file.name}:")
            for violation in violations:
                print(f"  - {violation}")
        else:
            print(f"all {len(expected)} input columns present")
    """),
    code("""
        if violations:
            with pd.option_context("display.max_colwidth", None):
                display(pd.DataFrame({"violation": violations}, index=range(1, len(violations) + 1)))
            ctx.block(violations)  # stops the run here: status blocked
    """),
    md("""
        ## 3. Score
    """),
    code("""
        scores = modeling.predict_scores(model, modeling.prepare_features(frame, categorical), task=task)
        predictions = pd.DataFrame(index=frame.index)
        for column in (data.id_column, data.time_column):
            if column:
                predictions[column] = frame[column]
        positive = None
        if task == "classification":
            classes = model.classes_
            predictions["prediction"] = np.where(scores >= threshold, classes[1], classes[0])
            positive = classes[1].item() if hasattr(classes[1], "item") else classes[1]
        else:
            predictions["prediction"] = scores
        predictions["score"] = scores
        has_labels = data.target in frame.columns and bool(frame[data.target].notna().any())
        if data.target in frame.columns:
            predictions["label"] = frame[data.target]
        labelled_rows = int(frame[data.target].notna().sum()) if data.target in frame.columns else 0
        predictions_path = datasets.write_snapshot(predictions, ctx.path("data/predictions.parquet"))
        batch_path = datasets.write_snapshot(frame, ctx.path("data/batch.parquet"))
        display(predictions.head())
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        print(f"scored {len(predictions)} rows; mean score {scores.mean():.4f}")
        if task == "classification":
            share = (predictions["prediction"] == positive).mean()
            print(f"predicted {positive!r}: {share:.1%} (threshold {threshold})")
        print(f"labels: {labelled_rows} of {len(frame)} rows" if has_labels else "labels: none yet")
    """),
    code("""
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.hist(scores, bins=40, color="#3182bd")
        if task == "classification":
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold}")
            ax.legend(fontsize=8)
        ax.set_title(f"Scores of champion version {champion.version} on {batch_file.name}", fontsize=10)
        plt.show()
    """),
    code("""
        ctx.record(
            rows=len(frame),
            champion_version=champion.version,
            predictions_path=predictions_path,
            batch_path=batch_path,
            has_labels=has_labels,
            labelled_rows=labelled_rows,
            data_fingerprint=datasets.fingerprint(frame.drop(columns=datasets.BATCH_COLUMN)),
            positive_class=positive,
            mean_score=float(scores.mean()),
        )
    """),
]

DRIFT = [
    md("""
        # Drift: has the data moved away from what the champion learned?

        Compares the scored batch with the champion's training snapshot (its `ct.reference` tag), column by
        column with the tests of the `drift` section of `ct.yaml` (default: Evidently's choice, computed
        directly, fast), weighs each column by how much the champion relies on it (**feature importance**:
        how much its scores move when the column is shuffled), and compares the champion's score
        distribution on both (**prediction drift**). An Evidently report is written for reading.
        Drift rules read `weighted_drift_share` (or `drift_share`), `drifted_columns` and `prediction_drift`.

        | parameter | meaning |
        |---|---|
        | `share_threshold` | dataset drift at this share of drifted features. `None`: `gates.data.max_drift_share` |
        | `drift_report` | write the Evidently report `reports/data-drift.html` / `.json` |
        | `report_max_rows` | Evidently runs on a seeded sample above this many rows (it is slow on big data) |

        Records `drift_share`, `weighted_drift_share`, `dataset_drift`, `drifted_columns`, `drivers` (the drifted
        columns, most important first), `columns` (one entry per column, with its test and weight), `importance`,
        `weighting`, `prediction_drift`, `report_html`, `share_threshold`, `champion_version`, `reference`,
        `skipped_columns`, `batch`.
    """, note=True),
    parameters("""
        share_threshold = None  # dataset drift at this share of drifted features. None: gates.data.max_drift_share
        drift_report = True  # write the Evidently HTML/JSON report
        report_max_rows = 20000  # Evidently works on a sample above this many rows per frame
    """),
    context("drift"),
    code("""
        import matplotlib.pyplot as plt
        from IPython.display import display

        import json

        from ct_notebooks import contracts, datasets, drift, modeling
        from ct_notebooks.archive import atomic_write_json
        from ct_notebooks.errors import CTError

        threshold = config.gates.data.max_drift_share if share_threshold is None else share_threshold
        settings = config.drift
    """),
    md("""
        ## 1. Reference and current data
    """),
    code("""
        registry = ctx.registry()
        version = int(ctx.get("score", "champion_version"))
        champion = registry.version(version)
        reference_tag = champion.tags.get(contracts.TAG_REFERENCE)
        if not reference_tag:
            raise CTError(f"champion version {version} has no ct.reference tag: drift needs the training snapshot "
                          "it was trained on (train it with the train pipeline)")
        reference_file = ctx.project.root / reference_tag
        if not reference_file.is_file():
            raise CTError(f"the training snapshot of champion version {version} is gone: {reference_tag}")
        reference = datasets.read_snapshot(reference_file)
        current = datasets.read_snapshot(ctx.file("score", "batch_path"))
        model = registry.load_model(version)
        numeric, categorical = modeling.feature_groups(model)
        columns = modeling.expected_features(model) or numeric + categorical
        print(f"reference: {len(reference)} rows ({reference_tag}); current: {len(current)} rows "
              f"({ctx.get('score', 'batch')})")
    """),
    md("""
        ## 2. Feature drift
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        task = config.model.task
        skipped = [c for c in columns if not (current[c].notna().any() and reference[c].notna().any())]
        checked = [c for c in columns if c not in skipped]
        tests = settings.tests_for({c: "cat" if c in categorical else "num" for c in checked})
        importance = None
        if settings.weighting == "importance":  # measured once per champion version, then read from .ct/
            cache = ctx.project.state_dir / "importance" / f"v{version}-{settings.importance_rows}.json"
            key = {"reference": reference_tag, "columns": checked}
            cached = json.loads(cache.read_text()) if cache.is_file() else {}
            importance = cached.get("importance") if cached.get("key") == key else None
            if importance is None:
                importance = drift.feature_importance(
                    lambda frame: modeling.predict_scores(
                        model, modeling.prepare_features(frame, categorical), task=task),
                    reference, checked, rows=settings.importance_rows,
                )
                atomic_write_json(cache, {"key": key, "importance": importance})
        result = drift.drift_check(
            reference, current, columns=checked, categorical=[c for c in checked if c in categorical],
            numerical=[c for c in checked if c not in categorical], share_threshold=threshold, tests=tests,
            weights=importance,
        )
        print(f"{result.drift_share:.0%} of {len(checked)} feature columns drifted "
              f"(dataset drift at {threshold:.0%}: {'yes' if result.dataset_drift else 'no'})")
        if result.weighted_share is not None:
            print(f"weighted by feature importance: {result.weighted_share:.0%} of the champion's reliance drifted")
        drivers = [
            {k: c.to_dict()[k] for k in ("column", "weight", "stattest", "score", "threshold")}
            for c in result.drivers()
        ]
        print("drifted: " + (", ".join(
            c.column + (f" (weight {c.weight:.2f})" if c.weight is not None else "") for c in result.drivers()
        ) or "none"))
        if skipped:
            print(f"not compared (no values): {', '.join(skipped)}")
    """),
    code("""
        display(result.to_frame())
    """),
    md("""
        ## 3. Prediction drift
        The champion's scores on its own training data against its scores on this batch.
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        reference_scores = modeling.predict_scores(
            model, modeling.prepare_features(reference, categorical), task=task
        )
        current_scores = datasets.read_snapshot(ctx.file("score", "predictions_path"))["score"].to_numpy()
        prediction = drift.prediction_drift(reference_scores, current_scores, column_type="num")
        print(f"prediction drift: {'yes' if prediction.drifted else 'no'} ({prediction.stattest} "
              f"score {prediction.score:.4g}, threshold {prediction.threshold:g})")
    """),
    code("""
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.hist(reference_scores, bins=40, density=True, alpha=0.5, label="reference (training data)")
        ax.hist(current_scores, bins=40, density=True, alpha=0.5, label="current batch")
        ax.set_title(f"Scores of champion version {version}", fontsize=10)
        ax.legend(fontsize=8)
        plt.show()
    """),
    md("""
        ## 4. Evidently report
    """),
    code("""
        report_html = None
        if drift_report:
            report = ctx.drift_report(
                reference, current, name="data-drift", columns=checked,
                categorical=[c for c in checked if c in categorical],
                numerical=[c for c in checked if c not in categorical],
                max_rows=report_max_rows, share_threshold=threshold, tests=tests,
            )
            report_html = report.html_path
            print(drift.describe_report(report, ctx.run_dir))
    """),
    code("""
        ctx.record(
            drift_share=float(result.drift_share),
            weighted_drift_share=result.weighted_share,
            dataset_drift=bool(result.dataset_drift),
            drifted_columns=result.drifted_columns(),
            drivers=drivers,
            importance=importance,
            weighting=settings.weighting,
            batch=ctx.get("score", "batch"),
            columns=result.to_dict()["columns"],
            prediction_drift=prediction.to_dict(),
            report_html=report_html,
            share_threshold=float(threshold),
            champion_version=version,
            reference=reference_tag,
            skipped_columns=skipped,
        )
    """),
]

PERFORMANCE = [
    md("""
        # Performance: how good is the champion on labelled new data?

        When the scored batch carries labels, computes the primary and secondary metrics of the champion's
        predictions and compares them with the champion's holdout metrics at training time (its
        `ct.metric.<name>` tags). A drop here is what the performance trigger reacts to.
        A batch without labels is recorded as such; run the monitor pipeline again when its labels arrive.

        | parameter | meaning |
        |---|---|
        | `min_labelled_rows` | below this many labelled rows no metrics are computed (they would be noise) |

        Records `has_labels`, `labelled_rows`, `metrics`, `champion_metrics`, `delta_primary`
        (current minus champion, raw), `degradation` (the same, oriented so that positive means worse),
        `primary_metric`, `batch`.
    """, note=True),
    parameters("""
        min_labelled_rows = 30  # below this many labelled rows, metrics are not computed
    """),
    context("performance"),
    code("""
        import matplotlib.pyplot as plt
        import pandas as pd
        from IPython.display import display

        from ct_notebooks import contracts, datasets, evaluation

        task = config.model.task
        primary = config.model.primary_metric
        metric_names = list(dict.fromkeys([primary, *config.model.secondary_metrics]))
        batch_name = ctx.get("score", "batch")
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        has_labels = bool(ctx.get("score", "has_labels"))
        predictions = datasets.read_snapshot(ctx.file("score", "predictions_path"))
        labelled = predictions[predictions["label"].notna()] if has_labels else predictions.iloc[0:0]
        measured = has_labels and len(labelled) >= min_labelled_rows
        if not has_labels:
            print(f"batch {batch_name} has no labels yet: performance is measured once its labels arrive")
        elif not measured:
            print(f"batch {batch_name}: only {len(labelled)} labelled row(s), fewer than {min_labelled_rows}")
        else:
            print(f"batch {batch_name}: {len(labelled)} labelled rows of {len(predictions)}")
    """),
    code("""
        # NBVAL_CHECK_OUTPUT
        metrics = champion_metrics = delta_primary = degradation = None
        if measured:
            if task == "classification":
                truth = (labelled["label"].to_numpy() == ctx.get("score", "positive_class")).astype(int)
            else:
                truth = labelled["label"].to_numpy(dtype=float)
            computed = evaluation.compute_metrics(metric_names, truth, labelled["score"].to_numpy())
            metrics = {name: evaluation.json_number(value) for name, value in computed.items()}
            for name, value in metrics.items():
                print(f"{name} on this batch: {'undefined' if value is None else f'{value:.4f}'}")
    """),
    code("""
        if measured:
            info = ctx.registry().version(int(ctx.get("score", "champion_version")))
            champion_metrics = {}
            for name in metric_names:
                tag = info.tags.get(contracts.metric_tag(name))
                value = float(tag) if tag is not None else info.metrics.get(name)
                champion_metrics[name] = evaluation.json_number(value)
            if metrics[primary] is not None and champion_metrics[primary] is not None:
                delta_primary = metrics[primary] - champion_metrics[primary]
                degradation = -delta_primary if evaluation.higher_is_better(primary) else delta_primary
            table = pd.DataFrame({"this batch": metrics, f"champion v{info.version} holdout": champion_metrics})
            display(table)
            if delta_primary is not None:
                word = f"worse by {degradation:.4f}" if degradation > 0 else "better or equal"
                print(f"{primary} {metrics[primary]:.4f} on this batch, {champion_metrics[primary]:.4f} on the "
                      f"champion's holdout: {delta_primary:+.4f} ({word})")
    """),
    code("""
        if measured and any(v is not None for v in champion_metrics.values()):
            ax = table.plot.bar(figsize=(6, 2.8), rot=0)
            ax.set_title(f"Champion on {batch_name} vs its holdout at training time", fontsize=10)
            ax.legend(fontsize=8)
            plt.show()
    """),
    code("""
        ctx.record(
            has_labels=has_labels,
            labelled_rows=len(labelled),
            metrics=metrics,
            champion_metrics=champion_metrics,
            delta_primary=delta_primary,
            degradation=degradation,
            primary_metric=primary,
            batch=batch_name,
        )
    """),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "ingest": INGEST,
    "validate": VALIDATE,
    "train": TRAIN,
    "evaluate": EVALUATE,
    "register": REGISTER,
    "score": SCORE,
    "drift": DRIFT,
    "performance": PERFORMANCE,
}


def build(name: str, cells: list[Cell]) -> str:
    """The notebook JSON text (stable: fixed cell ids, sorted keys)."""
    nb = new_notebook(
        metadata={
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python", "pygments_lexer": "ipython3"},
        }
    )
    for index, (kind, source, tags) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell["id"] = f"{name}-{index:02d}"
        if tags:
            cell["metadata"]["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / f"{name}.ipynb"
        text = build(name, cells)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"templates out of date with {Path(__file__).name}: {', '.join(stale)}; run python templates/_build.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
