"""The machine a run uses: its device, its torch threads, and how the host allocator treats tensor memory."""

from __future__ import annotations

import ctypes
import os

import torch

from iql.errors import DeviceError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_KEEP_BYTES = 1 << 30  # heap kept in the process (mmap threshold is capped at 32 MiB on 64-bit glibc)


def resolve_device(requested: str) -> torch.device:
    """auto → cuda when available, else cpu; cuda without CUDA is a ``DeviceError``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"hardware.device={requested} but CUDA is not available here (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda}). Use hardware.device=cpu or auto, or run on a GPU node."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"hardware.device={requested} but only {torch.cuda.device_count()} GPU(s) are visible. "
                "Use hardware.device=cuda:0."
            )
    return device


def shares_cores(requested: int | None) -> bool:
    """Whether this run's threads follow the cores it shares with other runs (``iql.cpu_share``): only when they
    are automatic and no scheduler assigned them (SLURM confines a job to its own cores)."""
    return not requested and not os.environ.get("SLURM_CPUS_PER_TASK")


def thread_count(requested: int | None, jobs_per_node: int = 1) -> int:
    """Torch threads for this job: explicit, else SLURM's CPUs per task, else the cores visible ÷ jobs sharing them."""
    if requested:
        return requested
    slurm_cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm_cpus and slurm_cpus.isdigit():
        return max(1, int(slurm_cpus))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs_per_node)


def keep_freed_memory() -> bool:
    """Make glibc keep freed tensor memory in the process instead of returning it to the OS; True if applied.

    By default glibc serves each allocation above 128 KiB (one 256×512 float tensor is 512 KiB) with a fresh
    ``mmap`` and trims the heap after frees, so every training step page-faults its activations back in: on a
    2-core VM that cost ~3% of an update. With tensors up to 32 MiB kept on the heap and no trimming, steady-state
    steps reuse the same pages. Process-wide and harmless elsewhere; a no-op off glibc (macOS, musl).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
