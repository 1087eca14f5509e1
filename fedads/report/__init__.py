"""Report layer: report.json (the contract other tools read), report.md with a plain-words
verdict, scores.csv and PNG plots, from an :class:`~fedads.eval.Evaluation`.

See docs/evaluation.md for the report contract.
"""

from __future__ import annotations

from fedads.eval.evaluate import Evaluation, evaluate
from fedads.report.markdown import DEFAULT_CLAIM, render_markdown, verdict
from fedads.report.plots import write_plots
from fedads.report.scores import (
    read_scores_csv,
    recompute_lift_from_scores,
    scores_frame,
    write_scores_csv,
)
from fedads.report.writer import ReportPaths, build_report, write_report

__all__ = [
    "DEFAULT_CLAIM",
    "Evaluation",
    "ReportPaths",
    "build_report",
    "evaluate",
    "read_scores_csv",
    "recompute_lift_from_scores",
    "render_markdown",
    "scores_frame",
    "verdict",
    "write_plots",
    "write_report",
    "write_scores_csv",
]
