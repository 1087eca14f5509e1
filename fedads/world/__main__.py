"""``python -m fedads.world``: generate a synthetic world and write its tables to a folder.

Example (regenerates the shipped sample)::

    python -m fedads.world --users 3000 --seed 0 --out data/sample

Any ``WorldConfig`` field can be set with ``--set name=value`` (repeatable); tuples take
comma-separated values, e.g. ``--set gender_shares=0.5,0.45,0.05``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from fedads._progress import Progress, set_verbosity
from fedads._validation import fail
from fedads.errors import InputError
from fedads.world.config import WorldConfig
from fedads.world.generate import generate_world


def _parse_value(name: str, text: str) -> Any:
    """Convert ``text`` to the type of WorldConfig field ``name`` (str, int, float or tuple)."""
    fields = {f.name: f for f in dataclasses.fields(WorldConfig)}
    if name not in fields:
        # Let WorldConfig.replace produce the "unknown field, did you mean" message.
        return text
    kind = str(fields[name].type)
    where = f"--set {name}"
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind.startswith("tuple[int"):
            return tuple(int(part) for part in text.split(","))
        if kind.startswith("tuple[float"):
            return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise fail(where, f"{text!r} is not a valid {kind}", f"give a {kind} value") from None
    raise fail(where, f"field type {kind} is not settable from the command line", "use Python")


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise fail("--set", f"{item!r} is not name=value", "write e.g. --set overlap_rate=0.5")
        changes[name.strip()] = _parse_value(name.strip(), text.strip())
    return changes


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m fedads.world``."""
    parser = argparse.ArgumentParser(
        prog="python -m fedads.world",
        description="Generate a synthetic social + e-commerce ad world (see docs/world.md).",
    )
    parser.add_argument("--users", type=int, default=WorldConfig.n_users, help="e-commerce users")
    parser.add_argument("--seed", type=int, default=WorldConfig.seed, help="random seed")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument(
        "--format", choices=("csv", "parquet"), default="csv", help="table file format"
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other WorldConfig field; repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    progress = Progress(verbose=not args.quiet)
    try:
        changes = {"n_users": args.users, "seed": args.seed, **_parse_sets(args.sets)}
        world = generate_world(WorldConfig(), progress=progress, **changes)
        paths = world.write(args.out, suffix=f".{args.format}")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        progress(f"wrote {name}: {path}")
    print(json.dumps(world.summary(), indent=2))
    return 0


if __name__ == "__main__":
    # A program configures logging; `fedads world` (fedads.cli) has done so already.
    set_verbosity("warning" if "--quiet" in sys.argv else "info")
    sys.exit(main())
