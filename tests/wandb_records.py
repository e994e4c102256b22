"""Read an offline W&B run back from its ``.wandb`` file, with wandb's own record type and no network.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
each a 7-byte header (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) and a slice of a serialized
``wandb.proto.wandb_internal_pb2.Record``; a block tail shorter than a chunk header is padding.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = struct.Struct("<IHB")


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pending, pos = [], b"", 7
    while pos + _HEADER.size <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER.size:  # padding at the end of a block
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = _HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled rest of a block
            pos += _BLOCK - pos % _BLOCK
            continue
        pending += data[pos + _HEADER.size : pos + _HEADER.size + length]
        pos += _HEADER.size + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(items: Any) -> dict[str, Any]:
    """``{key: value}`` from ConfigItem/HistoryItem/SummaryItem lists (a key is ``key``, or ``nested_key`` joined)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


@dataclass
class OfflineRun:
    """The parts of a W&B run a user sees: run metadata, config, history rows, merged summary, exit code."""

    run: wandb_internal_pb2.RunRecord
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[wandb_internal_pb2.MetricRecord] = field(default_factory=list)
    exit_code: int | None = None


def read_offline_run(run_dir: Path) -> OfflineRun:
    """The single ``offline-run-*/run-*.wandb`` below ``run_dir``/wandb, summary deltas merged in order."""
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, f"expected one offline W&B run in {run_dir}, found {files}"
    result: OfflineRun | None = None
    for record in read_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result = OfflineRun(run=record.run, config=_items(record.run.config.update))
        elif result is None:
            continue
        elif kind == "config":
            result.config.update(_items(record.config.update))
        elif kind == "history":
            result.history.append(_items(record.history.item))
        elif kind == "summary":
            result.summary.update(_items(record.summary.update))
            for item in record.summary.remove:
                result.summary.pop(item.key, None)
        elif kind == "metric":
            result.metrics.append(record.metric)
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
    assert result is not None, f"{files[0]} holds no run record"
    return result
