"""Training speed of one run alone and of two runs started side by side on the same machine, in one sitting.

    python benchmarks/side_by_side.py                 # default run (pendulum-mixed, 2×256), 3000 steps each

Two policies are compared: ``all cores`` (``hardware.threads`` = every core for each run: the old default) and
``shared`` (automatic threads: runs divide the cores among themselves through ``iql.cpu_share``). Steps/s is the
training rate each run reports in its ``summary.json`` (evaluation excluded). Benchmark one thing at a time: the
machine must be otherwise idle. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(run_dir: Path, steps: int, threads: str) -> subprocess.Popen[bytes]:
    overrides = [f"train.steps={steps}", f"train.eval_every={steps}", "eval.episodes=2", "logger=none"]
    if threads != "auto":
        overrides.append(f"hardware.threads={threads}")
    return subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def rates(root: Path, name: str, runs: int, steps: int, threads: str) -> list[float]:
    """Steps/s of ``runs`` runs started together."""
    dirs = [root / f"{name}-{i}" for i in range(runs)]
    processes = [start(d, steps, threads) for d in dirs]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit(f"a run of {name} failed; see {root}")
    return [round(json.loads((d / "summary.json").read_text())["steps_per_s"], 1) for d in dirs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rates(root, "warm-up", 1, 200, "auto")  # builds the dataset, warms the page cache
        for policy, threads in (("all cores", str(cores)), ("shared", "auto")):
            results[policy] = {
                "alone": rates(root, f"{policy}-alone", 1, args.steps, threads),
                "side by side": rates(root, f"{policy}-pair", 2, args.steps, threads),
            }
    load = os.getloadavg()[0]
    print(f"{cores} cores, {args.steps} steps per run, load average {load:.2f} after")
    print(f"{'threads':<10} {'alone steps/s':>14} {'side by side steps/s':>22} {'each ÷ alone':>13}")
    for policy, row in results.items():
        alone, pair = row["alone"][0], row["side by side"]
        print(f"{policy:<10} {alone:>14.1f} {' / '.join(f'{r:.1f}' for r in pair):>22} {min(pair) / alone:>13.2f}")
    print(json.dumps({"cores": cores, "steps": args.steps, **results}))


if __name__ == "__main__":
    main()
