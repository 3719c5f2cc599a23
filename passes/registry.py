"""Pass registry, pipeline strings and the pass context.

A pass is a frozen dataclass (its fields are its options) registered by name, with
`run(ir, ctx) -> ir`. Graph passes take and return a `Graph`; the lowering pass turns a Graph
into a `Program` (level 2); program passes take and return a `Program`. A pipeline is a string:

    "fold-constants,eliminate-dead-code,lower-to-loops,plan-memory{strategy=best-fit}"

Option values may be comma lists (`fuse-epilogue{act=relu,clip}`): an item without `=` inside
the braces continues the option before it.

Passes keep no module-level mutable state: everything a run learns goes into the context
(timings, dumps, reports), so pipelines can run in parallel in one process.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO, TypeVar, get_type_hints

from modelc.errors import PipelineError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

GRAPH = "graph"
PROGRAM = "program"


class Pass(ABC):
    """Base of passes. Subclasses are frozen dataclasses; `name` and `level` are class vars."""

    name: ClassVar[str] = ""
    # What the pass takes: "graph" or "program"; `produces` what it returns.
    level: ClassVar[str] = GRAPH
    produces: ClassVar[str] = GRAPH

    @abstractmethod
    def run(self, ir: Any, ctx: PassContext) -> Any: ...

    def spec(self) -> str:
        """The pipeline-string form of this pass with its non-default options."""
        opts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v != f.default:
                opts.append(f"{f.name}={_format_option(v)}")
        return self.name + (f"{{{','.join(opts)}}}" if opts else "")


P = TypeVar("P", bound=type[Pass])
_PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: P) -> P:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no pass name")
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise ValueError(f"pass {cls.name} registered twice")
    _PASSES[cls.name] = cls
    return cls


def all_passes() -> dict[str, type[Pass]]:
    _load_passes()
    return dict(_PASSES)


def get_pass(name: str) -> type[Pass]:
    _load_passes()
    try:
        return _PASSES[name]
    except KeyError:
        known = ", ".join(sorted(_PASSES))
        raise PipelineError(f"unknown pass {name!r}; registered passes: {known}") from None


def _load_passes() -> None:
    import modelc.passes.all  # noqa: F401  (registers every pass)


@dataclass
class PassContext:
    """What a pipeline run carries: options that concern every pass, and what they report."""

    verify: bool = False
    print_after_all: bool = False
    out: TextIO = field(default_factory=lambda: sys.stderr)
    dump_dir: Path | None = None
    # Capabilities of the target renderer (vector width, fp16, ...), read by passes.
    capabilities: Any = None
    timings: list[tuple[str, float]] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None
    # Calibration samples for passes that need data, not IR (quantize): one array per graph
    # input name, samples along axis 0.
    calibration: Mapping[str, np.ndarray] | None = None

    def report(self, pass_name: str, **figures: Any) -> None:
        self.reports.setdefault(pass_name, {}).update(figures)


# ---- pipeline strings ----------------------------------------------------------------------------


def parse_pipeline(text: str) -> list[Pass]:
    """Parse `"a,b{k=v,k2=v2},c"` into pass instances."""
    passes: list[Pass] = []
    for name, opts in _split_pipeline(text):
        cls = get_pass(name)
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, raw in opts.items():
            if key not in fields:
                valid = ", ".join(fields) or "none"
                raise PipelineError(f"pass {name}: unknown option {key!r} (options: {valid})")
            kwargs[key] = _convert_option(name, key, raw, hints.get(key, str))
        try:
            passes.append(cls(**kwargs))
        except (TypeError, ValueError) as e:
            raise PipelineError(f"pass {name}: {e}") from None
    return passes


def format_pipeline(passes: list[Pass]) -> str:
    return ",".join(p.spec() for p in passes)


def _split_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in ",{":
            j += 1
        name = text[i:j].strip()
        opts: dict[str, str] = {}
        if j < n and text[j] == "{":
            k = text.find("}", j)
            if k < 0:
                raise PipelineError(f"pipeline {text!r}: unclosed '{{' after {name!r}")
            last = ""
            for item in filter(None, (s.strip() for s in text[j + 1 : k].split(","))):
                if "=" not in item:
                    if not last:
                        raise PipelineError(f"pass {name}: option {item!r} is not key=value")
                    # a comma list value: `act=relu,clip` continues the option before it
                    opts[last] += "," + item
                    continue
                key, val = item.split("=", 1)
                last = key.strip()
                opts[last] = val.strip()
            j = k + 1
        if name:
            out.append((name, opts))
        elif opts:
            raise PipelineError(f"pipeline {text!r}: options without a pass name")
        while j < n and text[j] in ", ":
            j += 1
        i = j
    return out


def _convert_option(pass_name: str, key: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        return raw
    except ValueError:
        raise PipelineError(
            f"pass {pass_name}: option {key}={raw!r} is not a valid {getattr(typ, '__name__', typ)}"
        ) from None


def _format_option(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ---- running -------------------------------------------------------------------------------------


def run_pipeline(ir: Any, passes: list[Pass], ctx: PassContext) -> Any:
    """Run passes in order, timing each, verifying and printing/dumping as the context asks."""
    from modelc.ir.graph import Graph

    for idx, p in enumerate(passes):
        kind = GRAPH if isinstance(ir, Graph) else PROGRAM
        if p.level != kind:
            raise PipelineError(
                f"pass {p.name} runs on a {p.level}, but the pipeline has a {kind} at that point "
                "(graph passes come before lower-to-loops, program passes after it)"
            )
        if ctx.progress:
            ctx.progress(p.name)
        t0 = time.perf_counter()
        ir = p.run(ir, ctx)
        ctx.timings.append((p.name, time.perf_counter() - t0))
        if ctx.verify and isinstance(ir, Graph):
            from modelc.ir.verify import verify

            verify(ir)
        if ctx.print_after_all or ctx.dump_dir is not None:
            text = _ir_text(ir)
            if ctx.print_after_all:
                print(f"// ----- IR after {p.spec()} -----", file=ctx.out)
                print(text, file=ctx.out)
            if ctx.dump_dir is not None:
                ctx.dump_dir.mkdir(parents=True, exist_ok=True)
                (ctx.dump_dir / f"{idx:02d}-{p.name}.ir").write_text(text + "\n")
    return ir


def _ir_text(ir: Any) -> str:
    from modelc.ir.graph import Graph

    if isinstance(ir, Graph):
        from modelc.ir.printer import print_graph

        return print_graph(ir, constants="elide")
    return str(ir)
