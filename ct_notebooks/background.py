"""Work a run hands to low-priority worker processes: notebook HTML and the reports stages deferred.

Workers import this module only (light), so their start does not compete with the stage kernels.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from .archive import atomic_write_bytes
from .models import StageRecord
from .stage import DEFERRED_SUFFIX, deferred_report_requests


def export_html(notebook: Path, target: Path) -> Path:
    """Render an executed notebook to standalone HTML."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_filename(str(notebook))
    atomic_write_bytes(target, body.encode("utf-8"))
    return target


#: niceness of the worker processes that write HTML and reports: stage kernels come first
BACKGROUND_NICENESS = 10


def _exit_with(owner: int) -> None:
    """End this process as soon as process ``owner`` has ended (a pidfd cannot be fooled by a reused pid)."""
    try:
        handle = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: poll the pid
        while True:
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            threading.Event().wait(1.0)
    select.select([handle], [], [])
    os._exit(1)


def start_worker(owner: int) -> None:
    """Initializer of a pool's worker process: die with ``owner``, then yield the CPU to the stage kernels.

    A pool worker is forked by multiprocessing's fork server and holds the fork server's and the
    resource tracker's pipes: once it is gone, both helpers end by themselves, so a runner killed
    with SIGKILL leaves no process behind.
    """
    threading.Thread(target=_exit_with, args=(owner,), name="ctn-owner-watch", daemon=True).start()
    yield_to_stages()


def yield_to_stages() -> None:
    """Lower this worker process's CPU priority below the stage kernels'.

    Where Linux groups the CPU share by session (``sched_autogroup``), niceness counts only inside a
    session and every kernel has a session of its own: the worker takes its own session too and
    lowers that group's priority.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(BACKGROUND_NICENESS, os.getpriority(os.PRIO_PROCESS, 0)))
    with contextlib.suppress(OSError):
        os.setsid()
        Path("/proc/self/autogroup").write_text(f"{BACKGROUND_NICENESS}\n", encoding="ascii")


def worker_pool() -> ProcessPoolExecutor:
    """One low-priority worker process, forked from a clean server process, that dies with this process."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=start_worker, initargs=(os.getpid(),))


def render_report(request: Path) -> Path:
    """Write a report a stage deferred (Evidently is imported in the worker process, never in the runner)."""
    from .drift import render_deferred_report

    return render_deferred_report(request).html_path


#: seconds the end of a run waits for each notebook's HTML and each deferred report
BACKGROUND_WAIT_S = 600


class BackgroundWork:
    """Work a run hands to worker processes while its later stages run: notebook HTML, deferred reports."""

    def __init__(self, run_dir: Path, html_pool: PoolExecutor | None, report_pool: Callable[[], PoolExecutor]) -> None:
        self.run_dir = run_dir
        self.html_pool = html_pool
        self.report_pool = report_pool
        self.html_jobs: list[tuple[StageRecord, Future[Path]]] = []
        self.report_jobs: list[tuple[StageRecord, Path, Future[Path]]] = []
        self.submitted: set[Path] = set()

    def after_stage(self, stage: StageRecord, notebook: Path) -> None:
        """Render the stage's notebook to HTML and any reports it deferred, in the background."""
        if self.html_pool is not None and notebook.exists():
            try:
                job = self.html_pool.submit(export_html, notebook, notebook.with_suffix(".html"))
            except Exception as exc:  # a broken worker pool: the HTML is missing, the run goes on
                stage.warnings.append(f"HTML {notebook.with_suffix('.html').name} was not written: "
                                      f"{type(exc).__name__}: {exc}")
            else:
                self.html_jobs.append((stage, job))
        for request in deferred_report_requests(self.run_dir):
            if request not in self.submitted:
                self.submitted.add(request)
                self.report_jobs.append((stage, request, self.report_pool().submit(render_report, request)))

    def wait(self) -> None:
        """Wait for everything; a report that could not be written becomes a warning of its stage."""
        for stage, html_job in self.html_jobs:
            try:
                stage.html = html_job.result(timeout=BACKGROUND_WAIT_S).relative_to(self.run_dir).as_posix()
            except Exception as exc:  # the run goes on; the missing HTML is recorded, never silent
                name = Path(stage.executed_notebook or stage.name).with_suffix(".html").name
                stage.warnings.append(f"HTML {name} was not written: {type(exc).__name__}: {exc}")
        for stage, request, report_job in self.report_jobs:
            try:
                report_job.result(timeout=BACKGROUND_WAIT_S)
            except Exception as exc:  # any failure of the worker is reported, none is fatal
                target = request.parent.parent / (request.name.removesuffix(DEFERRED_SUFFIX) + ".html")
                where = target.relative_to(self.run_dir).as_posix()
                stage.warnings.append(f"report {where} was not written: {type(exc).__name__}: {exc}")
