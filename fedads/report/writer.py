"""``write_report``: report.json (the contract), report.md, scores.csv and PNG plots.

report.json contract (read by other tools; see docs/evaluation.md):

- ``data.social_rows``, ``data.ecommerce_rows``, ``data.aligned``, ``data.test_users``;
- ``budget``: the headline budget share;
- ``models.<m>.auc``, ``models.<m>.logloss`` for every evaluated model among ``federated``,
  ``ecommerce_only``, ``social_only``, ``centralized`` (a model that was not run is omitted);
- ``lift.<pool>.point`` and ``lift.<pool>.ci95`` (two numbers) for ``all`` and ``prospecting``
  at the headline budget (federated over ecommerce_only, observed new-customer conversions);
- on synthetic worlds (true p0/p1 known) ``lift.<pool>.expected.{point, ci95}``: the same lift
  on expected counts (sum of p1 over the selected new customers);
- ``lift_by_baseline.<baseline>.<pool>.{point, ci95}`` for every evaluated baseline (and
  ``strongest_ecommerce``, the validation-picked e-commerce practitioner model, when known);
- ``privacy`` (when given): ``privacy.label_leakage.<attack>.auc`` (leak AUC over the last
  epoch's gradients as the social party received them) and ``.per_epoch``, the same for the relay
  under ``privacy.relay_label_leakage``, ``privacy.worst_leak_auc``, ``privacy.defense``
  (``name``, ``strength``, ``epsilon`` or null, ``undefended``) and ``privacy.feature_inference``
  (see docs/privacy.md);
- ``warnings``: one-line warnings about the result (e.g. a small held-out set), also listed in
  ``report.md``; empty when there is nothing to warn about;
- richer detail in other keys. Strict JSON: NaN and inf are written as null.

Atomic output: the report is written into a temporary sibling folder and renamed into place at
the end, so ``out_dir`` holds a complete report or nothing new (a previous report in it is
replaced as a whole). A non-empty ``out_dir`` that is not a previous fedads report is refused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedads._validation import check_in_range, check_positive_int, fail
from fedads.eval._json import to_jsonable
from fedads.eval.data import POOLS
from fedads.eval.evaluate import Evaluation
from fedads.eval.lift import LiftResult
from fedads.report.markdown import DEFAULT_CLAIM, render_markdown, verdict
from fedads.report.plots import write_plots
from fedads.report.scores import check_key_column, write_scores_csv

SCHEMA_VERSION = 1
REQUIRED_DATA_KEYS = ("social_rows", "ecommerce_rows", "aligned")
REPORT_FILES = ("report.json", "report.md", "scores.csv")
"""Files every report folder has (plots are ``*.png`` beside them)."""
MIN_HELD_OUT_USERS = 200
"""Fewer held-out users than this get a warning in the report."""
MIN_NEW_CUSTOMER_CONVERSIONS = 10
"""Fewer new-customer conversions among held-out users than this get a warning."""


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`.

    Attributes:
        out_dir: the output directory; json, markdown, scores: ``report.json``, ``report.md``,
            ``scores.csv``; plots: plot name -> PNG path (empty when plots are off).
    """

    out_dir: Path
    json: Path
    markdown: Path
    scores: Path
    plots: dict[str, Path] = field(default_factory=dict)

    def all(self) -> list[Path]:
        """Every written file."""
        return [self.json, self.markdown, self.scores, *self.plots.values()]


def _check_data_summary(
    where: str, data_summary: Mapping[str, Any], evaluation: Evaluation
) -> dict[str, Any]:
    if not isinstance(data_summary, Mapping):
        raise fail(
            where,
            f"data_summary is a {type(data_summary).__name__}",
            "pass a dict with social_rows, ecommerce_rows, aligned (and optionally test_users)",
        )
    hints = {
        "social_rows": "rows of the social party table",
        "ecommerce_rows": "rows of the e-commerce party table",
        "aligned": "users in the PSI intersection",
    }
    for key in REQUIRED_DATA_KEYS:
        if key not in data_summary:
            raise fail(where, f"data_summary has no {key!r}", f"pass {key} = {hints[key]}")
    section = dict(data_summary)
    for key in (*REQUIRED_DATA_KEYS, "test_users"):
        if key in section:
            section[key] = check_positive_int(
                f"{where}: data_summary", key, section[key], minimum=0
            )
    n = evaluation.data.n
    if section.setdefault("test_users", n) != n:
        raise fail(
            where,
            f"data_summary test_users={section['test_users']} but the evaluation has {n} users",
            "pass the number of held-out aligned users that were evaluated (or omit it)",
        )
    if section["aligned"] > min(section["social_rows"], section["ecommerce_rows"]):
        raise fail(
            where,
            f"data_summary aligned={section['aligned']} exceeds a party's row count "
            f"(social {section['social_rows']}, e-commerce {section['ecommerce_rows']})",
            "check the order of the numbers",
        )
    if n > section["aligned"]:
        raise fail(
            where,
            f"the evaluation has {n} held-out users but only {section['aligned']} are aligned",
            "evaluate held-out users drawn from the aligned users",
        )
    for key, value in evaluation.data.summary().items():
        section.setdefault(key, value)
    return section


def _lift_entry(row: LiftResult | None, evaluation: Evaluation, kind: str) -> dict[str, Any]:
    base = {
        "model": evaluation.model,
        "baseline": evaluation.baseline,
        "kind": kind,
        "budget": evaluation.headline_budget,
        "k": evaluation.headline_k,
    }
    if row is None:
        return {
            **base,
            "point": None,
            "ci95": [None, None],
            "share_positive": None,
            "reason": f"{evaluation.model} or {evaluation.baseline} was not evaluated",
        }
    return {
        **base,
        "point": row.point,
        "ci95": [row.ci_low, row.ci_high],
        "share_positive": row.share_positive,
        "model_new_customer_conversions": row.model_count,
        "baseline_new_customer_conversions": row.baseline_count,
        "n_bootstrap": row.n_bootstrap,
        "n_valid": row.n_valid,
        "reason": None if math.isfinite(row.point) else "baseline count is 0 (or negative)",
    }


def _interval_entry(row: LiftResult | None) -> dict[str, Any] | None:
    """``{point, ci95, model_count, baseline_count, share_positive}`` of one lift row."""
    if row is None:
        return None
    return {
        "point": row.point,
        "ci95": [row.ci_low, row.ci_high],
        "model_count": row.model_count,
        "baseline_count": row.baseline_count,
        "share_positive": row.share_positive,
    }


def _add_expected_lift(lift: dict[str, dict[str, Any]], evaluation: Evaluation) -> None:
    """``lift.<pool>.expected`` (and ``expected_incremental``) on synthetic worlds.

    Expected counts (sum of the true p1, or p1 - p0, over the selected new customers) remove
    the conversion noise of one campaign; the realized ``point``/``ci95`` stay the one-campaign
    view. Nothing is added without true probabilities.
    """
    if not evaluation.data.has_true_probabilities:
        return
    for pool, entry in lift.items():
        for kind in ("expected", "expected_incremental"):
            entry[kind] = _interval_entry(evaluation.lift(pool, kind=kind))


def lift_by_baseline(evaluation: Evaluation) -> dict[str, dict[str, dict[str, Any]]]:
    """``{baseline: {pool: {point, ci95, ..., incremental?, expected?}}}`` at the headline budget.

    Every evaluated baseline (matched references and practitioner models); the validation-picked
    strongest e-commerce model is repeated as ``strongest_ecommerce`` with its ``name``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    baselines = dict.fromkeys(row.baseline for row in evaluation.lifts)
    for baseline in baselines:
        out[baseline] = {}
        for pool in POOLS:
            entry = _interval_entry(evaluation.lift(pool, baseline=baseline))
            if entry is None:
                continue
            for kind in ("incremental", "expected", "expected_incremental"):
                row = evaluation.lift(pool, baseline=baseline, kind=kind)
                if row is not None:
                    entry[kind] = _interval_entry(row)
            out[baseline][pool] = entry
    strongest = evaluation.strongest_baseline
    if strongest is not None and strongest in out:
        out["strongest_ecommerce"] = {
            pool: {**entry, "name": strongest} for pool, entry in out[strongest].items()
        }
    return out


def build_report(
    evaluation: Evaluation,
    data_section: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    claim: tuple[float, float] = DEFAULT_CLAIM,
    files: Mapping[str, Any] | None = None,
    key_column: str = "key",
    privacy: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    campaign: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``report.json`` document (strict-JSON-ready: NaN -> None)."""
    evaluation_dict = evaluation.to_dict()
    models = {}
    for model, segments in evaluation.metrics.items():
        overall = segments["overall"]
        models[model] = {
            "auc": overall.auc,
            "logloss": overall.logloss,
            "ece": overall.ece,
            "pred_over_obs": overall.pred_over_obs,
            "n": overall.n,
            "positives": overall.positives,
            "segments": {s: m.to_dict() for s, m in segments.items() if s != "overall"},
            "notes": list(overall.notes),
        }
    lift = {pool: _lift_entry(evaluation.lift(pool), evaluation, "targeting") for pool in POOLS}
    incremental = None
    if evaluation.data.has_potential_outcomes:
        incremental = {
            pool: _lift_entry(evaluation.lift(pool, kind="incremental"), evaluation, "incremental")
            for pool in POOLS
        }
    _add_expected_lift(lift, evaluation)
    document = {
        "schema_version": SCHEMA_VERSION,
        "data": dict(data_section),
        "budget": evaluation.headline_budget,
        "budget_users": evaluation.headline_k,
        "budgets": list(evaluation.budgets),
        "pools": list(POOLS),
        "seed": evaluation.seed,
        "n_bootstrap": evaluation.n_bootstrap,
        "key_column": key_column,
        "key_source": "keys" if evaluation.data.keys is not None else "row_position",
        "models": models,
        "lift": lift,
        "lift_incremental": incremental,
        "lift_by_baseline": lift_by_baseline(evaluation),
        "strongest_ecommerce": evaluation.strongest_baseline,
        "lift_detail": evaluation_dict["lifts"],
        "targeting": evaluation_dict["targeting"],
        "metrics": evaluation_dict["metrics"],
        "curves": evaluation_dict["curves"],
        "gains": evaluation_dict["gains"],
        "claim": {"low": claim[0], "high": claim[1]},
        "verdict": verdict(evaluation, claim),
        "settings": evaluation_dict["settings"],
        "notes": evaluation_dict["notes"],
        "seconds": evaluation_dict["seconds"],
        "files": dict(files or {}),
        "warnings": [str(w) for w in warnings],
        "extra": dict(extra or {}),
    }
    if privacy is not None:
        document["privacy"] = dict(privacy)
    if campaign is not None:
        document["campaign"] = dict(campaign)
    return to_jsonable(document)


def _check_claim(where: str, claim: tuple[float, float]) -> tuple[float, float]:
    if not isinstance(claim, tuple | list) or len(claim) != 2:
        raise fail(where, f"claim={claim!r} is not a pair", "give (low, high), e.g. (0.15, 0.25)")
    low = check_in_range(where, "claim low", claim[0], -1.0, math.inf)
    high = check_in_range(where, "claim high", claim[1], low, math.inf)
    return (low, high)


def write_report(
    out_dir: str | Path,
    evaluation: Evaluation,
    data_summary: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    key_column: str = "key",
    claim: tuple[float, float] = DEFAULT_CLAIM,
    plots: bool = True,
    privacy: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    campaign: Mapping[str, Any] | None = None,
    uplift: Any = None,
) -> ReportPaths:
    """Write ``report.json``, ``report.md``, ``scores.csv`` and PNG plots into ``out_dir``.

    Args:
        out_dir: created if missing. The report is written into a temporary sibling folder
            and renamed to ``out_dir`` at the end: ``out_dir`` holds a complete report or is
            left as it was. An existing ``out_dir`` must be empty or a previous fedads report
            (only report.json, report.md, scores.csv, ``*.png``), which is replaced as a whole;
            any other non-empty folder is refused (InputError), so no file of yours is deleted.
        evaluation: the result of :func:`fedads.eval.evaluate`.
        data_summary: ``social_rows``, ``ecommerce_rows``, ``aligned`` (required, counts of
            rows) and optionally ``test_users`` (must equal the evaluated users); other keys are
            copied into ``report.json``'s ``data`` section.
        extra: any JSON-compatible details (config, timings) stored under ``extra``.
        key_column: name of the e-commerce key column in ``scores.csv``.
        claim: the claimed lift range the verdict compares with.
        plots: write the PNG plots.
        privacy: the ``privacy`` block (:func:`fedads.privacy.leakage.privacy_report`), shown
            in ``report.md`` beside the lift.
        warnings: extra one-line warnings for ``report.json``'s ``warnings`` and ``report.md``
            (small held-out sets are added automatically, :func:`held_out_warnings`).
        campaign: the ``campaign`` block (:func:`fedads.eval.campaign.campaign_block`), when
            the whole campaign was evaluated.
        uplift: a :class:`fedads.eval.uplift.UpliftEvaluation` (randomized campaigns): adds
            ``report.json``'s ``uplift`` (``uplift.<model>.qini_auc`` ...), a ``## Uplift``
            section and ``qini_<pool>.png``.

    Returns:
        :class:`ReportPaths` (paths inside ``out_dir``).

    Raises:
        InputError: bad arguments, or an ``out_dir`` that cannot be created or is refused.
        OSError: writing failed midway (disk full, ...); nothing is left behind.
    """
    where = "write_report"
    if not isinstance(evaluation, Evaluation):
        raise fail(
            where, f"evaluation is a {type(evaluation).__name__}", "pass the result of evaluate()"
        )
    data_section = _check_data_summary(where, data_summary, evaluation)
    check_key_column(where, key_column, evaluation.models)
    claim = _check_claim(where, claim)
    if extra is not None and not isinstance(extra, Mapping):
        raise fail(where, f"extra is a {type(extra).__name__}", "pass a dict or None")
    try:
        extra_json = to_jsonable(dict(extra or {}))
        data_json = to_jsonable(data_section)
    except TypeError as exc:
        raise fail(
            where,
            f"extra or data_summary is not JSON-compatible ({exc})",
            "pass numbers, strings, lists and dicts only",
        ) from None
    report_warnings = [*held_out_warnings(evaluation), *(str(w) for w in warnings)]
    out = Path(out_dir)
    check_out_dir(where, out)
    target = Path(os.path.abspath(out))  # "." or "a/.." have no usable name or parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a report folder is not secret
    except OSError as exc:
        raise fail(
            where, f"cannot create {str(out)!r} ({exc.strerror or exc})", "pass a writable folder"
        ) from None
    try:
        written = _write_files(
            staging,
            evaluation,
            data_json,
            extra_json,
            claim=claim,
            key_column=key_column,
            plots=plots,
            privacy=privacy,
            warnings=report_warnings,
            campaign=campaign,
            uplift=uplift,
        )
        _swap_into_place(staging, target)
    except BaseException:
        # Nothing partial is left: the staging folder goes, a previous report stays as it was.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ReportPaths(
        out_dir=out,
        json=out / written.json.name,
        markdown=out / written.markdown.name,
        scores=out / written.scores.name,
        plots={name: out / path.name for name, path in written.plots.items()},
    )


def campaign_markdown(block: Mapping[str, Any]) -> str:
    """The ``## Campaign view`` section of ``report.md`` from the ``campaign`` block."""

    def fmt(entry: Mapping[str, Any] | None) -> str:
        if not entry or entry.get("point") is None:
            return "n/a"
        low, high = entry["ci95"]
        interval = "" if low is None or high is None else f" [{low:+.1%}, {high:+.1%}]"
        return f"{entry['point']:+.1%}{interval}"

    lines = [
        "## Campaign view",
        "",
        f"{block['test_users']} held-out e-commerce users ({block['aligned_test_users']} "
        f"aligned, scored by the joint model; {block['unaligned_test_users']} not on the social "
        "platform, scored by the local serving model), one budget of "
        f"{block['budget_users']} users ({block['budget']:.0%}); baseline {block['baseline']} "
        f"trained on the {block['train_users']} other e-commerce users.",
        "",
        "| pool | campaign lift (95% CI) | expected lift (95% CI) |",
        "|---|---|---|",
    ]
    for pool, entry in block["lift"].items():
        lines.append(f"| {pool} | {fmt(entry)} | {fmt(entry.get('expected'))} |")
    serving = block.get("serving") or {}
    if serving.get("fallback_users"):
        lines += [
            "",
            f"**Served without the social party:** it failed while the held-out users were "
            f"scored, so the local serving model scored {serving['fallback_users']} aligned "
            "users in place of the joint model (here and in the aligned view's `federated` "
            "column; `report.json` `campaign.serving.fallback_keys` lists them).",
        ]
    kept = block.get("local_serving_kept_share")
    if kept and kept.get("auc") is not None:
        lines += [
            "",
            f"The local serving model keeps {kept['auc']:.0%} of the federated AUC gain over "
            f"{kept['reference']} on held-out aligned users.",
        ]
    return "\n".join(lines)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def held_out_warnings(evaluation: Evaluation) -> list[str]:
    """Warnings about a held-out set too small for stable numbers (see the MIN_* constants)."""
    data = evaluation.data
    out = []
    if data.n < MIN_HELD_OUT_USERS:
        out.append(
            f"only {data.n} held-out users (fewer than {MIN_HELD_OUT_USERS}): metrics and lift "
            "are very noisy; use more aligned users or a larger test_share"
        )
    label = np.asarray(data.label)
    existing = np.asarray(data.is_existing_customer)
    conversions = int(((label == 1) & (existing == 0)).sum())
    if conversions < MIN_NEW_CUSTOMER_CONVERSIONS:
        out.append(
            f"only {conversions} new-customer conversions among held-out users (fewer than "
            f"{MIN_NEW_CUSTOMER_CONVERSIONS}): the new-customer lift is not meaningful"
        )
    return out


def is_report_dir(path: Path) -> bool:
    """Whether ``path`` holds only a previous fedads report (report files and ``*.png``)."""
    entries = list(path.iterdir())
    if not (path / "report.json").is_file():
        return False
    return all(
        entry.is_file() and (entry.name in REPORT_FILES or entry.suffix == ".png")
        for entry in entries
    )


def check_out_dir(where: str, out: str | Path) -> None:
    """Refuse (InputError) an ``out`` that cannot be created, is a file, or is a non-empty
    folder that is not a fedads report (replacing it would delete the user's other files).

    Cheap; :meth:`fedads.experiment.Experiment.run` calls it before training."""
    out = Path(out)
    target = Path(os.path.abspath(out))
    cwd = Path(os.path.abspath(os.getcwd()))
    if target == cwd or target in cwd.parents or target == target.parent:
        raise fail(
            where,
            f"{str(out)!r} is the current folder (or contains it) and cannot be replaced",
            "pass a new folder for the report, e.g. --out fedads-out",
        )
    if not out.exists():
        ancestor = out.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise fail(
                where,
                f"cannot create {str(out)!r}: {str(ancestor)!r} is not a writable folder",
                "pass a folder path you can write to",
            )
        return
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise fail(
            where,
            f"cannot replace {str(out)!r}: its parent folder is not writable",
            "pass a folder path you can write to",
        )
    if not out.is_dir():
        raise fail(where, f"{str(out)!r} exists and is not a folder", "pass a folder path")
    try:
        empty = not any(out.iterdir())
        if empty or is_report_dir(out):
            return
    except OSError as exc:
        raise fail(
            where, f"cannot read {str(out)!r} ({exc.strerror or exc})", "pass a readable folder"
        ) from None
    raise fail(
        where,
        f"{str(out)!r} is not empty and is not a previous fedads report",
        "pass a new or empty folder (a previous report folder is replaced as a whole)",
    )


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the complete ``staging`` folder to ``out``; a previous report is moved aside first
    and deleted only once the new one is in place (restored if the rename fails)."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()  # a unique free name to move the previous report to
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_files(
    out: Path,
    evaluation: Evaluation,
    data_json: dict[str, Any],
    extra_json: dict[str, Any],
    *,
    claim: tuple[float, float],
    key_column: str,
    plots: bool,
    privacy: Mapping[str, Any] | None,
    warnings: list[str],
    campaign: Mapping[str, Any] | None = None,
    uplift: Any = None,
) -> ReportPaths:
    """Every report file into the (new, empty) folder ``out``."""
    scores_path = write_scores_csv(out / "scores.csv", evaluation.data, key_column)
    plot_paths = write_plots(evaluation, out) if plots else {}
    if uplift is not None and plots:
        from fedads.report.uplift import plot_qini

        plot_paths.update(plot_qini(uplift, out))
    files = {"scores": scores_path.name, "markdown": "report.md"}
    files["plots"] = {name: path.name for name, path in plot_paths.items()}

    document = build_report(
        evaluation,
        data_json,
        extra=extra_json,
        claim=claim,
        files=files,
        key_column=key_column,
        privacy=privacy,
        warnings=warnings,
        campaign=campaign,
    )
    if uplift is not None:
        document["uplift"] = uplift.report_block()
        if uplift.notes:
            document.setdefault("warnings", []).extend(uplift.notes)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    markdown = render_markdown(
        evaluation,
        data_json,
        claim=claim,
        plots={name: path.name for name, path in plot_paths.items()},
        key_column=key_column,
        privacy=document.get("privacy"),
    )
    if campaign is not None:
        markdown = f"{markdown.rstrip()}\n\n{campaign_markdown(document['campaign'])}\n"
    if uplift is not None:
        from fedads.report.uplift import uplift_markdown

        names = {name: path.name for name, path in plot_paths.items()}
        markdown = f"{markdown.rstrip()}\n\n{uplift_markdown(uplift, names)}\n"
    if warnings:
        lines = "\n".join(f"- {w}" for w in warnings)
        markdown = f"{markdown.rstrip()}\n\n## Warnings\n\n{lines}\n"
    markdown_path = out / "report.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    return ReportPaths(
        out_dir=out, json=json_path, markdown=markdown_path, scores=scores_path, plots=plot_paths
    )
