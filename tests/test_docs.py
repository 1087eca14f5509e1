"""Every ```python and ```bash / ```sh block in README.md and docs/*.md runs, as written.

Each block runs in its own subprocess, with the current directory a fresh temporary folder that
holds a copy of ``data/`` (so ``data/sample/social.csv`` resolves and nothing is written into the
repository), this checkout first on ``PYTHONPATH`` and the environment's ``bin`` first on
``PATH`` (``python`` and the ``fedads`` console script are this environment's). Python blocks run
with ``python block.py``, shell blocks with ``bash -e -o pipefail``. Blocks run two at a time
(``FEDADS_DOC_TEST_WORKERS``); a block whose Ray cluster failed to start (an overloaded machine,
not the documented code) is run once more.

A block may be skipped only with a visible marker on the line before its fence::

    <!-- doc-test: skip (why it cannot run here) -->

and the skips are counted (:data:`MAX_SKIPS`) so they stay few. Fences in other languages
(diagrams, TOML, output) are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
RUN_LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash"}
SKIP_MARKER = re.compile(r"<!--\s*doc-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
MAX_SKIPS = 4
"""Skipped blocks allowed across all docs (``make test`` recursion, servers, hour-long runs)."""
BLOCK_TIMEOUT_S = 900.0  # generous: a loaded CI machine slows Ray start-up tenfold
WORKERS = int(os.environ.get("FEDADS_DOC_TEST_WORKERS", "2"))
#: Ray's own start-up failure on an overloaded machine (not the documented code): retried once.
RAY_STARTUP_FLAKE = "The current node timed out during startup"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str  # "python" or "bash"
    code: str
    skip: str | None  # reason from the marker, or None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The runnable fenced blocks of one markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # past the closing fence
        language = RUN_LANGUAGES.get(match["lang"].lower())
        if language is None:
            continue
        previous = next((t for t in reversed(lines[:start]) if t.strip()), "")
        marker = SKIP_MARKER.search(previous)
        blocks.append(
            Block(path, start + 1, language, "\n".join(body) + "\n", marker and marker["reason"])
        )
    return blocks


BLOCKS = [block for path in DOCS for block in extract_blocks(path)]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")  # two blocks at once on two cores
    return env


@dataclass
class Outcome:
    returncode: int
    output: str
    seconds: float


def run_block(block: Block, workdir: Path) -> Outcome:
    """Run one block in a fresh ``workdir``; once more if Ray itself failed to start."""
    outcome = _run_once(block, workdir)
    if outcome.returncode != 0 and RAY_STARTUP_FLAKE in outcome.output:
        retry = _run_once(block, workdir.with_name(workdir.name + "-retry"))
        retry.output = f"(retried: Ray failed to start the first time)\n{retry.output}"
        return retry
    return outcome


def _run_once(block: Block, workdir: Path) -> Outcome:
    shutil.copytree(ROOT / "data", workdir / "data")
    (workdir / "benchmarks").symlink_to(ROOT / "benchmarks")  # blocks that show a script's --help
    if block.language == "python":
        script = workdir / "block.py"
        script.write_text(block.code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            cwd=workdir,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {BLOCK_TIMEOUT_S:g} s\n{exc.stdout}\n{exc.stderr}"
    return Outcome(code, output, time.perf_counter() - start)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> dict[str, Future[Outcome]]:
    """Start every selected block (two at a time) once; each test waits for its own."""
    selected = {
        item.callspec.params["block"].id
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__]
        and hasattr(item, "callspec")
        and "block" in item.callspec.params
    }
    tmp = Path(tempfile.mkdtemp(prefix="fedads-doc-test-"))
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {
        block.id: pool.submit(run_block, block, tmp / f"block{n}")
        for n, block in enumerate(BLOCKS)
        if block.id in selected and block.skip is None
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_runs(block: Block, outcomes: dict[str, Future[Outcome]]) -> None:
    if block.skip is not None:
        pytest.skip(f"doc-test: skip ({block.skip})")
    outcome = outcomes[block.id].result()
    assert outcome.returncode == 0, (
        f"{block.id} ({block.language}) exited {outcome.returncode} after "
        f"{outcome.seconds:.0f} s:\n{block.code}\n--- output (tail) ---\n{outcome.output[-4000:]}"
    )


def test_skips_stay_few_and_say_why() -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= MAX_SKIPS, [f"{b.id}: {b.skip}" for b in skipped]
    assert all(len(b.skip.strip()) >= 10 for b in skipped), "give each skip a real reason"
    assert len(BLOCKS) - len(skipped) >= 6, "the docs lost their runnable examples?"


def test_extractor_finds_fences_markers_and_languages(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```python\nprint(1)\n```\n\n<!-- doc-test: skip (starts a server) -->\n\n"
        "```bash\nserve &\n```\n```\ndiagram\n```\n```toml\na = 1\n```\n"
        "- item\n\n  ```sh\n  echo hi\n  ```\n"
    )
    blocks = extract_blocks(doc)
    assert [(b.line, b.language, b.code, b.skip) for b in blocks] == [
        (2, "python", "print(1)\n", None),
        (8, "bash", "serve &\n", "starts a server"),
        (19, "bash", "echo hi\n", None),
    ]
