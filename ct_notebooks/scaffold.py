"""Create a project folder: ``ct.yaml``, stage notebooks copied from the templates, the landing zone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from .config import CONFIG_FILE, parse_config
from .datasets import check_time_column
from .errors import ScaffoldError
from .time_formats import TIME_FORMATS

STAGE_NOTEBOOKS = ("ingest", "validate", "train", "evaluate", "register", "score", "drift", "performance")

GITIGNORE = """# ct-notebooks local state (MLflow store, run index, locks)
.ct/
"""

CONFIG_TEMPLATE = """# ct-notebooks project configuration. Every key, its default and meaning: `ctn config-reference`.
name: {name}
data:
  incoming: data/incoming        # new batches (CSV or Parquet) land here
  format: auto                   # auto | csv | parquet
  target: {target}               # column to predict
  time_column: {time_column}     # orders rows in time; the holdout is the latest rows
  time_format: {time_format}     # iso | year | unix_s | unix_ms | a strftime pattern such as '%d/%m/%Y'
  id_column: null
  segment_column: null
model:
  registered_name: {name}
  task: classification           # classification | regression
  estimator: hist_gradient_boosting
  params: {{}}
  primary_metric: roc_auc
  secondary_metrics: [accuracy, f1, log_loss]
  training:                      # honoured by every train run, triggered ones included
    window: null                 # {{days: N}} | {{rows: N}} | {{batches: N}} of the newest data; null: all history
    holdout_fraction: 0.2        # the newest rows, held out for the model gate
    refit: true                  # the registered model is refit on all windowed rows, holdout included
    on_change:                   # runs started by a drift or performance trigger
      recent_share: 1.0          # learn from the rows the champion never saw (1.0: only from them)
gates:
  data:
    max_missing_share: 0.2
    max_duplicate_share: 0.05
    max_drift_share: 0.75
  model:
    min_delta: 0.0               # contender must beat the champion by at least this (signed)
    bootstrap: {{samples: 1000, confidence: 0.95, require_significant: true}}  # interval's low end > min_delta
    max_latency_ms_per_1k_rows: null
    max_size_mb: null
mlflow:
  tracking_uri: null             # default: sqlite:///.ct/mlflow.db inside the project
"""


def templates_dir() -> Path:
    """Folder of the stage notebook templates (inside the wheel, or the source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if (candidate / "ingest.ipynb").is_file():
            return candidate
    raise ScaffoldError(f"stage templates not found next to {here}", path=str(here))


def init_project(
    folder: Path,
    *,
    name: str | None = None,
    target: str = "target",
    time_column: str = "timestamp",
    time_format: str = "iso",
    config: dict[str, object] | None = None,
    force: bool = False,
) -> Path:
    """Scaffold a project in ``folder``; refuses to overwrite an existing ``ct.yaml`` unless ``force``.

    Batches already in the landing zone are checked: a time column that ``time_format`` cannot parse
    is refused before anything is written (the error names the format to declare).
    """
    folder = folder.resolve()
    config_path = folder / CONFIG_FILE
    if config_path.exists() and not force:
        raise ScaffoldError(f"{config_path} already exists (use --force to overwrite)", path=str(config_path))
    project_name = name or folder.name
    if config is None:
        shown_format = time_format if time_format in TIME_FORMATS else json.dumps(time_format)
        text = CONFIG_TEMPLATE.format(name=project_name, target=target, time_column=time_column,
                                      time_format=shown_format)
        parsed = parse_config(yaml.safe_load(text), source=str(config_path))
    else:
        parsed = parse_config(config, source=str(config_path))
        text = yaml.safe_dump(config, sort_keys=False)
    check_time_column(parsed, folder / parsed.data.incoming)
    for sub in ("notebooks", "data/incoming", "runs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    source = templates_dir()
    for stage in STAGE_NOTEBOOKS:
        target_nb = folder / "notebooks" / f"{stage}.ipynb"
        if force or not target_nb.exists():
            shutil.copyfile(source / f"{stage}.ipynb", target_nb)
    config_path.write_text(text, encoding="utf-8")
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE, encoding="utf-8")
    return folder
