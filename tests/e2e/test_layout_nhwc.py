"""resnet18 from the zoo compiled channels-last: the cpu pipeline with `layout{format=nhwc}`
after fuse-patterns runs every conv and pool in NHWC (the epilogues fused into NHWC convs) and
still matches onnxruntime within atol 1e-4 / rtol 1e-4."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import modelc
from modelc.frontend.onnx import load_onnx
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.targets.cpu import CPU_PIPELINE


def nhwc_pipeline() -> str:
    """The cpu pipeline with the layout pass right after fuse-patterns, so fold-batchnorm has
    already folded the batch norms into the convs and fuse-epilogue sees NHWC anchors."""
    assert "fuse-patterns," in CPU_PIPELINE
    return CPU_PIPELINE.replace("fuse-patterns,", "fuse-patterns,layout{format=nhwc},", 1)


@pytest.mark.torch
def test_resnet18_nhwc_matches_onnxruntime(zoo_model) -> None:
    import zoo

    path = zoo_model("resnet18")
    graph = load_onnx(path)
    head = nhwc_pipeline().split(",fuse-epilogue")[0]
    mid = run_pipeline(graph, parse_pipeline(head), PassContext(verify=True))
    spatial = [n for n in mid.nodes if n.op in ("conv", "max_pool", "avg_pool")]
    assert spatial and all(n.attrs.get("layout") == "nhwc" for n in spatial)
    # one transpose into the channels-last region; the ones out of it sit before the head
    assert sum(n.op == "transpose" for n in mid.nodes) <= 2

    lib = modelc.compile(graph, target="cpu", pipeline=nhwc_pipeline(), verify=True)
    x = zoo.example_input("resnet18")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(lib(x), want, atol=1e-4, rtol=1e-4)
