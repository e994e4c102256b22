"""Atomic checkpoints and exact resume.

``checkpoint.pt`` is written to a temporary file, fsynced and renamed over the old one, which is first kept as
``checkpoint.prev.pt``: a kill at any moment leaves at least one complete checkpoint. Loading falls back to the
previous checkpoint, with a warning, when the latest cannot be read.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iql.errors import CheckpointError

log = logging.getLogger(__name__)

LATEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary sibling of ``path``, fsync it, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def rng_state() -> dict[str, Any]:
    """Every global RNG that training touches (dropout uses torch's)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as the latest checkpoint, keeping the one before as ``checkpoint.prev.pt``."""
    latest, previous = run_dir / LATEST, run_dir / PREVIOUS
    if latest.exists():
        os.replace(latest, previous)
    atomic_write_bytes(latest, lambda handle: torch.save(state, handle))
    return latest


def _read(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "learner" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this toolkit")
    return state


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir``, or None if there is none.

    A corrupt latest checkpoint falls back to the previous one with a warning; if no checkpoint present is
    readable, ``CheckpointError`` says which files and how to start over.
    """
    candidates = [run_dir / LATEST, run_dir / PREVIOUS]
    present = [path for path in candidates if path.exists()]
    errors = []
    for path in present:
        try:
            state = _read(path)
        except Exception as error:  # torch/pickle raise many types on truncated or foreign files
            errors.append(f"{path.name}: {type(error).__name__}: {error}")
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, error)
            continue
        return state
    if present:
        raise CheckpointError(
            f"No readable checkpoint in {run_dir} ({'; '.join(errors)}). Move the checkpoint files away to start "
            "this run from scratch, or launch in a fresh output directory."
        )
    return None
