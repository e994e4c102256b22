"""Runs on one machine divide its cores instead of each taking all of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iql import cpu_share
from iql.cpu_share import CpuShare


@pytest.fixture(autouse=True)
def keep_torch_threads() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_runs_split_the_cores_and_take_them_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_share, "machine_cpu_seconds", lambda: None)  # only registered runs count here
    (tmp_path / "123-dead.lock").write_bytes(b"")  # a run that was killed: nobody holds its lock
    with CpuShare(cores=4, folder=tmp_path) as first:
        assert first.threads() == 4 and torch.get_num_threads() == 4
        assert not (tmp_path / "123-dead.lock").exists()
        with CpuShare(cores=4, folder=tmp_path) as second:
            assert first.threads() == second.threads() == 2 and torch.get_num_threads() == 2
            first.refresh()
        first.refresh()
        assert torch.get_num_threads() == 4
        assert CpuShare(cores=4, folder=tmp_path, most=1).threads() == 1  # hardware.jobs_per_node caps it
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("others_cpu_s", "free"), [(0.0, 4), (0.25, 4), (0.35, 3), (2.0, 2), (3.5, 0)])
def test_cores_kept_busy_by_other_processes_are_left_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, others_cpu_s: float, free: int
) -> None:
    """Over one second this process used 1.5 CPU-seconds and every other process together ``others_cpu_s``."""
    share = CpuShare(cores=4, folder=tmp_path)
    share._last_sample = (100.0, 50.0, 10.0)
    monkeypatch.setattr(cpu_share, "cpu_sample", lambda: (101.0, 50.0 + 1.5 + others_cpu_s, 11.5))
    assert share.cores - share.cores_busy_elsewhere() == free
    share._last_sample = (100.0, 50.0, 10.0)
    assert share.threads() == max(1, free)
