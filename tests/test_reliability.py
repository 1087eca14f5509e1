"""Reliability (#17): atomic report folders, early validation, small-held-out warnings."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from _evaldata import synthetic_eval_data

from fedads.errors import InputError
from fedads.eval import evaluate
from fedads.report import write_report
from fedads.report import writer as writer_module

SUMMARY = {"social_rows": 9_000, "ecommerce_rows": 6_000, "aligned": 4_000}


@pytest.fixture(scope="module")
def evaluation():  # noqa: ANN201
    data = synthetic_eval_data(1_000, 3, keys=True)
    return evaluate(data, n_bootstrap=50, seed=1)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_report_replaces_a_previous_report_as_a_whole(evaluation, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(out, evaluation, SUMMARY, plots=False)
    (out / "stale.png").write_bytes(b"old plot")  # a file the new report does not write
    paths = write_report(out, evaluation, {**SUMMARY, "aligned": 3_999}, plots=False)
    assert paths.json == out / "report.json" and paths.json.is_file()
    assert json.loads(paths.json.read_text())["data"]["aligned"] == 3_999
    assert not (out / "stale.png").exists()  # replaced as a whole, no old/new mix
    assert _leftovers(tmp_path) == []


def test_failure_midway_leaves_the_previous_report_untouched(
    evaluation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    write_report(out, evaluation, SUMMARY, plots=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "render_markdown", disk_full)
    with pytest.raises(OSError) as caught:
        write_report(out, evaluation, {**SUMMARY, "aligned": 3_000}, plots=False)
    assert caught.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []  # no staging folder left behind


def test_failure_on_a_new_folder_leaves_nothing(
    evaluation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "write_scores_csv", disk_full)
    with pytest.raises(OSError):
        write_report(tmp_path / "new", evaluation, SUMMARY, plots=False)
    assert list(tmp_path.iterdir()) == []


def test_non_report_folder_is_refused_and_kept(evaluation, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a previous fedads report.*new or empty folder"):
        write_report(tmp_path, evaluation, SUMMARY, plots=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_empty_folder_and_file_path(evaluation, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(empty, evaluation, SUMMARY, plots=False).json.is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_report(afile, evaluation, SUMMARY, plots=False)


def test_small_held_out_set_is_warned_in_json_and_markdown(tmp_path: Path) -> None:
    small = evaluate(synthetic_eval_data(150, 2, keys=True), n_bootstrap=20, seed=0)
    paths = write_report(tmp_path / "r", small, SUMMARY, plots=False)
    doc = json.loads(paths.json.read_text())
    assert any("150 held-out users" in w for w in doc["warnings"]), doc["warnings"]
    assert "## Warnings" in paths.markdown.read_text()


def test_large_held_out_set_has_no_warning(evaluation, tmp_path: Path) -> None:
    paths = write_report(tmp_path / "r", evaluation, SUMMARY, plots=False)
    doc = json.loads(paths.json.read_text())
    assert doc["warnings"] == [] and "## Warnings" not in paths.markdown.read_text()


# -- checks before training (Experiment.run calls check_before_training first) ---------------


def _tables(n: int, n_common: int, labels: list[int] | None = None):  # noqa: ANN202
    import numpy as np
    import pandas as pd

    from fedads.tables import load_party_table

    rng = np.random.default_rng(0)
    keys = [f"u{i:05d}" for i in range(n)]
    label = labels if labels is not None else list((np.arange(n) % 5 == 0).astype(int))
    ecommerce = pd.DataFrame(
        {
            "key": keys,
            "x": rng.normal(size=n),
            "label": label,
            "is_existing_customer": np.arange(n) % 2,
        }
    )
    social = pd.DataFrame({"key": keys[:n_common] + [f"s{i}" for i in range(5)], "y": 1.0})
    social["y"] = rng.normal(size=len(social))
    return (
        load_party_table(social, party="social", key="key"),
        load_party_table(
            ecommerce, party="ecommerce", key="key", label="label", existing="is_existing_customer"
        ),
    )


def test_check_before_training_passes_and_returns_the_aligned_count() -> None:
    from fedads.experiment import check_before_training
    from fedads.federation import FederationSettings

    social, ecommerce = _tables(600, 500)
    assert check_before_training(social, ecommerce, FederationSettings(), 0.1) == 500


@pytest.mark.parametrize(
    "n_common, budget, message",
    [
        (0, 0.1, "no users in common.*--key-lower"),
        (1, 0.1, "only 1 aligned user"),
        (10, 0.1, "10 aligned users give 3 held-out users.*selects no one"),
        (10, 0.5, None),  # a larger budget selects someone
    ],
)
def test_too_few_aligned_users_for_the_split_and_budget(
    n_common: int, budget: float, message: str | None
) -> None:
    from fedads.experiment import check_before_training
    from fedads.federation import FederationSettings

    social, ecommerce = _tables(600, n_common, labels=[i % 2 for i in range(600)])
    if message is None:
        assert check_before_training(social, ecommerce, FederationSettings(), budget) == n_common
        return
    with pytest.raises(InputError, match=message):
        check_before_training(social, ecommerce, FederationSettings(), budget)


def test_budget_hint_is_enough_users() -> None:
    """The 'bring at least N users' hint is a count that passes."""
    import re

    from fedads.federation import check_aligned_users

    with pytest.raises(InputError) as caught:
        check_aligned_users("t", 10, 0.3, 0.01)
    needed = int(re.search(r"at least (\d+) users", str(caught.value)).group(1))
    assert check_aligned_users("t", needed, 0.3, 0.01)[1] >= 50


def test_one_class_among_aligned_training_users_is_refused() -> None:
    """The table has both classes, but every positive is outside the aligned set."""
    from fedads.experiment import check_before_training
    from fedads.federation import FederationSettings

    labels = [0] * 500 + [1] * 100  # the first 500 keys are the aligned ones
    social, ecommerce = _tables(600, 500, labels=labels)
    with pytest.raises(InputError, match="no positive.*aligned training users"):
        check_before_training(social, ecommerce, FederationSettings(), 0.1)
    social, ecommerce = _tables(600, 500, labels=[1] * 600)
    with pytest.raises(InputError, match="no negative.*e-commerce table"):
        check_before_training(social, ecommerce, FederationSettings(), 0.1)


def test_current_folder_is_refused(
    evaluation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="current folder"):
        write_report(".", evaluation, SUMMARY, plots=False)
    paths = write_report("r", evaluation, SUMMARY, plots=False)  # relative paths work
    assert paths.json == Path("r") / "report.json" and paths.json.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# -- a real interrupt of a real run (in-process backend, a subprocess) ------------------------


@pytest.mark.slow  # ~25 s each on 2 busy cores (torch and Flower imports dominate)
@pytest.mark.parametrize(
    "signum, code, stage, backend",
    [
        ("SIGINT", 130, "epoch 1/", "inprocess"),
        ("SIGTERM", 143, "aligning users", "inprocess"),
        # Flower simulation (Ray, 2 actors and the ServerApp thread must all end too): the same
        # checks, then `--resume`, in tests/test_resume.py (one interrupted Flower run for both)
    ],
)
def test_signal_during_a_run_exits_fast_with_no_report(
    signum: str, code: int, stage: str, backend: str, tmp_path: Path
) -> None:
    """Fault injection: the signal arrives during PSI or training; the run ends within seconds
    with 130 / 143 and one line, neither the report folder nor a staging folder exists, and no
    process the run started is left running (the simulation backend's case, Ray's processes
    included, is tests/test_resume.py's interrupted run)."""
    from _interrupt import interrupt_at, sample_run_argv

    argv = sample_run_argv(
        tmp_path / "out", "--backend", backend, "--epochs", "100", "--defense", "none"
    )
    returncode, tail, rest = interrupt_at(argv, stage, signum)
    assert returncode == code, rest
    # No report; at most the run's resume state (`fedads run --resume`), once it has aligned.
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["out.resume"]), left
    assert ("--resume" in tail[-1]) == bool(left), tail[-1]
