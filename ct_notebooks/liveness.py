"""One rule for whether the process that owns a run still lives: pid + host + process start time."""

from __future__ import annotations

import enum
import os
import platform

import psutil

#: this machine's name, as recorded next to every pid
HOST = platform.node()
#: seconds two readings of one process's start time may differ (psutil derives it from boot time + ticks)
START_TOLERANCE_S = 0.05


class Liveness(enum.StrEnum):
    """What a reader can say about a recorded process."""

    ALIVE = "alive"
    DEAD = "dead"
    #: on another host, or nothing recorded: not judged
    UNKNOWN = "unknown"


def process_start_time(pid: int) -> float | None:
    """The start time of process ``pid`` (seconds since the epoch), or None when there is none."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError, OverflowError):
        return None


def this_process() -> tuple[int, str, float | None]:
    """``(pid, host, start time)`` of the calling process, to record as a run's owner."""
    pid = os.getpid()
    return pid, HOST, process_start_time(pid)


def judge(pid: int | None, host: str | None = None, started: float | None = None) -> Liveness:
    """Whether the process recorded as ``pid`` on ``host``, started at ``started``, still runs.

    A process on another host is not judged (UNKNOWN). A zombie counts as dead, and so does a
    live process whose start time differs from the recorded one: the pid was reused.
    Without a recorded start time, a live pid counts as alive.
    """
    if not pid or pid <= 0:
        return Liveness.UNKNOWN
    if host is not None and host != HOST:
        return Liveness.UNKNOWN
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return Liveness.DEAD
        created = process.create_time()
    except psutil.NoSuchProcess:
        return Liveness.DEAD
    except psutil.AccessDenied:
        return Liveness.ALIVE
    except (psutil.Error, ValueError, OverflowError):
        return Liveness.UNKNOWN
    if started is not None and abs(created - started) > START_TOLERANCE_S:
        return Liveness.DEAD
    return Liveness.ALIVE


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True when ``pid`` (on this host) runs and, if ``started`` is given, is the same process."""
    return judge(pid, HOST, started) == Liveness.ALIVE


#: the reason a run whose process is gone ends with
RUNNER_DIED = "runner process died"
