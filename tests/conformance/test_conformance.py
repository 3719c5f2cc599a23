"""Regression check of the compiled ONNX conformance (docs/conformance.md, .json).

Runs every ONNX backend node case through `modelc.compile(target="cpu")` and the built C
library (tests/conformance/runner.py) and compares with the committed docs/conformance.json:

- a case that passed there and does not pass now fails the test (a regression);
- a crash (an exception that is not a modelc error, a dead process) fails the test, whether or
  not it is new: crashes are defects, never an accepted outcome;
- a case that newly passes is printed, and does not fail: regenerate the docs with
  `python tests/conformance/runner.py --write` to lock it in.

The whole set takes about half a minute on 2 cores with a cold library cache (-O1 builds), so
the check runs every case rather than a sample.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conformance import node_cases
from conformance.report import render_markdown, totals_lines
from conformance.runner import (
    DOCS_JSON,
    DOCS_MD,
    Job,
    Result,
    compare_with,
    make_jobs,
    print_changes,
    run_jobs,
)

PROCESSES = 2  # CI has 2 cores


def _committed() -> dict:
    return json.loads(DOCS_JSON.read_text())


def test_no_regressions_and_no_crashes() -> None:
    committed = _committed()
    results = run_jobs(make_jobs(), processes=PROCESSES)
    changes = compare_with(committed, results)
    report = io.StringIO()
    print_changes(changes, report)
    print(report.getvalue())
    if changes.new_passes:
        warnings.warn(
            f"{len(changes.new_passes)} ONNX node case(s) newly pass (e.g. "
            f"{changes.new_passes[0]}): lock them in with "
            "`python tests/conformance/runner.py --write`",
            stacklevel=1,
        )
    details = "\n".join(f"--- {r.name}\n{r.traceback}" for r in changes.crashes)
    assert not changes.regressions and not changes.crashes, (
        f"{len(changes.regressions)} regression(s), {len(changes.crashes)} crash(es) against "
        f"docs/conformance.json:\n{report.getvalue()}{details}"
    )


def test_docs_agree_with_json() -> None:
    """docs/conformance.md is rendered from the json: its totals, and all of it, must match."""
    doc = _committed()
    md = DOCS_MD.read_text()
    for line in totals_lines(doc):
        assert line in md, f"docs/conformance.md lacks the totals of the json: {line}"
    assert md == render_markdown(doc), (
        "docs/conformance.md is not what docs/conformance.json renders to: regenerate both with "
        "`python tests/conformance/runner.py --write`"
    )


def test_json_lists_every_case() -> None:
    """The committed record covers exactly the node cases of the installed onnx (an onnx
    upgrade shows up here first: regenerate the docs with --write)."""
    doc = _committed()
    import onnx

    names = {c.name for c in node_cases.all_cases()}
    assert len(names) > 1800, "collect_testcases() yields far fewer cases than onnx has"
    missing, extra = sorted(names - set(doc["cases"])), sorted(set(doc["cases"]) - names)
    assert not missing and not extra, (
        f"docs/conformance.json was written with onnx {doc['onnx_version']}, this is onnx "
        f"{onnx.__version__}: {len(missing)} cases missing from it (e.g. {missing[:3]}), "
        f"{len(extra)} no longer exist (e.g. {extra[:3]}); regenerate with --write"
    )


# ---- the harness itself --------------------------------------------------------------------


def _faulty(job: Job, cache: Path | None, scratch: Path) -> Result:
    """A case function that hangs, dies or passes by the job's name (runs in a worker)."""
    if job.name == "hang":
        time.sleep(3600)
    if job.name == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    return Result(job.name, job.op, "passed")


def test_pool_survives_hangs_and_dead_workers() -> None:
    """A hung case is killed at its time limit, a dead worker is a crash, and the other cases
    still run (on fresh workers)."""
    names = ["a", "hang", "b", "segfault", "c", "d"]
    jobs = [Job(n, "Op", b"", [], [], 1e-3, 1e-7) for n in names]
    results = run_jobs(jobs, processes=2, timeout_s=4, cache_dir=None, case_fn=_faulty)
    got = {r.name: (r.status, r.kind) for r in results}
    assert got == {
        "a": ("passed", ""),
        "b": ("passed", ""),
        "c": ("passed", ""),
        "d": ("passed", ""),
        "hang": ("failed", "timeout"),
        "segfault": ("failed", "crash"),
    }
    assert "SIGSEGV" in next(r.reason for r in results if r.name == "segfault")


def test_compare_is_onnx_check() -> None:
    """Shapes and dtypes must match exactly, floats within rtol / atol with NaN == NaN,
    integers exactly."""
    f = np.array([1.0, np.nan, np.inf], np.float32)
    node_cases.compare([f * (1 + 5e-4)], [f], rtol=1e-3, atol=1e-7)
    for got, want, why in [
        (f * (1 + 2e-3), f, "elements differ"),
        (f.astype(np.float64), f, "dtype"),
        (f[None], f, "shape"),
        (np.array([-np.inf], np.float32), np.array([np.inf], np.float32), "elements differ"),
        (np.array([1000], np.int64), np.array([1001], np.int64), "elements differ"),
    ]:
        with pytest.raises(AssertionError, match=why):
            node_cases.compare([got], [want], rtol=1e-3, atol=1e-7)
    with pytest.raises(AssertionError, match="outputs"):
        node_cases.compare([f, f], [f], rtol=1e-3, atol=1e-7)
