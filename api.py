"""The Python API: `modelc.compile` and `modelc.load`.

lib = modelc.compile("model.onnx", target="cpu", input_shapes={"x": (1, 3, 224, 224)})
y = lib(x)                 # or lib.run({"x": x}) -> {"y": ...}
lib.save("out/"); lib = modelc.load("out/")
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelc.runtime.compiled import CompiledModel, load, specs, write_manifest

__all__ = ["compile", "load", "import_model", "load_calibration", "with_quant_config"]


def import_model(
    model: Any, input_shapes: Mapping[str, Sequence[int]] | None = None, **options: Any
) -> Any:
    """Model (path, bytes, onnx.ModelProto, a Graph, or a torch.nn.Module with
    `example_inputs=(x, ...)`) -> graph IR."""
    from modelc.ir.graph import Graph

    if isinstance(model, Graph):
        return model
    if _is_torch_module(model):
        from modelc.frontend.fx import load_torch

        return load_torch(
            model,
            options.get("example_inputs"),
            input_shapes=input_shapes,
            input_names=options.get("input_names"),
            output_names=options.get("output_names"),
        )
    from modelc.frontend.onnx import load_onnx

    return load_onnx(model, input_shapes)


def compile(  # noqa: A001 - the public name users expect
    model: Any,
    target: str = "cpu",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    pipeline: str | None = None,
    output_dir: str | Path | None = None,
    print_after_all: bool = False,
    dump_ir: str | Path | None = None,
    verify: bool = False,
    build: bool = True,
    calibration: Mapping[str, Any] | str | Path | None = None,
    quant_config: Mapping[str, Any] | str | Path | None = None,
    **options: Any,
) -> CompiledModel:
    """Compile `model` for `target`; returns a runnable handle on the output folder.

    `input_shapes` fixes symbolic dims (`{"x": (1, 3, 224, 224)}`). `pipeline` overrides the
    target's default pass pipeline. Without `output_dir` the folder is temporary (use `save`).
    Target options (cpu): `opt_level="-O3"`, `extra_cflags=[...]`, `prefix="modelc"`.
    `calibration` (a dict of arrays, one per input name, samples along axis 0, or an .npz path)
    feeds the `quantize` pass (target `cpu-int8`); `quant_config` (a dict, or a JSON file / text
    as `QuantConfig.to_json` writes it) replaces that pass's options.
    """
    from modelc.ir.graph import Graph
    from modelc.passes.registry import (
        GRAPH,
        PassContext,
        format_pipeline,
        parse_pipeline,
        run_pipeline,
    )
    from modelc.targets.registry import get_target

    tgt = get_target(target)
    timings: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    graph = import_model(model, input_shapes, **options)
    timings.append(("import", time.perf_counter() - t0))

    passes = parse_pipeline(pipeline if pipeline is not None else tgt.pipeline)
    if quant_config is not None:
        passes = with_quant_config(passes, quant_config)
    ctx = PassContext(
        verify=verify,
        print_after_all=print_after_all,
        out=sys.stderr,
        dump_dir=Path(dump_ir) if dump_ir else None,
        capabilities=tgt.capabilities,
        calibration=load_calibration(calibration),
    )
    split = next((i for i, p in enumerate(passes) if p.produces != GRAPH), len(passes))
    graph = run_pipeline(graph, passes[:split], ctx)
    final_graph: Graph = graph
    program = run_pipeline(graph, passes[split:], ctx)
    timings += ctx.timings

    tmp = None
    if output_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelc-")
        out = Path(tmp.name)
    else:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)

    from modelc.ir.printer import print_graph

    (out / "model.ir").write_text(print_graph(final_graph, constants="elide") + "\n")
    t1 = time.perf_counter()
    extra = tgt.emit(program, out, options)
    timings.append(("emit", time.perf_counter() - t1))
    if build:
        t2 = time.perf_counter()
        tgt.build(out, {**options, **extra})
        timings.append(("build", time.perf_counter() - t2))

    plan = program.plan
    manifest: dict[str, Any] = {
        "modelc_version": _version(),
        "model": final_graph.name,
        "target": tgt.name,
        "pipeline": [p.name for p in passes],
        "pipeline_string": format_pipeline(passes),
        "inputs": specs(
            [
                (n, program.buffer_map[n].shape, program.buffer_map[n].dtype.name)
                for n in program.inputs
            ]
        ),
        "outputs": specs(
            [
                (user, program.buffer_map[b].shape, program.buffer_map[b].dtype.name)
                for b, user in zip(program.outputs, program.output_names)
            ]
        ),
        "kernels": len(program.kernels),
        "launches": len(program.launches),
        "workspace_bytes": plan.workspace_bytes if plan else 0,
        "workspace_naive_bytes": plan.naive_bytes if plan else 0,
        "workspace_lower_bound_bytes": plan.lower_bound_bytes if plan else 0,
        "workspace_strategy": plan.strategy if plan else "",
        "kernels_report": kernels_report(program),
        "passes": [{"name": n, "seconds": round(s, 6)} for n, s in timings],
        "pass_reports": ctx.reports,
        **extra,
    }
    write_manifest(out, manifest)
    runner = tgt.load(out, manifest) if (build and tgt.load) else None
    return CompiledModel(out, manifest, runner, tmp)


def load_calibration(data: Mapping[str, Any] | str | Path | None) -> dict[str, Any] | None:
    """Calibration arrays from a dict or an .npz file (read fully: the file closes here)."""
    if data is None:
        return None
    if isinstance(data, Mapping):
        return dict(data)
    import numpy as np

    from modelc.errors import InputError

    try:
        with np.load(str(data)) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise InputError(f"calibration {data}: not a readable .npz of arrays ({e})") from None


def with_quant_config(passes: list[Any], config: Mapping[str, Any] | str | Path) -> list[Any]:
    """The pipeline with every `quantize` pass's options replaced by `config`."""
    import dataclasses

    from modelc.errors import PipelineError
    from modelc.passes.quantize import QuantConfig, Quantize

    cfg = QuantConfig.from_json(config)
    if not any(isinstance(p, Quantize) for p in passes):
        raise PipelineError(
            "quant_config given, but the pipeline has no quantize pass (use target cpu-int8)"
        )
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return [Quantize(**fields) if isinstance(p, Quantize) else p for p in passes]


def kernels_report(program: Any) -> list[dict[str, Any]]:
    """Per launch, in program order: what it computes and what it costs.

    `bytes_read` counts each distinct buffer a launch reads once (a value passed twice, or two
    views of one buffer, is read once from memory), `bytes_written` its outputs: the compulsory
    traffic, so fusion shows up as bytes that no longer move. `macs` comes from the kernel's
    `info` (conv, matmul and the fused kernels anchored on them record it) or, for kernels that
    do not, from the op's formula (conv: N*M*outH*outW*C/g*kh*kw = out.size * prod(w[1:]);
    matmul: batch*m*n*k = out.size * k); other ops count 0.
    """
    rows: list[dict[str, Any]] = []
    for la in program.launches:
        kernel = program.kernel_map[la.kernel]
        info = dict(kernel.info)
        reads: dict[str, int] = {}
        writes: dict[str, int] = {}
        outputs: list[list[int]] = []
        for arg, param in zip(la.args, kernel.params):
            buf = program.buffer_map[arg]
            if param.is_output:
                writes[program.root(arg).name] = buf.nbytes
                outputs.append(list(buf.shape))
            else:
                reads[program.root(arg).name] = buf.nbytes
        rows.append(
            {
                "kernel": la.kernel,
                "op": la.op,
                "ops": str(info.get("ops", info.get("op", la.op))),
                "nodes": list(la.nodes),
                "outputs": outputs,
                "macs": int(info["macs"]) if "macs" in info else _macs(program, la),
                "bytes_read": sum(reads.values()),
                "bytes_written": sum(writes.values()),
                "inplace": bool(la.inplace),
            }
        )
    return rows


def _macs(program: Any, launch: Any) -> int:
    shapes = [program.buffer_map[a].shape for a in launch.args]
    out = program.buffer_map[launch.args[-1]]
    if launch.op == "conv" and len(shapes) >= 3:
        return out.size * math.prod(shapes[1][1:])
    if launch.op == "matmul" and len(shapes) == 3 and shapes[0]:
        return out.size * shapes[0][-1]
    return 0


def _is_torch_module(model: Any) -> bool:
    """Without importing torch: a module object exists only if torch is already imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _version() -> str:
    from modelc import __version__

    return __version__
