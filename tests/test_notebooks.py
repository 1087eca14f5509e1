"""The example notebooks (``examples/notebooks/*.ipynb``) run top to bottom, small.

Each notebook reads ``FEDADS_NOTEBOOK_SCALE``: CI sets ``small`` (seconds per notebook), a
researcher leaves it unset for a research size. Executed with nbclient on the ``python3``
kernel of this interpreter (ipykernel); reports go to a temporary folder. A notebook passes when
no cell raises, its result renders as HTML with the headline numbers and its plots come out as
inline images.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # a cell on 2 busy shared cores; a notebook takes seconds when idle


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FEDADS_NOTEBOOK_SCALE", "small")
    monkeypatch.setenv("FEDADS_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("FEDADS_SAMPLE_DIR", str(ROOT / "data" / "sample"))
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        book,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return book


def _outputs(book) -> list[dict]:
    return [out for cell in book.cells if cell.cell_type == "code" for out in cell.outputs]


def test_notebooks_are_stored_without_outputs() -> None:
    assert {"quickstart", "bring_your_own_data", "claim_map", "privacy_frontier"} <= set(NAMES)
    for name in NAMES:
        book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, name


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_small(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "privacy_frontier":
        pytest.importorskip("fedads.privacy", reason="the label-privacy package is not merged")
    book = _execute(name, tmp_path, monkeypatch)
    outputs = _outputs(book)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no inline plot"
    assert any("fedads" in text for text in html), f"{name}: no fedads result rendered"
    if name in ("quickstart", "bring_your_own_data"):  # one experiment: its headline table
        assert any("Headline lift" in text for text in html), name
        assert (tmp_path / "out" / name / "report.json").exists()
    if name == "privacy_frontier":
        assert any("Label privacy" in text for text in html), name
