"""Gradient updates per second of the project's IQL learner against a plain eager reference IQL, in one run.

    python benchmarks/update_speed.py --threads 1                    # CPU: eager and compiled learner vs reference
    python benchmarks/update_speed.py --device cuda --modes eager,compile,cudagraphs

``eager`` is ``IQLLearner.update`` as written; ``compile`` is the same update as one ``torch.compile``d graph
(``hardware.compile=true``, ``iql/compiled.py``), whose compilation happens during the untimed warm-up;
``cudagraphs`` is that graph replayed as a CUDA graph (``hardware.cuda_graphs=true``; on a CPU torch skips the graph,
and the JSON's ``cudagraph_skips`` counts every graph Inductor skipped, with the reason in its warning).

The reference (``iql.reference.ReferenceIQL``) is IQL as common PyTorch ports write it: twin Q as two MLPs with
two target copies, V and π as separate modules with three default Adam optimisers, ``torch.distributions.Normal``
for the policy log-likelihood, Polyak averaging as a Python loop and ``.item()`` on every loss every step. Both
run the same algorithm (official order V → π → Q → Polyak) on the same shapes: Hopper-like obs 11, act 3, 2×256
ReLU MLPs, batch 256 by default.

Timing is done in interleaved blocks (learner mode 1, learner mode 2, ..., reference, then again) so that a
background load that comes and goes hits every contender alike. Reported: the median over blocks of updates per
second of wall-clock time, the median of the per-block ratio to the reference (paired, so it survives load), and
on CPU the same ratio in thread CPU time (immune to being descheduled; memory-bandwidth contention still shows).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch._dynamo.utils import counters

from iql.config import MATMUL_PRECISIONS, AlgorithmConfig, NetworkConfig
from iql.hardware import keep_freed_memory
from iql.learner import Batch, IQLLearner
from iql.reference import ReferenceIQL

MODES = ("eager", "compile", "cudagraphs")  # learner modes; cudagraphs: compiled and replayed as a CUDA graph

OBS_DIM, ACT_DIM, HIDDEN = 11, 3, [256, 256]  # Hopper-like
TOTAL_STEPS = 1_000_000  # the cosine actor schedule's horizon; irrelevant to speed


@dataclass
class Contender:
    """One thing to time: ``run(n)`` does n updates; per-block rates are collected into the lists."""

    name: str
    run: Callable[[int], None]
    warmup_s: float = 0.0
    wall_rates: list[float] = field(default_factory=list)  # updates per wall-clock second, one per block
    cpu_rates: list[float] = field(default_factory=list)  # updates per thread-CPU second, one per block


def make_batches(count: int, batch_size: int, device: torch.device) -> list[Batch]:
    """``count`` random batches of Hopper-like shapes; the contenders cycle through the same ones."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    return [
        Batch(
            obs=rand(batch_size, OBS_DIM),
            actions=(torch.rand(batch_size, ACT_DIM, generator=g) * 2 - 1).to(device),
            rewards=rand(batch_size),
            next_obs=rand(batch_size, OBS_DIM),
            terminals=(torch.rand(batch_size, generator=g) < 0.01).float().to(device),
        )
        for _ in range(count)
    ]


def learner_runner(mode: str, batches: list[Batch], device: torch.device) -> Callable[[int], None]:
    torch.manual_seed(0)
    network = NetworkConfig(hidden_dims=HIDDEN)
    compile, cuda_graphs = mode != "eager", mode == "cudagraphs"
    learner = IQLLearner(
        OBS_DIM, ACT_DIM, AlgorithmConfig(), network, TOTAL_STEPS, device, compile, cuda_graphs=cuda_graphs
    )

    def run(n: int) -> None:
        for i in range(n):
            learner.update(batches[i % len(batches)])

    return run


def reference_runner(batches: list[Batch], device: torch.device) -> Callable[[int], None]:
    torch.manual_seed(0)
    reference = ReferenceIQL(OBS_DIM, ACT_DIM, AlgorithmConfig(), HIDDEN, TOTAL_STEPS, device)

    def run(n: int) -> None:
        for i in range(n):
            b = batches[i % len(batches)]
            reference.update(b.obs, b.actions, b.rewards, b.next_obs, b.terminals)

    return run


def measure(contenders: list[Contender], steps: int, blocks: int, warmup: int, device: torch.device) -> None:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for c in contenders:  # first calls compile (compile mode) and warm allocators and caches
        start = time.perf_counter()
        c.run(warmup)
        sync()
        c.warmup_s = time.perf_counter() - start
    for _ in range(blocks):
        for c in contenders:
            sync()
            wall, cpu = time.perf_counter(), time.thread_time()
            c.run(steps)
            sync()
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            c.wall_rates.append(steps / wall)
            c.cpu_rates.append(steps / max(cpu, 1e-9))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        return f"{names[0]}, {len(names)} cores" if names else platform.processor()
    except OSError:
        return platform.processor()


def paired_ratio(ours: list[float], reference: list[float]) -> float:
    return statistics.median(o / r for o, r in zip(ours, reference, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="updates per timed block")
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per contender, interleaved")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument(
        "--matmul-precision",
        default="highest",
        choices=MATMUL_PRECISIONS,
        help="float32 matmuls for every contender: highest (fp32) | high (TF32 on GPUs, as hardware=cuda) | medium",
    )
    parser.add_argument("--modes", default="eager,compile", help=f"learner modes, comma-separated: {', '.join(MODES)}")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available (torch {torch.__version__})")
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    kept_memory = keep_freed_memory()  # as training runs do (iql/experiment.py); applies to every contender
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"--modes: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

    batches = make_batches(8, args.batch_size, device)
    contenders = [Contender(f"learner/{m}", learner_runner(m, batches, device)) for m in modes]
    reference = Contender("reference", reference_runner(batches, device))
    contenders.append(reference)
    measure(contenders, args.steps, args.blocks, args.warmup, device)

    on_cpu = device.type == "cpu"
    load_after = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {device} ({device_name(device)}), {torch.get_num_threads()} thread(s)")
    print(f"batch {args.batch_size}, {args.blocks} blocks × {args.steps} updates, load {load_before} → {load_after}")
    print(f"host allocator keeps freed memory: {kept_memory}; float32 matmul precision {args.matmul_precision}")
    header = f"{'contender':18s} {'updates/s':>10s} {'× reference':>12s}"
    header += f" {'× ref (CPU time)':>17s}" if on_cpu else ""
    print(header + f" {'warm-up s':>10s}")
    per_mode: dict[str, dict[str, float]] = {}
    for c in contenders:
        rate = statistics.median(c.wall_rates)
        ratio = paired_ratio(c.wall_rates, reference.wall_rates)
        cpu_ratio = paired_ratio(c.cpu_rates, reference.cpu_rates)
        line = f"{c.name:18s} {rate:10.1f} {ratio:12.2f}" + (f" {cpu_ratio:17.2f}" if on_cpu else "")
        print(line + f" {c.warmup_s:10.1f}")
        if c is not reference:
            per_mode[c.name.split("/")[1]] = {
                "updates_per_s": round(rate, 2),
                "ratio": round(ratio, 3),
                **({"ratio_cpu_time": round(cpu_ratio, 3)} if on_cpu else {}),
                "warmup_s": round(c.warmup_s, 2),
            }
    best = max(per_mode, key=lambda m: per_mode[m]["updates_per_s"])
    result = {
        "updates_per_s": per_mode[best]["updates_per_s"],
        "best_mode": best,
        "reference_updates_per_s": round(statistics.median(reference.wall_rates), 2),
        "ratio": per_mode[best]["ratio"],
        "modes": per_mode,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "steps_per_block": args.steps,
        "blocks": args.blocks,
        "load_average": [load_before, load_after],
        "keeps_freed_memory": kept_memory,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
