"""Build and list local Minari datasets.

python -m iql.data list                 # recipes, and the datasets already in $MINARI_DATASETS_PATH
python -m iql.data build pendulum-mixed # build one recipe (no network needed)
python -m iql.data build all
"""

from __future__ import annotations

import argparse
import sys

from iql.data import recipes
from iql.errors import IQLError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iql.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list recipes and local datasets")
    build = commands.add_parser("build", help="build a recipe into $MINARI_DATASETS_PATH")
    build.add_argument("recipe", help=f"one of: {', '.join(recipes.RECIPES)}, or all")
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"datasets folder: {recipes.datasets_root()}")
        for recipe in recipes.RECIPES.values():
            state = "built" if recipes.dataset_exists(recipe.dataset_id) else "not built"
            print(f"  {recipe.name:<26} {recipe.dataset_id:<34} {state:<10} {recipe.description}")
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
