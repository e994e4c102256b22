"""Runs on one machine divide its cores instead of each taking all of them."""

from __future__ import annotations

from pathlib import Path

import torch

from iql.cpu_share import CpuShare


def test_runs_split_the_cores_and_take_them_back(tmp_path: Path) -> None:
    threads_before = torch.get_num_threads()
    try:
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
    finally:
        torch.set_num_threads(threads_before)
