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
