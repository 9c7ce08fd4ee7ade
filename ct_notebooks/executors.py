"""Executors run one stage notebook each; the local one keeps a warm kernel ready for the next stage."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any, Protocol

import nbformat
import papermill
from jupyter_client import AsyncKernelClient, AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.iorw import LocalHandler, papermill_io

from .archive import atomic_write_bytes
from .errors import DataGateBlocked
from .models import RunStatus, StageError
from .params import install_translator

#: modules every warm kernel imports while it waits for its stage (quietly, outside the notebook's history);
#: the modules the stage notebook itself imports are added to these
DEFAULT_WARM_IMPORTS = ("numpy", "pandas", "ct_notebooks.stage")
ENGINE_NAME = "ct-notebooks"

#: heavy modules that stage helpers import lazily, warmed when a notebook's code uses the helper
IMPLIED_IMPORTS: dict[str, tuple[str, ...]] = {
    ".registry(": ("ct_notebooks.registry", "mlflow.sklearn"),
    "evidently_report(": ("evidently", "evidently.presets"),
}

#: warm-up calls (module, function) made after the imports when a notebook's code uses the helper
IMPLIED_WARM_CALLS: dict[str, tuple[str, str]] = {
    ".registry(": ("ct_notebooks.registry", "warm_up_from_env"),
}

CellCallback = Callable[[int, int], None]
log = logging.getLogger(__name__)


@dataclass
class StageJob:
    """Everything needed to execute one stage notebook."""

    stage: str
    input_notebook: Path
    output_notebook: Path
    parameters: dict[str, Any]
    timeout_s: float
    kernel_name: str = "python3"
    cwd: Path | None = None
    upcoming: tuple[Path, ...] = ()


@dataclass
class StageResult:
    """How the execution of one stage ended, taken from what was raised."""

    status: RunStatus
    error: StageError | None = None
    wall_s: float = 0.0
    cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    """Runs stage jobs; implementations decide where the kernels live."""

    def prepare(self, kernel_name: str, cwd: Path | None, notebook: Path | None = None) -> None:
        """Optionally start resources for an upcoming stage (its notebook, if known) ahead of time."""

    def run_stage(self, job: StageJob, on_cell: CellCallback | None = None) -> StageResult:
        """Execute the stage notebook and report how it ended."""

    def close(self) -> None:
        """Release every resource."""


@functools.lru_cache(maxsize=64)
def _imports_cached(path: str, mtime_ns: int) -> tuple[str, ...]:
    names: list[str] = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # magics and shell escapes
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.append(node.module)
                names.extend(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
        for marker, modules in IMPLIED_IMPORTS.items():
            if marker in cell.source:
                names.extend(modules)
    return tuple(dict.fromkeys(names))


def notebook_imports(notebook: Path) -> tuple[str, ...]:
    """Modules imported at the top level of a notebook's code cells, in order of appearance."""
    try:
        return _imports_cached(str(notebook), notebook.stat().st_mtime_ns)
    except (OSError, ValueError):
        return ()


@functools.lru_cache(maxsize=64)
def _warm_calls_cached(path: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    return tuple(call for marker, call in IMPLIED_WARM_CALLS.items() if marker in source)


def notebook_warm_calls(notebook: Path) -> tuple[tuple[str, str], ...]:
    """Warm-up functions worth calling before a notebook's stage runs."""
    try:
        return _warm_calls_cached(str(notebook), notebook.stat().st_mtime_ns)
    except (OSError, ValueError):
        return ()


def _warm_code(modules: tuple[str, ...], calls: tuple[tuple[str, str], ...] = ()) -> str:
    return (
        "import importlib as _ctn_importlib\n"
        f"for _ctn_name in {list(modules)!r}:\n"
        "    try:\n"
        "        _ctn_importlib.import_module(_ctn_name)\n"
        "    except Exception:\n"
        "        pass\n"
        f"for _ctn_module, _ctn_function in {list(calls)!r}:\n"
        "    try:\n"
        "        getattr(_ctn_importlib.import_module(_ctn_module), _ctn_function)()\n"
        "    except Exception:\n"
        "        pass\n"
        "del _ctn_importlib\n"
    )


class ReadyKernelClient(AsyncKernelClient):
    """A client for an already-running kernel: ready as soon as shell and IOPub both answer.

    jupyter_client's default waits for 0.2 s of IOPub silence on every connection; here the
    idle status of our own kernel_info request proves IOPub is subscribed.
    """

    async def _ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        while True:
            msg_id = self.kernel_info()
            with contextlib.suppress(Empty, TimeoutError):
                reply = await self._async_recv_reply(msg_id, timeout=1)
                with contextlib.suppress(Empty):
                    while True:
                        msg = await self.iopub_channel.get_msg(timeout=0.25)
                        if (
                            msg["parent_header"].get("msg_id") == msg_id
                            and msg["msg_type"] == "status"
                            and msg["content"].get("execution_state") == "idle"
                        ):
                            self._handle_kernel_info_reply(reply)
                            return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError("Kernel didn't respond in time")

    wait_for_ready = _ready


class ThrottledExecutionManager(NotebookExecutionManager):
    """Saves the executing notebook at start, on errors, at the end, and at most every ``save_every_s``.

    Papermill's default writes the whole notebook twice per cell; the partial notebook on disk
    only matters for someone watching a long stage or for a process that dies, which this still covers.
    """

    save_every_s = 2.0
    _last_save = float("-inf")

    def save(self, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._last_save >= self.save_every_s:
            super().save(**kwargs)
            self._last_save = time.monotonic()

    def cell_exception(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        super().cell_exception(cell, cell_index=cell_index, **kwargs)
        self._last_save = float("-inf")

    def notebook_complete(self, **kwargs: Any) -> None:
        self._last_save = float("-inf")
        super().notebook_complete(**kwargs)


class WarmKernelEngine(NBClientEngine):
    """Papermill engine that executes on a kernel started ahead of time and closes its client after."""

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        nb_man = ThrottledExecutionManager(
            nb, output_path=output_path, progress_bar=False, log_output=log_output, autosave_cell_every=0
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)
        client = PapermillNotebookClient(
            nb_man,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logging.getLogger("papermill"),
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            **kwargs,
        )
        try:
            return client.execute()
        finally:
            if client.kc is not None:
                with contextlib.suppress(Exception):
                    client.kc.stop_channels()


class AtomicLocalHandler(LocalHandler):
    """Papermill's local file I/O, except that each write of a notebook replaces the file whole.

    Papermill rewrites the executing notebook as cells finish; a process killed during a plain write
    would leave a truncated notebook in the run's archive. Not synced to disk on every save: the
    replace is what makes it whole.
    """

    def write(self, buf: str, path: str) -> None:
        atomic_write_bytes(Path(path), buf.encode("utf-8"), durable=False)


_ATOMIC_WRITES: list[bool] = []  # not empty once the handler is registered


def install_engine() -> None:
    """Register the warm-kernel engine, atomic notebook writes and the exact parameter translator."""
    install_translator()
    papermill_engines.register(ENGINE_NAME, WarmKernelEngine)
    if not _ATOMIC_WRITES:
        # absolute paths (the executors pass only those) match this scheme before the local fallback
        papermill_io.register(os.sep, AtomicLocalHandler())
        _ATOMIC_WRITES.append(True)


@dataclass
class _WarmKernel:
    km: AsyncKernelManager
    kernel_name: str
    cwd: Path | None
    socket_dir: str


async def _start_kernel_async(
    kernel_name: str,
    cwd: Path | None,
    warm_imports: tuple[str, ...],
    extra_env: dict[str, str],
    warm_calls: tuple[tuple[str, str], ...],
) -> _WarmKernel:
    socket_dir = tempfile.mkdtemp(prefix="ctn-kernel-")
    km = AsyncKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=os.path.join(socket_dir, "k"),
        client_class="ct_notebooks.executors.ReadyKernelClient",
    )
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "CT_NOTEBOOKS_RUNNER": "1", **extra_env}
    env.pop("JPY_PARENT_PID", None)
    await km.start_kernel(cwd=str(cwd) if cwd else None, env=env)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        if warm_imports or warm_calls:
            code = _warm_code(warm_imports, warm_calls)
            reply = await kc.execute_interactive(code, silent=True, store_history=False, timeout=180)
            if reply["content"].get("status") != "ok":
                log.warning("warm-up imports failed: %s", reply["content"].get("evalue"))
    except BaseException:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    kc.stop_channels()
    return _WarmKernel(km=km, kernel_name=kernel_name, cwd=cwd, socket_dir=socket_dir)


def _start_kernel(
    kernel_name: str,
    cwd: Path | None,
    warm_imports: tuple[str, ...],
    extra_env: dict[str, str] | None = None,
    warm_calls: tuple[tuple[str, str], ...] = (),
) -> _WarmKernel:
    return asyncio.run(_start_kernel_async(kernel_name, cwd, warm_imports, extra_env or {}, warm_calls))


def _shutdown(kernel: _WarmKernel) -> None:
    async def stop() -> None:
        with contextlib.suppress(Exception):
            await kernel.km.shutdown_kernel(now=True)

    with contextlib.suppress(Exception):
        asyncio.run(stop())
    shutil.rmtree(kernel.socket_dir, ignore_errors=True)


def _shutdown_in_background(kernel: _WarmKernel) -> threading.Thread:
    thread = threading.Thread(target=_shutdown, args=(kernel,), name="ctn-kernel-stop", daemon=True)
    thread.start()
    return thread


def _kernel_pid(km: AsyncKernelManager) -> int | None:
    provisioner = km.provisioner
    return getattr(provisioner, "pid", None) if provisioner is not None else None


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system + times.children_user + times.children_system)
    except Exception:
        return None


class LocalExecutor:
    """Each stage in its own fresh local kernel; kernels for the next stages start while one runs.

    ``lookahead`` kernels are kept starting or ready ahead of the current stage, each importing what
    its notebook imports and calling the warm-up of the helpers it uses (``env`` reaches the kernels).
    ``threads`` caps BLAS/OpenMP threads in stage kernels (default: one core is left to the kernels
    warming up, since spinning OpenMP threads crawl on a shared core).
    """

    def __init__(
        self,
        *,
        warm_imports: tuple[str, ...] = DEFAULT_WARM_IMPORTS,
        prestart: bool = True,
        lookahead: int = 2,
        threads: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        install_engine()
        self.env = dict(env or {})
        self.warm_imports = warm_imports
        self.prestart = prestart
        self.lookahead = max(1, lookahead)
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 2) - 1)
        self._lock = threading.Lock()
        self._pending: list[tuple[str, Path, threading.Thread, list[Any]]] = []
        self._stopping: list[threading.Thread] = []

    def _imports_for(self, notebook: Path | None) -> tuple[str, ...]:
        extra = notebook_imports(notebook) if notebook is not None else ()
        return tuple(dict.fromkeys((*self.warm_imports, *extra)))

    def _env(self) -> dict[str, str]:
        if "OMP_NUM_THREADS" in os.environ:  # the user decided
            return dict(self.env)
        value = str(self.threads)
        threads = {name: value for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        return {**threads, **self.env}

    def _start(self, kernel_name: str, notebook: Path) -> _WarmKernel:
        return _start_kernel(
            kernel_name, notebook.parent, self._imports_for(notebook), self._env(), notebook_warm_calls(notebook)
        )

    def prepare(self, kernel_name: str, cwd: Path | None, notebook: Path | None = None) -> None:
        """Start (in the background) a kernel for an upcoming stage notebook, unless one is on its way."""
        if not self.prestart or notebook is None:
            return
        with self._lock:
            queued = any(p[0] == kernel_name and p[1] == notebook for p in self._pending)
            if queued or len(self._pending) >= self.lookahead:
                return
            box: list[Any] = []

            def start() -> None:
                try:
                    box.append(self._start(kernel_name, notebook))
                except Exception as exc:
                    box.append(exc)

            thread = threading.Thread(target=start, name="ctn-kernel-start", daemon=True)
            thread.start()
            self._pending.append((kernel_name, notebook, thread, box))

    def _take(self, kernel_name: str, notebook: Path) -> _WarmKernel:
        with self._lock:
            index = next((i for i, p in enumerate(self._pending) if p[0] == kernel_name and p[1] == notebook), None)
            pending = self._pending.pop(index) if index is not None else None
        if pending is not None:
            _, _, thread, box = pending
            thread.join()
            result = box[0] if box else None
            if isinstance(result, _WarmKernel):
                return result
        return self._start(kernel_name, notebook)

    def run_stage(self, job: StageJob, on_cell: CellCallback | None = None) -> StageResult:
        started = time.perf_counter()
        kernel = self._take(job.kernel_name, job.input_notebook)
        # kernels of the next stages start while this one runs
        for upcoming in job.upcoming:
            self.prepare(job.kernel_name, upcoming.parent, upcoming)
        pid = _kernel_pid(kernel.km)
        timed_out = threading.Event()
        current_cell = [-1]
        total_cells = [0]

        def on_timeout() -> None:
            timed_out.set()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        def on_cell_start(cell: Any, cell_index: int) -> None:
            current_cell[0] = cell_index
            if on_cell is not None:
                on_cell(cell_index, total_cells[0])

        watchdog = threading.Timer(job.timeout_s, on_timeout)
        watchdog.daemon = True
        status, error = RunStatus.SUCCEEDED, None
        try:
            source = nbformat.read(str(job.input_notebook), as_version=4)
            total_cells[0] = len(source.cells) + 1  # papermill adds the injected-parameters cell
            watchdog.start()
            papermill.execute_notebook(
                source,
                str(job.output_notebook.absolute()),
                parameters=job.parameters,
                engine_name=ENGINE_NAME,
                kernel_name=job.kernel_name,
                progress_bar=False,
                log_output=False,
                execution_timeout=int(max(1, job.timeout_s)),
                km=kernel.km,
                on_cell_start=on_cell_start,
            )
        except PapermillExecutionError as exc:
            # the kernel reports only the exception's name
            status = RunStatus.BLOCKED if exc.ename == DataGateBlocked.__name__ else RunStatus.FAILED
            error = StageError(exc.ename, str(exc.evalue), exc.cell_index, "\n".join(exc.traceback or []))
        except CellTimeoutError as exc:
            status = RunStatus.TIMED_OUT
            error = StageError("CellTimeoutError", f"stage exceeded {job.timeout_s:g} s: {exc}", current_cell[0])
        except (DeadKernelError, RuntimeError) as exc:
            if timed_out.is_set():
                status = RunStatus.TIMED_OUT
                error = StageError("Timeout", f"stage exceeded {job.timeout_s:g} s", current_cell[0])
            else:
                status = RunStatus.KERNEL_DIED
                error = StageError(type(exc).__name__, str(exc) or "kernel died", current_cell[0])
        finally:
            watchdog.cancel()
            cpu = _cpu_seconds(pid)
            self._stopping.append(_shutdown_in_background(kernel))
        return StageResult(status=status, error=error, wall_s=time.perf_counter() - started, cpu_s=cpu)

    def close(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for _, _, thread, box in pending:
            thread.join()
            if box and isinstance(box[0], _WarmKernel):
                _shutdown(box[0])
        for thread in self._stopping:
            thread.join(timeout=30)
        self._stopping.clear()
