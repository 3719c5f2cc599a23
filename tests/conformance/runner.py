"""ONNX conformance of the compiled `cpu` target: every ONNX backend node case, compiled to a C
library by `modelc.compile`, run, and compared with the outputs onnx expects.

    python tests/conformance/runner.py            # run everything, print the summary and the
                                                  # differences from docs/conformance.json
    python tests/conformance/runner.py --write    # ... and regenerate docs/conformance.{json,md}
    python tests/conformance/runner.py -k resize  # only cases whose name contains "resize"

Each case ends in one of three outcomes:

- passed: onnx's comparison holds (`node_cases.compare`).
- unsupported: modelc refused it cleanly, with `UnsupportedOpError` or `UnsupportedTypeError`.
- failed: wrong numbers or shapes (`mismatch`), another modelc error such as a C compile error
  (`error`), any other exception or a dead process (`crash`: a defect), or no result within the
  time limit (`timeout`).

Cases run in worker processes (spawned, so no OpenMP runtime state is inherited through fork),
one case at a time each, with a per-case time limit: the parent kills a worker that overruns or
dies and starts a new one, so no case can hang or take the run down. Built libraries are cached
by the hash of everything the build reads (sources, weights, Makefile with its flags, compiler
version), so a rerun on unchanged code compiles nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `conformance.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance import node_cases  # noqa: E402
from conformance.report import dump_json, render_markdown, summarize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOCS_JSON = REPO / "docs" / "conformance.json"
DOCS_MD = REPO / "docs" / "conformance.md"


def _default_cache() -> Path | None:
    """build/conformance-cache: built libraries by content hash. MODELC_CONFORMANCE_CACHE
    moves it (a CI cache, say); set to the empty string, it turns caching off."""
    env = os.environ.get("MODELC_CONFORMANCE_CACHE")
    if env is None:
        return REPO / "build" / "conformance-cache"
    return Path(env) if env else None


DEFAULT_CACHE = _default_cache()
CACHE_MAX_AGE_DAYS = 14.0
DEFAULT_TIMEOUT_S = 60.0
TARGET = "cpu"
# A thousand tiny libraries: -O1 builds them faster than the default -O3 and tests the same C.
OPT_LEVEL = "-O1"

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"


@dataclass(frozen=True)
class Job:
    """One case as a worker needs it (picklable: the model as bytes, the data as numpy)."""

    name: str
    op: str
    model: bytes
    inputs: list[Any]
    outputs: list[Any]
    rtol: float
    atol: float
    out_of_scope_types: tuple[str, ...] = ()


@dataclass
class Result:
    name: str
    op: str
    status: str  # passed | failed | unsupported
    kind: str = ""  # failed: mismatch | error | crash | timeout; unsupported: op | type
    reason: str = ""  # one line; empty when passed
    stage: str = ""  # where it ended: prepare | compile | run | compare
    seconds: float = 0.0
    traceback: str = ""  # crashes only: the innermost frames
    out_of_scope_types: list[str] = field(default_factory=list)
    # No run-time input once compile-time inputs are frozen: the import folds the whole graph,
    # so a pass checks the import and the op's reference, not a generated kernel.
    folded: bool = False

    @property
    def out_of_scope(self) -> bool:
        """An out-of-scope element type, refused with the clean type error."""
        return bool(self.out_of_scope_types) and self.status == UNSUPPORTED and self.kind == "type"


# ---- building the jobs ---------------------------------------------------------------------


def make_jobs(pattern: str | None = None, names: Iterable[str] | None = None) -> list[Job]:
    """Jobs for every node case (or those whose name contains `pattern`, or is in `names`)."""
    wanted = set(names) if names is not None else None
    jobs = []
    for case in node_cases.all_cases():
        if pattern and pattern not in case.name:
            continue
        if wanted is not None and case.name not in wanted:
            continue
        assert case.model is not None and case.data_sets
        inputs, outputs = case.data_sets[0]
        jobs.append(
            Job(
                name=case.name,
                op=node_cases.case_op(case),
                model=case.model.SerializeToString(),
                inputs=[node_cases.to_value(x) for x in inputs],
                outputs=[node_cases.to_value(x) for x in outputs],
                rtol=case.rtol,
                atol=case.atol,
                out_of_scope_types=tuple(node_cases.out_of_scope_types(case)),
            )
        )
    return jobs


# ---- one case (in a worker) ----------------------------------------------------------------


def run_case(job: Job, cache_dir: Path | None, scratch: Path) -> Result:
    """Compile, run and judge one case; every exception becomes the case's outcome."""
    import onnx

    from modelc.errors import Error, UnsupportedOpError, UnsupportedTypeError

    t0 = time.perf_counter()
    stage = "prepare"
    result = Result(job.name, job.op, PASSED, out_of_scope_types=list(job.out_of_scope_types))
    out = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    try:
        model, feeds = node_cases.freeze(onnx.ModelProto.FromString(job.model), job.inputs)
        result.folded = not model.graph.input
        stage = "compile"
        lib = _compile(model, out, cache_dir)
        stage = "run"
        names = [v.name for v in model.graph.input]
        got = lib.run(dict(zip(names, feeds)))
        stage = "compare"
        node_cases.compare(
            [got[o.name] for o in lib.outputs], job.outputs, rtol=job.rtol, atol=job.atol
        )
    except AssertionError as e:
        if stage != "compare":
            _crash(result, e, stage)
        else:
            result.status, result.kind, result.reason = FAILED, "mismatch", _one_line(str(e))
    except UnsupportedOpError as e:
        result.status, result.kind, result.reason = UNSUPPORTED, "op", _one_line(str(e))
    except UnsupportedTypeError as e:
        result.status, result.kind, result.reason = UNSUPPORTED, "type", _one_line(str(e))
    except Error as e:
        result.status, result.kind = FAILED, "error"
        result.reason = _one_line(f"{stage}: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - any other exception is the defect this reports
        _crash(result, e, stage)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result.stage = "" if result.status == PASSED else stage
    result.seconds = time.perf_counter() - t0
    return result


def _compile(model: Any, out: Path, cache_dir: Path | None) -> Any:
    """`modelc.compile` for the cpu target; with a cache, the library comes from (or goes to)
    the cache, keyed by everything its build reads."""
    import modelc

    if cache_dir is None:
        return modelc.compile(model, target=TARGET, output_dir=out, opt_level=OPT_LEVEL)
    unbuilt = modelc.compile(model, target=TARGET, output_dir=out, build=False, opt_level=OPT_LEVEL)
    key = _build_key(out)
    cached = cache_dir / f"{key}.so"
    library = out / unbuilt.manifest["library"]
    if cached.exists():
        shutil.copyfile(cached, library)
        os.utime(cached)  # recently used: kept by `prune_cache`
    lib = modelc.load(out)  # builds the library when it is not there
    if not cached.exists():
        partial = cache_dir / f"{key}.{os.getpid()}.partial"
        shutil.copyfile(library, partial)
        os.replace(partial, cached)
    return lib


def prune_cache(cache_dir: Path, max_age_days: float = CACHE_MAX_AGE_DAYS) -> None:
    """Drop libraries no run has used for `max_age_days` (the cache only grows otherwise)."""
    cutoff = time.time() - max_age_days * 86400
    for path in cache_dir.glob("*.so"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _build_key(out: Path) -> str:
    h = hashlib.sha256(_compiler_id().encode())
    for name in ("model.c", "model.h", "weights.bin", "Makefile"):
        path = out / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()[:32]


_COMPILER_ID: list[str] = []


def _compiler_id() -> str:
    """The compiler's path and version line (a compiler upgrade invalidates the cache)."""
    if not _COMPILER_ID:
        from modelc.runtime.cc import find_cc

        cc = find_cc()
        r = subprocess.run([cc, "--version"], capture_output=True, text=True)
        _COMPILER_ID.append(cc + "\n" + (r.stdout.splitlines() or [""])[0])
    return _COMPILER_ID[0]


def _crash(result: Result, e: BaseException, stage: str) -> None:
    result.status, result.kind = FAILED, "crash"
    result.reason = _one_line(f"{stage}: {type(e).__name__}: {e}") + _where(e)
    result.traceback = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-12:])


def _where(e: BaseException) -> str:
    """` (at ir/ops/tensor.py:120 in lower)`: the innermost frame inside modelc's code."""
    root = str(REPO) + os.sep
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if f.filename.startswith(root) and os.sep + "tests" + os.sep not in f.filename
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename[len(root) :]}:{f.lineno} in {f.name})"


def _one_line(text: str, limit: int = 240) -> str:
    """The first line of a message, plus the first compiler `error:` line when there is one."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    errors = [ln for ln in lines[1:] if "error:" in ln]
    if errors:
        line += " | " + re.sub(r"^\S*model\.c:", "model.c:", errors[0])
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---- the worker pool -----------------------------------------------------------------------


CaseFn = Callable[[Job, Path | None, Path], Result]
READY = "ready"
STARTUP_TIMEOUT_S = 120.0


def _worker_main(
    conn: multiprocessing.connection.Connection,
    cache_dir: str | None,
    scratch: str,
    case_fn: CaseFn,
) -> None:
    """A worker: run the jobs it is sent, one at a time, until it gets None."""
    # Each case is tiny and the pool already uses every core: no OpenMP threads, none spinning.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    cache = Path(cache_dir) if cache_dir else None
    conn.send(READY)  # started and imported: a case's time limit starts from here
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(case_fn(job, cache, Path(scratch)))


class _Worker:
    """One worker process and the job it runs. The scratch folder belongs to the parent, so
    what a killed worker leaves there is removed all the same."""

    def __init__(self, ctx: Any, cache_dir: Path | None, scratch: str, case_fn: CaseFn) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, str(cache_dir) if cache_dir else None, scratch, case_fn),
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.ready = False
        self.job: Job | None = None
        self.started = time.perf_counter()  # of the process until ready, then of the job

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_jobs(
    jobs: Sequence[Job],
    *,
    processes: int = 2,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: bool = False,
    case_fn: CaseFn = run_case,
) -> list[Result]:
    """Run `jobs` on `processes` workers with a per-case time limit; results sorted by name.

    `case_fn` (a module-level function, so a spawned worker can import it) runs one job; tests
    pass one that hangs or dies to check that the pool survives both."""
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        prune_cache(cache_dir)
    ctx = multiprocessing.get_context("spawn")
    scratch = tempfile.TemporaryDirectory(prefix="modelc-conformance-")

    def spawn() -> _Worker:
        return _Worker(ctx, cache_dir, scratch.name, case_fn)

    pending = deque(jobs)
    workers = [spawn() for _ in range(max(1, min(processes, len(jobs))))]
    results: list[Result] = []
    t0 = time.perf_counter()
    next_report = 200
    try:
        while pending or any(w.job for w in workers):
            for w in workers:
                if w.ready and w.job is None and pending:
                    w.job = pending.popleft()
                    w.started = time.perf_counter()
                    with contextlib.suppress(OSError):  # a dead worker: its EOF shows below
                        w.conn.send(w.job)
            waiting = [w for w in workers if w.job is not None or not w.ready]
            now = time.perf_counter()
            deadlines = [w.started + (timeout_s if w.ready else STARTUP_TIMEOUT_S) for w in waiting]
            wait_s = max(0.0, min(deadlines) - now)
            ready = multiprocessing.connection.wait([w.conn for w in waiting], timeout=wait_s)
            for i, w in enumerate(workers):
                if not w.ready:
                    _check_startup(w, w.conn in ready)
                    continue
                job = w.job
                if job is None:
                    continue
                if w.conn in ready:
                    try:
                        results.append(w.conn.recv())
                        w.job = None
                        continue
                    except (EOFError, OSError):
                        w.proc.join(timeout=5)
                        results.append(_dead(job, w.proc.exitcode, time.perf_counter() - w.started))
                elif time.perf_counter() - w.started >= timeout_s:
                    results.append(
                        Result(
                            job.name,
                            job.op,
                            FAILED,
                            "timeout",
                            f"no result within {timeout_s:g} s (the worker was killed)",
                            seconds=timeout_s,
                            out_of_scope_types=list(job.out_of_scope_types),
                        )
                    )
                else:
                    continue
                w.stop(kill=True)  # it died or hung: replace it
                workers[i] = spawn()
            if progress and len(results) >= next_report:
                next_report += 200
                print(
                    f"  {len(results)}/{len(jobs)} cases, {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
    finally:
        for w in workers:
            w.stop(kill=bool(w.job))
        scratch.cleanup()
    return sorted(results, key=lambda r: r.name)


def _check_startup(w: _Worker, has_message: bool) -> None:
    """Take a starting worker's READY; a worker that cannot start is the harness's failure,
    not a case's (retrying would only loop)."""
    if has_message:
        try:
            w.ready = w.conn.recv() == READY
        except (EOFError, OSError):
            w.proc.join(timeout=5)
            raise RuntimeError(
                f"a conformance worker died while starting (exit code {w.proc.exitcode})"
            ) from None
        w.started = time.perf_counter()
    elif time.perf_counter() - w.started > STARTUP_TIMEOUT_S:
        raise RuntimeError(f"a conformance worker did not start within {STARTUP_TIMEOUT_S:g} s")


def _dead(job: Job, exitcode: int | None, seconds: float) -> Result:
    if exitcode is not None and exitcode < 0:
        try:
            how = signal.Signals(-exitcode).name
        except ValueError:
            how = f"signal {-exitcode}"
    else:
        how = f"exit status {exitcode}"
    return Result(
        job.name,
        job.op,
        FAILED,
        "crash",
        f"the worker process died ({how}) while running the case",
        stage="run",
        seconds=seconds,
        out_of_scope_types=list(job.out_of_scope_types),
    )


# ---- comparing with the committed results --------------------------------------------------


@dataclass
class Changes:
    """How a run differs from a committed docs/conformance.json."""

    regressions: list[tuple[str, str]]  # (case, now) for cases that passed and no longer do
    crashes: list[Result]
    new_passes: list[str]
    other: list[tuple[str, str, str]]  # (case, before, now): other status/kind changes
    unknown: list[str]  # cases the committed file does not list (a newer onnx?)


def compare_with(committed: Mapping[str, Any], results: Sequence[Result]) -> Changes:
    before = committed["cases"]
    ch = Changes([], [], [], [], [])
    for r in results:
        now = _label(r.status, r.kind)
        if r.kind == "crash":
            ch.crashes.append(r)
        old = before.get(r.name)
        if old is None:
            ch.unknown.append(r.name)
            continue
        was = _label(old["status"], old.get("kind", ""))
        if old["status"] == PASSED and r.status != PASSED:
            ch.regressions.append((r.name, f"{now}: {r.reason}"))
        elif r.status == PASSED and old["status"] != PASSED:
            ch.new_passes.append(r.name)
        elif was != now:
            ch.other.append((r.name, was, now))
    return ch


def _label(status: str, kind: str) -> str:
    return f"{status} ({kind})" if kind else status


def print_changes(
    ch: Changes, out: Any = sys.stdout, hint: str = " (lock in with --write)"
) -> None:
    for name, now in ch.regressions:
        print(f"REGRESSION {name}: {now}", file=out)
    for r in ch.crashes:
        print(f"CRASH {r.name}: {r.reason}", file=out)
    for name in ch.new_passes:
        print(f"newly passing: {name}{hint}", file=out)
    for name, was, now in ch.other:
        print(f"changed: {name}: {was} -> {now}", file=out)
    for name in ch.unknown:
        print(f"not in docs/conformance.json: {name}", file=out)


# ---- CLI -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--write", action="store_true", help="regenerate docs/conformance.{json,md}")
    p.add_argument("-k", dest="pattern", help="only cases whose name contains this")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2, help="processes")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per case")
    p.add_argument("--no-cache", action="store_true", help="build every library afresh")
    p.add_argument("--crashes", action="store_true", help="print the tracebacks of crashes")
    args = p.parse_args(argv)
    if args.write and args.pattern:
        p.error("--write regenerates the docs from every case; drop -k")

    try:  # what every worker imports first: a broken tree would "crash" every case
        import modelc.frontend.onnx  # noqa: F401
        import modelc.targets.cpu  # noqa: F401
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("modelc does not import; nothing run", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    jobs = make_jobs(args.pattern)
    t1 = time.perf_counter()
    results = run_jobs(
        jobs,
        processes=args.jobs,
        timeout_s=args.timeout,
        cache_dir=None if args.no_cache else DEFAULT_CACHE,
        progress=True,
    )
    t2 = time.perf_counter()
    doc = summarize(results, onnx_version=_onnx_version())
    print(
        f"{len(jobs)} cases: collected in {t1 - t0:.1f} s, ran in {t2 - t1:.1f} s "
        f"on {args.jobs} processes"
    )
    t = doc["totals"]
    print(f"passed {t['passed']}, failed {t['failed']}, unsupported {t['unsupported']}")
    slowest = sorted(results, key=lambda r: -r.seconds)[:5]
    print("slowest: " + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in slowest))
    if args.crashes:
        for r in results:
            if r.kind == "crash":
                print(f"\n==== {r.name}: {r.reason}\n{r.traceback}")
    if DOCS_JSON.exists():
        changes = compare_with(json.loads(DOCS_JSON.read_text()), results)
        print_changes(changes, hint="" if args.write else " (lock in with --write)")
    if args.write:
        DOCS_JSON.write_text(dump_json(doc))
        DOCS_MD.write_text(render_markdown(doc))
        print(f"wrote {DOCS_JSON.relative_to(REPO)} and {DOCS_MD.relative_to(REPO)}")
    return 0


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def results_as_dicts(results: Iterable[Result]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


if __name__ == "__main__":
    # Through the package, so the worker processes see the same `conformance.runner` classes.
    from conformance.runner import main as _main

    sys.exit(_main())
