"""Build and list local Minari datasets.

python -m iql.data list                 # recipes, and the datasets already in $MINARI_DATASETS_PATH
python -m iql.data build pendulum-mixed # build one recipe (no network needed)
python -m iql.data build all
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from iql.data import recipes
from iql.errors import IQLError

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "dataset"  # in a checkout of the project


def dataset_presets() -> dict[str, str]:
    """Minari id → the ``dataset=<preset>`` that selects it, read from ``conf/dataset/*.yaml`` where present."""
    found: dict[str, str] = {}
    for path in sorted(PRESETS.glob("*.yaml")) if PRESETS.is_dir() else []:
        match = re.search(r"^\s+id:\s*(\S+)", path.read_text(), re.MULTILINE)
        if match:
            found.setdefault(match.group(1), path.stem)
    return found


def list_datasets() -> None:
    """Recipes (with their preset and Minari id, and whether built), then every dataset in the local folder."""
    import minari

    presets = dataset_presets()
    print("Recipes (python -m iql.data build <recipe>; built on first use too):")
    rows = [("recipe", "preset (dataset=…)", "Minari id", "state")]
    for recipe in recipes.RECIPES.values():
        state = "built" if recipes.dataset_exists(recipe.dataset_id) else "not built"
        rows.append((recipe.name, presets.get(recipe.dataset_id, "-"), recipe.dataset_id, state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\nDatasets in {recipes.datasets_root()} ($MINARI_DATASETS_PATH):")
    try:
        local = minari.list_local_datasets()
    except Exception as error:  # one broken folder must not hide the others' listing
        print(f"  (could not list: {error})")
        return
    if not local:
        print("  none")
    for dataset_id, metadata in sorted(local.items()):
        steps, episodes = metadata.get("total_steps", "?"), metadata.get("total_episodes", "?")
        preset = presets.get(dataset_id)
        print(
            f"  {dataset_id:<40} {episodes:>6} episodes {steps:>9} steps" + (f"  (dataset={preset})" if preset else "")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iql.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list recipes and local datasets")
    build = commands.add_parser("build", help="build a recipe into $MINARI_DATASETS_PATH")
    build.add_argument("recipe", help=f"one of: {', '.join(recipes.RECIPES)}, or all")
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "list":
        list_datasets()
        return 0
    names = list(recipes.RECIPES) if args.recipe == "all" else [args.recipe]
    for name in names:
        if name not in recipes.RECIPES:
            print(f"error: unknown recipe {name!r}; known: {', '.join(recipes.RECIPES)}", file=sys.stderr)
            return 2
        try:
            path = recipes.build(recipes.RECIPES[name], seed=args.seed)
        except IQLError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{recipes.RECIPES[name].dataset_id}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
