"""Share a machine's cores among the iql runs on it, re-dividing them as runs start and end.

Two runs that each take every core fight: on 2 cores two default runs side by side each trained at 25.7 steps/s
against 124.8 alone, their OpenMP threads spinning while they wait for each other. Each run with automatic threads
registers here (a lock file it holds for its life, in a per-user folder of the temp dir) and every couple of
seconds sets its torch threads to cores ÷ live runs, so one run alone keeps every core and two split them. Other
busy processes count too: a core that the rest of the machine kept ≥ 30% busy since the last check (``/proc/stat``
less this process's own CPU time) is not this run's to take.

    with CpuShare(cores=2) as share:        # torch threads: 2 alone, 1 each when another run registers
        for step in ...:
            share.maybe_refresh()           # a clock read per step; a directory scan every ``interval_s``
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import secrets
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import torch

log = logging.getLogger(__name__)


BUSY_CORE = 0.3  # a core that other processes keep this busy (fraction of its time) is left to them


def machine_cpu_seconds() -> float | None:
    """CPU time all processes have used since boot, seconds (``/proc/stat``); None where there is no such file."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:8]]  # user nice system idle iowait irq softirq
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_sample() -> tuple[float, float | None, float]:
    """(wall clock, the machine's CPU seconds, this process's CPU seconds) now."""
    times = os.times()
    return time.perf_counter(), machine_cpu_seconds(), times.user + times.system


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"iql-cpu-share-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


class CpuShare:
    """This process's share of ``cores`` among the registered runs of ``folder``; see the module docstring."""

    def __init__(
        self, cores: int, folder: Path | None = None, interval_s: float = 2.0, most: int | None = None
    ) -> None:
        self.cores = max(1, cores)
        self.most = most or self.cores  # never more threads than this (cores ÷ hardware.jobs_per_node)
        self.folder = folder or default_folder()
        self.interval_s = interval_s
        self._lock: IO[bytes] | None = None
        self._path: Path | None = None
        self._next_check = 0.0
        self._last_sample = cpu_sample()

    def __enter__(self) -> CpuShare:
        self._last_sample = cpu_sample()
        time.sleep(0.2)  # a first look at how busy the machine is
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._path = self.folder / f"{os.getpid()}-{secrets.token_hex(3)}.lock"
            self._lock = open(self._path, "wb")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError as error:  # an unwritable temp dir: run with every core, as without sharing
            log.warning("cannot register in %s (%s): torch threads stay at %d", self.folder, error, self.cores)
            self._lock = None
        self.refresh()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def live_runs(self) -> int:
        """Registered runs whose process still holds its lock (this one included); stale files are removed."""
        if self._lock is None:
            return 1
        live = 0
        for path in self.folder.glob("*.lock"):
            try:
                with open(path, "rb") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # we got the lock: its run is gone
            except BlockingIOError:
                live += 1
            except OSError:
                continue  # removed meanwhile
        return max(1, live)

    def cores_busy_elsewhere(self) -> int:
        """Cores that other processes kept busy since the last call (each ≥ ``BUSY_CORE`` of its time counts)."""
        (wall, machine, own), (last_wall, last_machine, last_own) = cpu_sample(), self._last_sample
        self._last_sample = (wall, machine, own)
        if machine is None or last_machine is None or wall - last_wall < 0.05:
            return 0
        elsewhere = max(0.0, (machine - last_machine) - (own - last_own)) / (wall - last_wall)
        return math.floor(elsewhere + 1.0 - BUSY_CORE)

    def threads(self) -> int:
        free = self.cores - self.cores_busy_elsewhere()
        return max(1, min(self.most, self.cores // self.live_runs(), free))

    def refresh(self) -> None:
        """Set torch's threads to this run's share now."""
        self._next_check = time.perf_counter() + self.interval_s
        threads = self.threads()
        if threads != torch.get_num_threads():
            log.info("%d core(s) shared by the iql runs on this machine: %d torch thread(s) here", self.cores, threads)
            torch.set_num_threads(threads)

    def maybe_refresh(self) -> None:
        if time.perf_counter() >= self._next_check:
            self.refresh()
