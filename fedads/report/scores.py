"""``scores.csv``: one row per held-out aligned user, and the lift recomputed from it.

Columns, in order: the e-commerce key column (``key`` by default), ``label``,
``is_existing_customer``, then one score column per evaluated model named exactly after it
(``federated``, ``ecommerce_only``, ``social_only``, ``centralized``; a model that was not run
has no column). Scores are written with 17 significant digits so they read back bit-exact and
the top-K selection recomputed from the file equals the report's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fedads._validation import check_choice, check_positive_int, fail
from fedads.eval.data import POOLS, RESERVED_COLUMNS, EvalData
from fedads.eval.lift import lift_ratio
from fedads.eval.targeting import targeting_table

FLOAT_FORMAT = "%.17g"
BASE_COLUMNS = ("label", "is_existing_customer")


def check_key_column(where: str, key_column: str, models: tuple[str, ...]) -> str:
    """The key column name must be a non-empty string that clashes with no other column."""
    if not isinstance(key_column, str) or not key_column.strip():
        raise fail(where, f"key_column={key_column!r} is not a column name", "give e.g. 'key'")
    taken = set(BASE_COLUMNS) | set(models) | (RESERVED_COLUMNS - {"key"})
    if key_column in taken:
        raise fail(
            where,
            f"key_column={key_column!r} clashes with another scores.csv column",
            "name the key column differently (e.g. 'key')",
        )
    return key_column


def scores_frame(data: EvalData, key_column: str = "key") -> pd.DataFrame:
    """The ``scores.csv`` table; without keys in ``data`` the key is the row position."""
    check_key_column("scores.csv", key_column, data.models)
    keys = data.keys if data.keys is not None else np.arange(data.n)
    columns = {
        key_column: keys,
        "label": data.label.astype(np.int64),
        "is_existing_customer": data.is_existing_customer.astype(np.int64),
    }
    columns.update(data.scores)
    return pd.DataFrame(columns)


def write_scores_csv(path: str | Path, data: EvalData, key_column: str = "key") -> Path:
    """Write ``scores.csv`` to ``path``; returns the path."""
    path = Path(path)
    scores_frame(data, key_column).to_csv(path, index=False, float_format=FLOAT_FORMAT)
    return path


def read_scores_csv(path: str | Path, *, key_column: str = "key") -> EvalData:
    """Read a ``scores.csv`` back into :class:`EvalData` (every non-base column is a model)."""
    where = f"scores.csv {str(path)!r}"
    path = Path(path)
    if not path.is_file():
        raise fail(where, "file not found", "pass the scores.csv written by write_report")
    frame = pd.read_csv(path, dtype={key_column: str})
    if key_column not in frame.columns:
        raise fail(
            where,
            f"key column {key_column!r} is missing (columns: {list(frame.columns)})",
            "pass key_column= with the name used when the report was written",
        )
    models = [c for c in frame.columns if c not in (key_column, *BASE_COLUMNS)]
    return EvalData.from_frame(
        frame, key_column=key_column, score_prefix="", models=models, where=where
    )


def _report_seed(csv_path: Path) -> int:
    report = csv_path.with_name("report.json")
    if report.is_file():
        with report.open(encoding="utf-8") as handle:
            seed = json.load(handle).get("seed")
        if isinstance(seed, int):
            return seed
    return 0


def recompute_lift_from_scores(
    scores_csv_path: str | Path,
    budget: float,
    pool: str,
    model: str = "federated",
    baseline: str = "ecommerce_only",
    *,
    key_column: str = "key",
    seed: int | None = None,
) -> float:
    """Targeting lift of ``model`` over ``baseline`` recomputed from ``scores.csv`` alone.

    Selects each model's top ``K = round(budget * N)`` users in ``pool`` from the file's scores
    (same tie-breaker as :func:`fedads.eval.evaluate`) and returns
    ``new-customer conversions(model) / new-customer conversions(baseline) - 1`` (NaN with a
    warning if the baseline has none). This is the report's ``lift.<pool>.point`` at that
    budget.

    Args:
        scores_csv_path: a ``scores.csv`` written by :func:`fedads.report.write_report`.
        budget: budget share in (0, 1]; pool: ``all`` or ``prospecting``.
        model, baseline: score columns of the file.
        key_column: name of the key column in the file.
        seed: tie-breaker seed; None = the ``seed`` of ``report.json`` next to the file
            (0 if there is none).
    """
    path = Path(scores_csv_path)
    where = "recompute_lift_from_scores"
    check_choice(where, "pool", pool, POOLS)
    data = read_scores_csv(path, key_column=key_column)
    for name in (model, baseline):
        check_choice(where, "model", name, data.models)
    if seed is None:
        seed = _report_seed(path)
    seed = check_positive_int(where, "seed", seed, minimum=0)
    rows = {
        r.model: r
        for r in targeting_table(
            data, budgets=[budget], pools=[pool], seed=seed, models=[model, baseline]
        )
    }
    return lift_ratio(
        rows[model].new_customer_conversions,
        rows[baseline].new_customer_conversions,
        context=f"{model} vs {baseline} from {path.name}, pool {pool}, budget {budget:g}",
    )
